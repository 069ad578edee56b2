"""Real browser tests: `streamlit run app.py` on a free loopback port, driven by Playwright in
Debian's Chromium. Screenshots go to test-output/browser/."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "browser"
# url path -> (page title, a heading drawn at the end of the page: the page has finished rendering)
PAGES = {
    "": ("Imbalance Lab", "Methods"),
    "data": ("Data", "Samples per class"),
    "train": ("Train", "Jobs"),
    "compare": ("Compare", "Per-class recall"),
    "synthesis": ("Synthesis", "Class counts before and after balancing"),
    "explain": ("Explain", "Explain the class"),
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's Chromium is not installed and `apt-get install -y chromium` failed here"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    env = {**os.environ, "IMBAL_LAB_HOME": str(tmp_path_factory.mktemp("browser_lab"))}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail(f"streamlit did not start: {server.stdout.read().decode()[-2000:]}")
    yield url
    server.terminate()
    server.wait(20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(page, url: str, title: str, last: str | None = None) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=90_000)
    if last is not None:
        page.get_by_text(last, exact=True).first.wait_for(timeout=120_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)


def test_every_page_opens_without_exception(app_url: str, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path, (title, last) in PAGES.items():
        _open(page, f"{app_url}/{path}", title, last)
        assert page.locator('[data-testid="stException"]').count() == 0, f"exception on page {path or 'home'}"
        page.wait_for_timeout(2_000)  # elements draw after the script ends (their code loads lazily): then the shot
        page.screenshot(path=str(SHOTS / f"{path or 'home'}.png"), full_page=True)


def _train_one_ce_epoch(page) -> None:
    """On Train: keep only ce (remove the other default method's chip), 1 epoch, Run, and wait for its result."""
    page.get_by_role("button", name="Remove balanced_softmax").last.click()
    epochs = page.get_by_label("Epochs")
    epochs.fill("1")
    epochs.press("Tab")
    from playwright.sync_api import expect

    finished = page.get_by_text("test balanced acc")
    finished_before = finished.count()  # an earlier test's run may be listed finished already
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Queued 1 run(s)").wait_for(timeout=30_000)
    expect(finished).to_have_count(finished_before + 1, timeout=300_000)


def test_train_from_ui_then_see_it_in_compare(app_url: str, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open(page, f"{app_url}/train", "Train")
    _train_one_ce_epoch(page)
    page.screenshot(path=str(SHOTS / "train_finished.png"), full_page=True)

    _open(page, f"{app_url}/compare", "Compare", "Per-class recall")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    runs = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs")
    # A quick run of one's own is picked, tagged "yours", and does not replace the shipped 8-epoch ce (issues 12, 36).
    assert (
        runs.get_by_role(
            "button", name="Remove ce · synthetic 28px · ratio natural · seed 0 · shipped · 604530"
        ).count()
        == 1
    )
    assert runs.get_by_role("button", name="Remove balanced_softmax · synthetic 28px").count() == 1
    assert runs.get_by_text("ce · synthetic 28px · ratio natural · seed 0 · yours ·").count() == 1
    # The leaderboard (its cells are drawn on a canvas: the values are checked in tests/test_app.py).
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(SHOTS / "compare_with_new_run.png"), full_page=True)


def test_data_choice_survives_going_to_train_and_back(app_url: str, browser):
    """Item 1 of issue 12: the Data page starts from the saved choice; the sidebar and Train show it."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/data", "Data", "Samples per class")
    page.get_by_text("step", exact=True).click()
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    page.get_by_role("link", name="Train").click()
    page.get_by_text("synthetic · 28 px · step ratio 10").first.wait_for(timeout=60_000)  # the Train caption
    assert page.locator('[data-testid="stSidebar"]').get_by_text("step ratio 10").count() == 1
    page.get_by_role("link", name="Data").click()
    page.get_by_text("Samples per class", exact=True).wait_for(timeout=120_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    assert page.get_by_role("radio", name="step").is_checked()
    page.screenshot(path=str(SHOTS / "data_choice_kept.png"))


def _idle(page) -> None:
    page.wait_for_timeout(300)  # the rerun a click starts shows its status widget first
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=300_000)


def _pick_option(page, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    _idle(page)


def test_a_students_ham10000_choice_is_what_train_trains_after_a_reload(app_url: str, browser):
    """Issue 36: fresh session, HAM10000, its folder, profile exp: the ratio stays 10 (it fell to 1 while the page
    waited for the folder) and the sidebar says so in the same rerun; a reload keeps the choice (it is in the page
    address), and Train shows exactly it."""
    from playwright.sync_api import expect

    ham = shared_path("ham10000")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/data", "Data", "Samples per class")
    page.get_by_label("Source").first.click()
    page.get_by_role("option", name="ham10000", exact=True).click()
    _idle(page)
    folder = page.get_by_role("textbox", name="Folder or file")
    folder.fill(str(ham))
    folder.press("Enter")
    page.get_by_text("Samples per class", exact=True).wait_for(timeout=300_000)
    _idle(page)
    page.get_by_text("exp", exact=True).first.click()
    page.get_by_text("2049 of 7023 training images kept; achieved ratio 10.0").wait_for(timeout=120_000)
    _idle(page)
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Ratio")
    assert slider.get_by_role("slider").get_attribute("aria-valuetext") == "10"
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text(f"ham10000 ({ham}) · 28 px · exp ratio 10").count() == 1  # not one click behind
    assert "ratio=10" not in page.url and "profile=exp" in page.url and "source=ham10000" in page.url

    page.reload()
    page.get_by_text("Samples per class", exact=True).wait_for(timeout=300_000)
    _idle(page)
    page.get_by_text("2049 of 7023 training images kept").wait_for(timeout=120_000)
    assert page.get_by_role("radio", name="exp").is_checked()
    page.get_by_role("link", name="Train").click()
    page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=60_000)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text(f"Data: ham10000 ({ham}) · 28 px · exp ratio 10").wait_for(timeout=60_000)  # what Run trains
    _idle(page)
    page.screenshot(path=str(SHOTS / "student_ham10000_after_reload.png"))

    _train_one_ce_epoch(page)
    page.get_by_role("link", name="Compare").click()
    page.get_by_text("Per-class recall", exact=True).wait_for(timeout=120_000)
    _idle(page)
    runs = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs")
    yours = runs.get_by_text(re.compile(r"^ce · ham10000 .*28px · ratio 10 · seed 0 · yours · "))
    expect(yours).to_have_count(1, timeout=60_000)  # Compare opened on it
    reference = page.locator('[data-testid="stSelectbox"]').filter(has_text="Reference method")
    # the only group here, named as the legends name it
    expect(reference.get_by_role("combobox")).to_have_value("ce · 1 ep · resnet10t_small · yours", timeout=60_000)
    page.screenshot(path=str(SHOTS / "student_ham10000_compare.png"))


def test_explain_columns_fit_and_say_which_run(app_url: str, browser):
    """Item 5 of issue 12: each Grad-CAM is captioned method · epochs · source · seed, and images never overlap."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/explain", "Explain", "Explain the class")
    page.get_by_text("· 8 ep · shipped · seed 0", exact=False).first.wait_for(timeout=120_000)
    images = page.locator('[data-testid="stImage"] img')
    boxes = sorted((images.nth(i).bounding_box() for i in range(images.count())), key=lambda b: b["x"])
    assert len(boxes) >= 3
    for left, right in zip(boxes, boxes[1:]):
        assert left["x"] + left["width"] <= right["x"] + 0.5, (left, right)
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert len(set(captions)) == len(captions)  # two runs of one method are told apart
    page.locator('[data-testid="stImageCaption"]').first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "explain.png"))


def test_an_uploaded_photo_shown_to_built_in_data_runs_is_flagged(app_url: str, browser, tmp_path: Path):
    """An upload on Explain: every shipped run of the built-in data says it never saw a photograph."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"  # a skin-toned photograph-like image: smooth shading, a dark blob, sensor noise
    rows, cols = np.mgrid[0:96, 0:96]
    blob = np.exp(-((rows - 50) ** 2 + (cols - 45) ** 2) / 300.0)[..., None]
    noise = np.random.default_rng(0).normal(0, 6, (96, 96, 3))
    pixels = (1 - 0.7 * blob) * np.array([225.0, 180.0, 170.0]) + noise
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(photo)

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/explain", "Explain", "Explain the class")
    page.get_by_text("upload", exact=True).click()
    page.locator("input[type='file']").set_input_files(str(photo))
    runs = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs")
    picked = runs.get_by_role("button", name=re.compile("^Remove ")).count()  # one chip per picked run
    assert picked >= 1
    warning = page.get_by_text("has never seen a photograph", exact=False)
    warning.nth(picked - 1).wait_for(timeout=180_000)  # one beside every picked run's prediction
    assert warning.count() == picked
    assert page.locator('[data-testid="stException"]').count() == 0
    warning.first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "explain_upload.png"))


def test_diffusion_tab_and_change_vs_baseline(app_url: str, browser):
    """The shipped diffusion model's samples, strip and AAS trace; Compare's per-class change against ce."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/synthesis", "Synthesis", "Class counts before and after balancing")
    page.get_by_role("tab", name="Diffusion (IOIS)").click()
    page.get_by_role("heading", name="Denoising, step by step").wait_for(timeout=120_000)
    page.get_by_role("heading", name="AAS trace of an IOIS run").wait_for(timeout=120_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(SHOTS / "synthesis_diffusion.png"), full_page=True)
    # Streamlit scrolls inside its own container, so a full-page shot stops at the window: one per section.
    for number, heading in enumerate(("Denoising, step by step", "AAS trace of an IOIS run"), start=2):
        page.get_by_role("heading", name=heading).scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"synthesis_diffusion_{number}.png"))

    _open(page, f"{app_url}/compare", "Compare", "Per-class recall")
    _pick_option(page, "Data set", "synthetic 28px")  # Compare opens on one's newest run: an earlier test's may be HAM
    page.get_by_role("tab", name="Change vs reference").click()  # only the open tab's work runs: a rerun draws it
    caption = page.get_by_text("minus the reference").first
    caption.wait_for(timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    caption.scroll_into_view_if_needed()  # the app scrolls inside its main block: show the tab's chart
    page.screenshot(path=str(SHOTS / "compare_change.png"))


def test_middle_classes_tab_and_binary_compare(app_url: str, browser):
    """The Middle classes tab on the built-in data; Compare's ROC, PR and score histograms of the shipped binary
    runs."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/synthesis", "Synthesis", "Class counts before and after balancing")
    page.get_by_role("tab", name="Middle classes (one-class)").click()
    page.get_by_text("real abnormal", exact=True).wait_for(timeout=120_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_text("real abnormal", exact=True).scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "synthesis_middle_classes.png"))

    _open(page, f"{app_url}/compare", "Compare", "Per-class recall")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Data set").get_by_role("combobox").click()
    page.get_by_role("option", name="asymmetric_multicolour vs").click()
    heading = page.get_by_role("heading", name="Abnormal vs normal: ROC, precision–recall and scores")
    heading.wait_for(timeout=120_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("AUROC", exact=False).count() >= 1
    heading.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "compare_binary_curves.png"))
    page.get_by_text("Score histograms of").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "compare_binary_scores.png"))


def test_the_report_opens_offline_with_its_heat_map_labels_inside_the_page(browser, tmp_path: Path):
    """Issue 38: the report's method x class heat map drew its method names at x = -302 px (off the page) and its
    tables ran wider than the page. The results-file report, opened from a file with no server: every heat-map
    tick label lies inside the page, and the page does not scroll sideways."""
    from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR, read_results
    from imbal_core.report import PAGE_WIDTH, results_file_report

    report = tmp_path / "report.html"
    report.write_text(results_file_report(read_results("ham10000_28", [SHIPPED_RESULTS_DIR])), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(report.as_uri())
    heat_map = page.locator(".js-plotly-plot").first
    heat_map.wait_for(timeout=30_000)
    heat_map.scroll_into_view_if_needed()
    page_box = page.locator("body").bounding_box()
    labels = heat_map.locator(".ytick text").all() + heat_map.locator(".xtick text").all()
    assert len(labels) >= 10
    for label in labels:
        box = label.bounding_box()
        assert box["x"] >= page_box["x"] - 1 and box["x"] + box["width"] <= page_box["x"] + PAGE_WIDTH + 1, box
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.get_by_role("heading", name="Provenance").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "report_heat_map.png"))


def _pick_typed(page, label: str, name: str) -> None:
    """Picks `name` in the select box `label`, typed: a long list draws only the options in view."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).get_by_role("combobox")
    box.click()
    box.fill(name)
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)


def _pick_data(page, name: str) -> None:
    """Compare's data set `name` at natural counts (an earlier test's own HAM10000 run is at ratio 10)."""
    _pick_typed(page, "Data set", name)
    _pick_typed(page, "Ratio", "natural")


def test_a_benchmark_archive_in_the_runs_view(app_url: str, browser):
    """Issue 38: the HAM10000 archive opens in Compare's Runs view with its confusion matrices, the mel-vs-nv ROC
    curves and the ranking's critical-difference diagram."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open(page, f"{app_url}/compare", "Compare", "Per-class recall")

    def pick_data(name: str) -> None:
        _pick_data(page, name)

    pick_data("ham10000 28px")
    page.get_by_text("· archive ham10000_28 ·").first.wait_for(timeout=60_000)
    page.get_by_role("tab", name="Confusion matrix").click()
    caption = page.get_by_text("Rows are the true classes, each normalised to 1")
    caption.wait_for(timeout=120_000)
    page.wait_for_timeout(2000)  # plotly draws after the element appears
    caption.scroll_into_view_if_needed()
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(SHOTS / "compare_archive_confusion.png"))
    page.get_by_role("tab", name="Ranking").click()
    ranking = page.get_by_text("Friedman's test that all methods rank alike")
    ranking.wait_for(timeout=60_000)
    ranking.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "compare_archive_ranking.png"))

    pick_data("ham10000 [mel vs nv] 28px")
    heading = page.get_by_role("heading", name="Abnormal vs normal: ROC, precision–recall and scores")
    heading.wait_for(timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    heading.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "compare_archive_roc.png"))


# Where a downloaded SVG's text is cut: outside the picture, beyond its legend's box (plotly clips the legend to the
# box it sized), or under a title. [text, how] per problem.
CUT_TEXT = """(svgText) => {
  const holder = document.createElement('div');
  holder.innerHTML = svgText;
  document.body.appendChild(holder);
  const svg = holder.querySelector('svg');
  const page = svg.getBoundingClientRect();
  const width = parseFloat(svg.getAttribute('width')), height = parseFloat(svg.getAttribute('height'));
  const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim() && t.getBBox().width > 0);
  const box = t => t.getBoundingClientRect();
  const cut = [];
  for (const t of texts) {
    const r = box(t);
    const inside = r.left >= page.left - 1 && r.top >= page.top - 1
      && r.right <= page.left + width + 1 && r.bottom <= page.top + height + 1;
    if (!inside) cut.push([t.textContent, 'outside the picture']);
  }
  for (const legend of svg.querySelectorAll('g.legend')) {
    const frame = legend.querySelector('rect.bg').getBoundingClientRect();
    for (const t of legend.querySelectorAll('text.legendtext'))
      if (box(t).right > frame.right + 1) cut.push([t.textContent, 'beyond its legend']);
  }
  const titles = texts.filter(t => t.matches('.gtitle, .gtitle-subtitle, .legendtitletext'));
  for (const title of titles) {
    const a = box(title);
    for (const t of texts) {
      const b = box(t);
      if (t !== title && a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
        cut.push([t.textContent, 'under the title ' + title.textContent]);
    }
  }
  holder.remove();
  return cut;
}"""


def test_downloaded_charts_keep_their_text_whole(app_url: str, browser):
    """Issue 38: every chart of Compare's tabs, downloaded as SVG with its toolbar's camera (what a reviewer puts
    in a paper), keeps each text inside the picture, inside its legend and clear of its titles. Before, the
    context title of three lines was drawn above the picture and legends cut their last entries' ends (the page's
    web font is narrower than the font a downloaded image is drawn in)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    _open(page, f"{app_url}/compare", "Compare", "Per-class recall")
    page.get_by_text("svg", exact=True).click()
    _idle(page)
    checked: dict[str, list] = {}
    for data, tabs in (
        ("ham10000 28px", ["Method × class", "Paired differences", "Change vs reference", "Validation curves"]),
        ("ham10000 [mel vs nv] 28px", ["Method × class"]),
    ):
        _pick_data(page, data)
        for tab in tabs:
            page.get_by_role("tab", name=tab, exact=True).click()
            _idle(page)
            page.wait_for_timeout(1500)  # plotly draws after the element appears
            charts = page.locator(".js-plotly-plot:visible")
            for i in range(charts.count()):
                chart = charts.nth(i)
                chart.scroll_into_view_if_needed()
                chart.hover()
                with page.expect_download(timeout=60_000) as download:
                    chart.locator('.modebar-btn[data-title^="Download plot"]').click()
                name = f"{data} · {tab} · {download.value.suggested_filename}"
                checked[name] = page.evaluate(CUT_TEXT, Path(download.value.path()).read_text())
    assert len(checked) >= 9 and any("roc.svg" in name for name in checked), list(checked)
    assert {name: cut for name, cut in checked.items() if cut} == {}

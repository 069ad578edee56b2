"""The package as a user gets it: the wheel is built, installed into a fresh virtual environment outside the
repository, and its `imbal-lab` command is used from a temporary folder: --version, listings, a 1-epoch training
on the built-in data, and `imbal-lab app` (health check, the page's HTML, one page rendered in Chromium)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from imbal_core import __version__

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The wheel installed into a new venv; returns its bin folder, a working folder and the environment to use."""
    try:
        import hatchling  # noqa: F401  (the build backend; without it the wheel cannot be built offline)
    except ImportError:
        pytest.skip(
            "hatchling (pyproject.toml's build backend, listed in requirements.txt) is not installed, so "
            "the wheel cannot be built without the network"
        )
    work = tmp_path_factory.mktemp("package")
    # No build isolation and no index: the backend installed in .venv builds the wheel, nothing is downloaded.
    # hatchling writes only the wheel (no build/ or egg-info in the source tree, which others may be using).
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(work / "wheels"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if build.returncode != 0 and "No module named" in build.stderr + build.stdout:
        pytest.skip(f"pip cannot build the wheel offline here: {build.stderr[-500:]}")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (work / "wheels").glob("imbal_lab-*.whl")

    # A fresh venv (no pip: setting one up would need the network or minutes) that reuses the dependencies already
    # installed in the venv running this test, offline: a .pth file in its site-packages runs
    # `site.addsitedir(<our site-packages>)`. addsitedir (not a bare path line) also processes the .pth files found
    # there, so the dependencies import exactly as they do here; and the new venv's own site-packages stays first on
    # sys.path, so `imbal_core` comes from the wheel, not from the repository (asserted below). `--system-site-packages`
    # would not do: the dependencies live in .venv, not in the base Python.
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    new_site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, dict(os.environ)
        ).strip()
    )
    ours = sysconfig.get_paths()["purelib"]
    (new_site / "_imbal_lab_test_deps.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    # pip itself comes from our site-packages through the .pth file; it installs into the running (new) venv.
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], work, dict(os.environ)
    )

    folder = work / "elsewhere"  # the current folder of every command: no repository, no .streamlit/ there
    folder.mkdir()
    home = work / "home"  # the installed lab home defaults to ~/.imbal_lab
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "IMBAL_LAB_HOME", "IMBAL_LAB_PRETRAINED", "IMBAL_LAB_DATA_ROOTS")
    }
    env.update(HOME=str(home), PYTHONNOUSERSITE="1")
    where = _run([str(python), "-c", "import imbal_core; print(imbal_core.__file__)"], folder, env).strip()
    assert Path(where).is_relative_to(venv), f"imbal_core imported from {where}, not from the installed wheel"
    return {"bin": venv / "bin", "folder": folder, "home": home, "env": env, "site": new_site}


def test_version_of_installed_package(installed):
    out = _run([str(installed["bin"] / "imbal-lab"), "--version"], installed["folder"], installed["env"])
    assert out.strip() == f"imbal-lab {__version__}"  # no git commit: the installed package is not a checkout


def test_version_in_checkout():
    out = subprocess.run(
        [sys.executable, "-m", "imbal_core", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.startswith(f"imbal-lab {__version__}")
    if (ROOT / ".git").exists():
        assert "(git " in out, out


def test_listings_and_shipped_data(installed):
    cli = str(installed["bin"] / "imbal-lab")
    out = _run([cli, "methods"], installed["folder"], installed["env"])
    assert "ldam_drw" in out and "balanced_softmax" in out
    # the shipped generators ship as package data, so they are found from any folder
    out = _run([cli, "generators"], installed["folder"], installed["env"])
    assert "diffusion_synthetic_28" in out and "shipped" in out
    assert (installed["site"] / "imbal_core" / "pretrained" / "runs.sqlite").is_file()
    # the shipped benchmark protocols too: `imbal-lab benchmark builtin_ratios` finds them by name
    assert (installed["site"] / "imbal_core" / "protocols" / "builtin_ratios.toml").is_file()
    # and the benchmarks' results files, Compare's reference tables (not the git-ignored result stores)
    shipped_results = installed["site"] / "imbal_core" / "results"
    assert (shipped_results / "builtin_ratios.csv").is_file() and not list(shipped_results.glob("*_store"))


def test_train_one_epoch_from_another_folder(installed):
    cli = str(installed["bin"] / "imbal-lab")
    out = _run(
        [
            cli,
            "train",
            "--method",
            "ce",
            "--epochs",
            "1",
            "--data-option",
            "n_images=700",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--quiet",
        ],
        installed["folder"],
        installed["env"],
    )
    assert "finished" in out
    assert (installed["home"] / ".imbal_lab" / "store" / "runs.sqlite").is_file()  # the installed lab home
    assert "ce" in _run([cli, "runs"], installed["folder"], installed["env"])
    assert not (installed["folder"] / "lab_data").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(installed):
    port = _free_port()
    log = installed["folder"].parent / "app.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(installed["bin"] / "imbal-lab"), "app", "--server.port", str(port)],
            cwd=installed["folder"],
            env=installed["env"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"`imbal-lab app` did not start: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, log
    finally:
        server.terminate()
        server.wait(30)


def test_app_serves_health_and_page(served_app):
    url, log = served_app
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read() == b"ok"
    html = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "<title>" in html and "static/js/" in html  # Streamlit's page, which then runs app.py over a websocket
    assert "Traceback" not in log.read_text()
    address = _other_address()
    if address is not None:  # bound to 127.0.0.1 by default (.streamlit/config.toml's option, passed as a flag)
        with pytest.raises(OSError):
            socket.create_connection((address, int(url.rsplit(":", 1)[1])), timeout=2).close()


def _other_address() -> str | None:
    """An address of this machine other than loopback, if it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_app_page_renders_in_browser(served_app):
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (`make test` installs it), so the page is not rendered")
    from playwright.sync_api import sync_playwright

    url, log = served_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("heading", name="Imbalance Lab", exact=True).first.wait_for(timeout=120_000)
            page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
            assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:3000]
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        finally:
            browser.close()
    assert "imbal_core/pretrained" in sidebar, sidebar  # the pretrained runs found as package data
    assert ".imbal_lab" in sidebar, sidebar  # and the installed lab home
    assert "Traceback" not in log.read_text()

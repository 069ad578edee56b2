"""Benchmark of the app's speed goals (not a test; run by hand):

1. First chart on Compare and on Data, from the pretrained results: time from opening the page in
   a fresh browser session (headless Chromium, `streamlit run app.py`) to the first chart on
   screen, and the server-side part of Compare's alone (reading runs and metrics, building the
   figure). Measured in the same run: the floor of the stack, a bare Streamlit page with one
   plotly chart of the same size (benchmarks/floor_page.py); goal: at most 1.2x the floor
   (and under 3 s on a desktop-class machine). The floor with one more stock element (a table; the
   filters and run picker) shows what each of those costs alone. Pages are timed in turn so load on
   the machine falls on each alike.
2. Grad-CAM of 4 models on one 64 px image (captum LayerGradCam, models already loaded).
   Goal: under 1 s on CPU. The 4 models are trained here for 1 epoch at 64 px (timing does not
   depend on how well they are trained).

    .venv/bin/python benchmarks/app_speed.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imbal_core.data import load_dataset  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.engine.evaluate import load_run_model  # noqa: E402
from imbal_core.explain import grad_cam  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _serve(script: str, home: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT,
        env={**os.environ, "IMBAL_LAB_HOME": home},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    return server, url


def first_chart_seconds(repeats: int = 5) -> dict[str, list[float]]:
    """Seconds from opening each page in a fresh session to its first plotly chart on screen."""
    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp()
    app, app_url = _serve("app.py", home)
    floor, floor_url = _serve("benchmarks/floor_page.py", home)
    pages = {
        "floor (bare page, one chart)": floor_url,
        "floor + a 14 x 12 st.dataframe": f"{floor_url}/?with=dataframe",
        "floor + 2 selectboxes and a 14-chip multiselect": f"{floor_url}/?with=widgets",
        "floor + both (the stock elements above Compare's first chart)": f"{floor_url}/?with=both",
        "Compare": f"{app_url}/compare",
        "Data": f"{app_url}/data",
    }
    times: dict[str, list[float]] = {name: [] for name in pages}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for url in pages.values():  # warm-up: first imports and caches of each server
                page = browser.new_page()
                page.goto(url)
                page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
                page.close()
            for _ in range(repeats):
                for name, url in pages.items():
                    page = browser.new_page()  # a fresh session each time
                    start = time.perf_counter()
                    page.goto(url)
                    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                    times[name].append(time.perf_counter() - start)
                    page.close()
            browser.close()
        return times
    finally:
        app.terminate()
        floor.terminate()


def compare_chart_compute_seconds(repeats: int = 5) -> list[float]:
    """Server-side work behind the first Compare chart: read the runs, their metrics, build the figure."""
    from imbal_core import charts
    from imbal_core.compare import finished_runs, load_results, per_class_table, stores

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runs = finished_runs(stores(RunStore(tempfile.mkdtemp())))
        charts.per_class_bars(per_class_table(load_results(runs.head(12)))).to_json()
        times.append(time.perf_counter() - start)
    return times


def grad_cam_seconds(repeats: int = 5) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        options: dict[str, Any] = {"n_images": 700}
        run_ids = [
            train(TrainConfig(method=m, epochs=1, image_size=64, data_options=options, device="cpu"), store)
            for m in ("ce", "ldam_drw", "lws", "focal")
        ]
        models = [load_run_model(store, r)[0] for r in run_ids]
        image = load_dataset("synthetic", image_size=64, **options).test.images[:1]
        for model in models:  # warm-up
            grad_cam(model, image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for model in models:
                grad_cam(model, image)
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    charts_seconds = first_chart_seconds()
    compute = compare_chart_compute_seconds()
    cam = grad_cam_seconds()
    floor = median(charts_seconds["floor (bare page, one chart)"])
    print("\n| measurement | runs | median s | max s | x floor | goal |")
    print("|---|---|---|---|---|---|")
    for name, values in charts_seconds.items():
        goal = "" if name.startswith("floor") else "<= 1.2x floor"  # floor + one element: what that element costs
        print(
            f"| first chart: {name} (fresh headless-Chromium session) | {len(values)} | {median(values):.2f} | "
            f"{max(values):.2f} | {median(values) / floor:.2f} | {goal} |"
        )
    print(
        f"| first Compare chart, server-side work only | {len(compute)} | {median(compute):.3f} | "
        f"{max(compute):.3f} | | |"
    )
    print(f"| Grad-CAM, 4 models, one 64 px image | {len(cam)} | {median(cam):.3f} | {max(cam):.3f} | | < 1 s |")


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


if __name__ == "__main__":
    main()

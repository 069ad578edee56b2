"""Benchmark of the app's two speed goals (not a test; run by hand):

1. First chart on Compare, from the pretrained results: time from opening the page in a fresh
   browser session (headless Chromium, `streamlit run app.py`) to the per-class chart on screen,
   and the server-side part of it alone (reading runs and metrics, building the figure).
   Goal: under 3 s on CPU.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imbal_core.data import load_dataset  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.engine.evaluate import load_run_model  # noqa: E402
from imbal_core.explain import grad_cam  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def first_compare_chart_seconds(repeats: int = 3) -> list[float]:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=ROOT, env={**os.environ, "IMBAL_LAB_HOME": home},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        times = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for _ in range(repeats):
                page = browser.new_page()  # a fresh session each time
                start = time.perf_counter()
                page.goto(f"{url}/compare")
                page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                times.append(time.perf_counter() - start)
                page.close()
            browser.close()
        return times
    finally:
        server.terminate()


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
        options = {"n_images": 700}
        run_ids = [train(TrainConfig(method=m, epochs=1, image_size=64, data_options=options, device="cpu"), store)
                   for m in ("ce", "ldam_drw", "lws", "focal")]
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
    chart = first_compare_chart_seconds()
    compute = compare_chart_compute_seconds()
    cam = grad_cam_seconds()
    print("\n| measurement | runs | median s | max s | goal |")
    print("|---|---|---|---|---|")
    print(f"| first chart on Compare (fresh browser session) | {len(chart)} | {sorted(chart)[len(chart) // 2]:.2f} | "
          f"{max(chart):.2f} | < 3 s |")
    print(f"| first Compare chart, server-side work only | {len(compute)} | {sorted(compute)[len(compute) // 2]:.3f} | "
          f"{max(compute):.3f} | |")
    print(f"| Grad-CAM, 4 models, one 64 px image | {len(cam)} | {sorted(cam)[len(cam) // 2]:.3f} | {max(cam):.3f} | < 1 s |")


if __name__ == "__main__":
    main()

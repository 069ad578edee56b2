"""Benchmark of the Stop goal (not a test; run by hand): a run stops within one training step of the request.

Trains ce on the built-in data (28 px, batch 64, CPU) in a thread, as the app's job runner does, sets the stop event
from another thread half a step after a step began (as a click does, mid-step), and times how long `train` takes to
return after that; also the median step time of the same run. Goal: the stop acts within one step, at most 2 s at
28 px on the CPU. Repeated 3 times; the table gives each and the median.

    .venv/bin/python benchmarks/stop_latency.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402

STOP_AT_STEP = 41  # progress events come every 10 steps; the request is made during the step after one


def one_stop(store: RunStore) -> tuple[float, float]:
    """(seconds from the stop request to `train` returning, median seconds per step before it)."""
    stop, requested = threading.Event(), [0.0]
    step_times: list[float] = []
    last = [time.perf_counter()]

    def progress(event: dict) -> None:
        if event["event"] != "step":
            return
        now = time.perf_counter()
        step_times.append((now - last[0]) / 10)  # events come every 10 steps
        last[0] = now
        if event["step"] >= STOP_AT_STEP and not requested[0]:  # from another thread, half a step later: mid-step
            requested[0] = -1.0
            threading.Timer(statistics.median(step_times[1:]) / 2, request).start()

    def request() -> None:
        requested[0] = time.perf_counter()
        stop.set()

    config = TrainConfig(data="synthetic", method="ce", epochs=2, device="cpu", seed=0)
    worker = threading.Thread(target=lambda: train(config, store, progress=progress, stop_event=stop))
    worker.start()
    worker.join()
    return time.perf_counter() - requested[0], statistics.median(step_times[1:])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder))
        rows = [one_stop(store) for _ in range(3)]
    print("| try | stop to return (s) | median step (s) |\n|---|---|---|")
    for i, (latency, step) in enumerate(rows, 1):
        print(f"| {i} | {latency:.3f} | {step:.3f} |")
    print(f"| median | {statistics.median(r[0] for r in rows):.3f} | {statistics.median(r[1] for r in rows):.3f} |")


if __name__ == "__main__":
    main()

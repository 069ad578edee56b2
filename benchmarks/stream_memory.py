"""Benchmark: peak resident memory of training on a data set at a large size, its images held vs streamed.

The data cache is built first in a process of its own (building decodes every image once); then each placement
trains in a fresh process for a number of steps and reports its peak resident memory (VmHWM) and its speed.
Streamed, a batch's rows are read from the cache's `.npy` file with `pread`, so the file's pages stay in the page
cache, not in the process. Target: HAM10000 at 224 px trains in <= 2 GB resident memory streamed. Prints a table.

    .venv/bin/python benchmarks/stream_memory.py                          # HAM10000 (../shared) at 224 px
    .venv/bin/python benchmarks/stream_memory.py --image-size 128 --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_HAM = ROOT.parent / "shared" / "data" / "ham10000"


def memory_status(field: str) -> int:
    """A field of /proc/self/status in bytes: VmHWM (peak resident memory), VmRSS, RssFile (file pages in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def train_steps(args: argparse.Namespace) -> None:
    """In a fresh process: train until `--steps` steps are done, then print peak memory and speed as JSON."""
    import torch

    from imbal_core.engine import TrainConfig, train
    from imbal_core.runs import RunStore

    torch.set_num_threads(args.threads)
    config = TrainConfig(
        data=args.data,
        data_path=args.path,
        image_size=args.image_size,
        backbone=args.backbone,
        batch_size=args.batch_size,
        epochs=1,
        device=args.device,
        data_placement=args.placement,
    )
    stop, stamps = threading.Event(), {}

    def progress(event: dict) -> None:
        if event["event"] == "step":
            stamps[event["step"]] = time.perf_counter()
            if event["step"] > args.steps:
                stop.set()

    before = memory_status("VmRSS")
    with tempfile.TemporaryDirectory() as tmp:
        train(config, RunStore(tmp), progress=progress, stop_event=stop)
    first, last = min(stamps), max(stamps)
    print(
        json.dumps(
            {
                "placement": args.placement,
                "peak_rss": memory_status("VmHWM"),
                "rss_before": before,
                "file_pages": memory_status("RssFile"),
                "images_per_s": (last - first) * args.batch_size / (stamps[last] - stamps[first]),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ham10000")
    parser.add_argument("--path", default=str(SHARED_HAM))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", default="resnet10t_small")
    parser.add_argument("--batch-size", type=int, default=32, help="the model's activations grow with it")
    parser.add_argument("--steps", type=int, default=30, help="training steps per placement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--placements", default="stream,device")
    parser.add_argument("--placement", help=argparse.SUPPRESS)  # set in the child processes
    args = parser.parse_args()
    if args.placement:
        train_steps(args)
        return

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    build = (
        "from imbal_core.data import load_dataset; "
        f"d = load_dataset({args.data!r}, path={args.path!r}, image_size={args.image_size}); "
        "print(sum(s.images.nbytes for s in d.splits.values()), d.train.images.nbytes)"
    )
    total, train_bytes = map(
        int,
        subprocess.run(
            [sys.executable, "-c", build], env=env, check=True, capture_output=True, text=True
        ).stdout.split(),
    )
    print(
        f"data cache ready in {time.perf_counter() - started:.0f} s: {total / 1e9:.2f} GB in all, "
        f"training split {train_bytes / 1e9:.2f} GB"
    )
    results = []
    for placement in args.placements.split(","):
        child = [sys.executable, __file__, *sys.argv[1:], "--placement", placement]
        out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))

    print(
        f"\n{args.data} at {args.image_size} px, {args.backbone}, batch {args.batch_size}, {args.steps} steps, "
        f"device {args.device}, {args.threads} torch threads\n"
    )
    print("| training images | peak resident memory | before training (libraries) | file pages at the end | images/s |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['placement']} | {r['peak_rss'] / 2**30:.2f} GiB | {r['rss_before'] / 2**30:.2f} GiB | "
            f"{r['file_pages'] / 2**30:.2f} GiB | {r['images_per_s']:.1f} |"
        )
    streamed = next((r for r in results if r["placement"] == "stream"), None)
    if streamed is not None:
        verdict = "met" if streamed["peak_rss"] <= 2 * 2**30 else "NOT met"
        print(f"\nstreamed peak {streamed['peak_rss'] / 2**30:.2f} GiB: target <= 2 GiB {verdict}")


if __name__ == "__main__":
    main()

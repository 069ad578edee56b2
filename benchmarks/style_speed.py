"""Benchmark: stylising one batch with each style tool (goal: 256 images at 28 px well under 1 s on
CPU for Fourier and histogram matching). Prints a table of the median of several repeats.

    .venv/bin/python benchmarks/style_speed.py                    # CPU, built-in data, 256 x 28 px
    .venv/bin/python benchmarks/style_speed.py --device cuda --batch 1024 --image-size 64

AdaIN uses the shipped model for the built-in data at 28 px, else an untrained model of the same
size (the speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imbal_core.data import load_dataset  # noqa: E402
from imbal_core.errors import ConfigError  # noqa: E402
from imbal_core.synth.style import AdaINModel, create_style_tool, stylise_uint8  # noqa: E402
from imbal_core.synth.style_models import load_style_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    dataset = load_dataset("synthetic", image_size=args.image_size, n_images=3 * args.batch + 300)
    images = torch.from_numpy(dataset.train.images).permute(0, 3, 1, 2).to(device)
    content, style = images[: args.batch], images[args.batch : 2 * args.batch]
    try:
        adain_model = load_style_model(f"adain_synthetic_{args.image_size}", device)
        adain_label = "adain (shipped model)"
    except ConfigError:
        adain_model = AdaINModel(3, 32).to(device).eval()
        adain_label = "adain (untrained, same size)"
    tools = {
        "fourier (beta 0.1)": create_style_tool("fourier", beta=0.1),
        "histogram": create_style_tool("histogram"),
        adain_label: create_style_tool("adain", model=adain_model),
    }
    print(
        f"{len(content)} images, {args.image_size} px, {device}, {torch.get_num_threads()} CPU threads; "
        f"median of {args.repeats}"
    )
    print("| tool | seconds per batch | images per second |\n|---|---|---|")
    for name, tool in tools.items():
        stylise_uint8(tool, content, style, 1.0)  # warm-up
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            stylise_uint8(tool, content, style, 1.0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"| {name} | {median:.4f} | {len(content) / median:,.0f} |")


if __name__ == "__main__":
    main()

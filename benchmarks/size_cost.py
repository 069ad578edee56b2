"""Benchmark: what one training image costs at each image size, engine and model alone, on this machine.

For each size, the built-in data is drawn at that size and one warm epoch is trained with the engine (augmentation,
sampling, the method's loss, the optimiser); the model-only step (forward, cross-entropy, backward, AdamW on batches
already in memory) is timed beside it (`epoch_speed.py` holds both timers). Below 112 px the backbone's earliest
strides are removed so the last map stays 4x4; from 112 px the published architecture runs, so cost does not grow with
the square of the side. Prints a table. Not a test: run it by hand.

    .venv/bin/python benchmarks/size_cost.py                                # 28, 64, 128, 224 px, one torch thread
    .venv/bin/python benchmarks/size_cost.py --sizes 128,224 --backbone resnet18 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from epoch_speed import device_name, engine_step_seconds, model_step_seconds  # noqa: E402

from imbal_core.data import load_dataset  # noqa: E402
from imbal_core.engine import TrainConfig  # noqa: E402
from imbal_core.models import create_model  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="28,64,128,224", help="comma-separated image sizes")
    parser.add_argument("--n-images", type=int, default=1500, help="built-in images drawn per size (70 %% train)")
    parser.add_argument("--backbone", default="resnet10t_small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the benchmarks' runs use 1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            started = time.perf_counter()
            dataset = load_dataset("synthetic", image_size=size, n_images=args.n_images)
            drawn = time.perf_counter() - started
            config = TrainConfig(
                data_options={"n_images": args.n_images},
                image_size=size,
                backbone=args.backbone,
                epochs=2,  # the second epoch is timed
                batch_size=args.batch_size,
                device=args.device,
            )
            images, labels = np.asarray(dataset.train.images), dataset.train.labels
            store = RunStore(Path(tmp) / str(size))
            engine_step, _ = engine_step_seconds(config, store, len(labels) // args.batch_size)
            model_step = model_step_seconds(images, labels, config, device)
            model = create_model(args.backbone, image_size=size)
            final = model.forward_features(torch.zeros(1, 3, size, size)).shape[-1]
            rows.append((size, engine_step, model_step, final, model.adapted, drawn))

    base = rows[0][1] / args.batch_size
    print(
        f"\nOne training image, {args.backbone}, batch {args.batch_size}, device {device} ({device_name(device)}), "
        f"{args.threads} torch thread(s); built-in data, {args.n_images} images per size\n"
    )
    print(
        "| size | engine ms / image | model-only ms / image | engine / model | vs first size | last map "
        "| strides removed |"
    )
    print("|---|---|---|---|---|---|---|")
    for size, engine_step, model_step, final, adapted, _ in rows:
        per_image = engine_step / args.batch_size
        print(
            f"| {size} px | {per_image * 1000:.2f} | {model_step / args.batch_size * 1000:.2f} | "
            f"{engine_step / model_step:.2f} | {per_image / base:.1f}x | {final}x{final} | "
            f"{', '.join(adapted) or 'none'} |"
        )
    drawing = ", ".join(f"{size} px {drawn:.1f} s" for size, *_, drawn in rows)
    print(f"\nDrawing (or reading from the cache) the built-in data: {drawing}")


if __name__ == "__main__":
    main()

"""Benchmark: what the diffusion UNet predicts (v or the noise) and the colours of its samples.

Trains two diffusion models on the built-in data with the same recipe except `prediction`
(v_prediction, epsilon), samples 6 images per class from each with DDIM at 25 and 100 steps
(guidance 2), and prints per-channel mean and standard deviation of the samples' pixels beside
the real training images'. A model whose 25-step samples have twice the real spread has colour
casts; the same model at 100 steps shows whether the sampler or the model is at fault.
Not a test: run it by hand (about 12 minutes on 2 CPU cores at the default 10 epochs).

    .venv/bin/python benchmarks/diffusion_prediction.py [--epochs 10] [--generator NAME ...]

`--generator` adds existing models (e.g. an older epsilon-prediction file) to the table.
Models are trained in a temporary folder: your generators are not touched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imbal_core.synth.diffusion import PREDICTIONS, DiffusionTrainConfig, load_diffusion_model  # noqa: E402
from imbal_core.synth.generators import train_generator, training_split  # noqa: E402

STEPS = (25, 100)


def channel_stats(images: torch.Tensor) -> str:
    """'mean (sd)' per channel of uint8 images (N, C, H, W)."""
    x = images.float()
    return " / ".join(f"{m:.0f} ({s:.0f})" for m, s in zip(x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--generator", action="append", default=[], help="also sample this existing model")
    args = parser.parse_args()

    recipes = {
        p: DiffusionTrainConfig(data="synthetic", epochs=args.epochs, width=16, device="cpu", prediction=p)
        for p in PREDICTIONS
    }
    real = training_split(recipes["epsilon"]).images
    print(
        f"Built-in data, 28 px; models: width 16, {args.epochs} epochs, seed 0; DDIM, guidance 2, "
        f"{args.per_class} images per class, seed 0. Pixel mean (sd) per channel, R / G / B.\n"
    )
    print("| model | " + " | ".join(f"{s} steps" for s in STEPS) + " |")
    print("|---|" + "---|" * len(STEPS))
    print(f"| real training images | {channel_stats(real)} |" + " |" * (len(STEPS) - 1))
    with tempfile.TemporaryDirectory() as folder:
        models = {
            f"{p}, {args.epochs} epochs": train_generator(recipe, f"probe_{p}", folder) for p, recipe in recipes.items()
        }
        models.update({name: name for name in args.generator})
        for name, reference in models.items():
            model = load_diffusion_model(str(reference))
            labels = torch.arange(model.num_classes).repeat(args.per_class)
            cells = []
            for steps in STEPS:
                images, _ = model.sample(labels, steps=steps, guidance=2.0, generator=torch.Generator().manual_seed(0))
                cells.append(channel_stats(images))
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

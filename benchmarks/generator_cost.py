"""Pilot for a 64 px generator (issue 35): what a training epoch and a demo's sampling cost, pixel vs latent space.

Prints one Markdown table. For each candidate (untrained: the cost does not depend on the weights):
- seconds per training step (median of `--repeats` after a warm-up) and the epoch that makes over a training set of
  `--train-images` images (HAM10000's training split has 7023);
- seconds to sample 16 images at 25 DDIM steps with guidance 2 (classifier-free guidance doubles the UNet batch),
  decoding included; goal: <= 10 s on the 2-core CPU.
Candidates: the 28 px pixel UNet that ships (for scale), pixel UNets at 64 px, and latent diffusion at 64 px (its
autoencoder's step, then its UNet on 16x16x4 latents). With `--generator NAME` the sampling of a trained model is
timed as well.

    .venv/bin/python benchmarks/generator_cost.py
    .venv/bin/python benchmarks/generator_cost.py --generator diffusion_ham10000_64 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imbal_core.synth.diffusion import DiffusionModel, load_diffusion_model  # noqa: E402

NUM_CLASSES = 7  # HAM10000
SAMPLE_TARGET_S = 10.0


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model(image_size: int, width: int, latent_channels: int = 0) -> DiffusionModel:
    return DiffusionModel(
        3, NUM_CLASSES, image_size, width, 1, 1000, "squaredcos_cap_v2", latent_channels=latent_channels
    )


def unet_step(diffusion: DiffusionModel, batch: int) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(diffusion.unet.parameters(), lr=1e-4)
    x = torch.randn(batch, diffusion.space[0], diffusion.space[1], diffusion.space[1])
    t, labels = torch.randint(1000, (batch,)), torch.randint(NUM_CLASSES, (batch,))

    def step() -> None:
        loss = diffusion.predict(x, t, labels).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def autoencoder_step(diffusion: DiffusionModel, batch: int) -> Callable[[], None]:
    assert diffusion.codec is not None
    codec = diffusion.codec
    optimizer = torch.optim.AdamW(codec.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, diffusion.image_size, diffusion.image_size) * 2 - 1
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = codec.loss(x, generator, 1e-6)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def sampling(diffusion: DiffusionModel, repeats: int) -> float:
    labels = torch.arange(16) % diffusion.num_classes
    generator = torch.Generator().manual_seed(0)
    return median_seconds(lambda: diffusion.sample(labels, steps=25, guidance=2.0, generator=generator), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=7023, help="training images per epoch")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice)")
    parser.add_argument("--generator", help="also time sampling from this trained diffusion model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows: list[tuple[str, str, int, float | None, float | None, float | None]] = []  # s/step, s/epoch, s/sample
    candidates = [
        ("pixel 28 px, width 16 (ships)", model(28, 16), 128),
        ("pixel 64 px, width 16", model(64, 16), 128),
        ("pixel 64 px, width 32", model(64, 32), 128),
        ("latent 64 px -> 16x16x4, UNet width 32", model(64, 32, latent_channels=4), 128),
        ("latent 64 px -> 16x16x4, UNet width 48", model(64, 48, latent_channels=4), 128),
    ]
    with torch.no_grad():
        sample_seconds = {name: sampling(diffusion.eval(), args.repeats) for name, diffusion, _ in candidates}
    for name, diffusion, batch in candidates:
        diffusion.train()
        if diffusion.codec is not None:
            ae_batch = 32
            seconds = median_seconds(autoencoder_step(diffusion, ae_batch), args.repeats)
            rows.append(
                (name, "autoencoder (width 16)", ae_batch, seconds, seconds * args.train_images / ae_batch, None)
            )
        seconds = median_seconds(unet_step(diffusion, batch), args.repeats)
        rows.append((name, "UNet", batch, seconds, seconds * args.train_images / batch, sample_seconds[name]))
    if args.generator:
        trained = load_diffusion_model(args.generator)
        with torch.no_grad():
            rows.append((f"trained: {args.generator}", "sampling", 16, None, None, sampling(trained, args.repeats)))

    print(
        f"\nGenerator cost on the CPU ({torch.get_num_threads()} threads), median of {args.repeats}; an epoch is "
        f"{args.train_images} training images; sampling: 16 images, 25 DDIM steps, guidance 2 (goal <= "
        f"{SAMPLE_TARGET_S:g} s)\n"
    )
    print("| candidate | part | batch | s / step | s / epoch | s to sample 16 |")
    print("|---|---|---|---|---|---|")
    for name, part, batch, step, epoch, sample in rows:
        cells = [f"{v:.2f}" if v is not None else "" for v in (step, epoch, sample)]
        print(f"| {name} | {part} | {batch} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

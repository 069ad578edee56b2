"""Benchmark: one training epoch of our engine vs a reference loop in the style of the official
MedMNIST training script (torch DataLoader over PIL images, per-sample torchvision transforms).

Same model, batch size, optimizer and images in both. Two reference variants are timed:
  reference_official  ToTensor + Normalize only, as in the MedMNIST script
  reference_augmented the same augmentation as ours (flips, 90-degree turns, affine, colour
                      jitter), done per image with torchvision transforms on PIL images
Prints a table and the speed-up ratios. Not a test: run it by hand.

It also splits the engine's step from the model's: the engine's seconds per training step (from its own
progress events in a warm epoch: augmentation, sampling, the method's loss, the optimiser) over the seconds per
step of the model alone (forward, cross-entropy, backward, AdamW on batches already in memory, no augmentation).
Target: at most 1.10 on CPU, i.e. the engine adds at most 10 % to what the model itself costs.

    .venv/bin/python benchmarks/epoch_speed.py                       # HAM10000 if ../shared has it
    .venv/bin/python benchmarks/epoch_speed.py --data synthetic --device cuda
    .venv/bin/python benchmarks/epoch_speed.py --device cuda --image-size 224 --backbone resnet50 \
        --pretrained resnet50.a1_in1k --batch-size 128                # the GPU path: bf16, channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imbal_core.data import load_dataset  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.engine.trainer import build_model  # noqa: E402
from imbal_core.models import default_backbone  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402

SHARED_HAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"


class RandomRot90:
    def __call__(self, img: Image.Image) -> Image.Image:
        return img.rotate(90 * random.randint(0, 3))


class PILDataset(Dataset):
    """What the MedMNIST script does: numpy -> PIL image -> transforms, one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: transforms.Compose) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_epoch(images, labels, config: TrainConfig, transform, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(config, 7 if labels.max() < 7 else int(labels.max()) + 1, 3).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = DataLoader(PILDataset(images, labels, transform), batch_size=config.batch_size, shuffle=True)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def engine_step_seconds(config: TrainConfig, store: RunStore, full_steps: int) -> tuple[float, float]:
    """(seconds per step of the engine's last epoch, that epoch's seconds with validation).

    Step times come from the engine's own progress events (sent every few steps), from the end of the epoch's first
    step to the last event within its `full_steps` full batches: validation, checkpoints, the first step's warm-up
    and a partial last batch are outside them.
    """
    stamps: dict[int, float] = {}

    def progress(event: dict) -> None:
        if event["event"] == "step" and event["epoch"] == config.epochs - 1:
            stamps[event["step"]] = time.perf_counter()

    run_id = train(config, store, progress=progress)
    first, last = min(stamps), max(step for step in stamps if step <= full_steps)
    return (stamps[last] - stamps[first]) / (last - first), store.get_run(run_id)["progress"]["history"][-1]["seconds"]


def model_step_seconds(images: np.ndarray, labels: np.ndarray, config: TrainConfig, device: torch.device) -> float:
    """Seconds per step of the model alone on the epoch's full batches, already normalised and in memory.

    As in the engine: the model and inputs in channels-last memory format, bf16 autocast on CUDA when `config.amp`.
    Two passes; the second is timed.
    """
    torch.manual_seed(0)
    model = build_model(config, int(labels.max()) + 1, images.shape[-1]).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5).to(device)
    y_all = torch.from_numpy(labels).long().to(device)
    size = config.batch_size
    batches = [
        (x_all[i : i + size].contiguous(memory_format=torch.channels_last), y_all[i : i + size])
        for i in range(0, len(labels) - size + 1, size)
    ]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and config.amp else nullcontext()
    model.train()

    def one_pass() -> None:
        for x, y in batches:
            with autocast:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    one_pass()  # warm, as the engine's timed second epoch is
    start = time.perf_counter()
    one_pass()
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ham10000" if SHARED_HAM.exists() else "synthetic")
    parser.add_argument("--path", help="data folder (default for ham10000: ../shared/data/ham10000)")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help="e.g. n_images=2000")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backbone", default=None, help="default: the --pretrained tag's architecture, or the lab's")
    parser.add_argument("--pretrained", help="a timm tag (from the hub cache) or a weights file")
    parser.add_argument("--data-placement", default="auto", choices=("auto", "device", "stream"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="engine and model-only timings, alternated; medians")
    args = parser.parse_args()
    if args.path is None and args.data == "ham10000":
        args.path = str(SHARED_HAM)
    device = torch.device(args.device)
    options = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.data_option)}
    config = TrainConfig(
        data=args.data,
        data_path=args.path,
        data_options=options,
        image_size=args.image_size,
        backbone=args.backbone or default_backbone(args.pretrained),
        pretrained=args.pretrained,
        epochs=2,  # the second epoch is timed: allocator and caches are warm
        batch_size=args.batch_size,
        device=args.device,
        data_placement=args.data_placement,
    )
    dataset = load_dataset(args.data, path=args.path, image_size=args.image_size, **options)
    images, labels = dataset.train.images, dataset.train.labels

    engine_steps, engine_epochs, model_steps = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        for _ in range(args.repeats):
            step, epoch = engine_step_seconds(config, store, len(labels) // config.batch_size)
            engine_steps.append(step)
            engine_epochs.append(epoch)
            model_steps.append(model_step_seconds(images, labels, config, device))
    ours = float(np.median(engine_epochs))
    engine_step, model_step = float(np.median(engine_steps)), float(np.median(model_steps))

    normalise = [transforms.ToTensor(), transforms.Normalize(mean=[0.5], std=[0.5])]
    augmented = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            RandomRot90(),
            transforms.RandomAffine(15, translate=(0.08, 0.08), scale=(0.9, 1.1)),
            transforms.ColorJitter(0.15, 0.15, 0.15),
            *normalise,
        ]
    )
    official = reference_epoch(images, labels, config, transforms.Compose(normalise), device)
    reference = reference_epoch(images, labels, config, augmented, device)

    print(
        f"\nOne epoch: {len(labels)} images of {args.image_size} px from {args.data}, batch {args.batch_size}, "
        f"backbone {config.backbone}"
        + (f" from {config.pretrained}" if config.pretrained else "")
        + f", device {device} ({device_name(device)}, {torch.get_num_threads()} threads)\n"
    )
    print("| loop | seconds | images/s | ours is faster by |")
    print("|---|---|---|---|")
    for name, seconds in (
        ("imbal_core engine (augmented on device)", ours),
        ("reference, per-image torchvision augmentation", reference),
        ("reference, official MedMNIST transforms (no augmentation)", official),
    ):
        print(f"| {name} | {seconds:.2f} | {len(labels) / seconds:.0f} | {seconds / ours:.2f}x |")
    print(f"\nOne training step (median of {args.repeats}, batch {args.batch_size}):\n")
    print("| step | ms |")
    print("|---|---|")
    print(f"| imbal_core engine (augmentation, sampling, method loss, optimiser) | {engine_step * 1000:.1f} |")
    print(f"| model alone (forward, cross-entropy, backward, AdamW; batches in memory) | {model_step * 1000:.1f} |")
    print(f"\nengine step / model-only step = {engine_step / model_step:.3f} (target <= 1.10 on CPU)")
    print(
        f"engine images/s = {config.batch_size / engine_step:.0f}, model-only images/s = "
        f"{config.batch_size / model_step:.0f}: the engine gives {model_step / engine_step:.2f}x the model-only "
        "throughput (target >= 0.8 on a GPU)"
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()

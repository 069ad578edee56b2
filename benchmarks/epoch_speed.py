"""Benchmark: one training epoch of our engine vs a reference loop in the style of the official
MedMNIST training script (torch DataLoader over PIL images, per-sample torchvision transforms).

Same model, batch size, optimizer and images in both. Two reference variants are timed:
  reference_official  ToTensor + Normalize only, as in the MedMNIST script
  reference_augmented the same augmentation as ours (flips, 90-degree turns, affine, colour
                      jitter), done per image with torchvision transforms on PIL images
Prints a table and the speed-up ratios. Not a test: run it by hand.

    .venv/bin/python benchmarks/epoch_speed.py                       # HAM10000 if ../shared has it
    .venv/bin/python benchmarks/epoch_speed.py --data synthetic --device cuda
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ham10000" if SHARED_HAM.exists() else "synthetic")
    parser.add_argument("--path", default=str(SHARED_HAM) if SHARED_HAM.exists() else None)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = TrainConfig(
        data=args.data,
        data_path=args.path,
        image_size=args.image_size,
        epochs=1,
        batch_size=args.batch_size,
        device=args.device,
    )
    dataset = load_dataset(args.data, path=args.path, image_size=args.image_size)
    images, labels = dataset.train.images, dataset.train.labels

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        train(config, store)  # warm-up (allocator, caches)
        run_id = train(config, store)
        ours = store.get_run(run_id)["progress"]["history"][0]["seconds"]

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
        f"backbone {config.backbone}, device {device} ({torch.get_num_threads()} threads)\n"
    )
    print("| loop | seconds | images/s | ours is faster by |")
    print("|---|---|---|---|")
    for name, seconds in (
        ("imbal_core engine (augmented on device)", ours),
        ("reference, per-image torchvision augmentation", reference),
        ("reference, official MedMNIST transforms (no augmentation)", official),
    ):
        print(f"| {name} | {seconds:.2f} | {len(labels) / seconds:.0f} | {seconds / ours:.2f}x |")


if __name__ == "__main__":
    main()

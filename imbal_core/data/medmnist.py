"""Any 2D MedMNIST .npz in the official layout (train_images, train_labels, val_..., test_...)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import SPLITS, ImageDataset, Split, register_source
from .images import resize_array

DEFAULT_ROOT = Path("~/.medmnist").expanduser()
# Label names of the sets we use most; others are named from the medmnist package when
# installed, else class_0, class_1, ...
KNOWN_LABELS = {
    "retinamnist": ["grade_0", "grade_1", "grade_2", "grade_3", "grade_4"],
    "dermamnist": ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"],
    "breastmnist": ["malignant", "normal_or_benign"],
    "pneumoniamnist": ["normal", "pneumonia"],
}


def _find_file(path: Path | None, flag: str | None, image_size: int) -> Path:
    if path is not None and path.is_file():
        return path
    if flag is None:
        raise DataError("give the .npz file itself, or a folder plus flag=<name> (e.g. flag=retinamnist)")
    root = path or DEFAULT_ROOT
    for candidate in (root / f"{flag}_{image_size}.npz", root / f"{flag}.npz"):
        if candidate.exists():
            return candidate
    raise DataError(
        f"{flag}.npz not found in {root}. Offline, copy the official file there (e.g. {root / (flag + '.npz')}) "
        "or pass its path; online, run `pip install medmnist` and load once with download=True"
    )


def _download(flag: str, root: Path) -> None:
    try:
        import medmnist  # optional: only for users who are online
    except ImportError:
        raise DataError("download=True needs the medmnist package: pip install medmnist") from None
    info = medmnist.INFO.get(flag)
    if info is None:
        raise DataError(f"unknown MedMNIST flag {flag!r}; choose one of {sorted(medmnist.INFO)}")
    root.mkdir(parents=True, exist_ok=True)
    getattr(medmnist, info["python_class"])(split="train", download=True, root=str(root))


def _class_names(flag: str, num_classes: int) -> list[str]:
    if flag in KNOWN_LABELS and len(KNOWN_LABELS[flag]) == num_classes:
        return KNOWN_LABELS[flag]
    try:
        import medmnist

        names = medmnist.INFO[flag]["label"]
        return [names[str(i)].replace(" ", "_") for i in range(num_classes)]
    except (ImportError, KeyError):
        return [f"class_{i}" for i in range(num_classes)]


@register_source(
    "medmnist",
    description="Any 2D MedMNIST .npz (official train/val/test split kept as is).",
    layout=(
        "a .npz with keys train_images, train_labels, val_images, val_labels, test_images, test_labels "
        "(labels (N,) or (N, 1)); or a folder (default ~/.medmnist) plus flag=<name>"
    ),
    needs_path=False,
)
def load_medmnist(
    path: Path | None, image_size: int, split_seed: int, flag: str | None = None, download: bool = False
) -> ImageDataset:
    # split_seed is unused: MedMNIST ships an official split, which we keep so results compare.
    if download:
        _download(flag or "", path or DEFAULT_ROOT)
    file = _find_file(path, flag, image_size)
    flag = flag or file.stem.split("_")[0]
    expected = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")]
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{file} is not a readable .npz file ({err})") from None
    with archive:
        missing = [k for k in expected if k not in archive.files]
        if missing:
            raise DataError(f"{file} lacks key(s) {missing}; a MedMNIST .npz has {expected} (found {archive.files})")
        raw = {k: archive[k] for k in expected}
    num_classes = int(max(raw[f"{s}_labels"].max() for s in SPLITS)) + 1
    splits = {}
    for s in SPLITS:
        images, labels = raw[f"{s}_images"], raw[f"{s}_labels"]
        if labels.ndim == 2 and labels.shape[1] > 1:
            raise DataError(f"{file}: {s}_labels has shape {labels.shape}; multi-label sets are not supported")
        if images.ndim == 3:  # grey-scale: repeat to RGB so every model and overlay works alike
            images = np.repeat(images[..., None], 3, axis=3)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataError(f"{file}: {s}_images must be uint8 (N, H, W[, C]); got {images.dtype} {images.shape}")
        ids = np.array([f"{s}_{i:05d}" for i in range(len(labels))])
        splits[s] = Split(resize_array(images, image_size), labels.reshape(-1), ids)
    return ImageDataset(flag, _class_names(flag, num_classes), splits, f"MedMNIST {flag} from {file}")

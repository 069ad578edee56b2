"""Any 2D MedMNIST .npz in the official layout (train_images, train_labels, val_..., test_...)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import SPLITS, ImageDataset, Split, register_source
from .images import MAX_UPSCALE, require_regular_file, resize_array

DEFAULT_ROOT = Path("~/.medmnist").expanduser()
MAX_CLASSES = 1000  # a label beyond this is a mistake (e.g. an id in the label column), not a class
SAVE_AS_NPZ = (
    "save the data as numeric arrays with numpy.savez(file, train_images=images.astype(np.uint8), "
    "train_labels=labels.astype(np.int64), val_images=..., ...)"
)
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
            return require_regular_file(candidate, "MedMNIST file")
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
    file_is_whole=True,
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
    # numpy's own messages for pickled content suggest loading it unsafely; ours name the safe fix instead.
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{file} is not a readable .npz file ({err}); {SAVE_AS_NPZ}") from None
    except ValueError:  # numpy takes whatever is no zip or .npy for a pickle, which is never loaded (it can run code)
        raise DataError(
            f"{file} is not a .npz archive of arrays (a text file, or pickled Python objects, which are never loaded: "
            f"unpickling can run code); {SAVE_AS_NPZ}"
        ) from None
    with archive:
        missing = [k for k in expected if k not in archive.files]
        if missing:
            raise DataError(f"{file} lacks key(s) {missing}; a MedMNIST .npz has {expected} (found {archive.files})")
        raw = {k: _plain_array(file, archive, k) for k in expected}
    splits = {}
    for s in SPLITS:
        images, labels = raw[f"{s}_images"], raw[f"{s}_labels"]
        if labels.ndim == 2 and labels.shape[1] > 1:
            raise DataError(f"{file}: {s}_labels has shape {labels.shape}; multi-label sets are not supported")
        if len(labels) == 0:
            raise DataError(f"{file}: the {s} split holds no images; every split needs some (train, val and test)")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{file}: {s}_labels must be integer class indices, one per image; got {len(labels)} "
                f"label(s) of dtype {labels.dtype}. Save them as labels.astype(np.int64)"
            )
        if labels.min() < 0:
            raise DataError(
                f"{file}: {s}_labels holds negative label(s) (smallest {labels.min()}); number the classes "
                "0, 1, ..., C-1, the same way in every split"
            )
        if labels.max() >= MAX_CLASSES:
            raise DataError(
                f"{file}: {s}_labels goes up to {labels.max()}; labels are class indices 0, 1, ..., C-1 with at most "
                f"{MAX_CLASSES} classes: renumber the classes"
            )
        labels = labels.astype(np.int64)  # uint64 and friends: safe now that the range is known
        if images.ndim == 3:  # grey-scale: repeat to RGB so every model and overlay works alike
            images = np.repeat(images[..., None], 3, axis=3)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataError(f"{file}: {s}_images must be uint8 (N, H, W[, C]); got {images.dtype} {images.shape}")
        if images.shape[3] not in (1, 3):  # e.g. (N, 3, 28, 28) would train as 28-channel images of 3 x 28 px
            hint = " (it looks channel-first: save images.transpose(0, 2, 3, 1))" if images.shape[1] in (1, 3) else ""
            raise DataError(
                f"{file}: {s}_images has shape {images.shape}: images are (N, H, W) or (N, H, W, C) with 1 or 3 "
                f"channels{hint}"
            )
        side = min(images.shape[1:3])
        if side * MAX_UPSCALE < image_size:  # as for image files: a 2x2 image blown up to 28 px is no picture
            raise DataError(
                f"{file}: {s}_images are {images.shape[2]}x{images.shape[1]} px, which would be blown up more than "
                f"{MAX_UPSCALE}x to {image_size} px; choose a smaller --image-size, or save larger images"
            )
        if len(images) != len(labels.reshape(-1)):
            raise DataError(
                f"{file}: {s}_images holds {len(images)} images but {s}_labels {len(labels.reshape(-1))} labels; "
                "save one label per image"
            )
        ids = np.array([f"{s}_{i:05d}" for i in range(len(labels))])
        splits[s] = Split(resize_array(images, image_size), labels.reshape(-1), ids)
    channels = {s: split.images.shape[3] for s, split in splits.items()}
    if len(set(channels.values())) > 1:
        raise DataError(
            f"{file}: the splits' images have different channel counts ({channels}); save every split with the same "
            "channels (all RGB, or all grey-scale)"
        )
    num_classes = int(max(split.labels.max() for split in splits.values())) + 1
    untrained = sorted(set(range(num_classes)) - set(np.unique(splits["train"].labels).tolist()))
    if untrained:
        raise DataError(
            f"{file}: class(es) {untrained} have no training image (they appear only in val/test, or not at all), "
            "so a model could never predict them and their scores would mislead: renumber the classes 0..C-1 "
            "over the classes the training split has, or add their training images"
        )
    return ImageDataset(flag, _class_names(flag, num_classes), splits, f"MedMNIST {flag} from {file}")


def _plain_array(file: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """One array of the archive; an array of Python objects (or a damaged one) is refused, never unpickled."""
    try:
        return archive[key]
    except ValueError:
        raise DataError(
            f"{file}: {key} is not a plain numeric array (it holds Python objects, which are never loaded "
            f"because unpickling can run code, or it is damaged); {SAVE_AS_NPZ}"
        ) from None

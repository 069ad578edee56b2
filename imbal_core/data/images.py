"""Decoding and resizing image files into uint8 arrays, with errors that name the file."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from .base import ImageDataset

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAX_UPSCALE = 8  # a smaller image than size / 8 holds too little to be one of the data set's images
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL opens 16-bit greyscale files in one of these


def index_images(root: Path) -> dict[str, Path]:
    """Map file stem -> path for every image anywhere under `root` (any folder layout)."""
    found: dict[str, Path] = {}
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            stem, suffix = os.path.splitext(filename)
            if suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(stem, Path(dirpath) / filename)
    return found


MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# A compressed file of a few hundred kB can hold a 16000 x 11000 image (2 GB decoded): uploads are limited by pixels
# too (a 40 Mpx photograph is larger than any camera's).
MAX_UPLOAD_PIXELS = 40_000_000


def decode_image_bytes(data: bytes, size: int, name: str = "upload") -> np.ndarray:
    """An uploaded image as uint8 (size, size, 3); non-images and oversized files or images are refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"{name} is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    with suppress(UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            width, height = probe.size
        if width * height > MAX_UPLOAD_PIXELS:
            raise DataError(
                f"{name} is {width} x {height} px ({width * height / 1e6:.0f} Mpx); the limit is "
                f"{MAX_UPLOAD_PIXELS // 1_000_000} Mpx: resize it before uploading"
            )
    try:
        return read_image(io.BytesIO(data), size, name)
    except DataError:
        raise DataError(
            f"{name} is not an image that can be read (a PNG or JPEG was expected; it may be another "
            "kind of file renamed): upload a PNG or JPEG image"
        ) from None


def read_image(path: Path | io.BytesIO, size: int, name: str | None = None) -> np.ndarray:
    """Decode one file to RGB, centre-crop to a square, resize to size x size (uint8 HWC)."""
    name = name or str(path)
    if isinstance(path, Path) and path.exists() and not path.is_file():  # opening a pipe would block forever
        raise DataError(f"image file {name} is not a regular file (a pipe, device or folder?): remove it or its row")
    try:
        with Image.open(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            if frames > 1:  # a multi-page TIFF or an animation: which frame is the image is not ours to guess
                raise DataError(
                    f"image file {name} holds {frames} frames (pages or an animation); save the frame to use as an "
                    "image of its own"
                )
            opened.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale, much faster
            # A camera's EXIF orientation says how the pixels are to be shown: as a viewer shows them.
            img = eight_bit_rgb(ImageOps.exif_transpose(opened), name)
            width, height = img.size
            side = min(width, height)
            if side * MAX_UPSCALE < size:  # a 1x1 or 1x2000 image would become a flat square of one pixel's colour
                raise DataError(
                    f"image file {name} is {width}x{height} px: its square centre ({side} px) would be blown up more "
                    f"than {MAX_UPSCALE}x to {size} px; remove it, or choose a smaller --image-size"
                )
            left, top = (width - side) // 2, (height - side) // 2
            img = img.crop((left, top, left + side, top + side))
            img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image file {name} does not exist; check the data folder") from None
    except PermissionError:
        raise DataError(f"image file {name} cannot be read (permission denied): make it readable") from None
    except Image.DecompressionBombError as err:
        raise DataError(
            f"image file {name} is larger than the decoder allows ({err}); resize it before using it here"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"image file {name} cannot be decoded ({err}); it is truncated or not an image — "
            "re-copy it from the original archive or remove its row from the label file"
        ) from None


def eight_bit_rgb(img: Image.Image, name: str) -> Image.Image:
    """RGB with 8 bits a channel, high bit depths scaled rather than clipped: 16-bit values by 255/65535, floats in
    [0, 1] by 255 (PIL's own conversion clips 16-bit values to 255 and turns [0, 1] floats black)."""
    if img.mode in SIXTEEN_BIT_MODES or img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" else 65535.0
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > top:
            found = "not finite" if not np.isfinite(values).all() else f"in [{values.min():g}, {values.max():g}]"
            raise DataError(
                f"image file {name} is a {'floating-point' if img.mode == 'F' else '16/32-bit integer'} image with "
                f"values {found}; expected [0, {top:g}]: convert it to an 8- or 16-bit PNG"
            )
        img = Image.fromarray(np.round(values * (255.0 / top)).astype(np.uint8))
    return img.convert("RGB")


def read_images(paths: Sequence[Path], size: int, workers: int = 4) -> np.ndarray:
    """Decode many files in parallel threads (PIL releases the GIL while decoding)."""
    if not paths:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return np.stack(list(pool.map(lambda p: read_image(p, size), paths)))


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 (N, H, W, C) array with antialiased bilinear interpolation."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = []
    for start in range(0, len(images), 1024):
        chunk = torch.from_numpy(images[start : start + 1024]).permute(0, 3, 1, 2)
        out.append(resize_tensor(chunk, size).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, size, size, images.shape[3]), np.uint8)


def resize_tensor(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images on their device with antialiased bilinear interpolation."""
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def dataset_from_files(
    name: str,
    class_names: list[str],
    paths: Sequence[Path],
    labels: np.ndarray,
    metadata: pd.DataFrame,
    image_size: int,
    split_seed: int,
    groups: np.ndarray | None = None,
    description: str = "",
) -> ImageDataset:
    """Decode labelled files and split them 70/10/20, stratified (and grouped when asked)."""
    from .base import ImageDataset, Split
    from .splitting import stratified_split

    check_memory(name, len(paths), image_size)
    ids = np.array([Path(p).stem for p in paths])
    labels = np.asarray(labels, dtype=np.int64)
    parts = stratified_split(labels, split_seed, groups=groups)
    splits = {  # each split decoded on its own: the images are held once, not once whole and once split
        split: Split(
            read_images([paths[i] for i in idx], image_size),
            labels[idx],
            ids[idx],
            metadata.iloc[idx].reset_index(drop=True),
        )
        for split, idx in parts.items()
    }
    refuse_copies_across_splits(splits, [Path(p) for p in paths], parts)
    return ImageDataset(name, class_names, splits, description)


def refuse_copies_across_splits(splits: dict, paths: list[Path], parts: dict[str, np.ndarray]) -> None:
    """The same picture under two file names, one in training and one in validation or test, would be scored as
    unseen while the model learnt it: refused, naming both files (copies within one split only weigh it double)."""
    first_seen: dict[bytes, tuple[str, int]] = {}
    for split, idx in parts.items():
        for image, index in zip(splits[split].images, idx):
            digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
            seen = first_seen.setdefault(digest, (split, int(index)))
            if seen[0] != split:
                raise DataError(
                    f"{paths[seen[1]]} ({seen[0]}) and {paths[int(index)]} ({split}) are the same picture, pixel for "
                    "pixel: a copy in two splits would be scored as unseen while the model learnt it; remove one copy"
                )


def available_memory() -> int:
    """Bytes of memory the machine can give without swapping (Linux's MemAvailable; else the free pages)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


MEMORY_SHARE = 0.8  # of the available memory a data set may take while its cache is built


def check_memory(name: str, n_images: int, image_size: int, channels: int = 3) -> int:
    """Say how much memory decoding `n_images` at `image_size` px takes, and raise DataError when the machine lacks
    it (once cached, a set is read memory-mapped, so only building the cache needs it). Returns the bytes."""
    need = n_images * image_size * image_size * channels
    have = available_memory()
    logger.info(
        "building the data cache of %s at %d px: %d images take %.2f GB in memory (%.1f GB available)",
        name,
        image_size,
        n_images,
        need / 1e9,
        have / 1e9,
    )
    if need > MEMORY_SHARE * have:
        raise DataError(
            f"{name} at {image_size} px takes {need / 1e9:.1f} GB in memory ({n_images} images of {image_size}x"
            f"{image_size}x{channels} bytes) while its cache is built, and this machine has {have / 1e9:.1f} GB "
            f"available: choose a smaller --image-size (memory grows with its square), or build the cache once on a "
            "machine with more memory and copy the lab home's cache/ folder here (training reads it memory-mapped)"
        )
    return need


def require_regular_file(path: Path, what: str) -> Path:
    """`path`, refused unless it is a regular file (after links): reading a FIFO or a device would block or never
    end."""
    if not path.is_file():
        raise DataError(f"{what} {path} is not a regular file (a pipe, device or folder?): give a plain file")
    return path


def read_table(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """Read a CSV and check its columns, naming what is missing and how many were found (never the file's own text:
    a wrong file typed as the path, e.g. a token, would be echoed into logs and the page)."""
    import pandas as pd

    require_regular_file(path, what)
    try:
        # Only an empty cell is missing: a class named "NA" or "None" is a name.
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {what} {path}: {err}") from None
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    repeated = sorted({c for c in header if header.count(c) > 1 and c in required})
    if repeated:  # pandas renames the second "label" to "label.1" and the first one would be used without a word
        raise DataError(f"{what} {path} names the column(s) {repeated} more than once: keep one of each")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"{what} {path} lacks column(s) {missing} (its first row names {len(table.columns)} column(s), "
            f"{len(required) - len(missing)} of them expected): it needs a header row with the columns "
            f"{list(required)}"
        )
    return table


def locate_images(table_ids: Sequence[str], root: Path, what: str) -> list[Path]:
    """Find each id's image file anywhere under root; name the first missing ones."""
    index = index_images(root)
    missing = [i for i in table_ids if i not in index]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in the {what} were not found under {root} "
            f"(first: {missing[:3]}); put the image files anywhere under that folder"
        )
    return [index[i] for i in table_ids]


# A pixel is grey when its channels differ by at most this many levels; an image is grey when 99 % of its pixels are
# (JPEG compression leaves a few off-grey pixels in a grey photograph).
GREY_SPREAD = 8


def is_grey(images: np.ndarray) -> np.ndarray:
    """Per image of uint8 (N, H, W, C): True when it is grey-scale (its colour channels carry the same picture)."""
    if images.shape[-1] == 1:
        return np.ones(len(images), dtype=bool)

    def grey(image: np.ndarray) -> bool:  # one at a time: a 512 px validation split need not fit in memory twice
        spread = image.max(axis=-1).astype(np.int16) - image.min(axis=-1)
        return bool(np.percentile(spread, 99) <= GREY_SPREAD)

    return np.array([grey(image) for image in images], dtype=bool)


def colour_share(images: np.ndarray) -> float:
    """Share of uint8 (N, H, W, C) images that are in colour."""
    return float(np.mean(~is_grey(images))) if len(images) else float("nan")

"""On-disk cache of resized data sets, keyed by source, path, size, split seed and options.

One folder per data set and size: each split's images as a `.npy` file that is opened memory-mapped, copy-on-write
(nothing is read until a batch needs it, so a set larger than the machine's memory can still be trained on; a change
made in memory never reaches the file), its labels and ids as
`.npy` files, and a JSON header with the class names and each split's metadata. The folder is written under a
temporary name and renamed when complete, so a half-written cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import warnings
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import SPLITS, ImageDataset, Split

# 4: a whole test set split only to train on it is named (`ImageDataset.whole_test_set`);
# 3: EXIF orientation applied, 16-bit and float images scaled (older caches hold those images as decoded before);
# 2: a folder of .npy files opened memory-mapped (1: one .npz read whole)
CACHE_VERSION = 4
HEADER = "header.json"


def cache_key(source: str, fingerprint: Any, image_size: int, split_seed: int, options: dict) -> str:
    payload = json.dumps(
        [CACHE_VERSION, source, fingerprint, image_size, split_seed, options], sort_keys=True, default=str
    )
    return f"{source}-{image_size}px-seed{split_seed}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


STALE_BUILD_SECONDS = 6 * 3600  # a half-built cache folder untouched this long was left by a killed build


def save(dataset: ImageDataset, cache_dir: Path, key: str) -> bool:
    """Write the cache entry; False (with a warning) where the cache folder cannot be written: the data set is
    still usable, only not cached."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    except OSError as err:
        warnings.warn(
            f"the data cache {cache_dir} cannot be written ({err.strerror}); the data set is loaded but not cached: "
            "make the folder writable, or move the lab home with IMBAL_LAB_HOME",
            stacklevel=2,
        )
        return False
    folder = cache_dir / key
    try:
        header: dict[str, Any] = {
            "name": dataset.name,
            "class_names": dataset.class_names,
            "description": dataset.description,
            "whole_test_set": dataset.whole_test_set,
            "metadata": {},
        }
        for name in SPLITS:
            split = dataset.splits[name]
            np.save(tmp / f"{name}_images.npy", np.ascontiguousarray(split.images))
            np.save(tmp / f"{name}_labels.npy", split.labels)
            np.save(tmp / f"{name}_ids.npy", split.ids.astype(str))
            header["metadata"][name] = split.metadata.to_json(orient="split")
        (tmp / HEADER).write_text(json.dumps(header))  # written last: its presence marks a complete folder
        if folder.exists() and not (folder / HEADER).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a damaged folder of an earlier try
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / HEADER).is_file():
                raise
            # another process built the same cache meanwhile: the same images, and it may be reading them
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def remove_stale_builds(cache_dir: Path) -> None:
    """Remove the temporary folders (`.<key>-xxxx`) of cache builds killed part-way: untouched for hours, no
    build is writing them any more."""
    now = time.time()
    for folder in cache_dir.glob(".*-*"):
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def load(cache_dir: Path, key: str) -> ImageDataset | None:
    folder = cache_dir / key
    if not (folder / HEADER).is_file():
        return None
    try:
        header = json.loads((folder / HEADER).read_text())
        splits = {}
        for name in SPLITS:
            metadata = pd.read_json(StringIO(header["metadata"][name]), orient="split")
            splits[name] = Split(
                np.load(folder / f"{name}_images.npy", mmap_mode="c", allow_pickle=False),
                np.load(folder / f"{name}_labels.npy", allow_pickle=False),
                np.load(folder / f"{name}_ids.npy", allow_pickle=False),
                metadata,
            )
    except (OSError, ValueError, KeyError):
        shutil.rmtree(folder, ignore_errors=True)  # a damaged cache entry is rebuilt from the source
        return None
    return ImageDataset(
        header["name"], header["class_names"], splits, header["description"], header.get("whole_test_set", "")
    )

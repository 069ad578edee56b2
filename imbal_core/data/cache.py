"""On-disk cache of resized data sets, keyed by source, path, size, split seed and options."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..utils import atomic_path
from .base import SPLITS, ImageDataset, Split

CACHE_VERSION = 1


def cache_key(source: str, fingerprint: Any, image_size: int, split_seed: int, options: dict) -> str:
    payload = json.dumps(
        [CACHE_VERSION, source, fingerprint, image_size, split_seed, options], sort_keys=True, default=str
    )
    return f"{source}-{image_size}px-seed{split_seed}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


def save(dataset: ImageDataset, cache_dir: Path, key: str) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name in SPLITS:
        split = dataset.splits[name]
        arrays[f"{name}_images"] = split.images
        arrays[f"{name}_labels"] = split.labels
        arrays[f"{name}_ids"] = split.ids.astype(str)
        arrays[f"{name}_metadata"] = np.array(split.metadata.to_json(orient="split"))
    arrays["header"] = np.array(
        json.dumps({"name": dataset.name, "class_names": dataset.class_names, "description": dataset.description})
    )
    with atomic_path(cache_dir / f"{key}.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub: a key might be savez's allow_pickle


def load(cache_dir: Path, key: str) -> ImageDataset | None:
    path = cache_dir / f"{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
            splits = {}
            for name in SPLITS:
                metadata = pd.read_json(StringIO(str(archive[f"{name}_metadata"])), orient="split")
                splits[name] = Split(
                    archive[f"{name}_images"], archive[f"{name}_labels"], archive[f"{name}_ids"], metadata
                )
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt from the source
        return None
    return ImageDataset(header["name"], header["class_names"], splits, header["description"])

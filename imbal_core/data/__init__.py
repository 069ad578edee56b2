"""Data sources behind one registry; `load_dataset` is the only entry point callers need."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..utils import lab_home
from . import cache
from .base import DATA_SOURCES, SPLITS, ImageDataset, SourceInfo, Split, register_source
from .tasks import BinaryTask, apply_task, parse_task, resolve_task

# Importing the modules registers the sources.
from . import synthetic, medmnist, ham10000, isic2018, aptos2019, folder  # noqa: E402,F401

__all__ = ["DATA_SOURCES", "SPLITS", "BinaryTask", "ImageDataset", "SourceInfo", "Split", "apply_task", "load_dataset",
           "parse_task", "register_source", "resolve_task"]


def load_dataset(
    source: str = "synthetic",
    path: str | Path | None = None,
    image_size: int = 28,
    split_seed: int = 0,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    task: str | None = None,
    **options,
) -> ImageDataset:
    """Load a data source resized to `image_size`, with seeded train/val/test splits.

    The resized arrays are cached on disk, so a second load takes well under a second. A binary
    `task` ("mel vs nv") relabels the loaded classes (see `tasks`); the cache holds the classes as they are.
    """
    if task is not None:
        parse_task(task)  # a syntax error is reported before any file is read
    info = DATA_SOURCES.get(source)
    if not isinstance(image_size, int) or not 16 <= image_size <= 512:
        raise DataError(f"image_size must be an integer between 16 and 512; got {image_size!r}")
    if info.needs_path and path is None:
        raise DataError(f"data source {source!r} needs a path. Expected layout: {info.layout}")
    if path is not None:
        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise DataError(f"{path} does not exist. Expected layout for {source!r}: {info.layout}")
    fingerprint = _fingerprint(path) if path is not None else None
    key = cache.cache_key(source, fingerprint, image_size, split_seed, options)
    cache_folder = Path(cache_dir) if cache_dir is not None else lab_home() / "cache"
    dataset = cache.load(cache_folder, key) if use_cache else None
    if dataset is None:
        dataset = info.loader(path, image_size=image_size, split_seed=split_seed, **options)
        if use_cache:
            cache.save(dataset, cache_folder, key)
    return apply_task(dataset, task) if task is not None else dataset


def _fingerprint(path: Path) -> list:
    """Path plus size and modification time of the top-level entries: changes when files do."""
    entries = [path] if path.is_file() else sorted(path.iterdir())
    return [str(path)] + [(e.name, e.stat().st_size, int(e.stat().st_mtime)) for e in entries]

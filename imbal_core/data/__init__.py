"""Data sources behind one registry; `load_dataset` is the only entry point callers need."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..utils import DATA_ROOTS_VARIABLE, data_roots, lab_home
from . import cache
from .base import DATA_SOURCES, SPLITS, ImageDataset, SourceInfo, Split, register_source
from .tasks import BinaryTask, apply_task, parse_task, resolve_task
from .colour import correct_dataset

# Importing the modules registers the sources.
from . import synthetic, medmnist, ham10000, isic2018, aptos2019, folder  # noqa: E402,F401

__all__ = [
    "DATA_SOURCES",
    "SPLITS",
    "BinaryTask",
    "ImageDataset",
    "SourceInfo",
    "Split",
    "apply_task",
    "dataset_key",
    "load_dataset",
    "parse_task",
    "provide_datasets",
    "register_source",
    "resolve_task",
]

# Data sets handed to this process ready-made (a distributed worker gets them from the driver): load_dataset returns
# them without reading files, even where the path does not exist. Keyed by `dataset_key`.
_PROVIDED: dict[str, ImageDataset] = {}


def dataset_key(source: str, path: str | Path | None, image_size: int, split_seed: int, options: dict[str, Any]) -> str:
    """What names one loaded data set (before any task or colour constancy): the arguments as given, path unresolved."""
    return json.dumps(
        [source, None if path is None else str(path), image_size, split_seed, options], sort_keys=True, default=str
    )


@contextmanager
def provide_datasets(datasets: dict[str, ImageDataset]) -> Iterator[None]:
    """While inside, `load_dataset` returns these data sets (keys from `dataset_key`) instead of loading them."""
    _PROVIDED.update(datasets)
    try:
        yield
    finally:
        for key in datasets:
            _PROVIDED.pop(key, None)


def load_dataset(
    source: str = "synthetic",
    path: str | Path | None = None,
    image_size: int = 28,
    split_seed: int = 0,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    task: str | None = None,
    colour_constancy: str | None = None,
    **options,
) -> ImageDataset:
    """Load a data source resized to `image_size`, with seeded train/val/test splits.

    The resized arrays are cached on disk, so a second load takes well under a second. A binary
    `task` ("mel vs nv") relabels the loaded classes (see `tasks`); the cache holds the classes as they are.
    """
    if task is not None:
        parse_task(task)  # a syntax error is reported before any file is read
    info = DATA_SOURCES.get(source)
    provided = _PROVIDED.get(dataset_key(source, path, image_size, split_seed, options))
    if provided is not None:
        ready = correct_dataset(provided, colour_constancy) if colour_constancy is not None else provided
        return apply_task(ready, task) if task is not None else ready
    if not isinstance(image_size, int) or not 16 <= image_size <= 512:
        raise DataError(f"image_size must be an integer between 16 and 512; got {image_size!r}")
    if info.needs_path and path is None:
        raise DataError(f"data source {source!r} needs a path. Expected layout: {info.layout}")
    if path is not None:
        path = Path(path).expanduser().resolve()
        if os.environ.get(DATA_ROOTS_VARIABLE):  # the app, a remote worker, or a user who set it
            check_inside_data_roots(path)  # before anything is read, even whether the path exists
        if not path.exists():
            raise DataError(f"{path} does not exist. Expected layout for {source!r}: {info.layout}")
        if not path.is_dir() and not path.is_file():
            raise DataError(
                f"{path} is neither a folder nor a regular file (a pipe or device?): give the data's folder"
            )
        _refuse_system_folder(path)
    try:
        fingerprint = _fingerprint(path, info.file_is_whole) if path is not None else None
    except RecursionError:
        raise DataError(
            f"{path} holds folders nested too deep to walk (hundreds of levels): point --path at the data's own "
            "folder, and keep its tree shallow"
        ) from None
    key = cache.cache_key(source, fingerprint, image_size, split_seed, options)
    cache_folder = Path(cache_dir) if cache_dir is not None else lab_home() / "cache"
    dataset = cache.load(cache_folder, key) if use_cache else None
    if dataset is None:
        dataset = info.loader(path, image_size=image_size, split_seed=split_seed, **options)
        if use_cache:
            cache.save(dataset, cache_folder, key)
    if colour_constancy is not None:  # after the cache, which holds the images as they are
        dataset = correct_dataset(dataset, colour_constancy)
    return apply_task(dataset, task) if task is not None else dataset


def check_inside_data_roots(path: Path) -> None:
    """Raise DataError when the resolved `path` lies outside every allowed data folder (`utils.data_roots`).
    `load_dataset` checks when $IMBAL_LAB_DATA_ROOTS is set: always in the app (`utils.restrict_data_reads`), never
    on the command line unless its user sets it."""
    roots = data_roots()
    if not any(path.is_relative_to(root) for root in roots):
        raise DataError(
            f"{path} is outside the allowed data folders ({', '.join(map(str, roots))}); move the data "
            f"into one of them, or add its folder to {DATA_ROOTS_VARIABLE} (folders separated by "
            f"{os.pathsep!r})"
        )


# A data set's folder holds its images, not a system's: walking `/` or a home folder takes minutes and reads files
# no loader wants, so a typo there is refused at once.
SYSTEM_FOLDERS = ("/", "/proc", "/sys", "/dev", "/usr", "/etc", "/var", "/boot", "/run")
# More files than any data set the lab reads (HAM10000 has 10,015 images; ChestX-ray14 112,120).
MAX_DATA_FILES = 1_000_000


def _refuse_system_folder(path: Path) -> None:
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no home folder known (a service account without $HOME)
        home = None
    if path.is_dir() and (str(path) in SYSTEM_FOLDERS or path == Path(path.anchor) or path == home):
        raise DataError(
            f"{path} is a system or home folder, not a data set's folder: point --path at the folder that holds "
            "the data itself (e.g. ~/data/ham10000)"
        )


def _fingerprint(path: Path, file_is_whole: bool = False) -> list:
    """Path plus relative name, size, modification and change time (ns) of every file the loader may read, so any
    changed, added or removed file (e.g. an image truncated deep in `images/`) gives a new cache key.

    A file that holds the whole data set (an npz) counts alone; a label file counts with its folder (its images lie
    there). Linked folders are followed, as the loaders follow them (each real folder once: a link loop ends)."""
    if path.is_file() and file_is_whole:
        return [str(path), [(path.name, *_signature(path))]]
    root = path.parent if path.is_file() else path
    # The lab's own files (its cache is written while this runs) are no data: a CSV in a folder that holds the lab
    # home would get a new key, and a new cache, every time.
    files, seen = [], {os.path.realpath(lab_home())}
    for parent, folders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        files += [Path(parent) / name for name in names]
        if len(files) > MAX_DATA_FILES:
            raise DataError(
                f"{root} holds more than {MAX_DATA_FILES:,} files: no data set the lab reads is that large, so "
                "--path is likely a folder above the data's own: point it at the data set's folder"
            )
    entries = [(str(file.relative_to(root)), *_signature(file)) for file in sorted(files)]
    return [str(path), entries]


def _signature(file: Path) -> tuple[int, int, int]:
    """Size, modification and change time: an edit that keeps the size and puts the modification time back (a copy
    tool, `touch -r`) still moves the change time, which no user call can set."""
    try:
        stat = file.stat()
        return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
    except OSError:  # e.g. a broken link: reading it fails later with a message naming it
        return -1, -1, -1

"""The one result type every data source returns, and the source registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError
from ..registry import Registry

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: uint8 images (N, H, W, C), int64 labels (N,), string ids and metadata rows."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W, C); got {self.images.dtype} {self.images.shape}")
        if len(self.images) != n or len(self.ids) != n:
            raise DataError(f"split has {len(self.images)} images, {n} labels and {len(self.ids)} ids")
        if self.metadata.empty:
            self.metadata = pd.DataFrame(index=range(n))
        self.labels = self.labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Split:
        indices = np.asarray(indices)
        return Split(
            self.images[indices],
            self.labels[indices],
            self.ids[indices],
            self.metadata.iloc[indices].reset_index(drop=True),
        )

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.images.shape[1:]
        return height, width, channels

    @classmethod
    def concat(cls, parts: list[Split]) -> Split:
        """The images of several splits as one (e.g. a whole external test set)."""
        return cls(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.ids.astype(str) for p in parts]),
            pd.concat([p.metadata for p in parts], ignore_index=True),
        )


@dataclass
class ImageDataset:
    """A data set ready for training: class names and train/val/test splits."""

    name: str
    class_names: list[str]
    splits: dict[str, Split]
    description: str = ""
    # The file a loader split 70/10/20 itself although it is a whole test set (ISIC 2018's Test ground truth given
    # alone): scoring one of those splits would score a fifth of it ("" for every other data set).
    whole_test_set: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.splits["train"].image_shape

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    def counts_table(self) -> pd.DataFrame:
        """Images per class (rows) and split (columns)."""
        table = {s: self.splits[s].class_counts(self.num_classes) for s in SPLITS}
        return pd.DataFrame(table, index=pd.Index(self.class_names, name="class"))


@dataclass(frozen=True)
class SourceInfo:
    """How a data source is loaded and what it expects on disk (shown in the CLI and the app)."""

    name: str
    loader: Callable[..., ImageDataset]
    description: str
    layout: str
    needs_path: bool
    # A file given as the path holds the whole data set (an npz): the cache key reads that file alone, not its folder
    # (a label CSV's images lie beside it, so its folder counts).
    file_is_whole: bool = False


DATA_SOURCES: Registry[SourceInfo] = Registry("data source")


def register_source(
    name: str, *, description: str, layout: str, needs_path: bool = True, file_is_whole: bool = False
) -> Callable[[Callable[..., ImageDataset]], Callable[..., ImageDataset]]:
    """Decorator: `@register_source("ham10000", ...)` over a loader `fn(path, image_size, split_seed, **options)`."""

    def decorator(loader: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        DATA_SOURCES.register(name)(SourceInfo(name, loader, description, layout, needs_path, file_is_whole))
        return loader

    return decorator

"""Binary tasks on any data source: "mel vs nv", "mel,bcc,akiec vs rest".

The left side is the positive class (abnormal, usually the rare one), the right side the negative
class (normal); "rest" on the right means every class not on the left. A task relabels all three
splits the same way: class 0 = the negative side, class 1 = the positive side. Images of classes
on neither side are dropped from every split, and the data set's description says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from .base import ImageDataset

REST = "rest"
SEPARATOR = re.compile(r"\s+vs\.?\s+", flags=re.IGNORECASE)
EXAMPLE = '"mel vs nv" or "mel,bcc,akiec vs rest"'


@dataclass(frozen=True)
class BinaryTask:
    """Which original classes form the positive (abnormal) and the negative (normal) side."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]  # (REST,) until resolved against a data set's classes
    spec: str

    @property
    def positive_name(self) -> str:
        return "+".join(self.positive)

    @property
    def negative_name(self) -> str:
        return REST if self.negative == (REST,) else "+".join(self.negative)

    @property
    def class_names(self) -> list[str]:
        """The task's classes in index order: 0 = negative (normal), 1 = positive (abnormal)."""
        return [self.negative_name, self.positive_name]


def parse_task(spec: str) -> BinaryTask:
    """Check the syntax only ("<classes> vs <classes|rest>"); class names are checked by `apply_task`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"task must be a string like {EXAMPLE}; got {spec!r}")
    sides = SEPARATOR.split(spec.strip())
    if len(sides) != 2:
        raise ConfigError(
            f"task must have exactly one ' vs ' between the positive and the negative classes, like "
            f"{EXAMPLE}; got {spec!r}"
        )
    positive, negative = (tuple(name.strip() for name in side.split(",") if name.strip()) for side in sides)
    if not positive or not negative:
        raise ConfigError(f"both sides of the task need at least one class, like {EXAMPLE}; got {spec!r}")
    if REST in positive:
        raise ConfigError(f"'rest' may only stand on the right (negative) side, like {EXAMPLE}; got {spec!r}")
    if REST in negative and len(negative) > 1:
        raise ConfigError(f"'rest' stands alone on its side; got {spec!r}")
    overlap = sorted(set(positive) & set(negative))
    if overlap:
        raise ConfigError(f"class(es) {overlap} are on both sides of task {spec!r}")
    return BinaryTask(positive, negative, spec.strip())


def resolve_task(spec: str, class_names: list[str]) -> BinaryTask:
    """Parse `spec` and check its classes against a data set's names (and that "rest" leaves a class)."""
    task = parse_task(spec)
    named = task.positive + (() if task.negative == (REST,) else task.negative)
    unknown = [name for name in named if name not in class_names]
    if unknown:
        raise ConfigError(f"task {spec!r} names unknown class(es) {unknown}; this data set's classes are {class_names}")
    if task.negative == (REST,):
        rest = tuple(name for name in class_names if name not in task.positive)
        if not rest:
            raise ConfigError(f"task {spec!r} leaves no class for 'rest'; put fewer classes on the left")
    return task


def apply_task(dataset: ImageDataset, spec: str) -> ImageDataset:
    """The binary version of `dataset`: labels 0 (negative) / 1 (positive), other classes dropped."""
    task = resolve_task(spec, dataset.class_names)
    positive = [dataset.class_names.index(name) for name in task.positive]
    if task.negative == (REST,):
        negative = [c for c in range(dataset.num_classes) if c not in positive]
    else:
        negative = [dataset.class_names.index(name) for name in task.negative]
    splits = {}
    for name, split in dataset.splits.items():
        kept = np.flatnonzero(np.isin(split.labels, positive + negative))
        part = split.subset(kept)
        part.labels = np.isin(part.labels, positive).astype(np.int64)
        for c, side in enumerate(task.class_names):
            if not (part.labels == c).any():
                raise DataError(
                    f"task {spec!r} leaves the {name} split with no {side!r} image; every split needs "
                    "both sides (choose other classes or another split seed)"
                )
        splits[name] = part
    dropped = sorted(set(dataset.class_names) - {dataset.class_names[c] for c in positive + negative})
    note = f"; classes {dropped} dropped" if dropped else ""
    return ImageDataset(
        dataset.name,
        task.class_names,
        splits,
        f"{dataset.description} — binary task {task.spec!r} (1 = {task.positive_name}){note}",
    )

"""Long-tailed training subsets, as in the long-tail literature (ratio rho = n_max / n_min).

Only the training split is subsampled; validation and test stay as they are.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .data import ImageDataset

PROFILES = ("exp", "step")
FITS = ("scale", "cap")


@dataclass
class ImbalanceResult:
    """Kept training indices plus the counts asked for and obtained, per class."""

    indices: np.ndarray
    target_counts: np.ndarray
    counts: np.ndarray
    head_order: list[int]

    def to_dict(self) -> dict:
        return {
            "indices": self.indices.tolist(),
            "target_counts": self.target_counts.tolist(),
            "counts": self.counts.tolist(),
            "head_order": self.head_order,
        }


def target_counts(
    available: Sequence[int] | np.ndarray,
    ratio: float,
    profile: str | Mapping[str, int] = "exp",
    head_order: str | Sequence[int] = "natural",
    class_names: Sequence[str] | None = None,
    fit: str = "scale",
) -> tuple[np.ndarray, list[int]]:
    """Per-class training counts for a profile, capped by what each class has."""
    available = np.asarray(available, dtype=int)
    num_classes = len(available)
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    order = _head_order(available, head_order, class_names)
    if isinstance(profile, Mapping):
        unknown = sorted(set(profile) - set(class_names))
        if unknown:
            raise ConfigError(f"unknown class(es) {unknown} in the count profile; classes are {class_names}")
        targets = available.copy()
        for name, count in profile.items():
            c = class_names.index(name)
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                raise ConfigError(f"count for class {name!r} must be an integer >= 1; got {count!r}")
            if count > available[c]:
                raise ConfigError(f"class {name!r} has {available[c]} training images; cannot keep {count}")
            targets[c] = count
        return targets, order
    _check_ratio(ratio)
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {PROFILES} or a {{class: count}} dict; got {profile!r}")
    if fit not in FITS:
        raise ConfigError(f"fit must be one of {FITS}; got {fit!r}")
    rank = np.empty(num_classes, dtype=float)
    rank[order] = np.arange(num_classes)
    # Class i keeps n_max * ratio ** -tail_share[i]: the head (share 0) keeps n_max, the tail (share 1) n_max / ratio.
    if profile == "exp":
        tail_share = rank / max(num_classes - 1, 1)
        shape = ratio**-tail_share
    else:  # step: the head half keeps n_max, the tail half gets n_max / ratio
        tail_share = (rank >= num_classes // 2).astype(float)
        shape = np.where(tail_share < 1, 1.0, 1.0 / ratio)
    # "scale": the largest n_max for which every class has enough images, so the profile is exact.
    # "cap": n_max = the largest class; classes short of their target keep all they have.
    n_max = available.max() if fit == "cap" else min(available.max(), np.min(available / shape))
    targets = np.floor(n_max * shape + 1e-9).astype(int)
    emptied = [class_names[c] for c in range(num_classes) if targets[c] < 1]
    kept = np.clip(targets, 1, available)
    if emptied and fit == "scale":
        raise ConfigError(
            f"ratio {ratio:g} is out of reach: class(es) {emptied} would keep less than 1 image. The largest reachable "
            f"ratio for these training counts is {_largest_reachable_ratio(available, tail_share):g}; ask for at most "
            "that, or use fit='cap' (--fit cap in the CLI) to keep 1 image in each short class instead (the achieved "
            "ratio is then smaller than the one asked)"
        )
    if emptied:
        warnings.warn(
            f"ratio {ratio:g} leaves class(es) {emptied} with < 1 image; keeping 1 each "
            f"(achieved ratio {kept.max() / kept.min():g})",
            stacklevel=2,
        )
    return kept, order


def _largest_reachable_ratio(available: np.ndarray, tail_share: np.ndarray) -> float:
    """The largest ratio with fit="scale" at which every class keeps at least one image (rounded down).

    The tail keeps n_max / ratio, so a ratio is reachable while n_max >= ratio, and n_max is bounded by every
    class c not in the tail: n_max <= available[c] * ratio ** tail_share[c]. Both together give
    ratio <= available[c] ** (1 / (1 - tail_share[c])) for each such class.
    """
    above_tail = tail_share < 1
    return float(math.floor(np.min(available[above_tail] ** (1 / (1 - tail_share[above_tail]))) + 1e-9))


def make_imbalanced(
    labels: np.ndarray,
    ratio: float,
    profile: str | Mapping[str, int] = "exp",
    head_order: str | Sequence[int] = "natural",
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    fit: str = "scale",
) -> ImbalanceResult:
    """Draw a long-tailed subset of a training split.

    Args:
        labels: training labels (N,).
        ratio: n_max / n_min, a finite number >= 1 (ignored for a dict profile).
        profile: "exp" (n_i = n_max * ratio^(-i/(C-1))), "step" (half the classes at n_max,
            half at n_max / ratio) or a {class_name: count} dict.
        head_order: "natural" (most frequent class is the head), "index" (class 0 is the head)
            or a list of class indices from head to tail.
        seed: random_state for which images are kept.
        fit: "scale" (default) lowers n_max until every class can meet its target, so the
            achieved ratio is exactly the one asked for (a ratio that would leave a class without
            images is a ConfigError naming the largest reachable one); "cap" keeps n_max = the
            largest class and lets short classes keep all their images, and at least one each
            (more data, ratio not exact).
    Returns the kept indices (sorted), and the counts asked for and obtained.
    """
    labels = np.asarray(labels)
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    available = np.bincount(labels, minlength=num_classes)
    missing = [i for i in range(num_classes) if available[i] == 0]
    if missing:
        raise ConfigError(f"class(es) {missing} have no training images; every class needs at least one")
    targets, order = target_counts(available, ratio, profile, head_order, class_names, fit)
    rng = np.random.default_rng(seed)
    kept = [rng.choice(np.flatnonzero(labels == c), size=targets[c], replace=False) for c in range(num_classes)]
    indices = np.sort(np.concatenate(kept))
    return ImbalanceResult(indices, targets, np.bincount(labels[indices], minlength=num_classes), order)


def _check_ratio(ratio: float) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise ConfigError(f"ratio must be a number >= 1; got {ratio!r}")
    if not math.isfinite(ratio) or ratio < 1:
        raise ConfigError(f"ratio must be a finite number >= 1 (n_max / n_min); got {ratio}")


def _head_order(available: np.ndarray, head_order, class_names: list[str]) -> list[int]:
    num_classes = len(available)
    if head_order == "natural":
        return [int(c) for c in np.argsort(-available, kind="stable")]
    if head_order == "index":
        return list(range(num_classes))
    if isinstance(head_order, str):
        raise ConfigError(f"head_order must be 'natural', 'index' or a list of class indices; got {head_order!r}")
    order = [class_names.index(c) if isinstance(c, str) else int(c) for c in head_order]
    if sorted(order) != list(range(num_classes)):
        raise ConfigError(f"head_order must list every class exactly once; got {list(head_order)}")
    return order


def subset_suffix(ratio: float | None, seed: int) -> str:
    """The name suffix of the training subset a ratio and seed keep ("_r100_s2"; "" at natural counts): what a
    generator trained only on that subset is named by (`diffusion-train --ratio R --seed S`)."""
    return "" if ratio is None else f"_r{ratio:g}_s{seed}"


class Subsample(Protocol):
    """The fields that choose a training subset: a run's `TrainConfig` and a generator's config both have them."""

    ratio: float | None
    profile: str | dict[str, int]
    head_order: str | list[int]
    fit: str
    seed: int


def kept_indices(subsample: Subsample, dataset: ImageDataset) -> np.ndarray:
    """The training images a run keeps: all of them for natural counts, else `make_imbalanced`'s subset.

    Runs and generators both call this, so a generator learns from exactly the images of the runs it serves.
    Raises `ConfigError` for a ratio the data cannot reach.
    """
    labels = dataset.train.labels
    if subsample.ratio is None and not isinstance(subsample.profile, Mapping):
        return np.arange(len(labels))
    return make_imbalanced(
        labels,
        subsample.ratio or 1.0,
        subsample.profile,
        subsample.head_order,
        seed=subsample.seed,
        class_names=dataset.class_names,
        fit=subsample.fit,
    ).indices

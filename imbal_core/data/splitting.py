"""Seeded stratified train/val/test splits, optionally grouped (no group in two splits)."""

from __future__ import annotations

import numpy as np

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def stratified_split(
    labels: np.ndarray,
    seed: int,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Return indices for train/val/test with each class split by `fractions`.

    With `groups` (e.g. HAM10000's lesion_id), whole groups are assigned, so that no group
    appears in two splits; a group's class is the label of its first image.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(len(labels))
    _, group_index, group_of_item = np.unique(groups, return_index=True, return_inverse=True)
    group_labels = labels[group_index]
    group_split = np.empty(len(group_index), dtype=np.int64)
    bounds = np.cumsum(fractions)[:2]
    for cls in np.unique(group_labels):
        members = rng.permutation(np.flatnonzero(group_labels == cls))
        cut = np.round(bounds * len(members)).astype(int)
        group_split[members[: cut[0]]] = 0
        group_split[members[cut[0] : cut[1]]] = 1
        group_split[members[cut[1] :]] = 2
    item_split = group_split[group_of_item]
    return {name: np.flatnonzero(item_split == k) for k, name in enumerate(("train", "val", "test"))}

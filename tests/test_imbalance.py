"""Exact class counts after imbalance, and argument validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imbal_core.errors import ConfigError
from imbal_core.imbalance import make_imbalanced

LABELS = np.repeat(np.arange(5), [500, 400, 300, 200, 100])


def test_exp_profile_exact_counts():
    result = make_imbalanced(LABELS, ratio=100, profile="exp", head_order="index", seed=0, fit="cap")
    # n_i = floor(500 * 100^(-i/4)), capped by what each class has
    expected = [
        500,
        min(400, math.floor(500 * 100**-0.25)),
        math.floor(500 * 100**-0.5),
        math.floor(500 * 100**-0.75),
        5,
    ]
    assert result.counts.tolist() == expected == [500, 158, 50, 15, 5]
    assert np.bincount(LABELS[result.indices], minlength=5).tolist() == expected


def test_scale_fit_makes_the_ratio_exact():
    # head order 4..0: class 4 (100 images) must hold n_max, so n_max = 100 and class 0 gets 100/10
    result = make_imbalanced(LABELS, ratio=10, profile="exp", head_order=[4, 3, 2, 1, 0], seed=0)
    expected = [math.floor(100 * 10 ** (-r / 4) + 1e-9) for r in (4, 3, 2, 1, 0)]
    assert result.counts.tolist() == expected == [10, 17, 31, 56, 100]
    capped = make_imbalanced(LABELS, ratio=10, profile="exp", head_order=[4, 3, 2, 1, 0], seed=0, fit="cap")
    assert capped.counts.tolist() == [50, 88, 158, 200, 100]  # n_max = 500, short classes keep all


def test_step_profile_and_natural_order():
    result = make_imbalanced(LABELS, ratio=10, profile="step", seed=0, fit="cap")
    # natural order: class 0 is the head; the first C//2 = 2 classes keep n_max (capped), the rest n_max/10
    assert result.counts.tolist() == [500, 400, 50, 50, 50]
    exact = make_imbalanced(LABELS, ratio=10, profile="step", seed=0)
    assert exact.counts.tolist() == [400, 400, 40, 40, 40]  # n_max lowered to what class 1 has


def test_dict_profile_and_unknown_class():
    names = ["a", "b", "c", "d", "e"]
    result = make_imbalanced(LABELS, ratio=1, profile={"a": 7, "e": 3}, seed=0, class_names=names)
    assert result.counts.tolist() == [7, 400, 300, 200, 3]
    with pytest.raises(ConfigError, match=r"\['zz'\]"):
        make_imbalanced(LABELS, ratio=1, profile={"zz": 3}, class_names=names)
    with pytest.raises(ConfigError, match="cannot keep 1000"):
        make_imbalanced(LABELS, ratio=1, profile={"a": 1000}, class_names=names)


@pytest.mark.parametrize("ratio", [0.5, float("nan"), float("inf"), "10", None])
def test_bad_ratio(ratio):
    with pytest.raises(ConfigError, match="ratio"):
        make_imbalanced(LABELS, ratio=ratio)


def test_emptied_class_keeps_one_and_warns_with_cap():
    with pytest.warns(UserWarning, match=r"keeping 1 each \(achieved ratio 500\)"):
        result = make_imbalanced(LABELS, ratio=5000, seed=0, fit="cap")
    assert result.counts.min() == 1
    with pytest.raises(ConfigError, match="largest reachable ratio for these training counts is 500"):
        make_imbalanced(LABELS, ratio=5000, seed=0)  # fit="scale" cannot keep an exact ratio of 5000
    assert make_imbalanced(LABELS, ratio=500, seed=0).counts.tolist() == [500, 105, 22, 4, 1]


def test_seeded_selection():
    a = make_imbalanced(LABELS, ratio=10, seed=1).indices
    b = make_imbalanced(LABELS, ratio=10, seed=1).indices
    c = make_imbalanced(LABELS, ratio=10, seed=2).indices
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_engine_keeps_val_and_test_untouched():
    import torch

    from imbal_core.engine.trainer import prepare_data

    from .conftest import tiny_config

    full = prepare_data(tiny_config(), torch.device("cpu"))
    cut = prepare_data(tiny_config(ratio=10.0), torch.device("cpu"))
    assert len(cut.train_labels) < len(full.train_labels)
    for split in ("val", "test"):
        assert np.array_equal(cut.dataset.splits[split].labels, full.dataset.splits[split].labels)
    counts = cut.class_counts.numpy()
    assert counts.max() / counts.min() == pytest.approx(10, rel=0.2)

"""Comparison statistics: replicates are seeds, repeats are flagged, intervals need three seeds, pairs share a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from imbal_core.stats import formatted_leaderboard, leaderboard, paired_differences, t_interval, validation_curves


def _runs(rows):
    return pd.DataFrame(rows, columns=["run_id", "group", "data", "ratio_label", "seed", "balanced_acc"])


def test_repeats_of_one_seed_are_not_replicates():
    runs = _runs(
        [
            ("a", "ce · 8 ep", "syn", "natural", 0, 0.227),
            ("b", "ce · 8 ep", "syn", "natural", 0, 0.227),
            ("c", "ce · 8 ep", "syn", "natural", 0, 0.227),
        ]
    )
    board = leaderboard(runs, ["balanced_acc"])
    assert board.loc[0, "n_seeds"] == 1 and board.loc[0, "repeats"] == "seed 0 x3"
    cell = formatted_leaderboard(board, ["balanced_acc"]).loc[0, "balanced_acc"]
    assert cell == "0.227 ± —"  # no spread from one seed, however many runs


def test_interval_from_three_seeds_matches_scipy():
    values = np.array([0.50, 0.55, 0.53])
    assert np.isnan(t_interval(values[:2])[0])
    low, high = t_interval(values)
    expected = scipy_stats.t.interval(0.95, 2, loc=values.mean(), scale=scipy_stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    runs = _runs([(f"r{s}", "ce · 8 ep", "syn", "natural", s, v) for s, v in enumerate(values)])
    cell = formatted_leaderboard(leaderboard(runs, ["balanced_acc"]), ["balanced_acc"]).loc[0, "balanced_acc"]
    assert cell == f"0.527 ± 0.025 [{expected[0]:.3f}, {expected[1]:.3f}]"


def test_paired_differences_pair_by_seed_and_skip_unpaired_seeds():
    runs = _runs(
        [
            ("c0", "ce", "syn", "natural", 0, 0.40),
            ("c1", "ce", "syn", "natural", 1, 0.50),
            ("c2", "ce", "syn", "natural", 2, 0.60),
            ("b0", "bs", "syn", "natural", 0, 0.45),
            ("b1", "bs", "syn", "natural", 1, 0.56),
            ("b2", "bs", "syn", "natural", 2, 0.67),
            ("b3", "bs", "syn", "natural", 3, 0.99),
            ("x0", "bs", "other", "natural", 0, 0.10),
        ]
    )  # another data set: no reference there, no pair
    table = paired_differences(runs, "ce", ["balanced_acc"])
    assert len(table) == 1
    row = table.iloc[0]
    diffs = np.array([0.05, 0.06, 0.07])  # seed 3 has no ce run: left out
    assert row["n_pairs"] == 3 and row["mean_diff"] == pytest.approx(diffs.mean())
    assert (row["low"], row["high"]) == pytest.approx(t_interval(diffs))
    assert row["low"] > 0  # the paired interval sees the consistent gain that unpaired spreads would hide


def test_per_class_differences_pair_by_seed_and_order_classes_by_training_count():
    from types import SimpleNamespace

    from imbal_core.stats import paired_class_differences

    def result(run_id, group, recalls):
        metrics = {"train_counts": [10, 90], "per_class": {"recall": recalls}}
        return SimpleNamespace(run_id=run_id, group=group, class_names=["rare", "common"], metrics=metrics)

    runs = _runs(
        [
            ("c0", "ce", "syn", "natural", 0, 0),
            ("c1", "ce", "syn", "natural", 1, 0),
            ("b0", "bs", "syn", "natural", 0, 0),
            ("b1", "bs", "syn", "natural", 1, 0),
            ("b2", "bs", "syn", "natural", 2, 0),
            ("f2", "focal", "syn", "natural", 2, 0),
        ]
    )
    results = [
        result("c0", "ce", [0.1, 0.9]),
        result("c1", "ce", [0.2, 0.8]),
        result("b0", "bs", [0.5, 0.7]),
        result("b1", "bs", [0.4, 0.8]),
        result("b2", "bs", [0.9, 0.9]),
        result("f2", "focal", [0.9, 0.9]),
    ]
    table = paired_class_differences(results, runs, "ce").set_index(["group", "class"])
    assert list(table.index.get_level_values("class")[:2]) == ["common", "common"]  # most training images first
    assert table.loc[("bs", "rare"), "n_pairs"] == 2  # seed 2 has no ce run
    assert table.loc[("bs", "rare"), "mean_diff"] == pytest.approx(0.3)
    assert table.loc[("bs", "common"), "mean_diff"] == pytest.approx(-0.1)
    assert table.loc[("focal", "rare"), "n_pairs"] == 0 and np.isnan(table.loc[("focal", "rare"), "mean_diff"])
    assert paired_class_differences(results[:2], runs, "ce").empty  # only the reference: nothing to pair


def test_validation_curves_average_repeats_then_seeds_per_epoch():
    """Epochs count from 1; a repeated seed is averaged first (one replicate); a run without history is left out."""
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e"],
            "group": ["ce · 2 ep", "ce · 2 ep", "ce · 2 ep", "focal · 2 ep", "focal · 2 ep"],
            "seed": [0, 0, 1, 0, 1],
        }
    )

    def history(*scores: float) -> list[dict]:
        return [{"epoch": e, "loss": 1.0, "val_balanced_acc": v, "val_acc": 0.9} for e, v in enumerate(scores)]

    histories = {"a": history(0.2, 0.4), "b": history(0.4, 0.6), "c": history(0.5, 0.8), "d": history(0.1, 0.3)}
    curves = validation_curves(runs, histories).set_index(["group", "epoch"])
    assert set(curves["metric"]) == {"val_balanced_acc"}
    ce = curves.loc["ce · 2 ep"]
    assert list(ce.index) == [1, 2] and list(ce["n"]) == [2, 2]  # seeds 0 (two runs, averaged) and 1
    assert np.allclose(ce["mean"], [(0.3 + 0.5) / 2, (0.5 + 0.8) / 2])
    assert np.isclose(ce["sd"].iloc[1], np.std([0.5, 0.8], ddof=1))
    focal = curves.loc["focal · 2 ep"]  # run e has no history
    assert list(focal["n"]) == [1, 1] and focal["sd"].isna().all()

    assert set(curves["stage"]) == {"train"}  # histories without stages (older runs): one stage

    binary = {"a": [{"epoch": 0, "val_balanced_acc": 0.5, "val_auroc": 0.7}]}
    assert set(validation_curves(runs, binary)["metric"]) == {"val_auroc"}  # the score binary runs pick epochs by
    assert validation_curves(runs, {}).empty


def test_a_generator_per_ratio_and_seed_keeps_the_seeds_one_group():
    """iois with its own diffusion model per ratio and seed (<name>_r<R>_s<S>): its seeds are replicates of one group,
    paired with ce by seed; a generator of another subset is a different setting."""
    import json

    from imbal_core.compare import group_label

    def label(seed: int, generator: str, ratio: float | None = 100.0) -> str:
        config = {"method": "iois", "method_settings": {"generator": generator}, "ratio": ratio, "seed": seed}
        return group_label(json.dumps({**config, "epochs": 8, "backbone": "resnet10t_small"}))

    labels = {label(seed, f"diffusion_synthetic_28_r100_s{seed}") for seed in (0, 1, 2)}
    assert labels == {"iois[generator=diffusion_synthetic_28{subset}] · 8 ep · resnet10t_small"}
    assert label(1, "diffusion_synthetic_28_r100_s0").startswith("iois[generator=diffusion_synthetic_28_r100_s0]")
    assert label(0, "diffusion_synthetic_28", ratio=None).startswith("iois[generator=diffusion_synthetic_28]")

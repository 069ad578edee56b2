"""Comparison statistics: replicates are seeds, repeats are flagged, intervals need three seeds, pairs share a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from imbal_core import charts
from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR, read_results, results_names
from imbal_core.metrics import metric_range
from imbal_core.stats import (
    CLIPPED_MARK,
    formatted_leaderboard,
    leaderboard,
    paired_differences,
    rank_groups,
    t_interval,
    validation_curves,
    verdict,
)


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
    assert labels == {"iois[generator=diffusion_synthetic_28_r<ratio>_s<seed>] · 8 ep · resnet10t_small"}  # issue 38
    assert label(1, "diffusion_synthetic_28_r100_s0").startswith("iois[generator=diffusion_synthetic_28_r100_s0]")
    assert label(0, "diffusion_synthetic_28", ratio=None).startswith("iois[generator=diffusion_synthetic_28]")


def test_intervals_stay_in_the_metrics_range_and_are_marked_where_cut():
    """Issue 38: cb_resample's few acc read [0.033, 1.052] and a sensitivity [0.750, 1.008]: a t interval of 3 seeds
    passes 1. It is cut at the range (a difference's range for paired ones) and the cut end is marked."""
    values = np.array([0.90, 1.00, 1.00])
    runs = _runs([(f"r{s}", "ce", "syn", "natural", s, v) for s, v in enumerate(values)])
    row = leaderboard(runs, ["balanced_acc"]).iloc[0]
    assert t_interval(values)[1] > 1 and row["balanced_acc_high"] == 1.0
    cell = formatted_leaderboard(leaderboard(runs, ["balanced_acc"]), ["balanced_acc"]).loc[0, "balanced_acc"]
    assert cell.endswith(f", 1.000{CLIPPED_MARK}]") and CLIPPED_MARK not in cell.split(",")[0]

    kappa = _runs([(f"r{s}", "ce", "syn", "natural", s, v) for s, v in enumerate([-0.9, -1.0, -1.0])])
    kappa = kappa.rename(columns={"balanced_acc": "kappa_quadratic"})
    assert leaderboard(kappa, ["kappa_quadratic"]).iloc[0]["kappa_quadratic_low"] == -1.0  # kappa's range is [-1, 1]

    pairs = _runs(
        [(f"c{s}", "ce", "syn", "natural", s, v) for s, v in enumerate([0.0, 0.0, 0.1])]
        + [(f"b{s}", "bs", "syn", "natural", s, v) for s, v in enumerate([1.0, 1.0, 0.9])]
    )
    row = paired_differences(pairs, "ce", ["balanced_acc"]).iloc[0]
    assert row["high"] == 1.0 and -1.0 <= row["low"] < 1.0


def test_seeds_that_agree_exactly_say_so_instead_of_a_zero_width_interval():
    """Issue 38: "+0.000 [+0.000, +0.000]" when both methods score 0 read as certainty."""
    runs = _runs(
        [(f"c{s}", "ce", "syn", "natural", s, 0.0) for s in range(3)]
        + [(f"b{s}", "bs", "syn", "natural", s, 0.0) for s in range(3)]
    )
    cell = formatted_leaderboard(leaderboard(runs, ["balanced_acc"]), ["balanced_acc"]).loc[0, "balanced_acc"]
    assert cell == "0.000 (no variation over 3 seeds)"
    row = paired_differences(runs, "ce", ["balanced_acc"]).iloc[0]
    assert row["low"] == row["high"] == 0.0 and np.isnan(row["p"])
    assert verdict(row["low"], row["high"], row["p_holm"]).startswith("no variation")
    assert charts._interval_text(pd.Series([0.0]), pd.Series([0.0])) == ["(no variation)"]


def test_paired_differences_shown_together_are_corrected_with_holm():
    """Issue 38: ~150 intervals per table and no correction. p is the paired t test's; p_holm is Holm's adjustment
    over one data set and ratio's rows (statsmodels), and the verdict gives both."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    rows = [(f"ce{s}", "ce", "syn", "natural", s, 0.5 + rng.normal(0, 0.05)) for s in range(3)]
    for m, gain in enumerate([0.30, 0.0, 0.0, 0.0, 0.02]):
        rows += [(f"m{m}{s}", f"m{m}", "syn", "natural", s, rows[s][5] + gain + rng.normal(0, 0.01)) for s in range(3)]
    table = paired_differences(_runs(rows), "ce", ["balanced_acc"])
    diffs = [table.iloc[0]["mean_diff"]]
    assert table.iloc[0]["p"] == pytest.approx(
        scipy_stats.ttest_1samp(
            [rows[3 + s][5] - rows[s][5] for s in range(3)],
            0,
        ).pvalue
    )
    assert table["p_holm"].tolist() == pytest.approx(multipletests(table["p"], method="holm")[1].tolist())
    assert (table["p_holm"] >= table["p"]).all() and diffs[0] > 0.25
    words = [verdict(lo, hi, p) for lo, hi, p in zip(table["low"], table["high"], table["p_holm"])]
    assert words[0] == "differs, also after Holm"
    assert set(words[1:4]) <= {"interval includes 0", "interval excludes 0, not after Holm"}


def test_friedman_and_nemenyi_rank_methods_over_complete_blocks():
    """Issue 38: a ranking test across methods (Demšar 2006): Friedman's chi-square as scipy gives it, Nemenyi's p
    as scikit-posthocs gives it, mean ranks (1 = best; ECE lower is better), and a group missing blocks left out."""
    import scikit_posthocs

    rng = np.random.default_rng(1)
    rows, scores = [], {"good": 0.8, "mid": 0.6, "bad": 0.3, "worse": 0.2}
    for data in ("a", "b"):
        for seed in range(3):
            rows += [(f"{g}{data}{seed}", g, data, "natural", seed, v + rng.normal(0, 0.02)) for g, v in scores.items()]
    rows.append(("lone", "partial", "a", "natural", 0, 0.99))  # one block only
    runs = _runs(rows)
    ranking = rank_groups(runs, "balanced_acc")
    assert ranking is not None and ranking.left_out == ["partial"] and ranking.n_blocks == 6
    assert list(ranking.mean_ranks.index) == ["good", "mid", "bad", "worse"]
    assert ranking.mean_ranks.tolist() == [1.0, 2.0, 3.0, 4.0]
    wide = runs[runs["group"] != "partial"].pivot_table(
        index=["data", "seed"], columns="group", values="balanced_acc", sort=False
    )
    assert ranking.statistic == pytest.approx(scipy_stats.friedmanchisquare(*wide.T.to_numpy())[0])
    assert ranking.p_values.loc["good", "worse"] == pytest.approx(
        scikit_posthocs.posthoc_nemenyi_friedman(wide.reset_index(drop=True)).loc["good", "worse"]
    )
    assert ranking.p_values.loc["good", "worse"] < 0.05 < ranking.p_values.loc["good", "mid"]
    ece = rank_groups(runs.rename(columns={"balanced_acc": "ece"}), "ece")
    assert list(ece.mean_ranks.index) == ["worse", "bad", "mid", "good"]  # lower is better
    assert rank_groups(runs[runs["group"].isin(["good", "mid"])], "balanced_acc") is None  # under 3 groups

    figure = charts.critical_difference_figure(ranking, "test")
    assert {t.get_text() for t in figure.axes[0].texts} >= {"good (1.00)", "mid (2.00)", "(4.00) worse"}


SHIPPED_RESULTS = results_names([SHIPPED_RESULTS_DIR])
# Written before intervals were cut at the range; its runs were not archived and are being trained again with
# --archive (lab_data/chain2.sh): when the new file lands, this mark makes the test fail until it is removed.
NOT_REWRITTEN_YET = {"retinamnist_28"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="written before intervals were cut"))
        if n in NOT_REWRITTEN_YET
        else n
        for n in SHIPPED_RESULTS
    ],
)
def test_no_interval_in_a_shipped_results_file_leaves_its_metrics_range(name: str):
    """Issue 38: every interval of every shipped results file lies in the range of its metric (of a difference of
    it, for paired rows)."""
    table = read_results(name, [SHIPPED_RESULTS_DIR]).table
    rows = table[table["low"].notna()]
    ranges = [metric_range(m, difference=t.endswith("difference")) for m, t in zip(rows["metric"], rows["table"])]
    outside = rows[[not (lo >= r[0] and hi <= r[1]) for lo, hi, r in zip(rows["low"], rows["high"], ranges)]]
    assert outside.empty, outside[["table", "data", "group", "metric", "class", "low", "high"]].head().to_string()


def test_labels_say_what_ran_without_hashes_or_templates_unless_needed():
    """Issue 38: section titles carried data-path hashes ("ham10000#d74c"); two-stage methods read "30 ep" but
    trained 32. A hash now appears only when two folders would share a label."""
    import json

    from imbal_core.compare import _data_labels, group_label

    def config(path: str | None, source: str = "ham10000") -> str:
        return json.dumps(
            {"data": source, "data_path": path, "data_options": {}, "split_seed": 0, "image_size": 28, "task": None}
        )

    alone = _data_labels(pd.Series([config("/a/ham10000"), config(None, "synthetic")]))
    assert alone.tolist() == ["ham10000 28px", "synthetic 28px"]
    assert _data_labels(pd.Series([config("/a/ham_subset")])).tolist() == ["ham10000 ham_subset 28px"]
    two = _data_labels(pd.Series([config("/a/ham10000"), config("/b/ham10000"), config("/a/ham10000")]))
    assert two[0] == two[2] != two[1] and all("ham10000#" in label for label in two)

    def label(method: str, **settings) -> str:
        run = {"method": method, "method_settings": settings, "ratio": None, "seed": 0, "epochs": 30}
        return group_label(json.dumps({**run, "backbone": "resnet10t_small"}))

    assert label("crt").startswith("crt · 30+2 ep") and label("crt", stage2_epochs=5).startswith(
        "crt[stage2_epochs=5] · 30+5"
    )
    assert label("ce").startswith("ce · 30 ep") and label("iois").startswith("iois · 30 ep")  # stages within 30


def test_methods_with_identical_predictions_are_named_as_one_model_counted_twice():
    """Issue 38: `logit_adjust` and `balanced_softmax` gave bit-identical predictions, shown as two methods with no
    note. Pairs are found by the test probabilities of every shared seed; one differing seed breaks the pair."""
    from types import SimpleNamespace

    from imbal_core.compare import identical_groups, identical_note

    rng = np.random.default_rng(0)
    probs = {seed: rng.random((20, 3)) for seed in range(3)}

    def result(run_id: str, group: str, seed: int, tweak: float = 0.0):
        arrays = {"probs": probs[seed] + tweak}
        return SimpleNamespace(run_id=run_id, group=group, predictions=lambda: arrays), (run_id, seed)

    made = [result(f"b{s}", "balanced_softmax", s) for s in range(3)]
    made += [result(f"l{s}", "logit_adjust", s) for s in range(3)]
    made += [result(f"c{s}", "ce", s, tweak=1e-9 if s == 2 else 0.0) for s in range(3)]  # differs on one seed
    runs = pd.DataFrame([ids for _, ids in made], columns=["run_id", "seed"])
    pairs = identical_groups([r for r, _ in made], runs)
    assert pairs == [("logit_adjust", "balanced_softmax")]
    assert "`logit_adjust` = `balanced_softmax`" in identical_note(pairs)

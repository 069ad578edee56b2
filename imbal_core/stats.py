"""Statistics for comparing methods honestly: replicates are different seeds, intervals only when there
are enough of them, and differences paired by seed against a reference method.

Input is the runs frame of `compare.finished_runs` (one row per run: group, data, ratio_label, seed,
and the summary metrics as columns); per-class differences read each run's metrics.json through
`compare.RunResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .metrics import LOWER_IS_BETTER, metric_range

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # the level of every test, so a test and an interval agree on a lone difference
HOLM_MARK = " †"  # after a paired difference that holds after Holm's correction over its table
UNBOUNDED = (-np.inf, np.inf)
MIN_SEEDS_FOR_INTERVAL = 3  # with two seeds a t interval is too wide to say anything
COMPARABLE = ["data", "ratio_label"]  # runs are only compared within one data set and ratio


def t_interval(
    values: np.ndarray, confidence: float = CONFIDENCE, bounds: tuple[float, float] = UNBOUNDED
) -> tuple[float, float]:
    """Two-sided t interval of the mean, cut to `bounds` (the metric's range: the mean of recalls cannot pass 1, but
    a t interval of 3 seeds can); (nan, nan) below MIN_SEEDS_FOR_INTERVAL values. An end at a bound was cut there
    (values that vary never give a t interval ending exactly at it): `format_interval` marks it."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < MIN_SEEDS_FOR_INTERVAL:
        return float("nan"), float("nan")
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(max(values.mean() - half, bounds[0])), float(min(values.mean() + half, bounds[1]))


def t_test_p(differences: np.ndarray) -> float:
    """Two-sided p of a one-sample t test that the mean paired difference is 0; nan below MIN_SEEDS_FOR_INTERVAL
    pairs or when every pair differs by the same amount (no variation: the t test is undefined, said in words)."""
    differences = np.asarray(differences, dtype=float)
    differences = differences[np.isfinite(differences)]
    if len(differences) < MIN_SEEDS_FOR_INTERVAL or np.ptp(differences) == 0:
        return float("nan")
    return float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


def verdict(low: float, high: float, p_holm: float) -> str:
    """A paired difference in words: its raw 95 % interval and, beside it, the verdict after Holm's correction."""
    if not np.isfinite(low):
        return f"no interval (under {MIN_SEEDS_FOR_INTERVAL} pairs)"
    if low == high:
        return "no variation (the same in every pair)"
    if p_holm < ALPHA:
        return "differs, also after Holm"
    if low > 0 or high < 0:  # Holm's p is missing in results files written before it was recorded
        return "interval excludes 0, not after Holm" if np.isfinite(p_holm) else "interval excludes 0 (no Holm p)"
    return "interval includes 0"


def holm(p_values: pd.Series) -> pd.Series:
    """Holm's step-down adjustment over the finite p values of one family (the differences shown together), by
    statsmodels; nan stays nan. An adjusted p below 0.05 keeps the family's chance of any false claim under 5 %."""
    from statsmodels.stats.multitest import multipletests

    adjusted = pd.Series(np.nan, index=p_values.index)
    finite = p_values.notna()
    if finite.any():
        adjusted[finite] = multipletests(p_values[finite].to_numpy(dtype=float), method="holm")[1]
    return adjusted


def per_seed(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (data, ratio, group, seed): repeated runs of one seed are averaged, not counted as replicates.

    Column `runs` says how many runs each row stands for (> 1 = a repeat, flagged in the tables).
    """
    keys = COMPARABLE + ["group", "seed"]
    grouped = runs.groupby(keys, sort=False)
    table = grouped[metrics].mean()
    table["runs"] = grouped.size()
    return table.reset_index()


CLIPPED_MARK = "*"  # after an interval end cut at the metric's range
CLIPPED_NOTE = f"{CLIPPED_MARK} = the t interval passed the metric's range and is cut at its end"


def format_spread(
    mean: float,
    sd: float,
    n: int,
    low: float = float("nan"),
    high: float = float("nan"),
    bounds: tuple[float, float] = UNBOUNDED,
) -> str:
    """ "0.512 ± 0.013 [0.480, 0.544]"; a single seed has no spread: "0.512 ± —"; seeds that agree exactly:
    "0.512 (no variation over 3 seeds)" (a zero-width interval would read as certainty)."""
    if not np.isfinite(mean):
        return "—"
    if n < 2:
        return f"{mean:.3f} ± —"
    if sd == 0:
        return f"{mean:.3f} (no variation over {n} seeds)"
    return f"{mean:.3f} ± {sd:.3f}" + format_interval(low, high, bounds, signed=False)


def format_difference(mean: float, low: float, high: float, p_holm: float, metric: str, n: int | None = None) -> str:
    """A paired difference as every results table writes it: "+0.050 [+0.010, +0.090] (n=3) †" (an end cut at the
    difference's range marked *, † when it holds after Holm's correction), "+0.000 (no variation)" when every pair
    differs alike, "—" without a value."""
    if not np.isfinite(mean):
        return "—"
    pairs = f" (n={n})" if n is not None else ""
    if np.isfinite(low) and low == high:
        return f"{mean:+.3f} (no variation{f': the same in all {n} pairs' if n is not None else ''})"
    interval = format_interval(low, high, metric_range(metric, difference=True))
    return f"{mean:+.3f}{interval}{pairs}" + (HOLM_MARK if p_holm < ALPHA else "")


def format_interval(low: float, high: float, bounds: tuple[float, float] = UNBOUNDED, signed: bool = True) -> str:
    """ " [low, high]", an end cut at `bounds` marked with CLIPPED_MARK; "" without an interval."""
    if not np.isfinite(low):
        return ""
    sign = "+" if signed else ""
    ends = [f"{value:{sign}.3f}" + (CLIPPED_MARK if value in bounds else "") for value in (low, high)]
    return f" [{ends[0]}, {ends[1]}]"


def leaderboard(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (data, ratio, group): n seeds, then per metric mean, sd and a 95% t interval (n >= 3).

    Numeric columns `<metric>` (mean), `<metric>_sd`, `<metric>_low`, `<metric>_high` keep the table
    sortable; `repeats` names seeds that were run more than once (averaged, counted once).
    """
    seeds = per_seed(runs, metrics)
    rows = []
    for keys, part in seeds.groupby(COMPARABLE + ["group"], sort=False):
        row = dict(zip(COMPARABLE + ["group"], keys))
        row["method"] = part["group"].iloc[0].split(" · ")[0]
        row["n_seeds"] = len(part)
        repeated = part[part["runs"] > 1]
        row["repeats"] = ", ".join(f"seed {s} x{n}" for s, n in zip(repeated["seed"], repeated["runs"]))
        for metric in metrics:
            values = part[metric].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[metric] = float(finite.mean()) if len(finite) else float("nan")
            row[f"{metric}_sd"] = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
            row[f"{metric}_low"], row[f"{metric}_high"] = t_interval(finite, bounds=metric_range(metric))
        rows.append(row)
    return pd.DataFrame(rows)


def formatted_leaderboard(board: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The leaderboard as text cells: "mean ± sd [95% interval]", "—" where a seed is alone or a value missing."""
    out = board[COMPARABLE + ["group", "n_seeds"]].copy()
    for metric in metrics:
        out[metric] = [
            format_spread(m, s, n, lo, hi, metric_range(metric))
            for m, s, n, lo, hi in zip(
                board[metric], board[f"{metric}_sd"], board["n_seeds"], board[f"{metric}_low"], board[f"{metric}_high"]
            )
        ]
    out["repeats"] = board["repeats"]
    return out.rename(columns={"ratio_label": "ratio", "n_seeds": "n (seeds)"})


def paired_differences(runs: pd.DataFrame, reference: str, metrics: list[str]) -> pd.DataFrame:
    """Each group minus the `reference` group, paired by seed on the same data and ratio.

    Rows (data, ratio, group, metric, n_pairs, mean_diff, low, high, p, p_holm); seeds without a reference run
    are left out (so the difference is never between different splits or seeds). The interval is a 95% t interval
    of the paired differences from MIN_SEEDS_FOR_INTERVAL pairs on, cut to the range a difference of the metric can
    take; p is the paired t test's, and p_holm is adjusted over every row of one data set and ratio (the family a
    table shows together).
    """
    seeds = per_seed(runs, metrics).set_index(COMPARABLE + ["group", "seed"])[metrics].rename_axis(columns="metric")
    long = seeds.stack(future_stack=True).rename("value").reset_index()
    table = _paired(long, COMPARABLE + ["metric"], reference)
    table["p_holm"] = table.groupby(COMPARABLE, sort=False)["p"].transform(holm) if len(table) else []
    return table[COMPARABLE + ["group", "metric", "n_pairs", "mean_diff", "low", "high", "p", "p_holm"]]


def paired_class_differences(results: list, runs: pd.DataFrame, reference: str, metric: str = "recall") -> pd.DataFrame:
    """Per-class `metric` of each group minus the reference's, paired by seed (runs of one data set and ratio).

    `results` are `compare.RunResult`s of `runs`' rows. Rows (group, class, train_count, n_pairs, mean_diff,
    low, high, p, p_holm), classes in order of their training count (largest first); p_holm is adjusted over all
    rows (every group and class shown together).
    """
    seed_of = dict(zip(runs["run_id"], runs["seed"]))
    table = pd.DataFrame(
        [
            {"group": r.group, "seed": seed_of[r.run_id], "class": name, "train_count": count, "value": value}
            for r in results
            for name, count, value in zip(r.class_names, r.metrics["train_counts"], r.metrics["per_class"][metric])
        ]
    )
    columns = ["group", "class", "train_count", "n_pairs", "mean_diff", "low", "high", "p", "p_holm"]
    if table.empty or reference not in set(table["group"]):
        return pd.DataFrame(columns=columns)
    table = table.groupby(["group", "seed", "class"], sort=False).mean().reset_index()  # repeats count once
    differences = _paired(table.drop(columns="train_count").assign(metric=metric), ["class", "metric"], reference)
    differences["p_holm"] = holm(differences["p"])
    counts = table.groupby(["group", "class"], sort=False)["train_count"].mean().rename("train_count")
    differences = differences.join(counts, on=["group", "class"])
    return differences[columns].sort_values("train_count", ascending=False, kind="stable").reset_index(drop=True)


def _paired(long: pd.DataFrame, keys: list[str], reference: str) -> pd.DataFrame:
    """`long` has columns keys (with "metric") + [group, seed, value]. For each (keys, group) other than the
    reference, where the reference has runs at those keys: the number of seeds both have (finite values only), the
    mean paired difference, its t interval (cut to the range of a difference of the metric) and the t test's p.
    Rows keep the order in which groups first appear."""
    base = long[long["group"] == reference].drop(columns="group").rename(columns={"value": "reference"})
    others = long[long["group"] != reference]
    others = others[others.set_index(keys).index.isin(base.set_index(keys).index)]  # a reference at these keys
    merged = others.merge(base, on=[*keys, "seed"], how="left")
    merged["diff"] = merged["value"] - merged["reference"]
    rows = []
    for group_keys, part in merged.groupby([*keys, "group"], sort=False):
        diffs = part["diff"].to_numpy(dtype=float)
        diffs = diffs[np.isfinite(diffs)]
        where = dict(zip([*keys, "group"], group_keys))
        low, high = t_interval(diffs, bounds=metric_range(where["metric"], difference=True))
        rows.append(
            {
                **where,
                "n_pairs": len(diffs),
                "mean_diff": float(diffs.mean()) if len(diffs) else float("nan"),
                "low": low,
                "high": high,
                "p": t_test_p(diffs),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "group", "n_pairs", "mean_diff", "low", "high", "p"])


def validation_curves(runs: pd.DataFrame, histories: dict[str, list[dict]]) -> pd.DataFrame:
    """Each group's validation score per epoch, mean and sd over seeds: did the epoch budget suffice?

    `runs` are rows of `compare.finished_runs` (run_id, group, seed); `histories` maps a run id to its training
    history (the store's `progress["history"]`: one record per epoch with its stage and `val_*` scores). The score
    is the one runs pick their best epoch by: AUROC for binary runs, balanced accuracy otherwise. Repeats of a seed
    are averaged first. Rows (group, metric, epoch (from 1), stage, n, mean, sd); runs without a history are left
    out. A two-stage method's curve restarts at its second stage (the head is reset there).
    """
    records = [
        {**record, "group": group, "seed": seed, "epoch": record["epoch"] + 1}
        for run_id, group, seed in zip(runs["run_id"], runs["group"], runs["seed"])
        for record in histories.get(run_id) or []
    ]
    columns = ["group", "metric", "epoch", "stage", "n", "mean", "sd"]
    if not records:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(records)
    if "stage" not in table:
        table["stage"] = "train"
    metric = "val_auroc" if "val_auroc" in table and table["val_auroc"].notna().any() else "val_balanced_acc"
    seeds = table.groupby(["group", "seed", "epoch"], sort=False).agg(value=(metric, "mean"), stage=("stage", "first"))
    curves = seeds.groupby(["group", "epoch"], sort=False).agg(
        stage=("stage", "first"), n=("value", "count"), mean=("value", "mean"), sd=("value", "std")
    )
    return curves.reset_index().assign(metric=metric)[columns]


BLOCKS = [*COMPARABLE, "seed"]  # what a ranking test treats as one measurement of every method


@dataclass(frozen=True)
class Ranking:
    """Methods ranked over blocks (data set x ratio x seed) by one metric: Friedman's test of "all alike", then
    Nemenyi's pairwise test (Demšar 2006). `mean_ranks` (1 = best) are sorted best first; `p_values` is Nemenyi's
    pairwise matrix; groups not measured in every block are `left_out` (a rank test needs complete blocks)."""

    metric: str
    mean_ranks: pd.Series
    p_values: pd.DataFrame
    statistic: float
    p: float
    n_blocks: int
    critical_difference: float
    left_out: list[str]


def rank_groups(runs: pd.DataFrame, metric: str, alpha: float = 0.05) -> Ranking | None:
    """Rank the groups of `runs` (rows of `compare.finished_runs`) by `metric` within each block, a block being one
    data set, ratio and seed (repeats of a seed averaged). None with fewer than 3 groups or 2 complete blocks.

    Friedman's chi-square by scipy, Nemenyi's p values by scikit-posthocs, the critical difference from the
    studentized range. Demšar's blocks are data sets; seeds of one data set share its images, so with seeds as
    blocks the tests say whether the methods differ on these data sets, not on data sets in general."""
    import scikit_posthocs

    if metric not in runs or runs[metric].isna().all():
        return None
    seeds = per_seed(runs, [metric]).dropna(subset=[metric])
    wide = seeds.pivot_table(index=BLOCKS, columns="group", values=metric, sort=False)
    # Keep the groups measured in the most blocks, then the blocks where every kept group was measured.
    counts = wide.notna().sum()
    kept = [group for group in wide.columns if counts[group] == counts.max()]
    wide = wide[kept].dropna()
    left_out = [group for group in counts.index if group not in kept]
    if len(kept) < 3 or len(wide) < 2:
        return None
    ranks = wide.rank(axis=1, ascending=metric in LOWER_IS_BETTER)
    mean_ranks = ranks.mean().sort_index().sort_values(kind="stable")  # ties in name order, whatever the runs' order
    statistic, p = scipy_stats.friedmanchisquare(*(wide[group].to_numpy() for group in kept))
    p_values = scikit_posthocs.posthoc_nemenyi_friedman(wide.reset_index(drop=True))
    k, n = len(kept), len(wide)
    critical = scipy_stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2) * np.sqrt(k * (k + 1) / (6 * n))
    return Ranking(metric, mean_ranks, p_values, float(statistic), float(p), n, float(critical), left_out)

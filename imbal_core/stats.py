"""Statistics for comparing methods honestly: replicates are different seeds, intervals only when there
are enough of them, and differences paired by seed against a reference method.

Input is the runs frame of `compare.finished_runs` (one row per run: group, data, ratio_label, seed,
and the summary metrics as columns); per-class differences read each run's metrics.json through
`compare.RunResult`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
MIN_SEEDS_FOR_INTERVAL = 3  # with two seeds a t interval is too wide to say anything
COMPARABLE = ["data", "ratio_label"]  # runs are only compared within one data set and ratio


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t interval of the mean; (nan, nan) below MIN_SEEDS_FOR_INTERVAL values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < MIN_SEEDS_FOR_INTERVAL:
        return float("nan"), float("nan")
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def per_seed(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (data, ratio, group, seed): repeated runs of one seed are averaged, not counted as replicates.

    Column `runs` says how many runs each row stands for (> 1 = a repeat, flagged in the tables).
    """
    keys = COMPARABLE + ["group", "seed"]
    grouped = runs.groupby(keys, sort=False)
    table = grouped[metrics].mean()
    table["runs"] = grouped.size()
    return table.reset_index()


def format_spread(mean: float, sd: float, n: int, low: float = float("nan"), high: float = float("nan")) -> str:
    """ "0.512 ± 0.013 [0.480, 0.544]"; a single seed has no spread: "0.512 ± —"."""
    if not np.isfinite(mean):
        return "—"
    if n < 2:
        return f"{mean:.3f} ± —"
    text = f"{mean:.3f} ± {sd:.3f}"
    return text + (f" [{low:.3f}, {high:.3f}]" if np.isfinite(low) else "")


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
            row[f"{metric}_low"], row[f"{metric}_high"] = t_interval(finite)
        rows.append(row)
    return pd.DataFrame(rows)


def formatted_leaderboard(board: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The leaderboard as text cells: "mean ± sd [95% interval]", "—" where a seed is alone or a value missing."""
    out = board[COMPARABLE + ["group", "n_seeds"]].copy()
    for metric in metrics:
        out[metric] = [
            format_spread(m, s, n, lo, hi)
            for m, s, n, lo, hi in zip(
                board[metric], board[f"{metric}_sd"], board["n_seeds"], board[f"{metric}_low"], board[f"{metric}_high"]
            )
        ]
    out["repeats"] = board["repeats"]
    return out.rename(columns={"ratio_label": "ratio", "n_seeds": "n (seeds)"})


def paired_differences(runs: pd.DataFrame, reference: str, metrics: list[str]) -> pd.DataFrame:
    """Each group minus the `reference` group, paired by seed on the same data and ratio.

    Rows (data, ratio, group, metric, n_pairs, mean_diff, low, high); seeds without a reference run are left
    out (so the difference is never between different splits or seeds). The interval is a 95% t interval
    of the paired differences, given from MIN_SEEDS_FOR_INTERVAL pairs on.
    """
    seeds = per_seed(runs, metrics).set_index(COMPARABLE + ["group", "seed"])[metrics].rename_axis(columns="metric")
    long = seeds.stack(future_stack=True).rename("value").reset_index()
    table = _paired(long, COMPARABLE + ["metric"], reference)
    return table[COMPARABLE + ["group", "metric", "n_pairs", "mean_diff", "low", "high"]]


def paired_class_differences(results: list, runs: pd.DataFrame, reference: str, metric: str = "recall") -> pd.DataFrame:
    """Per-class `metric` of each group minus the reference's, paired by seed (runs of one data set and ratio).

    `results` are `compare.RunResult`s of `runs`' rows. Rows (group, class, train_count, n_pairs, mean_diff,
    low, high), classes in order of their training count (largest first).
    """
    seed_of = dict(zip(runs["run_id"], runs["seed"]))
    table = pd.DataFrame(
        [
            {"group": r.group, "seed": seed_of[r.run_id], "class": name, "train_count": count, "value": value}
            for r in results
            for name, count, value in zip(r.class_names, r.metrics["train_counts"], r.metrics["per_class"][metric])
        ]
    )
    columns = ["group", "class", "train_count", "n_pairs", "mean_diff", "low", "high"]
    if table.empty or reference not in set(table["group"]):
        return pd.DataFrame(columns=columns)
    table = table.groupby(["group", "seed", "class"], sort=False).mean().reset_index()  # repeats count once
    differences = _paired(table.drop(columns="train_count"), ["class"], reference)
    counts = table.groupby(["group", "class"], sort=False)["train_count"].mean().rename("train_count")
    differences = differences.join(counts, on=["group", "class"])
    return differences[columns].sort_values("train_count", ascending=False, kind="stable").reset_index(drop=True)


def _paired(long: pd.DataFrame, keys: list[str], reference: str) -> pd.DataFrame:
    """`long` has columns keys + [group, seed, value]. For each (keys, group) other than the reference, where the
    reference has runs at those keys: the number of seeds both have (finite values only), the mean paired
    difference and its t interval. Rows keep the order in which groups first appear."""
    base = long[long["group"] == reference].drop(columns="group").rename(columns={"value": "reference"})
    others = long[long["group"] != reference]
    others = others[others.set_index(keys).index.isin(base.set_index(keys).index)]  # a reference at these keys
    merged = others.merge(base, on=[*keys, "seed"], how="left")
    merged["diff"] = merged["value"] - merged["reference"]
    rows = []
    for group_keys, part in merged.groupby([*keys, "group"], sort=False):
        diffs = part["diff"].to_numpy(dtype=float)
        diffs = diffs[np.isfinite(diffs)]
        low, high = t_interval(diffs)
        rows.append(
            {
                **dict(zip([*keys, "group"], group_keys)),
                "n_pairs": len(diffs),
                "mean_diff": float(diffs.mean()) if len(diffs) else float("nan"),
                "low": low,
                "high": high,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "group", "n_pairs", "mean_diff", "low", "high"])


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

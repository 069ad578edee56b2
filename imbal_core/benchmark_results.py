"""Read the results files that `benchmark` writes (`results/<name>.md` and `.csv`): Compare's reference tables.

The CSV is tidy, one row per number: `table` says which table of the markdown it belongs to (summary,
paired_difference, per_class_recall, per_class_recall_difference, validation_curve; a `reference` row names the group
a section's differences are paired against first, the `reference` column the group of each difference), `data` and
`ratio` which section. The readers here
turn a section back into the frames Compare draws live runs with, so a shipped benchmark looks like a comparison of
one's own runs; the markdown's header (command, code version, wall time, protocol) says how it was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import class_labels
from .errors import DataError
from .stats import COMPARABLE, Ranking
from .utils import IN_CHECKOUT, PACKAGE_ROOT, REPO_ROOT, lab_home

# The shipped results files: results/ in a checkout, imbal_core/results/ in an installed package.
SHIPPED_RESULTS_DIR = REPO_ROOT / "results" if IN_CHECKOUT else PACKAGE_ROOT / "results"
TEXT_COLUMNS = ["table", "data", "ratio", "method", "group", "metric", "class", "stage", "reference"]
RESULTS_COLUMNS = [
    "table",
    "data",
    "ratio",
    "method",
    "group",
    "metric",
    "class",
    "train_count",
    "n",
    "mean",
    "sd",
    "low",
    "high",
    "epoch",  # of a validation curve row
    "stage",  # of a validation curve row: the training stage of that epoch
    "reference",  # the group a paired difference is taken against (a protocol may have other_references)
    "p",  # a paired difference's t test, or a ranking test's
    "p_holm",  # a paired difference's p after Holm's correction over its section's differences
]
# Files written before validation curves, other references and p values were added end at "high".
EARLIER_COLUMNS = RESULTS_COLUMNS[: RESULTS_COLUMNS.index("high") + 1]


def results_dir() -> Path:
    """Where `benchmark` writes its results files by default: results/ in a checkout, <lab home>/results when
    installed (the package's own folder may not be writable)."""
    return SHIPPED_RESULTS_DIR if IN_CHECKOUT else lab_home() / "results"


def results_folders() -> list[Path]:
    """The folders Compare reads results files from: the default output folder, then the shipped one."""
    return list(dict.fromkeys([results_dir(), SHIPPED_RESULTS_DIR]))


@dataclass(frozen=True)
class BenchmarkResults:
    """One benchmark's results file: its markdown header and its tidy table."""

    name: str
    csv: Path  # the .md beside it is the human-readable file
    header: str  # the markdown before the first section: description, command, code version, wall time
    table: pd.DataFrame

    def sections(self) -> list[tuple[str, str]]:
        """(data, ratio) of each section, in the file's order (rankings span the sections: their data is empty)."""
        rows = self.table[self.table["data"] != ""]
        return list(dict.fromkeys(zip(rows["data"], rows["ratio"])))

    def section(self, data: str, ratio: str, table: str) -> pd.DataFrame:
        rows = self.table[
            (self.table["data"] == data) & (self.table["ratio"] == ratio) & (self.table["table"] == table)
        ]
        return rows.reset_index(drop=True)

    def is_binary(self, data: str, ratio: str) -> bool:
        """A section of a binary task (its metrics are AUROC and the like)."""
        return bool((self.section(data, ratio, "summary")["metric"] == "auroc").any())

    def leaderboard(self, data: str, ratio: str) -> tuple[pd.DataFrame, list[str]]:
        """(the section's leaderboard in `stats.leaderboard`'s columns, its metrics in the file's order)."""
        summary = self.section(data, ratio, "summary")
        metrics = list(dict.fromkeys(summary["metric"]))
        wide = summary.pivot_table(index="group", columns="metric", values=["mean", "sd", "low", "high"], sort=False)
        board = pd.DataFrame({"group": list(dict.fromkeys(summary["group"]))})
        board["method"] = board["group"].map(dict(zip(summary["group"], summary["method"])))
        board["n_seeds"] = board["group"].map(summary.groupby("group")["n"].max()).astype(int)
        board["repeats"] = ""  # a results file counts each seed once (repeats are named in its markdown)
        for metric in metrics:
            for stat, suffix in (("mean", ""), ("sd", "_sd"), ("low", "_low"), ("high", "_high")):
                column = wide.get((stat, metric))
                board[metric + suffix] = board["group"].map(column) if column is not None else float("nan")
        board.insert(0, COMPARABLE[1], ratio)
        board.insert(0, COMPARABLE[0], data)
        return board, metrics

    def identical(self, data: str, ratio: str) -> list[tuple[str, str]]:
        """(group, earlier group) pairs whose test predictions were byte-identical on every seed (`identical_groups`
        when the file was written; files written before say nothing)."""
        rows = self.section(data, ratio, "identical")
        return list(zip(rows["group"], rows["reference"]))

    def reference(self, data: str, ratio: str) -> str | None:
        """The group the section's differences are paired against; None when it has none."""
        named = self.section(data, ratio, "reference")["group"]
        if not named.empty:
            return str(named.iloc[0])
        # Files written before the reference was named: it is the first group (listed first) with no paired rows.
        paired = set(self.section(data, ratio, "paired_difference")["group"])
        unpaired = [g for g in dict.fromkeys(self.section(data, ratio, "summary")["group"]) if g not in paired]
        return unpaired[0] if paired and unpaired else None

    def references(self, data: str, ratio: str) -> list[str]:
        """The groups the section's differences are paired against: the reference first, then the others."""
        first = self.reference(data, ratio)
        named = self.section(data, ratio, "paired_difference")["reference"]
        return list(dict.fromkeys([first, *named[named != ""]])) if first is not None else []

    def paired_differences(self, data: str, ratio: str, reference: str | None = None) -> pd.DataFrame:
        """Rows (group, metric, n_pairs, mean_diff, low, high, p, p_holm), as `stats.paired_differences` gives
        them, against `reference` (one of `references()`; default the section's reference). p and p_holm are
        missing in files written before they were recorded."""
        rows = self._against(self.section(data, ratio, "paired_difference"), data, ratio, reference)
        return rows.rename(columns={"n": "n_pairs", "mean": "mean_diff"})[
            ["group", "metric", "n_pairs", "mean_diff", "low", "high", "p", "p_holm"]
        ]

    def rankings(self) -> list[Ranking]:
        """The Friedman / Nemenyi rankings the benchmark wrote (see `benchmark._rankings`); none in files written
        before they were."""
        rows = self.table[self.table["data"] == ""]
        rankings = []
        for test in rows[rows["table"] == "rank_test"].itertuples(index=False):
            named = rows[(rows["table"] == "rank") & (rows["metric"] == test.metric)]
            ranks, left_out = named[named["mean"].notna()], named[named["mean"].isna()]  # no rank: left out
            pairs = rows[(rows["table"] == "rank_pairwise") & (rows["metric"] == test.metric)]
            p_values = pairs.pivot_table(index="group", columns="reference", values="p", sort=False)
            groups = list(ranks["group"])
            p_values = p_values.reindex(index=groups, columns=groups).fillna(1.0)  # a group against itself
            rankings.append(
                Ranking(
                    test.metric,
                    pd.Series(ranks["mean"].to_numpy(), index=groups),
                    p_values,
                    float(test.mean),
                    float(test.p),
                    int(test.n),
                    float(test.high),
                    list(left_out["group"]),
                )
            )
        return rankings

    def per_class_recall(self, data: str, ratio: str) -> pd.DataFrame:
        """Per-class recall in `compare.per_class_table`'s columns (`method` is the group's label)."""
        rows = self._classes(self.section(data, ratio, "per_class_recall"))
        return rows[["method", "class", "class_label", "train_count", "mean", "sd", "runs"]]

    def recall_change(self, data: str, ratio: str, reference: str | None = None) -> pd.DataFrame:
        """Per-class recall change vs `reference` (one of `references()`; default the section's reference), paired by
        seed, in percentage points (`change`, `low`, `high`), in `compare.change_vs_baseline`'s columns. Empty for
        another reference in files written before these were recorded against every reference."""
        rows = self._against(self.section(data, ratio, "per_class_recall_difference"), data, ratio, reference)
        rows = self._classes(rows)
        rows[["change", "low", "high"]] = 100 * rows[["mean", "low", "high"]]
        return rows[["method", "class", "class_label", "train_count", "change", "low", "high", "runs"]]

    def validation_curves(self, data: str, ratio: str) -> pd.DataFrame:
        """Rows (group, metric, epoch, stage, n, mean, sd), as `stats.validation_curves` gives them; empty for files
        written before the curves were recorded."""
        return self.section(data, ratio, "validation_curve")[["group", "metric", "epoch", "stage", "n", "mean", "sd"]]

    def _against(self, rows: pd.DataFrame, data: str, ratio: str, reference: str | None) -> pd.DataFrame:
        """The difference rows against `reference` (default: the section's reference)."""
        first = self.reference(data, ratio)
        against = rows["reference"].where(rows["reference"] != "", first)  # older files: the reference only
        return rows[against == (reference or first)]

    @staticmethod
    def _classes(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(
            method=rows["group"], class_label=class_labels(rows["class"], rows["train_count"]), runs=rows["n"]
        )


def results_names(folders: Sequence[Path | str] | None = None) -> list[str]:
    """Names of the benchmark results files in `folders` (default `results_folders()`): a .csv in the benchmark's
    columns beside its .md. A name in two folders is listed once (the first folder's file is read)."""
    return list(results_files(folders))


def read_results(name: str, folders: Sequence[Path | str] | None = None) -> BenchmarkResults:
    """One benchmark's results; a clear error when it is missing or is not a benchmark's results file."""
    files = results_files(folders)
    if name not in files:
        searched = ", ".join(str(f) for f in (folders or results_folders()))
        raise DataError(
            f"no benchmark results file {name!r} in {searched}; known ones: {sorted(files) or 'none'}. "
            f"`python -m imbal_core benchmark {name}` writes it (to {results_dir()} unless given --out-dir)"
        )
    csv = files[name]
    # Text columns as written (a class named "NA" or "None" stays a name); empty numbers are missing values.
    table = pd.read_csv(csv, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False)
    table = table.reindex(columns=RESULTS_COLUMNS, fill_value="")
    for column in set(RESULTS_COLUMNS) - set(TEXT_COLUMNS):
        table[column] = pd.to_numeric(table[column].replace("", np.nan))
    header = csv.with_suffix(".md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    return BenchmarkResults(name, csv, header.split("\n", 1)[1].strip() if "\n" in header else "", table)


def results_files(folders: Sequence[Path | str] | None = None) -> dict[str, Path]:
    """{name: its .csv} of the benchmark results files in `folders` (default `results_folders()`)."""
    found: dict[str, Path] = {}
    for folder in map(Path, folders or results_folders()):
        for csv in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            with open(csv, encoding="utf-8") as handle:
                columns = handle.readline().strip().split(",")
                known = columns == RESULTS_COLUMNS[: len(columns)] and len(columns) >= len(EARLIER_COLUMNS)
                if known and csv.with_suffix(".md").is_file():
                    found.setdefault(csv.stem, csv)
    return found

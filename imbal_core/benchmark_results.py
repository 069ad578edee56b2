"""Read the results files that `benchmark` writes (`results/<name>.md` and `.csv`): Compare's reference tables.

The CSV is tidy, one row per number: `table` says which table of the markdown it belongs to (summary,
paired_difference, per_class_recall, per_class_recall_difference), `data` and `ratio` which section. The readers here
turn a section back into the frames Compare draws live runs with, so a shipped benchmark looks like a comparison of
one's own runs; the markdown's header (command, code version, wall time, protocol) says how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import DataError
from .stats import COMPARABLE
from .utils import IN_CHECKOUT, PACKAGE_ROOT, REPO_ROOT

# The shipped results files: results/ in a checkout, imbal_core/results/ in an installed package.
RESULTS_DIR = REPO_ROOT / "results" if IN_CHECKOUT else PACKAGE_ROOT / "results"
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
]


@dataclass(frozen=True)
class BenchmarkResults:
    """One benchmark's results file: its markdown header and its tidy table."""

    name: str
    header: str  # the markdown before the first section: description, command, code version, wall time
    table: pd.DataFrame

    def sections(self) -> list[tuple[str, str]]:
        """(data, ratio) of each section, in the file's order."""
        return list(dict.fromkeys(zip(self.table["data"], self.table["ratio"])))

    def section(self, data: str, ratio: str, table: str) -> pd.DataFrame:
        rows = self.table[
            (self.table["data"] == data) & (self.table["ratio"] == ratio) & (self.table["table"] == table)
        ]
        return rows.reset_index(drop=True)

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

    def reference(self, data: str, ratio: str) -> str | None:
        """The group the section's differences are paired against (listed first, unpaired); None without any."""
        paired = set(self.section(data, ratio, "paired_difference")["group"])
        unpaired = [g for g in dict.fromkeys(self.section(data, ratio, "summary")["group"]) if g not in paired]
        return unpaired[0] if paired and unpaired else None

    def paired_differences(self, data: str, ratio: str) -> pd.DataFrame:
        """Rows (group, metric, n_pairs, mean_diff, low, high), as `stats.paired_differences` gives them."""
        rows = self.section(data, ratio, "paired_difference")
        return rows.rename(columns={"n": "n_pairs", "mean": "mean_diff"})[
            ["group", "metric", "n_pairs", "mean_diff", "low", "high"]
        ]

    def per_class_recall(self, data: str, ratio: str) -> pd.DataFrame:
        """Per-class recall in `compare.per_class_table`'s columns (`method` is the group's label)."""
        rows = self._classes(self.section(data, ratio, "per_class_recall"))
        return rows[["method", "class", "class_label", "train_count", "mean", "sd", "runs"]]

    def recall_change(self, data: str, ratio: str) -> pd.DataFrame:
        """Per-class recall change vs the reference, paired by seed, in percentage points (`change`, `low`, `high`),
        in `compare.change_vs_baseline`'s columns."""
        rows = self._classes(self.section(data, ratio, "per_class_recall_difference"))
        rows[["change", "low", "high"]] = 100 * rows[["mean", "low", "high"]]
        return rows[["method", "class", "class_label", "train_count", "change", "low", "high", "runs"]]

    @staticmethod
    def _classes(rows: pd.DataFrame) -> pd.DataFrame:
        counts = rows["train_count"].round().astype("Int64").astype(str)
        return rows.assign(method=rows["group"], class_label=rows["class"] + " (" + counts + ")", runs=rows["n"])


def results_names(folder: Path | str = RESULTS_DIR) -> list[str]:
    """Names of the benchmark results files in `folder` (a .csv in the benchmark's columns beside its .md)."""
    folder = Path(folder)
    names = []
    for csv in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        with open(csv, encoding="utf-8") as handle:
            if handle.readline().strip().split(",") == RESULTS_COLUMNS and csv.with_suffix(".md").is_file():
                names.append(csv.stem)
    return names


def read_results(name: str, folder: Path | str = RESULTS_DIR) -> BenchmarkResults:
    """One benchmark's results; a clear error when it is missing or is not a benchmark's results file."""
    folder = Path(folder)
    if name not in results_names(folder):
        raise DataError(
            f"no benchmark results file {name!r} in {folder}; known ones: {results_names(folder) or 'none'}. "
            f"`python -m imbal_core benchmark {name}` writes it"
        )
    table = pd.read_csv(folder / f"{name}.csv", dtype={"data": str, "ratio": str, "class": str})
    markdown = (folder / f"{name}.md").read_text(encoding="utf-8")
    header = markdown.split("\n## ", 1)[0]
    return BenchmarkResults(name, header.split("\n", 1)[1].strip() if "\n" in header else "", table)

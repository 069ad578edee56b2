"""One markdown table of a metric from several benchmark results files, side by side (e.g. HAM10000 at 28 and 128 px).

Reads the CSVs that `benchmark` writes (results/<name>.csv) and prints, per method, the metric's mean ± sd over
seeds and its paired differences against the protocol's references (mean [95 % interval]) in each file. Only what
the files hold is printed: a method a file lacks shows "—", and one whose predictions are another's byte for byte is
marked "(= that method)". Sections on a binary task (one-class methods) are
printed as a second table with their own metric.

    .venv/bin/python scripts/results_side_by_side.py results/ham10000_28.csv results/ham10000_128.csv
    .venv/bin/python scripts/results_side_by_side.py results/ham10000_28.csv --metric macro_f1 --task-metric auroc
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from imbal_core.charts import method_of  # noqa: E402
from imbal_core.stats import format_difference  # noqa: E402


def cell(row: pd.Series | None, signed: bool) -> str:
    """A summary cell ("0.531 ± 0.007") or a paired difference as the results files write it: its interval (an end
    cut at the range marked *), "no variation", and † when it holds after Holm's correction over its section."""
    if row is None:
        return "—"
    if signed:
        return format_difference(row["mean"], row["low"], row["high"], row.get("p_holm", np.nan), row["metric"])
    return f"{row['mean']:.3f} ± " + ("—" if pd.isna(row["sd"]) else f"{row['sd']:.3f}")


def table(files: dict[str, pd.DataFrame], metric: str, binary: bool) -> list[str]:
    """Rows: methods in the first file's order (then any others); columns: per file, the metric and its differences."""
    parts: dict[str, dict[str, pd.DataFrame]] = {}
    for name, frame in files.items():
        on_task = frame["data"].str.contains(r"\[", regex=True)
        frame = frame[(on_task if binary else ~on_task) & (frame["metric"] == metric) & frame["class"].isna()]
        parts[name] = {kind: frame[frame["table"] == kind] for kind in ("summary", "paired_difference")}
    references = {
        name: [ref for ref in dict.fromkeys(part["paired_difference"]["reference"]) if isinstance(ref, str)]
        for name, part in parts.items()
    }
    methods = list(dict.fromkeys(m for part in parts.values() for m in part["summary"]["method"]))
    copies = pd.concat([frame[frame["table"] == "identical"] for frame in files.values()])
    copy_of = dict(zip(copies["method"], copies["reference"].map(method_of)))  # identical predictions
    header, rule = ["method"], ["---"]
    for name in files:
        header.append(f"{name}: {metric}")
        header += [f"{name}: − {ref.split(' · ')[0]}" for ref in references[name]]
    rule += ["---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for method in methods:
        cells = [f"`{method}`" + (f" (= `{copy_of[method]}`)" if method in copy_of else "")]
        for name, part in parts.items():
            summary = part["summary"][part["summary"]["method"] == method]
            cells.append(cell(summary.iloc[0] if len(summary) else None, signed=False))
            for ref in references[name]:
                diff = part["paired_difference"]
                diff = diff[(diff["method"] == method) & (diff["reference"] == ref)]
                cells.append(cell(diff.iloc[0] if len(diff) else None, signed=True))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+", type=Path, help="results files written by `benchmark` (.csv)")
    parser.add_argument("--metric", default="balanced_acc", help="metric of the multi-class sections")
    parser.add_argument("--task-metric", default="auroc", help="metric of the binary-task sections")
    args = parser.parse_args()
    files = {path.stem: pd.read_csv(path) for path in args.csv}
    print("\n".join(table(files, args.metric, binary=False)))
    binary = table(files, args.task_metric, binary=True)
    if len(binary) > 2:
        print()
        print("\n".join(binary))


if __name__ == "__main__":
    main()

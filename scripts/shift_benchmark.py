"""Robustness to acquisition shift on HAM10000, with and without Shades-of-Gray colour constancy.

    .venv/bin/python scripts/shift_benchmark.py --out results/shift_robustness

For each method x colour constancy (none, shades_of_gray) x seed: train on HAM10000 at 28 px
(lesion-grouped split, natural counts), then evaluate the run's model on its own test split under
every acquisition shift (colour cast, contrast, blur, JPEG) at every strength
(`imbal_core.engine.robustness`; constancy runs get it after the shift). Writes <out>.md and
<out>.csv: unshifted test balanced accuracy and its drop per shift and strength, mean ± sd over
seeds. The question: does colour constancy narrow the drop under a colour cast, and what does it
cost on unshifted images?

Runs go to <out>_store; a finished run with the same config is reused, and one that already has
results for every asked shift and strength is not evaluated again, so an interrupted call continues.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imbal_core.compare import finished_runs  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.engine.robustness import MULTICLASS_DROP_METRICS, drop_table, eval_name, evaluate_shifts, load_report  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402
from imbal_core.shifts import SHIFTS  # noqa: E402
from imbal_core.utils import atomic_path  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ham10000"
CONSTANCY = (None, "shades_of_gray")
HEADLINE = "balanced_acc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="ce,balanced_softmax")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--strengths", default="1,2,3,4,5")
    parser.add_argument("--path", default=str(DATA), help="HAM10000 folder (see ../shared/METHODS.md)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="output path without suffix (.md and .csv are written)")
    args = parser.parse_args()
    if not Path(args.path).exists():
        sys.exit(f"HAM10000 not found at {args.path}: pass --path (see ../shared/METHODS.md, 'Data at hand')")
    out = Path(args.out)
    store = RunStore(f"{out}_store")
    strengths = [int(s) for s in args.strengths.split(",")]
    started, rows = time.time(), []
    for method in args.methods.split(","):
        for constancy in CONSTANCY:
            for seed in (int(s) for s in args.seeds.split(",")):
                config = TrainConfig(
                    method=method,
                    data="ham10000",
                    data_path=args.path,
                    colour_constancy=constancy,
                    epochs=args.epochs,
                    seed=seed,
                    device=args.device,
                )
                t0 = time.time()
                run_id = _finished_run(store, config) or train(config, store)
                trained = time.time() - t0
                report = load_report(store.run_dir(run_id))
                asked = {eval_name(s, k) for s in SHIFTS.names() for k in strengths}
                if report is None or not asked <= set(report["results"]):
                    report = evaluate_shifts(store, run_id, SHIFTS.names(), strengths, args.device)
                print(
                    f"{method} constancy={constancy} seed {seed}: trained {trained:.0f} s, evaluated "
                    f"{time.time() - t0 - trained:.0f} s",
                    flush=True,
                )
                table = drop_table(report, MULTICLASS_DROP_METRICS)
                table = table[table["strength"].isin([0, *strengths])]
                rows.append(table.assign(run_id=run_id, method=method, constancy=constancy or "none", seed=seed))
    write_results(out, store, pd.concat(rows, ignore_index=True), args, time.time() - started)


def _finished_run(store: RunStore, config: TrainConfig) -> str | None:
    """A finished run of this exact config in the store (reused instead of training again)."""
    runs = finished_runs([store])
    return next((r.run_id for r in runs.itertuples() if json.loads(r.config) == config.to_dict()), None)


def write_results(out: Path, store: RunStore, table: pd.DataFrame, args: argparse.Namespace, seconds: float) -> None:
    runs = store.runs(status="finished")
    runs = runs[runs["run_id"].isin(table["run_id"])]
    version = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    budget = json.loads(runs["config"].iloc[0])
    headline = table[table["metric"] == HEADLINE]
    groups = ["method", "constancy"]
    lines = [
        "# Robustness to acquisition shift on HAM10000, with and without colour constancy",
        "",
        f"Command: `python scripts/shift_benchmark.py {' '.join(sys.argv[1:])}`",
        "",
        f"Budget: HAM10000 at {budget['image_size']} px, lesion-grouped split, natural counts, {args.epochs} epochs, "
        f"batch {budget['batch_size']}, {budget['optimizer']} lr {budget['lr']:g} cosine, backbone "
        f"`{budget['backbone']}` from scratch, augmentation {'on' if budget['augment'] else 'off'}, "
        f"seeds {args.seeds}. "
        "Colour constancy `shades_of_gray` (p = 6) is applied to every split in training and, in evaluation, to the "
        "test images after the shift. Shift seed 0 (each image's cast colour). Machine: "
        f"{platform.machine()}{', CUDA' if torch.cuda.is_available() else ', CPU only'}, {torch.get_num_threads()} "
        f"torch thread(s); the runs' training time {runs['duration_s'].sum() / 60:.1f} min; this call "
        f"{seconds / 60:.1f} min. Code: {version}.",
        "",
        "What one step of strength is (`imbal_core/shifts.py`):",
        "",
        *[f"- `{name}`: {SHIFTS.get(name).description}" for name in SHIFTS.names()],
        "",
        "## Unshifted test set, mean ± sd over seeds",
        "",
        "| method | colour constancy | balanced ACC | ACC | macro-F1 |",
        "|---|---|---|---|---|",
    ]
    clean = table[table["strength"] == 0].drop_duplicates(["run_id", "metric"])
    for (method, constancy), part in clean.groupby(groups, sort=False):
        cells = [_mean_sd(part.loc[part["metric"] == m, "value"]) for m in ("balanced_acc", "acc", "macro_f1")]
        lines.append(f"| {method} | {constancy} | " + " | ".join(cells) + " |")
    strengths = sorted(s for s in headline["strength"].unique() if s > 0)
    for shift in dict.fromkeys(headline["shift"]):
        lines += [
            "",
            f"## `{shift}`: drop of test balanced accuracy (unshifted − shifted), mean ± sd over seeds",
            "",
            "| method | colour constancy | " + " | ".join(f"strength {s}" for s in strengths) + " |",
            "|---|---|" + "---|" * len(strengths),
        ]
        part = headline[headline["shift"] == shift]
        for (method, constancy), rows in part.groupby(groups, sort=False):
            cells = [_mean_sd(rows.loc[rows["strength"] == s, "drop"]) for s in strengths]
            lines.append(f"| {method} | {constancy} | " + " | ".join(cells) + " |")
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_path(out.with_suffix(".csv")) as tmp:
        table[["run_id", "method", "constancy", "seed", "shift", "strength", "metric", "value", "drop"]].to_csv(
            tmp, index=False
        )
    print("\n".join(lines))


def _mean_sd(values: pd.Series) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


if __name__ == "__main__":
    main()

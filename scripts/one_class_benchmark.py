"""Binary tasks on real data: knowledge-guided one-class learning against its ablation and baselines.

    .venv/bin/python scripts/one_class_benchmark.py --out results/binary_one_class

Three tasks from ../shared/data (positive = abnormal; in training the abnormal side is cut to a
1:10 minority of the normal side, validation and test stay as they are):
    ham10000   "mel vs nv"                                    dermoscopy recipe
    retina     RetinaMNIST "grade_1..grade_4 vs grade_0"      fundus recipe
    pneumonia  PneumoniaMNIST "pneumonia vs normal"           chest X-ray recipe
Methods (same budget per task): knowledge_one_class (the task's recipe), its knowledge-free
ablation (recipe=generic), Deep SVDD, and ce, weighted_ce, balanced_softmax on the binary task.
Reports AUROC, AUPRC, sensitivity at 95 % specificity and balanced accuracy (threshold chosen on
validation) as mean ± sd over seeds, and the paired difference knowledge − generic per seed.

Runs go to <out>_store; a finished run with the same config is reused, so `--only` lets the tasks
run in separate processes and a last call without it writes the file from all of them.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from compare_methods import parse_methods  # noqa: E402

from imbal_core.compare import finished_runs  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402
from imbal_core.utils import atomic_path  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
METHODS = "knowledge_one_class,knowledge_one_class[recipe=generic],deep_svdd,ce,weighted_ce,balanced_softmax"
METRICS = ("auroc", "auprc", "sens_at_95_spec", "balanced_acc")
RATIO = 10  # normal : abnormal in training


@dataclass(frozen=True)
class Task:
    name: str
    data: str
    path: Path
    task: str
    epochs: int  # small sets get more epochs, so every task trains for a few hundred steps at least


TASKS = (
    Task("ham10000", "ham10000", DATA / "ham10000", "mel vs nv", 4),
    Task("retina", "medmnist", DATA / "medmnist" / "retinamnist.npz", "grade_1,grade_2,grade_3,grade_4 vs grade_0", 30),
    Task("pneumonia", "medmnist", DATA / "medmnist" / "pneumoniamnist.npz", "pneumonia vs normal", 30),
)


def config_for(task: Task, method: str, settings: dict, seed: int) -> TrainConfig:
    # head_order "index": class 0 (normal) is the head, so the abnormal class becomes the 1:RATIO minority.
    return TrainConfig(
        method=method,
        method_settings=settings,
        data=task.data,
        data_path=str(task.path),
        task=task.task,
        ratio=RATIO,
        head_order="index",
        epochs=task.epochs,
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", help="comma-separated task names to train now (no results file)")
    parser.add_argument("--out", required=True, help="output path without suffix (.md and .csv are written)")
    args = parser.parse_args()
    out = Path(args.out)
    store = RunStore(f"{out}_store")
    tasks = [t for t in TASKS if not args.only or t.name in args.only.split(",")]
    missing = [str(t.path) for t in tasks if not t.path.exists()]
    if missing:
        sys.exit(f"data not found: {missing} (see ../shared/METHODS.md, 'Data at hand')")
    started, run_ids, reused = time.time(), {}, 0
    for task in tasks:
        finished = {row.config: row.run_id for row in finished_runs([store]).itertuples()}
        for method, variant in parse_methods(args.methods):
            for seed in (int(s) for s in args.seeds.split(",")):
                config = config_for(task, method, variant, seed)
                done = next((r for text, r in finished.items() if json.loads(text) == config.to_dict()), None)
                t0 = time.time()
                run_ids[done or train(config, store)] = task.name
                reused += done is not None
                print(
                    f"{task.name} {method} {variant or ''} seed {seed}: "
                    f"{'reused ' + done if done else f'{time.time() - t0:.0f} s'}",
                    flush=True,
                )
    if not args.only:
        write_results(out, store, run_ids, args, time.time() - started, reused)


def write_results(
    out: Path, store: RunStore, run_ids: dict[str, str], args: argparse.Namespace, seconds: float, reused: int
) -> None:
    runs = finished_runs([store])
    runs = runs[runs["run_id"].isin(run_ids)].copy()
    runs["task"] = runs["run_id"].map(run_ids)
    runs["method"] = runs["group"].str.split(" · ").str[0]
    order = list(dict.fromkeys(runs.sort_values("created")["method"]))
    version = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    budget = json.loads(runs["config"].iloc[0])
    lines = [
        "# Binary tasks: knowledge-guided one-class learning vs its generic ablation and baselines",
        "",
        f"Command: `python scripts/one_class_benchmark.py {' '.join(sys.argv[1:])}`",
        "",
        f"Budget: {budget['image_size']} px, batch {budget['batch_size']}, {budget['optimizer']} lr {budget['lr']:g} "
        f"cosine, backbone `{budget['backbone']}` from scratch, augmentation {'on' if budget['augment'] else 'off'}, "
        f"seeds {args.seeds}; training keeps the normal side whole and cuts the abnormal side to 1:{RATIO} (validation "
        "and test as they are). One-class methods never see a real abnormal training image. Model = the epoch with the "
        "best validation AUROC; balanced ACC at the threshold with the best validation balanced accuracy. "
        f"Machine: {platform.machine()}{', CUDA' if torch.cuda.is_available() else ', CPU only'}; the runs' own "
        f"training time {runs['duration_s'].sum() / 60:.1f} min; this call {seconds / 60:.1f} min with "
        f"{torch.get_num_threads()} CPU threads. Code: {version}.",
        *(
            [
                "",
                f"{reused} of the {len(runs)} runs were reused from earlier calls of this script (same config, same "
                "store; `--only` calls run tasks in parallel).",
            ]
            if reused
            else []
        ),
    ]
    differences = []
    for task in TASKS:
        part = runs[runs["task"] == task.name]
        if part.empty:
            continue
        train_counts = _train_counts(store, part["run_id"].iloc[0])
        lines += [
            "",
            f"## {task.name}: `{task.task}` ({task.data}, {task.epochs} epochs)",
            "",
            f"Training images: {train_counts}. Test: {_test_counts(store, part['run_id'].iloc[0])}.",
            "",
            "| method | AUROC | AUPRC | sens. @ 95 % spec. | balanced ACC |",
            "|---|---|---|---|---|",
        ]
        summary = part.groupby("method")[list(METRICS)].agg(["mean", "std"])
        for method in order:
            if method in summary.index:
                row = summary.loc[method]
                lines.append(
                    f"| {method} | "
                    + " | ".join(f"{row[(m, 'mean')]:.3f} ± {row[(m, 'std')]:.3f}" for m in METRICS)
                    + " |"
                )
        paired = part.pivot_table(index="seed", columns="method", values="auroc")
        knowledge, generic = "knowledge_one_class", "knowledge_one_class[recipe=generic]"
        if {knowledge, generic} <= set(paired.columns):
            delta = (paired[knowledge] - paired[generic]).dropna()
            differences.append((task.name, delta))
            lines += [
                "",
                f"Knowledge − generic AUROC, paired by seed: {', '.join(f'{d:+.3f}' for d in delta)} "
                f"(mean {delta.mean():+.3f}).",
            ]
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_path(out.with_suffix(".csv")) as tmp:
        runs[["run_id", "task", "method", "seed", "epochs", *METRICS]].to_csv(tmp, index=False)
    print("\n".join(lines))


def _train_counts(store: RunStore, run_id: str) -> str:
    metrics = json.loads((store.run_dir(run_id) / "metrics.json").read_text())
    return ", ".join(f"{name} {n}" for name, n in zip(metrics["class_names"], metrics["train_counts"]))


def _test_counts(store: RunStore, run_id: str) -> str:
    metrics = json.loads((store.run_dir(run_id) / "metrics.json").read_text())
    return ", ".join(f"{name} {n}" for name, n in zip(metrics["class_names"], metrics["per_class"]["support"]))


if __name__ == "__main__":
    main()

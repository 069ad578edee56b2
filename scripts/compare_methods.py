"""Train methods x seeds under one budget and write a results file (Markdown + CSV).

    .venv/bin/python scripts/compare_methods.py --data ham10000 --path ../shared/data/ham10000 \\
        --methods ce,balanced_softmax,ldam_drw,crckd,metric_two_stage --seeds 0,1,2 --epochs 6 \\
        --out results/ham10000_seed_methods

A method may carry its own settings as a variant, so one command can compare them:
`--methods "ce,style_kd,style_kd[tool=histogram;policy=same]"` (settings separated by ';').

Every run goes to the run store given by --store (default <out>_store, not kept in git; only the
results files are). A run already finished in that store with the same config is reused, so an
interrupted comparison continues where it stopped.

IOIS needs a diffusion model: `--generator NAME --generator-epochs E` trains it first on the
data's training split (or reuses a finished one of that name and recipe), passes it to every
`iois` variant, and adds its per-class quality table to the file, judged by the first seed's run of
`--judge` (default `balanced_softmax`: unlike `ce` it recognises some images of every class, so label
fidelity means something for the rare ones):

    .venv/bin/python scripts/compare_methods.py --data ham10000 --path ../shared/data/ham10000 \
        --methods "ce,balanced_softmax,style_kd,iois,iois[allocation=inverse_frequency],iois[ois=false]" \
        --seeds 0,1,2 --epochs 4 --generator diffusion_ham10000_28_e25 --generator-epochs 25 --out results/ham10000_iois

The Markdown file records the exact command, the budget, the machine and the code version, and
reports ACC, balanced ACC, macro-F1 and per-class recall as mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imbal_core.cli import markdown_table  # noqa: E402
from imbal_core.compare import finished_runs, load_results, per_class_table  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.methods import create_method  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402
from imbal_core.synth.diffusion import DiffusionTrainConfig  # noqa: E402
from imbal_core.synth.generators import train_generator  # noqa: E402
from imbal_core.synth.quality import measure_generator  # noqa: E402
from imbal_core.utils import atomic_path  # noqa: E402

METRICS = ("acc", "balanced_acc", "macro_f1", "val_balanced_acc")
VARIANT = re.compile(r"([A-Za-z0-9_]+)(?:\[([^\]]*)\])?")


def parse_methods(text: str) -> list[tuple[str, dict[str, str]]]:
    """ "ce,style_kd[tool=histogram;policy=same]" -> [("ce", {}), ("style_kd", {"tool": "histogram", ...})]."""
    methods = []
    for match in VARIANT.finditer(text):
        settings = dict(item.split("=", 1) for item in (match.group(2) or "").split(";") if "=" in item)
        methods.append((match.group(1), settings))
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ham10000")
    parser.add_argument("--path")
    parser.add_argument("--methods", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="a method setting, e.g. crckd:rampup_start=0.2",
    )
    parser.add_argument("--out", required=True, help="output path without suffix (.md and .csv are written)")
    parser.add_argument("--store", help="run store folder (default: <out>_store)")
    parser.add_argument(
        "--generator", help="diffusion model for iois (trained first if missing, see --generator-epochs)"
    )
    parser.add_argument(
        "--judge",
        default="balanced_softmax",
        help="method whose first-seed run judges the generator's quality (its classifier and features)",
    )
    parser.add_argument(
        "--generator-epochs", type=int, default=25, help="epochs of the diffusion model if trained here"
    )
    args = parser.parse_args()
    out = Path(args.out)
    store = RunStore(args.store or f"{out}_store")
    settings: dict[str, dict] = {}
    for item in args.set:
        method, assignment = item.split(":", 1)
        key, value = assignment.split("=", 1)
        settings.setdefault(method, {})[key] = value
    started = time.time()
    if args.generator:
        generator_recipe = DiffusionTrainConfig(
            data=args.data, data_path=args.path, image_size=args.image_size, epochs=args.generator_epochs
        )
        train_generator(
            generator_recipe,
            args.generator,
            resume=True,
            progress=lambda e: (
                print(f"generator epoch {e['epoch'] + 1}: loss {e['loss']:.4f}", flush=True)
                if e["event"] == "epoch"
                else None
            ),
        )
        settings.setdefault("iois", {})["generator"] = args.generator
    finished = {row.config: row.run_id for row in finished_runs([store]).itertuples()}
    run_ids, reused = [], 0
    for method, variant in parse_methods(args.methods):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = TrainConfig(
                method=method,
                method_settings={**settings.get(method, {}), **variant},
                data=args.data,
                data_path=args.path,
                image_size=args.image_size,
                epochs=args.epochs,
                seed=seed,
            )
            done = next((run_id for text, run_id in finished.items() if json.loads(text) == config.to_dict()), None)
            t0 = time.time()
            run_ids.append(done or train(config, store))
            reused += done is not None
            print(
                f"{method} {variant or ''} seed {seed}: {'reused ' + done if done else f'{time.time() - t0:.0f} s'}",
                flush=True,
            )
    runs = finished_runs([store])
    runs = runs[runs["run_id"].isin(run_ids)]
    quality = None
    if args.generator:
        judge = runs[(runs["method"] == args.judge) & (runs["seed"] == runs["seed"].min())]["run_id"]
        if not judge.empty:
            quality = measure_generator(args.generator, judge.iloc[0], store, device="auto").table
    write_results(out, runs, store, args, time.time() - started, quality, reused)


def best_validation(store: RunStore, run_id: str) -> float:
    """The validation balanced accuracy of the epoch kept as the model (best of the last stage)."""
    history = store.get_run(run_id)["progress"]["history"]
    return max(h["val_balanced_acc"] for h in history if h["stage"] == history[-1]["stage"])


def stage_plan(runs: pd.DataFrame) -> dict[str, str]:
    """Each method's stages as "teacher 2 + student 2" (from the method itself, not from this script)."""
    plan = {}
    for row in runs.drop_duplicates("method").itertuples():
        config = json.loads(row.config)
        stages = create_method(config["method"], **config["method_settings"]).stages(config["epochs"])
        plan[row.method] = " + ".join(f"{s.name} {s.epochs}" for s in stages)
    return plan


def without_generator(label: str) -> str:
    """ "iois[generator=g,ois=false]" -> "iois[ois=false]": the generator is named once, in the header."""
    settings = (
        [s for s in re.findall(r"\[(.*)\]", label)[0].split(",") if not s.startswith("generator=")]
        if "[" in label
        else []
    )
    return label.split("[")[0] + (f"[{','.join(settings)}]" if settings else "")


def synthetic_allocation(store: RunStore, runs: pd.DataFrame, classes: list[str]) -> dict[str, list[float]]:
    """Per method that logs an allocation (IOIS): mean synthetic images per class over its synthesis epochs.

    `classes` is in the per-class table's order; the logs are in class-index order.
    """
    found = {}
    for method, group in runs.groupby("method", sort=False):
        logs = [
            h["method"]["synthetic"]
            for run_id in group["run_id"]
            for h in store.get_run(run_id)["progress"]["history"]
            if h.get("method", {}).get("synthetic") and h["stage"] != "warmup"
        ]
        if logs:
            names = load_results(group.head(1))[0].class_names
            mean = np.mean(logs, axis=0)
            found[method] = [float(mean[names.index(c)]) for c in classes]
    return found


def write_results(
    out: Path,
    runs: pd.DataFrame,
    store: RunStore,
    args: argparse.Namespace,
    seconds: float,
    quality: pd.DataFrame | None = None,
    reused: int = 0,
) -> None:
    runs = runs.assign(
        method=runs["group"].str.split(" · ").str[0].map(without_generator),
        val_balanced_acc=runs["run_id"].map(lambda run_id: best_validation(store, run_id)),
    )
    order = list(dict.fromkeys(runs.sort_values("created")["method"]))
    summary = runs.groupby("method")[list(METRICS)].agg(["mean", "std"]).reindex(order)
    per_class = per_class_table(load_results(runs), "recall")
    per_class["method"] = per_class["method"].str.split(" · ").str[0].map(without_generator)
    recall = per_class.pivot_table(index="method", columns="class", values=["mean", "sd"], sort=False, dropna=False)
    classes = list(dict.fromkeys(per_class["class"]))
    counts = per_class.drop_duplicates("class").set_index("class")["train_count"]

    plan = stage_plan(runs)
    version = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"# {args.data}: {', '.join(order)}",
        "",
        f"Command: `python scripts/compare_methods.py {' '.join(sys.argv[1:])}`",
        "",
        f"Budget: {args.epochs} epochs per method (two-stage methods add their stage-2 epochs), {args.image_size} px, "
        f"batch 128, AdamW lr 1e-3 cosine, backbone `{runs['backbone'].iloc[0]}` from scratch, seeds {args.seeds}. "
        f"Machine: {platform.machine()}{', CUDA' if torch.cuda.is_available() else ', CPU only'}; the runs' own "
        f"training time {runs['duration_s'].sum() / 60:.1f} min; this call {seconds / 60:.1f} min with "
        f"{torch.get_num_threads()} CPU threads. Code: {version}.",
        "",
        *(
            [
                f"{reused} of the {len(runs)} runs were reused from an earlier call of this script (same config in the "
                "same store), made with the code and threads of that call.",
                "",
            ]
            if reused
            else []
        ),
        "Stages (epochs): " + "; ".join(f"{name}: {plan[name]}" for name in order) + ".",
        "",
        "Test-set results, mean ± sd over seeds (model = best validation balanced accuracy of the last stage):",
        "",
        "| method | ACC | balanced ACC | macro-F1 | validation balanced ACC |",
        "|---|---|---|---|---|",
    ]
    for method, row in summary.iterrows():
        cells = [f"{row[(m, 'mean')]:.3f} ± {row[(m, 'std')]:.3f}" for m in METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per-class recall (classes by training count, head first):",
        "",
        "| method | " + " | ".join(f"{c} ({int(counts[c])})" for c in classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for method in order:
        cells = [f"{recall.loc[method, ('mean', c)]:.2f} ± {recall.loc[method, ('sd', c)]:.2f}" for c in classes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    allocation = synthetic_allocation(store, runs, classes)
    if allocation:
        lines += [
            "",
            "Synthetic images per class and epoch (AAS allocation, mean over seeds and synthesis epochs; "
            "`ois=false` makes none: its allocation became class weights):",
            "",
            "| method | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        lines += [
            f"| {method} | " + " | ".join(f"{n:.0f}" for n in allocation[method]) + " |"
            for method in order
            if method in allocation
        ]
    if quality is not None:
        lines += [
            "",
            f"Quality of the diffusion model `{args.generator}` ({args.generator_epochs} epochs; 64 images per "
            f"class, 25 DDIM steps, guidance 2), judged by the first seed's `{args.judge}` run's classifier and "
            "features (Fréchet distance in a 32-d PCA of those features: not Inception-FID). Columns: see "
            "`python -m imbal_core generator-quality --help` and imbal_core/synth/quality.py.",
            "",
            markdown_table(quality).rstrip(),
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_path(out.with_suffix(".csv")) as tmp:
        runs[["run_id", "method", "seed", "epochs", *METRICS]].to_csv(tmp, index=False)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

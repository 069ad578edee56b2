"""Train the pretrained/ runs the app shows on first open, and write pretrained/manifest.json.

    .venv/bin/python scripts/make_pretrained.py                      # every baseline, built-in data
    .venv/bin/python scripts/make_pretrained.py --methods style_kd   # add or replace runs of some methods
    .venv/bin/python scripts/make_pretrained.py --methods "" --generators    # the AdaIN and diffusion models
    .venv/bin/python scripts/make_pretrained.py --methods iois               # needs the diffusion model
    .venv/bin/python scripts/make_pretrained.py --task "asymmetric_multicolour vs symmetric_uniform" \
        --methods "knowledge_one_class,knowledge_one_class[recipe=generic],deep_svdd,ce,weighted_ce,balanced_softmax"
    .venv/bin/python scripts/make_pretrained.py --methods ce,balanced_softmax,ldam_drw --ratios 10,50,100 \
        --seeds 0,1,2                   # the grid behind Compare's "metric vs ratio" on a fresh clone
    .venv/bin/python -m imbal_core --store pretrained benchmark builtin_ratios   # every method at those ratios
    .venv/bin/python scripts/make_pretrained.py --shrink     # then the shipping rules for every run in the store
    .venv/bin/python scripts/make_pretrained.py --ship-from lab_data/store --runs RUN_ID,... \
        --command "python -m imbal_core benchmark ham10000_128 --archive results/ham10000_128_runs"
                                        # real-data models for Explain, from a benchmark's store, with their weights

Each run is trained by the engine exactly as `python -m imbal_core train` would, into the run
store at pretrained/. Only what the app needs is kept per run (config, metrics, compressed probabilities; the
final model in float16 with its validation features only where `keeps_weights` says); resume checkpoints,
stage-1 weights and test features are deleted to keep the repository small (a run with weights computes its test
features again). A re-made run's previous version (same method, settings, task, ratio, seed, data and size) is
deleted from the store and the manifest; other entries are kept. Runs on a binary --task keep results only.
With --generators the AdaIN and the diffusion model for the built-in data are trained into pretrained/generators/
(each unless it exists and is recorded) and recorded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from compare_methods import parse_methods  # noqa: E402

from imbal_core.checkpoint import DIGEST_KEY, load_checkpoint, read_weights, save_checkpoint, write_weights  # noqa: E402
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.runs import MODEL_FILE, RunStore  # noqa: E402
from imbal_core.runs.archive import _with_config, slim_predictions  # noqa: E402
from imbal_core.synth.diffusion import DiffusionTrainConfig  # noqa: E402
from imbal_core.synth.generators import GeneratorConfig, load_generator_info, train_generator  # noqa: E402
from imbal_core.synth.style_models import StyleTrainConfig  # noqa: E402
from imbal_core.utils import atomic_path, code_version, read_json, write_json  # noqa: E402

# The shipped generators (recipe, the CLI command that makes the same file, and a name where it is not the recipe's
# default). The AdaIN model is wider and longer than the CLI defaults; the diffusion model is trained longer (a CPU
# budget: about 40 min on one thread, the thread count it was made with: CPU float sums may differ in the last bit
# across thread counts).
GENERATORS: list[tuple[GeneratorConfig, str] | tuple[GeneratorConfig, str, str]] = (
    [
        (
            StyleTrainConfig(data="synthetic", image_size=28, epochs=20, autoencoder_epochs=8, width=32, device="cpu"),
            "python -m imbal_core style-train --data synthetic --epochs 20 --autoencoder-epochs 8 --width 32 "
            "--out pretrained/generators --device cpu",
        ),
        (
            DiffusionTrainConfig(data="synthetic", image_size=28, epochs=60, width=16, device="cpu"),
            "OMP_NUM_THREADS=1 python -m imbal_core diffusion-train --data synthetic --epochs 60 --width 16 "
            "--out pretrained/generators --device cpu",
        ),
    ]
    + [
        # iois in the builtin_ratios benchmark: one diffusion model per ratio and seed, learnt only from the images
        # that run keeps (the same recipe as the natural-count model).
        (
            DiffusionTrainConfig(
                data="synthetic", image_size=28, ratio=ratio, seed=seed, epochs=60, width=16, device="cpu"
            ),
            f"OMP_NUM_THREADS=1 python -m imbal_core diffusion-train --data synthetic --ratio {ratio:g} --seed {seed} "
            "--epochs 60 --width 16 --out pretrained/generators --device cpu",
        )
        for ratio in (10.0, 50.0, 100.0)
        for seed in (0, 1, 2)
    ]
    + [
        # iois in the retinamnist_28 benchmark (natural counts: one model for every seed). 1,080 training images:
        # 160 epochs are about 1,400 steps, as many as the ratio-100 models' 60 epochs.
        (
            DiffusionTrainConfig(
                data="medmnist",
                data_path="../shared/data/medmnist/retinamnist.npz",
                image_size=28,
                epochs=160,
                width=16,
                device="cpu",
            ),
            "OMP_NUM_THREADS=1 python -m imbal_core diffusion-train --data medmnist --path "
            "../shared/data/medmnist/retinamnist.npz --epochs 160 --width 16 --name diffusion_retinamnist_28 "
            "--out pretrained/generators --device cpu",
            "diffusion_retinamnist_28",
        ),
        # iois in the ham10000_28 benchmark: about 7,000 training images, so 40 epochs are about 2,200 steps.
        (
            DiffusionTrainConfig(
                data="ham10000", data_path="../shared/data/ham10000", image_size=28, epochs=40, width=16, device="cpu"
            ),
            "OMP_NUM_THREADS=1 python -m imbal_core diffusion-train --data ham10000 --path ../shared/data/ham10000 "
            "--epochs 40 --width 16 --name diffusion_ham10000_28 --out pretrained/generators --device cpu",
            "diffusion_ham10000_28",
        ),
        # The demo generator (issue 35): HAM10000 at 64 px in latent space (an autoencoder for 8 epochs, then a
        # 48-channel UNet on 16x16x4 latents for 60); stored in float16 to keep pretrained/ under 60 MB.
        (
            DiffusionTrainConfig(
                data="ham10000",
                data_path="../shared/data/ham10000",
                image_size=64,
                epochs=68,
                width=48,
                latent_channels=4,
                autoencoder_epochs=8,
                device="cpu",
            ),
            "OMP_NUM_THREADS=2 python -m imbal_core diffusion-train --data ham10000 --path ../shared/data/ham10000 "
            "--image-size 64 --epochs 68 --latent-channels 4 --autoencoder-epochs 8 --width 48 "
            "--name diffusion_ham10000_64 --out pretrained/generators --device cpu",
            "diffusion_ham10000_64",
        ),
    ]
)
HALF_GENERATORS = ("diffusion_ham10000_64",)  # shipped with float16 weights (loading casts them back)
# Settings a shipped run needs beyond the method's defaults.
RUN_SETTINGS = {"iois": {"generator": "diffusion_synthetic_28"}}
# Methods whose shipped runs keep their weights (Explain's default picks, the generator-quality judges, the
# synthesis methods); the others keep results only, so pretrained/ stays small (each model is 5 MB).
KEEP_WEIGHTS = {"ce", "balanced_softmax", "style_kd", "iois"}
DROPPED = ("last.safetensors", "best.safetensors", "representation.safetensors")  # resume and stage-1 weights
BASELINES = [
    "ce",
    "weighted_ce",
    "cb_loss",
    "focal",
    "ldam_drw",
    "balanced_softmax",
    "logit_adjust",
    "cb_resample",
    "mixup",
    "crt",
    "lws",
    "tau_norm",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(BASELINES))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--ratios", default="natural", help="comma-separated imbalance ratios, or 'natural'")
    parser.add_argument(
        "--task",
        help="a binary task of the built-in data, e.g. 'asymmetric_multicolour vs "
        "symmetric_uniform' (methods may carry settings: 'knowledge_one_class[recipe=generic]')",
    )
    parser.add_argument("--out", default=str(ROOT / "pretrained"))
    parser.add_argument(
        "--generators", action="store_true", help="train (if missing) and record the AdaIN and diffusion models"
    )
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="with --generators: train none, record those whose file is finished (made by their command)",
    )
    parser.add_argument(
        "--trained-seconds",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="with --record-only: the training time of a generator made by its command, for the manifest",
    )
    parser.add_argument(
        "--shrink",
        action="store_true",
        help="train nothing: apply the shipping rules (see shrink_store) to every finished run in the store, "
        "e.g. after `benchmark builtin_ratios --store pretrained`, and print the sizes",
    )
    parser.add_argument(
        "--no-weights",
        action="store_true",
        help="with --shrink: keep no model at all and slim every predictions file (a benchmark's own store kept "
        "for its results, e.g. --out results/retinamnist_28_store: the results files need metrics and predictions)",
    )
    parser.add_argument(
        "--ship-from",
        metavar="STORE",
        help="train nothing: copy the finished runs named by --runs from STORE (e.g. a benchmark's store) into the "
        "shipped store with their weights in float16 (real-data models for Explain), replacing the shipped run of "
        "the same method, data, size and seed",
    )
    parser.add_argument("--runs", help="with --ship-from: comma-separated run ids")
    parser.add_argument("--command", help="with --ship-from: the command that trained the runs, for the manifest")
    args = parser.parse_args()
    if args.no_weights and not args.shrink:
        parser.error("--no-weights goes with --shrink (it changes what shrinking keeps)")
    if args.ship_from and not (args.runs and args.command):
        parser.error("--ship-from needs --runs (which runs) and --command (what trained them, for the manifest)")
    store = RunStore(args.out)
    if args.shrink:
        shrink_store(store, keep_models=not args.no_weights)
        return
    if args.ship_from:
        ship_runs(RunStore(args.ship_from), args.runs.split(","), store, args.command)
        return
    version = code_version()  # the code this process imported, whatever changes while it runs
    manifest_path = Path(args.out) / "manifest.json"
    manifest: dict[str, Any] = (
        read_json(manifest_path)
        if manifest_path.exists()
        else {
            "description": "Runs shipped with the app; each entry's command reproduces it.",
            "made_by": "scripts/make_pretrained.py",
            "runs": [],
        }
    )
    methods = [(m, {**RUN_SETTINGS.get(m, {}), **variant}) for m, variant in parse_methods(args.methods)]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    ratios = [None if ratio == "natural" else float(ratio) for ratio in args.ratios.split(",")]
    configs = [
        TrainConfig(
            method=method,
            method_settings=settings,
            task=args.task,
            epochs=args.epochs,
            ratio=ratio,
            seed=seed,
            device="cpu",
        )
        for (method, settings), ratio, seed in itertools.product(methods, ratios, seeds)
    ]
    for config in configs:
        config.check_ready()  # an unknown method, setting or task class fails before anything changes
    made = {config_key(c) for c in configs}
    entries = [e for e in manifest["runs"] if manifest_key(e) not in made]
    for config in configs:
        method, settings = config.method, config.method_settings
        task_option = f" --task {json.dumps(args.task)}" if args.task else ""
        ratio_option = f" --ratio {config.ratio:g}" if config.ratio else ""
        command = (
            f"python -m imbal_core --store pretrained train --data synthetic{task_option}{ratio_option} "
            f"--method {method} --epochs {args.epochs} --seed {config.seed} --device cpu --tag pretrained"
            + "".join(f" --set {key}={value}" for key, value in settings.items())
        )
        started = time.time()
        run_id = train(config, store, run_id=store.create_run(config.to_dict(), tag="pretrained"))
        keep_weights = keeps_weights(config.to_dict())
        for name in DROPPED + (() if keep_weights else (MODEL_FILE,)):
            (store.run_dir(run_id) / name).unlink(missing_ok=True)
        if keep_weights:
            half_weights(store.run_dir(run_id) / MODEL_FILE)
        slim_predictions(store.run_dir(run_id) / "predictions.npz", keep_validation_features=keep_weights)
        summary = store.get_run(run_id)["summary"]
        binary = (
            {"test_auroc": round(summary["auroc"], 4), "test_auprc": round(summary["auprc"], 4)} if args.task else {}
        )
        entries.append(
            {
                "run_id": run_id,
                "method": method,
                "settings": settings,
                "task": args.task,
                "data": "synthetic",
                "ratio": config.ratio,
                "epochs": args.epochs,
                "seed": config.seed,
                "command": command,
                "code_version": version,
                "train_seconds": round(time.time() - started, 1),
                "cpu_threads": torch.get_num_threads(),
                "weights_kept": keep_weights,
                **binary,
                "test_balanced_acc": round(summary["balanced_acc"], 4),
                "test_acc": round(summary["acc"], 4),
            }
        )
        print(
            f"{method:18s} {settings or ''} bal.acc {summary['balanced_acc']:.3f}  acc {summary['acc']:.3f}"
            + (f"  AUROC {summary['auroc']:.3f}" if args.task else ""),
            flush=True,
        )
        replaced = [e["run_id"] for e in manifest["runs"] if manifest_key(e) == config_key(config)]
        write_json(manifest_path, {**manifest, "runs": entries})
        for old_run in replaced:  # once the new run is recorded: the app shows one shipped run per method
            if store.has_run(old_run):
                store.delete_run(old_run)
    if args.generators:
        manifest["runs"] = entries
        previous = {entry["name"]: entry for entry in manifest.get("generators", [])}
        seconds = {name: float(value) for name, value in (item.split("=", 1) for item in args.trained_seconds)}
        generators = [
            generator_entry(Path(args.out), recipe, command, version, previous, seconds, *name)
            for recipe, command, *name in GENERATORS
            if not args.record_only or finished_generator(Path(args.out), recipe, *name)
        ]
        write_json(
            manifest_path, {**{k: v for k, v in manifest.items() if k != "style_models"}, "generators": generators}
        )


def entry_key(
    method: str, settings: dict, task: str | None, ratio: float | None, seed: int, data: str, image_size: int
) -> tuple:
    """What makes a shipped run unique: re-making it replaces the run with the same key."""
    return method, json.dumps(settings, sort_keys=True), task, ratio, seed, data, image_size


def config_key(config: TrainConfig) -> tuple:
    return entry_key(
        config.method, config.method_settings, config.task, config.ratio, config.seed, config.data, config.image_size
    )


def manifest_key(entry: dict) -> tuple:
    # Entries written before settings (and sizes) were recorded used RUN_SETTINGS (and 28 px).
    return entry_key(
        entry["method"],
        entry.get("settings", RUN_SETTINGS.get(entry["method"], {})),
        entry.get("task"),
        entry.get("ratio"),
        entry["seed"],
        entry["data"],
        entry.get("image_size", 28),
    )


def keeps_weights(config: dict) -> bool:
    """Shipped weights: Explain's and the quality judges' models, at natural counts of the multi-class data: the
    built-in data's KEEP_WEIGHTS methods, and every real-data run shipped (`ship_runs` picks them for Explain)."""
    return (config["method"] in KEEP_WEIGHTS or config["data"] != "synthetic") and not (
        config.get("task") or config.get("ratio")
    )


def half_weights(path: Path) -> None:
    """Store a shipped model's floating-point tensors as float16 (half the bytes). Loading casts them back to
    float32; test probabilities move by less than 0.02 (tests/test_pretrained.py checks the shipped ce run)."""
    state = load_checkpoint(path)
    if all(value.dtype == torch.float16 for value in state["model"].values() if value.is_floating_point()):
        return  # halved by an earlier shrink; rewriting would reorder the file's header (safetensors keeps no order)
    state["model"] = {
        key: value.half() if value.is_floating_point() else value for key, value in state["model"].items()
    }
    save_checkpoint(path, state)


def narrow_indices(path: Path) -> None:
    """Store a run's kept training indices as int32 (runs made before the trainer did so wrote int64)."""
    kept = np.load(path)
    if kept.dtype != np.int32:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, kept.astype(np.int32))


def shrink_store(store: RunStore, keep_models: bool = True) -> None:
    """Apply the shipping rules to every finished run in the store, whichever command made it (e.g. `benchmark
    builtin_ratios --store pretrained`): no resume checkpoints; weights (in float16) only as `keeps_weights` says;
    no test features (a run with weights computes them again on its data, Compare's feature map says so for one
    without); validation features and head weights only with weights; kept training indices as int32.
    Without `keep_models`: no weights at all and slim predictions everywhere (a store kept for its results only).
    Runs that are not finished are left whole (a stopped run resumes from its checkpoint)."""
    before = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
    for run_id in store.runs(status="finished")["run_id"]:
        run_dir, config = store.run_dir(run_id), store.get_run(run_id)["config"]
        keep_weights = keep_models and keeps_weights(config)
        for name in DROPPED + (() if keep_weights else (MODEL_FILE,)):
            (run_dir / name).unlink(missing_ok=True)
        if keep_weights:
            half_weights(run_dir / MODEL_FILE)
        narrow_indices(run_dir / "kept_indices.npy")
        slim_predictions(run_dir / "predictions.npz", keep_validation_features=keep_weights)
    after = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
    print(f"{store.root}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


def ship_runs(source: RunStore, run_ids: list[str], store: RunStore, command: str) -> None:
    """Copy finished runs of another store (e.g. a benchmark's) into the shipped store with their weights, and record
    them in its manifest, replacing the shipped run of the same method, settings, data, size and seed. Weights in
    float16; validation features kept (Explain's familiarity check needs them where the data set is not), test
    features dropped (Compare computes them with the weights where it is)."""
    manifest_path = store.root / "manifest.json"
    manifest = read_json(manifest_path)
    for run_id in run_ids:  # every run is checked before any is copied
        run = source.get_run(run_id)
        if run["status"] != "finished" or not (source.run_dir(run_id) / MODEL_FILE).is_file():
            raise SystemExit(f"run {run_id} of {source.root} is {run['status']}, with no final weights: not shipped")
    for run_id in run_ids:
        run = source.get_run(run_id)
        config = TrainConfig.from_dict(run["config"])
        # A data path in or beside the checkout is kept relative to it (as the generators' recipes are), not as this
        # machine's absolute path.
        exported = _with_config(source.export_run(run_id), _relative_data_path)
        exported["files"] = {name: data for name, data in exported["files"].items() if name not in DROPPED}
        store.import_run(exported)
        run_dir = store.run_dir(run_id)
        half_weights(run_dir / MODEL_FILE)
        narrow_indices(run_dir / "kept_indices.npy")
        slim_predictions(run_dir / "predictions.npz", keep_validation_features=True)
        summary = run["summary"]
        entry = {
            "run_id": run_id,
            "method": config.method,
            "settings": config.method_settings,
            "task": config.task,
            "data": config.data,
            "image_size": config.image_size,
            "ratio": config.ratio,
            "epochs": config.epochs,
            "seed": config.seed,
            "command": command,
            "code_version": run["code_version"],
            "train_seconds": round(run["duration_s"], 1),
            "weights_kept": True,
            "test_balanced_acc": round(summary["balanced_acc"], 4),
            "test_acc": round(summary["acc"], 4),
        }
        replaced = [e["run_id"] for e in manifest["runs"] if manifest_key(e) == config_key(config)]
        manifest["runs"] = [e for e in manifest["runs"] if manifest_key(e) != config_key(config)] + [entry]
        write_json(manifest_path, manifest)
        for old_run in replaced:  # once the new run is recorded
            if old_run != run_id and store.has_run(old_run):
                store.delete_run(old_run)
        print(
            f"shipped {run_id}: {config.method} {config.data} {config.image_size} px seed {config.seed}, "
            f"test bal.acc {summary['balanced_acc']:.3f}"
        )


def _relative_data_path(config: dict[str, Any]) -> dict[str, Any]:
    path = config.get("data_path")
    if path and Path(path).is_absolute() and Path(path).is_relative_to(ROOT.parent):
        return {**config, "data_path": os.path.relpath(path, ROOT)}
    return config


def finished_generator(out: Path, recipe: GeneratorConfig, name: str | None = None) -> bool:
    path = generator_file(out, recipe, name)
    if not (path.exists() and load_generator_info(path).status == "finished"):
        print(f"not recorded (not finished yet): {path.stem}")
        return False
    return True


def generator_file(out: Path, recipe: GeneratorConfig, name: str | None = None) -> Path:
    return out / "generators" / f"{name or recipe.default_name()}.safetensors"


def generator_entry(
    out: Path,
    recipe: GeneratorConfig,
    command: str,
    version: str,
    previous: dict[str, dict],
    trained_seconds: dict[str, float],
    name: str | None = None,
) -> dict:
    """Train a shipped generator unless it exists and is recorded already; return its manifest entry.

    A finished file that is not recorded yet (e.g. trained by its CLI command) is checked to have this
    recipe and recorded with the training time given in `trained_seconds` (None when not given).
    """
    path = generator_file(out, recipe, name)
    if path.exists() and previous.get(path.stem, {}).get("recipe") == load_generator_info(path).config:
        return previous[path.stem]  # recorded already (a re-trained file has a new recipe and is recorded anew)
    trained_here = not path.exists() or load_generator_info(path).status != "finished"
    started = time.time()
    train_generator(recipe, name=path.stem, out_dir=path.parent, resume=True)  # an interrupted build continues
    if path.stem in HALF_GENERATORS:
        half_generator(path)
    info = load_generator_info(path)
    seconds = round(time.time() - started, 1) if trained_here else trained_seconds.get(path.stem)
    return {
        "name": info.name,
        "kind": info.kind,
        "file": str(path.relative_to(out)),
        "command": command,
        "recipe": info.config,
        "final_epoch_losses": info.history[-1],
        "code_version": version,
        "train_seconds": seconds,
        "weights_dtype": "float16" if path.stem in HALF_GENERATORS else "float32",
    }


def half_generator(path: Path) -> None:
    """A finished generator's floating-point weights as float16 (half the bytes; loading casts them back). Scalars
    (an autoencoder's latent scale) keep their precision."""
    tensors, metadata = read_weights(path, what="generator")
    if any(value.dtype == torch.float16 for value in tensors.values()):
        return  # halved already
    halved = {k: v.half() if v.is_floating_point() and v.ndim > 0 else v for k, v in tensors.items()}
    write_weights(path, halved, {k: v for k, v in metadata.items() if k != DIGEST_KEY})


if __name__ == "__main__":
    main()

"""Command line: `python -m imbal_core {datasets,methods,train,sweep,runs,evaluate,export,style-train,diffusion-train,
generators,generator-quality} --help`."""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .data import DATA_SOURCES, load_dataset
from .engine import TrainConfig, train
from .engine.evaluate import evaluate_run
from .errors import ConfigError, ImbalLabError
from .methods import METHODS
from .models import DEFAULT_BACKBONE
from .runs import RunStore
from .synth.diffusion import PREDICTIONS, DiffusionTrainConfig
from .synth.generators import GeneratorConfig, list_generators, train_generator, training_summary
from .synth.style_models import StyleTrainConfig

if TYPE_CHECKING:
    import pandas as pd


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "imbal_core", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args) or 0
    except ImbalLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    except KeyboardInterrupt:
        print("interrupted; resume with `python -m imbal_core train --resume RUN_ID`", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imbal_core", description="Imbalance Lab engine.")
    parser.add_argument("--store", default=None, help="run store folder (default: $IMBAL_LAB_HOME/store)")
    sub = parser.add_subparsers(required=True, metavar="command")

    p = sub.add_parser("datasets", help="list data sources, or show one source's class counts")
    p.add_argument("--data", choices=DATA_SOURCES.names(), help="show this source's class counts per split")
    p.add_argument("--path", help="folder or file of the data set")
    p.add_argument("--task", help="show the counts of a binary task, e.g. 'mel vs nv'")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--split-seed", type=int, default=0)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("methods", help="list methods, or print one method's card")
    p.add_argument("name", nargs="?", choices=METHODS.names())
    p.add_argument("--markdown", action="store_true", help="print every card as Markdown (docs/methods.md)")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="train one method (with a progress bar)")
    p.add_argument("--method", default="ce", choices=METHODS.names())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ratio", type=float, default=None, help="imbalance ratio n_max/n_min (default: natural counts)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a stopped or interrupted run")
    _add_run_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train every combination of methods x ratios x seeds")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. ce,focal,ldam_drw")
    p.add_argument("--ratios", default="natural", help="comma-separated ratios, or 'natural' (default)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    _add_run_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("runs", help="list runs in the store")
    p.add_argument("--method")
    p.add_argument("--status")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("evaluate", help="evaluate a finished run on another data set (e.g. HAM10000 -> ISIC 2018)")
    p.add_argument("run_id")
    p.add_argument("--data", required=True, choices=DATA_SOURCES.names())
    p.add_argument("--path")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help="data source option")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write the tidy metrics table (run, method, seed, ratio, class, metric, value) as CSV")
    p.add_argument("--out", help="CSV file (default: standard output)")
    p.add_argument("--runs", help="comma-separated run ids (default: all)")
    p.add_argument("--summary-only", action="store_true", help="whole-set metrics only, no per-class rows")
    p.set_defaults(func=cmd_export)

    defaults = StyleTrainConfig()
    p = sub.add_parser("style-train", help="train an AdaIN style model (for Style-KD) on a data set's training split")
    _add_generator_options(p, defaults)
    p.add_argument("--autoencoder-epochs", type=int, default=defaults.autoencoder_epochs,
                   help="first epochs: reconstruction only (the encoder learns its features)")
    p.add_argument("--width", type=int, default=defaults.width, help="channels of the first encoder stage")
    p.add_argument("--style-weight", type=float, default=defaults.style_weight)
    p.set_defaults(func=cmd_style_train)

    defaults = DiffusionTrainConfig()
    p = sub.add_parser("diffusion-train", help="train a class-conditional diffusion model (for IOIS) on a training split")
    _add_generator_options(p, defaults)
    p.add_argument("--width", type=int, default=defaults.width, help="UNet channels of the first level (x2 below)")
    p.add_argument("--layers-per-block", type=int, default=defaults.layers_per_block)
    p.add_argument("--label-dropout", type=float, default=defaults.label_dropout,
                   help="share of labels replaced by the null label (classifier-free guidance)")
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    p.add_argument("--prediction", choices=PREDICTIONS, default=defaults.prediction,
                   help="what the UNet predicts: v (well conditioned at few sampling steps) or the noise")
    p.set_defaults(func=cmd_diffusion_train)

    p = sub.add_parser("generators", help="list the generators (AdaIN and diffusion; yours and pretrained/)")
    p.add_argument("--kind", choices=("adain", "diffusion"))
    p.set_defaults(func=cmd_generators)

    p = sub.add_parser("generator-quality", help="per-class quality of a diffusion model's images, judged with the "
                       "features of a finished run")
    p.add_argument("generator", help="diffusion model name or .safetensors path")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="finished run on the same data whose classifier "
                   "and features judge the images (e.g. a pretrained ce run)")
    p.add_argument("--per-class", type=int, default=64, help="synthetic images per class")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--strength", type=float, default=1.0, help="SDEdit strength (1 = from pure noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="also write the table to this .csv or .md file")
    p.set_defaults(func=cmd_generator_quality)
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic", choices=DATA_SOURCES.names())
    p.add_argument("--path", help="folder or file of the data set (real data sources)")
    p.add_argument("--task", help="binary task 'POSITIVE vs NEGATIVE', e.g. 'mel vs nv' or 'mel,bcc,akiec vs rest' "
                   "(positive = abnormal)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="data source option, e.g. n_images=3000 (synthetic) or flag=retinamnist (medmnist)")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--profile", default="exp", help="exp, step, or a JSON {class: count} dict")
    p.add_argument("--fit", default="scale", choices=("scale", "cap"),
                   help="scale: exact ratio, fewer images; cap: classes short of their target keep all their images")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method setting, e.g. gamma=1.5")
    p.add_argument("--init-from", metavar="RUN_ID", help="start from a finished run's weights (decoupled methods skip stage 1)")
    p.add_argument("--tag", default="", help="free label stored with the run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_generator_options(p: argparse.ArgumentParser, defaults: GeneratorConfig) -> None:
    """The options every generator recipe shares (data, imbalance, budget, files)."""
    p.add_argument("--data", default="synthetic", choices=DATA_SOURCES.names())
    p.add_argument("--path", help="folder or file of the data set (real data sources)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help="data source option")
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--split-seed", type=int, default=defaults.split_seed)
    p.add_argument("--ratio", type=float, default=None, help="learn only from the training images a run with this "
                   "ratio (and --seed) keeps (default: natural counts)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default="auto")
    p.add_argument("--name", help=f"file name (default {defaults.kind}_<data>_<size>)")
    p.add_argument("--out", help="folder for the file (default $IMBAL_LAB_HOME/generators)")
    p.add_argument("--resume", action="store_true", help="continue a stopped training of the same name and recipe")


def _generator_common(args: argparse.Namespace) -> dict[str, Any]:
    return dict(data=args.data, data_path=args.path, data_options=_key_values(args.data_option, "--data-option") or None,
                image_size=args.image_size, split_seed=args.split_seed, ratio=args.ratio, epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device)


def _train_generator_printing(config: GeneratorConfig, args: argparse.Namespace) -> Path:
    def progress(event: dict) -> None:
        if event["event"] == "epoch":
            losses = ", ".join(f"{k} {v:.4f}" for k, v in event.items() if isinstance(v, float))
            phase = f" ({event['phase']})" if "phase" in event else ""
            print(f"epoch {event['epoch'] + 1}/{event['epochs']}{phase}: {losses}", flush=True)

    return train_generator(config, args.name, Path(args.out) if args.out else None, progress, resume=args.resume)


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{what} must look like KEY=VALUE; got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)  # numbers, true/false; anything else stays a string
        except json.JSONDecodeError:
            out[key] = value
    return out


def _config(args: argparse.Namespace, method: str, ratio: float | None, seed: int) -> TrainConfig:
    profile: Any = args.profile
    if profile.startswith("{"):
        try:
            profile = json.loads(profile)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--profile is not valid JSON ({err}); e.g. '{{\"df\": 20, \"vasc\": 30}}'") from None
    return TrainConfig(
        method=method, method_settings=_key_values(args.set, "--set"), data=args.data, data_path=args.path,
        data_options=_key_values(args.data_option, "--data-option"), task=args.task, image_size=args.image_size,
        split_seed=args.split_seed, ratio=ratio, profile=profile, fit=args.fit, backbone=args.backbone, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        augment=not args.no_augment, seed=seed, device=args.device, init_from=args.init_from,
    )


def _train_with_bar(config: TrainConfig | None, store: RunStore, quiet: bool, resume: str | None = None,
                    tag: str = "") -> str:
    from tqdm import tqdm

    bar = None

    def progress(event: dict) -> None:
        nonlocal bar
        if quiet or event["event"] not in ("step", "epoch"):
            return
        if bar is None:
            bar = tqdm(total=event["epochs"], unit="epoch", dynamic_ncols=True, desc=event["run_id"])
        if event["event"] == "step":
            bar.set_postfix_str(f"{event['stage']} step {event['step']}/{event['steps']} loss {event['loss']:.3f}")
        else:
            bar.update(1)
            shown = f"val AUROC {event['val_auroc']:.3f}" if "val_auroc" in event else f"val bal.acc {event['val_balanced_acc']:.3f}"
            bar.set_postfix_str(f"loss {event['loss']:.3f} {shown}")

    if config is not None and tag:
        config.check_ready()
    run_id = None if config is None or not tag else store.create_run(config.to_dict(), tag=tag)
    try:
        run_id = train(config, store, progress=progress, resume=resume, run_id=run_id)  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.close()
    return run_id


def _print_result(store: RunStore, run_id: str) -> None:
    run = store.get_run(run_id)
    summary = run["summary"] or {}
    keys = ("auroc", "auprc", "sens_at_95_spec", "balanced_acc") if "auroc" in summary else ("acc", "balanced_acc", "macro_f1")
    shown = ", ".join(f"{k} {summary[k]:.3f}" for k in keys if k in summary)
    print(f"{run_id}: {run['status']}" + (f" — test {shown}" if shown else ""))


def cmd_datasets(args: argparse.Namespace) -> None:
    if args.task and args.data is None:
        raise ConfigError("--task needs --data (the data set whose classes it names)")
    if args.data is None:
        for name in DATA_SOURCES.names():
            info = DATA_SOURCES.get(name)
            print(f"{name:10s} {info.description}\n{'':10s} layout: {info.layout}\n")
        return
    dataset = load_dataset(args.data, path=args.path, image_size=args.image_size, split_seed=args.split_seed,
                           task=args.task)
    print(f"{dataset.name}: {dataset.num_classes} classes, images {dataset.image_shape}")
    if args.task:
        print(dataset.description)
    table = dataset.counts_table()
    table.loc["total"] = table.sum()
    print(table.to_string())


def cmd_methods(args: argparse.Namespace) -> None:
    if args.markdown:
        print(methods_markdown())
        return
    if args.name:
        print(METHODS.get(args.name).card.to_markdown(args.name))
        return
    for name in METHODS.names():
        card = METHODS.get(name).card
        print(f"{name:18s} {card.title}{' (approximation)' if card.approximation else ''}")


def methods_markdown() -> str:
    header = ("# Method cards\n\nGenerated by `make docs` (`python -m imbal_core methods --markdown`) from the cards in "
              "`imbal_core/methods/`; a test keeps this file in step with the code.\n")
    return "\n\n".join([header] + [METHODS.get(name).card.to_markdown(name) for name in METHODS.names()]) + "\n"


def cmd_train(args: argparse.Namespace) -> None:
    store = RunStore(args.store)
    config = None if args.resume else _config(args, args.method, args.ratio, args.seed)
    run_id = _train_with_bar(config, store, args.quiet, resume=args.resume, tag=args.tag)
    _print_result(store, run_id)


def cmd_sweep(args: argparse.Namespace) -> None:
    store = RunStore(args.store)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        METHODS.get(method)  # fail before training anything
    ratios = [None if r.strip() == "natural" else float(r) for r in args.ratios.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = [_config(args, m, r, s) for m, r, s in itertools.product(methods, ratios, seeds)]
    failures = []
    for i, config in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] {config.method} ratio={config.ratio or 'natural'} seed={config.seed}")
        try:
            _print_result(store, _train_with_bar(config, store, args.quiet, tag=args.tag))
        except ImbalLabError as err:  # one failing run must not end the sweep
            failures.append(f"{config.method} ratio={config.ratio} seed={config.seed}: {err}")
            print(f"  failed: {err}", file=sys.stderr)
    print(f"sweep done: {len(configs) - len(failures)} finished, {len(failures)} failed")
    if failures:
        raise ConfigError("; ".join(failures))


def cmd_runs(args: argparse.Namespace) -> None:
    filters = {k: v for k, v in (("method", args.method), ("status", args.status)) if v}
    runs = RunStore(args.store).runs(**filters)
    if runs.empty:
        print("no runs yet; start one with `python -m imbal_core train`")
        return
    # runs without a summary read back as None or NaN
    runs["balanced_acc"] = runs["summary"].map(lambda s: json.loads(s)["balanced_acc"] if isinstance(s, str) else None)
    print(runs[["run_id", "status", "method", "data", "ratio", "seed", "epochs", "balanced_acc"]].to_string(index=False))


def cmd_evaluate(args: argparse.Namespace) -> None:
    metrics = evaluate_run(RunStore(args.store), args.run_id, args.data, args.path, args.split, args.device,
                           **_key_values(args.data_option, "--data-option"))
    for key, value in metrics["summary"].items():
        print(f"{key:16s} {value:.4f}")


def cmd_export(args: argparse.Namespace) -> None:
    run_ids = [r.strip() for r in args.runs.split(",")] if args.runs else None
    table = RunStore(args.store).tidy(run_ids, per_class=not args.summary_only)
    if args.out:
        from .utils import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {len(table)} rows to {args.out}")
    else:
        table.to_csv(sys.stdout, index=False)


def cmd_style_train(args: argparse.Namespace) -> None:
    config = StyleTrainConfig(**_generator_common(args), width=args.width, autoencoder_epochs=args.autoencoder_epochs,
                              style_weight=args.style_weight)
    path = _train_generator_printing(config, args)
    print(f"saved {path}; use it with: train --method style_kd --set tool=adain --set style_model={path.stem}")


def cmd_diffusion_train(args: argparse.Namespace) -> None:
    config = DiffusionTrainConfig(**_generator_common(args), width=args.width, layers_per_block=args.layers_per_block,
                                  label_dropout=args.label_dropout, ema_decay=args.ema_decay,
                                  prediction=args.prediction)
    path = _train_generator_printing(config, args)
    print(f"saved {path}; use it with: train --method iois --set generator={path.stem}")


def cmd_generators(args: argparse.Namespace) -> None:
    found = list_generators(args.kind)
    if not found:
        print("no generators yet; train one with `python -m imbal_core style-train` or `diffusion-train`")
    for info in found:
        ratio = info.config.get("ratio")
        data = f"{info.config['data']} {info.config['image_size']} px" + (f" ratio {ratio:g}" if ratio else "")
        print(f"{info.name:30s} {info.kind:9s} {info.source:10s} {data} — {training_summary(info)}")


def markdown_table(table: "pd.DataFrame") -> str:
    """A DataFrame as a Markdown table, floats with 3 decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def cmd_generator_quality(args: argparse.Namespace) -> None:
    from .synth.quality import measure_generator

    report = measure_generator(args.generator, args.run, RunStore(args.store), per_class=args.per_class,
                               steps=args.steps, guidance=args.guidance, strength=args.strength, seed=args.seed,
                               device=args.device)
    heading = (f"generator {args.generator}, features and classifier of run {args.run} (not Inception-FID); "
               f"{args.per_class} images per class, {args.steps} DDIM steps, guidance {args.guidance:g}, "
               f"strength {args.strength:g}, seed {args.seed}")
    print(heading)
    print(report.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        from .utils import atomic_path

        out = Path(args.out)
        with atomic_path(out) as tmp:
            if out.suffix == ".md":  # a results file says how it was made
                tmp.write_text(f"{heading[0].upper()}{heading[1:]}.\n\nCommand: `{args.command_line}`\n\n"
                               + markdown_table(report.table))
            else:
                report.table.to_csv(tmp, index=False)
        print(f"wrote {out}")

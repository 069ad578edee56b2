"""Command line: `python -m imbal_core {datasets,methods,train,sweep,benchmark,runs,evaluate,export,style-train,
diffusion-train,generators,generator-quality,robustness} --help`."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import signal
import sqlite3
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import DATA_SOURCES, load_dataset
from .data.colour import COLOUR_CONSTANCY
from .engine import RunInterrupted, TrainConfig, train
from .engine.config import check_data_options
from .engine.evaluate import EVAL_SPLITS, OVERLAP_RULES, evaluate_run
from .engine.robustness import DEFAULT_STRENGTHS, drop_table, evaluate_shifts
from .engine.streaming import PLACEMENTS
from .engine.trainer import RESUMABLE
from .errors import SEED_RANGE, ConfigError, ImbalLabError, is_seed
from .executors import RAY_WORKER_NICENESS, Job, LocalExecutor, RayExecutor, waits_for_a_worker
from .methods import METHODS
from .models import DEFAULT_BACKBONE, default_backbone
from .runs import LISTED_STATUSES, RunArchive, RunStore
from .shifts import MAX_STRENGTH, SHIFTS
from .synth.diffusion import PREDICTIONS, DiffusionTrainConfig
from .synth.generators import GeneratorConfig, list_generators, train_generator, training_summary
from .synth.style_models import StyleTrainConfig
from .utils import check_device, lab_home, read_json

if TYPE_CHECKING:
    import pandas as pd


PRUNABLE = ("failed", "stopped", "interrupted")  # what `runs --prune` deletes: runs that will not finish by themselves
ERROR_WIDTH = 160  # characters of a failed run's error shown by `runs`
IMAGE_SIZE_HELP = (
    "images are resized to this many pixels a side (16-512; below 112 the backbone's first strides are removed "
    "so the last map stays >= 4x4; from 112 up the published architecture is kept)"
)
PRETRAINED_HELP = (
    "start from pretrained weights: a timm tag such as resnet18.a1_in1k (sets the backbone; read from the Hugging "
    "Face cache, downloaded when online: HF_HUB_OFFLINE=1 uses the cache only) or a local .safetensors / .pth file "
    "for the architecture --backbone names"
)
SPLIT_SEED_HELP = "seed of the train/val/test split (data sets with an official split keep it)"
RAY_DEFAULTS = {"cpus_per_run": 1.0, "gpus_per_run": 0.0, "max_retries": 3}  # options of --executor ray only
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"


def main(argv: Sequence[str] | None = None, prog: str = "python -m imbal_core") -> int:
    """The CLI; `prog` is how it was invoked (`imbal-lab` from the installed command), as help and runs record it."""
    parser = build_parser(prog)
    try:
        # `app` hands the options it does not know to Streamlit (e.g. --server.port 8600); other commands refuse them
        args, unknown = parser.parse_known_args(argv)
        if unknown and args.func is not cmd_app:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.streamlit_args = unknown
    except SystemExit as stop:  # --help or --version (code 0), or a usage error argparse has printed (code 2)
        return int(stop.code or 0)
    args.command_line = shlex.join([*prog.split(), *(sys.argv[1:] if argv is None else argv)])
    _show_data_memory(quiet=getattr(args, "quiet", False))
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a run cleanly, like Ctrl-C
    try:
        return args.func(args) or 0
    except ImbalLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    except RunInterrupted as stopped:
        print(f"stopped; resume with `{prog} train --resume {stopped.run_id}`", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


class _StderrHandler(logging.Handler):
    """Log messages as plain lines on the current sys.stderr (looked up per message, as print does)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr)


def _show_data_memory(quiet: bool) -> None:
    """Print what a data set takes in memory before its cache is built, and where the training images are held
    (the data and streaming modules log it), unless --quiet."""
    handler = _StderrHandler()
    for name in ("imbal_core.data.images", "imbal_core.engine.streaming"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        if not logger.handlers:
            logger.addHandler(handler)


def console_main() -> None:
    """The `imbal-lab` command of the installed package."""
    sys.exit(main(prog="imbal-lab"))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _VersionAction(argparse.Action):
    """--version: the version, and the git commit in a checkout (asked of git only when --version is given)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from .launch import version_text

        print(version_text())
        parser.exit()


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends each option's text with its default, unless there is none to show (None, False, "", [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default in ("", []):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """A parser whose help shows the defaults; subcommands' parsers are made of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def _non_negative_int(text: str) -> int:
    """An argparse type for seeds: an integer in [0, 2^63 - 1]."""
    if not text.isdigit() or not is_seed(int(text)):
        raise argparse.ArgumentTypeError(f"must be {SEED_RANGE}; got {text[:40]!r}")
    return int(text)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for an integer in [low, high], e.g. a thread count or a niceness."""

    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}; got {text[:40]!r}")
        return int(text)

    return parse


def build_parser(prog: str = "python -m imbal_core") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Imbalance Lab engine.")
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version (and the git commit in a checkout) and exit"
    )
    parser.add_argument("--store", default=None, help="run store folder (default: $IMBAL_LAB_HOME/store)")
    sub = parser.add_subparsers(required=True, metavar="command")

    p = sub.add_parser(
        "app",
        help="serve the Streamlit app on 127.0.0.1 (the options of `make app`); Streamlit "
        "options follow, e.g. `app --server.port 8600` or `--server.address 0.0.0.0` to expose it",
    )
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("datasets", help="list data sources, or show one source's class counts")
    p.add_argument("--data", choices=DATA_SOURCES.names(), help="show this source's class counts per split")
    p.add_argument("--path", help="folder or file of the data set")
    p.add_argument("--task", help="show the counts of a binary task, e.g. 'mel vs nv'")
    p.add_argument("--image-size", type=int, default=28, help=IMAGE_SIZE_HELP)
    p.add_argument("--split-seed", type=_non_negative_int, default=0, help=SPLIT_SEED_HELP)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("methods", help="list methods, or print one method's card")
    p.add_argument("name", nargs="?", choices=METHODS.names())
    p.add_argument("--markdown", action="store_true", help="print every card as Markdown (docs/methods.md)")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="train one method (with a progress bar)")
    p.add_argument("--method", default="ce", choices=METHODS.names(), help="the method (cards: `methods NAME`)")
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="run seed: the model's start, batches, augmentation and which training images a --ratio keeps",
    )
    p.add_argument("--ratio", type=float, default=None, help="imbalance ratio n_max/n_min (default: natural counts)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a stopped or interrupted run")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="train exactly the config a run recorded (its config.json, e.g. results/ham10000_28_runs/<run id>/"
        "config.json); only --path (the data elsewhere here), --device, --tag and --quiet may go with it",
    )
    _add_run_options(p)
    p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser(
        "reproduce",
        help="retrain a finished run from its recorded config and seed in a scratch store, and compare: exit 0 "
        "only when the test probabilities are identical, byte for byte",
    )
    p.add_argument("run", help="a run id of the store, or a run folder (e.g. results/ham10000_28_runs/<run id>)")
    p.add_argument("--path", help="the data set's folder or file here, when it is not where the run recorded it")
    p.add_argument(
        "--scratch",
        metavar="DIR",
        help="the store the copy is trained in (kept); default: a temporary one, removed afterwards",
    )
    p.add_argument(
        "--threads",
        type=_int_in(1, 1024),
        metavar="N",
        help="torch threads for the copy (float sums are split by them); default: the count the run recorded "
        "(its environment.json, or pretrained/manifest.json for a shipped run), else this machine's",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("sweep", help="train every combination of methods x ratios x seeds")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. ce,focal,ldam_drw")
    p.add_argument(
        "--ratios",
        default="natural",
        help="comma-separated ratios >= 1 and/or 'natural' (the data set's own counts), e.g. natural,10,100",
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds >= 0, e.g. 0,1,2")
    _add_run_options(p)
    _add_executor_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "benchmark",
        help="run a benchmark protocol (a TOML file: data, methods, ratios, seeds, "
        "epochs): train what is missing, resume what was interrupted, write results/<name>.md and .csv",
    )
    p.add_argument(
        "protocol", help="a protocol .toml file, or the name of one in benchmarks/protocols/ (e.g. builtin_ratios)"
    )
    p.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="data path of the protocol's data set NAME (just DIR when it has one), replacing the file's",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="folder of the results files <name>.md and <name>.csv (default: results/ in a checkout, "
        "<lab home>/results when installed: where Compare reads them)",
    )
    p.add_argument(
        "--archive",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep a copy of every finished run, without weights, in DIR (e.g. results/<name>_runs, committed with "
        "the results) and restore the runs the store lacks from it first: a fresh clone reuses them instead of "
        "training them again",
    )
    p.add_argument(
        "--pretrained",
        metavar="TAG_OR_FILE",
        help="start every run from these weights instead of the protocol's (a tag sets the backbone too); the "
        "results files are named <protocol>_<tag or file name>",
    )
    p.add_argument(
        "--plan", action="store_true", help="only check the protocol and print what would be trained, resumed or reused"
    )
    p.add_argument(
        "--results-only",
        action="store_true",
        help="train nothing: write the results files from the runs finished so far (e.g. after a change to them)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=VALUE[,VALUE]",
        help="train only the protocol's runs in this slice (repeatable; keys: method, seed, ratio, data), e.g. "
        "--only method=style_kd,seed=0; the results files still show every finished run",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--stop-after",
        type=float,
        metavar="MINUTES",
        help="local executor: start no run after this many minutes (the one under way finishes), then write the "
        "results file as usual; the next call trains the rest",
    )
    _add_executor_options(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "runs",
        help="list the runs in the store (with failed runs' errors and how to resume stopped ones), or delete runs",
    )
    p.add_argument("--method", help="list only this method's runs")
    p.add_argument("--status", choices=LISTED_STATUSES, help="list only runs with this status")
    p.add_argument(
        "--delete",
        nargs="+",
        metavar="RUN_ID",
        help="delete these runs (rows and folders); nothing is "
        "deleted if one of them is unknown or still queued or running",
    )
    p.add_argument(
        "--prune",
        action="append",
        choices=PRUNABLE,
        help="delete every run with this status (repeat for several, e.g. --prune failed --prune stopped)",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="index run folders that the run index lacks (an emptied or damaged runs.sqlite, moved aside) again "
        "from their files: finished runs with their test metrics, others as stopped",
    )
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("evaluate", help="evaluate a finished run on another data set (e.g. HAM10000 -> ISIC 2018)")
    p.add_argument("run_id", help="the finished run whose model is evaluated (see `runs`)")
    p.add_argument("--data", required=True, choices=DATA_SOURCES.names(), help="data source of the other data set")
    p.add_argument("--path", help="folder or file of the other data set")
    p.add_argument(
        "--split",
        default="all",
        choices=EVAL_SPLITS,
        help="which images to score: all (the whole set, for an external test set) or one split of it",
    )
    p.add_argument(
        "--overlap",
        default="refuse",
        choices=OVERLAP_RULES,
        help="images the run trained or was selected on (same id or pixels): refuse to score, or "
        "exclude them and score the rest",
    )
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help="data source option")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "export", help="write the tidy metrics table (run, method, seed, ratio, class, metric, value) as CSV"
    )
    p.add_argument("--out", help="CSV file (default: standard output)")
    p.add_argument("--runs", help="comma-separated run ids (default: all)")
    p.add_argument("--summary-only", action="store_true", help="whole-set metrics only, no per-class rows")
    p.set_defaults(func=cmd_export)

    defaults = StyleTrainConfig()
    p = sub.add_parser("style-train", help="train an AdaIN style model (for Style-KD) on a data set's training split")
    _add_generator_options(p, defaults)
    p.add_argument(
        "--autoencoder-epochs",
        type=int,
        default=defaults.autoencoder_epochs,
        help="first epochs: reconstruction only (the encoder learns its features)",
    )
    p.add_argument("--width", type=int, default=defaults.width, help="channels of the first encoder stage")
    p.add_argument(
        "--style-weight",
        type=float,
        default=defaults.style_weight,
        help="weight of the style loss against the content loss",
    )
    p.set_defaults(func=cmd_style_train)

    diffusion_defaults = DiffusionTrainConfig()
    p = sub.add_parser(
        "diffusion-train", help="train a class-conditional diffusion model (for IOIS) on a training split"
    )
    _add_generator_options(p, diffusion_defaults)
    p.add_argument(
        "--width", type=int, default=diffusion_defaults.width, help="UNet channels of the first level (x2 below)"
    )
    p.add_argument(
        "--layers-per-block", type=int, default=diffusion_defaults.layers_per_block, help="ResNet layers per UNet level"
    )
    p.add_argument(
        "--label-dropout",
        type=float,
        default=diffusion_defaults.label_dropout,
        help="share of labels replaced by the null label (classifier-free guidance)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=diffusion_defaults.ema_decay,
        help="decay of the weights' moving average, the model that is saved and samples",
    )
    p.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        default=diffusion_defaults.prediction,
        help="what the UNet predicts: v (well conditioned at few sampling steps) or the noise",
    )
    p.add_argument(
        "--latent-channels",
        type=int,
        default=diffusion_defaults.latent_channels,
        help="0: denoise pixels; e.g. 4: denoise the latents of an autoencoder trained first, 4x smaller a side "
        "(64 px -> 16x16x4; about 30x cheaper a step at the same width, for 64 px and up)",
    )
    p.add_argument(
        "--autoencoder-epochs",
        type=int,
        default=diffusion_defaults.autoencoder_epochs,
        help="latent space: the first epochs train the autoencoder, the rest the UNet",
    )
    p.add_argument(
        "--autoencoder-width",
        type=int,
        default=diffusion_defaults.autoencoder_width,
        help="latent space: autoencoder channels of the first level (x2, x4 below)",
    )
    p.add_argument(
        "--autoencoder-batch-size", type=int, default=diffusion_defaults.autoencoder_batch_size, help="latent space"
    )
    p.add_argument("--autoencoder-lr", type=float, default=diffusion_defaults.autoencoder_lr, help="latent space")
    p.add_argument(
        "--kl-weight",
        type=float,
        default=diffusion_defaults.kl_weight,
        help="latent space: weight of the latents' KL to N(0, 1) against the L1 reconstruction",
    )
    p.set_defaults(func=cmd_diffusion_train)

    p = sub.add_parser("generators", help="list the generators (AdaIN and diffusion; yours and pretrained/)")
    p.add_argument("--kind", choices=("adain", "diffusion"))
    p.set_defaults(func=cmd_generators)

    p = sub.add_parser(
        "generator-quality",
        help="per-class quality of a diffusion model's images, judged with the features of a finished run",
    )
    p.add_argument("generator", help="diffusion model name or .safetensors path")
    p.add_argument(
        "--run",
        required=True,
        metavar="RUN_ID",
        help="finished run on the same data whose classifier and features judge the images (e.g. a pretrained ce run)",
    )
    p.add_argument("--per-class", type=int, default=64, help="synthetic images per class")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--strength", type=float, default=1.0, help="SDEdit strength (1 = from pure noise)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the sampling noise")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", help="also write the table to this .csv or .md file")
    p.set_defaults(func=cmd_generator_quality)

    p = sub.add_parser(
        "robustness",
        help="evaluate finished runs on their test split under acquisition shifts "
        "(colour cast, contrast, blur, JPEG) and print each metric's drop",
    )
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    p.add_argument(
        "--shifts",
        default=",".join(SHIFTS.names()),
        help="comma-separated, from: "
        + ", ".join(f"{name} ({SHIFTS.get(name).description})" for name in SHIFTS.names()),
    )
    p.add_argument(
        "--strengths",
        default=",".join(map(str, DEFAULT_STRENGTHS)),
        help=f"comma-separated integers in 1..{MAX_STRENGTH} (0 = unshifted, always measured)",
    )
    p.add_argument(
        "--metrics",
        help="comma-separated summary metrics to print (default: balanced_acc, acc, macro_f1, "
        "macro_auc_ovr; binary runs auroc, auprc, balanced_acc, sensitivity, specificity)",
    )
    p.add_argument("--seed", type=int, default=0, help="draws the random part of a shift (each image's cast colour)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.set_defaults(func=cmd_robustness)
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic", choices=DATA_SOURCES.names(), help="data source (see `datasets`)")
    p.add_argument("--path", help="folder or file of the data set (real data sources)")
    p.add_argument(
        "--task",
        help="binary task 'POSITIVE vs NEGATIVE', e.g. 'mel vs nv' or 'mel,bcc,akiec vs rest' (positive = abnormal)",
    )
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data source option, e.g. n_images=3000 (synthetic) or flag=retinamnist (medmnist)",
    )
    p.add_argument("--image-size", type=int, default=28, help=IMAGE_SIZE_HELP)
    p.add_argument("--split-seed", type=_non_negative_int, default=0, help=SPLIT_SEED_HELP)
    p.add_argument(
        "--colour-constancy",
        default="none",
        choices=("none", *COLOUR_CONSTANCY),
        help="remove each image's light colour in every split (Shades of Gray, p = 6)",
    )
    p.add_argument(
        "--profile",
        help="with a ratio: exp (the default) or step; or a JSON {class: count} dict (no ratio needed)",
    )
    p.add_argument(
        "--fit",
        choices=("scale", "cap"),
        help="with a ratio: scale (the default): exact ratio, fewer images (a ratio out of reach is an error); cap: "
        "classes short of their target keep all their images, at least one (the achieved ratio is printed)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        help=f"timm backbone, adapted to small images (default: the --pretrained tag's architecture, else "
        f"{DEFAULT_BACKBONE})",
    )
    p.add_argument("--pretrained", metavar="TAG_OR_FILE", help=PRETRAINED_HELP)
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="optimiser")
    p.add_argument(
        "--lr", type=float, default=1e-3, help="learning rate at the start of each stage (cosine decay to 0)"
    )
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay of the optimiser")
    p.add_argument(
        "--no-augment", action="store_true", help="train on the images as they are (no flips, rotations, colour jitter)"
    )
    p.add_argument(
        "--augment",
        default="basic",
        choices=("basic", "crop"),
        help="basic: flips, quarter turns, small rotation, scale and shift, colour jitter; crop: a random resized crop "
        "(35-100 %% of the area), flips, rotation, colour jitter, as the seed papers use at 128-224 px",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--data-placement",
        default="auto",
        choices=PLACEMENTS,
        help="device: hold the training images whole on the device; stream: read each batch from the disk cache "
        "(for sets larger than the memory); auto: hold them when they take at most half the free memory. The "
        "numbers are the same",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method setting, e.g. gamma=1.5")
    p.add_argument(
        "--init-from", metavar="RUN_ID", help="start from a finished run's weights (decoupled methods skip stage 1)"
    )
    p.add_argument("--tag", default="", help="free label stored with the run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: train the runs here, one "
        "after another; ray: one Ray task per run, in parallel on a local or running Ray cluster (workers "
        "need no data folder; a killed worker is retried and resumes from its last epoch)",
    )
    p.add_argument(
        "--address",
        help="ray: address of a running cluster (host:6379, as `ray start --head` prints; "
        "default: start a local one on this machine)",
    )
    p.add_argument(
        "--cpus-per-run",
        type=float,
        default=RAY_DEFAULTS["cpus_per_run"],
        help="ray: CPUs each run asks for (also its torch threads)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=RAY_DEFAULTS["gpus_per_run"],
        help="ray: GPUs each run asks for (e.g. 1, or 0.5 to share one between two runs); with 0 a run trains on CPU",
    )
    p.add_argument(
        "--max-retries",
        type=_non_negative_int,
        default=RAY_DEFAULTS["max_retries"],
        help="ray: how often a run whose worker died is started again (it resumes from its last completed epoch)",
    )
    p.add_argument(
        "--nice",
        type=_int_in(0, 19),
        metavar="0-19",
        default=None,
        help=f"ray: how far below this command's priority a local cluster's workers run, 0 (the same) to 19; "
        f"Ray's default {RAY_WORKER_NICENESS} lets any local training take the cores first",
    )


def _refuse_ray_options(args: argparse.Namespace) -> None:
    """Ray's options with the local executor would be ignored without a word: name them instead."""
    given = {
        "--address": args.address is not None,
        "--cpus-per-run": args.cpus_per_run != RAY_DEFAULTS["cpus_per_run"],
        "--gpus-per-run": args.gpus_per_run != RAY_DEFAULTS["gpus_per_run"],
        "--max-retries": args.max_retries != RAY_DEFAULTS["max_retries"],
        "--nice": args.nice is not None,
    }
    if any(given.values()):
        options = ", ".join(option for option, set_ in given.items() if set_)
        raise ConfigError(f"{options} only apply to Ray runs; add --executor ray (or leave them out)")


def _executor(args: argparse.Namespace) -> Any:
    """The executor the options ask for; Ray options without --executor ray are a mistake worth naming."""
    stop_after = getattr(args, "stop_after", None)  # benchmark only
    if args.executor == "local":
        _refuse_ray_options(args)
        return LocalExecutor(
            progress=lambda job: _progress_bar(args.quiet),
            stop_after_seconds=None if stop_after is None else stop_after * 60,
        )
    if stop_after is not None:
        raise ConfigError(
            "--stop-after works with --executor local (Ray starts every run at once); drop it, or stop the "
            "command with Ctrl-C: finished runs are kept and the rest resume"
        )

    def on_epoch(job: Any, run_id: str, info: dict) -> None:
        if args.quiet or not info.get("history"):
            return
        last = info["history"][-1]
        shown = " ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("val_") and isinstance(v, float))
        attempt = f" (attempt {info['attempt']})" if info.get("attempt", 1) > 1 else ""
        print(f"  {run_id}: epoch {info['epoch']}/{info['epochs']}{attempt} {shown}", flush=True)

    return RayExecutor(
        address=args.address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        max_retries=args.max_retries,
        on_epoch=on_epoch,
        niceness=args.nice,
    )


def _add_generator_options(p: argparse.ArgumentParser, defaults: GeneratorConfig) -> None:
    """The options every generator recipe shares (data, imbalance, budget, files)."""
    p.add_argument("--data", default="synthetic", choices=DATA_SOURCES.names(), help="data source (see `datasets`)")
    p.add_argument("--path", help="folder or file of the data set (real data sources)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help="data source option")
    p.add_argument("--image-size", type=int, default=defaults.image_size, help=IMAGE_SIZE_HELP)
    p.add_argument("--split-seed", type=_non_negative_int, default=defaults.split_seed, help=SPLIT_SEED_HELP)
    p.add_argument(
        "--ratio",
        type=float,
        default=None,
        help="learn only from the training images a run with this ratio (and --seed) keeps (default: natural counts)",
    )
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        default=defaults.seed,
        help="training seed (and, with --ratio, which images are kept)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--name", help=f"file name (default {defaults.kind}_<data>_<size>)")
    p.add_argument("--out", help="folder for the file (default $IMBAL_LAB_HOME/generators)")
    p.add_argument("--resume", action="store_true", help="continue a stopped training of the same name and recipe")


def _generator_common(args: argparse.Namespace) -> dict[str, Any]:
    data_options = _key_values(args.data_option, "--data-option")
    check_data_options(args.data, data_options)
    check_device(args.device)
    return dict(
        data=args.data,
        data_path=args.path,
        data_options=data_options or None,
        image_size=args.image_size,
        split_seed=args.split_seed,
        ratio=args.ratio,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
    )


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
    profile: Any = args.profile or "exp"
    if profile.startswith("{"):
        try:
            profile = json.loads(profile)
        except json.JSONDecodeError as err:
            raise ConfigError(f'--profile is not valid JSON ({err}); e.g. \'{{"df": 20, "vasc": 30}}\'') from None
    config = TrainConfig(
        method=method,
        method_settings=_key_values(args.set, "--set"),
        data=args.data,
        data_path=args.path,
        data_options=_key_values(args.data_option, "--data-option"),
        task=args.task,
        image_size=args.image_size,
        colour_constancy=None if args.colour_constancy == "none" else args.colour_constancy,
        split_seed=args.split_seed,
        ratio=ratio,
        profile=profile,
        fit=args.fit or "scale",
        backbone=args.backbone or default_backbone(args.pretrained),
        pretrained=args.pretrained,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        augment=_augment_setting(args),
        seed=seed,
        device=args.device,
        data_placement=args.data_placement,
        init_from=args.init_from,
    )
    config, note = config.with_chosen_settings()  # e.g. IOIS's generator, when --set names none
    if note:
        print(f"{method} seed {seed}: {note}", file=sys.stderr)
    return config


def _augment_setting(args: argparse.Namespace) -> bool | str:
    """TrainConfig.augment from --augment / --no-augment ("basic" is stored as True, as runs always had it)."""
    if args.no_augment:
        if args.augment != "basic":
            raise ConfigError(f"--no-augment and --augment {args.augment} contradict each other; give one")
        return False
    return True if args.augment == "basic" else args.augment


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[Callable[[dict], None]]:
    """A progress function for one run that draws a tqdm bar of its epochs (nothing when quiet)."""
    from tqdm import tqdm

    bar = None

    def progress(event: dict) -> None:
        nonlocal bar
        if quiet or event["event"] not in ("step", "epoch"):
            return
        if bar is None:  # a resumed run's first event is in the epoch after its last completed one
            bar = tqdm(
                total=event["epochs"], initial=event["epoch"], unit="epoch", dynamic_ncols=True, desc=event["run_id"]
            )
        if event["event"] == "step":
            bar.set_postfix_str(f"{event['stage']} step {event['step']}/{event['steps']} loss {event['loss']:.3f}")
        else:
            bar.update(1)
            shown = (
                f"val AUROC {event['val_auroc']:.3f}"
                if "val_auroc" in event
                else f"val bal.acc {event['val_balanced_acc']:.3f}"
            )
            bar.set_postfix_str(f"loss {event['loss']:.3f} {shown}")

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def _train_with_bar(
    config: TrainConfig | None, store: RunStore, quiet: bool, resume: str | None = None, tag: str = ""
) -> str:
    if config is not None and tag:
        config.check_ready()
    run_id = None if config is None or not tag else store.create_run(config.to_dict(), tag=tag)
    with _progress_bar(quiet) as progress:
        return train(config, store, progress=progress, resume=resume, run_id=run_id)  # type: ignore[arg-type]


def _print_result(store: RunStore, run_id: str) -> None:
    run = store.get_run(run_id)
    summary = run["summary"] or {}
    keys = (
        ("auroc", "auprc", "sens_at_95_spec", "balanced_acc")
        if "auroc" in summary
        else ("acc", "balanced_acc", "macro_f1")
    )
    shown = ", ".join(f"{k} {summary[k]:.3f}" for k in keys if k in summary)
    print(f"{run_id}: {run['status']}" + (f" — test {shown}" if shown else "") + _achieved_ratio(store, run))
    caution = _small_test_caution(store, run)
    if caution:
        print(caution)


MIN_TEST_PER_CLASS = 10  # fewer test images of a class than this, and its numbers are anecdotes


def _small_test_caution(store: RunStore, run: dict[str, Any]) -> str:
    """A warning when the test split is too small to mean much, or lacks a class (its recall is then undefined)."""
    metrics_file = store.run_dir(run["run_id"]) / "metrics.json"
    if run["status"] != "finished" or not metrics_file.exists():
        return ""
    metrics = read_json(metrics_file)
    support = [int(sum(row)) for row in metrics.get("confusion") or []]
    if not support:
        return ""
    absent = [name for name, n in zip(metrics["class_names"], support) if n == 0]
    if absent:
        return f"caution: the test split has no image of {absent}: their recall and F1 are undefined"
    if min(support) < MIN_TEST_PER_CLASS:
        fewest = metrics["class_names"][support.index(min(support))]
        return (
            f"caution: the test split has {sum(support)} image(s), only {min(support)} of {fewest}: with fewer "
            f"than {MIN_TEST_PER_CLASS} a class, these numbers are anecdotes, not estimates"
        )
    return ""


def _achieved_ratio(store: RunStore, run: dict[str, Any]) -> str:
    """A run with a ratio: the ratio of its training counts, which with fit="cap" can differ from the one asked."""
    metrics_file = store.run_dir(run["run_id"]) / "metrics.json"
    if run["ratio"] is None or not metrics_file.exists():
        return ""
    counts = read_json(metrics_file)["train_counts"]
    return f"; training counts: achieved ratio {max(counts) / min(counts):.4g} (asked {run['ratio']:g})"


def _store_root(args: argparse.Namespace) -> Path:
    return Path(args.store) if args.store else lab_home() / "store"


@contextmanager
def _store_to_read(args: argparse.Namespace) -> Iterator[RunStore]:
    """The run store of --store for a command that only reads (a plan): one that does not exist yet is not created,
    an empty one stands in for it."""
    if _store_root(args).exists():
        yield _open_store(args)
        return
    with tempfile.TemporaryDirectory(prefix="imbal-empty-store-") as empty:
        yield RunStore(empty)


def _open_store(args: argparse.Namespace) -> RunStore:
    """The run store of --store (default $IMBAL_LAB_HOME/store), with a message instead of a traceback when its
    folder cannot hold one: opening a store writes (its tables, its journal), so even listing needs a writable one."""
    root = _store_root(args)
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"the run store {root} is a file; give --store a folder (created when missing), e.g. --store lab_data/store"
        )
    nearest_folder = next(folder for folder in (root, *root.parents) if folder.exists())
    database = root / "runs.sqlite"
    if not os.access(nearest_folder, os.W_OK) or database.exists() and not os.access(database, os.W_OK):
        raise ConfigError(
            f"the run store {root} is not writable (runs, their status and metrics are written there); "
            "make it writable, or choose another folder with --store DIR"
        )
    try:
        return RunStore(root)
    except (OSError, sqlite3.Error) as err:
        raise ConfigError(f"cannot open the run store {root} ({err}); choose another folder with --store DIR") from None


def _comma_list(text: str, option: str, parse: Callable[[str], Any], expected: str) -> list[Any]:
    """The comma-separated values of `option`, each read by `parse`; a bad one is an error naming the option."""
    try:
        return [parse(item.strip()) for item in text.split(",")]
    except (ValueError, argparse.ArgumentTypeError):
        raise ConfigError(f"{option} must be {expected}; got {text!r}") from None


def _ratio_or_natural(text: str) -> float | None:
    return None if text == "natural" else float(text)


def _resume_command(run_id: str, store: str | None) -> str:
    store_option = ["--store", store] if store else []
    return shlex.join(["python", "-m", "imbal_core", *store_option, "train", "--resume", run_id])


def cmd_app(args: argparse.Namespace) -> int:
    from .launch import run_app

    if args.store:
        raise ConfigError("the app keeps its runs in $IMBAL_LAB_HOME/store; set IMBAL_LAB_HOME instead of --store")
    return run_app(args.streamlit_args)


def cmd_datasets(args: argparse.Namespace) -> None:
    if args.task and args.data is None:
        raise ConfigError("--task needs --data (the data set whose classes it names)")
    if args.data is None:
        for name in DATA_SOURCES.names():
            info = DATA_SOURCES.get(name)
            print(f"{name:10s} {info.description}\n{'':10s} layout: {info.layout}\n")
        return
    dataset = load_dataset(
        args.data, path=args.path, image_size=args.image_size, split_seed=args.split_seed, task=args.task
    )
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
    header = (
        "# Method cards\n\nGenerated by `make docs` (`python -m imbal_core methods --markdown`) from the cards in "
        "`imbal_core/methods/`; a test keeps this file in step with the code.\n"
    )
    return "\n\n".join([header] + [METHODS.get(name).card.to_markdown(name) for name in METHODS.names()]) + "\n"


def _check_subset_options(args: argparse.Namespace, ratios: list[float | None]) -> None:
    """--profile exp/step and --fit shape a ratio's subset: with natural counts only, they would be stored unused."""
    named_profile = args.profile is not None and not args.profile.startswith("{")
    if all(ratio is None for ratio in ratios) and (named_profile or args.fit is not None):
        given = " and ".join(
            f"--{name} {value}" for name, value in (("profile", args.profile), ("fit", args.fit)) if value
        )
        raise ConfigError(
            f"{given} only shape(s) the subset a ratio keeps; with natural counts (no ratio) it has no effect: add "
            "--ratio, or drop it"
        )


def cmd_train(args: argparse.Namespace) -> None:
    config: TrainConfig | None = None  # a resume trains the run's own config
    if args.config:
        config = _recorded_config(args)
    elif not args.resume:
        _check_subset_options(args, [args.ratio])
        config = _config(args, args.method, args.ratio, args.seed)
    store = _open_store(args)
    run_id = _train_with_bar(config, store, args.quiet, resume=args.resume, tag=args.tag)
    _print_result(store, run_id)


WITH_CONFIG = {"config", "path", "device", "tag", "quiet", "func", "parser", "store"}  # what --config leaves open


def _recorded_config(args: argparse.Namespace) -> TrainConfig:
    """`train --config FILE`: the recorded config (its data path as this checkout reads an archived one), with
    --path and --device applied; any other training option given with it is refused, not silently dropped."""
    from .reproduce import recorded_config

    given = [
        action.option_strings[0]
        for action in args.parser._actions
        if action.option_strings
        and action.dest not in WITH_CONFIG
        and getattr(args, action.dest, action.default) != action.default
    ]
    if given:
        raise ConfigError(
            f"--config trains the recorded config as it is; {', '.join(given)} would change it: drop them, or "
            "edit a copy of the config file"
        )
    config = recorded_config(Path(args.config).expanduser(), args.path)
    if args.device != "auto":
        config = replace(config, device=args.device)
    return config


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce, run_folder

    store = _open_store(args)
    folder = run_folder(args.run, [store])
    with ExitStack() as cleanup:
        if args.scratch:
            scratch = RunStore(args.scratch)
        else:
            scratch = RunStore(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="imbal-reproduce-")))
        with _progress_bar(args.quiet) as progress:
            result = reproduce(folder, scratch, data_path=args.path, progress=progress, threads=args.threads)
        print(result.report())
    return 0 if result.identical else 1


def cmd_sweep(args: argparse.Namespace) -> None:
    store = _open_store(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        METHODS.get(method)  # fail before training anything
    ratios = _comma_list(
        args.ratios, "--ratios", _ratio_or_natural, "comma-separated ratios >= 1 and/or 'natural', e.g. natural,10,100"
    )
    seeds = _comma_list(args.seeds, "--seeds", _non_negative_int, "comma-separated integers >= 0, e.g. 0,1,2")
    _check_subset_options(args, ratios)
    configs = [_config(args, m, r, s) for m, r, s in itertools.product(methods, ratios, seeds)]
    if args.executor == "ray":
        _sweep_on_ray(args, store, configs)
        return
    _refuse_ray_options(args)
    for config in configs:  # bad data, device or an unreachable ratio: fail before training anything
        config.check_ready()
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


def _sweep_on_ray(args: argparse.Namespace, store: RunStore, configs: list[TrainConfig]) -> None:
    for config in configs:  # as for a local sweep, but the device is the workers' (checked there)
        config.check_ready(device_here=False)
    executor = _executor(args)
    outcomes = executor.run(
        [Job(config) for config in configs],
        store,
        tag=args.tag,
        on_done=lambda outcome: _print_result(store, outcome.run_id),
    )
    failures = [
        f"{o.job.config.method} ratio={o.job.config.ratio} seed={o.job.config.seed}: {o.error}"
        for o in outcomes
        if o.status != "finished"
    ]
    print(f"sweep done: {len(outcomes) - len(failures)} finished, {len(failures)} failed")
    if failures:
        raise ConfigError("; ".join(failures))


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import STATE_TEXT, other_data_hint, plan, run_benchmark
    from .protocol import load_protocol, parse_only

    protocol = load_protocol(args.protocol, args.path, pretrained=args.pretrained)
    only = parse_only(args.only) if args.only else None
    if only is not None:  # a name the protocol lacks would silently narrow or empty the slice
        planned = protocol.plan()
        unknown = sorted(
            f"{k}={v}" for k, vs in only.items() for v in vs if not any(r.matches({k: {v}}) for r in planned)
        )
        if unknown:
            raise ConfigError(f"--only names what {protocol.file} does not have: {', '.join(unknown)}; check the names")
        if not any(run.matches(only) for run in planned):
            raise ConfigError(f"no run of {protocol.file} is in --only {' '.join(args.only)}: no run has all of them")
    archive = RunArchive(args.archive) if args.archive else None
    if args.plan:
        with _store_to_read(args) as store:
            steps = plan(protocol, store, local=args.executor == "local", archive=archive)
        for step in steps:
            run = f" {step.run_id}" if step.run_id else ""
            print(f"{STATE_TEXT[step.state]}:{run} {step.run.describe()}" + (f" — {step.note}" if step.note else ""))
        hint = other_data_hint(steps)
        if hint:
            print(hint)
        return 0
    store = _open_store(args)
    executor = _executor(args)
    try:
        result = run_benchmark(
            protocol,
            store,
            executor,
            args.out_dir,
            args.command_line,
            train=not args.results_only,
            archive=archive,
            only=only,
        )
    except KeyboardInterrupt:
        print(
            f"stopped; finished runs are kept and the results file shows them. Run `{args.command_line}` again "
            "to resume the rest from their last completed epoch",
            file=sys.stderr,
        )
        return 130
    print(f"wrote {result.markdown} and {result.csv}")
    missing = [s for s in result.incomplete() if only is None or s.run.matches(only)]
    if missing and args.results_only:
        print(
            f"{len(missing)} of the protocol's runs have not finished; the same command without --results-only "
            "trains them"
        )
    elif missing:
        raise ConfigError(
            f"{len(missing)} of the protocol's runs have not finished (not reached in the time given, blocked, "
            f"failed or busy elsewhere; see the runs and 'Not finished' in {result.markdown}); run the same command "
            "again (after fixing what blocks them): finished runs are kept and the others resume"
        )
    return 0


def cmd_runs(args: argparse.Namespace) -> None:
    store = _open_store(args)
    if args.rebuild:
        crafted = store.crafted_rows()
        rebuilt = store.rebuild_index()
        if crafted:
            print(f"removed {len(crafted)} index row(s) whose id is not a plain name: {', '.join(map(repr, crafted))}")
        print(f"indexed {len(rebuilt)} run folder(s) again: {', '.join(rebuilt) or 'none was missing'}")
        return
    if args.delete or args.prune:
        _delete_runs(store, args.delete or [], args.prune or [])
        return
    unindexed = store.unindexed_folders()
    if unindexed:  # said first: a store that looks empty may only have lost its index
        print(
            f"{len(unindexed)} run folder(s) in {store.root / 'runs'} have no row in the run index (was runs.sqlite "
            f"emptied or replaced?), e.g. {unindexed[0]}: `runs --rebuild` indexes them again from their files\n"
        )
    folderless = store.folderless_runs()
    if folderless:
        print(
            f"{len(folderless)} run(s) of the index have no folder in {store.root / 'runs'} (removed by hand?), e.g. "
            f"{folderless[0]}: their results cannot be read; `runs --delete ID` removes their rows\n"
        )
    crafted = store.crafted_rows()
    if crafted:  # left out below: acting on such an id could reach outside the store
        print(
            f"{len(crafted)} row(s) of the run index have an id that is not a plain name (was runs.sqlite edited?), "
            f"e.g. {crafted[0]!r}: they are left out and no command acts on them; `runs --rebuild` removes them\n"
        )
    filters = {k: v for k, v in (("method", args.method), ("status", args.status)) if v}
    runs = store.runs(**filters)
    if runs.empty:
        matching = " and ".join(f"{k} {v}" for k, v in filters.items())
        print(
            f"no runs with {matching} (`runs` lists them all)"
            if filters
            else "no runs yet; start one with `python -m imbal_core train`"
        )
        return
    # runs without a summary or progress read back as None or NaN
    runs["balanced_acc"] = runs["summary"].map(lambda s: json.loads(s)["balanced_acc"] if isinstance(s, str) else None)
    # epochs done / planned (a two-stage method plans its second stage too); e.g. a run not started yet: 0/30
    progress = runs["progress"].map(lambda p: json.loads(p) if isinstance(p, str) else {})
    runs["epochs"] = [
        f"{p.get('epoch', 0)}/{p.get('epochs', total)}" + (" waiting" if waits_for_a_worker(status, p, owner) else "")
        for p, total, status, owner in zip(progress, runs["epochs"], runs["status"], runs["owner_pid"])
    ]
    print(
        runs[["run_id", "status", "method", "data", "ratio", "seed", "epochs", "balanced_acc"]].to_string(index=False)
    )
    notes = []  # under the table: why runs failed, how to continue the others
    for run in runs.itertuples():
        if run.status == "failed" and isinstance(run.error, str):
            notes.append(f"{run.run_id}: {textwrap.shorten(run.error, ERROR_WIDTH, placeholder=' ...')}")
        elif run.status in RESUMABLE:
            notes.append(f"{run.run_id}: {run.status}; resume with `{_resume_command(run.run_id, args.store)}`")
    if any(runs["epochs"].str.endswith(" waiting")):
        notes.append("waiting: submitted to Ray, which has no free worker for it yet")
    if notes:
        print("\n" + "\n".join(notes))


def _delete_runs(store: RunStore, run_ids: list[str], prune: list[str]) -> None:
    """Delete the named runs and every run with a status in `prune`; all names are checked before anything goes."""
    status = dict(store.runs()[["run_id", "status"]].itertuples(index=False))
    unknown = [run_id for run_id in run_ids if run_id not in status]
    if unknown:
        raise ConfigError(f"no run(s) {unknown} in the store {store.root}; `python -m imbal_core runs` lists its runs")
    busy = [run_id for run_id in run_ids if status[run_id] in ("queued", "running")]
    if busy:
        raise ConfigError(
            f"run(s) {busy} are queued or running; stop them first (Stop on the app's Train page, Ctrl-C "
            "in the CLI), then delete them"
        )
    doomed = list(dict.fromkeys([*run_ids, *(run_id for run_id, s in status.items() if s in prune)]))
    if not doomed:
        print(f"no {' or '.join(prune)} runs to delete")
    for run_id in doomed:
        store.delete_run(run_id)
        print(f"deleted {run_id} ({status[run_id]})")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import pandas as pd

    check_device(args.device)
    metrics = evaluate_run(
        _open_store(args),
        args.run_id,
        args.data,
        args.path,
        args.split,
        args.device,
        overlap=args.overlap,
        **_key_values(args.data_option, "--data-option"),
    )
    excluded = metrics["n_overlap_excluded"]
    print(
        f"{args.data} ({args.split}): {metrics['n_images']} images scored"
        + (f", {excluded} seen in training left out" if excluded else "")
    )
    for key, value in metrics["summary"].items():
        print(f"{key:16s} {value:.4f}")
    names = metrics["class_names"]
    per_class = pd.DataFrame({k: metrics["per_class"][k] for k in ("support", "recall", "precision")}, index=names)
    print("\nper class:\n" + per_class.to_string(float_format=lambda v: f"{v:.3f}"))
    confusion = pd.DataFrame(metrics["confusion"], index=pd.Index(names, name="true \\ predicted"), columns=names)
    print("\nconfusion matrix (rows: true class):\n" + confusion.to_string())


def cmd_export(args: argparse.Namespace) -> None:
    run_ids = [r.strip() for r in args.runs.split(",")] if args.runs else None
    store = _open_store(args)
    if args.out and Path(args.out).resolve().is_relative_to(store.root.resolve()):
        raise ConfigError(
            f"--out {args.out} lies inside the run store {store.root}, whose files (its index, the runs' weights) "
            "it could overwrite: write the table elsewhere"
        )
    table = store.tidy(run_ids, per_class=not args.summary_only)
    if args.out:
        from .utils import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {len(table)} rows to {args.out}")
    else:
        table.to_csv(sys.stdout, index=False)


def cmd_style_train(args: argparse.Namespace) -> None:
    config = StyleTrainConfig(
        **_generator_common(args),
        width=args.width,
        autoencoder_epochs=args.autoencoder_epochs,
        style_weight=args.style_weight,
    )
    path = _train_generator_printing(config, args)
    print(f"saved {path}; use it with: train --method style_kd --set tool=adain --set style_model={path.stem}")


def cmd_diffusion_train(args: argparse.Namespace) -> None:
    config = DiffusionTrainConfig(
        **_generator_common(args),
        width=args.width,
        layers_per_block=args.layers_per_block,
        label_dropout=args.label_dropout,
        ema_decay=args.ema_decay,
        prediction=args.prediction,
        latent_channels=args.latent_channels,
        autoencoder_epochs=args.autoencoder_epochs,
        autoencoder_width=args.autoencoder_width,
        autoencoder_batch_size=args.autoencoder_batch_size,
        autoencoder_lr=args.autoencoder_lr,
        kl_weight=args.kl_weight,
    )
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


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, floats with 3 decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def cmd_generator_quality(args: argparse.Namespace) -> None:
    from .synth.quality import TARGETS_TEXT, measure_generator, targets_table

    report = measure_generator(
        args.generator,
        args.run,
        _open_store(args),
        per_class=args.per_class,
        steps=args.steps,
        guidance=args.guidance,
        strength=args.strength,
        seed=args.seed,
        device=args.device,
    )
    heading = (
        f"generator {args.generator}, features and classifier of run {args.run} (not Inception-FID); "
        f"{args.per_class} images per class, {args.steps} DDIM steps, guidance {args.guidance:g}, "
        f"strength {args.strength:g}, seed {args.seed}"
        + (
            f"; the run's classifier works at {report.judge_size} px, so synthetic, training and validation images "
            f"were all resized to {report.judge_size} px for it (pixel distances at the generator's size)"
            if report.judge_size
            else ""
        )
    )
    targets = targets_table(report.table)
    print(heading)
    print(report.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(targets.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.out:
        from .utils import atomic_path

        out = Path(args.out)
        # One frame, two writers: the Markdown for readers, the CSV (same name) for the Synthesis page.
        table = report.table.merge(targets[["class", "misses"]], on="class", how="left").fillna({"misses": ""})
        if out.suffix == ".md":  # a results file says how it was made
            with atomic_path(out) as tmp:
                tmp.write_text(
                    f"{heading[0].upper()}{heading[1:]}.\n\nCommand: `{args.command_line}`\n\n"
                    + markdown_table(report.table)
                    + f"\n\n{TARGETS_TEXT}\n\n"
                    + markdown_table(targets)
                )
        with atomic_path(out.with_suffix(".csv")) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {out}" + (f" and {out.with_suffix('.csv')}" if out.suffix != ".csv" else ""))


def cmd_robustness(args: argparse.Namespace) -> None:
    import pandas as pd

    check_device(args.device)
    store = _open_store(args)
    shifts = [name.strip() for name in args.shifts.split(",") if name.strip()]
    try:
        strengths = [int(s) for s in args.strengths.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--strengths must be comma-separated integers, e.g. 1,3,5; got {args.strengths!r}") from None
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    tables = []
    for run_id in args.run_ids:
        report = evaluate_shifts(store, run_id, shifts, strengths, args.device, args.seed)
        table = drop_table(report, metrics)
        # The report may hold other shifts and strengths from earlier calls; print what was asked.
        table = table[table["shift"].isin(shifts) & table["strength"].isin([0, *strengths])]
        tables.append(table.assign(run=run_id[-6:], method=store.get_run(run_id)["method"]))
    columns = ["run", "method", "shift", "strength", "metric", "value", "drop"]
    print(pd.concat(tables)[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("drop = unshifted test value - shifted value (> 0: worse); strength 0 is the unshifted test set")

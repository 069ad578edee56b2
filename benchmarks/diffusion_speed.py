"""Benchmark: IOIS's diffusion generator and what it adds to training. Prints two Markdown tables.

1. DDIM sampling throughput (images/s) at guidance 1 (no null pass) and 2 (classifier-free guidance
   doubles the UNet batch), against the UNet's forward pass timed alone.
   Goal: sampling reaches at least 50 % of the UNet-only throughput.
2. Epoch seconds of `iois` (default settings: pool mode) vs a plain `ce` run on the built-in data,
   with a tiny generator trained first (1 epoch; the speed does not depend on its quality).
   Goal: the default iois setting costs at most 2x a plain epoch on CPU.
Not a test: run it by hand.

    .venv/bin/python benchmarks/diffusion_speed.py                          # both parts, CUDA if present
    .venv/bin/python benchmarks/diffusion_speed.py --skip-epochs --device cuda --batch 1024
    .venv/bin/python benchmarks/diffusion_speed.py --skip-sampling --device cpu --n-images 2000  # quick check

Sampling uses an untrained model of the default size (28 px, width 16), or `--generator NAME`.
The training part runs in a temporary IMBAL_LAB_HOME: your runs and generators are not touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imbal_core.engine import TrainConfig, train  # noqa: E402
from imbal_core.methods import create_method  # noqa: E402
from imbal_core.runs import RunStore  # noqa: E402
from imbal_core.synth.diffusion import DiffusionModel, DiffusionTrainConfig, load_diffusion_model  # noqa: E402
from imbal_core.synth.generators import train_generator  # noqa: E402
from imbal_core.utils import select_device  # noqa: E402

GUIDANCES = (1.0, 2.0)
SAMPLING_TARGET = 0.5  # sampling / UNet-only throughput
EPOCH_TARGET = 2.0  # iois / plain ce, whole run


def machine(device: torch.device) -> str:
    threads = f"{torch.get_num_threads()} CPU threads"
    return f"{torch.cuda.get_device_name(device)}, {threads}" if device.type == "cuda" else f"CPU, {threads}"


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` after one warm-up call, synchronised on CUDA."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- 1. Sampling ------------------------------------------------------------------------------


def sampling_table(args: argparse.Namespace, device: torch.device) -> None:
    if args.generator:
        model, label = load_diffusion_model(args.generator, device), f"generator {args.generator!r}"
    else:
        model = (
            DiffusionModel(
                in_chans=3,
                num_classes=7,
                image_size=28,
                width=16,
                layers_per_block=1,
                timesteps=1000,
                beta_schedule="squaredcos_cap_v2",
            )
            .to(device)
            .eval()
        )
        label = "untrained model, width 16"
    labels = torch.arange(args.batch, device=device) % model.num_classes
    print(
        f"\nDDIM sampling: {args.batch} images of {model.image_size} px, {args.steps} steps, {label}, {device} "
        f"({machine(device)}); median of {args.repeats}\n"
    )
    print("| guidance | UNet batch | sampling images/s | UNet-only images/s | sampling / UNet-only |")
    print("|---|---|---|---|---|")
    verdicts = []
    for guidance in GUIDANCES:
        sampling = median_seconds(
            partial(model.sample, labels, steps=args.steps, guidance=guidance), device, args.repeats
        )
        # One forward pass as sampling makes it (predict: bf16 autocast on CUDA), on the batch it
        # sees: guidance other than 1 adds the null-label copy of every image.
        unet_labels = labels if guidance == 1.0 else torch.cat([labels, torch.full_like(labels, model.null_label)])
        x = torch.randn(len(unet_labels), model.in_chans, model.image_size, model.image_size, device=device)
        t = torch.full_like(unet_labels, model.train_scheduler.config.num_train_timesteps // 2)
        with torch.no_grad():
            forward = median_seconds(partial(model.predict, x, t, unet_labels), device, args.repeats)
        sampling_rate, unet_rate = args.batch / sampling, args.batch / (args.steps * forward)
        ratio = sampling_rate / unet_rate
        verdicts.append(f"guidance {guidance:g}: {ratio:.0%} ({'met' if ratio >= SAMPLING_TARGET else 'NOT met'})")
        print(f"| {guidance:g} | {len(unet_labels)} | {sampling_rate:,.0f} | {unet_rate:,.0f} | {ratio:.0%} |")
    print(f"\nTarget, sampling >= {SAMPLING_TARGET:.0%} of the UNet-only throughput: {'; '.join(verdicts)}")


# ---- 2. Epochs --------------------------------------------------------------------------------


def epoch_seconds(config: TrainConfig, store: RunStore) -> list[dict[str, Any]]:
    """One run's epochs as the engine records them: stage and seconds (including the method's epoch
    preparation, so IOIS's pool generation counts in its first synthesis epoch)."""
    run_id = train(config, store)
    return [{"stage": h["stage"], "seconds": h["seconds"]} for h in store.get_run(run_id)["progress"]["history"]]


def epoch_table(args: argparse.Namespace, device: torch.device) -> None:
    data_options = {"n_images": args.n_images}
    common = dict(data="synthetic", data_options=data_options, epochs=args.epochs, device=device.type)
    # lab_home() reads the variable on every call: generators, data cache and runs all land in `home`.
    with (
        tempfile.TemporaryDirectory(prefix="imbal-bench-") as home,
        mock.patch.dict(os.environ, {"IMBAL_LAB_HOME": home}),
    ):
        generator = train_generator(
            DiffusionTrainConfig(data="synthetic", data_options=data_options, epochs=1, device=device.type),
            name="benchmark",
        ).stem
        method = create_method("iois", generator=generator)
        plan = ", ".join(f"{stage.name} {stage.epochs}" for stage in method.stages(args.epochs))
        store = RunStore(Path(home) / "store")
        train(TrainConfig(**{**common, "epochs": 1}), store)  # warm-up (allocator, caches)
        ce = epoch_seconds(TrainConfig(method="ce", **common), store)
        iois = epoch_seconds(TrainConfig(method="iois", method_settings={"generator": generator}, **common), store)

    settings = method.settings
    print(f"\nEpochs: synthetic data, n_images {args.n_images}, {args.epochs} epochs, {device} ({machine(device)})")
    print(
        f"iois plan: {plan}; defaults: mode {settings['mode']}, pool {settings['pool_per_class']} per class, "
        f"budget {settings['budget']:g} x the training set, {settings['steps']} DDIM steps, guidance "
        f"{settings['guidance']:g}\n"
    )
    ce_epoch = statistics.median(e["seconds"] for e in ce)
    warmup = [e["seconds"] for e in iois if e["stage"] == "warmup"]
    first, *later = [e["seconds"] for e in iois if e["stage"] == "synthesis"]
    ce_total, iois_total = sum(e["seconds"] for e in ce), sum(e["seconds"] for e in iois)
    rows = [  # name, seconds, what they are compared with
        (f"plain ce epoch (median of {len(ce)})", ce_epoch, ce_epoch),
        (f"iois warm-up epoch (median of {len(warmup)})", statistics.median(warmup), ce_epoch),
        ("iois first synthesis epoch (generates the pool)", first, ce_epoch),
        (f"iois later synthesis epoch (median of {len(later)})", statistics.median(later), ce_epoch),
        ("whole run: plain ce", ce_total, ce_total),
        ("whole run: iois", iois_total, ce_total),
    ]
    print("| epoch | seconds | x plain ce |")
    print("|---|---|---|")
    for name, seconds, base in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")
    whole, per_epoch = iois_total / ce_total, statistics.median(later) / ce_epoch
    where = "" if device.type == "cpu" else f" (measured on {device.type}; the target is for CPU)"
    print(
        f"\nTarget, the default iois setting costs at most {EPOCH_TARGET:g}x a plain epoch on CPU{where}: "
        f"synthesis epoch after the pool {per_epoch:.2f}x ({'met' if per_epoch <= EPOCH_TARGET else 'NOT met'}); "
        f"whole {args.epochs}-epoch run including the one-off pool {whole:.2f}x "
        f"({'met' if whole <= EPOCH_TARGET else 'NOT met'})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=256, help="images sampled at once")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generator", help="a trained diffusion generator's name (default: an untrained model)")
    parser.add_argument("--n-images", type=int, default=10_000, help="size of the built-in data set")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (iois: 30 %% of them warm-up)")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: torch's own choice); on a busy "
        "machine fewer threads than cores avoids threads waiting on each other",
    )
    parser.add_argument("--skip-sampling", action="store_true")
    parser.add_argument("--skip-epochs", action="store_true")
    args = parser.parse_args()
    if args.skip_sampling and args.skip_epochs:
        parser.error("nothing left to measure: drop --skip-sampling or --skip-epochs")
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (a warm-up, a first and a later synthesis epoch)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    if not args.skip_sampling:
        sampling_table(args, device)
    if not args.skip_epochs:
        epoch_table(args, device)


if __name__ == "__main__":
    main()

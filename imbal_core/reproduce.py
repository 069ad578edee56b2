"""Retrain a finished run from its recorded config and seed, and say how close the copy comes.

`python -m imbal_core reproduce RUN` (a run id of the store, or a run folder such as an archived one). The copy is
trained in a scratch store, with the thread count the original recorded (torch splits float sums by it). Then the
two runs' test probabilities are compared byte for byte, with the largest probability difference, the share of
test images given the same class, every summary metric of both, and the parts of the environment that differ from
the one that trained the original (`utils.numerics_environment`). The same seed gives the same bytes only in the
same environment: a difference where the environment differs is expected; one where it agrees is a bug.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .engine import TrainConfig, train
from .engine.trainer import ProgressFn, run_environment_records
from .errors import ConfigError, RunError
from .runs import RunStore
from .runs.archive import CONFIG_FILE, PREDICTIONS_FILE, local_config
from .utils import environment_differences, numerics_environment, select_device


@dataclass(frozen=True)
class Reproduction:
    """What a retrain of `original` (a run folder) gave, as `copy_run_id` of the scratch store."""

    original: Path
    copy_run_id: str
    identical: bool  # the test probabilities, byte for byte
    largest_probability_difference: float
    same_class_share: float  # test images given the same class by both
    metrics: dict[str, tuple[float, float]]  # summary metric -> (original, copy)
    environment: list[str]  # `environment_differences` of the original's last training call and this one
    threads: int  # torch's thread count the copy trained with

    def report(self) -> str:
        verdict = (
            "identical: the copy's test probabilities are the original's, byte for byte"
            if self.identical
            else "NOT identical: the copy's test probabilities differ from the original's"
        )
        lines = [
            f"reproduce {self.original.name} -> {self.copy_run_id}: {verdict}",
            f"  largest probability difference {self.largest_probability_difference:.3g}; "
            f"same predicted class for {self.same_class_share:.1%} of the test images; "
            f"trained with {self.threads} torch thread(s)",
            "  metric                 original       copy   difference",
            *(
                f"  {name:<20} {before:>10.4f} {after:>10.4f} {after - before:>+12.2e}"
                for name, (before, after) in self.metrics.items()
            ),
        ]
        if self.environment:
            lines.append("  the environment differs from the one that trained the original:")
            lines += [f"    {part}" for part in self.environment]
        else:
            lines.append("  environment: every recorded part agrees with this one")
        return "\n".join(lines)


def run_folder(run: str, stores: Sequence[RunStore]) -> Path:
    """The folder of `run`: a folder holding a run's config.json (an archived run), or a run id of one of
    `stores`."""
    path = Path(run).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    for store in stores:
        if store.has_run(run):
            return store.run_dir(run)
    roots = ", ".join(str(store.root) for store in stores)
    raise ConfigError(
        f"{run!r} is neither a run id of {roots} nor a run folder with a {CONFIG_FILE} (e.g. "
        "results/ham10000_28_runs/<run id>): give one of those (`runs` lists the store's)"
    )


def recorded_config(file: Path, data_path: str | None = None) -> TrainConfig:
    """The config a run recorded (its config.json), its data path as this checkout reads an archived one (or
    `data_path`, for data kept elsewhere here). `train --config` and `reproduce` read it so."""
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{file} does not read as a run's {CONFIG_FILE} ({type(err).__name__})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{file} is not a run's {CONFIG_FILE} (a JSON object of TrainConfig's keys)")
    config = TrainConfig.from_dict(local_config(values))
    return config if data_path is None else replace(config, data_path=data_path)


def reproduce(
    folder: Path,
    scratch: RunStore,
    data_path: str | None = None,
    progress: ProgressFn | None = None,
    threads: int | None = None,
) -> Reproduction:
    """Retrain the run in `folder` into `scratch` from its recorded config and seed, and compare (see the module).
    `threads`: torch's thread count for the copy; by default the one the run recorded (its environment, or the
    shipped runs' manifest), else this process's."""
    predictions = folder / PREDICTIONS_FILE
    if not predictions.is_file():
        raise RunError(f"{folder} has no {PREDICTIONS_FILE}: only a finished run can be compared with its copy")
    config = recorded_config(folder / CONFIG_FILE, data_path)
    if config.init_from:
        raise ConfigError(
            f"the run in {folder} starts from run {config.init_from}'s weights (init_from): reproduce that run "
            "first, then train this config with --init-from set to the copy (`train --config`)"
        )
    config.check_ready()  # a missing data folder or weights file: an error before anything is trained
    recorded = run_environment_records(folder)
    threads = threads or (recorded_threads(recorded[-1]) if recorded else shipped_threads(folder))
    previous = torch.get_num_threads()
    try:  # torch splits sums by its thread count: the copy runs with the original's where it was recorded
        torch.set_num_threads(threads or previous)
        copy_id = train(config, scratch, progress=progress)
        here = numerics_environment(select_device(config.device))
    finally:
        torch.set_num_threads(previous)
    before, after = (_probabilities(path) for path in (predictions, scratch.run_dir(copy_id) / PREDICTIONS_FILE))
    if before.shape != after.shape:
        raise RunError(
            f"the copy scored {after.shape[0]} test images, the original {before.shape[0]}: the data at "
            f"{config.data_path} is not the data that trained the original"
        )
    original_metrics, copy_metrics = (_summary(path / "metrics.json") for path in (folder, scratch.run_dir(copy_id)))
    return Reproduction(
        original=folder,
        copy_run_id=copy_id,
        identical=before.dtype == after.dtype and before.tobytes() == after.tobytes(),
        largest_probability_difference=float(np.abs(before.astype(np.float64) - after).max(initial=0.0)),
        same_class_share=float(np.mean(before.argmax(1) == after.argmax(1))) if len(before) else 1.0,
        metrics={m: (v, copy_metrics[m]) for m, v in original_metrics.items() if m in copy_metrics},
        environment=environment_differences(recorded[-1], here) if recorded else ["the original recorded none"],
        threads=threads or previous,
    )


def recorded_threads(record: dict[str, str]) -> int | None:
    """torch's thread count in an environment record ("..., threads 2" in its summary); None when not said."""
    found = re.search(r"threads (\d+)", record.get("summary", ""))
    return int(found.group(1)) if found else None


def shipped_threads(folder: Path) -> int | None:
    """The thread count `pretrained/manifest.json` records for a shipped run made before runs recorded theirs."""
    manifest = folder.parent.parent / "manifest.json"  # pretrained/runs/<run id> -> pretrained/manifest.json
    if not manifest.is_file():
        return None
    entries = json.loads(manifest.read_text()).get("runs", [])
    return next((e.get("cpu_threads") for e in entries if e.get("run_id") == folder.name), None)


def _probabilities(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        return archive["probs"]


def _summary(path: Path) -> dict[str, float]:
    summary = json.loads(path.read_text())["summary"]
    return {name: float(value) for name, value in summary.items() if isinstance(value, int | float)}

"""A run archive: slim copies of finished runs in plain files, in a folder meant for version control.

A benchmark's store holds weights and resume checkpoints (hundreds of MB) and lives on one machine; when that
machine goes, its finished runs go with it and a long benchmark would train them all again. With
`benchmark --archive DIR` every finished run is also copied into DIR without its weights (its row and metric rows,
config, metrics, history, test and validation probabilities), and a benchmark that starts restores the archived runs
its store lacks. Commit DIR, and a fresh clone reuses those runs (and rewrites the results file from them) instead
of training them again.

One folder per run, named by its run id, written to a temporary folder and renamed: a folder is there whole or not
at all, so a copy interrupted half-way is never restored. A run is matched by its whole config, data path included;
the archive writes a data path in or beside the checkout (`../shared/data/...`) relative to the checkout, so a clone
in another folder restores it as its own path and the run still matches the protocol there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..utils import REPO_ROOT, atomic_path
from .store import RunStore, check_run_id, folder_files, run_file

ROW_FILE = "run.json"  # the run's row and metric rows; the other files are the run folder's own
WEIGHTS_SUFFIX = ".safetensors"  # final, resume and stage-1 weights: never archived (Explain needs a store's run)
PREDICTIONS_FILE = "predictions.npz"
CONFIG_FILE = "config.json"
CHECKOUT = "<checkout>"  # stands for the checkout's root in an archived data path


class RunArchive:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / ROW_FILE).is_file())

    def save(self, store: RunStore, run_id: str) -> bool:
        """Copy a finished run of `store` here (without weights); False when it is here already."""
        if (self.root / run_id / ROW_FILE).is_file():
            return False
        status = store.get_run(run_id)["status"]
        if status != "finished":
            raise RunError(f"run {run_id} is {status}: only finished runs are archived")
        exported = _with_config(store.export_run(run_id), _portable)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{run_id}.", suffix=".tmp"))
        try:
            for name, data in exported["files"].items():
                if name.endswith(WEIGHTS_SUFFIX):
                    continue
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
                if name == PREDICTIONS_FILE:
                    slim_predictions(tmp / name)
            row = {"run": exported["run"], "metrics": [list(m) for m in exported["metrics"]]}
            (tmp / ROW_FILE).write_text(json.dumps(row, indent=1))
            os.replace(tmp, self.root / run_id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def load(self, run_id: str) -> dict[str, Any]:
        """An archived run in `RunStore.export_run`'s form, checked: a plain id that is its folder's, a finished
        run whose config and metric rows read, plain files only with plain names. Anything else is a RunError
        naming the folder, before anything is written anywhere."""
        folder = self.root / check_run_id(run_id)
        row = self._row(run_id)
        run = row["run"]
        if run.get("run_id") != run_id:
            raise RunError(
                f"archived run {run_id} names itself {str(run.get('run_id'))[:80]!r} in its {ROW_FILE}: "
                "the archive is damaged or was edited; remove that folder"
            )
        if run.get("status") != "finished":
            raise RunError(
                f"archived run {run_id} is {str(run.get('status'))[:20]!r}: archives hold finished runs only"
            )
        metrics = row.get("metrics")
        if not isinstance(metrics, list) or not all(_is_metric_row(m, run_id) for m in metrics):
            raise RunError(f"archived run {run_id}: its metric rows in {ROW_FILE} are malformed; remove that folder")
        files = {name: data for name, data in folder_files(folder).items() if name != ROW_FILE}
        for name in files:
            run_file(folder, name)  # every name checked before the store writes any
        exported = {"run": run, "metrics": [tuple(m) for m in metrics], "files": files}
        try:
            return _with_config(exported, local_config)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RunError(
                f"archived run {run_id}: its config (in {ROW_FILE} or {CONFIG_FILE}) does not read; remove that folder"
            ) from None

    def _config(self, run_id: str) -> dict[str, Any]:
        try:
            return local_config(json.loads(self._row(run_id)["run"]["config"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RunError(
                f"archived run {run_id}: its config in {ROW_FILE} does not read; remove that folder"
            ) from None

    def _row(self, run_id: str) -> dict[str, Any]:
        path = self.root / run_id / ROW_FILE
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(row, dict) or not isinstance(row.get("run"), dict):
                raise ValueError("no run record")
            return row
        except (ValueError, OSError) as err:
            raise RunError(
                f"archived run {run_id}: {path} does not read ({type(err).__name__}); remove that folder"
            ) from None

    def restore(self, store: RunStore) -> list[str]:
        """Import every archived run that `store` lacks; returns their ids. A run the store has is left as it is."""
        restored = []
        for run_id in self.run_ids():
            if not store.has_run(run_id):
                store.import_run(self.load(run_id))
                restored.append(run_id)
        return restored

    def configs(self) -> dict[str, dict[str, Any]]:
        """Each archived run's config as this checkout reads it (`RunStore.find_runs` matches a whole config)."""
        return {
            run_id: self._config(run_id)  # the row alone: the files are read once, when a run is restored
            for run_id in self.run_ids()
        }


def _with_config(exported: dict[str, Any], change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """An exported run with `change` applied to its config, in its row and in its config.json alike."""
    run = {**exported["run"], "config": json.dumps(change(json.loads(exported["run"]["config"])))}
    config_file = json.dumps(change(json.loads(exported["files"][CONFIG_FILE])), indent=2).encode()
    return {**exported, "run": run, "files": {**exported["files"], CONFIG_FILE: config_file}}


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """The config with its data path written relative to the checkout, when the path is in or beside it. A protocol's
    path is resolved, so a folder beside the checkout that is a link (`../shared` -> elsewhere) is matched resolved."""
    path = config.get("data_path")
    if not path or not Path(path).is_absolute():
        return config
    links = [p for p in sorted(REPO_ROOT.parent.iterdir()) if p.is_symlink()]
    for beside in [REPO_ROOT.parent, *links]:  # as written, then through a linked folder beside the checkout
        if Path(path).is_relative_to(beside.resolve()):
            inside = Path(path).relative_to(beside.resolve())
            return {**config, "data_path": f"{CHECKOUT}/{os.path.relpath(beside / inside, REPO_ROOT)}"}
    return config


def local_config(config: dict[str, Any]) -> dict[str, Any]:
    """`_portable` undone in this checkout: the path as a protocol here resolves it."""
    path = config.get("data_path")
    if path and path.startswith(f"{CHECKOUT}/"):
        return {**config, "data_path": str((REPO_ROOT / path.removeprefix(f"{CHECKOUT}/")).resolve())}
    return config


def slim_predictions(path: Path, keep_validation_features: bool = False) -> None:
    """Drop the embeddings and head weights (most of a run's size); probabilities and scores stay, so Compare's
    charts and statistics still work (its embedding map and its re-scoring of a post-hoc rule do not, unless the
    run's weights are kept to compute them). `keep_validation_features` keeps the validation features and the head
    weights (a shipped model's familiarity check and tau-norm tuning, where its data set is not at hand)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["embeddings"] = np.zeros((0, 0), np.float16)
    if not keep_validation_features:
        arrays.update(val_embeddings=np.zeros((0, 0), np.float16), head_weight=np.zeros(0))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _is_metric_row(row: Any, run_id: str) -> bool:
    """(run_id, eval, class, metric, value) as the metrics table holds it."""
    return (
        isinstance(row, list)
        and len(row) == 5
        and row[0] == run_id
        and all(isinstance(v, str) for v in row[1:4])
        and (row[4] is None or isinstance(row[4], (int, float)))
    )

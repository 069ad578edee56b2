"""No silent wrong results: external sets scored whole, leakage refused, no stale cache, damaged weights
caught, runs that never lie about their state, a job worker that outlives a busy store."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imbal_core.checkpoint import load_checkpoint, save_checkpoint
from imbal_core.data import load_dataset
from imbal_core.engine import TrainConfig, train
from imbal_core.engine.evaluate import evaluate_run
from imbal_core.errors import DataError, RunError
from imbal_core.jobs import JobRunner
from imbal_core.runs import INTERRUPTED

from .conftest import TINY, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str], prefix: str) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{prefix}_{i:04d}.png")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from imbal_core.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("trust_store"))
    config = tiny_config()
    return store, train(config, store), config.load_data()


def test_an_external_set_is_scored_whole(finished_run, tmp_path):
    """A folder of unseen images (the run's own test images under new names) is scored image for image,
    not split 70/10/20 with only a fifth scored."""
    store, run_id, dataset = finished_run
    test = dataset.test
    _write_folder(tmp_path / "external", test.images, test.labels, dataset.class_names, "ext")
    metrics = evaluate_run(store, run_id, "folder", str(tmp_path / "external"), device="cpu")
    assert metrics["n_images"] == len(test) and metrics["n_overlap_excluded"] == 0
    assert int(np.sum(metrics["confusion"])) == len(test)
    assert "folder:all" in set(store.tidy([run_id])["eval"])


def test_training_images_in_an_external_set_are_refused_or_excluded(finished_run, tmp_path):
    """Renamed copies of training images are found by their pixels; refused by default, left out when asked."""
    store, run_id, dataset = finished_run
    kept = np.load(store.run_dir(run_id) / "kept_indices.npy")[:25]
    train_part, test = dataset.train.subset(kept), dataset.test
    folder = tmp_path / "leaky"
    _write_folder(folder, test.images, test.labels, dataset.class_names, "ext")
    _write_folder(folder, train_part.images, train_part.labels, dataset.class_names, "renamed")
    with pytest.raises(DataError, match=r"25 of the .* images .* trained or was selected on.*--overlap exclude"):
        evaluate_run(store, run_id, "folder", str(folder), device="cpu")
    metrics = evaluate_run(store, run_id, "folder", str(folder), device="cpu", overlap="exclude")
    assert metrics["n_overlap_excluded"] == 25 and metrics["n_images"] == len(test)
    with pytest.raises(DataError, match="trained or was selected on"):  # the same data set: every id overlaps
        evaluate_run(store, run_id, "synthetic", device="cpu", **TINY)


def test_a_changed_file_deep_in_the_data_folder_invalidates_the_cache(tmp_path):
    dataset = load_dataset("synthetic", **TINY)
    root = tmp_path / "data"
    _write_folder(root / "images", dataset.train.images[:60], dataset.train.labels[:60], dataset.class_names, "img")
    assert len(load_dataset("folder", path=root / "images").train) > 0  # cached now
    victim = next((root / "images").rglob("*.png"))
    victim.write_bytes(victim.read_bytes()[:40])  # truncated in place: the folders' own entries do not change
    with pytest.raises(DataError, match=f"{victim.name}.*cannot be decoded"):
        load_dataset("folder", path=root / "images")


def _flip_last_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))


def test_flipped_bytes_in_weights_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"model": {"w": torch.arange(64, dtype=torch.float32)}, "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3
    _flip_last_byte(path)  # still a valid safetensors file, one weight slightly different
    with pytest.raises(RunError, match=f"{path.name} is damaged"):
        load_checkpoint(path)


def test_the_shipped_weights_record_digests():
    from imbal_core.checkpoint import DIGEST_KEY, read_weights

    shipped = sorted(
        [
            *(ROOT / "pretrained" / "runs").glob("*/model.safetensors"),
            *(ROOT / "pretrained" / "generators").glob("*.safetensors"),
        ]
    )
    assert shipped
    for path in shipped:
        assert DIGEST_KEY in read_weights(path)[1], path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_whose_process_died_reads_as_interrupted_and_resumes(store):
    run_id = store.create_run(tiny_config().to_dict())
    store.set_status(run_id, "running")
    assert store.get_run(run_id)["status"] == "running"  # this process owns it and is alive
    store._write("UPDATE runs SET owner_pid=? WHERE run_id=?", (_dead_pid(), run_id))
    run = store.get_run(run_id)
    assert run["status"] == INTERRUPTED and f"--resume {run_id}" in run["error"]
    assert list(store.runs(status=INTERRUPTED)["run_id"]) == [run_id]
    assert store.runs(status="running").empty
    assert train(None, store, resume=run_id) == run_id
    assert store.get_run(run_id)["status"] == "finished"
    with pytest.raises(RunError, match="is finished; only"):
        train(None, store, resume=run_id)


def _start_cli_training(store_dir: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "imbal_core",
        "--store",
        str(store_dir),
        "train",
        "--epochs",
        "200",
        "--device",
        "cpu",
        "--data-option",
        "n_images=700",
        "--quiet",
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_training(store, process: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = store.runs()
        if not runs.empty and runs.iloc[0]["progress"] is not None:  # an epoch is done: it is in the loop
            return str(runs.iloc[0]["run_id"])
        assert process.poll() is None, process.communicate()
        time.sleep(0.3)
    process.kill()
    raise AssertionError("the CLI run did not start training")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_cli_run_never_looks_live(store, how):
    process = _start_cli_training(store.root)
    run_id = _wait_until_training(store, process)
    assert store.get_run(run_id)["status"] == "running"
    process.send_signal(getattr(signal, how))
    _, stderr = process.communicate(timeout=60)
    run = store.get_run(run_id)
    if how == "SIGKILL":
        assert run["status"] == INTERRUPTED
    else:  # a clean stop: marked stopped, and the resume command is printed
        assert process.returncode == 130 and run["status"] == "stopped"
        assert f"train --resume {run_id}" in stderr


def test_the_job_worker_survives_a_busy_store(store, monkeypatch):
    """ "database is locked" while it looks for work must not end the worker: the next job still runs."""
    failures = {"left": 2}
    real_runs = type(store).runs

    def flaky_runs(self, **filters):
        if filters.get("status") == "queued" and failures["left"] > 0:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return real_runs(self, **filters)

    monkeypatch.setattr(type(store), "runs", flaky_runs)
    runner = JobRunner(store)
    run_id = runner.submit(tiny_config())
    deadline = time.time() + 120
    while store.get_run(run_id)["status"] != "finished" and time.time() < deadline:
        time.sleep(0.3)
    assert failures["left"] == 0 and store.get_run(run_id)["status"] == "finished"
    assert isinstance(TrainConfig.from_dict(store.get_run(run_id)["config"]), TrainConfig)


def test_unrelated_images_with_the_same_file_names_are_not_taken_as_seen(finished_run, tmp_path):
    """Issue 37: folder-to-folder evaluation compared file names; 0001.png in two unrelated folders is two images.
    Only the pixels say an image was seen."""
    store, _, dataset = finished_run
    rng = np.random.default_rng(0)
    for name, images in (
        ("a", dataset.train.images),
        ("b", rng.integers(0, 256, dataset.train.images.shape, np.uint8)),
    ):
        _write_folder(tmp_path / name, images[:200], dataset.train.labels[:200], dataset.class_names, "img")
    run_id = train(tiny_config(data="folder", data_path=str(tmp_path / "a"), data_options={}), store)
    metrics = evaluate_run(store, run_id, "folder", str(tmp_path / "b"), device="cpu")  # same names, other pixels
    assert metrics["n_overlap_excluded"] == 0 and metrics["n_images"] == 200

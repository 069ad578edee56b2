"""The Ray executor on a local Ray cluster (2 CPUs): runs come back to the driver's store with the same results as
local training, workers read no data folder, and a killed worker is retried and resumes from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray package (requirements.txt)")

from imbal_core.executors import Job, LocalExecutor, RayExecutor, connect_ray  # noqa: E402
from imbal_core.runs import MODEL_FILE, RunStore  # noqa: E402
from imbal_core.utils import code_version  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    started = connect_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@contextmanager
def one_torch_thread():
    """Train here as each 1-CPU Ray task trains: with one torch thread (CPU float sums can differ in the last bit
    between thread counts)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def local_reference(config, store: RunStore) -> str:
    """The same config trained here, uninterrupted, with one torch thread."""
    with one_torch_thread():
        return LocalExecutor().run([Job(config)], store)[0].run_id


def same_results(store_a: RunStore, run_a: str, store_b: RunStore, run_b: str) -> None:
    assert store_a.get_run(run_a)["summary"] == store_b.get_run(run_b)["summary"]
    with (
        np.load(store_a.run_dir(run_a) / "predictions.npz") as a,
        np.load(store_b.run_dir(run_b) / "predictions.npz") as b,
    ):
        np.testing.assert_array_equal(a["probs"], b["probs"])


def image_folder(root: Path) -> Path:
    """A `folder` data set: 3 classes of 40 small PNGs each (one colour per class, plus noise)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(40):
            pixels = np.clip(rng.normal(60 + 70 * c, 30, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_ray_runs_come_back_to_the_driver_store(ray_cluster, tmp_path: Path):
    """Two runs in parallel on a folder data set that only the driver reads: finished in the driver's store with
    model, predictions and metrics, equal to local training; the workers could not have read the folder."""
    folder = image_folder(tmp_path / "images")
    configs = [tiny_config(data="folder", data_path=str(folder), data_options={}, epochs=2, seed=s) for s in (0, 1)]
    probe = tmp_path / "worker_probe.json"

    def probe_worker(event, attempt):  # in the worker: may it read the data folder? (32 px: not the data set it got)
        import imbal_core
        from imbal_core.data import load_dataset
        from imbal_core.errors import DataError

        try:
            load_dataset("folder", path=str(folder), image_size=32, use_cache=False)
            found = {"readable": True}
        except DataError as err:
            found = {"readable": False, "error": str(err)}
        probe.write_text(json.dumps({**found, "code": imbal_core.__file__}))

    store = RunStore(tmp_path / "driver")
    epochs_seen = []
    executor = RayExecutor(
        cpus_per_run=1,
        worker_hook=probe_worker,
        on_epoch=lambda job, run_id, info: epochs_seen.append((run_id, info["epoch"])),
    )
    outcomes = executor.run([Job(c) for c in configs], store, tag="ray-test")
    assert [o.status for o in outcomes] == ["finished", "finished"] and all(o.attempts == 1 for o in outcomes)
    for outcome in outcomes:
        run = store.get_run(outcome.run_id)
        assert run["status"] == "finished" and run["tag"] == "ray-test" and run["owner_pid"] is None
        assert run["code_version"] == code_version()  # the worker's, sent with its epochs (same checkout here)
        folder_files = {p.name for p in store.run_dir(outcome.run_id).iterdir()}
        assert {MODEL_FILE, "predictions.npz", "metrics.json", "last.safetensors"} <= folder_files
        assert len(store.tidy([outcome.run_id])) > 10  # metric rows, per class too
        assert (outcome.run_id, 2) in epochs_seen  # progress reached the driver while training
    assert json.loads(probe.read_text())["readable"] is False
    assert "outside the allowed data folders" in json.loads(probe.read_text())["error"]
    # The package the driver shipped, not this checkout (which pytest runs in, and Ray would put on the workers' path)
    assert not Path(json.loads(probe.read_text())["code"]).is_relative_to(ROOT)

    local = RunStore(tmp_path / "local")
    by_seed = {o.job.config.seed: o.run_id for o in outcomes}
    same_results(store, by_seed[0], local, local_reference(configs[0], local))


def test_no_more_runs_train_at_once_than_the_cluster_has_cpus(ray_cluster, tmp_path: Path):
    """Three 1-CPU runs on 2 CPUs: the third starts only after one has finished, and the driver's store says it is
    waiting meanwhile. (A task that waits in `ray.get` lends its CPU to the next task; the workers' waits for the
    checkpoint keeper must not, or all three train at once.)"""
    epoch_times = tmp_path / "epochs"
    epoch_times.mkdir()
    driver = RunStore(tmp_path / "driver")

    def note_epoch(event, attempt):  # in the worker; the sleep keeps each run long enough to meet a late starter
        task = ray.get_runtime_context().get_task_id()
        waiting = [
            run_id for run_id in driver.runs()["run_id"] if (driver.get_run(run_id)["progress"] or {}).get("waiting")
        ]
        (epoch_times / f"{task}-{event['epoch']}").write_text(json.dumps([time.time(), waiting]))
        time.sleep(5 if event["epoch"] < 2 else 0)

    configs = [tiny_config(epochs=3, seed=s) for s in (0, 1, 2)]
    outcomes = RayExecutor(worker_hook=note_epoch).run([Job(c) for c in configs], driver)
    assert [o.status for o in outcomes] == ["finished"] * 3
    assert not any("waiting" in driver.get_run(o.run_id)["progress"] for o in outcomes)
    waiting_seen = {run_id for note in epoch_times.iterdir() for run_id in json.loads(note.read_text())[1]}
    # (The run a worker has just started may still read as waiting for the second the driver takes to hear of it.)
    assert waiting_seen, "the store never said a run was waiting for a free CPU while two trained"
    spans: dict[str, list[float]] = {}  # Ray task -> times of its epochs
    for note in epoch_times.iterdir():
        spans.setdefault(note.name.split("-")[0], []).append(json.loads(note.read_text())[0])
    assert len(spans) == 3 and all(len(times) == 3 for times in spans.values())
    for times in spans.values():  # the runs between two of their epochs while this one was
        during = [task for task, t in spans.items() if min(t) <= max(times) and min(times) <= max(t)]
        assert len(during) <= 2, f"the runs of Ray tasks {during} trained at the same time on 2 CPUs"


def test_connecting_keeps_the_callers_sigterm_handler(ray_cluster):
    """ray.init makes SIGTERM exit the driver at once; the CLI's handler (stop like Ctrl-C: runs under way are marked
    stopped, the results file is written) must survive connecting."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        ray.shutdown()
        assert connect_ray(num_cpus=2)
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_connecting_refuses_code_changed_on_disk_since_the_command_started(ray_cluster, monkeypatch):
    """Ray ships the package as it is on disk when it connects: after a commit or an edit since the command started,
    its workers would run other code than the code version its runs record."""
    import functools

    from imbal_core.errors import ConfigError

    started_with = functools.cache(lambda: "a" * 40)
    started_with()
    started_with.__wrapped__ = lambda: "b" * 40  # what git says now
    monkeypatch.setattr("imbal_core.executors.code_version", started_with)
    ray.shutdown()
    with pytest.raises(ConfigError, match="changed on disk since this command started"):
        connect_ray(num_cpus=2)
    assert not ray.is_initialized()
    monkeypatch.undo()
    assert connect_ray(num_cpus=2)  # for the tests after this one


def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_cluster, tmp_path: Path):
    """The worker is SIGKILLed after its first epoch's checkpoint reached the driver's node; Ray retries the task,
    which restores that checkpoint and trains epochs 2 and 3 only: the same final metrics and predictions as an
    uninterrupted run."""
    config = tiny_config(epochs=3, seed=1)
    pid_file = tmp_path / "worker.pid"

    def wait_to_be_killed(event, attempt):  # in the worker
        if attempt == 1 and event["epoch"] == 0:
            pid_file.write_text(str(os.getpid()))
            time.sleep(300)

    def kill_worker():
        deadline = time.time() + 240
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_worker, daemon=True)
    killer.start()
    attempts_by_epoch = []
    store = RunStore(tmp_path / "driver")
    executor = RayExecutor(
        max_retries=2,
        worker_hook=wait_to_be_killed,
        on_epoch=lambda job, run_id, info: attempts_by_epoch.append((info["epoch"], info["attempt"])),
    )
    [outcome] = executor.run([Job(config)], store)
    killer.join(1)
    assert pid_file.exists(), "the worker never reached its first checkpoint"
    assert outcome.status == "finished" and outcome.attempts == 2
    assert attempts_by_epoch[0] == (1, 1) and attempts_by_epoch[-1] == (3, 2)
    assert (2, 1) not in attempts_by_epoch  # the first attempt died after epoch 1
    assert len(store.get_run(outcome.run_id)["progress"]["history"]) == 3

    local = RunStore(tmp_path / "local")
    same_results(store, outcome.run_id, local, local_reference(config, local))


def test_benchmark_and_sweep_on_ray_through_the_cli(ray_cluster, tmp_path: Path, capsys):
    """`benchmark --executor ray` (two runs at once) and `sweep --executor ray` into one store."""
    from imbal_core.cli import main

    protocol = tmp_path / "two.toml"
    tiny = (Path(__file__).parent / "protocols" / "tiny.toml").read_text()
    one_method = tiny.replace('methods = ["ce", "balanced_softmax"]', 'methods = ["ce"]')
    protocol.write_text(one_method.replace('other_references = ["balanced_softmax"]\n', ""))
    store, out = tmp_path / "store", tmp_path / "results"
    benchmark = f"--store {store} benchmark {protocol} --executor ray --out-dir {out} --quiet"
    assert main(benchmark.split()) == 0
    text = (out / "two.md").read_text()
    assert "executor: ray (local cluster; 1 CPU, 0 GPU per run; up to 3 retries)" in text and "| ce | 2 |" in text
    sweep = (
        f"--store {store} sweep --methods ce --seeds 3 --epochs 1 --batch-size 64 --data-option n_images=700 "
        "--device cpu --executor ray --quiet"
    )
    assert main(sweep.split()) == 0
    assert "sweep done: 1 finished, 0 failed" in capsys.readouterr().out
    runs = RunStore(store).runs()
    assert sorted(runs["status"]) == ["finished"] * 3 and sorted(runs["seed"]) == [0, 1, 3]


def test_a_stopped_run_resumes_on_ray(ray_cluster, tmp_path: Path):
    """A run stopped after its first epoch here continues on Ray from the driver's checkpoint (epoch 2 only)."""
    from imbal_core.engine import train

    config = tiny_config(epochs=2, seed=2)
    store = RunStore(tmp_path / "driver")
    stop = threading.Event()
    with one_torch_thread():
        run_id = train(
            config,
            store,
            stop_event=stop,
            progress=lambda e: stop.set() if e["event"] == "epoch" and e["epoch"] == 0 else None,
        )
    assert store.get_run(run_id)["status"] == "stopped"
    first_epoch = store.get_run(run_id)["progress"]["history"][0]
    epochs = []
    executor = RayExecutor(on_epoch=lambda job, rid, info: epochs.append(info["epoch"]))
    [outcome] = executor.run([Job(config, run_id, resume=True)], store)
    assert outcome.run_id == run_id and outcome.status == "finished" and 1 not in epochs
    history = store.get_run(run_id)["progress"]["history"]
    assert len(history) == 2 and history[0] == first_epoch
    local = RunStore(tmp_path / "local")
    same_results(store, run_id, local, local_reference(config, local))

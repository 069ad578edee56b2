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
import torch

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray package (requirements.txt)")

from imbal_core.engine.trainer import run_environments  # noqa: E402
from imbal_core.executors import Job, LocalExecutor, RayExecutor, connect_ray, waits_for_a_worker  # noqa: E402
from imbal_core.runs import MODEL_FILE, RunStore  # noqa: E402
from imbal_core.utils import code_version  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER_NICENESS = 3  # not Ray's default (15): the tests' cluster shows that --nice reaches the workers


@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster of 2 CPUs, connected from the checkout (as `python -m imbal_core` in it is): Ray would put the
    driver's current folder on the workers' path."""
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        started = connect_ray(num_cpus=2, niceness=WORKER_NICENESS)
    finally:
        os.chdir(here)
    yield
    if started:
        ray.shutdown()


def _json(text):
    return json.loads(text) if isinstance(text, str) else None


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
        [environment] = run_environments(store.run_dir(outcome.run_id))  # the worker's: 1 CPU, so 1 thread
        assert environment.startswith(f"torch {torch.__version__}, numpy {np.__version__}, ")
        assert environment.endswith(", threads 1")
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
    notes = tmp_path / "epochs"
    notes.mkdir()
    driver = RunStore(tmp_path / "driver")

    def note_epoch(event, attempt):  # in the worker; the sleep keeps each run long enough to meet a late starter
        runs = [driver.get_run(run_id) for run_id in driver.runs()["run_id"]]
        waiting = [r["run_id"] for r in runs if waits_for_a_worker(r["status"], r["progress"], r["owner_pid"])]
        (notes / f"{event['run_id']}@{event['epoch']}").write_text(json.dumps([time.time(), waiting]))
        time.sleep(5 if event["epoch"] < 2 else 0)

    configs = [tiny_config(epochs=3, seed=s) for s in (0, 1, 2)]
    outcomes = RayExecutor(worker_hook=note_epoch).run([Job(c) for c in configs], driver)
    assert [o.status for o in outcomes] == ["finished"] * 3
    spans: dict[str, list[float]] = {}  # run -> times of its epochs
    waiting_seen = []  # (run noting, its epoch, the runs waiting then)
    for note in notes.iterdir():
        run_id, epoch = note.name.split("@")
        noted_at, waiting = json.loads(note.read_text())
        spans.setdefault(run_id, []).append(noted_at)
        waiting_seen.append((run_id, int(epoch), waiting))
    assert len(spans) == 3 and all(len(times) == 3 for times in spans.values())
    last = max(spans, key=lambda run_id: min(spans[run_id]))  # the run that started after one had finished
    assert any(waiting == [last] for _, _, waiting in waiting_seen), waiting_seen
    # A started run no longer waits (from its second epoch on: its start has surely reached the driver by then).
    assert not any(run_id in waiting for run_id, epoch, waiting in waiting_seen if epoch >= 1), waiting_seen
    assert not any("waiting" in driver.get_run(o.run_id)["progress"] for o in outcomes)
    for times in spans.values():  # the runs between two of their epochs while this one was
        during = [task for task, t in spans.items() if min(t) <= max(times) and min(times) <= max(t)]
        assert len(during) <= 2, f"the runs of Ray tasks {during} trained at the same time on 2 CPUs"


def test_workers_run_at_the_niceness_asked_for(ray_cluster):
    """Issue 40: a local cluster's workers run at the niceness given (`--nice`; Ray's default 15 made a Ray run
    crawl beside local trainings); a running cluster's cannot be changed from here, which is said."""
    from imbal_core.errors import ConfigError

    niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    assert niceness == min(os.nice(0) + WORKER_NICENESS, 19)  # on top of the lab's own (e.g. under `nice`)
    assert "RAY_worker_niceness" not in os.environ  # set for the raylet's start only
    with pytest.raises(ConfigError, match="a running cluster keeps its own"):
        connect_ray(address="127.0.0.1:6379", niceness=0)
    with pytest.raises(ConfigError, match="0 \\(this process's priority\\) to 19"):
        connect_ray(niceness=20)


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


def test_ctrl_c_stops_the_runs_under_way_and_the_waiting_ones(ray_cluster, tmp_path: Path):
    """Ctrl-C (here: raised by the driver's epoch callback) with two runs training and one waiting on 2 CPUs: each
    is marked stopped, saying whether it had started; none is left marked waiting; the started ones resume."""
    store = RunStore(tmp_path / "driver")

    def interrupt(job, run_id, info):  # once both training runs have an epoch in the store
        if sum(bool(p) and p.get("epoch", 0) >= 1 for p in store.runs()["progress"].map(_json)) == 2:
            raise KeyboardInterrupt

    def slow_down(event, attempt):  # in the worker: the runs stay in flight until the interrupt
        time.sleep(5)

    configs = [tiny_config(epochs=3, seed=s) for s in (0, 1, 2)]
    with pytest.raises(KeyboardInterrupt):
        RayExecutor(on_epoch=interrupt, worker_hook=slow_down).run([Job(c) for c in configs], store)
    runs = [store.get_run(run_id) for run_id in store.runs()["run_id"]]
    assert [r["status"] for r in runs] == ["stopped"] * 3
    never_started = [r for r in runs if "before a Ray worker started it" in r["error"]]
    assert len(never_started) == 1 and not never_started[0]["progress"]
    assert not any("waiting" in (r["progress"] or {}) for r in runs)
    trained = [r for r in runs if r not in never_started]
    assert all("resume it from its last completed epoch" in r["error"] for r in trained)
    assert all(r["progress"]["epoch"] >= 1 for r in trained)  # the drained epochs are kept


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
    # The first attempt died after epoch 1; the retry's start reports no epoch it did not train.
    assert attempts_by_epoch == [(1, 1), (2, 2), (3, 2)]
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

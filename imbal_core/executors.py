"""Where runs train: one after another in this process (`LocalExecutor`), or as tasks on a Ray cluster
(`RayExecutor`). Both take jobs (a config, and the run in the driver's store to start or resume) and return each
run's outcome; the driver's run store is written by the driver only.

Ray, per run: one task with its own CPU/GPU request. The driver loads each data set once and puts it in Ray's object
store; a worker takes it from there (`data.provide_datasets`), so it needs no data folder (it may read none: its
allowed data folders are its own empty temp folder). The worker trains into a temporary store of its own. After each
epoch it sends the run folder's changed files (last.safetensors, best.safetensors, ...) to a checkpoint keeper, an
actor on the driver's node; the driver copies them into its run folder, so an interrupted benchmark resumes too. A
worker that dies (killed, out of memory, node lost) is retried by Ray; the retry first restores the keeper's latest
checkpoint and resumes from it, which gives the same final metrics as an uninterrupted run (the trainer seeds each
epoch from (seed, epoch)). At the end the task returns the run's row, metrics and files; the driver imports them.

Ray is optional: importing this module does not import it.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import RunInterrupted, TrainConfig, train
from .engine.trainer import ProgressFn
from .errors import ConfigError
from .runs import RunStore
from .utils import DATA_ROOTS_VARIABLE, PACKAGE_ROOT, code_version

EXECUTORS = ("local", "ray")
TAKEN_BACK = ("config.json",)  # files a worker does not send back per epoch (the driver has them)


@dataclass
class Job:
    """One run to train: a new one (run_id None), or a run of the driver's store to start or continue."""

    config: TrainConfig
    run_id: str | None = None  # set by the executor when it creates the run
    resume: bool = False  # continue a stopped, interrupted or failed run (from its last completed epoch)
    started: bool = (
        False  # set by the executor when it begins (Ray: submits) the run; an interrupt may leave it unfinished
    )


@dataclass
class Outcome:
    job: Job
    run_id: str
    status: str  # finished, failed or stopped
    error: str | None = None
    attempts: int = 1  # Ray: how many times the task started (> 1 after a worker died)


DoneFn = Callable[[Outcome], None]
EpochFn = Callable[[Job, str, dict[str, Any]], None]  # (job, run_id, {"epoch", "epochs", "history", ...})


class LocalExecutor:
    """Trains the jobs here, one at a time. `progress(job)` gives a context manager yielding the progress function
    of that job's run (e.g. a progress bar)."""

    name = description = "local"

    def __init__(
        self,
        progress: Callable[[Job], AbstractContextManager[ProgressFn | None]] | None = None,
        stop_after_seconds: float | None = None,
    ) -> None:
        if stop_after_seconds is not None and stop_after_seconds <= 0:
            raise ConfigError(f"stop_after_seconds must be > 0 (a time budget), got {stop_after_seconds}")
        self.progress = progress or (lambda job: nullcontext(None))
        self.stop_after_seconds = stop_after_seconds  # start no job after this (the one under way finishes)

    def run(self, jobs: list[Job], store: RunStore, tag: str = "", on_done: DoneFn | None = None) -> list[Outcome]:
        outcomes = []
        deadline = time.time() + self.stop_after_seconds if self.stop_after_seconds is not None else None
        for job in jobs:
            if deadline is not None and time.time() > deadline:
                break  # the jobs left are not started: the next call runs them
            if job.run_id is None:  # the job names its run from now on (an interrupted benchmark still lists it)
                job.run_id = store.create_run(job.config.to_dict(), tag=tag)
            run_id = job.run_id
            job.started = True
            error = None
            with self.progress(job) as progress:
                try:
                    if job.resume:
                        train(None, store, progress=progress, resume=run_id)  # type: ignore[arg-type]
                    else:
                        train(job.config, store, progress=progress, run_id=run_id)
                except RunInterrupted:
                    raise  # Ctrl-C: the run is stopped (resumable); the whole command ends
                except Exception as err:  # the run is marked failed; the others go on
                    error = f"{type(err).__name__}: {err}"
            outcome = Outcome(job, run_id, store.get_run(run_id)["status"], error)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
        return outcomes


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


RAY_WORKER_NICENESS = 15  # Ray's own default: its workers yield the CPU to any other process of this machine
NICENESS_VARIABLE = "RAY_worker_niceness"  # Ray's spelling: the raylet that ray.init starts reads it


def connect_ray(address: str | None = None, num_cpus: int | None = None, niceness: int | None = None) -> bool:
    """Connect to the Ray cluster at `address`, or start a local one (`num_cpus`, default all cores). Workers get this
    process's code through Ray (the imbal_core package is shipped as a py_module), so cluster nodes need the Python
    packages of requirements.txt, not a checkout. Returns whether this call connected (False: already connected).

    A local cluster's workers run `niceness` below this process's priority (Ray's default, 15, when None; niceness
    adds up and stops at 19): at 15 a run on Ray barely moves while local trainings hold the cores. A running
    cluster keeps the niceness it was started with."""
    if niceness is not None and not 0 <= niceness <= 19:
        raise ConfigError(f"a worker niceness is 0 (this process's priority) to 19 (lowest); got {niceness}")
    if niceness is not None and address:
        raise ConfigError(
            "--nice sets the priority of a local cluster's workers; a running cluster keeps its own: start it with "
            "`RAY_worker_niceness=N ray start --head`, or leave out --nice"
        )
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs the ray package: `.venv/bin/pip install -r requirements.txt` (or "
            "`pip install ray`); or use --executor local"
        ) from None
    if ray.is_initialized():
        return False
    code_version()  # read (once per process) as Ray copies the package: the version the runs on Ray record
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    # The empty working_dir keeps the driver's current folder off the workers' sys.path, where Ray puts it otherwise:
    # a driver started in the checkout had its workers import the checkout as it was when each worker started (a
    # commit during a benchmark reached the runs that started after it), not the package shipped here.
    with tempfile.TemporaryDirectory(prefix="imbal-ray-") as empty:
        runtime_env = {"py_modules": [str(PACKAGE_ROOT)], "working_dir": empty, "excludes": ["__pycache__", "*.pyc"]}
        niceness_before = os.environ.get(NICENESS_VARIABLE)
        if niceness is not None:
            os.environ[NICENESS_VARIABLE] = str(niceness)
        try:
            _init_ray(ray, address, num_cpus, runtime_env)
        finally:
            if niceness is not None:
                os.environ.pop(NICENESS_VARIABLE)
                if niceness_before is not None:
                    os.environ[NICENESS_VARIABLE] = niceness_before
            # ray.init makes SIGTERM exit at once; the caller's handler (the CLI's: stop like Ctrl-C, so the runs
            # under way are marked stopped and resume) is kept.
            if sigterm_handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, sigterm_handler)
    return True


def _init_ray(ray: Any, address: str | None, num_cpus: int | None, runtime_env: dict[str, Any]) -> None:
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING")
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env, logging_level="WARNING")
    except ConnectionError as err:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address!r} ({err}); start one with `ray start --head` on "
            "the head machine and give the address it prints (host:6379), or leave out --address for "
            "a local one"
        ) from None


class RayExecutor:
    """Runs each job as a Ray task (`cpus_per_run`, `gpus_per_run`), retried up to `max_retries` times when its
    worker dies. `worker_hook(event, attempt)` is called in the worker after each epoch's checkpoint has reached the
    keeper (tests use it to kill a worker at a known point)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        max_retries: int = 3,
        worker_hook: Callable[[dict[str, Any], int], None] | None = None,
        on_epoch: EpochFn | None = None,
        niceness: int | None = None,
    ) -> None:
        if cpus_per_run <= 0 or gpus_per_run < 0 or max_retries < 0:
            raise ConfigError(
                f"a Ray run needs cpus_per_run > 0, gpus_per_run >= 0 and max_retries >= 0; got "
                f"{cpus_per_run}, {gpus_per_run}, {max_retries}"
            )
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_run, self.gpus_per_run, self.max_retries = cpus_per_run, gpus_per_run, max_retries
        self.worker_hook, self.on_epoch, self.niceness = worker_hook, on_epoch, niceness

    @property
    def description(self) -> str:
        return (
            f"ray ({self.address or 'local cluster'}; {self.cpus_per_run:g} CPU, {self.gpus_per_run:g} GPU per run; "
            f"up to {self.max_retries} retries"
            + ("" if self.niceness is None else f"; workers at niceness +{self.niceness}")
            + ")"
        )

    def run(self, jobs: list[Job], store: RunStore, tag: str = "", on_done: DoneFn | None = None) -> list[Outcome]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not jobs:
            return []
        started = connect_ray(self.address, self.num_cpus, self.niceness)
        keeper = None
        pending: dict[Any, tuple[Job, str]] = {}
        outcomes: list[Outcome] = []
        try:
            self._check_resources(ray)
            here = ray.get_runtime_context().get_node_id()  # the keeper lives beside the driver's store
            keeper = (
                ray.remote(CheckpointKeeper)
                .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
                .remote()
            )
            datasets = self._put_datasets(ray, jobs)
            task = ray.remote(train_in_worker)
            for job in jobs:
                if job.run_id is None:  # as in LocalExecutor: the job names its run from now on
                    job.run_id = store.create_run(job.config.to_dict(), tag=tag)
                run_id = job.run_id
                job.started = True
                store.set_status(run_id, "running")  # owned by this driver while the cluster trains it
                _set_waiting(store, run_id, True)  # until a worker starts it: the cluster may have fewer CPUs than runs
                # A resumed run continues from its folder's checkpoint (in the object store, which can spill to disk).
                files = _checkpoint_files(store.run_dir(run_id))
                ref = task.options(
                    num_cpus=self.cpus_per_run,
                    num_gpus=self.gpus_per_run,
                    max_retries=self.max_retries,
                    name=f"imbal_core train {run_id}",
                ).remote(
                    run_id,
                    job.config.to_dict(),
                    tag,
                    datasets[_data_key(job.config)],
                    ray.put(files),
                    keeper,
                    generator_files(job.config),
                    self.worker_hook,
                )
                pending[ref] = (job, run_id)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                self._drain(ray, keeper, store, pending)
                for ref in ready:
                    job, run_id = pending.pop(ref)
                    outcome = self._collect(ray, ref, job, run_id, store)
                    ray.get(keeper.forget.remote(run_id))
                    outcomes.append(outcome)
                    if on_done is not None:
                        on_done(outcome)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            if keeper is not None:  # all the keeper holds: a Ctrl-C inside a drain loses what that drain took
                self._drain(ray, keeper, store, pending, everything=True)
            for _, run_id in pending.values():
                if _set_waiting(store, run_id, False):
                    error = "stopped (Ctrl-C) before a Ray worker started it; run the same command again to train it"
                else:
                    error = (
                        "interrupted (Ctrl-C) while it trained on Ray; run the same command again to resume it "
                        "from its last completed epoch"
                    )
                store.set_status(run_id, "stopped", error=error)
            raise
        finally:
            if keeper is not None:
                ray.kill(keeper)
            if started:
                ray.shutdown()
        return outcomes

    def _check_resources(self, ray: Any) -> None:
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        if self.cpus_per_run > cpus or self.gpus_per_run > gpus:
            raise ConfigError(
                f"each run asks for {self.cpus_per_run:g} CPU(s) and {self.gpus_per_run:g} GPU(s), but "
                f"the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s) in all; lower --cpus-per-run / "
                "--gpus-per-run or add nodes"
            )

    @staticmethod
    def _put_datasets(ray: Any, jobs: list[Job]) -> dict[str, Any]:
        """Each distinct data set, loaded once here and put in the object store (before any task or colour)."""
        from .data import load_dataset

        refs: dict[str, Any] = {}
        for job in jobs:
            c = job.config
            key = _data_key(c)
            if key not in refs:
                refs[key] = ray.put(
                    load_dataset(
                        c.data, path=c.data_path, image_size=c.image_size, split_seed=c.split_seed, **c.data_options
                    )
                )
        return refs

    def _drain(
        self, ray: Any, keeper: Any, store: RunStore, pending: dict[Any, tuple[Job, str]], everything: bool = False
    ) -> None:
        """Copy the checkpoints workers sent since the last call (`everything`: all the keeper holds) into the driver's
        run folders, with progress; then tell `on_epoch` (not for `everything`), so the store is written first."""
        jobs = {run_id: job for job, run_id in pending.values()}
        epochs = []
        for run_id, update in ray.get(keeper.drain.remote(everything)).items():
            _write_files(store.run_dir(run_id), update["files"])
            if update["started"]:
                _set_waiting(store, run_id, False)
            if update["progress"]:
                store.set_progress(run_id, update["progress"])
                epochs.append((run_id, update))
            # The code this driver shipped (connect_ray), once a worker started or trained the run with it; not at
            # submission, because a submitted run may wait in the queue past this driver's end and never train under it.
            store.record_code_version(run_id, code_version())
        if self.on_epoch is None or everything:
            return
        for run_id, update in epochs:
            if run_id in jobs:
                self.on_epoch(jobs[run_id], run_id, {**update["progress"], **update["info"]})

    @staticmethod
    def _collect(ray: Any, ref: Any, job: Job, run_id: str, store: RunStore) -> Outcome:
        try:
            exported = ray.get(ref)
        except ray.exceptions.RayError as err:  # retries used up, cancelled, or a failure outside training
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            error = f"{type(err).__name__} on Ray: {first_line}"
            store.set_status(run_id, "failed", error=error)
            return Outcome(job, run_id, "failed", error)
        store.import_run(exported)
        run = exported["run"]
        return Outcome(
            job, run_id, run["status"], run["error"] if run["status"] == "failed" else None, exported["attempt"]
        )


class CheckpointKeeper:
    """A Ray actor on the driver's node: the latest checkpoint files of every run in flight, for retries, and what
    changed since the driver last asked (`drain`)."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}
        self.changed: dict[str, set[str]] = {}  # runs with an epoch saved since the last drain: their new files
        self.started: set[str] = set()  # runs a worker started (or retried) since the last drain
        self.progress: dict[str, Any] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, int] = {}

    def start(self, run_id: str, info: dict[str, Any]) -> tuple[int, dict[str, bytes]]:
        """A task (or its retry) starts, on the worker `info` names: its attempt number and the latest files a worker
        sent (none yet: {})."""
        self.attempts[run_id] = self.attempts.get(run_id, 0) + 1
        self.started.add(run_id)
        self.info[run_id] = {**info, "attempt": self.attempts[run_id]}
        return self.attempts[run_id], dict(self.files.get(run_id, {}))

    def save(self, run_id: str, files: dict[str, bytes], progress: Any, info: dict[str, Any]) -> None:
        self.files.setdefault(run_id, {}).update(files)
        self.changed.setdefault(run_id, set()).update(files)
        self.progress[run_id], self.info[run_id] = progress, info

    def drain(self, everything: bool = False) -> dict[str, dict[str, Any]]:
        """Per run: the files, progress (None: no epoch saved) and start since the last drain; or, with `everything`,
        the latest of all of them for every run started so far."""

        def files(run_id: str) -> dict[str, bytes]:
            names = self.files.get(run_id, {}) if everything else self.changed.get(run_id, ())
            return {name: self.files[run_id][name] for name in names}

        runs = set(self.attempts) if everything else set(self.changed) | self.started
        out = {
            run_id: {
                "files": files(run_id),
                "progress": self.progress.get(run_id) if everything or run_id in self.changed else None,
                "info": self.info.get(run_id, {}),
                "started": everything or run_id in self.started,
            }
            for run_id in runs
        }
        self.changed, self.started = {}, set()
        return out

    def forget(self, run_id: str) -> None:
        for table in (self.files, self.changed, self.progress, self.info, self.attempts):
            table.pop(run_id, None)
        self.started.discard(run_id)


def train_in_worker(
    run_id: str,
    config: dict[str, Any],
    tag: str,
    dataset: Any,
    start_files: dict[str, bytes],
    keeper: Any,
    generators: dict[str, bytes],
    hook: Callable[[dict[str, Any], int], None] | None,
) -> dict[str, Any]:
    """The Ray task: train one run in a temporary store of this worker and return it (`RunStore.export_run`).

    It resumes from the keeper's latest checkpoint of the run (a retry after this task's worker died), else from
    `start_files` (the driver's checkpoint of a stopped or interrupted run; none for a new run)."""
    import ray
    import torch

    from .data import provide_datasets

    worker = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    attempt, kept = _get_holding_cpus(ray, keeper.start.remote(run_id, worker))
    files = {**start_files, **kept}  # what a dead attempt sent replaces what it started from
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    with tempfile.TemporaryDirectory(prefix="imbal-run-") as home, _worker_home(Path(home)):
        _write_files(Path(home) / "generators", generators)
        store = RunStore(Path(home) / "store")
        store.create_run(config, tag=tag, run_id=run_id)
        folder = store.run_dir(run_id)
        _write_files(folder, files)
        sent = _signatures(folder)

        def progress(event: dict[str, Any]) -> None:
            nonlocal sent
            if event["event"] != "epoch":
                return
            now = _signatures(folder)
            changed = {
                name: (folder / name).read_bytes()
                for name, signature in now.items()
                if sent.get(name) != signature and name not in TAKEN_BACK
            }
            info = {**worker, "attempt": attempt, "time": time.time()}
            _get_holding_cpus(ray, keeper.save.remote(run_id, changed, store.get_run(run_id)["progress"], info))
            sent = now
            if hook is not None:
                hook(event, attempt)

        train_config = TrainConfig.from_dict(config)
        key = _data_key(train_config)
        # A failure is marked in the store with its error, and goes back like a finished run.
        with provide_datasets({key: _writable(dataset)}), suppress(Exception):
            train(train_config, store, progress=progress, run_id=run_id)
        exported = store.export_run(run_id)
    exported["attempt"] = attempt
    return exported


def _set_waiting(store: RunStore, run_id: str, waiting: bool) -> bool:
    """Mark a submitted run as waiting for a Ray worker, or clear the mark; whether it was marked before. The mark
    is this driver's process id, so a run the driver no longer owns (it ended; the run was resumed elsewhere) never
    reads as waiting (`waits_for_a_worker`)."""
    progress = dict(store.get_run(run_id)["progress"] or {})
    was = "waiting" in progress
    progress.pop("waiting", None)
    if waiting or was:
        store.set_progress(run_id, {**progress, "waiting": os.getpid()} if waiting else progress)
    return was


def waits_for_a_worker(status: str, progress: dict[str, Any] | None, owner_pid: Any) -> bool:
    """Whether a run is submitted to Ray by the driver that owns it and no worker has started it yet."""
    return status == "running" and (progress or {}).get("waiting") == owner_pid


def _get_holding_cpus(ray: Any, ref: Any) -> Any:
    """`ray.get` in a task that keeps the task's CPUs while it waits. Ray lends the CPUs of a task whose main thread
    blocks in `ray.get` to other tasks (so that nested tasks cannot deadlock) and takes them back after, over the limit:
    each wait for the keeper would start one more run than the cluster has CPUs. A wait in another thread lends
    nothing (Ray's WorkerContext::ShouldReleaseResourcesOnBlockingCalls)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ray.get, ref).result()


def generator_files(config: TrainConfig) -> dict[str, bytes]:
    """The generator files (AdaIN, diffusion) the run's settings name, by file name: a worker finds them in its own
    lab home. A setting that names no generator is left alone."""
    from .errors import ImbalLabError
    from .synth.generators import GENERATOR_KINDS, resolve_generator

    found = {}
    for value in config.method_settings.values():
        if not isinstance(value, str) or not value:
            continue
        for kind in GENERATOR_KINDS:
            try:
                path = resolve_generator(value, kind)
            except ImbalLabError:
                continue
            found[path.name] = path.read_bytes()
            break
    return found


def _data_key(config: TrainConfig) -> str:
    from .data import dataset_key

    return dataset_key(config.data, config.data_path, config.image_size, config.split_seed, config.data_options)


def _writable(dataset: Any) -> Any:
    """The object store hands out read-only arrays; training wants its own."""
    from .data import ImageDataset, Split

    splits = {
        name: Split(s.images.copy(), s.labels.copy(), s.ids.copy(), s.metadata.copy())
        for name, s in dataset.splits.items()
    }
    return ImageDataset(dataset.name, list(dataset.class_names), splits, dataset.description)


@contextmanager
def _worker_home(home: Path) -> Iterator[None]:
    """This task's lab home (generators, caches) is `home`, and the only folder data may be read from."""
    saved = {key: os.environ.get(key) for key in ("IMBAL_LAB_HOME", DATA_ROOTS_VARIABLE)}
    os.environ["IMBAL_LAB_HOME"] = str(home)
    os.environ[DATA_ROOTS_VARIABLE] = str(home / "no-data")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _signatures(folder: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()}


def _checkpoint_files(folder: Path) -> dict[str, bytes]:
    """What a run folder holds that training resumes from (nothing for a new run)."""
    if not (folder / "last.safetensors").exists():
        return {}
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file() and f.name not in TAKEN_BACK}


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    from .utils import atomic_path

    for name, data in files.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(data)

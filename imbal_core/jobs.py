"""Background jobs for the app: training runs (a queue in the run store, one worker thread) and
generator trainings, AdaIN or diffusion (status files beside the generators).

The store is the source of truth (status "queued" -> "running" -> "finished"/"stopped"/"failed",
progress as JSON), so a page reload or a second browser tab sees the same jobs, and a job left
"running" by a server that died reads back as "interrupted" and can be resumed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from .engine import TrainConfig, train
from .engine.trainer import RESUMABLE
from .errors import ConfigError
from .runs import RunStore
from .synth.generators import GENERATOR_KINDS, GeneratorConfig, check_name, train_generator, user_generator_dir
from .utils import read_json, write_json

STEP_PROGRESS_SECONDS = 1.0  # at most one step-progress write per second
RETRY_SECONDS = 2.0  # the worker's wait when the queue is empty or the store was busy
logger = logging.getLogger(__name__)


class JobRunner:
    """Runs queued runs of one store one at a time, outside the Streamlit script thread."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # A run marked running by this very process id before this runner existed belongs to an earlier
        # process that had the same id (a restarted container): it cannot be training now.
        running = store.runs(status="running")
        for run_id in running.loc[running["owner_pid"] == os.getpid(), "run_id"]:
            store.set_status(run_id, "stopped", error="the app restarted while this run was training; resume it")
        self._thread = threading.Thread(target=self._work, name="imbal-lab-jobs", daemon=True)
        self._thread.start()

    def submit(self, config: TrainConfig, tag: str = "") -> str:
        config.check_ready()
        run_id = self.store.create_run(config.to_dict(), tag=tag)
        self._wake.set()
        return run_id

    def resume(self, run_id: str) -> None:
        """Queue a stopped or interrupted run again; it continues from its last completed epoch."""
        status = self.store.get_run(run_id)["status"]
        if status not in RESUMABLE:
            raise ConfigError(f"run {run_id} is {status}; only {', '.join(RESUMABLE)} runs can be resumed")
        self.store.set_status(run_id, "queued")
        self._wake.set()

    def can_stop(self, run_id: str) -> bool:
        """Whether `stop` reaches the run: one this runner trains or has queued, not one another process trains (a
        command-line run or sweep on the same store)."""
        with self._lock:
            if run_id in self._stops:
                return True
        return self.store.get_run(run_id)["status"] == "queued"

    def stop(self, run_id: str) -> None:
        with self._lock:
            event = self._stops.get(run_id)
        if event is not None:
            event.set()
        elif self.store.get_run(run_id)["status"] == "queued":
            self.store.set_status(run_id, "stopped", error="stopped before it started")

    def _next_queued(self) -> str | None:
        queued = self.store.runs(status="queued")
        return None if queued.empty else str(queued.sort_values("created")["run_id"].iloc[0])

    def _work(self) -> None:
        while True:
            try:
                run_id = self._next_queued()
                if run_id is not None:
                    self._run(run_id)
                    continue
            except Exception:  # noqa: BLE001 - e.g. "database is locked": the worker must outlive it
                logger.warning("job worker: store error, retrying in %.0f s\n%s", RETRY_SECONDS, traceback.format_exc())
            self._wake.wait(timeout=RETRY_SECONDS)
            self._wake.clear()

    def _run(self, run_id: str) -> None:
        stop = threading.Event()
        with self._lock:
            self._stops[run_id] = stop
        last_write = 0.0

        def progress(event: dict) -> None:
            nonlocal last_write
            if event["event"] == "step" and time.time() - last_write >= STEP_PROGRESS_SECONDS:
                try:
                    state = dict(self.store.get_run(run_id)["progress"] or {})
                    state["step"] = {
                        k: event[k]
                        for k in ("stage", "epoch", "epochs", "step", "steps", "loss", "seconds", "images_per_second")
                    }
                    self.store.set_progress(run_id, state)
                except sqlite3.OperationalError:  # a busy store skips one progress line, never the run
                    logger.warning("job %s: step progress not written (store busy)", run_id)
                last_write = time.time()

        try:
            run = self.store.get_run(run_id)
            if run["status"] != "queued":  # stopped while it waited
                return
            config = TrainConfig.from_dict(run["config"])
            train(config, self.store, progress=progress, stop_event=stop, run_id=run_id)
        except Exception:  # noqa: BLE001 - the error is on the job's card; the worker keeps going
            error = traceback.format_exc(limit=3)
            try:
                if self.store.get_run(run_id)["status"] != "failed":
                    self.store.set_status(run_id, "failed", error=error)
            except sqlite3.OperationalError:  # the store stayed busy through its retries: say so in the log
                logger.error("job %s failed and could not be marked failed (store busy):\n%s", run_id, error)
        finally:
            with self._lock:
                self._stops.pop(run_id, None)


def progress_line(step: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """A running run's progress in words: stage, epoch, step, loss, images per second and the time left, estimated
    from this epoch's steps so far and the finished epochs' times (validation included)."""
    done, steps, epochs = step["step"], step["steps"], step["epochs"]
    line = f"{step['stage']}: epoch {step['epoch'] + 1}/{epochs}, step {done}/{steps}, loss {step['loss']:.3f}"
    if "seconds" not in step:  # written by an older version of the app
        return line
    if done == 1 and not history:  # the first step carries the start-up cost: no pace to go by yet
        return f"{line} · timing the first steps"
    per_step = step["seconds"] / done
    per_epoch = float(np.mean([h["seconds"] for h in history])) if history else per_step * steps
    left = (steps - done) * per_step + (epochs - step["epoch"] - 1) * per_epoch
    return f"{line} · {step['images_per_second']:,.0f} images/s · about {duration_text(left)} left"


def duration_text(seconds: float) -> str:
    """45 s, 3 min, 1 h 10 min."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class GeneratorJobs:
    """Generator trainings started from the app (AdaIN or diffusion): one at a time in a background thread.

    Status lives beside the generator as <name>.status.json (running -> finished/stopped/failed, with
    the latest step), so a reload shows it; a "running" status left by a dead server process
    becomes "stopped", and the generator of its last completed epoch stays usable and resumable.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else user_generator_dir()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for status in self.statuses():
            if status["status"] == "running":
                self._write(
                    status["name"],
                    {
                        **status,
                        "status": "stopped",
                        "error": "the app stopped while this generator was training; resume it",
                    },
                )

    def _status_path(self, name: str) -> Path:
        return self.folder / f"{name}.status.json"

    def _write(self, name: str, status: dict) -> None:
        write_json(self._status_path(name), status)

    def statuses(self, kind: str | None = None) -> list[dict]:
        """Newest first."""
        paths = sorted(self.folder.glob("*.status.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        found = [read_json(p) for p in paths]
        return [s for s in found if kind is None or s.get("kind", "adain") == kind]

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: GeneratorConfig, name: str, resume: bool = False) -> None:
        check_name(name)
        with self._lock:
            if self.busy():
                raise ConfigError("a generator is already training; stop it or wait for it to finish")
            if not resume and (self.folder / f"{name}.safetensors").exists():
                raise ConfigError(f"a generator named {name!r} exists; choose another name or resume it")
            self._stop = threading.Event()
            status = {
                "name": name,
                "kind": config.kind,
                "status": "running",
                "config": config.to_dict(),
                "error": None,
                "step": None,
                "started": time.time(),
            }
            self._write(name, status)
            self._thread = threading.Thread(
                target=self._train, args=(config, name, resume, status), name="imbal-lab-generator", daemon=True
            )
            self._thread.start()

    def resume(self, status: dict) -> None:
        """Continue a stopped training from its status record."""
        config_class = GENERATOR_KINDS.get(status.get("kind", "adain")).config_class
        self.start(config_class.from_dict(status["config"]), status["name"], resume=True)

    def stop(self) -> None:
        self._stop.set()

    def _train(self, config: GeneratorConfig, name: str, resume: bool, status: dict) -> None:
        last_write = 0.0

        def progress(event: dict) -> None:
            nonlocal last_write
            if event["event"] == "step" and time.time() - last_write >= STEP_PROGRESS_SECONDS:
                status["step"] = {k: event[k] for k in ("epoch", "epochs", "step", "steps", "phase", "loss")}
                self._write(name, status)
                last_write = time.time()

        try:
            train_generator(config, name, self.folder, progress, self._stop, resume)
            status["status"] = "stopped" if self._stop.is_set() else "finished"
        except Exception as err:  # noqa: BLE001 - shown on the page; the app keeps going
            status.update(status="failed", error=f"{type(err).__name__}: {err}")
        self._write(name, status)

"""Background training jobs for the app: a queue in the run store, one worker thread per device.

The store is the source of truth (status "queued" -> "running" -> "finished"/"stopped"/"failed",
progress as JSON), so a page reload or a second browser tab sees the same jobs, and a job left
"running" by a server that died is marked "stopped" and can be resumed.
"""
from __future__ import annotations

import threading
import time
import traceback

from .engine import TrainConfig, train
from .runs import RunStore

STEP_PROGRESS_SECONDS = 1.0  # at most one step-progress write per second


class JobRunner:
    """Runs queued runs of one store one at a time, outside the Streamlit script thread."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        for run_id in store.iter_run_ids(status="running"):  # orphans of a previous server process
            store.set_status(run_id, "stopped", error="the app stopped while this run was training; resume it")
        self._thread = threading.Thread(target=self._work, name="imbal-lab-jobs", daemon=True)
        self._thread.start()

    def submit(self, config: TrainConfig, tag: str = "") -> str:
        run_id = self.store.create_run(config.to_dict(), tag=tag)
        self._wake.set()
        return run_id

    def resume(self, run_id: str) -> None:
        """Queue a stopped run again; it continues from its last completed epoch."""
        self.store.set_status(run_id, "queued")
        self._wake.set()

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
            run_id = self._next_queued()
            if run_id is None:
                self._wake.wait(timeout=2.0)
                self._wake.clear()
                continue
            self._run(run_id)

    def _run(self, run_id: str) -> None:
        stop = threading.Event()
        with self._lock:
            self._stops[run_id] = stop
        last_write = 0.0

        def progress(event: dict) -> None:
            nonlocal last_write
            if event["event"] == "step" and time.time() - last_write >= STEP_PROGRESS_SECONDS:
                run = self.store.get_run(run_id)
                state = dict(run["progress"] or {})
                state["step"] = {k: event[k] for k in ("stage", "epoch", "epochs", "step", "steps", "loss")}
                self.store.set_progress(run_id, state)
                last_write = time.time()

        try:
            run = self.store.get_run(run_id)
            if run["status"] != "queued":  # stopped while it waited
                return
            config = TrainConfig.from_dict(run["config"])
            train(config, self.store, progress=progress, stop_event=stop, run_id=run_id)
        except Exception:  # noqa: BLE001 - the error is on the job's card; the worker keeps going
            run = self.store.get_run(run_id)
            if run["status"] != "failed":
                self.store.set_status(run_id, "failed", error=traceback.format_exc(limit=3))
        finally:
            with self._lock:
                self._stops.pop(run_id, None)

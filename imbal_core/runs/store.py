"""Run metadata and metrics in SQLite; configs, checkpoints and predictions in run folders.

Every call opens its own short connection, so threads and processes can share one store;
WAL mode lets readers work while a run writes, and a busy timeout serialises writers.
"""
from __future__ import annotations

import json
import math
import sqlite3
import shutil
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..errors import RunError
from ..utils import lab_home, write_json

STATUSES = ("queued", "running", "stopped", "failed", "finished")
MODEL_FILE = "model.safetensors"  # a finished run's final weights, in its folder
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL, updated REAL, status TEXT, method TEXT, data TEXT,
    ratio REAL, seed INTEGER, backbone TEXT, image_size INTEGER, epochs INTEGER, tag TEXT,
    config TEXT, summary TEXT, progress TEXT, error TEXT, duration_s REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, eval TEXT, class TEXT, metric TEXT, value REAL,
    PRIMARY KEY (run_id, eval, class, metric)
);
"""
OVERALL = ""  # the `class` value of whole-set metrics


class RunStore:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else lab_home() / "store"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "runs.sqlite"
        self._create()

    def _create(self, attempts: int = 200) -> None:
        """WAL mode and tables. Switching the journal mode ignores the busy timeout, so two processes
        opening a new store at once (app and CLI, or two workers) retry here instead of failing."""
        for attempt in range(attempts):
            try:
                with closing(self._connect()) as conn:
                    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def _write(self, sql: str, params: tuple | list = ()) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(sql, params)

    # ---- runs -------------------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], tag: str = "") -> str:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{config['method']}-{uuid.uuid4().hex[:6]}"
        self.run_dir(run_id).mkdir(parents=True)
        write_json(self.run_dir(run_id) / "config.json", config)
        now = time.time()
        self._write(
            "INSERT INTO runs (run_id, created, updated, status, method, data, ratio, seed, backbone, image_size, "
            "epochs, tag, config) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, now, now, "queued", config["method"], config["data"], config.get("ratio"), config["seed"],
             config["backbone"], config["image_size"], config["epochs"], tag, json.dumps(config)),
        )
        return run_id

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def set_status(self, run_id: str, status: str, error: str | None = None, duration_s: float | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        self._write("UPDATE runs SET status=?, error=?, updated=?, duration_s=COALESCE(?, duration_s) WHERE run_id=?",
                    (status, error, time.time(), duration_s, run_id))

    def set_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        self._write("UPDATE runs SET progress=?, updated=? WHERE run_id=?", (json.dumps(progress), time.time(), run_id))

    def delete_run(self, run_id: str) -> None:
        """Remove a run: its rows first (so it is never listed without its folder), then its folder."""
        if not self.has_run(run_id):
            raise RunError(f"no run {run_id!r} in {self.root}")
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def has_run(self, run_id: str) -> bool:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def get_run(self, run_id: str) -> dict[str, Any]:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run {run_id!r} in {self.db_path}; list runs with `python -m imbal_core export`")
        return _decode(dict(row))

    def runs(self, **filters: Any) -> pd.DataFrame:
        """All runs, newest first; filters are column=value (e.g. method="ce", status="finished")."""
        where, params = _where(filters)
        with closing(self._connect()) as conn:
            frame = pd.read_sql_query(f"SELECT * FROM runs {where} ORDER BY created DESC", conn, params=params)
        return frame

    # ---- metrics ----------------------------------------------------------------------------
    def record_metrics(self, run_id: str, eval_name: str, metrics: dict, class_names: list[str]) -> None:
        """Store a metrics dict (from imbal_core.metrics) as tidy rows; summary of the run's own test set."""
        rows = [(run_id, eval_name, OVERALL, k, _nan_to_none(v)) for k, v in metrics["summary"].items()]
        for metric, values in metrics["per_class"].items():
            if metric != "shot_group":
                rows += [(run_id, eval_name, name, metric, float(v)) for name, v in zip(class_names, values)]
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM metrics WHERE run_id=? AND eval=?", (run_id, eval_name))
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)", rows)
            if eval_name == "test":
                conn.execute("UPDATE runs SET summary=?, updated=? WHERE run_id=?",
                             (json.dumps(metrics["summary"]), time.time(), run_id))

    def tidy(self, run_ids: list[str] | None = None, per_class: bool = True) -> pd.DataFrame:
        """One row per (run, eval, class, metric): columns run, method, seed, ratio, data, eval, class, metric, value.

        `class` is empty for whole-set metrics.
        """
        sql = ("SELECT m.run_id AS run, r.method, r.seed, r.ratio, r.data, r.backbone, r.tag, m.eval, "
               "m.class, m.metric, m.value FROM metrics m JOIN runs r USING (run_id)")
        clauses, params = [], []
        if run_ids is not None:
            clauses.append(f"m.run_id IN ({','.join('?' * len(run_ids))})")
            params += list(run_ids)
        if not per_class:
            clauses.append("m.class = ''")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with closing(self._connect()) as conn:
            return pd.read_sql_query(sql + " ORDER BY r.created, m.eval, m.metric", conn, params=params)

    def iter_run_ids(self, status: str | None = None) -> Iterator[str]:
        yield from self.runs(**({"status": status} if status else {}))["run_id"]


def _where(filters: dict[str, Any]) -> tuple[str, list]:
    allowed = {"method", "data", "ratio", "seed", "backbone", "status", "tag", "image_size"}
    unknown = set(filters) - allowed
    if unknown:
        raise ValueError(f"cannot filter runs by {sorted(unknown)}; use {sorted(allowed)}")
    if not filters:
        return "", []
    return "WHERE " + " AND ".join(f"{k}=?" for k in filters), list(filters.values())


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("config", "summary", "progress"):
        row[key] = json.loads(row[key]) if row.get(key) else None
    return row


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

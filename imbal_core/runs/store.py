"""Run metadata and metrics in SQLite; configs, checkpoints and predictions in run folders.

Every call opens its own short connection, so threads and processes can share one store;
WAL mode lets readers work while a run writes, and a busy timeout serialises writers.

A running run records its owner (host and process id) and a heartbeat. A "running" run whose
owner has ended (killed, crashed) reads back as "interrupted", so it never looks like a live one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import sqlite3
import time
import unicodedata
import uuid
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import RunError
from ..utils import atomic_path, lab_home, read_json, write_json

STATUSES = ("queued", "running", "stopped", "failed", "finished")
INTERRUPTED = "interrupted"  # read-only status: "running" in the table, but its owner process has ended
LISTED_STATUSES = STATUSES + (INTERRUPTED,)
MODEL_FILE = "model.safetensors"  # a finished run's final weights, in its folder
# A run owned by another host cannot be checked by process id: it is taken as ended when its
# heartbeat (written at least every HEARTBEAT_SECONDS while it trains) is older than this.
HEARTBEAT_SECONDS = 30.0
STALE_HEARTBEAT_SECONDS = 600.0
FIRST_WAIT_SECONDS = 5.0  # for a locked run index, before saying so and waiting longer
LATER_WAIT_SECONDS = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL, updated REAL, status TEXT, method TEXT, data TEXT,
    ratio REAL, seed INTEGER, backbone TEXT, image_size INTEGER, epochs INTEGER, tag TEXT,
    config TEXT, summary TEXT, progress TEXT, error TEXT, duration_s REAL,
    owner_host TEXT, owner_pid INTEGER, heartbeat REAL, code_version TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, eval TEXT, class TEXT, metric TEXT, value REAL,
    PRIMARY KEY (run_id, eval, class, metric)
);
"""
OVERALL = ""  # the `class` value of whole-set metrics
# A run id and each part of a file name in a run folder are plain names: no separator, never "." or "..", so a path
# made from one stays in the store (run ids and file names come from archives and exports, which a clone carries).
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]{0,159}$")


def check_tag(tag: str) -> str:
    """A run's tag, refused when it holds control characters: `runs` and `export` print tags, and an escape code
    would reach the terminal."""
    if any(unicodedata.category(ch) == "Cc" for ch in tag):
        raise RunError("a run's tag may not hold control characters (escape codes, newlines): give it in plain text")
    return tag


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not PLAIN_NAME.match(run_id):
        raise RunError(
            f"run id {str(run_id)[:80]!r} is not a plain name (letters, digits and _ . = , + -, starting with a "
            "letter or digit): refused, as a path made from it could leave the store"
        )
    return run_id


def run_file(folder: Path, name: str) -> Path:
    """`folder / name` for a file name read from an export or archive, refused unless it is plain parts under
    `folder`."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or not all(PLAIN_NAME.match(part) for part in parts):
        raise RunError(f"file name {name[:80]!r} of a run is not a plain relative name: refused")
    return folder.joinpath(*parts)


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
                self._create_once()
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)
            except sqlite3.DatabaseError as err:  # not a database (overwritten, truncated mid-page)
                raise RunError(
                    f"the run index {self.db_path} is damaged ({err}); the runs' folders are not: move the file "
                    f"aside (e.g. to {self.db_path.name}.damaged), then `python -m imbal_core --store {self.root} "
                    "runs --rebuild` indexes the run folders again"
                ) from None

    def _create_once(self) -> None:
        with closing(self._connect()) as conn:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)

    def _connect(self, busy_seconds: float = 60.0) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=busy_seconds)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        return conn

    def _write(self, sql: str, params: tuple | list = (), attempts: int = 5) -> None:
        """One statement in its own transaction; a "database is locked" that outlasts the busy timeout
        (SQLite returns it at once in some lock upgrades) is retried, not passed on to kill a job. The first wait is
        short, so a lock held elsewhere is said within seconds; one held for minutes ends in a RunError."""
        for attempt in range(attempts):
            try:
                with closing(self._connect(FIRST_WAIT_SECONDS if attempt == 0 else LATER_WAIT_SECONDS)) as conn, conn:
                    conn.execute(sql, params)
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err):
                    raise
                if attempt == attempts - 1:
                    raise RunError(
                        f"the run index {self.db_path} stayed locked by another process for minutes (a program "
                        "holding it open in a transaction?): close that program, then run the command again"
                    ) from None
                if attempt == 0:
                    warnings.warn(
                        f"the run index {self.db_path} is busy (another process holds a write lock); waiting for it",
                        stacklevel=2,
                    )
                time.sleep(0.2 * 2**attempt)

    # ---- runs -------------------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], tag: str = "", run_id: str | None = None) -> str:
        """A new queued run; `run_id` keeps an id made elsewhere (a remote worker's copy of a driver's run)."""
        run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{config['method']}-{uuid.uuid4().hex[:6]}"
        check_tag(tag)
        self.run_dir(run_id).mkdir(parents=True)
        try:
            write_json(self.run_dir(run_id) / "config.json", config)
            self._index_new_run(run_id, config, tag)
        except BaseException:  # a failed or interrupted write (Ctrl-C, SIGTERM) leaves no folder without a row
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
            raise
        return run_id

    def _index_new_run(self, run_id: str, config: dict[str, Any], tag: str) -> None:
        now = time.time()
        self._write(
            "INSERT INTO runs (run_id, created, updated, status, method, data, ratio, seed, backbone, image_size, "
            "epochs, tag, config) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                now,
                now,
                "queued",
                config["method"],
                config["data"],
                config.get("ratio"),
                config["seed"],
                config["backbone"],
                config["image_size"],
                config["epochs"],
                tag,
                json.dumps(config),
            ),
        )

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / check_run_id(run_id)

    def set_status(self, run_id: str, status: str, error: str | None = None, duration_s: float | None = None) -> None:
        """Set a run's status; "running" also records this process as the run's owner."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        now = time.time()
        owner = (socket.gethostname(), os.getpid()) if status == "running" else (None, None)
        self._write(
            "UPDATE runs SET status=?, error=?, updated=?, duration_s=COALESCE(?, duration_s), owner_host=?, "
            "owner_pid=?, heartbeat=? WHERE run_id=?",
            (status, error, now, duration_s, *owner, now, run_id),
        )

    def record_code_version(self, run_id: str, version: str) -> None:
        """The code (`utils.code_version()`) that trains the run now. A run continued by other code keeps both, in
        order ("a then b"), so a benchmark can say which code made each number it reuses."""
        self._write(
            "UPDATE runs SET code_version = CASE WHEN COALESCE(code_version, '') = '' THEN ? "
            "WHEN code_version = ? OR code_version LIKE '% then ' || ? THEN code_version "
            "ELSE code_version || ' then ' || ? END WHERE run_id=?",
            (version, version, version, version, run_id),
        )

    def set_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        now = time.time()
        self._write(
            "UPDATE runs SET progress=?, updated=?, heartbeat=? WHERE run_id=?",
            (json.dumps(progress), now, now, run_id),
        )

    def heartbeat(self, run_id: str) -> None:
        """The owner is alive (other hosts judge a run by this)."""
        self._write("UPDATE runs SET heartbeat=? WHERE run_id=?", (time.time(), run_id))

    def delete_run(self, run_id: str) -> None:
        """Remove a run: its rows first (so it is never listed without its folder), then its folder."""
        folder = self.run_dir(run_id)  # a run id that is no plain name is refused before anything else
        if not self.has_run(run_id):
            raise RunError(f"no run {run_id!r} in {self.root}")
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
        if folder.is_symlink():  # the link goes, never what it points to
            folder.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def find_runs(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """Runs whose whole config equals `config` (every TrainConfig field, as stored), oldest first, each as
        `get_run` reads it (a "running" run whose owner has ended is "interrupted")."""
        wanted = json.loads(json.dumps(config))  # the stored form: tuples as lists
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT run_id, config FROM runs WHERE method=? AND seed=? ORDER BY created",
                (config["method"], config["seed"]),
            ).fetchall()
        return [self.get_run(row["run_id"]) for row in rows if row["config"] and json.loads(row["config"]) == wanted]

    def export_run(self, run_id: str) -> dict[str, Any]:
        """A run as data, for `import_run` into another store: its row, its metric rows and its folder's files."""
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
            metrics = conn.execute("SELECT * FROM metrics WHERE run_id=?", (run_id,)).fetchall()
        if row is None:
            raise RunError(f"no run {run_id!r} in {self.root}")
        return {"run": dict(row), "metrics": [tuple(m) for m in metrics], "files": folder_files(self.run_dir(run_id))}

    def import_run(self, exported: dict[str, Any], keep: tuple[str, ...] = ("created", "tag", "code_version")) -> None:
        """Write a run exported from another store (`export_run`) into this one: its files first, then its row and
        metrics in one transaction. A run of the same id here is updated; its columns in `keep` stay as they are.
        The run has no owner here (a remote worker trained it)."""
        run = dict(exported["run"])
        run_id = run["run_id"]
        check_tag(run.get("tag") or "")  # an archive's row, from a clone, is printed like ours
        folder = self.run_dir(run_id)
        for name, data in exported["files"].items():
            with atomic_path(run_file(folder, name)) as tmp:
                tmp.write_bytes(data)
        run.update(owner_host=None, owner_pid=None, updated=time.time())
        with closing(self._connect()) as conn, conn:
            existing = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if existing is not None:
                run.update({key: existing[key] for key in keep})
                conn.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
            columns = [c for c in run if c in _run_columns(conn)]
            conn.execute(
                f"INSERT INTO runs ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})",
                [run[c] for c in columns],
            )
            conn.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)", [tuple(m) for m in exported["metrics"]])

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Only one `what` (e.g. "benchmark") at a time on this store: a second one, in any process on this machine,
        gets a RunError at once. The lock is the operating system's, so it ends with its process, even a killed one."""
        import fcntl  # POSIX only; imported here so the store itself imports everywhere

        with open(self.root / f"{what}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunError(
                    f"a {what} is already running on the store {self.root} ({holder}); wait for it to end, or "
                    "use another store (--store)"
                ) from None
            handle.truncate(0)
            handle.write(f"{socket.gethostname()}, pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def state(self) -> tuple[tuple[int, int], ...]:
        """(mtime_ns, size) of the database and its write-ahead log: changes with every write, so a cache keyed
        on it is never stale (a time-to-live would hide a run that finished a moment ago)."""
        return tuple(_mtime_and_size(f) for f in (self.db_path, self.db_path.with_name(self.db_path.name + "-wal")))

    def has_run(self, run_id: str) -> bool:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def get_run(self, run_id: str) -> dict[str, Any]:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run {run_id!r} in {self.root}; list the runs with `python -m imbal_core runs`")
        run = _decode(dict(row))
        if _owner_ended(run):
            run["status"], run["error"] = INTERRUPTED, _interrupted_message(run)
        return run

    def unindexed_folders(self) -> list[str]:
        """Run folders without a row in the index (an emptied or replaced runs.sqlite): `rebuild_index` adds them."""
        folder = self.root / "runs"
        if not folder.is_dir():
            return []
        with closing(self._connect()) as conn:
            indexed = {row[0] for row in conn.execute("SELECT run_id FROM runs")}
        return sorted(
            p.name
            for p in folder.iterdir()
            if p.is_dir() and PLAIN_NAME.match(p.name) and p.name not in indexed and (p / "config.json").is_file()
        )

    def folderless_runs(self) -> list[str]:
        """Runs in the index whose folder is gone (removed by hand): `runs` names them, `runs --delete` drops them."""
        with closing(self._connect()) as conn:
            ids = [str(row[0]) for row in conn.execute("SELECT run_id FROM runs")]
        return [run_id for run_id in ids if PLAIN_NAME.match(run_id) and not (self.root / "runs" / run_id).is_dir()]

    def crafted_rows(self) -> list[str]:
        """Run ids in the index that are not plain names: no command creates one (the index was edited), every
        command refuses them, `runs` leaves them out and `rebuild_index` removes them."""
        with closing(self._connect()) as conn:
            ids = [row[0] for row in conn.execute("SELECT run_id FROM runs")]
        return sorted(str(run_id) for run_id in ids if not PLAIN_NAME.match(str(run_id)))

    def rebuild_index(self) -> list[str]:
        """Index the run folders the index lacks again, from their files: config, and for a finished run (its
        metrics.json is written last) its test metrics; any other is "stopped" (Resume continues it from its last
        checkpoint, or trains it from the start). The per-epoch history lived only in the index: it is not back.
        Rows whose id is not a plain name (`crafted_rows`) are removed; nothing on disk is touched for them."""
        crafted = self.crafted_rows()
        with closing(self._connect()) as conn, conn:
            for table in ("metrics", "runs"):
                conn.executemany(f"DELETE FROM {table} WHERE run_id=?", [(run_id,) for run_id in crafted])
        rebuilt = []
        for run_id in self.unindexed_folders():
            folder = self.run_dir(run_id)
            config = read_json(folder / "config.json")
            created = (folder / "config.json").stat().st_mtime
            metrics_file = folder / "metrics.json"
            finished = metrics_file.is_file()
            run = {
                "run_id": run_id,
                "created": created,
                "updated": time.time(),
                "status": "finished" if finished else "stopped",
                "method": config["method"],
                "data": config["data"],
                "ratio": config.get("ratio"),
                "seed": config["seed"],
                "backbone": config["backbone"],
                "image_size": config["image_size"],
                "epochs": config["epochs"],
                "tag": "",
                "config": json.dumps(config),
                "error": None if finished else "indexed again from its folder by `runs --rebuild`; its state was lost",
                # epochs done, as `runs` shows them; the per-epoch history is gone with the old index
                "progress": json.dumps({"epoch": config["epochs"], "epochs": config["epochs"]}) if finished else None,
            }
            with closing(self._connect()) as conn, conn:
                conn.execute(
                    f"INSERT INTO runs ({', '.join(run)}) VALUES ({', '.join('?' * len(run))})", tuple(run.values())
                )
            if finished:
                metrics = read_json(metrics_file)
                self.record_metrics(run_id, "test", metrics, metrics["class_names"])
            rebuilt.append(run_id)
        return rebuilt

    def runs(self, **filters: Any) -> pd.DataFrame:
        """All runs, newest first; filters are column=value (e.g. method="ce", status="finished").

        A "running" run whose owner process has ended is listed (and filtered) as "interrupted".
        """
        status = filters.pop("status", None)
        if status is not None and status not in LISTED_STATUSES:
            raise RunError(f"status must be one of {LISTED_STATUSES}; got {status!r}")
        if status is not None and status not in ("running", INTERRUPTED):
            filters["status"] = status
        where, params = _where(filters)
        with closing(self._connect()) as conn:
            frame = pd.read_sql_query(f"SELECT * FROM runs {where} ORDER BY created DESC", conn, params=params)
        plain = frame["run_id"].map(lambda run_id: bool(PLAIN_NAME.match(str(run_id)))).astype(bool)
        frame = frame[plain].reset_index(drop=True)  # `crafted_rows` names the others
        ended = frame.apply(_owner_ended, axis=1).astype(bool) if len(frame) else pd.Series([], dtype=bool)
        frame.loc[ended, "error"] = frame[ended].apply(_interrupted_message, axis=1)
        frame.loc[ended, "status"] = INTERRUPTED
        return frame if status is None else frame[frame["status"] == status].reset_index(drop=True)

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
                conn.execute(
                    "UPDATE runs SET summary=?, updated=? WHERE run_id=?",
                    (json.dumps(metrics["summary"]), time.time(), run_id),
                )

    def tidy(self, run_ids: list[str] | None = None, per_class: bool = True) -> pd.DataFrame:
        """One row per (run, eval, class, metric): columns run, method, seed, ratio, data, eval, class, metric, value.

        `class` is empty for whole-set metrics.
        """
        sql = (
            "SELECT m.run_id AS run, r.method, r.seed, r.ratio, r.data, r.backbone, r.tag, m.eval, "
            "m.class, m.metric, m.value FROM metrics m JOIN runs r USING (run_id)"
        )
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


def folder_files(folder: Path) -> dict[str, bytes]:
    """The plain files under `folder` by relative name; a link is refused, as its target may lie anywhere."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise RunError(f"{path} is a link: run folders and archives hold plain files only; remove it")
        if path.is_file():
            files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Stores made before a column existed gain it (empty for old rows)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in (
        ("owner_host", "TEXT"),
        ("owner_pid", "INTEGER"),
        ("heartbeat", "REAL"),
        ("code_version", "TEXT"),
    ):
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as err:  # another process added it first
                if "duplicate column" not in str(err):
                    raise


def _run_columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(runs)")}


def _owner_ended(run: Any) -> bool:
    """Whether a "running" run's owner process is gone: by process id on this host, by heartbeat elsewhere."""
    if run["status"] != "running":
        return False
    host, pid = run["owner_host"], run["owner_pid"]
    if pd.isna(host) or pd.isna(pid):
        return True  # marked running by code that recorded no owner: nothing can be alive to own it
    if host != socket.gethostname():
        return time.time() - float(run["heartbeat"] or 0) > STALE_HEARTBEAT_SECONDS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False


def _interrupted_message(run: Any) -> str:
    return (
        f"its process ({run['owner_host']}, pid {run['owner_pid']}) ended while it trained (killed or crashed); "
        f"resume it with `python -m imbal_core train --resume {run['run_id']}`"
    )


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


def _mtime_and_size(path: Path) -> tuple[int, int]:
    """(0, 0) for a missing file. One stat, not exists() then stat(): SQLite deletes the write-ahead log when its last
    connection closes, which can fall between the two (a training job's did, under the Compare page)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)

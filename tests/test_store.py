"""Run store: tidy frames and two processes writing at once."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imbal_core.cli import main
from imbal_core.errors import RunError
from imbal_core.runs import RunStore

CONFIG = {"method": "ce", "data": "synthetic", "ratio": 10.0, "seed": 0, "backbone": "b", "image_size": 28, "epochs": 1}
METRICS = {
    "summary": {"acc": 0.5, "balanced_acc": float("nan")},
    "per_class": {"recall": [0.1, 0.9], "f1": [0.2, 0.8], "shot_group": ["many", "few"]},
}


def _writer(root: str, worker: int, n: int) -> None:
    store = RunStore(root)
    for i in range(n):
        run_id = store.create_run({**CONFIG, "seed": worker * 1000 + i})
        store.set_status(run_id, "running")
        store.set_progress(run_id, {"epoch": 1})
        store.record_metrics(run_id, "test", METRICS, ["a", "b"])
        store.set_status(run_id, "finished")


def test_two_processes_write_at_once(tmp_path: Path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 25)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = RunStore(tmp_path)
    runs = store.runs()
    assert len(runs) == 50 and set(runs["status"]) == {"finished"}
    assert len(store.tidy()) == 50 * 6
    with store._connect() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_tidy_frame(tmp_path: Path):
    store = RunStore(tmp_path)
    run_id = store.create_run(CONFIG)
    store.record_metrics(run_id, "test", METRICS, ["a", "b"])
    tidy = store.tidy()
    assert {"run", "method", "seed", "ratio", "class", "metric", "value"} <= set(tidy.columns)
    recall_b = tidy[(tidy["class"] == "b") & (tidy["metric"] == "recall")]["value"].item()
    assert recall_b == 0.9
    assert np.isnan(tidy[tidy["metric"] == "balanced_acc"]["value"].item())
    assert len(store.tidy(per_class=False)) == 2
    assert store.get_run(run_id)["summary"]["acc"] == 0.5


def test_delete_run_removes_rows_and_folder_and_keeps_the_others(tmp_path: Path):
    store = RunStore(tmp_path)
    kept, deleted = store.create_run(CONFIG), store.create_run({**CONFIG, "seed": 1})
    for run_id in (kept, deleted):
        store.record_metrics(run_id, "test", METRICS, ["a", "b"])
    store.delete_run(deleted)
    assert list(store.runs()["run_id"]) == [kept] and set(store.tidy()["run"]) == {kept}
    assert not store.run_dir(deleted).exists() and store.run_dir(kept).is_dir()
    with pytest.raises(RunError, match="no run"):
        store.delete_run(deleted)


def test_unknown_run_and_filter(tmp_path: Path):
    store = RunStore(tmp_path)
    with pytest.raises(RunError, match="no run"):
        store.get_run("nope")
    with pytest.raises(ValueError, match="filter"):
        store.runs(colour="red")


def test_opening_a_new_store_retries_while_another_process_switches_it_to_wal(tmp_path: Path, monkeypatch):
    # Seen in CI-like runs: two processes opening one new store; the loser's journal-mode switch
    # fails at once with "database is locked" (SQLite skips the busy timeout there).
    import sqlite3

    real_connect = RunStore._connect
    failures = iter([True, True])

    def flaky_connect(self):
        if next(failures, False):
            raise sqlite3.OperationalError("database is locked")
        return real_connect(self)

    monkeypatch.setattr(RunStore, "_connect", flaky_connect)
    store = RunStore(tmp_path)
    assert store.runs().empty


def test_store_state_changes_with_every_write(store):
    """Compare caches the runs table on this state: a run finished a moment ago must change it."""
    before = store.state()
    run_id = store.create_run(CONFIG)
    after_create = store.state()
    store.set_status(run_id, "finished")
    assert before != after_create != store.state()


def test_store_state_reads_a_write_ahead_log_that_just_vanished_as_missing(store, monkeypatch):
    """SQLite deletes runs.sqlite-wal when its last connection closes, which can fall between a check that the log
    exists and reading its size: state() must not raise then (Compare crashed once while a job finished)."""
    store.create_run(CONFIG)
    wal = store.db_path.with_name(store.db_path.name + "-wal")
    assert not wal.is_file()  # every connection is closed
    monkeypatch.setattr(Path, "exists", lambda self: True)  # as a check made just before the log went
    assert store.state()[1] == (0, 0)


def test_a_run_records_the_code_that_trained_it_in_order(tmp_path: Path):
    store = RunStore(tmp_path)
    run_id = store.create_run(CONFIG)
    assert store.get_run(run_id)["code_version"] is None  # not trained yet
    for version, expected in (("aaa", "aaa"), ("aaa", "aaa"), ("bbb", "aaa then bbb"), ("bbb", "aaa then bbb")):
        store.record_code_version(run_id, version)  # one call per training call (start, resumes)
        assert store.get_run(run_id)["code_version"] == expected
    store.record_code_version(run_id, "aaa")  # resumed by the first code again
    assert store.get_run(run_id)["code_version"] == "aaa then bbb then aaa"


def test_a_store_made_before_code_versions_gains_the_column(tmp_path: Path):
    import sqlite3

    store = RunStore(tmp_path)
    run_id = store.create_run(CONFIG)
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN code_version")
    reopened = RunStore(tmp_path)
    assert reopened.get_run(run_id)["code_version"] is None
    reopened.record_code_version(run_id, "ccc")
    assert reopened.get_run(run_id)["code_version"] == "ccc"


def _exported(store: RunStore) -> dict:
    run_id = store.create_run(CONFIG)
    store.record_metrics(run_id, "test", METRICS, ["a", "b"])
    store.set_status(run_id, "finished")
    return store.export_run(run_id)


def test_a_crafted_archive_writes_reads_and_deletes_nothing_outside_the_store(tmp_path: Path, capsys):
    """Issue 37: a run id with `../`, a file name with `../`, a symlinked file and a row naming another run are
    refused with a message; deleting a run whose folder is a link removes the link, not its target."""
    from imbal_core.runs.archive import ROW_FILE, RunArchive

    source, target = RunStore(tmp_path / "source"), RunStore(tmp_path / "target")
    exported = _exported(source)
    outside = tmp_path / "outside"
    with pytest.raises(RunError, match="not a plain name"):
        target.import_run({**exported, "run": {**exported["run"], "run_id": "../../outside"}})
    with pytest.raises(RunError, match="not a plain relative name"):
        target.import_run({**exported, "files": {"../../outside/x.json": b"{}"}})
    assert not outside.exists()

    archive = RunArchive(tmp_path / "archive")
    archive.save(source, exported["run"]["run_id"])
    folder = archive.root / exported["run"]["run_id"]
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(RunError, match="is a link: run folders and archives hold plain files only"):
        archive.restore(target)
    (folder / "notes.txt").unlink()
    renamed = archive.root / "20990101-000000-ce-abcdef"
    folder.rename(renamed)  # its run.json still names the old id
    with pytest.raises(RunError, match="names itself"):
        archive.restore(target)
    assert (renamed / ROW_FILE).is_file() and target.runs().empty

    run_id = _exported(target)["run"]["run_id"]
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("mine")
    shutil.rmtree(target.run_dir(run_id))
    target.run_dir(run_id).symlink_to(kept)
    target.delete_run(run_id)
    assert (kept / "file").read_text() == "mine" and not target.run_dir(run_id).exists()
    with pytest.raises(RunError, match="not a plain name"):
        target.delete_run("../source")

    # probe S15: a row crafted into runs.sqlite was listed with a resume command that every command then refused
    with sqlite3.connect(target.root / "runs.sqlite") as conn:
        conn.execute("INSERT INTO runs (run_id, status) VALUES ('../../victim', 'stopped')")
    assert target.crafted_rows() == ["../../victim"] and "../../victim" not in set(target.runs()["run_id"])
    assert main(["--store", str(target.root), "runs"]) == 0
    listed = capsys.readouterr().out
    assert "not a plain name" in listed and "resume" not in listed and "`runs --rebuild` removes them" in listed
    assert main(["--store", str(target.root), "runs", "--rebuild"]) == 0 and target.crafted_rows() == []


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda row: "{not json", r"run.json does not read \(JSONDecodeError\)"),
        (lambda row: {**row, "run": {**row["run"], "config": "{not json"}}, "its config .* does not read"),
        (lambda row: {**row, "metrics": [["x", "test"]]}, "its metric rows in run.json are malformed"),
        (lambda row: {**row, "run": {**row["run"], "status": "queued"}}, "is 'queued': archives hold finished runs"),
    ],
)
def test_a_damaged_archived_run_is_named_and_nothing_is_restored(tmp_path: Path, damage, expected):
    """Probe S19-S22: a broken run.json, config or metric rows, or a run that is not finished, was a traceback or
    left files or a queued run that could never be deleted."""
    import json

    from imbal_core.runs.archive import ROW_FILE, RunArchive

    source, target = RunStore(tmp_path / "source"), RunStore(tmp_path / "target")
    run_id = _exported(source)["run"]["run_id"]
    archive = RunArchive(tmp_path / "archive")
    archive.save(source, run_id)
    row_file = archive.root / run_id / ROW_FILE
    damaged = damage(json.loads(row_file.read_text()))
    row_file.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    with pytest.raises(RunError, match=expected):
        archive.restore(target)
    assert target.runs().empty and not list(target.root.glob("runs/*"))  # no row, no folder

"""The background job runner: queue order, stop, resume, and recovery after a server restart."""

from __future__ import annotations

import time

import pytest

from imbal_core.jobs import JobRunner

from .conftest import tiny_config


def _wait(store, run_id, statuses, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if store.get_run(run_id)["status"] in statuses:
            return store.get_run(run_id)
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {store.get_run(run_id)['status']}")


def test_queue_stop_resume(store):
    runner = JobRunner(store)
    first = runner.submit(tiny_config(method="ce", epochs=2))
    second = runner.submit(tiny_config(method="focal"))
    runner.stop(second)  # still queued: it never starts
    assert store.get_run(second)["status"] == "stopped"
    _wait(store, first, {"running"})
    runner.stop(first)
    stopped = _wait(store, first, {"stopped", "finished"})
    if stopped["status"] == "stopped":
        runner.resume(first)
    finished = _wait(store, first, {"finished"})
    assert finished["summary"]["balanced_acc"] >= 0
    assert [h["epoch"] for h in finished["progress"]["history"]] == [0, 1]


def test_orphaned_running_run_is_interrupted_and_resumable(store):
    run_id = store.create_run(tiny_config().to_dict())
    store.set_status(run_id, "running")
    store._write("UPDATE runs SET owner_pid=NULL WHERE run_id=?", (run_id,))  # as left by a server that died
    runner = JobRunner(store)  # a new server process finds the run it did not start
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and "resume" in run["error"]
    runner.resume(run_id)
    assert _wait(store, run_id, {"finished"})["summary"]["balanced_acc"] >= 0


def test_failed_job_keeps_the_worker_alive(store):
    runner = JobRunner(store)
    bad = runner.submit(tiny_config(method="crt", init_from="missing-run"))
    good = runner.submit(tiny_config(method="ce"))
    assert "missing-run" in _wait(store, bad, {"failed"})["error"]
    assert _wait(store, good, {"finished"})["status"] == "finished"


def _wait_generator(jobs, name, statuses, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = {s["name"]: s for s in jobs.statuses()}.get(name)
        if found and found["status"] in statuses and not jobs.busy():
            return found
        time.sleep(0.2)
    raise AssertionError(f"style model {name} did not reach {statuses}")


@pytest.mark.parametrize("kind", ["adain", "diffusion"])
def test_generator_job_stop_resume_and_orphan(tmp_path, kind):
    from imbal_core.errors import ConfigError
    from imbal_core.jobs import GeneratorJobs
    from imbal_core.synth.diffusion import DiffusionTrainConfig
    from imbal_core.synth.generators import load_generator_info
    from imbal_core.synth.style_models import StyleTrainConfig

    jobs = GeneratorJobs(tmp_path)
    tiny = dict(data_options={"n_images": 700}, epochs=3, device="cpu")
    config = (
        StyleTrainConfig(**tiny, autoencoder_epochs=1, width=4)
        if kind == "adain"
        else DiffusionTrainConfig(**tiny, width=8, batch_size=32)
    )
    jobs.start(config, "job_model")
    with pytest.raises(ConfigError, match="already training"):
        jobs.start(config, "other")
    while not (tmp_path / "job_model.safetensors").exists():  # stop after the first saved epoch
        time.sleep(0.05)
    jobs.stop()
    stopped = _wait_generator(jobs, "job_model", {"stopped", "finished"})
    if stopped["status"] == "stopped":
        with pytest.raises(ConfigError, match="exists"):
            jobs.start(config, "job_model")  # a new training must not overwrite it
        jobs.resume(stopped)
    assert _wait_generator(jobs, "job_model", {"finished"})["error"] is None
    info = load_generator_info(tmp_path / "job_model.safetensors")
    assert info.status == "finished" and info.kind == kind and len(info.history) == 3
    assert jobs.statuses(kind)[0]["name"] == "job_model" and not jobs.statuses("other_kind")
    # a status left "running" by a server that died is shown as stopped by the next one
    status_file = tmp_path / "job_model.status.json"
    status_file.write_text(status_file.read_text().replace('"finished"', '"running"'))
    assert GeneratorJobs(tmp_path).statuses()[0]["status"] == "stopped"


def test_progress_line_gives_speed_and_time_left():
    """Train's progress bar: the time left is this epoch's remaining steps at its pace so far, plus the remaining
    epochs at the finished epochs' mean time (their validation included)."""
    from imbal_core.jobs import duration_text, progress_line

    step = {"stage": "train", "epoch": 1, "epochs": 5, "step": 10, "steps": 50, "loss": 1.23456}
    assert progress_line(step, []) == "train: epoch 2/5, step 10/50, loss 1.235"  # an older app's record
    step.update(seconds=2.0, images_per_second=128.0)
    line = progress_line(step, [{"seconds": 30.0}, {"seconds": 32.0}])  # 40 x 0.2 s + 3 x 31 s = 101 s
    assert line == "train: epoch 2/5, step 10/50, loss 1.235 · 128 images/s · about 2 min left"
    assert progress_line(step, []).endswith("about 38 s left")  # no epoch finished yet: 40 x 0.2 + 3 x 50 x 0.2 s
    assert [duration_text(s) for s in (0.2, 44.6, 89, 3600 + 600)] == ["1 s", "45 s", "1 min", "1 h 10 min"]
    first = {**step, "epoch": 0, "step": 1, "seconds": 3.0}  # start-up cost in it: no estimate from it alone
    assert progress_line(first, []).endswith("· timing the first steps")

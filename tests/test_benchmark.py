"""Benchmark protocols: parsing and validation errors, the shipped protocols, planning against the store, resuming a
half-finished benchmark (stopped in-process, and a killed benchmark process), and the results file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from imbal_core.benchmark import plan, run_benchmark
from imbal_core.benchmark_results import read_results, results_names
from imbal_core.checkpoint import load_checkpoint
from imbal_core.cli import main
from imbal_core.compare import finished_runs
from imbal_core.engine import train
from imbal_core.engine.trainer import RunInterrupted
from imbal_core.errors import ConfigError, DataError, RunError
from imbal_core.executors import LocalExecutor
from imbal_core.methods import METHODS
from imbal_core.protocol import PROTOCOL_DIR, load_protocol, protocol_names
from imbal_core.runs import MODEL_FILE, RunStore
from imbal_core.stats import leaderboard
from imbal_core.utils import code_version, read_json, software_environment, write_json

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "protocols" / "tiny.toml"
TINY_TEXT = TINY.read_text()
SHIPPED = {"ham10000_28": 57, "ham10000_128": 57, "retinamnist_28": 57, "builtin_ratios": 171}  # runs planned
ONE_CLASS = ("knowledge_one_class", "deep_svdd")


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def tiny_text(**changes: str) -> str:
    """The tiny protocol with top-level lines replaced (key -> 'key = value' text; "" drops the line). Other methods
    drop its other_references line (it names one of its methods) unless that is replaced too."""
    if "methods" in changes:
        changes.setdefault("other_references", "")
    lines = TINY_TEXT.splitlines()
    for key, line in changes.items():
        lines = [line if existing.startswith(f"{key} =") else existing for existing in lines]
    return "\n".join(line for line in lines if line) + "\n"


# ---- parsing and validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_protocols_cover_every_method(name: str):
    protocol = load_protocol(name)  # a data path need not exist to read and plan a protocol
    runs = protocol.plan()
    assert len(runs) == SHIPPED[name]
    assert {m.method for m in protocol.methods} == set(METHODS.names()), "a method is missing from the protocol"
    assert protocol.seeds == [0, 1, 2] and protocol.reference == "ce"
    for run in runs:
        assert run.config is not None and run.config.backbone == "resnet10t_small"
        assert run.config.image_size == (128 if name.endswith("_128") else 28)
        if run.method.method in ONE_CLASS:
            assert run.config.task is not None
    tasks = {r.config.task for r in runs if r.method.method in ONE_CLASS}
    # the reference runs on the one-class methods' task too, so they have something to be paired with
    assert {r.config.task for r in runs if r.method.method == "ce"} == {None} | tasks


def test_protocol_names_and_epoch_budgets():
    assert set(SHIPPED) <= set(protocol_names())
    assert load_protocol("ham10000_28").training["epochs"] == 30
    assert load_protocol("retinamnist_28").training["epochs"] == 30
    builtin = load_protocol("builtin_ratios")
    assert builtin.training["epochs"] == 8 and builtin.ratios == [10.0, 50.0, 100.0]
    assert builtin.training["profile"] == "exp" and builtin.data[0].source == "synthetic"
    ham = load_protocol("ham10000_28")
    assert ham.data[0].path == str((PROTOCOL_DIR / "../../../shared/data/ham10000").resolve())
    assert load_protocol("ham10000_28", ["/elsewhere/ham"]).data[0].path == "/elsewhere/ham"


def test_ham10000_128_is_ham10000_28_at_128_px():
    """Only the size changes between the two HAM10000 benchmarks (and iois's generator, as no 128 px one exists)."""
    small, large = load_protocol("ham10000_28"), load_protocol("ham10000_128")
    assert {**small.training, "image_size": 128} == large.training
    assert (small.seeds, small.ratios, small.reference, small.other_references) == (
        large.seeds,
        large.ratios,
        large.reference,
        large.other_references,
    )
    assert small.data[0].path == large.data[0].path

    def plan(protocol):
        return {(r.method.method, r.config.task, r.seed): r.config for r in protocol.plan()}

    small_runs, large_runs = plan(small), plan(large)
    assert small_runs.keys() == large_runs.keys()
    for key, config in small_runs.items():
        assert replace(config, image_size=128) == large_runs[key], key


def test_iois_lever_ablation_reuses_the_ham10000_28_runs():
    """The ablation moves one IOIS lever at a time; its ce and default iois runs are ham10000_28's (reused)."""
    ablation = load_protocol(PROTOCOL_DIR.parent / "ablations" / "ham10000_iois_levers.toml")
    runs = ablation.plan()
    assert len(runs) == 9 * 3
    base = {json.dumps(r.config.to_dict(), sort_keys=True) for r in load_protocol("ham10000_28").plan()}
    shared = [r for r in runs if json.dumps(r.config.to_dict(), sort_keys=True) in base]
    assert sorted({r.method.method for r in shared}) == ["ce", "iois"] and len(shared) == 6
    for run in runs:
        if run.method.method == "iois":
            moved = {k: v for k, v in run.config.method_settings.items() if k != "generator"}
            assert len(moved) <= 1, moved  # one lever at a time


def test_generator_placeholder_gives_the_default_generator_name():
    from imbal_core.synth.diffusion import DiffusionTrainConfig

    runs = [r for r in load_protocol("builtin_ratios").plan() if r.method.method == "iois"]
    assert len(runs) == 9
    for run in runs:
        expected = DiffusionTrainConfig(data="synthetic", ratio=run.ratio, seed=run.seed).default_name()
        assert run.config.method_settings["generator"] == expected
    natural = [r for r in load_protocol("ham10000_28").plan() if r.method.method == "iois"]
    assert natural[0].config.method_settings["generator"] == "diffusion_ham10000_28"


BAD = {
    "unknown top-level key": (
        tiny_text(epochs="epoch = 1"),
        r"unknown top-level key\(s\) \['epoch'\]; allowed: name, ",
    ),
    "unknown method": (
        tiny_text(methods='methods = ["ce", "focall"]'),
        r"unknown method 'focall'; choose one of: ce, ",
    ),
    "ratio below 1": (tiny_text(ratios="ratios = [0.5]"), r'ratios must be numbers >= 1 .* and/or "natural"'),
    "ratio as text": (tiny_text(ratios='ratios = ["ten"]'), r"ratios must be numbers >= 1"),
    "seeds": (tiny_text(seeds="seeds = [0, -1]"), r"seeds must be a list of different integers >= 0"),
    "epochs": (tiny_text(epochs="epochs = 0"), r"epochs must be an integer in \[1, 10000\]"),
    "not TOML": ("seeds = [0, 1]\nepochs = = 2\n", r"is not valid TOML \(.*line 2"),
    "missing keys": ('methods = ["ce"]\n', r"lacks 'seeds', 'epochs', 'data'"),
    "unknown data key": (
        TINY_TEXT.replace("source =", 'paht = "x"\nsource ='),
        r"data table 1: unknown key\(s\) \['paht'\]; allowed: source, path, options",
    ),
    "unknown source": (TINY_TEXT.replace('source = "synthetic"', 'source = "cifar"'), r"unknown data source 'cifar'"),
    "unknown data option": (TINY_TEXT.replace("n_images", "n_imgs"), r"unknown data option\(s\) \['n_imgs'\]"),
    "missing data path": (
        TINY_TEXT.replace('source = "synthetic"\noptions = { n_images = 700 }', 'source = "ham10000"'),
        r"data set 'ham10000' \(ham10000\) needs a path: set path = .* or give `--path ham10000=DIR`",
    ),
    "unknown method key": (
        tiny_text(methods='methods = ["ce", { method = "focal", setting = { gamma = 1.0 } }]'),
        r"unknown key\(s\) \['setting'\]; allowed: method, settings, task, skip",
    ),
    "bad setting": (
        tiny_text(methods='methods = ["ce", { method = "focal", settings = { gamma = -1.0 } }]'),
        r"method 'focal': .*gamma",
    ),
    "one-class without task": (
        tiny_text(methods='methods = ["ce", "deep_svdd"]'),
        r"deep_svdd is a one-class method and needs a binary task.*skip = ",
    ),
    "reference missing": (tiny_text(methods='methods = ["focal"]'), r"the reference method 'ce' must be among"),
    "other reference not a method": (
        tiny_text(other_references='other_references = ["focal"]'),
        r"other_references must be different methods of the protocol .*got \['focal'\]",
    ),
    "other reference is the reference": (
        tiny_text(other_references='other_references = ["ce"]'),
        r"other than the reference 'ce'",
    ),
    "other references not a list": (
        tiny_text(other_references='other_references = "balanced_softmax"'),
        r'e.g. other_references = \["balanced_softmax"\]',
    ),
    "unknown placeholder": (
        tiny_text(methods='methods = ["ce", { method = "iois", settings = { generator = "d_{size}" } }]'),
        r"unknown placeholder .*\{data\}, \{image_size\}, \{ratio\}, \{seed\}, \{subset\}",
    ),
    "attribute placeholder": (  # issue 37: str.format reached into the object behind a name
        tiny_text(methods='methods = ["ce", { method = "iois", settings = { generator = "d_{data.__class__}" } }]'),
        r"unknown placeholder '\{data.__class__\}'",
    ),
    "lone brace": (
        tiny_text(methods='methods = ["ce", { method = "iois", settings = { generator = "d_{data" } }]'),
        r"unknown placeholder '\{'",
    ),
    "duplicate method": (tiny_text(methods='methods = ["ce", "ce"]'), r"lists \['ce'\] twice"),
    "same run twice": (
        tiny_text(
            methods='task = "asymmetric_multicolour vs symmetric_uniform"\nmethods = ["ce", '
            '{ method = "ce", task = "asymmetric_multicolour vs symmetric_uniform" }]'
        ),
        r"give the same run .*list it once",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_protocols_name_the_problem_and_the_fix(tmp_path: Path, case: str):
    text, message = BAD[case]
    with pytest.raises(ConfigError, match=message):
        load_protocol(write(tmp_path, text))


def test_a_protocol_that_is_not_utf8_is_named(tmp_path: Path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(TINY_TEXT.replace("Tiny end-to-end", "Tiny caf\u00e9 end-to-end").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte \d+ cannot be read as UTF-8\): save it as UTF-8"):
        load_protocol(path)


def test_a_protocol_that_is_a_pipe_is_named_so(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.toml")
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_protocol(tmp_path / "pipe.toml")


def test_bad_protocol_files_and_paths(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"no protocol file 'nope'; .* one of the protocols in .*builtin_ratios"):
        load_protocol("nope")
    two = TINY_TEXT.replace("[data]", "[[data]]") + '\n[[data]]\nname = "ham"\nsource = "ham10000"\npath = "x"\n'
    with pytest.raises(ConfigError, match=r"--path '/x' names no data set .*NAME one of \['synthetic', 'ham'\]"):
        load_protocol(write(tmp_path, two), ["/x"])
    assert load_protocol(write(tmp_path, two), ["ham=/y"]).data[1].path == "/y"


def test_data_errors_are_found_before_training(tmp_path: Path, store):
    missing = TINY_TEXT.replace(
        'source = "synthetic"\noptions = { n_images = 700 }', 'source = "ham10000"\npath = "no_such_folder"'
    )
    with pytest.raises(ConfigError, match=r"data set 'ham10000': .*does not exist.*--path ham10000=DIR"):
        plan(load_protocol(write(tmp_path, missing)), store)
    unreachable = tiny_text(ratios="ratios = [5000]")
    with pytest.raises(ConfigError, match=r"data set 'synthetic': .*ratio"):
        plan(load_protocol(write(tmp_path, unreachable)), store)


def test_a_plan_does_not_create_the_store_it_reads(tmp_path: Path, capsys):
    new_store = tmp_path / "not_yet"
    assert main(["--store", str(new_store), "benchmark", str(TINY), "--plan"]) == 0
    assert "to train:" in capsys.readouterr().out
    assert not new_store.exists()


def test_cli_reports_a_bad_protocol_with_exit_code_2(tmp_path: Path, capsys):
    path = write(tmp_path, tiny_text(epochs="epoch = 1"))
    assert main(["--store", str(tmp_path / "store"), "benchmark", str(path), "--plan"]) == 2
    assert "unknown top-level key(s) ['epoch']" in capsys.readouterr().err
    assert main(["--store", str(tmp_path / "store"), "benchmark", str(TINY), "--address", "x:1"]) == 2
    assert "add --executor ray" in capsys.readouterr().err
    # Ray's options without Ray would be ignored: they are named instead, for sweep too, before any training
    assert main(["--store", str(tmp_path / "store"), "benchmark", str(TINY), "--cpus-per-run", "2"]) == 2
    assert "--cpus-per-run only apply to Ray runs" in capsys.readouterr().err
    assert main(["--store", str(tmp_path / "store"), "sweep", "--methods", "ce", "--max-retries", "1"]) == 2
    assert "--max-retries only apply to Ray runs" in capsys.readouterr().err
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


# ---- planning, resuming, results --------------------------------------------------------------------------------


def test_half_finished_benchmark_resumes_and_never_retrains(tmp_path: Path, store):
    """Seed 0 finished, seed 1 stopped after its first epoch, seed 2 missing: the benchmark reuses the first, resumes
    the second from epoch 2 and trains the third; a second call trains nothing; a changed setting is a new run."""
    protocol = load_protocol(
        write(tmp_path, tiny_text(epochs="epochs = 2", seeds="seeds = [0, 1, 2]", methods='methods = ["ce"]'))
    )
    steps = plan(protocol, store)
    assert [s.state for s in steps] == ["new"] * 3
    done = train(steps[0].run.config, store)
    stop = threading.Event()
    stopped = train(
        steps[1].run.config,
        store,
        stop_event=stop,
        progress=lambda e: stop.set() if e["event"] == "epoch" and e["epoch"] == 0 else None,
    )
    assert store.get_run(stopped)["status"] == "stopped"
    done_updated = store.get_run(done)["updated"]

    epochs_trained: dict[str, list[int]] = {}

    def progress(job):
        def record(event):
            if event["event"] == "epoch":
                epochs_trained.setdefault(event["run_id"], []).append(event["epoch"])

        return nullcontext(record)

    result = run_benchmark(
        protocol, store, LocalExecutor(progress), tmp_path / "results", command="test", log=lambda line: None
    )
    assert [s.state for s in result.steps] == ["reuse", "resume", "new"]
    assert result.steps[0].run_id == done and store.get_run(done)["updated"] == done_updated
    assert result.steps[1].run_id == stopped and epochs_trained[stopped] == [1]  # resumed, not restarted
    assert epochs_trained[result.steps[2].run_id] == [0, 1] and len(epochs_trained) == 2
    assert all(s.final_status == "finished" for s in result.steps) and not result.incomplete()
    assert len(store.runs()) == 3
    version = code_version()
    assert store.get_run(done)["code_version"] == version  # each training call records the code that ran it
    text = result.markdown.read_text()
    for expected in (
        "finished before (reused)",
        "resumed now",
        "trained now",
        "Code version: `",
        "Command: `test`",
        "Wall time of this command",
        "| ce | 3 |",
        "few acc",
        "Per-class test recall",
        "| train s | median s / epoch | code |",
        "Test split: ",
        f"the same seed gives the same numbers only in the same environment): "
        f"{software_environment(torch.device('cpu'))} (3 runs)",
        f"Code that trained the runs in the tables (a run is reused when its whole config matches, whatever code "
        f"trained it): {version[:7]}",
    ):
        assert expected in text

    again = run_benchmark(protocol, store, LocalExecutor(progress), tmp_path / "results", log=lambda line: None)
    assert [s.state for s in again.steps] == ["reuse"] * 3 and len(store.runs()) == 3 and len(epochs_trained) == 2
    changed = load_protocol(
        write(
            tmp_path,
            tiny_text(
                epochs="epochs = 2", seeds="seeds = [0, 1, 2]", methods='methods = ["ce"]', batch_size="batch_size = 32"
            ),
            "q.toml",
        )
    )
    assert [s.state for s in plan(changed, store)] == ["new"] * 3


def test_a_resumed_runs_training_time_counts_its_earlier_calls():
    """The store keeps a run's last training call's duration; a run resumed after 20 min of epochs counts them."""
    from imbal_core.benchmark import _training_seconds

    history = [{"seconds": 600.0}, {"seconds": 600.0}, {"seconds": 610.0}]
    resumed = {"duration_s": 640.0, "progress": {"history": history}}  # the last call trained one epoch, then tested
    assert _training_seconds(resumed) == 1810.0
    one_call = {"duration_s": 1850.0, "progress": {"history": history}}  # data loading and the test count too
    assert _training_seconds(one_call) == 1850.0
    assert _training_seconds({"duration_s": 12.0, "progress": None}) == 12.0


def test_killed_benchmark_process_resumes_its_interrupted_run(tmp_path: Path, store):
    """SIGKILL the `benchmark` command mid-run: its run reads as interrupted and the next call resumes it."""
    path = write(tmp_path, tiny_text(epochs="epochs = 3", seeds="seeds = [0]", methods='methods = ["ce"]'))
    command = [
        sys.executable,
        "-m",
        "imbal_core",
        "--store",
        str(store.root),
        "benchmark",
        str(path),
        "--quiet",
        "--out-dir",
        str(tmp_path / "results"),
    ]
    child = subprocess.Popen(
        command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            runs = store.runs()
            if len(runs) and (store.get_run(runs["run_id"][0])["progress"] or {}).get("epoch", 0) >= 1:
                break
            assert child.poll() is None, "the benchmark ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the benchmark did not finish an epoch in time")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    run_id = store.runs()["run_id"][0]
    assert store.get_run(run_id)["status"] == "interrupted"
    protocol = load_protocol(path)
    assert [(s.state, s.run_id) for s in plan(protocol, store)] == [("resume", run_id)]
    result = run_benchmark(protocol, store, LocalExecutor(), tmp_path / "results", log=lambda line: None)
    assert result.steps[0].run_id == run_id and store.get_run(run_id)["status"] == "finished"
    assert len(store.get_run(run_id)["progress"]["history"]) == 3 and len(store.runs()) == 1


def test_skipped_and_blocked_methods_are_reported(tmp_path: Path, store):
    text = tiny_text(
        seeds="seeds = [0]",
        methods='methods = ["ce", { method = "deep_svdd", skip = "not this time" }, '
        '{ method = "iois", settings = { generator = "diffusion_{data}_{image_size}_nope" } }]',
    )
    protocol = load_protocol(write(tmp_path, text))
    result = run_benchmark(protocol, store, LocalExecutor(), tmp_path / "results", log=lambda line: None)
    assert [s.state for s in result.steps] == ["new", "skip", "blocked"]
    assert [s.run.label for s in result.steps][2] == "iois[generator=diffusion_synthetic_28_nope]"
    text = result.markdown.read_text()
    assert "`deep_svdd`: not this time" in text
    assert "diffusion generator 'diffusion_synthetic_28_nope' not found" in text
    assert [s.run_id for s in result.incomplete()] == [None]


def test_every_section_pairs_against_its_own_reference_group(tmp_path: Path, store):
    """A non-default profile shows in the group label only at a ratio: each section finds its own ce group."""
    text = tiny_text(ratios='ratios = ["natural", 10]\nprofile = "step"', seeds="seeds = [0]")
    protocol = load_protocol(write(tmp_path, text))
    result = run_benchmark(protocol, store, LocalExecutor(), tmp_path / "results", log=lambda line: None)
    markdown = result.markdown.read_text()
    assert "no paired differences" not in markdown
    assert markdown.count("Paired differences vs `ce`") == 2, markdown


def test_tiny_protocol_end_to_end_through_the_cli(tmp_path: Path, capsys):
    """tests/protocols/tiny.toml: 2 methods x 2 seeds x 1 epoch; the results files and the exit code."""
    store, out = tmp_path / "store", tmp_path / "results"
    assert main(["--store", str(store), "benchmark", str(TINY), "--out-dir", str(out), "--quiet"]) == 0
    markdown, csv = out / "tiny.md", out / "tiny.csv"
    text = markdown.read_text()
    assert f"benchmark {TINY} --out-dir {out} --quiet" in text
    assert "| ce | 2 |" in text and "| balanced_softmax | 2 |" in text
    import pandas as pd

    table = pd.read_csv(csv)
    tables = {"summary", "reference", "paired_difference", "per_class_recall", "per_class_recall_difference"}
    tables |= {"validation_curve"}
    assert set(table["table"]) == tables
    summary = table[(table["table"] == "summary") & (table["metric"] == "balanced_acc")]
    assert list(summary["method"]) == ["ce", "balanced_softmax"] and list(summary["n"]) == [2, 2]
    capsys.readouterr()
    assert main(["--store", str(store), "benchmark", str(TINY), "--out-dir", str(out), "--plan"]) == 0
    assert capsys.readouterr().out.count("finished before (reused)") == 4

    # Read back as Compare shows it: the same numbers as the live statistics of the runs in the store.
    assert results_names([out]) == ["tiny"]
    results = read_results("tiny", [out])
    assert "- Command: `" in results.header and "Code version" in results.header and "## " not in results.header
    [(data, ratio)] = results.sections()
    board, metrics = results.leaderboard(data, ratio)
    runs = finished_runs([RunStore(store)])
    live = leaderboard(runs, metrics).set_index("group")
    assert sorted(board["group"]) == sorted(live.index) and board["group"].iloc[0].startswith("ce · ")  # ce first
    live = live.loc[board["group"]]
    for metric in ("balanced_acc", "few_acc"):
        assert np.allclose(board[metric], live[metric]) and np.allclose(board[f"{metric}_sd"], live[f"{metric}_sd"])
    assert results.reference(data, ratio) == board["group"].iloc[0]  # named in the file
    # written before the reference was named (and before other references): no reference rows or column
    table = results.table
    old_file = table[(table["table"] != "reference") & table["reference"].isin(["", board["group"].iloc[0]])]
    old_file = old_file.assign(reference="")
    assert replace(results, table=old_file).reference(data, ratio) == board["group"].iloc[0]
    assert len(replace(results, table=old_file).paired_differences(data, ratio)) == len(
        results.paired_differences(data, ratio)
    )
    paired = results.paired_differences(data, ratio)
    assert set(paired["group"]) == {board["group"].iloc[1]} and set(paired["n_pairs"]) == {2}
    # other_references: every method is also paired against balanced_softmax (ce − bs is −(bs − ce))
    assert results.references(data, ratio) == list(board["group"].iloc[:2])
    reverse = results.paired_differences(data, ratio, board["group"].iloc[1])
    assert set(reverse["group"]) == {board["group"].iloc[0]} and set(reverse["n_pairs"]) == {2}
    both = paired.set_index("metric")["mean_diff"].dropna()
    assert np.allclose(reverse.set_index("metric")["mean_diff"][both.index], -both)
    assert "Paired differences vs `balanced_softmax`" in text and "`ce` and `balanced_softmax` are paired" in text
    change = results.recall_change(data, ratio)
    assert change["class_label"].str.endswith(")").all() and change["change"].abs().max() <= 100
    assert set(change["method"]) == {board["group"].iloc[1]}
    # ... and against the other reference: ce − balanced_softmax, class by class
    reverse = results.recall_change(data, ratio, board["group"].iloc[1]).set_index("class")
    assert set(reverse["method"]) == {board["group"].iloc[0]}
    assert np.allclose(reverse.loc[change["class"], "change"], -change["change"].to_numpy())
    assert replace(results, table=old_file).recall_change(data, ratio, board["group"].iloc[1]).empty
    curves = results.validation_curves(data, ratio)
    store_runs = RunStore(store).runs(status="finished")
    first_epoch = [
        json.loads(p)["history"][0]["val_balanced_acc"] for p in store_runs[store_runs["method"] == "ce"]["progress"]
    ]
    ce_curve = curves[curves["group"] == board["group"].iloc[0]]
    assert list(ce_curve["epoch"]) == [1] and list(ce_curve["n"]) == [2]  # tiny.toml: 1 epoch, 2 seeds
    assert np.isclose(ce_curve["mean"].iloc[0], np.mean(first_epoch))
    assert "Validation balanced_acc by epoch" in text and "| ce | 2 | 1 | " in text

    # A file written before the curves were recorded (no epoch column) is still listed and read.
    older = tmp_path / "older"
    older.mkdir()
    (older / "tiny.md").write_text(markdown.read_text())
    written = pd.read_csv(csv, keep_default_na=False)
    first_columns = written.query("table != 'validation_curve' and reference in ['', @board.group.iloc[0]]")
    first_columns.drop(columns=["epoch", "stage", "reference", "p", "p_holm"]).to_csv(older / "tiny.csv", index=False)
    assert results_names([older]) == ["tiny"]
    assert read_results("tiny", [older]).validation_curves(data, ratio).empty
    with pytest.raises(DataError, match="benchmark nope"):
        read_results("nope", [out])


def test_provided_datasets_load_without_files():
    """What a Ray worker relies on: a data set handed over by the driver is returned for its load arguments, even
    for a path that does not exist here; a task still applies."""
    from imbal_core.data import dataset_key, load_dataset, provide_datasets

    dataset = load_dataset("synthetic", image_size=28, n_images=700)
    key = dataset_key("ham10000", "/nowhere/ham10000", 28, 0, {})
    with provide_datasets({key: dataset}):
        assert load_dataset("ham10000", path="/nowhere/ham10000", image_size=28) is dataset
        binary = load_dataset("ham10000", path="/nowhere/ham10000", task="asymmetric_multicolour vs symmetric_uniform")
        assert binary.num_classes == 2
    with pytest.raises(DataError, match="does not exist|outside the allowed"):
        load_dataset("ham10000", path="/nowhere/ham10000", image_size=28)


def test_store_export_and_import_of_a_run(tmp_path: Path):
    """The Ray driver's import: a run trained in one store arrives whole in another (row, metrics, files)."""

    source, target = RunStore(tmp_path / "worker"), RunStore(tmp_path / "driver")
    config = load_protocol(TINY).plan()[0].config
    run_id = target.create_run(config.to_dict(), tag="mine")
    source.create_run(config.to_dict(), tag="theirs", run_id=run_id)
    train(config, source, run_id=run_id)
    target.import_run(source.export_run(run_id))
    mine, theirs = target.get_run(run_id), source.get_run(run_id)
    assert mine["status"] == "finished" and mine["summary"] == theirs["summary"] and mine["tag"] == "mine"
    assert target.tidy([run_id]).drop(columns="tag").equals(source.tidy([run_id]).drop(columns="tag"))
    assert sorted(p.name for p in target.run_dir(run_id).iterdir()) == sorted(
        p.name for p in source.run_dir(run_id).iterdir()
    )
    assert [r["run_id"] for r in target.find_runs(config.to_dict())] == [run_id]


def test_interrupted_benchmark_names_the_run_it_stopped(tmp_path: Path, store):
    """Ctrl-C during a new run: the results file lists that run (stopped, resumable) by id and the next one as not
    reached, and the next call resumes the stopped run instead of starting another."""
    protocol = load_protocol(
        write(tmp_path, tiny_text(epochs="epochs = 2", seeds="seeds = [0, 1, 2]", methods='methods = ["ce"]'))
    )

    def interrupt_second_run(job):
        def progress(event):
            if event["event"] == "epoch" and job.config.seed == 1:
                raise KeyboardInterrupt

        return nullcontext(progress)

    with pytest.raises(RunInterrupted):
        run_benchmark(protocol, store, LocalExecutor(interrupt_second_run), tmp_path / "results", log=lambda line: None)
    [stopped] = [r for r in store.runs().itertuples() if r.status == "stopped"]
    text = (tmp_path / "results" / f"{protocol.name}.md").read_text()
    assert f"`{stopped.run_id}` | stopped | interrupted (resumes next time)" in text
    assert "| 2 | — | — | not reached (the command ended first; the next call trains it) |" in text  # not started
    again = plan(protocol, store)
    assert [s.state for s in again] == ["reuse", "resume", "new"] and again[1].run_id == stopped.run_id


def test_one_benchmark_at_a_time_on_a_store(tmp_path: Path, store):
    """Two benchmarks on one store would both train a missing run: the second is refused before it plans anything."""
    protocol = load_protocol(write(tmp_path, tiny_text(seeds="seeds = [0]", methods='methods = ["ce"]')))
    with (
        store.exclusive("benchmark"),
        pytest.raises(RunError, match=rf"benchmark is already running .*pid {os.getpid()}"),
    ):
        run_benchmark(protocol, store, LocalExecutor(), tmp_path / "results", log=lambda line: None)
    assert store.runs().empty and not (tmp_path / "results").exists()
    result = run_benchmark(protocol, store, LocalExecutor(), tmp_path / "results", log=lambda line: None)
    assert [s.final_status for s in result.steps] == ["finished"]  # the lock ended with the first holder


def test_stop_after_starts_no_run_after_the_time_budget(tmp_path: Path, store, capsys):
    """--stop-after: the run under way finishes, no other starts, the results file is written and says what is left."""
    protocol = write(tmp_path, tiny_text(seeds="seeds = [0, 1]", methods='methods = ["ce"]'))
    out = tmp_path / "results"
    args = ["--store", str(store.root), "benchmark", str(protocol), "--out-dir", str(out), "--quiet"]
    assert main([*args, "--stop-after", "0.0001"]) == 2
    assert "1 of the protocol's runs have not finished (not reached in the time given" in capsys.readouterr().err
    assert list(store.runs()["status"]) == ["finished"]
    assert "not reached (the command ended first; the next call trains it)" in (out / "p.md").read_text()
    capsys.readouterr()
    assert main([*args, "--results-only"]) == 0 and len(store.runs()) == 1  # trains nothing, writes the file
    assert "1 of the protocol's runs have not finished; the same command without --results-only" in (
        capsys.readouterr().out
    )
    assert "--results-only`" in (out / "p.md").read_text() and "not reached" in (out / "p.md").read_text()
    assert main(args) == 0 and len(store.runs()) == 2  # the next call trains the rest
    capsys.readouterr()
    assert main([*args, "--stop-after", "5", "--executor", "ray"]) == 2
    assert "--stop-after works with --executor local" in capsys.readouterr().err
    assert main([*args, "--stop-after", "0"]) == 2
    assert "must be > 0" in capsys.readouterr().err


def test_the_references_train_first(tmp_path: Path, store):
    """A benchmark stopped part-way can pair what it finished: `ce` and the other references go before the rest,
    which keep the protocol's order."""

    class Recorder:  # an executor that trains nothing and notes the order it was given
        name, description = "local", "recorder"
        methods: list[str] = []

        def run(self, jobs, store, tag="", on_done=None):
            self.methods = [job.config.method for job in jobs]
            return []

    methods = 'methods = ["focal", "balanced_softmax", "weighted_ce", "ce"]'
    text = tiny_text(seeds="seeds = [0]", methods=methods, other_references='other_references = ["balanced_softmax"]')
    recorder = Recorder()
    run_benchmark(load_protocol(write(tmp_path, text)), store, executor=recorder, out_dir=tmp_path / "results")
    assert recorder.methods == ["balanced_softmax", "ce", "focal", "weighted_ce"]


def test_validation_curve_table_uses_each_methods_own_budget_and_last_stage():
    """A two-stage method trains more epochs: its columns are its own, its best epoch is in its last stage."""
    from imbal_core.benchmark import _validation_curves

    def curve(group: str, stages: list[str], means: list[float]) -> pd.DataFrame:
        epochs = range(1, len(means) + 1)
        return pd.DataFrame(
            {"group": group, "metric": "val_balanced_acc", "epoch": epochs, "stage": stages, "n": 3, "mean": means}
        ).assign(sd=0.01)

    one = curve("ce · 8 ep", ["train"] * 8, [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.62])
    two = curve(
        "crt · 8 ep", ["representation"] * 8 + ["classifier"] * 2, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.65, 0.4, 0.45]
    )
    tidy: list[dict] = []
    lines = _validation_curves(pd.concat([one, two]), {"data": "d", "ratio": "10"}, tidy)
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith(("| ce ", "| crt "))}
    assert rows["ce"] == "| ce | 3 | 8 | 0.200 (2) | 0.400 (4) | 0.550 (6) | 0.620 (8) | 0.620 (8) |"
    # crt: 10 epochs; best 0.450 at epoch 10 in its last stage, not the first stage's 0.700 at epoch 7
    crt = "| crt | 3 | 10 (representation + classifier) | 0.200 (2) | 0.500 (5) | 0.650 (8) | 0.450 (10) | 0.450 (10) |"
    assert rows["crt"] == crt
    assert len(tidy) == 18 and {row["stage"] for row in tidy} == {"train", "representation", "classifier"}


@pytest.fixture
def make_pretrained(monkeypatch):
    """scripts/make_pretrained.py as a module."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # the script imports its neighbour compare_methods
    spec = importlib.util.spec_from_file_location("make_pretrained", ROOT / "scripts" / "make_pretrained.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_store_shrunk_without_weights_still_gives_the_same_results_files(tmp_path: Path, store, make_pretrained):
    """`make_pretrained.py --shrink --no-weights` (a benchmark's store kept for its results): no model files
    are left, kept indices are int32, and the results files written from what is left are the same as before."""
    protocol = write(tmp_path, tiny_text(methods='methods = ["ce"]'))
    args = ["--store", str(store.root), "benchmark", str(protocol), "--quiet"]
    assert main([*args, "--out-dir", str(tmp_path / "before")]) == 0
    assert list(store.root.rglob("*.safetensors")), "a finished run here has its weights before shrinking"
    kept_file = next(store.root.rglob("kept_indices.npy"))
    kept = np.load(kept_file)
    np.save(kept_file, kept.astype(np.int64))  # as runs made before the trainer wrote int32
    make_pretrained.shrink_store(store, keep_models=False)
    assert not list(store.root.rglob("*.safetensors"))
    assert np.load(kept_file).dtype == np.int32 and np.array_equal(np.load(kept_file), kept)
    for predictions in store.root.rglob("predictions.npz"):
        with np.load(predictions) as archive:
            assert archive["embeddings"].size == 0
    assert main([*args, "--results-only", "--out-dir", str(tmp_path / "after")]) == 0
    assert (tmp_path / "after" / "p.csv").read_text() == (tmp_path / "before" / "p.csv").read_text()


def test_runs_shipped_from_a_benchmark_store_keep_weights_and_validation_features(tmp_path: Path, make_pretrained):
    """`make_pretrained.py --ship-from STORE --runs ...` (real-data models for Explain): the run arrives with float16
    weights, validation features and head weights but no test features, and a manifest entry with its command; shipping
    the same method, data, size and seed again replaces it, while a shipped run that differs only in size stays."""
    from imbal_core.engine import train

    source, shipped = RunStore(tmp_path / "benchmark_store"), RunStore(tmp_path / "pretrained")
    first, second = (train(tiny_config(image_size=32, seed=0), source) for _ in range(2))
    other_size = train(tiny_config(seed=0), shipped)
    write_json(
        shipped.root / "manifest.json",
        {"runs": [{"run_id": other_size, "method": "ce", "data": "synthetic", "epochs": 1, "seed": 0, "command": "c"}]},
    )
    make_pretrained.ship_runs(source, [first], shipped, "benchmark command")
    model = load_checkpoint(shipped.run_dir(first) / MODEL_FILE)["model"]
    assert all(t.dtype == torch.float16 for t in model.values() if t.is_floating_point())
    with np.load(shipped.run_dir(first) / "predictions.npz") as saved:
        assert saved["embeddings"].size == 0 and saved["val_embeddings"].size > 0 and saved["head_weight"].ndim == 2
    assert not list(shipped.run_dir(first).glob("last.safetensors"))

    make_pretrained.ship_runs(source, [second], shipped, "benchmark command")
    entries = read_json(shipped.root / "manifest.json")["runs"]
    assert [(e["run_id"], e.get("image_size", 28)) for e in entries] == [(other_size, 28), (second, 32)]
    assert entries[1]["command"] == "benchmark command" and entries[1]["weights_kept"]
    assert not shipped.has_run(first) and shipped.has_run(other_size)


def test_a_run_archive_outlives_its_store(tmp_path: Path, capsys):
    """`--archive DIR`: every finished run is copied there without weights; on a new machine (an empty store) the
    plan counts the archived runs as reused, the benchmark restores them instead of training them again, and the
    results files are the same. A copy that was cut short (its temporary folder) is never restored."""
    archive = tmp_path / "tiny_runs"
    first, second = tmp_path / "store", tmp_path / "new_machine"

    def benchmark(store: Path, out: str, *extra: str) -> int:
        return main(
            [
                "--store",
                str(store),
                "benchmark",
                str(TINY),
                "--archive",
                str(archive),
                "--quiet",
                *extra,
                "--out-dir",
                str(tmp_path / out),
            ]
        )

    assert benchmark(first, "first") == 0
    trained = set(RunStore(first).runs()["run_id"])
    assert sorted(p.name for p in archive.iterdir()) == sorted(trained)  # 2 methods x 2 seeds
    assert list(first.rglob("*.safetensors")) and not list(archive.rglob("*.safetensors"))
    for predictions in archive.rglob("predictions.npz"):
        with np.load(predictions) as saved:
            assert saved["embeddings"].size == 0 and saved["probs"].shape[0] > 0
    (archive / ".half-copied.tmp").mkdir()  # what a copy killed before its rename leaves

    capsys.readouterr()
    assert main(["--store", str(second), "benchmark", str(TINY), "--archive", str(archive), "--plan"]) == 0
    assert capsys.readouterr().out.count("finished before (reused)") == 4 and not second.exists()
    assert benchmark(second, "second") == 0
    restored = RunStore(second).runs()
    assert set(restored["run_id"]) == trained and set(restored["status"]) == {"finished"}  # none trained again
    assert (tmp_path / "second" / "tiny.csv").read_text() == (tmp_path / "first" / "tiny.csv").read_text()
    assert "finished before (reused), restored from the archive" in (tmp_path / "second" / "tiny.md").read_text()


def test_a_plan_says_why_archived_runs_for_another_data_folder_train_again(tmp_path: Path, capsys):
    """A run matches only its own data folder (another folder may hold other files), so a clone whose data is
    elsewhere trains the archived runs again: `--plan` says so and names the --path that would reuse them."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 90), ("val", 30), ("test", 30)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3)[:, None]
    for folder in ("here", "there"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "tiny.npz", **arrays)
    text = tiny_text(methods='methods = ["ce"]', seeds="seeds = [0]").replace(
        'source = "synthetic"\noptions = { n_images = 700 }', 'source = "medmnist"\npath = "here/tiny.npz"'
    )
    protocol, archive = write(tmp_path, text), tmp_path / "runs"
    args = ["benchmark", str(protocol), "--archive", str(archive), "--quiet"]
    assert main(["--store", str(tmp_path / "store"), *args, "--out-dir", str(tmp_path / "out")]) == 0
    assert len(list(archive.iterdir())) == 1

    capsys.readouterr()
    new_machine = ["--store", str(tmp_path / "new_machine"), *args]
    assert main([*new_machine, "--path", f"medmnist={tmp_path / 'there' / 'tiny.npz'}", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "to train: ce" in out and "finished before" not in out
    assert "the archive has 1 of the runs to train with the same settings but data from another folder" in out
    assert f"--path medmnist={tmp_path / 'here' / 'tiny.npz'} to reuse them" in out
    assert main([*new_machine, "--path", f"medmnist={tmp_path / 'here' / 'tiny.npz'}", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "finished before (reused)" in out and "data from another folder" not in out


def test_an_archived_data_path_beside_the_checkout_is_written_relative_to_it():
    """So a clone in another folder, with the data beside it as CI has it, matches the archived runs."""
    from imbal_core.runs.archive import _portable, local_config

    # resolved, as a protocol resolves it (`../shared` may be a link to elsewhere)
    beside = {"method": "ce", "data_path": str((ROOT.parent / "shared" / "data" / "ham10000").resolve())}
    assert _portable(beside) == {"method": "ce", "data_path": "<checkout>/../shared/data/ham10000"}
    assert local_config(_portable(beside)) == beside
    assert _portable({"data_path": None}) == {"data_path": None}


def test_results_name_the_test_split_and_warn_when_runs_were_tested_on_different_images():
    """A section whose runs saw different test images would compare test sets, not methods: the file says so."""
    from types import SimpleNamespace

    from imbal_core.benchmark import _posthoc_choices, _test_split

    def result(run_id, support, posthoc=None):
        metrics = {"per_class": {"support": support}, "posthoc": posthoc}
        return SimpleNamespace(run_id=run_id, group="tau_norm · 30 ep", class_names=["a", "b"], metrics=metrics)

    same = [result("r0", [1200, 30], {"tau": 0.9}), result("r1", [1200, 30], {"tau": 0.0})]
    assert _test_split(same) == ["Test split: 1,230 images (a 1,200, b 30).", ""]
    runs = pd.DataFrame({"run_id": ["r0", "r1"], "seed": [0, 1]})
    assert _posthoc_choices(same, runs) == [
        "Set after training (each method's `finalize`; `tau_norm` chooses its tau on the validation split): "
        "`tau_norm` tau: 0.9 (seed 0), 0 (seed 1).",
        "",
    ]
    resplit = [result("r0", [1200, 30]), result("r1", [1190, 40])]
    (warning, _) = _test_split(resplit)
    assert warning.startswith("**Warning: these runs were not tested on the same images** (2 different test splits")
    assert "a 1,190, b 40" in warning and "a 1,200, b 30" in warning
    assert _posthoc_choices(resplit, runs) == []
    same_recipe = [result("r0", [1200, 30], {"recipe": "builtin"}), result("r1", [1200, 30], {"recipe": "builtin"})]
    assert _posthoc_choices(same_recipe, runs)[0].endswith("`tau_norm` recipe: builtin (every seed).")


def test_benchmark_with_pretrained_weights_is_named_apart_and_records_them(tmp_path: Path, capsys):
    """`benchmark --pretrained FILE`: the from-scratch results are not overwritten; the results say which weights
    (and their digest) started the runs; a protocol's own relative weights path is read beside the file."""
    import hashlib

    import timm
    from safetensors.torch import save_file

    file = tmp_path / "small.safetensors"
    save_file(timm.create_model("resnet10t", channels=(32, 64, 128, 256), stem_width=16).state_dict(), str(file))
    store, out = tmp_path / "store", tmp_path / "results"
    command = ["--store", str(store), "benchmark", str(TINY), "--out-dir", str(out), "--quiet", "--pretrained"]
    assert main([*command, str(file)]) == 0
    text = (out / "tiny_small.md").read_text()
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    assert f"- Starting weights: weights small.safetensors (SHA-256 {digest}..." in text
    assert not (out / "tiny.md").exists()

    with_weights = TINY_TEXT.replace("image_size = 28", 'image_size = 28\npretrained = "small.safetensors"')
    protocol = write(tmp_path, with_weights)
    assert load_protocol(protocol).training["pretrained"] == str(file)


def test_results_side_by_side_prints_each_files_numbers(tmp_path: Path, capsys):
    """scripts/results_side_by_side.py (the README's 28 vs 128 px table): each file's own mean, sd and paired
    differences; a method a file lacks is "—"; a single pair has no interval."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("side", ROOT / "scripts" / "results_side_by_side.py")
    side = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(side)
    base = {"data": "ham", "ratio": "natural", "metric": "balanced_acc", "class": None}
    small = pd.DataFrame(
        [
            {**base, "table": "summary", "method": "ce", "mean": 0.5, "sd": 0.01},
            {**base, "table": "summary", "method": "x", "mean": 0.6, "sd": 0.02},
            {
                **base,
                "table": "paired_difference",
                "method": "x",
                "mean": 0.1,
                "low": 0.05,
                "high": 0.15,
                "reference": "ce · 30 ep",
            },
        ]
    )
    large = pd.DataFrame(
        [
            {**base, "table": "summary", "method": "ce", "mean": 0.55, "sd": float("nan")},
            {
                **base,
                "table": "paired_difference",
                "method": "y",
                "mean": -0.2,
                "low": float("nan"),
                "high": float("nan"),
                "reference": "ce · 30 ep",
            },
            {**base, "table": "summary", "method": "y", "mean": 0.35, "sd": float("nan")},
        ]
    )
    lines = side.table({"small": small, "large": large}, "balanced_acc", binary=False)
    assert lines[0] == "| method | small: balanced_acc | small: − ce | large: balanced_acc | large: − ce |"
    assert lines[2:] == [
        "| `ce` | 0.500 ± 0.010 | — | 0.550 ± — | — |",
        "| `x` | 0.600 ± 0.020 | +0.100 [+0.050, +0.150] | — | — |",
        "| `y` | — | — | 0.350 ± — | -0.200 |",
    ]
    # a method whose predictions are another's byte for byte (a file's "identical" rows) is marked as that one
    copy = {**base, "table": "identical", "method": "y", "group": "y · 30 ep", "reference": "ce · 30 ep"}
    lines = side.table({"large": pd.concat([large, pd.DataFrame([copy])])}, "balanced_acc", binary=False)
    assert lines[-1].startswith("| `y` (= `ce`) | 0.350 ± — |")


def test_logit_adjust_is_marked_as_balanced_softmax_wherever_the_shipped_results_show_it():
    """Issue 38: at tau = 1 `logit_adjust` is `balanced_softmax`'s loss (the protocols keep the paper's tau), so
    the files mark it, in the leaderboard and beside it, and Compare's files view reads the pair back."""
    from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR

    for name in ("ham10000_28", "builtin_ratios"):
        results = read_results(name, [SHIPPED_RESULTS_DIR])
        for data, ratio in results.sections():
            groups = results.section(data, ratio, "summary")["group"]
            pairs = {group.split(" · ")[0]: other.split(" · ")[0] for group, other in results.identical(data, ratio)}
            if groups.str.startswith("logit_adjust · ").any():
                assert pairs == {"logit_adjust": "balanced_softmax"}, (name, data, ratio)
        markdown = (SHIPPED_RESULTS_DIR / f"{name}.md").read_text()
        assert "| logit_adjust (= balanced_softmax) | 3 |" in markdown
        assert "`logit_adjust` = `balanced_softmax`. The same model counted twice" in markdown


def test_the_shipped_ranking_reads_back_as_the_runs_give_it():
    """Issue 38: the Friedman / Nemenyi ranking across data sets, ratios and seeds is written to the results files
    (rows and a critical-difference SVG) and read back by Compare as `rank_groups` computes it from the runs."""
    from imbal_core.benchmark import _by_method
    from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR
    from imbal_core.stats import rank_groups
    from imbal_core.utils import PRETRAINED_DIR

    results = read_results("builtin_ratios", [SHIPPED_RESULTS_DIR])
    rankings = {r.metric: r for r in results.rankings()}
    assert set(rankings) == {"balanced_acc", "auroc"}
    assert all((SHIPPED_RESULTS_DIR / f"builtin_ratios_ranks_{m}.svg").is_file() for m in rankings)
    assert "## Ranking by balanced acc across data sets, ratios and seeds" in results.csv.with_suffix(".md").read_text()
    runs = finished_runs([RunStore(PRETRAINED_DIR)])
    multi_class = runs[runs["auroc"].isna() & runs["run_id"].isin(set(_builtin_ratio_run_ids(results)))]
    again = rank_groups(_by_method(multi_class), "balanced_acc")
    shipped = rankings["balanced_acc"]
    assert again is not None and again.n_blocks == shipped.n_blocks == 9
    pd.testing.assert_series_equal(again.mean_ranks, shipped.mean_ranks, check_names=False)
    assert again.p == pytest.approx(shipped.p)
    assert again.critical_difference == pytest.approx(shipped.critical_difference)
    order = list(shipped.mean_ranks.index)
    pd.testing.assert_frame_equal(again.p_values.loc[order, order], shipped.p_values, check_names=False)


def _builtin_ratio_run_ids(results) -> list[str]:
    """The run ids the results file's markdown lists in its runs table."""
    return re.findall(r"\| `(\d{8}-\d{6}-[a-z_]+-[0-9a-f]{6})` \|", results.csv.with_suffix(".md").read_text())


def test_only_trains_a_slice_of_the_protocol(tmp_path: Path, capsys):
    """Issue 40: `benchmark --only method=...,seed=...` trains that slice (e.g. to retrain one archived run) and
    exits 0 with the rest unfinished; a slice that matches nothing, or a key it does not know, is an error."""
    store, out = tmp_path / "store", tmp_path / "results"
    base = ["--store", str(store), "benchmark", str(TINY), "--out-dir", str(out), "--quiet"]
    assert main([*base, "--only", "method=balanced_softmax", "--only", "seed=1"]) == 0
    assert "--only: 1 of them in the slice train now" in capsys.readouterr().out
    runs = RunStore(store).runs(status="finished")
    assert list(zip(runs["method"], runs["seed"])) == [("balanced_softmax", 1)]
    from imbal_core.protocol import parse_only

    assert parse_only(["method=style_kd,crt,seed=0", "ratio=natural"]) == {
        "method": {"style_kd", "crt"},
        "seed": {"0"},
        "ratio": {"natural"},
    }
    assert main([*base, "--only", "method=ce,nope"]) == 2  # a typo beside a real name is not dropped silently
    assert "does not have: method=nope" in capsys.readouterr().err
    assert main([*base, "--only", "sed=1"]) == 2
    assert "KEY one of method, seed, ratio, data" in capsys.readouterr().err

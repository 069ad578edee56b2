"""The CLI end to end on tiny data: train with progress, runs, export, errors with exit code 2."""

from __future__ import annotations

import csv
from pathlib import Path

from imbal_core.cli import main

TINY = ["--data-option", "n_images=700", "--batch-size", "64", "--device", "cpu"]


def test_train_then_export(tmp_path: Path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert main(store + ["train", "--method", "focal", "--epochs", "1", "--set", "gamma=1.5", *TINY]) == 0
    out = capsys.readouterr()
    assert "finished" in out.out and "epoch" in out.err  # tqdm draws on stderr
    assert main(store + ["runs"]) == 0
    listed = capsys.readouterr().out
    assert "focal" in listed and " 1/1 " in listed  # epochs done / epochs
    from imbal_core.engine import TrainConfig
    from imbal_core.runs import RunStore

    RunStore(tmp_path / "store").create_run(TrainConfig(method="ce").to_dict())
    assert main(store + ["runs"]) == 0  # a finished run beside one without a summary or progress yet
    listed = capsys.readouterr().out
    assert "queued" in listed and f" 0/{TrainConfig(method='ce').epochs} " in listed
    assert main(store + ["export", "--out", str(tmp_path / "tidy.csv")]) == 0
    with open(tmp_path / "tidy.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"focal"}
    assert any(r["metric"] == "recall" and r["class"] == "red_lacunae" for r in rows)


def test_sweep(tmp_path: Path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert (
        main(
            store
            + [
                "sweep",
                "--methods",
                "ce,balanced_softmax",
                "--ratios",
                "10",
                "--seeds",
                "0,1",
                "--epochs",
                "1",
                "--quiet",
                *TINY,
            ]
        )
        == 0
    )
    assert "4 finished, 0 failed" in capsys.readouterr().out


def test_listings(capsys):
    assert main(["methods"]) == 0
    assert "ldam_drw" in capsys.readouterr().out
    assert main(["methods", "cb_loss"]) == 0
    assert "effective number" in capsys.readouterr().out.lower()
    assert main(["datasets"]) == 0
    assert "HAM10000_metadata.csv" in capsys.readouterr().out


def test_bad_input_exits_2_with_message(tmp_path: Path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert main(store + ["train", "--ratio", "0.5", *TINY]) == 2
    assert "ratio must be a finite number >= 1" in capsys.readouterr().err
    assert main(store + ["train", "--method", "focal", "--set", "gama=2", *TINY]) == 2
    assert "no setting(s) ['gama']" in capsys.readouterr().err
    assert main(store + ["train", "--data", "ham10000", "--path", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err

"""Trust: bad input is a clear error (exit code 2, the problem and the fix named), never a traceback or a silent
surprise, and nothing is created before the input is checked (issue 11)."""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import threading
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from imbal_core.cli import build_parser, main
from imbal_core.data import load_dataset
from imbal_core.data.images import read_image
from imbal_core.errors import ConfigError, DataError, RunError
from imbal_core.methods.base import Setting
from imbal_core.runs import RunStore
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--batch-size", "64", "--device", "cpu", "--epochs", "1", "--quiet"]
TINY = ["--data-option", "n_images=700", *QUICK]  # the built-in data, small


def cli(tmp_path: Path, *argv: str) -> int:
    """The CLI on the test's own run store."""
    return main(["--store", str(tmp_path / "store"), *argv])


def no_runs(tmp_path: Path) -> bool:
    return RunStore(tmp_path / "store").runs().empty


def error_of(capsys: pytest.CaptureFixture) -> str:
    return capsys.readouterr().err


def write_npz(path: Path, labels: dict[str, np.ndarray], images: np.ndarray | None = None) -> Path:
    """A MedMNIST-layout .npz with the given labels per split (and random 28 px images unless given)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, split_labels in labels.items():
        arrays[f"{split}_labels"] = split_labels
        arrays[f"{split}_images"] = (
            images if images is not None else rng.integers(0, 255, (len(split_labels), 28, 28, 3), dtype=np.uint8)
        )
    np.savez(path, **arrays)
    return path


def two_classes(n: int) -> np.ndarray:
    return np.arange(n) % 2


# ---- A: accepted nonsense becomes an error ---------------------------------------------------------------------------


def test_one_class_npz_is_an_error_not_a_perfect_score(tmp_path: Path, capsys):
    one_class = write_npz(
        tmp_path / "one.npz", {s: np.zeros(n, dtype=np.int64) for s, n in (("train", 40), ("val", 10), ("test", 10))}
    )
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(one_class), *QUICK) == 2
    assert "at least 2 classes" in error_of(capsys)
    one_class_val = write_npz(
        tmp_path / "val.npz", {"train": two_classes(40), "val": np.zeros(10, dtype=np.int64), "test": two_classes(10)}
    )
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(one_class_val), *QUICK) == 2
    message = error_of(capsys)
    assert "val split" in message and "at least 2 classes" in message
    assert no_runs(tmp_path)


def test_path_without_a_file_source_is_an_error(tmp_path: Path, capsys):
    assert cli(tmp_path, "train", "--path", str(tmp_path), *TINY) == 2  # --data defaults to synthetic
    message = error_of(capsys)
    assert "synthetic" in message and "--data" in message and "ham10000" in message
    assert no_runs(tmp_path)


@pytest.mark.parametrize("value", ["true", "abc", "[1]"])
def test_method_settings_are_checked_by_type(tmp_path: Path, capsys, value: str):
    assert cli(tmp_path, "train", "--method", "focal", "--set", f"gamma={value}", *TINY) == 2
    message = error_of(capsys)
    assert "'gamma'" in message and "a number in [0.0, 5.0]" in message and "gamma=2.0" in message
    assert no_runs(tmp_path)


def test_setting_types():
    gamma, steps, flag, name = (
        Setting("gamma", 2.0, "", low=0.0, high=5.0),
        Setting("steps", 25, "", low=1, high=100),
        Setting("ois", True, ""),
        Setting("tool", "fourier", "", choices=("fourier", "adain")),
    )
    assert gamma.coerce(1) == 1.0 and isinstance(gamma.coerce(1), float)
    assert gamma.coerce("1.5") == 1.5  # text from the app's text boxes and the scripts' "method[key=value]"
    assert steps.coerce("30") == 30 and steps.coerce(np.int64(30)) == 30
    assert flag.coerce("false") is False and flag.coerce(1) is True
    for setting, bad in (
        (gamma, True),
        (gamma, "abc"),
        (gamma, float("nan")),
        (gamma, 6.0),
        (steps, 2.5),
        (steps, False),
        (flag, 2),
        (flag, "maybe"),
        (name, "histogramm"),
        (name, True),
    ):
        with pytest.raises(ConfigError, match=f"setting '{setting.name}' must be"):
            setting.coerce(bad)


def test_unreachable_ratio_is_an_error_unless_capped(tmp_path: Path, capsys):
    assert cli(tmp_path, "train", "--ratio", "1e9", *TINY) == 2
    message = error_of(capsys)
    assert "largest reachable ratio" in message and "--fit cap" in message
    assert no_runs(tmp_path)
    assert cli(tmp_path, "train", "--ratio", "1e9", "--fit", "cap", *TINY) == 0
    assert "achieved ratio" in capsys.readouterr().out


# ---- B: tracebacks that become messages ------------------------------------------------------------------------------


def test_npz_with_python_objects_or_negative_labels(tmp_path: Path, capsys):
    splits = {"train": 40, "val": 10, "test": 10}
    object_labels = write_npz(
        tmp_path / "objects.npz", {s: np.array([{"c": 1}] * n, dtype=object) for s, n in splits.items()}
    )
    object_images = write_npz(
        tmp_path / "object_images.npz",
        {s: two_classes(n) for s, n in splits.items()},
        images=np.array([None] * 10, dtype=object),
    )
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"train_images": [1, 2]}))
    for file in (object_labels, object_images, pickled):
        assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(file), *QUICK) == 2
        message = error_of(capsys)
        assert "numpy.savez" in message and "allow_pickle" not in message
    negative = write_npz(tmp_path / "negative.npz", {s: two_classes(n) - 1 for s, n in splits.items()})
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(negative), *QUICK) == 2
    assert "negative" in error_of(capsys)
    # probe S308, T313: a text file was called "pickled objects"; an empty split was told to save integer labels
    text = tmp_path / "text.npz"
    text.write_text("just some text\n")
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(text), *QUICK) == 2
    assert "(a text file, or pickled Python objects" in error_of(capsys)
    empty = write_npz(
        tmp_path / "empty.npz", {"train": two_classes(40), "val": two_classes(10), "test": two_classes(0)}
    )
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(empty), *QUICK) == 2
    assert "the test split holds no images" in error_of(capsys)
    assert no_runs(tmp_path)


def test_store_that_is_a_file(tmp_path: Path, capsys):
    file = tmp_path / "store.txt"
    file.write_text("not a folder")
    assert main(["--store", str(file), "runs"]) == 2
    assert "is a file" in error_of(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders, so this cannot be tested as root")
def test_read_only_store(tmp_path: Path, capsys):
    RunStore(tmp_path / "store")
    (tmp_path / "store").chmod(0o555)
    try:
        assert cli(tmp_path, "train", *TINY) == 2
        assert "not writable" in error_of(capsys)
    finally:
        (tmp_path / "store").chmod(0o755)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--data-option", "n_image=700"], "unknown data option(s) ['n_image']"),
        (["--data-option", "n_images=abc"], "n_images must be an integer >= 7"),
        (["--data-option", "n_images=5"], "n_images must be an integer >= 7"),
        (["--image-size", "16"], "drawn at 28 to 512 pixels"),
        (["--device", "bogus"], "device must be auto"),
        (["--split-seed", "-1"], "an integer in [0, 2^63 - 1"),
        # issue 37: each of these left a run folder that could never succeed, or a traceback
        (["--seed", str(2**64)], "an integer in [0, 2^63 - 1"),
        (["--lr", "inf"], "lr must be a number in (0, 10]"),
        (["--lr", "1e30"], "lr must be a number in (0, 10]"),
        (["--weight-decay", "inf"], "weight_decay must be a number in [0, 10]"),
        (["--profile", "expp", "--ratio", "10"], "profile must be one of ['exp', 'step']"),
        (["--profile", "step"], "--profile step only shape(s) the subset a ratio keeps"),  # probe W15: stored unused
        (["--fit", "cap"], "--fit cap only shape(s) the subset a ratio keeps"),
        (["--profile", '{"symmetric_uniform": true}'], "a {class name: count} dict with integer counts >= 1"),
    ],
)
def test_bad_train_options(tmp_path: Path, capsys, argv: list[str], expected: str):
    assert cli(tmp_path, "train", *TINY, *argv) == 2
    assert expected in error_of(capsys)
    assert no_runs(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so --device cuda is valid")
def test_cuda_without_a_gpu(tmp_path: Path, capsys):
    assert cli(tmp_path, "train", *TINY, "--device", "cuda") == 2
    assert "no CUDA GPU" in error_of(capsys)
    assert no_runs(tmp_path)


@pytest.mark.parametrize(
    "argv, expected", [(["--ratios", "abc"], "--ratios"), (["--seeds", "a"], "--seeds"), (["--seeds", "-1"], "--seeds")]
)
def test_bad_sweep_lists(tmp_path: Path, capsys, argv: list[str], expected: str):
    assert cli(tmp_path, "sweep", "--methods", "ce", *argv, *TINY) == 2
    assert expected in error_of(capsys)
    assert no_runs(tmp_path)


def test_help_shows_defaults(capsys):
    assert main(["train", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: 10)" in shown and "scale (the default)" in shown and "(default: None)" not in shown


def test_every_evaluate_option_has_help():
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [a for a in subcommands.choices["evaluate"]._actions if not isinstance(a, argparse._HelpAction)]
    assert [a.dest for a in options if not a.help] == []


def _fake_run(store: RunStore, status: str, error: str | None = None) -> str:
    from imbal_core.engine import TrainConfig

    run_id = store.create_run(TrainConfig(epochs=1, device="cpu").to_dict())
    store.set_status(run_id, status, error=error)
    return run_id


def test_runs_lists_errors_resume_commands_and_rejects_unknown_status(tmp_path: Path, capsys):
    store = RunStore(tmp_path / "store")
    failed = _fake_run(store, "failed", error="DataError: " + "the image folder is gone " * 20)
    stopped = _fake_run(store, "stopped")
    waiting = _fake_run(store, "running")  # submitted to Ray by this process (its owner), no worker free yet
    store.set_progress(waiting, {"waiting": os.getpid()})
    resumed = _fake_run(store, "running")  # marked by a Ray driver that has ended, then resumed here
    store.set_progress(resumed, {"waiting": os.getpid() + 1})
    assert cli(tmp_path, "runs") == 0
    out = capsys.readouterr().out
    assert f"{failed}: DataError: the image folder is gone" in out and out.count("the image folder is gone") < 10
    assert f"train --resume {stopped}" in out
    line_of = {run_id: next(line for line in out.splitlines() if run_id in line) for run_id in (waiting, resumed)}
    assert "0/1 waiting" in line_of[waiting] and "waiting" not in line_of[resumed] and "no free worker" in out
    assert cli(tmp_path, "runs", "--status", "bogus") == 2
    assert "finished" in error_of(capsys)


def test_resumed_progress_bar_starts_where_it_stopped(tmp_path: Path, capsys):
    from imbal_core.engine import TrainConfig, train

    store, stop = RunStore(tmp_path / "store"), threading.Event()
    config = TrainConfig(data_options={"n_images": 700}, epochs=2, batch_size=64, device="cpu")
    run_id = train(config, store, stop_event=stop, progress=lambda e: stop.set() if e["event"] == "epoch" else None)
    assert store.get_run(run_id)["status"] == "stopped"
    capsys.readouterr()
    assert cli(tmp_path, "train", "--resume", run_id) == 0
    bar = capsys.readouterr().err
    assert "1/2" in bar and "0/2" not in bar


# ---- C: deleting runs ------------------------------------------------------------------------------------------------


def test_delete_and_prune_runs(tmp_path: Path, capsys):
    store = RunStore(tmp_path / "store")
    failed, other_failed, stopped, finished, running = (
        _fake_run(store, s) for s in ("failed", "failed", "stopped", "finished", "running")
    )
    assert cli(tmp_path, "runs", "--delete", finished, "no-such-run") == 2
    assert "no-such-run" in error_of(capsys)
    assert cli(tmp_path, "runs", "--delete", running) == 2
    assert "stop them first" in error_of(capsys)
    assert store.has_run(finished) and store.has_run(running)  # nothing deleted when one id is bad
    assert cli(tmp_path, "runs", "--delete", finished) == 0
    assert f"deleted {finished}" in capsys.readouterr().out
    assert cli(tmp_path, "runs", "--prune", "failed") == 0
    out = capsys.readouterr().out
    assert failed in out and other_failed in out
    assert set(store.runs()["run_id"]) == {stopped, running}
    assert not store.run_dir(failed).exists()


# ---- D: safe by default ----------------------------------------------------------------------------------------------


def test_app_listens_on_loopback_only():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("benign", "malignant"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(root / name / f"{name}{i}.png")
    return root


def test_data_paths_stay_inside_the_data_roots(tmp_path: Path, monkeypatch, capsys):
    data = _image_folder(tmp_path / "elsewhere")
    monkeypatch.setenv("IMBAL_LAB_DATA_ROOTS", str(tmp_path / "allowed"))
    with pytest.raises(DataError, match="outside the allowed data folders.*IMBAL_LAB_DATA_ROOTS"):
        load_dataset("folder", path=data, use_cache=False)
    with pytest.raises(DataError, match="outside the allowed data folders"):
        load_dataset("folder", path=tmp_path / "allowed" / ".." / "elsewhere", use_cache=False)
    assert main(["datasets", "--data", "folder", "--path", str(data)]) == 2
    assert "IMBAL_LAB_DATA_ROOTS" in error_of(capsys)
    monkeypatch.setenv("IMBAL_LAB_DATA_ROOTS", os.pathsep.join([str(tmp_path / "allowed"), str(tmp_path)]))
    assert load_dataset("folder", path=data, use_cache=False).num_classes == 2


def test_the_command_line_reads_any_path_and_the_app_only_the_data_folders(tmp_path: Path, monkeypatch, capsys):
    """The data-folder restriction protects a web page that reads server paths: the CLI's user owns the shell, so
    without $IMBAL_LAB_DATA_ROOTS it reads a folder outside the default data folders; the app refuses one."""
    from streamlit.testing.v1 import AppTest

    import imbal_core.utils

    data = _image_folder(tmp_path / "elsewhere")
    monkeypatch.setattr(imbal_core.utils, "data_roots", lambda: [tmp_path / "allowed"])  # as if outside the defaults
    assert main(["datasets", "--data", "folder", "--path", str(data)]) == 0
    assert "benign" in capsys.readouterr().out

    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    app.run()
    app.switch_page("app_pages/data.py").run()
    app.selectbox(key="data_source").set_value("folder").run()
    app.text_input(key="data_path").set_value(str(data)).run()
    assert not app.exception, app.exception
    assert any("outside the allowed data folders" in e.value for e in app.error)


def test_csv_rows_stay_inside_the_csv_folder(tmp_path: Path):
    data = _image_folder(tmp_path / "data")
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(outside)
    rows = [f"{c}/{c}{i}.png" for c in ("benign", "malignant") for i in range(10)]
    labels = ["b"] * 10 + ["m"] * 10
    pd.DataFrame({"path": rows, "label": labels}).to_csv(data / "list.csv", index=False)
    assert load_dataset("folder", path=data / "list.csv", use_cache=False).num_classes == 2
    for escape in ("../outside.png", str(outside)):  # up and out, or an absolute path
        pd.DataFrame({"path": [escape] + rows[1:], "label": labels}).to_csv(data / "list.csv", index=False)
        with pytest.raises(DataError, match="row 1 .*outside the CSV's folder"):
            load_dataset("folder", path=data / "list.csv", use_cache=False)


def test_an_error_about_a_files_content_never_quotes_it(tmp_path: Path, capsys):
    """Issue 37: a one-line token file typed as a folder-CSV path is refused by its column count, not its text."""
    token = tmp_path / "token.csv"
    token.write_text("ghp_s3cr3tT0k3nValue,second\n")
    assert main(["datasets", "--data", "folder", "--path", str(token)]) == 2
    message = error_of(capsys)
    assert "lacks column(s) ['path', 'label']" in message and "names 2 column(s), 0 of them expected" in message
    assert "s3cr3t" not in message and "second" not in message


def test_high_bit_depth_and_exif_rotated_images_are_read_as_a_viewer_shows_them(tmp_path: Path):
    """Issue 37: a 16-bit PNG is scaled, not saturated; a float TIFF in [0, 1] is scaled, not black, and one outside
    [0, 1] is refused; an EXIF orientation is applied."""
    from PIL import Image

    from imbal_core.data.images import read_image

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    deep = read_image(tmp_path / "deep.png", 32)
    assert deep.dtype == np.uint8 and deep[..., 0].max() == 255 and 100 < deep[..., 0].mean() < 155  # not saturated
    Image.fromarray((ramp / 65535).astype(np.float32)).save(tmp_path / "float.tif")
    assert np.abs(read_image(tmp_path / "float.tif", 32).astype(int) - deep.astype(int)).max() <= 1
    Image.fromarray((ramp / 65535 * 3).astype(np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(DataError, match=r"floating-point image with values in \[0, 3\]; expected \[0, 1\]"):
        read_image(tmp_path / "hdr.tif", 32)

    left_red = np.zeros((32, 32, 3), np.uint8)
    left_red[:, :16, 0] = 255  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show"
    Image.fromarray(left_red).save(tmp_path / "rotated.png", exif=exif)
    shown = read_image(tmp_path / "rotated.png", 32)
    assert shown[:8, :, 0].mean() > 200 and shown[-8:, :, 0].mean() < 50  # the red half is on top once rotated


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.assign(label=[None] + list(t["label"][1:])), r"data row\(s\) 1 have no label"),
        (lambda t: t.assign(label=["  "] + list(t["label"][1:])), r"data row\(s\) 1 have no label"),
        (lambda t: t.assign(label=["b "] + list(t["label"][1:])), r"labels \['b', 'b '\] .* differ only by spaces"),
        (lambda t: t.assign(label=["B"] + list(t["label"][1:])), r"labels \['B', 'b'\] .*letter case"),
        (lambda t: t.assign(label=["b\x1b[2J"] + list(t["label"][1:])), r"data row\(s\) 1 hold control characters"),
        (lambda t: pd.concat([t, t.iloc[[0]].assign(label="m")]), "rows 1 and 21 list the same image with two labels"),
        (lambda t: pd.concat([t, t.iloc[[3]]]), "rows 4 and 21 list the same image; an image listed twice"),
    ],
)
def test_a_csvs_labels_and_rows_are_checked_before_training(tmp_path: Path, edit, expected):
    """Issue 37: empty labels, labels that differ only by spaces, and an image listed twice are refused by row."""
    data = _image_folder(tmp_path / "data")
    rows = [f"{c}/{c}{i}.png" for c in ("benign", "malignant") for i in range(10)]
    table = pd.DataFrame({"path": rows, "label": ["b"] * 10 + ["m"] * 10})
    edit(table).to_csv(data / "list.csv", index=False)
    with pytest.raises(DataError, match=expected):
        load_dataset("folder", path=data / "list.csv", use_cache=False)
    table.assign(label=[" b "] * 10 + ["m"] * 10).to_csv(data / "list.csv", index=False)  # spaced the same way
    assert load_dataset("folder", path=data / "list.csv", use_cache=False).class_names == ["b", "m"]
    cafe_nfc, cafe_nfd = "caf\u00e9", "cafe\u0301"  # the same word, two Unicode forms
    table.assign(label=[cafe_nfc] * 9 + [cafe_nfd] + ["m"] * 10).to_csv(data / "list.csv", index=False)
    with pytest.raises(DataError, match="Unicode form"):
        load_dataset("folder", path=data / "list.csv", use_cache=False)


def test_npz_labels_and_channels_are_checked_before_anything_is_made(tmp_path: Path, capsys):
    """Issue 37: a label of 10^9 (it allocated gigabytes), uint64 labels, a class only in the test split, and splits
    with different channel counts are refused at once; uint64 labels in range are read as they are."""
    splits = {"train": 40, "val": 10, "test": 10}
    huge = write_npz(tmp_path / "huge.npz", {s: two_classes(n) * 10**9 for s, n in splits.items()})
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(huge), *QUICK) == 2
    assert "goes up to 1000000000" in error_of(capsys)
    test_only = {**{s: two_classes(n) for s, n in splits.items()}, "test": np.arange(10) % 3}
    assert (
        cli(tmp_path, "train", "--data", "medmnist", "--path", str(write_npz(tmp_path / "t.npz", test_only)), *QUICK)
        == 2
    )
    assert "class(es) [2] have no training image" in error_of(capsys)
    rng = np.random.default_rng(0)
    arrays = {f"{s}_labels": two_classes(n).astype(np.uint64) for s, n in splits.items()}
    arrays.update({f"{s}_images": rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8) for s, n in splits.items()})
    np.savez(tmp_path / "unsigned.npz", **arrays)
    assert load_dataset("medmnist", path=tmp_path / "unsigned.npz", use_cache=False).train.labels.dtype == np.int64
    arrays["test_images"] = arrays["test_images"][..., :1]
    np.savez(tmp_path / "channels.npz", **arrays)
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(tmp_path / "channels.npz"), *QUICK) == 2
    assert "different channel counts" in error_of(capsys)
    assert no_runs(tmp_path)


def test_reads_never_block_on_a_pipe_and_the_cache_key_follows_what_the_loader_reads(tmp_path: Path, capsys):
    """Issue 37: a FIFO as the data path or as a label file is refused (reading it blocked forever); an image edited
    in a linked class folder gives a new cache key; an npz's key ignores the other files in its folder."""
    from imbal_core.data import _fingerprint

    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    assert main(["datasets", "--data", "folder", "--path", str(pipe)]) == 2
    assert "neither a folder nor a regular file" in error_of(capsys)
    ham = tmp_path / "ham"
    ham.mkdir()
    os.mkfifo(ham / "HAM10000_metadata.csv")
    with pytest.raises(DataError, match="is not a regular file"):
        load_dataset("ham10000", path=ham, use_cache=False)
    os.mkfifo(tmp_path / "pipe.safetensors")
    assert cli(tmp_path, "train", "--pretrained", str(tmp_path / "pipe.safetensors"), *QUICK) == 2  # "does not exist"
    assert "pretrained weights file" in (err := error_of(capsys)) and "is not a regular file" in err
    assert no_runs(tmp_path)

    data = _image_folder(tmp_path / "real")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "benign").symlink_to(data / "benign", target_is_directory=True)
    (linked / "malignant").symlink_to(data / "malignant", target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)  # a link loop ends
    before = _fingerprint(linked)
    image = next((data / "benign").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")  # an edit behind the link
    assert _fingerprint(linked) != before

    (tmp_path / "big").mkdir()
    npz = write_npz(
        tmp_path / "big" / "set.npz", {s: two_classes(n) for s, n in (("train", 40), ("val", 10), ("test", 10))}
    )
    first = _fingerprint(npz, file_is_whole=True)
    (tmp_path / "big" / "unrelated.txt").write_text("other work in the same temp folder")
    assert _fingerprint(npz, file_is_whole=True) == first


def test_a_lost_or_damaged_run_index_is_said_and_rebuilt_from_the_run_folders(tmp_path: Path, capsys):
    """Issue 37: an emptied runs.sqlite read as "no runs yet" beside finished run folders; a damaged one gave a
    traceback. Both are named, and `runs --rebuild` indexes the folders again with their test metrics."""
    assert cli(tmp_path, "train", *TINY) == 0
    store_root = tmp_path / "store"
    before = RunStore(store_root).runs()[["run_id", "status", "summary"]]
    (store_root / "runs.sqlite").unlink()
    for extra in ("runs.sqlite-wal", "runs.sqlite-shm"):
        (store_root / extra).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["--store", str(store_root), "runs"]) == 0
    listed = capsys.readouterr().out
    assert "1 run folder(s)" in listed and "`runs --rebuild` indexes them again" in listed
    assert main(["--store", str(store_root), "runs", "--rebuild"]) == 0
    after = RunStore(store_root).runs()[["run_id", "status", "summary"]]
    assert after.equals(before)  # the same run, finished, with the same test summary

    (store_root / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    assert main(["--store", str(store_root), "runs"]) == 2
    message = error_of(capsys)
    assert "is damaged" in message and "runs --rebuild" in message


def test_a_failed_run_leaves_no_checkpoints_and_a_full_disk_is_one_clear_message(tmp_path: Path, monkeypatch):
    """Issue 37: each failed run kept its checkpoints (a full disk filled up faster); a `.tmp` from a kill mid-write
    stayed forever. A full disk is one message naming the store and the fix."""
    import errno

    import imbal_core.engine.trainer as trainer
    from imbal_core.engine import train

    from .conftest import tiny_config

    store = RunStore(tmp_path / "store")
    real = trainer._checked_losses
    calls = {"n": 0}

    def fail_in_epoch_two(losses, start, stop, epoch):
        if epoch == 1:
            calls["n"] += 1
            raise OSError(errno.ENOSPC, "No space left on device") if calls["n"] == 1 else RuntimeError("boom")
        return real(losses, start, stop, epoch)

    monkeypatch.setattr(trainer, "_checked_losses", fail_in_epoch_two)
    with pytest.raises(RunError, match=r"the disk holding the run store .* is full .*--store"):
        train(tiny_config(epochs=2), store)
    run_id = store.runs()["run_id"].iloc[0]
    assert store.get_run(run_id)["status"] == "failed" and "is full" in store.get_run(run_id)["error"]
    assert not list(store.run_dir(run_id).glob("*.safetensors"))  # epoch 1's checkpoints went with the failure

    (store.run_dir(run_id) / ".last.safetensors.abc.tmp").write_bytes(b"\0" * 1000)  # a kill during a write
    with pytest.raises(RuntimeError, match="boom"):
        train(None, store, resume=run_id, keep_failed_checkpoints=True)
    assert not list(store.run_dir(run_id).glob(".*.tmp"))
    assert list(store.run_dir(run_id).glob("last.safetensors"))  # kept on request


def test_a_pipe_among_the_images_and_a_special_output_file_are_refused(tmp_path: Path, capsys):
    """Probe H02 / S25 / T22: a FIFO named like an image blocked decoding forever; `export --out` onto a device or a
    folder replaced it through the atomic rename, or failed with a traceback."""
    data = _image_folder(tmp_path / "data")
    os.mkfifo(data / "benign" / "zz.png")
    with pytest.raises(DataError, match="zz.png is not a regular file"):
        load_dataset("folder", path=data, use_cache=False)
    assert main(["--store", str(tmp_path / "store"), "export", "--out", str(tmp_path)]) == 2
    assert "is a folder, device or pipe, not a file" in error_of(capsys)


def test_a_tiny_test_split_comes_with_a_caution(tmp_path: Path, capsys):
    """Probe W20: a perfect score on a 4-image test set was printed with no caveat."""
    splits = {"train": two_classes(40), "val": two_classes(10), "test": two_classes(4)}
    small = write_npz(tmp_path / "small.npz", splits)
    assert cli(tmp_path, "train", "--data", "medmnist", "--path", str(small), *QUICK) == 0
    assert "caution: the test split has 4 image(s), only 2 of class_0" in capsys.readouterr().out


def test_folder_and_cache_faults_found_by_the_probe_are_named(tmp_path: Path, monkeypatch):
    """Probe W07 (a class of .gif files vanished), H07 (a deep tree was a RecursionError), H09 (1e11 built-in
    images was a numpy MemoryError), H08 (`--path /` walked the whole disk), T21 (a read-only cache was a
    PermissionError), L02 (a killed cache build left its folder forever) and W14 (a CSV beside the lab home made a new
    cache every time)."""
    import imbal_core.data.cache as cache
    from imbal_core.data import _fingerprint

    data = _image_folder(tmp_path / "data")
    gifs = data / "gifs"
    gifs.mkdir()
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(gifs / "a.gif")
    with pytest.raises(DataError, match=r"class folder .*gifs holds 1 file\(s\) \(.gif\) but no image of the types"):
        load_dataset("folder", path=data, use_cache=False)
    gifs.joinpath("a.gif").unlink()
    gifs.rmdir()

    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "link").symlink_to(deep, target_is_directory=True)
    with monkeypatch.context() as patched:  # scoped: undo() would also undo the conftest's own patches
        patched.setattr(os, "walk", lambda *a, **k: (_ for _ in ()).throw(RecursionError()))
        with pytest.raises(DataError, match="nested too deep to walk"):
            load_dataset("folder", path=deep, use_cache=False)

    with pytest.raises(DataError, match="takes .* GB in memory"):
        load_dataset("synthetic", n_images=10**11, use_cache=False)

    # H08: `--path /` walked the whole disk for a minute; a folder above the data is stopped at a file count
    with pytest.raises(DataError, match="is a system or home folder"):
        load_dataset("folder", path="/", use_cache=False)
    with monkeypatch.context() as patched:
        patched.setattr("imbal_core.data.MAX_DATA_FILES", 3)
        with pytest.raises(DataError, match="holds more than 3 files: .* point it at the data set's folder"):
            load_dataset("folder", path=data, use_cache=False)

    stale = tmp_path / "cache" / ".synthetic-28px-old-abcd"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))  # untouched for decades: a build killed long ago
    load_dataset("folder", path=data, cache_dir=tmp_path / "cache")
    assert not stale.exists() and len(list((tmp_path / "cache").iterdir())) == 1

    with monkeypatch.context() as patched:
        patched.setattr(cache.tempfile, "mkdtemp", lambda **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
        with pytest.warns(UserWarning, match="cannot be written .* loaded but not cached"):
            assert load_dataset("folder", path=data, cache_dir=tmp_path / "other_cache").num_classes == 2

    monkeypatch.setenv("IMBAL_LAB_HOME", str(data / "lab"))
    before = _fingerprint(data)
    (data / "lab" / "cache").mkdir(parents=True)
    (data / "lab" / "cache" / "entry.npy").write_bytes(b"new cache")
    assert _fingerprint(data) == before


def test_probe_wordings_name_the_real_problem(tmp_path: Path, capsys):
    """Probe T26 (an npz count mismatch named neither file nor split), T31 (`runs --method X` with no match said "no
    runs yet"), W11 (a decompression-bomb limit advised re-copying a truncated file)."""
    from PIL import Image

    from imbal_core.data.images import read_image

    splits = {"train": two_classes(40), "val": two_classes(10), "test": two_classes(10)}
    path = write_npz(tmp_path / "counts.npz", splits)
    with np.load(path) as saved:
        arrays = dict(saved)
    arrays["val_labels"] = arrays["val_labels"][:8]
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"counts.npz: val_images holds 10 images but val_labels 8 labels"):
        load_dataset("medmnist", path=path, use_cache=False)
    assert cli(tmp_path, "train", *TINY) == 0
    capsys.readouterr()
    assert main(["--store", str(tmp_path / "store"), "runs", "--method", "focal"]) == 0
    assert "no runs with method focal" in capsys.readouterr().out
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big.png")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100  # 64 x 64 is then "too large" (over twice the limit is refused)
    try:
        with pytest.raises(DataError, match="larger than the decoder allows"):
            read_image(tmp_path / "big.png", 28)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def test_a_picture_copied_under_another_name_into_two_splits_is_refused(tmp_path: Path):
    """Probe W06: renamed copies landed in training and test (41 of 44 test images), and the score doubled."""
    import shutil

    data = _image_folder(tmp_path / "data")
    for image in sorted((data / "benign").glob("*.png")):
        shutil.copy(image, image.with_name(f"copy_of_{image.name}"))
    with pytest.raises(DataError, match=r"are the same picture, pixel for pixel: a copy in two splits"):
        load_dataset("folder", path=data, use_cache=False)


def test_an_image_far_smaller_than_the_size_asked_is_refused(tmp_path: Path):
    """Probe W10: 1x1 and 1x2000 px images were silently blown up into flat squares of one pixel's colour."""
    from PIL import Image

    from imbal_core.data.images import read_image

    for width, height in ((1, 1), (1, 2000)):
        Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(tmp_path / "thin.png")
        with pytest.raises(DataError, match=rf"is {width}x{height} px: its square centre \(1 px\) would be blown up"):
            read_image(tmp_path / "thin.png", 28)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "small.png")
    assert read_image(tmp_path / "small.png", 28).shape == (28, 28, 3)  # 7x: still read


def test_an_edit_that_keeps_size_and_modification_time_changes_the_cache_key(tmp_path: Path):
    """Probe W13: an image rewritten with the same size and its modification time put back served stale pixels."""
    import time

    from imbal_core.data import _fingerprint

    data = _image_folder(tmp_path / "data")
    image = next((data / "benign").iterdir())
    before, stat = _fingerprint(data), image.stat()
    time.sleep(0.01)
    image.write_bytes(bytes(reversed(image.read_bytes())))  # same size, other bytes
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # modification time put back
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    assert _fingerprint(data) != before


# ---- the third probe (docs/probes/issue37_round3_2026-12-07.md) -------------------------------------------------


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 30, 3), value, np.uint8)).save(path)


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (["A", "a"], r"differ only by spaces around them, letter case or Unicode form"),  # W301
        (["caf\u00e9", "cafe\u0301"], r"differ only by .* Unicode form"),  # W302
        (["\x1b[31mX", "b"], r"1 class folder\(s\) hold control characters; rename them"),  # S301
        (["a", "b", "empty"], r"class folder .*empty holds no image of the types read"),  # W305
    ],
)
def test_class_folder_names_are_checked_like_csv_labels(tmp_path: Path, folders, expected):
    """Probe W301, W302 (two spellings, two classes), S301 (escape codes in a folder name reached the terminal),
    W305 (an empty class folder vanished)."""
    for i, name in enumerate(folders):
        if name != "empty":
            _png(tmp_path / "d" / name / f"{i}.png", 40 * i)
        else:
            (tmp_path / "d" / name).mkdir(parents=True)
    with pytest.raises(DataError, match=expected) as raised:
        load_dataset("folder", path=tmp_path / "d", use_cache=False)
    assert "\x1b" not in str(raised.value)  # never echoed


def test_folder_and_csv_layouts_that_would_mislead_are_refused(tmp_path: Path):
    """Probe W307 (train/<class>, test/<class> read as classes "train" and "test"), W321 (macOS ._ files stopped
    the set), T301 (an empty path cell was a TypeError), W308 (a second label column), W309 (a split column was
    ignored), W311 (a class named "NA" read as missing)."""
    for split in ("train", "test"):
        for c in ("a", "b"):
            _png(tmp_path / "split" / split / c / "0.png")
    with pytest.raises(DataError, match=r"split folders \(test, train\) with the same class folders inside"):
        load_dataset("folder", path=tmp_path / "split", use_cache=False)

    data = _image_folder(tmp_path / "plain")
    (data / "benign" / "._benign0.png").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS resource fork
    assert load_dataset("folder", path=data, use_cache=False).num_classes == 2

    rows = [f"benign/benign{i}.png,benign" for i in range(10)] + [f"malignant/malignant{i}.png,NA" for i in range(10)]
    csv = data / "list.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    assert load_dataset("folder", path=csv, use_cache=False).class_names == ["NA", "benign"]
    cases = {
        "path,label\n" + "\n".join(rows) + "\n,benign\n": r"data row\(s\) 21 have no path",
        "path,label,label\n" + "\n".join(r + ",x" for r in rows) + "\n": r"names the column\(s\) \['label'\] more",
        "path,label,split\n" + "\n".join(r + ",test" for r in rows) + "\n": r"has a 'split' column, which the folder",
    }
    for text, expected in cases.items():
        csv.write_text(text)
        with pytest.raises(DataError, match=expected):
            load_dataset("folder", path=csv, use_cache=False)


def test_images_and_arrays_that_would_be_read_wrongly_are_refused(tmp_path: Path):
    """Probe W303, W304 (a multi-page TIFF or an animation read as its first frame), W312 (channel-first npz
    images trained as 28-channel images), W314 (2x2 npz images blown up 14x)."""
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 200)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "moving.png", save_all=True, append_images=frames[1:], format="GIF")
    for name in ("pages.tif", "moving.png"):
        with pytest.raises(DataError, match="holds 2 frames"):
            read_image(tmp_path / name, 32)

    splits = {"train": two_classes(40), "val": two_classes(10), "test": two_classes(10)}
    first = np.zeros((40, 3, 28, 28), np.uint8)
    arrays = {f"{s}_labels": y for s, y in splits.items()} | {f"{s}_images": first[: len(y)] for s, y in splits.items()}
    np.savez(tmp_path / "nchw.npz", **arrays)
    with pytest.raises(DataError, match=r"looks channel-first: save images.transpose\(0, 2, 3, 1\)"):
        load_dataset("medmnist", path=tmp_path / "nchw.npz", use_cache=False)
    tiny = write_npz(tmp_path / "tiny.npz", splits, images=np.zeros((40, 2, 2, 3), np.uint8))
    with pytest.raises(DataError, match="2x2 px, which would be blown up more than 8x to 28 px"):
        load_dataset("medmnist", path=tiny, use_cache=False)


def test_bad_tags_backbones_and_export_targets_create_nothing(tmp_path: Path, capsys):
    """Probe S302 (a tag's escape codes printed by `export`), T302 and L301 (an unknown or fixed-size backbone was
    refused after a failed run was created), S306 (`export --out` overwrote the store's index)."""
    assert cli(tmp_path, "train", *TINY, "--tag", "\x1b[2J") == 2
    assert "tag may not hold control characters" in error_of(capsys) and no_runs(tmp_path)
    assert not list((tmp_path / "store").glob("runs/*"))
    for backbone, expected in (
        ("nosuch_net", "unknown backbone 'nosuch_net'"),
        ("vit_tiny_patch16_224", "cannot give"),
    ):
        assert cli(tmp_path, "train", *TINY, "--backbone", backbone) == 2
        assert expected in error_of(capsys) and no_runs(tmp_path)
    index = tmp_path / "store" / "runs.sqlite"
    before = index.read_bytes()
    assert cli(tmp_path, "export", "--out", str(index)) == 2
    assert "lies inside the run store" in error_of(capsys) and index.read_bytes() == before


def test_a_runs_missing_or_foreign_files_are_named_and_a_refused_resume_keeps_the_run(tmp_path: Path, capsys):
    """Probe T303 (a removed run folder was a FileNotFoundError), T304, T305 (another backbone's weights were a
    RuntimeError), W319 (a resume refused for a bad last checkpoint marked the run failed and deleted its best
    checkpoint)."""
    from imbal_core.engine import TrainConfig, train

    store = RunStore(tmp_path / "store")
    small = dict(epochs=2, batch_size=128, device="cpu", data_options={"n_images": 400})
    first = train(TrainConfig(**small), store)
    other = train(TrainConfig(**small, backbone="resnet18_small"), store)
    foreign = store.run_dir(other) / "model.safetensors"
    shutil.copy(foreign, store.run_dir(first) / "model.safetensors")
    assert cli(tmp_path, "evaluate", first, "--data", "synthetic", "--data-option", "n_images=400") == 2
    assert "does not fit the run's model" in error_of(capsys)

    stop = threading.Event()
    stopped = train(
        TrainConfig(**{**small, "epochs": 3}),
        store,
        stop_event=stop,
        progress=lambda e: stop.set() if e["event"] == "epoch" and e["epoch"] == 0 else None,
    )
    assert store.get_run(stopped)["status"] == "stopped"
    folder = store.run_dir(stopped)
    shutil.copy(store.run_dir(other) / "best.safetensors", folder / "last.safetensors")
    kept = sorted(p.name for p in folder.iterdir())
    with pytest.raises(RunError, match="does not fit the run's model.*the run stays stopped"):
        train(None, store, resume=stopped)
    assert store.get_run(stopped)["status"] == "stopped" and sorted(p.name for p in folder.iterdir()) == kept

    shutil.rmtree(store.run_dir(other))
    assert cli(tmp_path, "evaluate", other, "--data", "synthetic", "--data-option", "n_images=400") == 2
    assert "lacks metrics.json (removed or moved?)" in error_of(capsys)


def test_a_locked_run_index_is_said_within_seconds_and_an_interrupted_creation_leaves_no_folder(
    tmp_path: Path, monkeypatch
):
    """Probe H301 (a write lock held elsewhere made `train` wait 5 minutes without a word), L302 (a kill during
    that wait left a run folder without its row)."""
    import sqlite3

    import imbal_core.runs.store as store_module

    store = RunStore(tmp_path / "store")
    holder = sqlite3.connect(store.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(store_module, "FIRST_WAIT_SECONDS", 0.1)
    monkeypatch.setattr(store_module, "LATER_WAIT_SECONDS", 0.1)
    with pytest.warns(UserWarning, match="is busy"), pytest.raises(RunError, match="stayed locked by another"):
        store.create_run(tiny_config().to_dict())
    holder.execute("ROLLBACK")
    holder.close()
    assert not list((tmp_path / "store").glob("runs/*"))  # the folder went with the failed row

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunStore, "_index_new_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.create_run(tiny_config().to_dict())
    assert not list((tmp_path / "store").glob("runs/*"))


def test_training_images_saved_again_under_new_names_count_as_seen():
    """Probe W318: a run's training images re-saved as JPEG (quality 98) under new names were scored as unseen.
    Near-copies count as overlap; the built-in data's own test images are not taken for copies of its training
    images."""
    import io

    from imbal_core.engine.evaluate import near_copies

    dataset = load_dataset("synthetic", use_cache=False, n_images=700)
    train = dataset.train.images
    resaved = []
    for image in train[:50]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=98)
        resaved.append(np.asarray(Image.open(buffer).convert("RGB")))
    assert near_copies(np.stack(resaved), train).all()
    assert not near_copies(dataset.test.images, train).any()


def test_a_run_whose_folder_is_removed_while_it_trains_does_not_finish(tmp_path: Path, capsys):
    """Probe L306: `rm -rf runs/*` during training left a run "finished" with half its files."""
    from imbal_core.engine import TrainConfig, train

    store = RunStore(tmp_path / "store")

    def remove_folder(event: dict) -> None:
        if event["event"] == "epoch" and event["epoch"] == 0:
            shutil.rmtree(store.run_dir(event["run_id"]))

    config = TrainConfig(epochs=2, batch_size=128, device="cpu", data_options={"n_images": 400})
    with pytest.raises((RunError, OSError)):
        train(config, store, progress=remove_folder)
    (run,) = store.runs()["run_id"]
    assert store.get_run(run)["status"] == "failed" and "was removed while it trained" in store.get_run(run)["error"]
    shutil.rmtree(store.run_dir(run))  # a folder gone for good: `runs` says so
    assert cli(tmp_path, "runs") == 0
    assert "1 run(s) of the index have no folder" in capsys.readouterr().out


def test_an_upload_is_limited_by_pixels_too():
    """Probe H306: a 0.5 MB PNG of 16000 x 11000 px took 2 GB of the server's memory to decode."""
    import io

    from imbal_core.data.images import decode_image_bytes

    buffer = io.BytesIO()
    Image.new("L", (16000, 11000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 1_000_000
    with pytest.raises(DataError, match="16000 x 11000 px .* the limit is 40 Mpx"):
        decode_image_bytes(buffer.getvalue(), 224)

"""Acquisition shifts, Shades-of-Gray colour constancy, shift evaluation of runs and its Compare section."""

from __future__ import annotations

import numpy as np
import pytest

from imbal_core.cli import main
from imbal_core.data import load_dataset
from imbal_core.data.colour import shades_of_gray
from imbal_core.engine import train
from imbal_core.engine.robustness import ROBUSTNESS_FILE, evaluate_shifts
from imbal_core.errors import ConfigError, RunError
from imbal_core.runs import MODEL_FILE, RunStore
from imbal_core.shifts import MAX_STRENGTH, SHIFTS, apply_shift

from .conftest import TINY, tiny_config

SHIFT_NAMES = ["colour_cast", "contrast", "blur", "jpeg"]
CLI_TINY = ["--data-option", f"n_images={TINY['n_images']}", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_dataset("synthetic", n_images=200).test.images


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_the_four_shifts_are_registered():
    assert SHIFTS.names() == SHIFT_NAMES


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_shift_is_identity_at_0_grows_with_strength_and_is_seeded(images, name):
    assert np.array_equal(apply_shift(images, name, 0), images)
    distances = [distance(apply_shift(images, name, s), images) for s in range(MAX_STRENGTH + 1)]
    assert all(a < b for a, b in zip(distances, distances[1:])), distances
    shifted = apply_shift(images, name, 3, seed=1)
    assert shifted.dtype == np.uint8 and shifted.shape == images.shape
    assert np.array_equal(shifted, apply_shift(images, name, 3, seed=1))


def test_colour_cast_colour_depends_on_the_seed(images):
    assert not np.array_equal(
        apply_shift(images, "colour_cast", 2, seed=0), apply_shift(images, "colour_cast", 2, seed=1)
    )


def test_bad_shift_or_strength_names_the_choices(images):
    with pytest.raises(ConfigError, match="colour_cast"):
        apply_shift(images, "fog", 1)
    with pytest.raises(ConfigError, match=r"integer in \[0, 5\]"):
        apply_shift(images, "blur", 6)


def test_shades_of_gray_is_identity_on_grey_and_removes_a_colour_cast(images):
    grey = np.repeat(images.mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3)
    assert np.array_equal(shades_of_gray(grey), grey)
    cast = apply_shift(grey, "colour_cast", 4)
    means = cast.reshape(len(cast), -1, 3).mean(axis=1)
    corrected = shades_of_gray(cast).reshape(len(cast), -1, 3).mean(axis=1)
    spread = lambda m: float((m.max(axis=1) - m.min(axis=1)).mean())  # noqa: E731
    assert spread(means) > 20 and spread(corrected) < 2  # channel means equal again, up to clipping
    # On colour images it undoes most of a cast (clipped bright pixels keep the rest): the corrected cast image is
    # near the corrected original.
    colour_cast = apply_shift(images, "colour_cast", 4)
    left, before = distance(shades_of_gray(colour_cast), shades_of_gray(images)), distance(colour_cast, images)
    assert left < 0.3 * before, (left, before)


def test_load_dataset_applies_colour_constancy_to_every_split():
    plain = load_dataset("synthetic", n_images=200)
    corrected = load_dataset("synthetic", n_images=200, colour_constancy="shades_of_gray")
    for name, split in plain.splits.items():
        assert np.array_equal(corrected.splits[name].images, shades_of_gray(split.images))
        assert np.array_equal(corrected.splits[name].labels, split.labels)
    with pytest.raises(ConfigError, match="shades_of_gray"):
        tiny_config(colour_constancy="grey_world")


@pytest.fixture(scope="module")
def shifted_run() -> tuple[RunStore, str]:
    """A tiny colour-constancy run, trained and shifted by the CLI in the user store (the Compare test reads it
    there)."""
    store = RunStore()
    assert main(["train", "--colour-constancy", "shades_of_gray", "--epochs", "1", "--quiet", *CLI_TINY]) == 0
    runs = store.runs(status="finished")  # newest first; the session's other tests share this store
    run_id = runs.loc[runs["config"].str.contains('"colour_constancy": "shades_of_gray"'), "run_id"].iloc[0]
    assert main(["robustness", run_id, "--shifts", "colour_cast,jpeg", "--strengths", "1,3", "--device", "cpu"]) == 0
    return store, run_id


def test_cli_prints_the_drop_table_and_refuses_bad_strengths(shifted_run, capsys):
    store, run_id = shifted_run
    assert (
        main(
            [
                "robustness",
                run_id,
                "--shifts",
                "contrast",
                "--strengths",
                "2",
                "--metrics",
                "balanced_acc",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "method", "shift", "strength", "metric", "value", "drop"]
    assert [line.split()[2:5] for line in lines[1:3]] == [
        ["contrast", "0", "balanced_acc"],
        ["contrast", "2", "balanced_acc"],
    ]
    assert main(["robustness", run_id, "--strengths", "two"]) == 2
    assert "--strengths must be comma-separated integers" in capsys.readouterr().err


def test_shift_results_are_stored_with_the_run_and_read_back_by_compare(shifted_run):
    from imbal_core.compare import finished_runs, load_results, shift_commands, shift_drops, shift_results

    store, run_id = shifted_run
    evals = set(store.tidy([run_id], per_class=False)["eval"])
    assert {"shift:none:0", "shift:colour_cast:1", "shift:colour_cast:3", "shift:jpeg:1", "shift:jpeg:3"} <= evals
    # The unshifted evaluation repeats the run's own test metrics (same model, same images, same device).
    report = evaluate_shifts(store, run_id, ["blur"], [2], device="cpu")  # a later call adds to the results
    assert report["clean"]["balanced_acc"] == pytest.approx(store.get_run(run_id)["summary"]["balanced_acc"])
    assert set(report["results"]) >= {
        "shift:colour_cast:1",
        "shift:colour_cast:3",
        "shift:jpeg:1",
        "shift:jpeg:3",
        "shift:blur:2",
    }  # the CLI test may have added contrast
    assert report["colour_constancy"] == "shades_of_gray"

    runs = finished_runs([store])
    picked = runs[runs["run_id"] == run_id]
    table = shift_results(load_results(picked), "balanced_acc")
    assert set(table["shift"]) >= {"colour_cast", "jpeg", "blur"}
    assert (table.loc[table["strength"] == 0, "drop"] == 0).all()
    drops = shift_drops(table)
    assert list(drops.columns) == ["run", "shift", "unshifted", "drop at 1", "drop at 2", "drop at 3"]  # sorted
    assert shift_commands(picked) == [f"python -m imbal_core robustness {run_id}"]


def test_binary_run_keeps_its_threshold_and_runs_without_weights_say_how_to_fix(store):
    run_id = train(tiny_config(task="asymmetric_multicolour vs symmetric_uniform"), store)
    report = evaluate_shifts(store, run_id, ["contrast"], [2], device="cpu")
    threshold = store.get_run(run_id)["summary"]["threshold"]
    assert report["binary"] and report["results"]["shift:contrast:2"]["summary"]["threshold"] == threshold
    (store.run_dir(run_id) / MODEL_FILE).unlink()
    with pytest.raises(RunError, match="keeps no model weights"):
        evaluate_shifts(store, run_id, ["contrast"], [1], device="cpu")


def test_compare_page_shows_the_robustness_section(shifted_run):
    from .test_app import chart_specs, open_page, open_tab

    store, run_id = shifted_run
    assert (store.run_dir(run_id) / ROBUSTNESS_FILE).is_file()
    app = open_page("compare")
    app.selectbox(key="cmp_data").set_value(f"synthetic n_images={TINY['n_images']} shades_of_gray 28px").run()
    assert not app.exception, app.exception
    assert "Acquisition shift" in [tab.label for tab in app.tabs]
    open_tab(app, "Acquisition shift")
    facets = [a["text"] for spec in chart_specs(app) for a in spec["layout"].get("annotations", [])]
    assert {"colour_cast", "jpeg"} <= set(facets)  # the shifts the fixture computed
    assert any(list(frame.value.columns)[:3] == ["run", "shift", "unshifted"] for frame in app.dataframe)
    # Shipped runs have no shift results: the section gives the command that computes them.
    app.selectbox(key="cmp_data").set_value("synthetic 28px").run()
    app.selectbox(key="cmp_ratio_synthetic 28px").set_value("natural").run()  # the shipped runs with weights
    assert not app.exception, app.exception
    assert any("--store pretrained robustness" in block.value for block in app.code)


def test_data_page_colour_constancy_reaches_the_data_choice():
    from .test_app import open_page

    app = open_page("data")
    app.selectbox(key="data_colour_constancy").set_value("shades_of_gray").run()
    assert not app.exception, app.exception
    assert app.session_state["data_choice"]["colour_constancy"] == "shades_of_gray"

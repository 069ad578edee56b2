"""Explain: Grad-CAM of several runs' models on the same test image, side by side."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages.common import all_stores, ratio_order
from imbal_core.compare import RunResult, default_selection, finished_runs, load_results
from imbal_core.data import ImageDataset, load_dataset
from imbal_core.data.colour import correct_images
from imbal_core.data.images import decode_image_bytes
from imbal_core.engine.evaluate import load_run_model
from imbal_core.errors import ImbalLabError
from imbal_core.explain import grad_cam, overlay
from imbal_core.familiarity import Reference, check_image, reference_for_run
from imbal_core.methods import METHODS
from imbal_core.runs import RunStore


@st.cache_resource(show_spinner="Loading model…", max_entries=16)
def cached_model(store_root: str, run_id: str):
    return load_run_model(RunStore(store_root), run_id)[0]


@st.cache_resource(show_spinner="Reading the run's validation features…", max_entries=16)
def cached_reference(store_root: str, run_id: str) -> Reference:
    return reference_for_run(RunStore(store_root), run_id)


@st.cache_resource(show_spinner="Loading the test images…", max_entries=4)
def cached_dataset(
    data: str,
    path: str | None,
    image_size: int,
    split_seed: int,
    options: tuple,
    task: str | None,
    colour_constancy: str | None,
) -> ImageDataset:
    return load_dataset(
        data,
        path=path,
        image_size=image_size,
        split_seed=split_seed,
        task=task,
        colour_constancy=colour_constancy,
        **dict(options),
    )


def run_dataset(config: dict) -> ImageDataset:
    """The data set a run was trained on, as it saw it (task, colour constancy)."""
    return cached_dataset(
        config["data"],
        config["data_path"],
        config["image_size"],
        config["split_seed"],
        tuple(sorted(config["data_options"].items())),
        config.get("task"),
        config.get("colour_constancy"),
    )


def show_familiarity(column, image: np.ndarray, model, row) -> None:
    """Beside a prediction for an uploaded image: is the image like what this run trained on?"""
    try:
        reference = cached_reference(row.store, row.run_id)
    except ImbalLabError as err:
        column.caption(f"Not checked against this run's data: {err}")
        return
    familiarity = check_image(model, image, reference)
    if familiarity.warnings:
        column.warning("**Do not trust this prediction:**\n" + "".join(f"\n- {w}" for w in familiarity.warnings))
    else:
        unchecked = "" if reference.colour_share is not None else " Colour not checked: the run's data are not here."
        column.caption(
            f"Like its training data: feature distance {familiarity.distance:.3f}, above that of "
            f"{familiarity.percentile:.0f} % of its validation images (flagged beyond 99 %: "
            f"{familiarity.threshold:.3f}).{unchecked}"
        )


st.title("Explain")
runs = finished_runs(all_stores())
if runs.empty:
    st.info("No finished runs yet: train some on the Train page.")
    st.stop()
without_weights = runs[~runs["has_model"]]
# One-class models output levels or a distance, not the data set's classes: class Grad-CAM does not apply.
one_class = runs["method"].map(lambda m: m in METHODS and METHODS.get(m).needs_binary_task)
runs = runs[runs["has_model"] & ~one_class]
if runs.empty:
    st.info("No finished run with model weights yet: train one on the Train page.")
    st.stop()
data = st.selectbox("Data set", sorted(runs["data"].unique()), key="exp_data")
pool = runs[runs["data"] == data]
without_weights = without_weights[without_weights["data"] == data]
if not without_weights.empty:
    ratios = sorted(set(without_weights["ratio_label"]), key=ratio_order)
    st.caption(
        f"{len(without_weights)} shipped run(s) of this data set ({without_weights['method'].nunique()} methods at "
        f"ratio {', '.join(ratios)}) keep only their results, not their weights, to keep the repository small: "
        "they are on Compare, not here. Their commands in pretrained/manifest.json re-make them."
    )
if one_class.any():
    st.caption(
        "One-class runs (knowledge_one_class, deep_svdd) are not listed: their outputs are middle-class levels "
        "or a distance, not classes, so class Grad-CAM does not apply. Compare shows their score histograms."
    )
default = default_selection(pool).drop_duplicates("group")["label"].tolist()[:4]  # ce, then other methods
labels = st.multiselect(
    "Runs (up to 4 side by side, in this order)",
    default + [x for x in pool["label"] if x not in default],
    default=default,
    max_selections=4,
    key=f"exp_runs_{data}",
)
picked = pool.set_index("label").loc[labels].reset_index()
if picked.empty:
    st.info("Pick at least one run.")
    st.stop()
results: list[RunResult] = load_results(picked)
config = results[0].metrics  # class names and training counts
first = picked.iloc[0]
run_config = RunStore(first["store"]).get_run(first["run_id"])["config"]
class_names = config["class_names"]

source = st.radio("Image source", ["test set", "upload"], horizontal=True, key="exp_source")
if source == "upload":
    upload = st.file_uploader("An image (PNG or JPEG, up to 10 MB)", type=["png", "jpg", "jpeg"], key="exp_upload")
    if upload is None:
        st.stop()
    try:
        image = decode_image_bytes(upload.getvalue(), run_config["image_size"], upload.name)
        image = correct_images(image[None], run_config.get("colour_constancy"))[0]  # as the run's images were
    except ImbalLabError as err:
        st.error(str(err))
        st.stop()
    true_label = None
else:
    try:
        dataset = run_dataset(run_config)
    except ImbalLabError as err:
        st.error(f"The test images of this run cannot be loaded: {err}")
        st.stop()
    test = dataset.test
    c1, c2 = st.columns(2)
    wanted = c1.selectbox("True class", ["any", *class_names], key="exp_class")
    only_wrong = c2.checkbox("Misclassified by some picked run", key="exp_wrong")
    candidates = np.arange(len(test))
    if wanted != "any":
        candidates = candidates[test.labels[candidates] == class_names.index(wanted)]
    if only_wrong:
        wrong = np.zeros(len(test), dtype=bool)
        for r in results:
            predictions = r.predictions()
            wrong |= r.decide(predictions["probs"]) != predictions["labels"]
        candidates = candidates[wrong[candidates]]
    if len(candidates) == 0:
        st.info("No test image matches these filters.")
        st.stop()
    position = (
        st.slider(f"Image (of {len(candidates)} matching)", 1, len(candidates), 1, key="exp_position") - 1
        if len(candidates) > 1
        else 0
    )
    index = int(candidates[position])
    image, true_label = test.images[index], int(test.labels[index])
    st.caption(f"Test image `{test.ids[index]}`, true class **{class_names[true_label]}**")

target_name = st.selectbox("Explain the class", ["predicted class", *class_names], key="exp_target")
target = None if target_name == "predicted class" else class_names.index(target_name)
# Five equal columns at most (the image and 4 runs): each picture fills its column and never overlaps the next. At
# least four, so that one run's picture and its notes stay above the fold.
columns = st.columns(max(len(results) + 1, 4))
columns[0].image(image, caption="image", width="stretch")
flat, models = [], []
for column, result, row in zip(columns[1:], results, picked.itertuples()):
    model = cached_model(row.store, row.run_id)
    models.append(model)
    heat, probs = grad_cam(model, image[None], target)
    predicted = int(result.decide(probs)[0])
    if target is None and predicted != int(probs[0].argmax()):  # a binary run decides at its threshold
        heat, probs = grad_cam(model, image[None], predicted)
    mark = "" if true_label is None else (" ✓" if predicted == true_label else " ✗")
    explained = "" if target is None or target == predicted else f"; p({class_names[target]}) = {probs[0, target]:.2f}"
    column.image(
        overlay(image, heat[0]),
        width="stretch",
        caption=f"{result.method} · {row.epochs} ep · {row.source} · seed {row.seed} — predicts "
        f"{class_names[predicted]} ({probs[0, predicted]:.2f}){mark}{explained}",
    )
    if heat[0].max() <= 0:
        flat.append(result.method)
    if source == "upload":
        show_familiarity(column, image, model, row)
layers = sorted({f"{m.cam_module} ({m.cam_cells}x{m.cam_cells} cells)" for m in models})
st.caption(
    f"Grad-CAM (captum LayerGradCam) on {', '.join(layers)}, ReLU on, bilinear upsampling to {image.shape[0]} px; "
    "red = most evidence. Below 112 px it reads the last feature map; from 112 px the deepest one with at least 7x7 "
    "cells."
)
if flat:
    st.info(
        f"Flat heat map ({', '.join(flat)}): no location raises the score of the explained class — every "
        "gradient-weighted activation is negative or zero, so Grad-CAM (with ReLU) has nothing to show. Try "
        "another class in *Explain the class*."
    )

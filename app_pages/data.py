"""Data: pick a source (optionally as a binary task), see its class counts, shape an imbalance profile, see samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app_pages.common import IMAGE_SIZES, PROFILES, RATIOS, data_form, set_data_form
from imbal_core import charts
from imbal_core.data import DATA_SOURCES, ImageDataset, load_dataset
from imbal_core.data.colour import COLOUR_CONSTANCY
from imbal_core.data.ham10000 import HAM_CLASS_NAMES
from imbal_core.data.tasks import REST
from imbal_core.errors import ImbalLabError
from imbal_core.imbalance import target_counts


@st.cache_resource(show_spinner="Loading the data set (first time only; then it is cached on disk)…")
def cached_dataset(
    source: str,
    path: str | None,
    image_size: int,
    split_seed: int,
    task: str | None = None,
    colour_constancy: str | None = None,
) -> ImageDataset:
    return load_dataset(
        source,
        path=path or None,
        image_size=image_size,
        split_seed=split_seed,
        task=task,
        colour_constancy=colour_constancy,
    )


form = data_form()


def changed(field: str) -> None:
    """on_change of a widget: its value into the data choice, before the rerun that shows it (sidebar included)."""
    set_data_form({**data_form(), field: st.session_state[f"data_{field}"]})


def bound(field: str) -> dict:
    """The key and callback that tie a widget to its field of the data choice."""
    return {"key": f"data_{field}", "on_change": changed, "args": (field,)}


st.title("Data")
left, right = st.columns([1, 2])
with left:
    sources = DATA_SOURCES.names()
    source = st.selectbox("Source", sources, index=sources.index(form["source"]), **bound("source"))
    info = DATA_SOURCES.get(source)
    st.caption(info.description)
    path = None
    if source != "synthetic":
        path = st.text_input(
            "Folder or file",
            form["path"],
            placeholder="/path/to/data",
            help=f"Expected layout: {info.layout}",
            **bound("path"),
        )
        st.caption(f"Expected layout: {info.layout}")
    image_size = st.select_slider(
        "Image size (px)",
        IMAGE_SIZES,
        form["image_size"],
        help="Below 112 px the backbone's first strides are removed so its last map stays 4x4; from 112 px the "
        "published architecture runs (what ImageNet weights expect). A new size builds its cache once: HAM10000 "
        "takes 0.5 GB at 128 px, 1.5 GB at 224 px and 7.9 GB at 512 px, and the built-in data about 3 minutes to "
        "draw at 224 px on 2 CPU cores.",
        **bound("image_size"),
    )
    split_seed = st.number_input("Split seed", 0, 10_000, form["split_seed"], **bound("split_seed"))
    constancy_options = ["none", *COLOUR_CONSTANCY]
    constancy = st.selectbox(
        "Colour constancy",
        constancy_options,
        index=constancy_options.index(form["colour_constancy"]),
        help="shades_of_gray: remove each image's light colour (Shades of Gray, p = 6) in every "
        "split, so cameras and lights of other colours matter less",
        **bound("colour_constancy"),
    )
    colour_constancy = None if constancy == "none" else constancy

if info.needs_path and not path:
    st.info("Enter the folder of the data set to load it.")
    st.stop()
try:
    dataset = cached_dataset(source, path, int(image_size), int(split_seed), colour_constancy=colour_constancy)
except ImbalLabError as err:
    st.error(str(err))
    st.stop()

with left:
    cached_bytes = sum(split.images.nbytes for split in dataset.splits.values())
    st.caption(
        f"At {image_size} px the images take {cached_bytes / 1e9:.2f} GB in the data cache (read memory-mapped; "
        "training holds them in memory when they fit, else streams them)."
    )
    binary = st.toggle(
        "Binary task (abnormal vs normal)",
        form["binary"],
        help="Relabel the data set into two classes: positive = abnormal (usually rare), negative = "
        "normal. One-class methods need this; every other method runs on it too.",
        **bound("binary"),
    )
    task = None
    if binary:
        if form["task_positive"] is None:  # the rarest class to start with
            rarest = dataset.class_names[int(np.argmin(dataset.train.class_counts(dataset.num_classes)))]
            form["task_positive"] = [rarest]
            set_data_form(form)
        positive = st.multiselect(
            "Positive (abnormal)",
            dataset.class_names,
            [c for c in form["task_positive"] if c in dataset.class_names],
            help="The abnormal classes; the rarest class to start with.",
            **bound("task_positive"),
        )
        others = [c for c in dataset.class_names if c not in positive]
        negative = st.multiselect(
            "Negative (normal); empty = the rest",
            others,
            [c for c in form["task_negative"] if c in others],
            **bound("task_negative"),
        )
        if positive:
            task = f"{','.join(positive)} vs {','.join(negative) or REST}"
            st.caption(f"Task: `{task}` (the same text works with `--task` in the CLI)")
        else:
            st.warning("Choose at least one positive class.")
if task:
    try:
        dataset = cached_dataset(source, path, int(image_size), int(split_seed), task, colour_constancy)
    except ImbalLabError as err:
        st.error(str(err))
        st.stop()

with right:
    st.subheader(
        f"{dataset.name}: {dataset.num_classes} classes, {sum(len(s) for s in dataset.splits.values())} images"
    )
    if task:
        st.caption(dataset.description)
    counts = dataset.counts_table().assign(total=lambda t: t.sum(axis=1))
    if source in ("ham10000", "isic2018"):
        counts.insert(0, "meaning", [HAM_CLASS_NAMES.get(name, "") for name in counts.index])
    st.dataframe(counts, width="stretch")

st.header("Imbalance profile (training split only)")
controls, chart = st.columns([1, 2])
natural = dataset.train.class_counts(dataset.num_classes)
with controls:
    profile = st.radio(
        "Profile",
        PROFILES,
        PROFILES.index(form["profile"]),
        horizontal=True,
        help="How many training images each class keeps. n_max: the largest class's count, C: the number of "
        "classes. exp: class i keeps n_max · ratio^(-i/(C-1)); step: half the classes keep n_max, half n_max/ratio; "
        "custom: type each class's count.",
        **bound("profile"),
    )
    ratio = st.select_slider(
        "Ratio n_max / n_min (log scale)",
        RATIOS,
        form["ratio"],
        disabled=profile in ("natural", "custom"),
        help="n_max: the training images kept of the largest class; n_min: of the smallest.",
        **bound("ratio"),
    )
    fit = st.radio(
        "Fit",
        ["scale", "cap"],
        ["scale", "cap"].index(form["fit"]),
        horizontal=True,
        help="How the profile meets classes with too few images. scale: every target is lowered together, so the "
        "ratio is exact (fewer images overall); cap: a class short of its target keeps all it has, so the achieved "
        "ratio may be lower.",
        **bound("fit"),
    )
    # In a binary task the abnormal side is the one made rare, whichever side has more images.
    head_order = (
        st.radio(
            "Head class",
            ["natural", "index"],
            ["natural", "index"].index(form["head_order"]),
            horizontal=True,
            format_func=lambda o: {"natural": "largest class", "index": "first class"}[o],
            help="Which class keeps n_max. Binary tasks: 'first class' = the normal side, so the "
            "abnormal side becomes the minority.",
            **bound("head_order"),
        )
        if task
        else "natural"
    )
    log_y = st.toggle("Log axis", True, key="data_log_axis")
    custom = None
    if profile == "custom":
        saved = form["custom_counts"] or {}
        edited = st.data_editor(
            pd.DataFrame(
                {"class": dataset.class_names, "count": [saved.get(c, n) for c, n in zip(dataset.class_names, natural)]}
            ),
            disabled=["class"],
            hide_index=True,
            key="data_custom_counts",
        )
        custom = {row["class"]: int(row["count"]) for _, row in edited.iterrows()}
        if custom != form["custom_counts"]:  # an edit: the data choice follows (the table has no callback value)
            set_data_form({**form, "custom_counts": custom})
try:
    if profile == "natural":
        kept = natural
    else:
        kept, _ = target_counts(natural, float(ratio), custom or profile, head_order, dataset.class_names, fit)
except ImbalLabError as err:
    st.error(str(err))
    kept = natural
with chart:
    st.plotly_chart(charts.class_counts_bar(dataset.class_names, natural, kept, log_y), key="data_counts_chart")
    achieved = max(kept) / max(min(kept), 1)
    st.caption(
        f"{int(sum(kept))} of {int(sum(natural))} training images kept; achieved ratio {achieved:.1f}. "
        "Validation and test splits are never changed."
    )

st.header("Samples per class")
per_class = st.slider("Images per class", 4, 16, 8, key="data_samples_per_class")
rng = np.random.default_rng(0)
for c, name in enumerate(dataset.class_names):
    members = np.flatnonzero(dataset.train.labels == c)
    picked = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
    st.markdown(
        f"**{name}** — {int(kept[c])} of {int(natural[c])} training images kept"
        if kept[c] != natural[c]
        else f"**{name}** — {int(natural[c])} training images"
    )
    if len(picked):
        st.image([dataset.train.images[i] for i in picked], width=84)

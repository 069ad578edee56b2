"""Data: pick a source (optionally as a binary task), see its class counts, shape an imbalance profile, see samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from imbal_core import charts
from imbal_core.data import DATA_SOURCES, ImageDataset, load_dataset
from imbal_core.data.colour import COLOUR_CONSTANCY
from imbal_core.data.ham10000 import HAM_CLASS_NAMES
from imbal_core.data.tasks import REST
from imbal_core.errors import ImbalLabError
from imbal_core.imbalance import target_counts

RATIOS = [1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500]


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


# Streamlit forgets a page's widget values when another page is shown; the choice is kept here and each
# widget starts from it, so going Data -> Train -> Data shows (and trains on) what was chosen.
WIDGET_DEFAULTS = {
    "data_source": "synthetic",
    "data_path": "",
    "data_image_size": 28,
    "data_split_seed": 0,
    "data_colour_constancy": "none",
    "data_binary": False,
    "data_profile": "natural",
    "data_ratio": 10,
    "data_fit": "scale",
    "data_head_order": "index",
    "data_log_axis": True,
}
saved_widgets: dict = st.session_state.setdefault("data_widgets", {})


def restore(key: str, default=None, allowed: list | None = None) -> None:
    """Start the widget `key` from the saved choice (values no longer offered are dropped)."""
    if key in st.session_state:
        return
    value = saved_widgets.get(key, WIDGET_DEFAULTS.get(key, default))
    if allowed is not None and isinstance(value, list):
        value = [v for v in value if v in allowed]
    if value is not None:
        st.session_state[key] = value


for widget_key in WIDGET_DEFAULTS:
    restore(widget_key)

st.title("Data")
left, right = st.columns([1, 2])
with left:
    source = st.selectbox("Source", DATA_SOURCES.names(), key="data_source")
    info = DATA_SOURCES.get(source)
    st.caption(info.description)
    path = None
    if source != "synthetic":
        path = st.text_input(
            "Folder or file", key="data_path", placeholder="/path/to/data", help=f"Expected layout: {info.layout}"
        )
        st.caption(f"Expected layout: {info.layout}")
    image_size = st.select_slider(
        "Image size (px)",
        [28, 32, 48, 64, 96, 128, 160, 192, 224, 256, 384, 512],
        key="data_image_size",
        help="Below 112 px the backbone's first strides are removed so its last map stays 4x4; from 112 px the "
        "published architecture runs (what ImageNet weights expect). A new size builds its cache once: HAM10000 "
        "takes 0.5 GB at 128 px, 1.5 GB at 224 px and 7.9 GB at 512 px, and the built-in data about 3 minutes to "
        "draw at 224 px on 2 CPU cores.",
    )
    split_seed = st.number_input("Split seed", 0, 10_000, key="data_split_seed")
    constancy = st.selectbox(
        "Colour constancy",
        ["none", *COLOUR_CONSTANCY],
        key="data_colour_constancy",
        help="shades_of_gray: remove each image's light colour (Shades of Gray, p = 6) in every "
        "split, so cameras and lights of other colours matter less",
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
        key="data_binary",
        help="Relabel the data set into two classes: positive = abnormal (usually rare), negative = "
        "normal. One-class methods need this; every other method runs on it too.",
    )
    task = None
    if binary:
        rarest = dataset.class_names[int(np.argmin(dataset.train.class_counts(dataset.num_classes)))]
        restore("data_task_positive", [rarest], allowed=dataset.class_names)
        positive = st.multiselect(
            "Positive (abnormal)",
            dataset.class_names,
            key="data_task_positive",
            help="The abnormal classes; the rarest class to start with.",
        )
        others = [c for c in dataset.class_names if c not in positive]
        restore("data_task_negative", [], allowed=others)
        negative = st.multiselect("Negative (normal); empty = the rest", others, key="data_task_negative")
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
        ["natural", "exp", "step", "custom"],
        horizontal=True,
        key="data_profile",
        help="exp: n_i = n_max · ratio^(-i/(C-1)); step: half the classes at n_max, half at n_max/ratio",
    )
    ratio = st.select_slider(
        "Ratio n_max / n_min (log scale)", RATIOS, key="data_ratio", disabled=profile in ("natural", "custom")
    )
    fit = st.radio(
        "Fit",
        ["scale", "cap"],
        horizontal=True,
        key="data_fit",
        help="scale: the ratio is exact (n_max is lowered); cap: classes short of their target keep all",
    )
    # In a binary task the abnormal side is the one made rare, whichever side has more images.
    head_order = (
        st.radio(
            "Head class",
            ["natural", "index"],
            horizontal=True,
            key="data_head_order",
            format_func=lambda o: {"natural": "largest class", "index": "first class"}[o],
            help="Which class keeps n_max. Binary tasks: 'first class' = the normal side, so the "
            "abnormal side becomes the minority.",
        )
        if task
        else "natural"
    )
    log_y = st.toggle("Log axis", key="data_log_axis")
    custom = None
    if profile == "custom":
        edited = st.data_editor(
            pd.DataFrame({"class": dataset.class_names, "count": natural}),
            disabled=["class"],
            hide_index=True,
            key="data_custom_counts",
        )
        custom = {row["class"]: int(row["count"]) for _, row in edited.iterrows()}
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

st.session_state["data_choice"] = {
    "data": source,
    "data_path": path or None,
    "image_size": int(image_size),
    "split_seed": int(split_seed),
    "ratio": None if profile in ("natural", "custom") else float(ratio),
    "profile": custom if profile == "custom" else ("exp" if profile == "natural" else profile),
    "fit": fit,
    "task": task,
    "head_order": head_order,
    "colour_constancy": colour_constancy,
}
saved_widgets.update(
    {
        key: st.session_state[key]
        for key in [*WIDGET_DEFAULTS, "data_task_positive", "data_task_negative"]
        if key in st.session_state
    }
)

st.header("Samples per class")
per_class = st.slider("Images per class", 4, 16, 8, key="data_samples_per_class")
rng = np.random.default_rng(0)
for c, name in enumerate(dataset.class_names):
    members = np.flatnonzero(dataset.train.labels == c)
    picked = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
    st.markdown(f"**{name}** — {natural[c]} training images")
    if len(picked):
        st.image([dataset.train.images[i] for i in picked], width=84)

"""Objects shared by every page and session: the run store, the background jobs, the chosen data."""

from __future__ import annotations

import json

import streamlit as st
import torch
from PIL import Image, ImageDraw

from imbal_core.compare import stores
from imbal_core.engine import TrainConfig
from imbal_core.engine.trainer import RunData, prepare_data
from imbal_core.jobs import GeneratorJobs, JobRunner
from imbal_core.runs import RunStore

DEFAULT_DATA_CHOICE = {
    "data": "synthetic",
    "data_path": None,
    "image_size": 28,
    "split_seed": 0,
    "ratio": None,
    "profile": "exp",
    "fit": "scale",
    "task": None,
    "head_order": "natural",
}


def ratio_order(label: str) -> float:
    """Sort key of ratio labels: natural counts first, then the ratios by size."""
    return 0.0 if label == "natural" else float(label)


@st.cache_resource
def user_store() -> RunStore:
    return RunStore()


@st.cache_resource
def job_runner() -> JobRunner:
    """One runner per server process: jobs outside the script thread, shared by all tabs."""
    return JobRunner(user_store())


@st.cache_resource
def generator_jobs() -> GeneratorJobs:
    """One per server process: AdaIN and diffusion trainings outside the script thread."""
    return GeneratorJobs()


def all_stores() -> list[RunStore]:
    return stores(user_store())


def data_choice() -> dict:
    """The data set and imbalance chosen on the Data page (the built-in set until one is chosen)."""
    return st.session_state.get("data_choice") or dict(DEFAULT_DATA_CHOICE)


@st.cache_resource
def app_icon() -> Image.Image:
    """Three bars of falling height: a long-tailed class distribution."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    for i, height in enumerate((56, 28, 12)):
        draw.rectangle((4 + 20 * i, 60 - height, 18 + 20 * i, 60), fill=(0, 114, 178, 255))
    return icon


def describe_data(choice: dict) -> str:
    """One line for a data choice or a run's config: source (folder), size, task, imbalance."""
    source = choice["data"] + (f" ({choice['data_path']})" if choice.get("data_path") else "")
    task = f" · task {choice['task']}" if choice.get("task") else ""
    profile = choice.get("profile", "exp")
    imbalance = (
        "natural counts"
        if choice.get("ratio") is None and not isinstance(profile, dict)
        else "custom counts"
        if isinstance(profile, dict)
        else f"{profile} ratio {choice['ratio']:g}"
    )
    constancy = f" · {choice['colour_constancy']}" if choice.get("colour_constancy") else ""
    return f"{source} · {choice['image_size']} px{task}{constancy} · {imbalance}"


@st.cache_resource(show_spinner="Preparing the training split…", max_entries=4)
def _training_data(choice_json: str) -> RunData:
    # held in memory: the pages show and compare the training images themselves
    return prepare_data(TrainConfig(**json.loads(choice_json), data_placement="device"), torch.device("cpu"))


def training_data(choice: dict) -> RunData:
    """The training split after the chosen imbalance profile, exactly as a run would see it (seed 0)."""
    return _training_data(json.dumps(choice, sort_keys=True))

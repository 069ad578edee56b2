"""Objects shared by every page and session: the run store, the background jobs, the chosen data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st
import torch
from PIL import Image, ImageDraw

from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR
from imbal_core.compare import archive_stores, stores
from imbal_core.data import DATA_SOURCES, check_inside_data_roots
from imbal_core.data.colour import COLOUR_CONSTANCY
from imbal_core.data.tasks import REST
from imbal_core.engine import TrainConfig
from imbal_core.engine.trainer import RunData, prepare_data
from imbal_core.errors import ImbalLabError
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


@st.cache_resource(show_spinner="Reading the benchmark archives (results/*_runs) ...")
def _archive_stores(signature: tuple) -> list[RunStore]:
    return archive_stores()


def compare_stores() -> list[RunStore]:
    """The stores Compare reads: yours, the shipped one, and each benchmark archive (restored once per change)."""
    signature = tuple((folder.name, folder.stat().st_mtime_ns) for folder in sorted(SHIPPED_RESULTS_DIR.glob("*_runs")))
    return all_stores() + _archive_stores(signature)


def data_choice() -> dict:
    """The data set and imbalance chosen on the Data page (the built-in set until one is chosen)."""
    return st.session_state.get("data_choice") or dict(DEFAULT_DATA_CHOICE)


# The Data page's choice as its widgets hold it. It lives in the session and in the page's address (query
# parameters), so a reload, a second tab or a shared link opens the same data; the widgets start from it and write
# their changes back in their on_change callbacks, which run before the next script run, so the sidebar and every
# page see a change in the same rerun.
DATA_FORM_DEFAULTS: dict[str, Any] = {
    "source": "synthetic",
    "path": "",
    "image_size": 28,
    "split_seed": 0,
    "colour_constancy": "none",
    "binary": False,
    "task_positive": None,  # None: the rarest class, picked when the data set is loaded
    "task_negative": [],
    "profile": "natural",
    "ratio": 10,
    "fit": "scale",
    "head_order": "index",
    "custom_counts": None,  # class -> count, with profile "custom"
}
IMAGE_SIZES = [28, 32, 48, 64, 96, 128, 160, 192, 224, 256, 384, 512]
RATIOS = [1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500]
PROFILES = ["natural", "exp", "step", "custom"]


def data_form() -> dict[str, Any]:
    """The Data page's widget values: the session's, else those in the page address, else the defaults."""
    if "data_form" not in st.session_state:
        form, ignored = form_from_query(dict(st.query_params))
        st.session_state["data_form"] = form
        st.session_state["data_form_ignored"] = ignored
        if form != DATA_FORM_DEFAULTS:
            st.session_state["data_choice"] = choice_from_form(form)
    return dict(st.session_state["data_form"])


def ignored_query_values() -> list[str]:
    """The page address's data-choice parameters that could not be used, once (then forgotten)."""
    data_form()
    return st.session_state.pop("data_form_ignored", [])


def set_data_form(form: dict[str, Any]) -> None:
    """Keep the Data page's widget values and the data choice that follows from them (what Train trains on)."""
    st.session_state["data_form"] = form
    st.session_state["data_choice"] = choice_from_form(form)


def sync_address() -> None:
    """Write the data choice into the page address (only values that differ from the defaults), on every page."""
    if "data_form" not in st.session_state:
        return
    wanted = query_from_form(st.session_state["data_form"])
    for key in set(DATA_FORM_DEFAULTS) - set(wanted):
        if key in st.query_params:
            del st.query_params[key]
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value


def choice_from_form(form: dict[str, Any]) -> dict[str, Any]:
    """The data choice (TrainConfig's data fields) that the Data page's widget values describe."""
    positive, negative = form["task_positive"] or [], form["task_negative"]
    task = f"{','.join(positive)} vs {','.join(negative) or REST}" if form["binary"] and positive else None
    custom = form["profile"] == "custom" and form["custom_counts"]
    return {
        "data": form["source"],
        "data_path": form["path"] or None,
        "image_size": int(form["image_size"]),
        "split_seed": int(form["split_seed"]),
        "ratio": None if form["profile"] in ("natural", "custom") else float(form["ratio"]),
        "profile": form["custom_counts"]
        if custom
        else ("exp" if form["profile"] in ("natural", "custom") else form["profile"]),
        "fit": form["fit"],
        "task": task,
        "head_order": form["head_order"] if task else "natural",
        "colour_constancy": None if form["colour_constancy"] == "none" else form["colour_constancy"],
    }


def query_from_form(form: dict[str, Any]) -> dict[str, str]:
    """The widget values that differ from the defaults, as query parameters (lists comma-separated)."""
    query = {}
    for key, value in form.items():
        if value == DATA_FORM_DEFAULTS[key]:
            continue
        if key == "custom_counts":
            query[key] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, list):
            query[key] = ",".join(value)
        elif isinstance(value, bool):
            query[key] = "1" if value else "0"
        else:
            query[key] = f"{value:g}" if isinstance(value, float) else str(value)
    return query


MAX_QUERY_CHARS = 10_000  # a page address's parameter: far more than any data form needs


def form_from_query(query: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Widget values from query parameters, and a note for each parameter that cannot be used (it keeps its
    default): a shared link typed by hand, or one from another version of the app, never breaks the page."""
    form, ignored = dict(DATA_FORM_DEFAULTS), []
    choices = {
        "source": DATA_SOURCES.names(),
        "colour_constancy": ["none", *COLOUR_CONSTANCY],
        "profile": PROFILES,
        "fit": ["scale", "cap"],
        "head_order": ["natural", "index"],
    }
    for key, text in query.items():
        if key not in DATA_FORM_DEFAULTS:
            continue  # another page's parameter
        shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"
        try:
            if len(text) > MAX_QUERY_CHARS:  # e.g. a deeply nested JSON would exhaust the parser's recursion
                raise ValueError(f"longer than {MAX_QUERY_CHARS:,} characters")
            form[key] = _query_value(key, text, choices)
        except (ValueError, RecursionError, ImbalLabError) as err:
            ignored.append(f"{key}={shown!r} ({err or 'nested too deep'})")
    return form, ignored


def _query_value(key: str, text: str, choices: dict[str, list[str]]) -> Any:
    if key in choices:
        if text not in choices[key]:
            raise ValueError(f"expected one of {', '.join(choices[key])}")
        return text
    if key == "path":
        check_inside_data_roots(Path(text).expanduser().resolve())  # a link must not read the server's files
        return text
    if key == "image_size" or key == "ratio":
        allowed = IMAGE_SIZES if key == "image_size" else RATIOS
        value = float(text)
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(f'{v:g}' for v in allowed)}")
        return int(value) if value.is_integer() else value
    if key == "split_seed":
        if not text.isdigit() or int(text) > 10_000:
            raise ValueError("expected a whole number from 0 to 10000")
        return int(text)
    if key == "binary":
        if text not in ("0", "1"):
            raise ValueError("expected 0 or 1")
        return text == "1"
    if key in ("task_positive", "task_negative"):
        return [name for name in text.split(",") if name]
    counts = json.loads(text)  # custom_counts
    if not (isinstance(counts, dict) and all(isinstance(v, int) and v >= 0 for v in counts.values())):
        raise ValueError("expected a JSON object of class name to count >= 0")
    return counts


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
    folder = choice.get("data_path") or ("no folder chosen yet" if DATA_SOURCES.get(choice["data"]).needs_path else "")
    source = choice["data"] + (f" ({folder})" if folder else "")
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

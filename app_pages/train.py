"""Train: queue runs of several methods and seeds; watch them, stop them, resume them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.common import data_choice, describe_data, job_runner, user_store
from imbal_core import charts
from imbal_core.data import check_inside_data_roots
from imbal_core.engine import TrainConfig
from imbal_core.engine.trainer import RESUMABLE
from imbal_core.errors import ImbalLabError
from imbal_core.executors import waits_for_a_worker
from imbal_core.jobs import progress_line
from imbal_core.methods import METHODS
from imbal_core.models import DEFAULT_BACKBONE, PRESETS, default_tag, weights_label
from imbal_core.runs import INTERRUPTED

ACTIVE = ("queued", "running")
FULL_WIDTH_BACKBONES = ("resnet18", "resnet50", "densenet121", "efficientnet_b0", "convnext_nano")
STARTING_WEIGHTS = {"random": "Random (from scratch)", "tag": "timm tag (ImageNet)", "file": "Local file"}
STARTING_WEIGHTS_HELP = (
    "Random: the network learns from the data alone. A timm tag or a local file starts from pretrained weights; the "
    "images are then normalised as those weights expect. Missing weights are an error, never a random start."
)


def starting_note(config: dict) -> str:
    """ " · resnet18 from ImageNet (a1_in1k)" for a run that starts from pretrained weights; "" from scratch."""
    label = weights_label(config.get("pretrained"))
    return f" · {config['backbone']} from {label}" if label else ""


def starting_weights(kind: str, text: str, backbone: str) -> str | None:
    """The run's `pretrained` value for the Starting weights choice (a tag, a file inside the data folders)."""
    if kind == STARTING_WEIGHTS["random"]:
        return None
    if kind == STARTING_WEIGHTS["tag"]:
        tag = text or default_tag(backbone)
        if tag is None:
            raise ImbalLabError(f"{backbone} has no published weights; pick a full-width backbone such as resnet18")
        return tag
    if not text:
        raise ImbalLabError("give the path of a .safetensors or .pth file of the backbone's weights")
    check_inside_data_roots(Path(text).expanduser())
    return str(Path(text).expanduser())


runner = job_runner()
store = user_store()

st.title("Train")
choice = data_choice()
st.caption(
    f"Data: **{describe_data(choice)}**. Change it on the Data page (one-class methods need a binary task: "
    "set it there)."
)

with st.form("train_form"):
    methods = st.multiselect(
        "Methods",
        METHODS.names(),
        default=["ce", "balanced_softmax"],
        key="train_methods",
        help="knowledge_one_class and deep_svdd are one-class methods: they need a binary task.",
    )
    a, b, c, d = st.columns(4)
    backbone = a.selectbox(
        "Backbone",
        [DEFAULT_BACKBONE, *[p for p in PRESETS if p != DEFAULT_BACKBONE], *FULL_WIDTH_BACKBONES],
        key="train_backbone",
        help="The reduced-width presets train fast on a CPU from random weights; the full-width timm networks "
        "can start from ImageNet weights.",
    )
    epochs = b.number_input("Epochs", 1, 500, 5, key="train_epochs")
    seeds_text = c.text_input("Seeds (comma-separated)", "0", key="train_seeds")
    lr = d.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.5f", key="train_lr")
    w1, w2 = st.columns([1, 3])
    weights_kind = w1.selectbox(
        "Starting weights", list(STARTING_WEIGHTS.values()), key="train_weights_kind", help=STARTING_WEIGHTS_HELP
    )
    weights_text = w2.text_input(
        "timm tag or weights file",
        key="train_weights",
        placeholder="e.g. resnet18.a1_in1k (empty: the backbone's default tag), or /path/to/weights.safetensors",
        help="A tag is read from the Hugging Face cache (downloaded once when online); a file is a .safetensors or "
        "torch state dict of the backbone's architecture, inside the allowed data folders.",
    )
    settings: dict[str, dict] = {}
    for name in methods:
        card = METHODS.get(name).card
        if not card.settings:
            continue
        with st.expander(f"{card.title} settings"):
            values = {}
            for s in card.settings:
                key = f"setting_{name}_{s.name}"
                if s.choices:
                    values[s.name] = st.selectbox(
                        s.name, s.choices, index=s.choices.index(s.default), help=s.help, key=key
                    )
                elif isinstance(s.default, bool):
                    values[s.name] = st.checkbox(s.name, s.default, help=s.help, key=key)
                elif isinstance(s.default, (int, float)):
                    values[s.name] = st.number_input(
                        s.name,
                        value=s.default,
                        help=s.help,
                        key=key,
                        format="%.5g" if isinstance(s.default, float) else "%d",
                    )
                else:
                    values[s.name] = st.text_input(s.name, str(s.default), help=s.help, key=key)
            settings[name] = values
    submitted = st.form_submit_button("Run", type="primary")

if submitted:
    try:
        seed_items = [s.strip() for s in seeds_text.split(",") if s.strip()]
        not_seeds = [s for s in seed_items if not s.isdigit()]
        if not_seeds:
            raise ImbalLabError(
                f"seeds are whole numbers >= 0 separated by commas, e.g. 0,1,2; {not_seeds[0]!r} is not one"
            )
        seeds = [int(s) for s in seed_items]
        if not methods or not seeds:
            raise ImbalLabError("choose at least one method and one seed")
        pretrained = starting_weights(weights_kind, weights_text.strip(), backbone)
        configs = [
            TrainConfig(
                method=m,
                method_settings=settings.get(m, {}),
                backbone=backbone,
                pretrained=pretrained,
                epochs=int(epochs),
                lr=float(lr),
                seed=seed,
                **choice,
            )
            for m in methods
            for seed in seeds
        ]
        chosen = [config.with_chosen_settings() for config in configs]  # e.g. IOIS's generator, left empty
        for config, _ in chosen:
            runner.submit(config, tag="app")
        st.success(f"Queued {len(configs)} run(s). They train one at a time in the background.")
        for note in dict.fromkeys(note for _, note in chosen if note):
            st.info(f"Picked for you: {note}.")
    except (ImbalLabError, ValueError) as err:
        st.error(f"Not queued: {err}")


def jobs_panel() -> None:
    runs = store.runs()
    if runs.empty:
        st.info("No runs yet. Choose methods above and press Run.")
        return
    active = runs[runs["status"].isin(ACTIVE)].iloc[::-1]  # oldest first: the order they will run in
    if active.empty and st.session_state.get("train_polling"):
        st.session_state["train_polling"] = False
        st.rerun()  # the last job ended: the whole page again, so that this panel stops refreshing
    shown = pd.concat([active, runs[~runs["status"].isin(ACTIVE)].head(8)])
    for row in shown.itertuples():
        run = store.get_run(row.run_id)  # fresher than `row`: the worker may have moved on meanwhile
        status = run["status"]
        progress = run["progress"] or {}
        with st.container(border=True):
            top = st.columns([4, 1])
            top[0].markdown(
                f"**{row.method}** · seed {row.seed} · `{row.run_id}` — **{status}**  \n"
                f"on {describe_data(run['config'])}" + starting_note(run["config"])
            )
            if status in ACTIVE and not runner.can_stop(row.run_id):
                top[1].caption(
                    f"trained by another process ({run['owner_host']}, pid {run['owner_pid']}): stop it there"
                )
            elif status in ACTIVE and top[1].button("Stop", key=f"stop_{row.run_id}"):
                runner.stop(row.run_id)
            if status in RESUMABLE and top[1].button(
                "Resume",
                key=f"resume_{row.run_id}",
                help="Continues from the end of the last finished epoch: steps of an epoch cut short are trained "
                "again, so the result is the same as a run that was never stopped.",
            ):
                runner.resume(row.run_id)
            if status == "failed":
                st.error(run["error"] or "failed")
            if run["error"] and status in ("stopped", INTERRUPTED):
                st.caption(run["error"])
            step = progress.get("step")
            done = progress.get("epoch", 0)
            if status in RESUMABLE and step and step["epoch"] >= done:  # cut short inside an epoch
                st.caption(
                    f"Stopped in epoch {step['epoch'] + 1} at step {step['step']}/{step['steps']}: Resume trains that "
                    "epoch again from its start (the result is then the same as an uninterrupted run)."
                )
            total = progress.get("epochs") or (step or {}).get("epochs") or row.epochs
            if status == "running" and step:
                st.progress(
                    min(1.0, (step["epoch"] + step["step"] / step["steps"]) / step["epochs"]),
                    text=progress_line(step, progress.get("history") or []),
                )
            elif status == "finished" and run["summary"]:
                s = run["summary"]
                if "auroc" in s:
                    st.caption(
                        f"test AUROC {s['auroc']:.3f} · AUPRC {s['auprc']:.3f} · sens. at 95 % spec. "
                        f"{s['sens_at_95_spec']:.3f} · balanced acc {s['balanced_acc']:.3f} — see Compare"
                    )
                else:
                    st.caption(
                        f"test balanced acc {s['balanced_acc']:.3f} · acc {s['acc']:.3f} · macro-F1 "
                        f"{s['macro_f1']:.3f} — see Compare"
                    )
            elif waits_for_a_worker(status, progress, run["owner_pid"]):
                st.caption(f"{done}/{total} epochs · waiting for a free Ray worker (submitted by a sweep or benchmark)")
            else:
                st.caption(f"{done}/{total} epochs")
            if progress.get("history"):
                st.plotly_chart(charts.training_curve(progress["history"]), key=f"curve_{row.run_id}")


st.header("Jobs")
# Only a tab with queued or running jobs refreshes (every 2 s); the others stay quiet until used.
polling = bool(store.runs()["status"].isin(ACTIVE).any())
st.session_state["train_polling"] = polling
st.fragment(jobs_panel, run_every=2 if polling else None)()

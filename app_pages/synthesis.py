"""Synthesis: the images training makes for minority classes — Style-KD's style-transferred auxiliary
images (content x style grid, strength slider, counts before and after balancing), AdaIN models,
and the augmentation and mixup views."""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from imbal_core import charts
from imbal_core.engine.augment import AugmentConfig, augment
from imbal_core.errors import ImbalLabError
from imbal_core.synth import (POLICIES, STYLE_TOOLS, StyleTrainConfig, auxiliary_pairs, create_style_tool,
                              load_style_model, models_for, reference_pool, style_grid, stylise_uint8)
from imbal_core.synth.style_models import training_summary
from app_pages.common import data_choice, style_jobs, training_data

POLICY_HELP = {"any": "any training image", "majority": "an image of the largest class",
               "same": "another image of the same class"}
GRID = 4  # contents x references shown in the grid
TILE = 88  # px per image on screen

st.title("Synthesis")
choice = data_choice()
try:
    data = training_data(choice)
except ImbalLabError as err:
    st.error(f"The data chosen on the Data page cannot be loaded: {err}")
    st.stop()
names = data.dataset.class_names
counts = data.class_counts.numpy()
images, labels = data.train_images, data.train_labels
ratio = "natural counts" if choice["ratio"] is None else f"ratio {choice['ratio']:g}"
st.caption(f"Training split of **{choice['data']}** at {choice['image_size']} px, {ratio} — change it on the Data page.")


@st.cache_resource(max_entries=4)
def cached_style_model(path: str, modified: float):
    """Loaded once per file version, not on every slider move."""
    return load_style_model(path)


def tiles(batch: torch.Tensor) -> list[np.ndarray]:
    return list(batch.permute(0, 2, 3, 1).numpy())


def style_model_panel() -> None:
    """The AdaIN models for this data, and a background training with progress, stop and resume."""
    jobs = style_jobs()
    with st.form("style_train_form"):
        st.markdown("**Train an AdaIN model** on this data set's training split (in the background).")
        a, b, c = st.columns(3)
        default = StyleTrainConfig(data=choice["data"], image_size=choice["image_size"])
        name = a.text_input("Name", f"{default.default_name()}_mine", key="style_train_name")
        epochs = b.number_input("Epochs", 2, 200, default.epochs, key="style_train_epochs")
        width = c.select_slider("Width", [8, 16, 32], value=default.width, key="style_train_width")
        if st.form_submit_button("Train"):
            try:
                config = StyleTrainConfig(data=choice["data"], data_path=choice["data_path"],
                                          image_size=choice["image_size"], split_seed=choice["split_seed"],
                                          epochs=int(epochs), autoencoder_epochs=max(1, int(epochs) * 2 // 5),
                                          width=int(width))
                jobs.start(config, name)
                st.success(f"Training {name!r} in the background; it appears in the model list when done.")
            except ImbalLabError as err:
                st.error(f"Not started: {err}")
    style_job_status()


@st.fragment(run_every=2)
def style_job_status() -> None:
    jobs = style_jobs()
    for status in jobs.statuses()[:3]:
        with st.container(border=True):
            top = st.columns([4, 1])
            top[0].markdown(f"**{status['name']}** — {status['status']}")
            if status["status"] == "running" and top[1].button("Stop", key=f"style_stop_{status['name']}"):
                jobs.stop()
            if status["status"] == "stopped" and top[1].button("Resume", key=f"style_resume_{status['name']}"):
                try:
                    jobs.start(StyleTrainConfig(**status["config"]), status["name"], resume=True)
                except ImbalLabError as err:
                    st.error(str(err))
            step = status.get("step")
            if status["status"] == "running" and step:
                done = (step["epoch"] + step["step"] / step["steps"]) / step["epochs"]
                st.progress(min(1.0, done), text=f"{step['phase']}: epoch {step['epoch'] + 1}/{step['epochs']}, "
                                                 f"loss {step['loss']:.4f}")
            if status.get("error"):
                st.caption(status["error"])


style_tab, augment_tab = st.tabs(["Style transfer (Style-KD)", "Augmentation and mixup"])

with style_tab:
    order = list(np.argsort(counts))  # rarest first: these are the classes Style-KD tops up
    controls = st.columns(4)
    target = controls[0].selectbox("Class", order, format_func=lambda c: f"{names[c]} ({counts[c]} images)",
                                   key="style_class")
    policy = controls[1].selectbox("Reference policy", POLICIES, format_func=lambda p: f"{p}: {POLICY_HELP[p]}",
                                   key="style_policy")
    tool_name = controls[2].selectbox("Tool", STYLE_TOOLS.names(), key="style_tool")
    seed = controls[3].number_input("Seed", 0, 10_000, 0, key="style_seed")
    sliders = st.columns(2)
    strength = sliders[0].slider("Strength α (0 = content image, 1 = full transfer)", 0.0, 1.0, 1.0, 0.05,
                                 key="style_strength")
    beta = sliders[1].slider("β: low-frequency band swapped (share of the side)", 0.01, 0.5, 0.1, 0.01,
                             key="style_beta", disabled=tool_name != "fourier")
    tool = None
    if tool_name == "adain":
        available = models_for(choice["data"], choice["image_size"])
        if available:
            picked = st.selectbox("AdaIN model", available, key="style_model",
                                  format_func=lambda m: f"{m.name} ({m.source}) — {training_summary(m)}")
            keep_detail = st.checkbox("Keep the content's detail (add only the style's change; the small decoder "
                                      "blurs)", value=True, key="style_keep_detail")
            tool = create_style_tool("adain", model=cached_style_model(str(picked.path), picked.path.stat().st_mtime), keep_detail=keep_detail)
        else:
            st.info(f"No AdaIN model for {choice['data']} at {choice['image_size']} px yet: train one below "
                    "(or from the CLI: `python -m imbal_core style-train`).")
    else:
        tool = create_style_tool(tool_name, **({"beta": beta} if tool_name == "fourier" else {}))

    generator = torch.Generator().manual_seed(int(seed))
    members = torch.nonzero(labels == target).flatten()
    if tool is not None and len(members):
        contents = members[torch.randperm(len(members), generator=generator)[:GRID]]
        pool = reference_pool(labels, len(names), int(target), policy)
        references = pool[torch.randint(len(pool), (GRID,), generator=generator)]
        grid = style_grid(tool, images[contents], images[references], strength)
        st.subheader("Content × style")
        st.caption("Rows: content images of the class. Columns: reference images chosen by the policy (top row). "
                   "Each cell keeps its row's content and takes its column's style; the label stays the row's class.")
        header = st.columns(GRID + 1)
        header[0].markdown("content ↓ / style →")
        for j, ref in enumerate(references.tolist()):
            header[j + 1].image(tiles(images[[ref]])[0], width=TILE, caption=names[int(labels[ref])])
        for i, content in enumerate(contents.tolist()):
            row = st.columns(GRID + 1)
            row[0].image(tiles(images[[content]])[0], width=TILE, caption=names[target])
            for j in range(len(references)):
                row[j + 1].image(tiles(grid[i, j:j + 1])[0], width=TILE)

        pairs = auxiliary_pairs(labels, len(names), policy, generator)
        own = torch.nonzero(pairs.labels == target).flatten()[:8]
        st.subheader("Real images beside the auxiliary ones")
        st.caption("What Style-KD adds for this class in one epoch (first 8 of "
                   f"{int(counts.max() - counts[target])}), next to real images of the class.")
        st.image(tiles(images[members[:8]]), width=TILE, caption=["real"] * min(8, len(members)))
        if len(own):
            made = stylise_uint8(tool, images[pairs.content[own]], images[pairs.reference[own]], strength)
            st.image(tiles(made), width=TILE, caption=["auxiliary"] * len(own))
        else:
            st.caption("This is the largest class: Style-KD adds no images to it.")

    st.subheader("Class counts before and after balancing")
    auxiliary = np.maximum(counts.max() - counts, 0) * (counts > 0)
    st.plotly_chart(charts.balancing_bar(names, counts, auxiliary), key="style_counts_chart")
    st.caption(f"{int(counts.sum())} real + {int(auxiliary.sum())} auxiliary images per epoch: every class reaches "
               f"{int(counts.max())}.")

    with st.expander("AdaIN models", expanded=tool_name == "adain" and tool is None):
        style_model_panel()

with augment_tab:
    minority = st.selectbox("Minority class", order, format_func=lambda c: f"{names[c]} ({counts[c]} images)",
                            key="syn_class")
    aug_seed = st.number_input("Seed", 0, 10_000, 0, key="syn_seed")
    real = images[torch.nonzero(labels == minority).flatten()[:8]]
    st.subheader("Real")
    st.image(tiles(real), width=TILE)
    st.subheader("Augmented views (flips, 90° turns, affine, colour jitter — batched, as in training)")
    views = augment(real, torch.Generator().manual_seed(int(aug_seed)), AugmentConfig())
    st.image(tiles(((views + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)), width=TILE)
    st.subheader("Mixup with the head class")
    lam = st.slider("lambda (share of the minority image)", 0.0, 1.0, 0.7, 0.05, key="syn_lambda")
    head = images[torch.nonzero(labels == order[-1]).flatten()[:len(real)]]
    mixed = lam * real.float() + (1 - lam) * head[:len(real)].float()
    st.image(tiles(mixed.round().clamp(0, 255).to(torch.uint8)), width=TILE)
    st.caption(f"Label: {lam:.2f} × {names[minority]} + {1 - lam:.2f} × {names[order[-1]]}")

"""Synthesis: the images training makes for minority classes — Style-KD's style-transferred auxiliary
images (content x style grid, strength slider, counts before and after balancing), IOIS's diffusion
samples (per-class grid beside real images and their nearest training images, denoising strip,
guidance and SDEdit sliders, quality table, AAS trace of a run), the generators (AdaIN and
diffusion) with background training, the middle classes of knowledge-guided one-class learning (normal
-> middle 1..K -> real abnormal, a strength slider per operation), and the augmentation and mixup views."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app_pages.common import all_stores, data_choice, generator_jobs, training_data, user_store
from imbal_core import charts
from imbal_core.compare import finished_runs, load_results, run_history
from imbal_core.data import ImageDataset, apply_task, parse_task
from imbal_core.engine.augment import AugmentConfig, augment
from imbal_core.errors import ImbalLabError
from imbal_core.jobs import duration_text
from imbal_core.knowledge import RECIPES, level_strengths, middle_classes, recipe_for_data
from imbal_core.synth.diffusion import DiffusionTrainConfig, load_diffusion_model, sdedit_starts
from imbal_core.synth.figure import SheetRow, image_sheet
from imbal_core.synth.generators import GeneratorInfo, data_mismatch, generators_for, training_summary
from imbal_core.synth.quality import (
    TARGET_RATIOS,
    TARGETS_TEXT,
    limits_sentence,
    measure_generator,
    nearest_neighbours,
    shipped_quality,
    targets_table,
)
from imbal_core.synth.style import (
    POLICIES,
    STYLE_TOOLS,
    auxiliary_pairs,
    create_style_tool,
    reference_pool,
    style_grid,
    stylise_uint8,
)
from imbal_core.synth.style_models import StyleTrainConfig, load_style_model

POLICY_HELP = {
    "any": "any training image",
    "majority": "an image of the largest class",
    "same": "another image of the same class",
}
GRID = 4  # contents x references shown in the grid
TILE = 88  # px per image on screen
SAMPLES = 16  # diffusion samples shown per class
PER_ROW = 8  # samples per row, each above its nearest training image
LATENT_FROM = 64  # px: from this size a new diffusion model learns in latent space by default

st.title("Synthesis")
choice = data_choice()
try:
    data = training_data(choice)
except ImbalLabError as err:
    st.error(f"The data chosen on the Data page cannot be loaded: {err}")
    st.stop()
names = data.dataset.class_names
counts = data.class_counts.numpy()
images, labels = data.train_images[:], data.train_labels  # [:]: a tensor, however the images are held
order = list(np.argsort(counts))  # rarest first: the classes synthesis tops up
ratio = "natural counts" if choice["ratio"] is None else f"ratio {choice['ratio']:g}"
st.caption(
    f"Training split of **{choice['data']}** at {choice['image_size']} px, {ratio} — change it on the Data page."
)


@st.cache_resource(max_entries=4)
def cached_style_model(path: str, modified: float):
    """Loaded once per file version, not on every slider move."""
    return load_style_model(path)


@st.cache_resource(max_entries=4)
def cached_diffusion_model(path: str, modified: float):
    return load_diffusion_model(path)


def tiles(batch: torch.Tensor) -> list[np.ndarray]:
    return list(batch.permute(0, 2, 3, 1).numpy())


def describe(info: GeneratorInfo) -> str:
    return f"{info.name} ({info.source}) — {training_summary(info)}"


TRAIN_CONFIGS = {"adain": StyleTrainConfig, "diffusion": DiffusionTrainConfig}
WIDTHS = {"adain": [8, 16, 32], "diffusion": [8, 16, 32, 64]}


def generator_panel(kind: str) -> None:
    """Train a generator of `kind` on this data's training split in the background (progress, stop, resume)."""
    jobs = generator_jobs()
    recipe = TRAIN_CONFIGS[kind]
    with st.form(f"{kind}_train_form"):
        st.markdown(
            f"**Train a{'n AdaIN' if kind == 'adain' else ' diffusion'} model** on this data set's training "
            "split (the kept images after the imbalance profile), in the background."
        )
        a, b, c = st.columns(3)
        default = recipe(data=choice["data"], image_size=choice["image_size"], ratio=choice["ratio"])
        name = a.text_input("Name", f"{default.default_name()}_mine", key=f"{kind}_train_name")
        epochs = b.number_input("Epochs", 2, 500, default.epochs, key=f"{kind}_train_epochs")
        width = c.select_slider("Width", WIDTHS[kind], value=default.width, key=f"{kind}_train_width")
        latent_possible = kind == "diffusion" and choice["image_size"] % 16 == 0
        latent = latent_possible and st.checkbox(
            "Latent space (an autoencoder first, then the UNet on its latents, 4x smaller a side)",
            value=choice["image_size"] >= LATENT_FROM,
            key="diffusion_train_latent",
            help="About 30x cheaper a step at 64 px than denoising pixels (benchmarks/generator_cost.py); the "
            "first eighth of the epochs train the autoencoder.",
        )
        if st.form_submit_button("Train"):
            try:
                options = dict(
                    data=choice["data"],
                    data_path=choice["data_path"],
                    data_options=choice.get("data_options") or None,
                    image_size=choice["image_size"],
                    split_seed=choice["split_seed"],
                    ratio=choice["ratio"],
                    profile=choice["profile"],
                    fit=choice["fit"],
                    epochs=int(epochs),
                    width=int(width),
                )
                if kind == "adain":
                    options["autoencoder_epochs"] = max(1, int(epochs) * 2 // 5)
                if latent:
                    options.update(latent_channels=4, autoencoder_epochs=max(1, int(epochs) // 8))
                jobs.start(recipe(**options), name)
                st.success(f"Training {name!r} in the background; it appears in the model list when done.")
            except ImbalLabError as err:
                st.error(f"Not started: {err}")
    generator_job_status(kind)


@st.fragment(run_every=2)
def generator_job_status(kind: str) -> None:
    """The latest trainings of this kind, refreshed every 2 s from their status files."""
    jobs = generator_jobs()
    for status in jobs.statuses(kind)[:3]:
        with st.container(border=True):
            top = st.columns([4, 1])
            top[0].markdown(f"**{status['name']}** — {status['status']}")
            if status["status"] == "running" and top[1].button("Stop", key=f"{kind}_stop_{status['name']}"):
                jobs.stop()
            if status["status"] == "stopped" and top[1].button("Resume", key=f"{kind}_resume_{status['name']}"):
                try:
                    jobs.resume(status)
                except ImbalLabError as err:
                    st.error(str(err))
            step = status.get("step")
            if status["status"] == "running" and step:
                done = (step["epoch"] + step["step"] / step["steps"]) / step["epochs"]
                st.progress(
                    min(1.0, done),
                    text=f"{step['phase']}: epoch {step['epoch'] + 1}/{step['epochs']}, loss {step['loss']:.4f}",
                )
            if status.get("error"):
                st.caption(status["error"])


@st.cache_data(max_entries=16, show_spinner="Denoising…")
def diffusion_samples(
    path: str, modified: float, data_key: str, target: int, guidance: float, strength: float, steps: int, seed: int
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """SAMPLES images of one class (uint8 NCHW) and the first one's denoising strip.

    `data_key` (the data choice) keys the cache: SDEdit starts from this training split's images.
    """
    model = cached_diffusion_model(path, modified)
    generator = torch.Generator().manual_seed(seed)
    wanted = torch.full((SAMPLES,), target)
    init = sdedit_starts(images, labels, wanted, generator) if strength < 1.0 else None
    shown = sorted({0, *np.linspace(0, steps, 6).round().astype(int).tolist()})
    made, strip = model.sample(
        wanted,
        steps=steps,
        guidance=guidance,
        generator=generator,
        init_images=init,
        strength=strength,
        trajectory_at=tuple(shown),
    )
    return made.numpy(), {step: x[0].numpy() for step, x in strip.items()}


@st.cache_data(max_entries=8, show_spinner=False)
def quality_table(
    path: str,
    modified: float,
    run_id: str,
    per_class: int,
    steps: int,
    guidance: float,
    strength: float,
    _progress: Callable[[float], None],
) -> pd.DataFrame:
    return measure_generator(
        path,
        run_id,
        user_store(),
        per_class=per_class,
        steps=steps,
        guidance=guidance,
        strength=strength,
        device="cpu",
        progress=_progress,
    ).table


def progress_bar(what: str) -> Callable[[float], None]:
    """A progress bar with the time left, estimated from the pace so far; the callback takes the share done."""
    bar, started = st.progress(0.0, text=what), time.time()

    def update(share: float) -> None:
        elapsed = time.time() - started
        left = f" · about {duration_text(elapsed / share - elapsed)} left" if share > 0.02 else ""
        bar.progress(min(share, 1.0), text=f"{what} {share:.0%}{left}")

    return update


def figure_scale(size: int) -> int:
    """Whole-pixel enlargement for a slide: images of about 128 px or more."""
    return min(8, max(2, round(128 / size)))


def samples_beside_real(
    picked: GeneratorInfo, target: int, made: np.ndarray, guidance: float, steps: int, strength: float, seed: int
) -> None:
    """The demo view: real images of the class, then each synthetic image above its nearest training image (any
    class), the model's limits and quality verdict for the class, and the same as a captioned PNG for slides."""
    size = int(picked.config["image_size"])
    shown = size if size >= LATENT_FROM else TILE  # native size; smaller images are enlarged to stay visible
    st.subheader(f"{names[target]}: synthetic images beside real ones")
    members = torch.nonzero(labels == target).flatten()
    real = tiles(images[members[:PER_ROW]])
    st.image(real, width=shown, caption=["real"] * len(real))
    synthetic = list(made.transpose(0, 2, 3, 1))
    train_nhwc = images.permute(0, 2, 3, 1).numpy()
    nearest, distance = nearest_neighbours(made.transpose(0, 2, 3, 1), train_nhwc)
    nearest_of = [f"{names[int(labels[i])]} · d={d:.3f}" for i, d in zip(nearest, distance)]  # class, distance
    for start in range(0, len(synthetic), PER_ROW):
        for column, k in zip(st.columns(PER_ROW), range(start, min(start + PER_ROW, len(synthetic)))):
            column.image(synthetic[k], width=shown, caption="synthetic")
            column.image(train_nhwc[nearest[k]], width=shown, caption=f"nearest: {nearest_of[k]}")
    _, real_distance = nearest_neighbours(data.dataset.val.images[:256], train_nhwc)
    distance_note = (
        f"d: RMS pixel distance (0-1 scale) to the nearest training image of any class; real validation images "
        f"(never trained on) lie at a median d = {np.median(real_distance):.3f}: synthetic images much closer than "
        "that are near-copies of a training image (memorisation)."
    )
    st.caption(distance_note + ("" if size >= LATENT_FROM else f" Shown enlarged from {size} px."))
    limits = limits_sentence(picked.config, picked.history, names[target], int(counts[target]))
    st.info(f"**Limits.** {limits}")
    verdict = ""
    measured = st.session_state.get("quality_result")  # measured on this page, else the shipped model's file
    if measured and measured[0] == picked.name:
        quality, where = targets_table(measured[3]), f"measured here, judged by {measured[1]}"
    else:  # a file of ours speaks of the shipped model only
        quality = shipped_quality(picked.name) if picked.source == "shipped" else None
        where = f"results/{picked.name}_quality.md"
    row = None if quality is None else quality[quality["class"] == names[target]]
    if row is not None and not row.empty:
        misses = str(row["misses"].iloc[0])
        if misses:
            verdict = f"Quality targets for {names[target]}: {misses} ({where})."
            st.warning(verdict)
        else:
            verdict = f"{names[target]} meets the quality targets ({where})."
            st.success(verdict)
    title = (
        f"{picked.name} · class {names[target]} ({int(counts[target])} training images) · guidance {guidance:g} · "
        f"{steps} DDIM steps · SDEdit strength {strength:g} · seed {seed}"
    )
    rows = [SheetRow("real", real)]
    for start in range(0, len(synthetic), PER_ROW):
        part = slice(start, start + PER_ROW)
        rows += [
            SheetRow("synthetic", synthetic[part]),
            SheetRow("nearest training image", list(train_nhwc[nearest[part]]), nearest_of[part]),
        ]
    st.download_button(
        "Download figure",
        image_sheet(
            title, rows, notes=" ".join(filter(None, [limits, verdict, distance_note])), scale=figure_scale(size)
        ),
        file_name=f"{picked.name}_{names[target]}_guidance{guidance:g}_steps{steps}_seed{seed}.png",
        mime="image/png",
        key="diffusion_figure",
        help="A captioned PNG of these images (enlarged pixel for pixel) for a slide.",
    )


def diffusion_tab_body() -> None:
    available = generators_for("diffusion", choice["data"], choice["image_size"])
    if not available:
        st.info(
            f"No diffusion model for {choice['data']} at {choice['image_size']} px yet: train one below (or from "
            "the CLI: `python -m imbal_core diffusion-train`)."
        )
        with st.expander("Diffusion models", expanded=True):
            generator_panel("diffusion")
        return
    picked = st.selectbox("Diffusion model", available, key="diffusion_model", format_func=describe)
    path, modified = str(picked.path), picked.path.stat().st_mtime
    rarest = next(c for c in order if counts[c] > 0)
    # Before the widgets below exist in this rerun, so their values may still be set.
    if st.button(
        f"Demo: {SAMPLES} samples of the rarest class ({names[rarest]})",
        key="diffusion_demo",
        help="Sets the class to the rarest one and the sampler to its defaults (25 DDIM steps, guidance 2, from "
        "pure noise, seed 0).",
    ):
        st.session_state.update(
            diffusion_class=rarest, diffusion_steps=25, diffusion_guidance=2.0, diffusion_strength=1.0, diffusion_seed=0
        )
    controls = st.columns(4)
    target = controls[0].selectbox(
        "Class", order, format_func=lambda c: f"{names[c]} ({counts[c]} images)", key="diffusion_class"
    )
    steps = controls[1].select_slider(
        "DDIM steps",
        [5, 10, 25, 50, 100],
        value=25,
        key="diffusion_steps",
        help="DDIM: a sampler that denoises in a few large steps instead of the 1000 small ones the model was trained "
        "with; fewer steps are faster and a little less detailed.",
    )
    seed = controls[2].number_input("Seed", 0, 10_000, 0, key="diffusion_seed")
    controls[3].caption(f"Trained {training_summary(picked)}")
    sliders = st.columns(2)
    guidance = sliders[0].slider(
        "Guidance scale (1 = none; higher = more typical of the class)",
        0.0,
        6.0,
        2.0,
        0.5,
        key="diffusion_guidance",
        help="Classifier-free guidance (CFG): each step moves the image away from the model's class-free guess and "
        "towards its guess for the class, by this factor. Higher: more typical of the class, less varied.",
    )
    strength = sliders[1].slider(
        "SDEdit strength (1 = from pure noise; lower = closer to a real image)",
        0.1,
        1.0,
        1.0,
        0.05,
        key="diffusion_strength",
        help="SDEdit: start from a real training image of the class with noise added, and denoise only that share "
        "of the steps: the result keeps the real image's layout.",
    )
    made, strip = diffusion_samples(
        path, modified, json.dumps(choice, sort_keys=True), int(target), guidance, strength, int(steps), int(seed)
    )

    samples_beside_real(picked, int(target), made, guidance, int(steps), strength, int(seed))

    st.subheader("Denoising, step by step")
    st.image(
        [x.transpose(1, 2, 0) for x in strip.values()],
        width=TILE,
        caption=[f"step {step}/{steps if strength == 1.0 else max(1, round(steps * strength))}" for step in strip],
    )
    st.caption(
        "x_t (the image at denoising step t) of the first sample: from noise (or, with SDEdit, a noised real image) "
        f"to the image; DDIM, guidance {guidance:g}."
    )

    st.subheader("Generator quality, per class")
    runs = finished_runs(all_stores())
    # Any size: a judge of another size sees every image (synthetic and real) resized to its own.
    same_data = runs[
        runs["has_model"]
        & runs["config"].map(lambda c: data_mismatch(picked.config, json.loads(c), ignore=("image_size",)) is None)
    ]
    if same_data.empty:
        st.caption("Quality is judged by a finished run on the same data (its classifier and features): train one.")
    else:
        # The judge learnt from the generator's own training images (same ratio), for the longest; then a
        # class-balanced one: `ce` often never predicts the rarest classes, so their fidelity says nothing.
        configs = same_data["config"].map(json.loads)
        judges = same_data.assign(
            _other_size=configs.map(lambda c: c["image_size"] != picked.config["image_size"]),
            _other_ratio=configs.map(lambda c: c.get("ratio") != picked.config.get("ratio")),
            _epochs=-configs.map(lambda c: c["epochs"]),
            _method=same_data["method"].map({"balanced_softmax": 0, "ce": 1}).fillna(2),
        ).sort_values(["_other_size", "_other_ratio", "_epochs", "_method"], kind="stable")
        judge = st.selectbox(
            "Judged by the classifier and features of",
            judges["label"].tolist(),
            key="quality_run",
            help="A finished run on the generator's data; one at the generator's size, then one trained on its "
            "training images for the longest, comes first (a short run of one's own recognises rare classes too "
            "poorly to judge them). A run of another size judges every image resized to its own size.",
        )
        per_class = st.select_slider("Images per class", [16, 32, 64], value=32, key="quality_n")
        if st.button("Measure quality", key="quality_go"):
            run_id = str(judges.set_index("label").loc[judge, "run_id"])
            try:
                st.session_state["quality_result"] = (
                    picked.name,
                    judge,
                    per_class,
                    quality_table(
                        path,
                        modified,
                        run_id,
                        per_class,
                        int(steps),
                        guidance,
                        strength,
                        progress_bar(f"Sampling {per_class} images of every class"),
                    ),
                )
            except ImbalLabError as err:
                st.error(str(err))
            else:
                st.rerun()  # the samples above say how their class fares against the targets: draw them again
        result = st.session_state.get("quality_result")
        if result and result[0] == picked.name:
            st.dataframe(
                result[3],
                hide_index=True,
                width="stretch",
                column_config={c: st.column_config.NumberColumn(format="%.3f") for c in result[3].columns[3:]},
            )
            st.caption(
                f"Judged by {result[1]}, {result[2]} images per class. label_fidelity: share classified as "
                "their class (real_val_recall: the same classifier on real validation images). fd: Fréchet "
                "distance (FD: how far apart two clouds of features are, by their means and spreads; 0 = alike) to "
                "the real training features in a 32-d PCA of that run's features — not Inception-FID. nn_distance: "
                "median distance to the nearest training image. diversity: pairwise feature spread relative to the "
                "real class (1 = as varied)."
            )
            st.dataframe(
                targets_table(result[3]),
                hide_index=True,
                width="stretch",
                column_config={c: st.column_config.NumberColumn(format="%.2f") for c in TARGET_RATIOS},
            )
            st.caption(TARGETS_TEXT)

    aas_trace_section()

    with st.expander("Diffusion models"):
        generator_panel("diffusion")


def aas_trace_section() -> None:
    """Per epoch of an IOIS run: each class's training accuracy and the synthetic images it was given."""
    st.subheader(
        "AAS trace of an IOIS run",
        help="AAS (accuracy-adaptive sampling): each epoch IOIS gives more synthetic images to the classes the "
        "classifier gets wrong most often on its training images.",
    )
    runs = finished_runs(all_stores())
    iois = runs[runs["method"] == "iois"]
    if iois.empty:
        st.caption("No finished IOIS run yet: train one on the Train page (method iois).")
        return
    label = st.selectbox("IOIS run", iois["label"].tolist(), key="aas_run")
    picked_run = iois[iois["label"] == label]
    history = run_history(picked_run.iloc[0])
    class_names = load_results(picked_run)[0].class_names
    st.plotly_chart(charts.aas_accuracy(history, class_names), key="aas_accuracy")
    st.plotly_chart(charts.aas_allocation(history, class_names), key="aas_allocation")
    st.caption(
        "Top: per-class accuracy on the real training images during each epoch. Bottom: synthetic images "
        "each class received in that epoch, decided from the previous epoch's accuracy (warm-up epochs get "
        "none)."
    )


@st.cache_data(max_entries=16, show_spinner="Making middle classes…")
def cached_middle_classes(
    _dataset: ImageDataset,
    choice_key: str,
    task: str,
    already_binary: bool,
    recipe: str,
    levels: int,
    weights: tuple,
    seed: int,
    rows: int,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Normal images, their K middle classes and as many real abnormal images (train split, seeded picks).

    `_dataset` is not hashed: `choice_key` (the Data page's choice, which decides it) keys the cache.
    """
    binary = _dataset if already_binary else apply_task(_dataset, task)
    rng = np.random.default_rng(seed)
    split = binary.train
    normal_pool, abnormal_pool = np.flatnonzero(split.labels == 0), np.flatnonzero(split.labels == 1)
    normal = split.images[rng.choice(normal_pool, min(rows, len(normal_pool)), replace=False)]
    abnormal = split.images[rng.choice(abnormal_pool, min(rows, len(abnormal_pool)), replace=False)]
    sides = parse_task(task)
    made = middle_classes(recipe, normal, levels, seed, dict(weights), (sides.positive, sides.negative))
    return normal, made, abnormal


def middle_classes_tab_body() -> None:
    st.caption(
        "Knowledge-guided one-class learning trains on normal images and on 'middle classes' that a "
        "knowledge recipe makes from them: middle class k of K applies every operation at strength k/(K+1). "
        "No real abnormal image is used for training; the last column shows real ones to compare with."
    )
    if choice.get("task"):
        task = choice["task"]
        st.markdown(f"Task from the Data page: `{task}` (positive = abnormal).")
    else:
        default = f"{names[order[-2]]} vs {names[order[-1]]}" if len(names) > 1 else ""
        task = st.text_input(
            "Binary task: abnormal vs normal",
            default,
            key="mid_task",
            help="Positive (abnormal) vs negative (normal) class names, e.g. 'mel vs nv'; choose it "
            "on the Data page to train with it.",
        )
    controls, grid = st.columns([1, 2.6], gap="large")
    auto = recipe_for_data(choice["data"], choice.get("data_path"), choice.get("data_options"))
    recipe_names = RECIPES.names()
    with controls:
        recipe_name = st.selectbox(
            "Recipe",
            recipe_names,
            index=recipe_names.index(auto),
            key="mid_recipe",
            format_func=lambda n: f"{n} (auto for this data)" if n == auto else n,
        )
        recipe = RECIPES.get(recipe_name)
        levels = st.slider("K middle classes", 1, 6, 3, key="mid_levels")
        rows = st.slider("Rows (normal images)", 2, 8, 4, key="mid_rows")
        seed = st.number_input("Seed", 0, 10_000, 0, key="mid_seed")
        st.markdown("**Strength of each operation**")
        weights = {
            op.name: st.slider(op.name, 0.0, 1.0, 1.0, 0.05, help=op.description, key=f"mid_w_{recipe_name}_{op.name}")
            for op in recipe.operations
        }
    with grid:
        st.markdown(f"**{recipe.title}** — knowledge from {recipe.source}.")
        try:
            normal, made, abnormal = cached_middle_classes(
                data.dataset,
                json.dumps(choice, sort_keys=True),
                task,
                bool(choice.get("task")),
                recipe_name,
                levels,
                tuple(sorted(weights.items())),
                int(seed),
                rows,
            )
        except (ImbalLabError, ValueError) as err:
            st.error(f"Cannot make middle classes: {err}")
            return
        strengths = level_strengths(levels)
        # Two lines under every header, so the image rows line up across columns.
        headers = [
            ("normal", "strength 0"),
            *[(f"middle {k}", f"strength {t:.2f}") for k, t in enumerate(strengths, start=1)],
            ("real abnormal", "training images"),
        ]
        columns = st.columns(len(headers))
        for column, (header, detail), batch in zip(columns, headers, [normal, *made, abnormal]):
            column.markdown(f"**{header}**  \n{detail}")
            column.image(list(batch), width=TILE)
        with st.expander("What each operation draws"):
            st.markdown(
                "\n".join(f"- **{op.name}** ({weights[op.name]:.2f}): {op.description}" for op in recipe.operations)
            )
    if recipe.needs_task_classes:
        grid.caption(
            "The built-in recipe does not edit the normal images: it renders new lesions whose factors lie "
            "between a normal and an abnormal class (each slider scales how far that factor group moves)."
        )
    else:
        grid.caption(
            "Each row is one normal training image and its middle-class versions. Sliders scale each "
            "operation's strength; training uses them all at 1 (the method's `operations` setting drops some)."
        )


style_tab, diffusion_tab, middle_tab, augment_tab = st.tabs(
    ["Style transfer (Style-KD)", "Diffusion (IOIS)", "Middle classes (one-class)", "Augmentation and mixup"]
)

with style_tab:
    controls = st.columns(4)
    target = controls[0].selectbox(
        "Class", order, format_func=lambda c: f"{names[c]} ({counts[c]} images)", key="style_class"
    )
    policy = controls[1].selectbox(
        "Reference policy", POLICIES, format_func=lambda p: f"{p}: {POLICY_HELP[p]}", key="style_policy"
    )
    tool_name = controls[2].selectbox("Tool", STYLE_TOOLS.names(), key="style_tool")
    seed = controls[3].number_input("Seed", 0, 10_000, 0, key="style_seed")
    sliders = st.columns(2)
    strength = sliders[0].slider(
        "Strength α (0 = content image, 1 = full transfer)", 0.0, 1.0, 1.0, 0.05, key="style_strength"
    )
    beta = sliders[1].slider(
        "β: low-frequency band swapped (share of the side)",
        0.01,
        0.5,
        0.1,
        0.01,
        key="style_beta",
        disabled=tool_name != "fourier",
    )
    tool = None
    if tool_name == "adain":
        available = generators_for("adain", choice["data"], choice["image_size"], any_size=True)
        if available:
            picked = st.selectbox("AdaIN model", available, key="style_model", format_func=describe)
            if picked.config.get("image_size") != choice["image_size"]:
                st.caption(
                    f"Trained at {picked.config.get('image_size')} px; the model is fully convolutional, so it "
                    f"stylises these {choice['image_size']} px images (a model trained at this size sees more "
                    "context: train one below)."
                )
            keep_detail = st.checkbox(
                "Keep the content's detail (add only the style's change; the small decoder blurs)",
                value=True,
                key="style_keep_detail",
            )
            tool = create_style_tool(
                "adain",
                model=cached_style_model(str(picked.path), picked.path.stat().st_mtime),
                keep_detail=keep_detail,
            )
        else:
            st.info(
                f"No AdaIN model for {choice['data']} yet: train one below "
                "(or from the CLI: `python -m imbal_core style-train`)."
            )
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
        st.caption(
            "Rows: content images of the class. Columns: reference images chosen by the policy (top row). "
            "Each cell keeps its row's content and takes its column's style; the label stays the row's class."
        )
        header = st.columns(GRID + 1)
        header[0].markdown("content ↓ / style →")
        for j, ref in enumerate(references.tolist()):
            header[j + 1].image(tiles(images[[ref]])[0], width=TILE, caption=names[int(labels[ref])])
        for i, content in enumerate(contents.tolist()):
            row = st.columns(GRID + 1)
            row[0].image(tiles(images[[content]])[0], width=TILE, caption=names[target])
            for j in range(len(references)):
                row[j + 1].image(tiles(grid[i, j : j + 1])[0], width=TILE)
        sheet_rows = [
            SheetRow(
                "style (columns)",
                [None, *tiles(images[references])],
                ["", *(names[int(labels[r])] for r in references.tolist())],
            )
        ]
        for i, content in enumerate(contents.tolist()):
            sheet_rows.append(
                SheetRow(
                    "content (rows)" if i == 0 else "", [tiles(images[[content]])[0], *tiles(grid[i])], [names[target]]
                )
            )
        st.download_button(
            "Download figure",
            image_sheet(
                f"Style transfer ({tool_name}) · class {names[target]} · reference policy {policy} · strength "
                f"{strength:g} · seed {int(seed)}",
                sheet_rows,
                notes="Each cell keeps its row's content image and takes its column's style; its label stays the "
                "row's class.",
                scale=figure_scale(choice["image_size"]),
            ),
            file_name=f"style_{tool_name}_{names[target]}_strength{strength:g}_seed{int(seed)}.png",
            mime="image/png",
            key="style_figure",
            help="A captioned PNG of this grid (enlarged pixel for pixel) for a slide.",
        )

        pairs = auxiliary_pairs(labels, len(names), policy, generator)
        own = torch.nonzero(pairs.labels == target).flatten()[:8]
        st.subheader("Real images beside the auxiliary ones")
        st.caption(
            "What Style-KD adds for this class in one epoch (first 8 of "
            f"{int(counts.max() - counts[target])}), next to real images of the class."
        )
        st.image(tiles(images[members[:8]]), width=TILE, caption=["real"] * min(8, len(members)))
        if len(own):
            made = stylise_uint8(tool, images[pairs.content[own]], images[pairs.reference[own]], strength)
            st.image(tiles(made), width=TILE, caption=["auxiliary"] * len(own))
        else:
            st.caption("This is the largest class: Style-KD adds no images to it.")

    st.subheader("Class counts before and after balancing")
    auxiliary = np.maximum(counts.max() - counts, 0) * (counts > 0)
    st.plotly_chart(charts.balancing_bar(names, counts, auxiliary), key="style_counts_chart")
    st.caption(
        f"{int(counts.sum())} real + {int(auxiliary.sum())} auxiliary images per epoch: every class reaches "
        f"{int(counts.max())}."
    )

    with st.expander("AdaIN models", expanded=tool_name == "adain" and tool is None):
        generator_panel("adain")

with diffusion_tab:
    diffusion_tab_body()

with middle_tab:
    middle_classes_tab_body()

with augment_tab:
    minority = st.selectbox(
        "Minority class", order, format_func=lambda c: f"{names[c]} ({counts[c]} images)", key="syn_class"
    )
    aug_seed = st.number_input("Seed", 0, 10_000, 0, key="syn_seed")
    real = images[torch.nonzero(labels == minority).flatten()[:8]]
    st.subheader("Real")
    st.image(tiles(real), width=TILE)
    st.subheader("Augmented views (flips, 90° turns, affine, colour jitter — batched, as in training)")
    views = augment(real, torch.Generator().manual_seed(int(aug_seed)), AugmentConfig())
    st.image(tiles(((views + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)), width=TILE)
    st.subheader("Mixup with the head class")
    lam = st.slider("lambda (share of the minority image)", 0.0, 1.0, 0.7, 0.05, key="syn_lambda")
    head = images[torch.nonzero(labels == order[-1]).flatten()[: len(real)]]
    mixed = lam * real.float() + (1 - lam) * head[: len(real)].float()
    st.image(tiles(mixed.round().clamp(0, 255).to(torch.uint8)), width=TILE)
    st.caption(f"Label: {lam:.2f} × {names[minority]} + {1 - lam:.2f} × {names[order[-1]]}")

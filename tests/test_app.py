"""Page wiring with Streamlit's AppTest: every page renders, widgets drive the engine."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from imbal_core.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
TINY_CHOICE = {
    "data": "synthetic",
    "data_path": None,
    "data_options": {"n_images": 700},
    "image_size": 28,
    "split_seed": 0,
    "ratio": None,
    "profile": "exp",
    "fit": "scale",
}


def open_page(page: str, **state) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    if page != "home":
        app.switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, app.exception
    return app


def chart_specs(app: AppTest) -> list[dict]:
    """The page's charts, without Compare's benchmark results files section (it draws from files, not runs)."""
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart") if "-cmp_bench_" not in chart.proto.id]


def test_home_page_renders_method_cards():
    app = open_page("home")
    assert app.title[0].value == "Imbalance Lab"
    titles = [e.label for e in app.expander]
    assert any("ldam_drw" in t for t in titles) and len(titles) >= 12
    assert any("Device" in c.value for c in app.sidebar.caption)


def test_data_page_ratio_changes_chart():
    app = open_page("data")
    assert app.dataframe, "class count table"
    app.radio(key="data_profile").set_value("exp").run()
    app.select_slider(key="data_ratio").set_value(10).run()
    kept_10 = chart_specs(app)[0]["data"][1]["y"]
    app.select_slider(key="data_ratio").set_value(100).run()
    kept_100 = chart_specs(app)[0]["data"][1]["y"]
    assert kept_10 != kept_100
    assert max(kept_10) / min(kept_10) == pytest.approx(10, rel=0.15)
    assert max(kept_100) / min(kept_100) == pytest.approx(100, rel=0.15)
    assert len(app.get("image")) == 7  # one sample row per class
    app.selectbox(key="data_source").set_value("ham10000").run()
    missing = Path(tempfile.gettempdir()) / "no" / "such" / "folder"  # inside the allowed data folders: reported
    app.text_input(key="data_path").set_value(str(missing)).run()
    assert "does not exist" in app.error[0].value
    app.text_input(key="data_path").set_value("/etc").run()
    assert "outside the allowed data folders" in app.error[0].value


def test_train_then_compare_and_explain():
    app = open_page("train", data_choice=TINY_CHOICE)
    app.multiselect(key="train_methods").set_value(["ce"])
    app.number_input(key="train_epochs").set_value(1)
    app.button[0].click().run()  # the form's Run button sends the form's values
    assert "Queued 1 run" in app.success[0].value
    from app_pages.common import user_store

    store = user_store()
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and store.runs(status="finished").empty:
        time.sleep(1)
    finished = store.runs(status="finished")
    assert len(finished) >= 1, store.runs()[["status", "error"]]
    run_id = finished["run_id"].iloc[0]

    compare = open_page("compare")
    compare.selectbox(key="cmp_data").set_value("synthetic n_images=700 28px").run()
    labels = next(m for m in compare.multiselect if m.label == "Runs").value
    assert any(run_id[-6:] in label for label in labels)
    bars = next(spec for spec in chart_specs(compare) if spec["layout"]["yaxis"]["title"]["text"] == "test recall")
    assert bars["data"][0]["name"].startswith("ce · 1 ep") and len(bars["data"][0]["x"]) == 7
    board = compare.dataframe[0].value
    assert board.loc[0, "n (seeds)"] == 1 and board.loc[0, "balanced_acc"].endswith("± —")  # one seed: no spread
    open_tab(compare, "tau-norm (tuned on validation)")
    tau = next(m for m in compare.metric if m.label == "tau chosen on validation")  # tuned on validation, no slider
    assert 0 <= float(tau.value) <= 2 and not compare.slider
    assert not compare.exception

    explain = open_page("explain")
    explain.selectbox(key="exp_data").set_value("synthetic n_images=700 28px").run()
    assert not explain.exception, explain.exception
    images = explain.get("image")
    assert len(images) >= 2  # the image and one Grad-CAM overlay per run


def test_train_page_starting_weights_a_file_is_queued_and_a_missing_one_is_named(tmp_path):
    """Starting weights on the Train page: a missing file is refused with its name and nothing is queued; a file of
    the backbone's weights (inside the allowed data folders) queues a run that records it."""
    import timm
    from safetensors.torch import save_file

    from app_pages.common import user_store

    app = open_page("train", data_choice=TINY_CHOICE)
    app.multiselect(key="train_methods").set_value(["ce"])
    app.selectbox(key="train_weights_kind").set_value("Local file")
    app.text_input(key="train_weights").set_value(str(tmp_path / "missing.safetensors"))
    before = len(user_store().runs())
    app.button[0].click().run()
    assert "missing.safetensors does not exist" in app.error[0].value
    assert len(user_store().runs()) == before

    file = tmp_path / "small.safetensors"
    save_file(timm.create_model("resnet10t", channels=(32, 64, 128, 256), stem_width=16).state_dict(), str(file))
    app.text_input(key="train_weights").set_value(str(file))
    app.number_input(key="train_epochs").set_value(1)
    app.button[0].click().run()
    assert "Queued 1 run" in app.success[0].value, [e.value for e in app.error]
    store = user_store()
    run_id = store.runs().iloc[0]["run_id"]
    assert store.get_run(run_id)["config"]["pretrained"] == str(file)
    deadline = time.time() + TIMEOUT  # the app's worker trains it (and must be done before the test process ends)
    while time.time() < deadline and store.get_run(run_id)["status"] in ("queued", "running"):
        time.sleep(1)
    assert store.get_run(run_id)["status"] == "finished", store.get_run(run_id)["error"]
    assert json.loads((store.run_dir(run_id) / "weights.json").read_text())["sha256"]


def open_tab(app: AppTest, label: str) -> None:
    """Compare runs only the open tab's work; this opens one as a click on it would."""
    app.session_state["cmp_view"] = label
    app.run()
    assert not app.exception, app.exception


def grid_images(app: AppTest) -> list:
    return [image for image in app.get("image")]


def test_jobs_panel_says_when_a_ray_run_waits_for_a_worker(tmp_path):
    """A run a Ray sweep submitted to a full cluster is "running" (its driver, here this process, owns it) but has
    not started."""
    from app_pages.common import user_store
    from imbal_core.engine import TrainConfig

    app = open_page("train")  # first: the app's job runner takes runs this process owned before it as ended
    # Made running elsewhere and imported, so the app's queue never sees it queued (and trains it).
    elsewhere = RunStore(tmp_path / "driver")
    run_id = elsewhere.create_run(TrainConfig(epochs=3, device="cpu").to_dict(), tag="benchmark:demo")
    elsewhere.set_status(run_id, "running")
    elsewhere.set_progress(run_id, {"waiting": os.getpid()})
    store = user_store()
    store.import_run(elsewhere.export_run(run_id))
    try:
        store.set_status(run_id, "running")  # owned by this process, the driver that marked it
        app.run()
        assert any("0/3 epochs · waiting for a free Ray worker" in c.value for c in app.caption)
        # The app cannot stop a run another process trains: no Stop button that does nothing, but where to stop it.
        assert not any(b.key == f"stop_{run_id}" for b in app.button)
        assert any("trained by another process" in c.value and "stop it there" in c.value for c in app.caption)
    finally:
        store.delete_run(run_id)  # not left "running" for the other tests of this process


def test_synthesis_page_style_grid_strength_and_counts():
    app = open_page("synthesis", data_choice=TINY_CHOICE)
    # content x style grid (4 references + 4 rows of content + 4 outputs each), then real and auxiliary rows
    assert len(grid_images(app)) >= 4 + 4 * 5 + 2
    counts_chart = next(spec for spec in chart_specs(app) if spec["layout"].get("barmode") == "stack")
    real, auxiliary = (trace["y"] for trace in counts_chart["data"])
    assert [r + a for r, a in zip(real, auxiliary)] == [max(real)] * len(real)  # every class topped up to n_max
    before = [image.proto.imgs[0].url for image in grid_images(app)]
    app.slider(key="style_strength").set_value(0.3).run()
    assert not app.exception, app.exception
    after = [image.proto.imgs[0].url for image in grid_images(app)]
    assert before != after  # the strength slider re-renders the stylised images
    for tool in ("histogram", "adain"):  # adain uses the shipped model for the built-in data
        app.selectbox(key="style_tool").set_value(tool).run()
        assert not app.exception, app.exception
        assert len(grid_images(app)) >= 4 + 4 * 5 + 2, tool
    app.selectbox(key="style_policy").set_value("any").run()
    assert not app.exception, app.exception


def test_synthesis_style_gallery_at_128_px_with_the_28_px_adain_model():
    """The AdaIN model is fully convolutional: the gallery stylises 128 px images with the shipped 28 px model and
    says it was trained at another size."""
    app = open_page("synthesis", data_choice={**TINY_CHOICE, "image_size": 128})
    app.selectbox(key="style_tool").set_value("adain").run()
    assert not app.exception, app.exception
    assert any("Trained at 28 px" in caption.value for caption in app.caption)
    assert len(grid_images(app)) >= 4 + 4 * 5 + 2


def image_captions(app: AppTest) -> list[str]:
    return [caption for image in app.get("image") for caption in (img.caption for img in image.proto.imgs)]


def test_synthesis_diffusion_tab_samples_strip_nearest_quality_and_compare_change():
    from imbal_core.synth.diffusion import DiffusionTrainConfig
    from imbal_core.synth.generators import train_generator, user_generator_dir

    if not (user_generator_dir() / "app_diffusion.safetensors").exists():  # yours come first in the model list
        train_generator(
            DiffusionTrainConfig(data_options={"n_images": 700}, epochs=1, width=8, batch_size=32, device="cpu"),
            "app_diffusion",
        )
    from app_pages.common import user_store
    from imbal_core.engine import TrainConfig, train

    if not any(
        c["data_options"] == {"n_images": 700} for c in user_store().runs(status="finished")["config"].map(json.loads)
    ):
        train(TrainConfig(data_options={"n_images": 700}, epochs=1, device="cpu"), user_store())  # the judge
    app = open_page("synthesis", data_choice=TINY_CHOICE)
    assert app.selectbox(key="diffusion_model").value.name == "app_diffusion"
    app.selectbox(key="diffusion_class").set_value(0).run()  # the largest class
    app.button(key="diffusion_demo").click().run()  # one click: the rarest class, default sampler
    assert not app.exception, app.exception
    assert app.selectbox(key="diffusion_class").value == 6  # central_white_patch, the rarest
    captions = image_captions(app)
    assert captions.count("synthetic") == 16 and captions.count("real") >= 8
    # each synthetic image above its nearest training image, with that image's class and distance
    assert sum(c.startswith("nearest: ") and " · d=" in c for c in captions) == 16
    assert sum(c.startswith("step ") for c in captions) >= 4  # the denoising strip
    assert any("learnt central_white_patch from" in info.value for info in app.info)  # its limits, one sentence
    assert app.get("download_button")  # the captioned figure for slides
    synthetic = [img.url for image in app.get("image") for img in image.proto.imgs if img.caption == "synthetic"]
    app.slider(key="diffusion_guidance").set_value(4.0).run()
    assert not app.exception, app.exception
    assert synthetic != [
        img.url for image in app.get("image") for img in image.proto.imgs if img.caption == "synthetic"
    ]
    app.slider(key="diffusion_strength").set_value(0.5).run()  # SDEdit from real images
    assert not app.exception, app.exception
    app.select_slider(key="quality_n").set_value(16).run()
    app.button(key="quality_go").click().run()
    assert not app.exception, app.exception
    quality, targets = app.dataframe[-2].value, app.dataframe[-1].value
    assert list(quality["class"])[-1] == "all" and quality["label_fidelity"].between(0, 1).all()
    assert list(targets["class"]) == list(quality["class"])[:-1] and "misses" in targets.columns
    # the demo view says next to its samples how the class fares against the targets, from this measurement
    verdicts = [box.value for box in [*app.warning, *app.success] if "measured here" in box.value]
    assert len(verdicts) == 1 and "central_white_patch" in verdicts[0]

    compare = open_page("compare")  # on the judge's data set: the newest run of yours
    compare.selectbox(key="cmp_data").set_value("synthetic 28px").run()  # the shipped runs'
    runs = next(m for m in compare.multiselect if m.label == "Runs")
    pair = [label for label in runs.options if label.split(" · ")[0] in ("ce", "balanced_softmax")]
    runs.set_value(pair).run()
    open_tab(compare, "Change vs reference")
    change = next(
        spec
        for spec in chart_specs(compare)
        if " vs " in spec["layout"].get("yaxis", {}).get("title", {}).get("text", "")
    )
    assert change["layout"]["yaxis"]["title"]["text"].endswith("vs ce")  # ce is the default baseline
    assert [trace["name"].split(" · ")[0] for trace in change["data"]] == ["balanced_softmax"]
    assert all(x.endswith(")") for x in change["data"][0]["x"])  # classes labelled with their training counts


def test_docs_method_cards_are_current():
    from imbal_core.cli import methods_markdown

    # `print` adds the final newline when `make docs` writes the file
    assert (ROOT / "docs" / "methods.md").read_text() == methods_markdown() + "\n", "run `make docs`"


def test_synthesis_offers_latent_space_for_a_new_64_px_diffusion_model():
    app = open_page("synthesis", data_choice={**TINY_CHOICE, "image_size": 64})
    assert app.checkbox(key="diffusion_train_latent").value is True
    small = open_page("synthesis", data_choice=TINY_CHOICE)
    assert not [box for box in small.checkbox if box.key == "diffusion_train_latent" and box.value]


def test_synthesis_middle_classes_tab_rows_and_sliders():
    app = open_page("synthesis", data_choice=TINY_CHOICE)
    assert app.text_input(key="mid_task").value == "asymmetric_multicolour vs symmetric_uniform"
    assert app.selectbox(key="mid_recipe").value == "builtin"  # auto for the built-in data
    columns = {md.value for md in app.markdown}
    assert {
        "**normal**  \nstrength 0",
        "**middle 1**  \nstrength 0.25",
        "**middle 3**  \nstrength 0.75",
        "**real abnormal**  \ntraining images",
    } <= columns

    def middle_urls() -> list[str]:
        return [img.url for image in app.get("image") for img in image.proto.imgs]

    app.selectbox(key="mid_recipe").set_value("dermoscopy").run()
    assert not app.exception, app.exception
    before = middle_urls()
    app.slider(key="mid_w_dermoscopy_streaks").set_value(0.0).run()
    assert not app.exception, app.exception
    assert before != middle_urls()  # a strength slider re-renders the middle classes
    app.slider(key="mid_levels").set_value(5).run()
    assert any(md.value == "**middle 5**  \nstrength 0.83" for md in app.markdown)
    app.text_input(key="mid_task").set_value("mel vs nv").run()
    assert "unknown class" in app.error[0].value


def test_data_page_binary_task_then_one_class_runs_on_compare():
    app = open_page("data")
    app.toggle(key="data_binary").set_value(True).run()
    app.multiselect(key="data_task_positive").set_value(["asymmetric_multicolour"]).run()
    app.multiselect(key="data_task_negative").set_value(["symmetric_uniform"]).run()
    assert not app.exception, app.exception
    choice = app.session_state["data_choice"]
    assert choice["task"] == "asymmetric_multicolour vs symmetric_uniform" and choice["head_order"] == "index"
    assert list(app.dataframe[0].value.index) == ["symmetric_uniform", "asymmetric_multicolour"]

    from app_pages.common import user_store
    from imbal_core.engine import TrainConfig, train

    binary = {**TINY_CHOICE, "task": choice["task"]}
    for method in ("knowledge_one_class", "ce"):
        train(TrainConfig(method=method, epochs=1, device="cpu", **binary), user_store())
    app = open_page("compare")
    app.selectbox(key="cmp_data").set_value(f"synthetic n_images=700 [{choice['task']}] 28px").run()
    assert not app.exception, app.exception
    titles = [spec["layout"].get("xaxis", {}).get("title", {}).get("text") for spec in chart_specs(app)]
    assert "false-positive rate (1 − specificity)" in titles and "recall (sensitivity)" in titles
    assert "abnormality score" in titles
    assert "auroc" in app.dataframe[0].value.columns  # the leaderboard of a binary comparison


def test_compare_defaults_keep_the_shipped_baselines_and_pair_by_seed():
    """A quick run of one's own is among the default picks, first and tagged "yours", without pushing the shipped
    8-epoch ce out (it stays the reference); the leaderboard counts seeds, paired differences and the method x class
    heat map are drawn against ce."""
    from app_pages.common import user_store
    from imbal_core.engine import TrainConfig, train

    mine = train(TrainConfig(method="ce", epochs=1, device="cpu", batch_size=256), user_store())  # the built-in data
    app = open_page("compare")
    assert app.selectbox(key="cmp_data").value == "synthetic 28px"
    picked = next(m for m in app.multiselect if m.label == "Runs").value
    assert picked[0].startswith("ce · ") and " · yours · " in picked[0] and picked[0].endswith(mine[-6:])
    assert picked[1].startswith("ce · ") and picked[1].endswith("604530")  # the shipped 8-epoch ce
    methods = [label.split(" · ")[0] for label in picked[1:]]
    assert len(methods) == len(set(methods)) >= 12  # one group per method, every shipped baseline
    assert app.selectbox(key="cmp_reference").value.startswith("ce · 8 ep")
    assert "ce · 1 ep · resnet10t_small · batch_size=256 · yours" in app.selectbox(key="cmp_reference").options
    hint = "fewer than 3 seeds at ratio natural, so no spreads or intervals: pick ratio 10, 50 or 100"
    assert any(hint in i.value for i in app.info)  # one seed per method here; the grid has 3
    board = app.dataframe[0].value
    assert list(board.columns[:5]) == ["group", "n (seeds)", "few_acc", "medium_acc", "many_acc"]
    paired_title = "paired by seed"
    titles = [str(spec["layout"].get("yaxis", {}).get("title", {}).get("text")) for spec in chart_specs(app)]
    assert not any(paired_title in title for title in titles)  # closed tabs do no work
    heat = next(
        spec
        for spec in chart_specs(app)
        if spec["data"][0]["type"] == "heatmap"
        and spec["layout"]["coloraxis"]["colorbar"]["title"]["text"] == "test recall"
    )
    assert len(heat["data"][0]["y"]) == len(picked) and all(x.endswith(")") for x in heat["data"][0]["x"])
    app.button(key="cmp_build_report").click().run()
    assert not app.exception, app.exception
    assert any(b.label.startswith("Download the report") for b in app.get("download_button"))
    report = app.session_state["cmp_report"][1]
    assert "<dt>Epochs and stages</dt>" in report and "<h2>References</h2>" in report  # issue 38: it stands alone


def test_compare_tau_tab_lists_only_runs_it_can_tune():
    """Shipped runs at the natural ratio keep their heads but mostly no weights and no validation features: tau
    cannot be tuned for those, so they are not offered (picking one used to end in "keeps no model weights")."""
    app = open_page("compare")
    open_tab(app, "tau-norm (tuned on validation)")
    offered = [label.split(" · ")[0] for label in app.selectbox(key="cmp_tau_run").options]
    assert "ce" in offered and "weighted_ce" not in offered and "focal" not in offered
    for label in app.selectbox(key="cmp_tau_run").options[:2]:
        app.selectbox(key="cmp_tau_run").set_value(label).run()
        assert not [i for i in app.info if "cannot be tuned" in i.value] and not app.exception


def test_compare_feature_map_of_shipped_runs_comes_from_their_weights():
    """Shipped runs keep no test features (pretrained/ stays small): a run with weights computes them for the map;
    a run without weights says why it has none instead of drawing an empty chart."""
    app = open_page("compare")
    open_tab(app, "Embeddings")
    runs = app.selectbox(key="cmp_embedding_run")
    ce = next(label for label in runs.options if label.startswith("ce · "))
    runs.set_value(ce).run()
    scatter = next(json.loads(c.proto.spec) for c in app.get("plotly_chart") if "cmp_embedding_chart" in c.proto.id)
    # plotly sends numeric arrays packed: {"dtype": ..., "bdata": base64}
    points = sum(np.frombuffer(base64.b64decode(t["x"]["bdata"]), t["x"]["dtype"]).size for t in scatter["data"])
    assert points == 1999 and not app.exception  # the built-in test split, every image
    focal = next(label for label in runs.options if label.startswith("focal · "))
    app.selectbox(key="cmp_embedding_run").set_value(focal).run()
    assert any("keeps neither its test features nor its weights" in i.value for i in app.info)


def test_compare_paired_differences_and_metric_vs_ratio_on_the_shipped_grid():
    app = open_page("compare")
    open_tab(app, "Ranking")  # issue 38
    assert any("Friedman's test" in c.value and "critical difference" in c.value for c in app.caption)
    grid = ["balanced_softmax", "ce", "ldam_drw"]  # 3 seeds at every ratio (other methods may have fewer)
    app.multiselect(key="cmp_method").set_value(grid).run()
    app.selectbox(key="cmp_ratio_synthetic 28px").set_value("50").run()
    assert not app.exception, app.exception
    picked = next(m for m in app.multiselect if m.label == "Runs").value
    assert sorted({label.split(" · ")[0] for label in picked}) == grid
    board = app.dataframe[0].value
    assert set(board["n (seeds)"]) == {3} and board["balanced_acc"].str.contains(r"\[").all()  # 95% intervals
    open_tab(app, "Paired differences")
    paired = app.dataframe[1].value
    assert set(paired["n_pairs"]) == {3} and paired["low"].notna().all()
    assert (
        paired["verdict"]
        .isin(["differs, also after Holm", "interval excludes 0, not after Holm", "interval includes 0"])
        .all()
    )
    open_tab(app, "tau-norm (tuned on validation)")  # the ratio grid keeps no weights: no head to re-scale
    assert not [s for s in app.selectbox if s.key == "cmp_tau_run"]
    assert any("keep no model weights" in c.value for c in app.caption)
    open_tab(app, "Metric vs ratio")
    ratio_chart = next(
        spec
        for spec in chart_specs(app)
        if "imbalance ratio" in spec["layout"].get("xaxis", {}).get("title", {}).get("text", "")
    )
    assert ratio_chart["layout"]["xaxis"]["tickvals"] == [10.0, 50.0, 100.0]  # one tick per ratio run
    assert len(ratio_chart["data"]) == 3  # one line per method group
    in_picked_order = list(dict.fromkeys(label.split(" · ")[0] for label in picked))  # ce first, not alphabetical
    assert [trace["name"].split(" · ")[0] for trace in ratio_chart["data"]] == in_picked_order


def test_compare_opens_on_a_ratio_with_intervals_when_you_have_no_run_there():
    """Issue 38: with no run of one's own, Compare opened on the shipped one-seed natural counts (no statistics)."""
    from imbal_core.compare import finished_runs, first_ratio_with_intervals, stores

    shipped = finished_runs(stores()[1:])
    assert first_ratio_with_intervals(shipped[shipped["data"] == "synthetic 28px"]) == "10"
    one_seed = shipped[(shipped["data"] == "synthetic 28px") & (shipped["seed"] == 0)]
    assert first_ratio_with_intervals(one_seed) == "natural"  # nowhere 3 seeds: the first ratio


def test_compare_tab_choices_survive_another_tab_and_reach_the_report():
    """Widgets in a closed tab are not drawn; their values (and the report's choices) must not be forgotten."""
    app = open_page("compare")
    open_tab(app, "Method × class")
    app.radio(key="cmp_heat_kind").set_value(app.radio(key="cmp_heat_kind").options[1]).run()
    open_tab(app, "Confusion matrix")
    open_tab(app, "Paired differences")
    app.button(key="cmp_build_report").click().run()
    assert not app.exception, app.exception
    assert app.session_state["cmp_heat_kind"].startswith("change vs")  # kept while the tab was closed
    assert any(b.label.startswith("Download the report") for b in app.get("download_button"))
    report = app.session_state["cmp_report"][1]
    assert "<dt>Epochs and stages</dt>" in report and "<h2>References</h2>" in report  # issue 38: it stands alone
    open_tab(app, "Method × class")
    assert app.radio(key="cmp_heat_kind").value.startswith("change vs")


def test_compare_shows_the_benchmark_results_files_as_reference_tables():
    """results/builtin_ratios.{md,csv} as Compare draws live runs, in a view of their own (not drawn with the runs)."""
    app = open_page("compare")
    assert app.segmented_control(key="cmp_page_view").value == "Runs"
    assert not [s for s in app.selectbox if s.key == "cmp_bench_file"]  # the other view is not drawn
    app.segmented_control(key="cmp_page_view").set_value("Benchmark results files").run()
    assert "builtin_ratios" in app.selectbox(key="cmp_bench_file").options
    app.selectbox(key="cmp_bench_file").set_value("builtin_ratios").run()
    assert any(b.label == "builtin_ratios report (HTML, opens offline)" for b in app.get("download_button"))
    section = app.selectbox(key="cmp_bench_section_builtin_ratios")
    section.set_value(("synthetic 28px", "50")).run()
    assert not app.exception, app.exception
    board = app.dataframe[0].value  # the leaderboard; the paired differences' table follows
    differences = app.dataframe[1].value  # every metric, with its interval, whatever the chart shows
    assert {"mean_diff", "low", "high"} <= set(differences.columns) and "g_mean" in set(differences["metric"])
    assert list(board.columns[:5]) == ["group", "n (seeds)", "few_acc", "medium_acc", "many_acc"]
    assert board["group"].iloc[0].startswith("ce · ") and board["n (seeds)"].iloc[0] == 3
    full = board[board["n (seeds)"] >= 3]  # (a benchmark still under way may have fewer seeds of a method)
    assert len(full) >= 5 and full["balanced_acc"].str.contains(r"\[").all()  # 95% intervals from 3 seeds
    charts = {chart.proto.id.rsplit("-", 1)[1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}
    paired = charts["cmp_bench_paired"]
    assert "paired by seed" in paired["layout"]["yaxis"]["title"]["text"]
    # the leaderboard's order; g_mean, kappa and ECE (other ranges) only when picked
    assert paired["data"][0]["x"] == ["few_acc", "medium_acc", "many_acc", "balanced_acc", "macro_f1"]
    traces = [trace["name"].split(" · ")[0] for trace in paired["data"]]
    assert "ce" not in traces and "balanced_softmax" in traces  # ce is the reference, not a trace
    heat = charts["cmp_bench_heatmap"]["data"][0]
    assert len(heat["y"]) == len(traces) and heat["x"][0].endswith("(1493)")  # classes by training count
    curves = charts["cmp_bench_curves"]  # did 8 epochs suffice: validation score by epoch, one line per method
    assert curves["data"][0]["name"].startswith("ce · ") and curves["data"][0]["x"] == list(range(1, 9))
    assert curves["layout"]["yaxis"]["title"]["text"] == "validation balanced_acc (mean over seeds)"
    assert any(b.label == "builtin_ratios.csv (every number of the file)" for b in app.get("download_button"))
    picker = app.multiselect(key="cmp_bench_paired_picked_classes")
    picker.set_value(["g_mean", *picker.value]).run()
    paired = {c.proto.id.rsplit("-", 1)[1]: json.loads(c.proto.spec) for c in app.get("plotly_chart")}[
        "cmp_bench_paired"
    ]
    assert paired["data"][0]["x"][-1] == "g_mean"  # picked: drawn, still in the leaderboard's order

    # The protocol's other reference: every method paired against balanced_softmax too.
    against = app.selectbox(key="cmp_bench_against_builtin_ratios")
    assert [label.split(" · ")[0] for label in against.options] == ["ce", "balanced_softmax"]
    against.set_value(against.options[1]).run()
    paired = {c.proto.id.rsplit("-", 1)[1]: json.loads(c.proto.spec) for c in app.get("plotly_chart")}[
        "cmp_bench_paired"
    ]
    traces = [trace["name"].split(" · ")[0] for trace in paired["data"]]
    assert "ce" in traces and "balanced_softmax" not in traces
    heat = next(json.loads(c.proto.spec) for c in app.get("plotly_chart") if c.proto.id.endswith("-cmp_bench_heatmap"))
    assert "vs balanced_softmax" in heat["layout"]["title"]["text"]  # the heat map follows the pick too
    rows = [label.split(" · ")[0] for label in heat["data"][0]["y"]]
    assert "ce" in rows and "balanced_softmax" not in rows

    # The picks outlive the Runs view (drawn in full in between, with its default picks).
    app.segmented_control(key="cmp_page_view").set_value("Runs").run()
    assert not app.exception and app.get("plotly_chart")
    app.segmented_control(key="cmp_page_view").set_value("Benchmark results files").run()
    assert app.selectbox(key="cmp_bench_section_builtin_ratios").value == ("synthetic 28px", "50")
    assert app.selectbox(key="cmp_bench_against_builtin_ratios").value.startswith("balanced_softmax")

    # ... and the Runs view's picks outlive the results files' view.
    app.segmented_control(key="cmp_page_view").set_value("Runs").run()
    app.selectbox(key="cmp_ratio_synthetic 28px").set_value("50").run()
    app.segmented_control(key="cmp_page_view").set_value("Benchmark results files").run()
    app.segmented_control(key="cmp_page_view").set_value("Runs").run()
    assert app.selectbox(key="cmp_ratio_synthetic 28px").value == "50"
    next(m for m in app.multiselect if m.label == "Runs").set_value([]).run()
    assert "Pick at least one run." in [i.value for i in app.info]

    # A binary section (ham10000_28's one-class methods) keeps a pick of its own: its scores, not the classes'.
    app.segmented_control(key="cmp_page_view").set_value("Benchmark results files").run()
    app.selectbox(key="cmp_bench_file").set_value("ham10000_28").run()
    section = app.selectbox(key="cmp_bench_section_ham10000_28")
    label = next(option for option in section.options if "[mel vs nv]" in option)  # "ratio natural · DATA"
    ratio, data = label.removeprefix("ratio ").split(" · ", 1)
    section.set_value((data, ratio)).run()
    assert not app.exception, app.exception
    assert app.multiselect(key="cmp_bench_paired_picked_binary").value == [
        "auroc",
        "auprc",
        "sens_at_95_spec",
        "balanced_acc",
    ]


def test_compare_with_a_results_file_of_no_finished_runs(tmp_path, monkeypatch):
    """A benchmark interrupted before any run finished writes a header-only CSV: Compare says so, no exception."""
    import shutil

    import imbal_core.benchmark_results as benchmark_results

    for suffix in (".md", ".csv"):
        shutil.copy(ROOT / "results" / f"builtin_ratios{suffix}", tmp_path)
    (tmp_path / "aaa_empty.csv").write_text(",".join(benchmark_results.RESULTS_COLUMNS) + "\n")
    (tmp_path / "aaa_empty.md").write_text("# Benchmark `aaa_empty`\n\n- Command: `x`\n")
    monkeypatch.setattr(benchmark_results, "SHIPPED_RESULTS_DIR", tmp_path)
    app = open_page("compare")
    app.segmented_control(key="cmp_page_view").set_value("Benchmark results files").run()
    assert app.selectbox(key="cmp_bench_file").options == ["aaa_empty", "builtin_ratios"]
    assert app.selectbox(key="cmp_bench_file").value == "aaa_empty"
    assert any("has no finished runs yet" in i.value for i in app.info)
    app.selectbox(key="cmp_bench_file").set_value("builtin_ratios").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="cmp_bench_section_builtin_ratios").value == ("synthetic 28px", "10")


def test_the_data_choice_goes_through_the_page_address_and_back():
    """What the Data page writes into the address reads back as the same choice; a parameter that cannot be used
    (a hand-typed link, an unknown class count, a path outside the data folders) keeps its default and is named."""
    from app_pages.common import DATA_FORM_DEFAULTS, choice_from_form, form_from_query, query_from_form

    form = {
        **DATA_FORM_DEFAULTS,
        "source": "ham10000",
        "path": str(Path(tempfile.gettempdir()) / "data" / "ham10000"),
        "image_size": 128,
        "binary": True,
        "task_positive": ["mel", "bcc"],
        "profile": "exp",
        "ratio": 1.5,
    }
    query = query_from_form(form)
    assert query == {
        "source": "ham10000",
        "path": form["path"],
        "image_size": "128",
        "binary": "1",
        "task_positive": "mel,bcc",
        "profile": "exp",
        "ratio": "1.5",
    }
    assert form_from_query(query) == (form, [])
    choice = choice_from_form(form)
    assert (choice["task"], choice["ratio"], choice["profile"], choice["head_order"]) == (
        "mel,bcc vs rest",
        1.5,
        "exp",
        "index",
    )

    read, ignored = form_from_query({"ratio": "11", "image_size": "abc", "path": "/etc", "profile": "exp", "page": "x"})
    assert read == {**DATA_FORM_DEFAULTS, "profile": "exp"}
    assert [note.split("=")[0] for note in ignored] == ["ratio", "image_size", "path"]
    assert "outside the allowed data folders" in ignored[2]
    # Probe S307, K301: a deeply nested JSON was a RecursionError on the page; the server user's home was readable
    deep = {"profile": "custom", "custom_counts": "[" * 50_000 + "]" * 50_000, "path": str(Path.home() / ".cache")}
    read, ignored = form_from_query(deep)
    assert read["custom_counts"] is None and "longer than 10,000 characters" in ignored[0] and len(ignored[0]) < 200
    assert "outside the allowed data folders" in ignored[1]


def test_compare_opens_a_benchmark_archive_as_runs():
    """Issue 38: the HAM10000 benchmark existed only as tables in the files view. Its archive (results/
    ham10000_28_runs) opens in the Runs view like runs of one's own: leaderboard with intervals, confusion matrices,
    and for "mel vs nv" the ROC curves, each run labelled with its protocol."""
    app = open_page("compare")
    assert "ham10000 28px" in app.selectbox(key="cmp_data").options
    app.selectbox(key="cmp_data").set_value("ham10000 28px").run()
    assert not app.exception, app.exception
    picked = next(m for m in app.multiselect if m.label == "Runs").value
    assert picked and all(" · archive ham10000_28 · " in label for label in picked)
    board = app.dataframe[0].value
    assert (board["n (seeds)"] == 3).all() and board["balanced_acc"].str.contains(r"\[").all()
    open_tab(app, "Confusion matrix")
    assert not app.exception, app.exception
    assert any(spec["data"][0]["type"] == "heatmap" for spec in chart_specs(app))
    app.selectbox(key="cmp_data").set_value("ham10000 [mel vs nv] 28px").run()
    assert not app.exception, app.exception
    assert any(h.value.startswith("Abnormal vs normal: ROC") for h in app.header)


def test_compare_draws_the_validation_curves_of_picked_runs():
    """Issue 38: the Runs view had no validation curves (the results files' view had)."""
    app = open_page("compare")
    app.selectbox(key="cmp_data").set_value("ham10000 28px").run()
    open_tab(app, "Validation curves")
    curves = [spec for spec in chart_specs(app) if "validation" in str(spec["layout"].get("yaxis", {}).get("title"))]
    assert curves and len(curves[0]["data"]) == 16  # one line per method group of the archived benchmark

"""Diffusion generator, generator quality and IOIS: each property on small cases, then short runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from imbal_core.cli import main
from imbal_core.engine import TrainConfig, train
from imbal_core.errors import ConfigError
from imbal_core.methods import create_method
from imbal_core.methods.iois import aas_allocation, inverse_frequency_allocation, split_budget
from imbal_core.synth.diffusion import DiffusionModel, DiffusionTrainConfig, load_diffusion_model
from imbal_core.synth.generators import (
    load_generator_info,
    read_generator,
    resolve_generator,
    train_generator,
    training_split,
)
from imbal_core.synth.quality import frechet_distance, generator_quality, nearest_neighbours

from .conftest import TINY, assert_resume_matches_uninterrupted, tiny_config


def tiny_diffusion_config(**overrides) -> DiffusionTrainConfig:
    values = dict(data_options=dict(TINY), epochs=2, width=8, batch_size=32, device="cpu")
    values.update(overrides)
    return DiffusionTrainConfig(**values)


@pytest.fixture(scope="module")
def tiny_generator() -> str:
    """A tiny diffusion model of the tiny built-in data, in the session's generator folder."""
    train_generator(tiny_diffusion_config(), "tiny_diffusion")
    return "tiny_diffusion"


@pytest.mark.parametrize(("prediction", "latent_channels"), [("v_prediction", 0), ("epsilon", 0), ("v_prediction", 4)])
def test_ddim_round_trip_recovers_a_known_image_with_an_oracle_predictor(prediction, latent_channels):
    """Noise a known image, then denoise it with the true v (or noise): DDIM (eta 0) must land on the image (in
    latent space: on the decoded latent of the image, as no autoencoder is lossless)."""
    model = DiffusionModel(
        3, 2, 16, 8, 1, 1000, "squaredcos_cap_v2", prediction=prediction, latent_channels=latent_channels
    ).eval()
    known = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        x0 = model.encode(known)
        expected = model.decode(x0)
    assert torch.equal(expected, known) if not latent_channels else x0.shape == (2, 4, 4, 4)
    alphas = model.train_scheduler.alphas_cumprod

    def oracle(noisy, timesteps, labels):  # the noise that takes x0 to `noisy` at step t, or its v
        a = alphas[timesteps].view(-1, 1, 1, 1)
        target = x0.repeat(len(noisy) // len(x0), 1, 1, 1)  # guidance doubles the batch
        noise = (noisy - a.sqrt() * target) / (1 - a).sqrt()
        return noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * target

    model.predict = oracle
    labels = torch.tensor([0, 1])
    for strength in (1.0, 0.6):  # from pure noise, and SDEdit from the image noised to 60 % of the schedule
        out, strip = model.sample(
            labels,
            steps=20,
            guidance=2.0,
            generator=torch.Generator().manual_seed(1),
            init_images=known,
            strength=strength,
            trajectory_at=(0, 5),
        )
        assert (out.int() - expected.int()).abs().max() <= 1  # uint8 rounding
        assert not torch.equal(strip[0], expected)  # it did start from noise
    for steps in (1, 5, 25):  # sampling from pure noise starts at the last training step
        assert int(model.ddim_scheduler(steps).timesteps[0]) == 999
    with pytest.raises(ConfigError, match="needs init_images"):
        model.sample(labels, strength=0.5)
    with pytest.raises(ConfigError, match="guidance"):
        model.sample(labels, guidance=-1.0)


def test_diffusion_config_is_validated():
    with pytest.raises(ConfigError, match="multiple of 4"):
        DiffusionTrainConfig(image_size=30)
    with pytest.raises(ConfigError, match="label_dropout"):
        DiffusionTrainConfig(label_dropout=1.0)
    with pytest.raises(ConfigError, match="width"):
        DiffusionTrainConfig(width=12)
    with pytest.raises(ConfigError, match="prediction"):
        DiffusionTrainConfig(prediction="x0")
    with pytest.raises(ConfigError, match="multiple of 16 up to 256 in latent space"):
        DiffusionTrainConfig(latent_channels=4, autoencoder_epochs=2, image_size=56)
    with pytest.raises(ConfigError, match=r"autoencoder_epochs.*\[1, epochs - 1 = 9\] in latent space"):
        DiffusionTrainConfig(latent_channels=4, autoencoder_epochs=10, epochs=10, image_size=64)
    with pytest.raises(ConfigError, match="autoencoder_epochs.*0 in pixel space"):
        DiffusionTrainConfig(autoencoder_epochs=2)
    # A file made before `prediction` was recorded was trained on the noise, whatever today's default is.
    assert DiffusionTrainConfig.from_dict({"epochs": 3}).prediction == "epsilon"
    assert DiffusionTrainConfig.from_dict({"prediction": "v_prediction"}).prediction == "v_prediction"


def test_a_new_generator_may_not_take_a_shipped_generators_name(tmp_path):
    """Runs name their generator, and yours are looked up first: a copy under a shipped name would silently stand
    in for it in every run that names it."""
    with pytest.raises(ConfigError, match="name of a shipped generator"):
        train_generator(tiny_diffusion_config(epochs=1), "diffusion_synthetic_28", tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_diffusion_training_stop_resume_equals_uninterrupted_and_sampling_is_seeded(tmp_path):
    config = tiny_diffusion_config(epochs=3)
    stop = threading.Event()
    path = train_generator(
        config,
        "stopped",
        tmp_path,
        stop_event=stop,
        progress=lambda e: stop.set() if e["event"] == "epoch" and e["epoch"] == 0 else None,
    )
    partial = load_generator_info(path)
    assert partial.status == "partial" and len(partial.history) == 1
    with pytest.raises(ConfigError, match="is not finished .1 of 3 epochs"):  # iois runs wait for a finished one
        create_method("iois", generator=str(path)).check_ready()
    assert read_generator(path)[1]["optimizer"]["state"]  # the training state travels with a partial file
    train_generator(config, "stopped", tmp_path, resume=True)
    straight = train_generator(config, "straight", tmp_path)
    resumed_weights, resumed_state = read_generator(path)
    straight_weights, _ = read_generator(straight)
    assert resumed_state == {}  # a finished file keeps only the EMA weights
    assert all(torch.equal(resumed_weights[k], straight_weights[k]) for k in straight_weights)
    assert load_generator_info(path).history == load_generator_info(straight).history

    model = load_diffusion_model(str(path))
    labels = torch.tensor([0, 3, 6])
    first, _ = model.sample(labels, steps=4, generator=torch.Generator().manual_seed(5))
    again, _ = model.sample(labels, steps=4, generator=torch.Generator().manual_seed(5))
    assert first.shape == (3, 3, 28, 28) and first.dtype == torch.uint8 and torch.equal(first, again)
    assert model.class_names[0] == "symmetric_uniform"


def test_latent_diffusion_trains_its_autoencoder_first_resumes_exactly_and_samples_at_full_size(tmp_path):
    """Latent space: an autoencoder epoch, then the UNet on scaled latents. A file that has trained only its
    autoencoder cannot sample; stopped in the UNet phase and resumed, it ends where an uninterrupted training does."""
    config = tiny_diffusion_config(
        data_options={"n_images": 240},
        epochs=3,
        image_size=32,
        latent_channels=4,
        autoencoder_epochs=1,
        autoencoder_width=8,
        autoencoder_batch_size=32,
    )
    stop = threading.Event()
    stop_after = {"epoch": 0}

    def stop_at_epoch_end(event):
        if event["event"] == "epoch" and event["epoch"] == stop_after["epoch"]:
            stop.set()

    path = train_generator(config, "latent", tmp_path, stop_event=stop, progress=stop_at_epoch_end)
    history = load_generator_info(path).history
    assert list(history[0]) == ["epoch", "autoencoder_loss", "autoencoder_reconstruction", "autoencoder_kl"]
    with pytest.raises(ConfigError, match="trained only its autoencoder so far .1 of 1 epochs"):
        load_diffusion_model(str(path))
    stop.clear()
    stop_after["epoch"] = 1
    train_generator(config, "latent", tmp_path, stop_event=stop, progress=stop_at_epoch_end, resume=True)
    assert load_generator_info(path).history[1]["loss"] > 0  # the UNet's first epoch
    train_generator(config, "latent", tmp_path, resume=True)
    straight = train_generator(config, "straight", tmp_path)
    resumed_weights, _ = read_generator(path)
    straight_weights, _ = read_generator(straight)
    assert any(k.startswith("codec.") for k in straight_weights)  # the file holds its autoencoder
    assert all(torch.equal(resumed_weights[k], straight_weights[k]) for k in straight_weights)

    model = load_diffusion_model(str(path))
    assert model.space == (4, 8)
    images = training_split(config).images
    with torch.no_grad():
        latents = model.encode(images)
    assert 0.7 < float(latents.std()) < 1.3  # scaled to unit variance for the noise schedule (on all four flips)
    first, strip = model.sample(
        torch.tensor([0, 6]), steps=3, generator=torch.Generator().manual_seed(2), trajectory_at=(0,)
    )
    again, _ = model.sample(torch.tensor([0, 6]), steps=3, generator=torch.Generator().manual_seed(2))
    assert first.shape == strip[0].shape == (2, 3, 32, 32) and torch.equal(first, again)


def test_split_budget_sums_to_the_budget_and_respects_the_floor():
    counts = split_budget(torch.tensor([1.0, 2.0, 7.0]), 101, floor=0.0)
    assert int(counts.sum()) == 101 and counts.tolist() == [10, 20, 71]
    floored = split_budget(torch.tensor([0.0, 0.0, 1.0]), 300, floor=0.3)
    assert floored.tolist() == [30, 30, 240]  # floor 0.3 of the equal share (100) each
    assert int(split_budget(torch.rand(7), 0, 0.1).sum()) == 0


def test_aas_gives_more_to_classes_with_low_training_accuracy():
    accuracy = torch.tensor([0.95, 0.2, 0.6, 0.0])
    allocation = aas_allocation(accuracy, budget=1000, gamma=1.0, floor=0.1)
    assert int(allocation.sum()) == 1000
    assert allocation[3] > allocation[1] > allocation[2] > allocation[0] > 0
    sharper = aas_allocation(accuracy, budget=1000, gamma=3.0, floor=0.1)
    assert sharper[3] > allocation[3] and sharper[0] < allocation[0]
    inverse = inverse_frequency_allocation(torch.tensor([1000, 100, 10]), budget=111, floor=0.0)
    assert inverse.tolist() == [1, 10, 100]


def test_iois_stages_and_settings_are_validated(tiny_generator):
    assert [(s.name, s.epochs) for s in create_method("iois", generator=tiny_generator).stages(10)] == [
        ("warmup", 3),
        ("synthesis", 7),
    ]
    assert [s.name for s in create_method("iois", generator=tiny_generator).stages(1)] == ["synthesis"]
    with pytest.raises(ConfigError, match="no diffusion generator given"):
        TrainConfig(method="iois").check_ready()  # before any run is created
    TrainConfig.from_dict(TrainConfig(method="iois", method_settings={"generator": "gone"}).to_dict())  # loads
    create_method("iois", ois=False)  # the OIS-off ablation needs no generator
    with pytest.raises(ConfigError, match="selection"):
        create_method("iois", generator=tiny_generator, selection="easiest")


def test_iois_records_allocation_and_trains_on_synthetic_images(store, tiny_generator):
    run_id = train(
        tiny_config(
            method="iois", epochs=3, method_settings={"generator": tiny_generator, "steps": 3, "pool_per_class": 8}
        ),
        store,
    )
    history = store.get_run(run_id)["progress"]["history"]
    assert [h["stage"] for h in history] == ["warmup", "synthesis", "synthesis"]
    warmup, first, second = (h["method"] for h in history)
    assert sum(warmup["synthetic"]) == 0 and len(warmup["train_accuracy"]) == 7
    kept = len(np.load(store.run_dir(run_id) / "kept_indices.npy"))
    assert sum(first["synthetic"]) == sum(second["synthetic"]) == round(0.3 * kept)
    # AAS: the class the classifier got most right in the previous epoch gets the fewest images
    previous = np.array(warmup["train_accuracy"])
    assert first["synthetic"][int(previous.argmax())] == min(first["synthetic"])


@pytest.mark.parametrize(
    "settings",
    [
        {"steps": 3, "pool_per_class": 8, "selection": "hardest"},
        {
            "steps": 3,
            "mode": "online",
            "selection": "loss_weighted",
            "sdedit_strength": 0.5,
            "allocation": "inverse_frequency",
        },
    ],
)
def test_iois_resume_matches_uninterrupted(store, tiny_generator, settings):
    assert_resume_matches_uninterrupted(
        store, tiny_config(method="iois", epochs=3, method_settings={"generator": tiny_generator, **settings})
    )


def test_iois_without_ois_reweights_real_images_only(store, monkeypatch):
    from imbal_core.methods import iois

    seen = []
    original = iois.IOIS.on_epoch_start

    def spy(self, model, epoch, stage):
        original(self, model, epoch, stage)
        seen.append((self.synthetic, None if self.class_weights is None else self.class_weights.tolist()))

    monkeypatch.setattr(iois.IOIS, "on_epoch_start", spy)
    train(tiny_config(method="iois", epochs=2, method_settings={"ois": False}), store)
    assert seen[0] == (None, None)  # warm-up: plain CE
    synthetic, weights = seen[1]
    assert synthetic is None and len(weights) == 7 and abs(sum(weights) - 7) < 1e-4


def test_iois_refuses_a_generator_that_learnt_from_images_the_run_leaves_out(store, tiny_generator):
    # the generator saw every training image; a ratio-20 run keeps only some: synthetic images would leak the rest
    with pytest.raises(ConfigError, match="leaves out"):
        train(tiny_config(method="iois", ratio=20.0, method_settings={"generator": tiny_generator}), store)
    with pytest.raises(ConfigError, match="other data than this run"):
        train(
            tiny_config(method="iois", data_options={"n_images": 800}, method_settings={"generator": tiny_generator}),
            store,
        )
    assert store.runs().empty  # refused before a run was created


def test_iois_without_a_named_generator_picks_the_one_trained_on_its_training_images(tmp_path, monkeypatch):
    """`train --method iois` with no --set: the generator that learnt from exactly the run's training images is
    picked and recorded in the config; at a ratio only one that learnt from no image the run leaves out fits."""
    monkeypatch.setenv("IMBAL_LAB_HOME", str(tmp_path))  # only this test's generators (and the shipped ones)
    tiny_generator = "tiny_diffusion"
    train_generator(tiny_diffusion_config(), tiny_generator)
    config, note = tiny_config(method="iois").with_chosen_settings()
    assert config.method_settings == {"generator": tiny_generator} and "exactly this run's" in note
    named = tiny_config(method="iois", method_settings={"generator": "diffusion_synthetic_28"})
    assert named.with_chosen_settings() == (named, None)  # a named generator is left as it is
    assert tiny_config().with_chosen_settings() == (tiny_config(), None)  # other methods pick nothing
    with pytest.raises(ConfigError, match="none of synthetic at 28 px learnt only from this run's"):
        tiny_config(method="iois", ratio=20.0).with_chosen_settings()  # the tiny generator saw every image

    train_generator(tiny_diffusion_config(ratio=20.0, seed=3), "tiny_diffusion_r20_s3")
    config, note = tiny_config(method="iois", ratio=20.0, seed=3).with_chosen_settings()
    assert config.method_settings == {"generator": "tiny_diffusion_r20_s3"}
    config, note = tiny_config(method="iois", seed=3).with_chosen_settings()  # natural counts: the exact one wins
    assert config.method_settings == {"generator": tiny_generator}


def test_cli_train_iois_on_the_built_in_data_needs_no_generator_setting(store, capsys):
    """The shipped generator of the built-in data's natural counts is picked (it learnt from that training split)."""
    from imbal_core.cli import _config, build_parser

    args = build_parser().parse_args(["train", "--data", "synthetic", "--method", "iois", "--epochs", "1"])
    config = _config(args, "iois", None, 0)
    assert config.method_settings == {"generator": "diffusion_synthetic_28"}
    assert "diffusion_synthetic_28 (shipped), trained on exactly this run's 6999 training images" in (
        capsys.readouterr().err
    )
    config.check_ready()  # and it suits the run


def test_a_generators_relative_data_path_is_judged_where_the_run_is_planned(tmp_path, store, monkeypatch):
    """A generator keeps its data path as given, relative to where it was trained. A Ray worker runs in a folder of
    its own, where that path means something else: the check is made before the run is created, not in the worker
    (`ham10000_28`'s iois runs failed on Ray with "trained on other data" for the same folder)."""
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    arrays = {}
    for split, n in (("train", 60), ("val", 15), ("test", 15)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3)[:, None]
    np.savez(tmp_path / "data" / "tiny.npz", **arrays)
    monkeypatch.chdir(tmp_path)
    train_generator(tiny_diffusion_config(data="medmnist", data_path="data/tiny.npz", data_options={}), "tiny_npz")
    assert load_generator_info(resolve_generator("tiny_npz", "diffusion")).config["data_path"] == "data/tiny.npz"
    config = tiny_config(
        method="iois",
        data="medmnist",
        data_path=str(tmp_path / "data" / "tiny.npz"),
        data_options={},
        epochs=2,
        method_settings={"generator": "tiny_npz", "steps": 2, "pool_per_class": 4},
    )
    config.check_ready()  # the same file, judged from the folder the generator was trained in
    run_id = store.create_run(config.to_dict())
    worker_folder = tmp_path / "worker"
    worker_folder.mkdir()
    monkeypatch.chdir(worker_folder)  # where "data/tiny.npz" is another (missing) file
    assert train(config, store, run_id=run_id) == run_id
    assert store.get_run(run_id)["status"] == "finished"


def test_quality_measures_on_known_cases(store, tiny_generator):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    index, distance = nearest_neighbours(images[[3, 1]], images)
    assert index.tolist() == [3, 1] and np.allclose(distance, 0)
    features = np.random.default_rng(1).normal(size=(200, 4))
    assert abs(frechet_distance(features, features)) < 1e-6
    assert frechet_distance(features, features + 3.0) == pytest.approx(36.0, rel=1e-3)  # 4 dims x 3^2

    from imbal_core.data import load_dataset
    from imbal_core.engine.evaluate import load_run_model

    run_id = train(tiny_config(method="ce"), store)
    classifier, _, _ = load_run_model(store, run_id)
    dataset = load_dataset("synthetic", **TINY)
    report = generator_quality(
        load_diffusion_model(tiny_generator),
        classifier,
        dataset.train.images,
        dataset.train.labels,
        dataset.val.images,
        dataset.val.labels,
        per_class=4,
        steps=3,
    )
    table = report.table
    assert list(table["class"])[-1] == "all" and len(table) == 8
    assert table["label_fidelity"].between(0, 1).all() and (table["synthetic"][:7] == 4).all()
    assert report.synthetic.shape == (28, 28, 28, 3) and report.nearest.max() < len(dataset.train.images)
    assert report.judge_size is None

    # A judge of another size (e.g. a shipped 128 px run for a 64 px generator) sees every image at its size.
    from imbal_core.synth.quality import measure_generator

    judge_32 = train(tiny_config(method="ce", image_size=32), store)
    other = measure_generator(tiny_generator, judge_32, store, per_class=4, steps=3, device="cpu")
    assert other.judge_size == 32 and other.synthetic.shape[1:3] == (28, 28)  # distances at the generator's size
    assert other.table["label_fidelity"].between(0, 1).all()


def test_targets_name_each_miss_and_by_how_much_and_skip_rare_classes():
    import pandas as pd

    from imbal_core.synth.quality import targets_table

    columns = ["class", "train_images", "label_fidelity", "real_val_recall", "fd_synthetic", "fd_real_val"]
    rows = [
        ["good", 400, 0.85, 0.9, 20.0, 10.0],  # 0.85 >= 0.72, 20 <= 30
        ["off_label", 400, 0.5, 0.9, 20.0, 10.0],  # 0.5 < 0.72
        ["far", 400, 0.9, 0.9, 31.0, 10.0],  # 31 > 30
        ["rare", 49, 0.0, 0.5, 99.0, 1.0],  # fewer than 50 training images: reported, not judged
        ["all", 1249, 0.56, 0.8, 42.5, 7.75],
    ]
    table = pd.DataFrame(rows, columns=columns).assign(nn_distance_synthetic=0.06, nn_distance_real_val=0.06)
    table.loc[table["class"] == "good", "nn_distance_synthetic"] = 0.05  # nearer than real: memorised
    targets = targets_table(table).set_index("class")
    assert list(targets.index) == ["good", "off_label", "far", "rare"]
    assert targets.loc["good", "misses"] == "nearer its training images (0.050) than real validation images (0.060)"
    assert targets.loc["off_label", "misses"] == "label fidelity 0.50 < 0.72 (0.8 x real recall 0.90)"
    assert targets.loc["far", "misses"] == "Fréchet distance 31.0 > 30.0 (3 x real 10.0)"
    assert targets.loc["rare", "misses"] == "not judged: 49 training images (< 50)"
    assert targets.loc["far", "fd_vs_real"] == pytest.approx(3.1)


def test_cli_diffusion_train_list_and_quality(tmp_path, store, capsys, tiny_generator):
    code = main(
        [
            "diffusion-train",
            "--data-option",
            "n_images=700",
            "--epochs",
            "1",
            "--width",
            "8",
            "--batch-size",
            "32",
            "--name",
            "cli_diffusion",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0 and (tmp_path / "cli_diffusion.safetensors").exists()
    assert "generator=cli_diffusion" in capsys.readouterr().out
    assert main(["generators", "--kind", "diffusion"]) == 0
    assert tiny_generator in capsys.readouterr().out
    assert main(["diffusion-train", "--image-size", "30"]) == 2  # bad recipe: a clear error
    assert "multiple of 4" in capsys.readouterr().err
    run_id = train(tiny_config(method="ce"), store)
    out = tmp_path / "quality.md"
    assert (
        main(
            [
                "--store",
                str(store.root),
                "generator-quality",
                tiny_generator,
                "--run",
                run_id,
                "--per-class",
                "3",
                "--steps",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "label_fidelity" in printed and "not Inception-FID" in printed and "| all |" in out.read_text()
    assert f"Command: `python -m imbal_core --store {store.root} generator-quality" in out.read_text()
    assert "| class | train_images | fidelity_vs_real |" in out.read_text()  # the targets, class by class
    import pandas as pd

    beside = pd.read_csv(out.with_suffix(".csv"), keep_default_na=False)  # what the Synthesis page reads
    assert list(beside["class"])[-1] == "all" and "misses" in beside.columns
    assert main(["generator-quality", tiny_generator, "--run", "no_such_run"]) == 2


def test_a_benchmark_blocks_an_iois_run_whose_generator_learnt_from_other_data(tmp_path, store, tiny_generator):
    from imbal_core.benchmark import plan
    from imbal_core.protocol import load_protocol

    protocol = tmp_path / "p.toml"
    protocol.write_text(
        'description = "iois against a generator of other data"\nseeds = [0]\nepochs = 1\nimage_size = 28\n'
        f'device = "cpu"\nmethods = ["ce", {{ method = "iois", settings = {{ generator = "{tiny_generator}" }} }}]\n'
        '[data]\nsource = "synthetic"\noptions = { n_images = 800 }\n'
    )
    steps = plan(load_protocol(protocol), store)
    assert [s.state for s in steps] == ["new", "blocked"]
    assert "was trained on other data than this run (data_options" in steps[1].note
    assert store.runs().empty


def test_an_archived_iois_run_is_reused_on_a_machine_without_its_generator(tmp_path, tiny_generator, monkeypatch):
    """The archive keeps finished runs, not generators: a new machine that lacks the generator reuses the archived
    run (only a run still to train needs its generator)."""
    from imbal_core.benchmark import plan
    from imbal_core.protocol import load_protocol
    from imbal_core.runs import RunStore
    from imbal_core.runs.archive import RunArchive

    protocol = tmp_path / "p.toml"
    settings = f'generator = "{tiny_generator}", steps = 2, pool_per_class = 4'
    protocol.write_text(
        'description = "iois from an archive"\nseeds = [0]\nepochs = 1\nimage_size = 28\ndevice = "cpu"\n'
        f'methods = ["ce", {{ method = "iois", settings = {{ {settings} }} }}]\n'
        f'[data]\nsource = "synthetic"\noptions = {{ n_images = {TINY["n_images"]} }}\n'
    )
    archive = tmp_path / "runs"
    args = ["benchmark", str(protocol), "--archive", str(archive), "--quiet", "--out-dir", str(tmp_path / "out")]
    assert main(["--store", str(tmp_path / "store"), *args]) == 0
    monkeypatch.setenv("IMBAL_LAB_HOME", str(tmp_path / "new_machine"))  # where the generator is not
    with pytest.raises(ConfigError, match="not found"):
        resolve_generator(tiny_generator, "diffusion")
    steps = plan(load_protocol(protocol), RunStore(tmp_path / "new_store"), archive=RunArchive(archive))
    assert [s.state for s in steps] == ["reuse", "reuse"] and steps[1].run_id in RunArchive(archive).run_ids()
    without_archive = plan(load_protocol(protocol), RunStore(tmp_path / "new_store"))
    assert [s.state for s in without_archive] == ["new", "blocked"]

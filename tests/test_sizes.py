"""Every registered method at the sizes the seed papers use, from a (local-file) pretrained backbone, on tiny data;
the streamed training images give the numbers the held ones do; the crop augmentation resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from imbal_core.engine import TrainConfig, train
from imbal_core.engine.augment import POLICIES, augment
from imbal_core.methods import METHODS, create_method
from imbal_core.synth.diffusion import DiffusionTrainConfig
from imbal_core.synth.generators import train_generator

from .conftest import assert_resume_matches_uninterrupted

SMALL_DATA = {"n_images": 200}  # about 140 training images
ONE_CLASS_TASK = "asymmetric_multicolour vs symmetric_uniform"
SETTINGS = {"crt": {"stage2_epochs": 1}, "lws": {"stage2_epochs": 1}, "metric_two_stage": {"stage2_epochs": 1}}


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory) -> str:
    """Weights of the default backbone's architecture, saved as a user's pretrained file would be."""
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", channels=(32, 64, 128, 256), stem_width=16)
    path = tmp_path_factory.mktemp("weights") / "resnet10t_small.safetensors"
    save_file(net.state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def small_generator() -> str:
    """A 28 px diffusion model of the small data: IOIS at 128 / 224 px resizes its samples."""
    config = DiffusionTrainConfig(data_options=dict(SMALL_DATA), epochs=1, width=8, batch_size=32, device="cpu")
    train_generator(config, "small_diffusion_28")
    return "small_diffusion_28"


def _config(method: str, size: int, backbone_file: str, generator: str, **overrides) -> TrainConfig:
    settings = dict(SETTINGS.get(method, {}))
    if method == "iois":
        settings.update(generator=generator, warmup_share=0.0)
    needs_task = create_method(method, **settings).needs_binary_task
    values = dict(
        method=method,
        method_settings=settings,
        data_options=dict(SMALL_DATA),
        image_size=size,
        pretrained=backbone_file,
        task=ONE_CLASS_TASK if needs_task else None,
        epochs=1,
        batch_size=32,
        device="cpu",
    )
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("size", [128, 224])
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_at_128_and_224_px_from_a_pretrained_file(
    store, method, size, backbone_file, small_generator
):
    run_id = train(_config(method, size, backbone_file, small_generator), store)
    run = store.get_run(run_id)
    assert run["status"] == "finished", run["error"]
    folder = store.run_dir(run_id)
    assert json.loads((folder / "weights.json").read_text())["source"] == "file"
    with np.load(folder / "predictions.npz", allow_pickle=False) as predictions:
        assert np.isfinite(predictions["probs"]).all()
    if method == "iois":  # the 28 px generator's samples were resized, and the run says so
        history = run["progress"]["history"]
        assert any(epoch.get("method", {}).get("synthetic_resized") == f"28 px -> {size} px" for epoch in history)


def test_streamed_training_images_give_the_numbers_held_ones_do(store, backbone_file, small_generator):
    held = train(_config("style_kd", 64, backbone_file, small_generator, epochs=2, data_placement="device"), store)
    streamed = train(_config("style_kd", 64, backbone_file, small_generator, epochs=2, data_placement="stream"), store)
    assert store.get_run(held)["summary"] == store.get_run(streamed)["summary"]
    history = [store.get_run(r)["progress"]["history"] for r in (held, streamed)]
    assert [e["loss"] for e in history[0]] == [e["loss"] for e in history[1]]


def test_crop_augmentation_resumes_exactly(store, backbone_file, small_generator):
    config = _config("ce", 128, backbone_file, small_generator, epochs=3, augment="crop", data_placement="stream")
    assert_resume_matches_uninterrupted(store, config)


def test_random_resized_crop_zooms_in_and_is_seeded():
    """A horizontal ramp: a crop of 35-100 % of the area spans a part of the ramp, differently per image; the same
    generator seed gives the same views."""
    ramp = torch.linspace(0, 255, 64).round().to(torch.uint8).expand(8, 3, 64, 64).contiguous()
    policy = POLICIES["crop"]
    no_colour = type(policy)(**{**policy.__dict__, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0})
    no_turns = type(no_colour)(**{**no_colour.__dict__, "rot90": False, "flips": False, "max_rotate_deg": 0.0})
    views = augment(ramp, torch.Generator().manual_seed(0), no_turns)
    again = augment(ramp, torch.Generator().manual_seed(0), no_turns)
    assert torch.equal(views, again)
    assert views.shape == (8, 3, 64, 64) and views.min() >= -1 and views.max() <= 1
    spans = views[:, 0, 32].amax(1) - views[:, 0, 32].amin(1)  # the ramp's range seen along a row, in [-1, 1] units
    assert (spans < 1.95).all()  # every crop shows less than the whole ramp
    assert (spans > 2 * 0.5 * 0.35**0.5).all()  # ... and at least the narrowest crop's share of it
    assert len(set(spans.round(decimals=3).tolist())) > 4  # crops differ between images


def test_style_kd_with_the_shipped_28_px_adain_model_stylises_at_128_px(store, backbone_file, small_generator):
    """The AdaIN tool is fully convolutional: a model trained at 28 px makes auxiliary images at the run's size."""
    from imbal_core.synth.style import create_style_tool, stylise_uint8
    from imbal_core.synth.style_models import load_style_model

    tool = create_style_tool("adain", model=load_style_model("adain_synthetic_28", torch.device("cpu")))
    content = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert stylise_uint8(tool, content, content.flip(0), 1.0).shape == (2, 3, 128, 128)
    settings = {"tool": "adain", "style_model": "adain_synthetic_28"}
    config = _config("style_kd", 128, backbone_file, small_generator, epochs=2, method_settings=settings)
    run = store.get_run(train(config, store))
    assert run["status"] == "finished", run["error"]


def test_flips_and_turns_change_only_the_images_drawn_for_them():
    """On the CPU the augmentation changes just the chosen images; the pixels are those torch.where gives (the GPU's
    way), so a run's views do not depend on the device's code path."""
    from imbal_core.engine.augment import _where

    x = torch.randint(0, 256, (9, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    chosen = torch.tensor([True, False, True, True, False, False, True, False, True])
    expected = torch.where(chosen[:, None, None, None], torch.rot90(x, 1, dims=(2, 3)), x)
    assert torch.equal(_where(chosen, lambda part: torch.rot90(part, 1, dims=(2, 3)), x.clone()), expected)


def test_a_benchmark_says_when_generator_samples_were_resized(tmp_path, small_generator):
    """A generator made at 28 px serves a 48 px IOIS run; the results file says the samples were resized."""
    from imbal_core.cli import main

    protocol = tmp_path / "resized.toml"
    protocol.write_text(
        f"""description = "IOIS with a generator of another size."
seeds = [0]
epochs = 1
batch_size = 32
device = "cpu"
image_size = 48
ratios = ["natural"]
methods = ["ce", {{ method = "iois", settings = {{ generator = "{small_generator}", warmup_share = 0.0 }} }}]

[data]
source = "synthetic"
options = {{ n_images = 200 }}
"""
    )
    out = tmp_path / "results"
    assert main(["--store", str(tmp_path / "store"), "benchmark", str(protocol), "--out-dir", str(out), "--quiet"]) == 0
    text = (out / "resized.md").read_text()
    assert "- Generator samples resized to the run's size" in text and "iois 28 px -> 48 px (1 runs)" in text

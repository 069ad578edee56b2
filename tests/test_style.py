"""Style transfer tools, AdaIN models and Style-KD: each property checked on small cases, then short runs."""

from __future__ import annotations

import threading

import pytest
import torch

from imbal_core.checkpoint import load_checkpoint
from imbal_core.cli import main
from imbal_core.engine import TrainConfig, train
from imbal_core.errors import ConfigError, RunError
from imbal_core.methods import create_method
from imbal_core.synth.generators import list_generators, load_generator_info, train_generator
from imbal_core.synth.style import (
    AdaINModel,
    adain,
    auxiliary_pairs,
    create_style_tool,
    fourier_amplitude_swap,
    histogram_match,
    low_frequency_mask,
    stylise_uint8,
)
from imbal_core.synth.style_models import StyleTrainConfig, load_style_model

from .conftest import TINY, assert_resume_matches_uninterrupted, tiny_config


def random_images(seed: int, shape=(4, 3, 16, 16)) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_fourier_swap_keeps_content_phase_and_takes_style_low_frequency_amplitude():
    content, style = random_images(0), random_images(1)
    beta = 0.15
    out = fourier_amplitude_swap(content, style, beta=beta)
    spectrum_out, spectrum_c, spectrum_s = (torch.fft.fft2(x.double()) for x in (out, content, style))
    band = low_frequency_mask(16, 16, beta)
    assert band.sum() == 25  # |f| <= floor(0.15 * 16) = 2 on both axes
    assert torch.allclose(spectrum_out.abs()[..., band], spectrum_s.abs()[..., band], atol=1e-3)
    assert torch.allclose(spectrum_out.abs()[..., ~band], spectrum_c.abs()[..., ~band], atol=1e-3)
    # phase = content phase wherever the amplitude is not ~0 (compare unit phasors, no 2*pi wrap issues)
    strong = spectrum_out.abs() > 1e-3
    phasor_out = spectrum_out / spectrum_out.abs()
    phasor_c = spectrum_c / spectrum_c.abs()
    assert torch.allclose(phasor_out[strong], phasor_c[strong], atol=1e-4)
    assert torch.allclose(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=1e-5)  # DC term = style's mean
    assert torch.allclose(fourier_amplitude_swap(content, style, beta=beta, strength=0.0), content, atol=1e-5)


def test_histogram_matching_gives_each_channel_the_style_cdf():
    content, style = random_images(2), random_images(3) ** 3  # a skewed style histogram
    out = histogram_match(content, style)
    assert torch.equal(out.flatten(2).sort(-1).values, style.flatten(2).sort(-1).values)
    # ranks are kept: the brightest content pixel gets the brightest style value
    assert torch.equal(out.flatten(2).argmax(-1), content.flatten(2).argmax(-1))
    assert torch.equal(histogram_match(content, style, strength=0.0), content)
    with pytest.raises(ConfigError, match="one shape"):
        histogram_match(content, style[:, :, :8])


def test_adain_output_has_the_style_channel_statistics():
    content = torch.randn(2, 5, 6, 6) * 3 + 1
    style = torch.randn(2, 5, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.5 - 2
    out = adain(content, style)
    assert torch.allclose(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), style.std(dim=(2, 3), unbiased=False), atol=1e-3)


@pytest.mark.parametrize("policy", ["any", "majority", "same"])
def test_auxiliary_pairs_top_each_class_up_to_the_majority_count(policy):
    labels = torch.tensor([0] * 20 + [1] * 7 + [2] * 3 + [3] * 1)
    pairs = auxiliary_pairs(labels, 4, policy, torch.Generator().manual_seed(0))
    assert torch.bincount(pairs.labels, minlength=4).tolist() == [0, 13, 17, 19]  # n_max - n_c
    assert torch.equal(labels[pairs.content], pairs.labels)  # content comes from the labelled class
    # contents cycle through the class: class 2's three images are used 6, 6 and 5 times
    assert sorted(torch.bincount(pairs.content[pairs.labels == 2]).tolist()[-3:]) == [5, 6, 6]
    reference_labels = labels[pairs.reference]
    if policy == "majority":
        assert (reference_labels == 0).all()
    if policy == "same":
        assert torch.equal(reference_labels, pairs.labels)
        several = pairs.labels != 3  # a one-image class can only restyle itself
        assert (pairs.reference[several] != pairs.content[several]).all()
    half = auxiliary_pairs(labels, 4, policy, torch.Generator().manual_seed(0), fraction=0.5)
    assert torch.bincount(half.labels, minlength=4).tolist() == [0, round(6.5), round(8.5), round(9.5)]


def test_auxiliary_pairs_rejects_unknown_policy_and_bad_fraction():
    labels = torch.tensor([0, 0, 1])
    with pytest.raises(ConfigError, match="policy must be one of"):
        auxiliary_pairs(labels, 2, "nearest", torch.Generator())
    with pytest.raises(ConfigError, match="fraction"):
        auxiliary_pairs(labels, 2, "any", torch.Generator(), fraction=0.0)


def test_tools_share_one_interface_on_uint8_batches():
    content = (random_images(4) * 255).to(torch.uint8)
    style = (random_images(5) * 255).to(torch.uint8)
    model = AdaINModel(in_chans=3, width=4)
    for tool in (
        create_style_tool("fourier", beta=0.1),
        create_style_tool("histogram"),
        create_style_tool("adain", model=model),
    ):
        out = stylise_uint8(tool, content, style, strength=1.0)
        assert out.dtype == torch.uint8 and out.shape == content.shape
    with pytest.raises(ConfigError, match="beta"):
        create_style_tool("fourier", beta=0.9)
    with pytest.raises(ConfigError, match="trained model"):
        create_style_tool("adain")
    with pytest.raises(ConfigError, match="strength"):
        create_style_tool("histogram")(content.float(), style.float(), strength=1.5)
    with pytest.raises(ConfigError, match="unknown style tool"):
        create_style_tool("cyclegan")


def tiny_style_config(**overrides) -> StyleTrainConfig:
    values = dict(data_options=dict(TINY), epochs=2, autoencoder_epochs=1, width=4, batch_size=32, device="cpu")
    values.update(overrides)
    return StyleTrainConfig(**values)


def test_style_model_trains_saves_lists_loads_and_resumes(tmp_path):
    config = tiny_style_config(epochs=3)
    stop = threading.Event()
    path = train_generator(
        config,
        "tiny",
        tmp_path,
        stop_event=stop,
        progress=lambda e: stop.set() if e["event"] == "epoch" and e["epoch"] == 1 else None,
    )
    partial = load_generator_info(path)
    assert partial.status == "partial" and len(partial.history) == 2 and partial.kind == "adain"
    train_generator(config, "tiny", tmp_path, resume=True)
    finished = load_generator_info(path)
    assert finished.status == "finished" and [h["phase"] for h in finished.history] == ["autoencoder", "adain", "adain"]
    assert finished.history[:2] == partial.history
    straight_path = train_generator(config, "straight", tmp_path)
    # stop + resume = uninterrupted (same seed, CPU): the optimiser's moments are kept in a partial file
    assert load_generator_info(straight_path).history == finished.history
    assert torch.equal(
        load_style_model(str(path)).decoder.layers[-1].weight,
        load_style_model(str(straight_path)).decoder.layers[-1].weight,
    )

    model = load_style_model(str(path))
    images = random_images(6, (2, 3, 28, 28))
    assert model(images, images.flip(0)).shape == images.shape
    with pytest.raises(ConfigError, match="another recipe"):
        train_generator(tiny_style_config(epochs=3, width=8), "tiny", tmp_path, resume=True)
    with pytest.raises(ConfigError, match="exists"):
        train_generator(config, "tiny", tmp_path)  # never overwrites a generator
    with pytest.raises(ConfigError, match="autoencoder_epochs"):
        StyleTrainConfig(epochs=2, autoencoder_epochs=2)
    with pytest.raises(ConfigError, match="letters, digits"):
        train_generator(config, "../escape", tmp_path)


def test_damaged_or_foreign_style_model_is_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(RunError, match="cannot be read"):
        load_style_model(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_style_model("no_such_model")


def test_pretrained_style_model_for_builtin_data_ships_and_loads():
    shipped = [info for info in list_generators("adain") if info.source == "shipped"]
    assert any(info.config["data"] == "synthetic" and info.status == "finished" for info in shipped)
    model = load_style_model(shipped[0].name)
    images = random_images(8, (4, 3, 28, 28))
    tool = create_style_tool("adain", model=model)  # keep_detail by default: strength 0 is the content itself
    assert torch.allclose(tool(images, images.flip(0), 0.0), images, atol=1e-5)
    assert not torch.allclose(tool(images, images.flip(0), 1.0), images, atol=1e-2)
    # trained: at strength 0 it reconstructs held-out images of the built-in set (an untrained one does not)
    from imbal_core.data import load_dataset

    images = torch.from_numpy(load_dataset("synthetic", **TINY).test.images[:16]).permute(0, 3, 1, 2) / 255
    with torch.no_grad():
        error = (model(images, images.roll(1, 0), strength=0.0) - images).abs().mean()
        untrained = (AdaINModel(3, model.width)(images, images, strength=0.0) - images).abs().mean()
    assert error < untrained / 3


def test_style_kd_needs_a_teacher(store):
    with pytest.raises(ConfigError, match="needs a teacher"):
        train(tiny_config(method="style_kd", method_settings={"teacher_share": 0.0}), store)
    assert create_method("style_kd").stages(1)[0].name == "teacher"  # one epoch each when the budget is 1
    assert [s.epochs for s in create_method("style_kd", teacher_share=0.25).stages(8)] == [2, 6]


def test_style_kd_needs_a_model_for_adain():
    with pytest.raises(ConfigError, match="no adain generator given"):
        TrainConfig(method="style_kd", method_settings={"tool": "adain"}).check_ready()
    with pytest.raises(ConfigError, match="policy"):
        create_method("style_kd", policy="nearest")


def test_style_kd_run_makes_n_max_minus_n_c_auxiliary_images_and_freezes_the_teacher(store, monkeypatch):
    from imbal_core.methods import style_kd

    seen = {}
    original = style_kd.StyleKD.on_epoch_start

    def spy(self, model, epoch, stage):
        original(self, model, epoch, stage)
        if stage.name == "student":
            seen["aux_counts"] = torch.bincount(self.pairs.labels, minlength=self.info.num_classes).tolist()
            seen["train_counts"] = self.info.class_counts.tolist()
            seen["teacher"] = {k: v.clone() for k, v in self.aux["teacher"].state_dict().items()}

    monkeypatch.setattr(style_kd.StyleKD, "on_epoch_start", spy)
    run_id = train(tiny_config(method="style_kd", epochs=2), store)
    n_max = max(seen["train_counts"])
    assert seen["aux_counts"] == [n_max - n for n in seen["train_counts"]]
    final_teacher = load_checkpoint(store.run_dir(run_id) / "last.safetensors")["aux"]
    # the teacher never moves during the student stage
    assert all(torch.equal(final_teacher[f"teacher.{k}"], v) for k, v in seen["teacher"].items())
    # Compare and Explain load a Style-KD run like any other
    from imbal_core.data import load_dataset
    from imbal_core.engine.evaluate import load_run_model
    from imbal_core.explain import grad_cam

    model, _, metrics = load_run_model(store, run_id)
    assert metrics["summary"]["balanced_acc"] >= 0
    heat, probs = grad_cam(model, load_dataset("synthetic", **TINY).test.images[:2])
    assert heat.shape[0] == 2 and probs.shape == (2, 7)


@pytest.mark.parametrize(
    "settings",
    [
        {"tool": "histogram", "policy": "same", "generate": "batch", "feature_weight": 0.5},
        {"tool": "fourier", "student_init": "scratch", "policy": "majority"},
    ],
)
def test_style_kd_resume_matches_uninterrupted(store, settings):
    assert_resume_matches_uninterrupted(store, tiny_config(method="style_kd", epochs=3, method_settings=settings))


def test_style_kd_with_adain_and_teacher_from_a_finished_run(store, tmp_path, monkeypatch):
    from imbal_core.synth import generators

    monkeypatch.setattr(generators, "user_generator_dir", lambda: tmp_path)
    train_generator(tiny_style_config(epochs=1, autoencoder_epochs=0), "tiny_adain", tmp_path)
    teacher = train(tiny_config(method="ce"), store)
    run_id = train(
        tiny_config(
            method="style_kd",
            init_from=teacher,
            epochs=1,
            method_settings={"tool": "adain", "style_model": "tiny_adain", "teacher_share": 0.0},
        ),
        store,
    )
    history = store.get_run(run_id)["progress"]["history"]
    assert [h["stage"] for h in history] == ["student"]  # the finished run is the teacher: no teacher stage


def test_cli_style_train_and_list(tmp_path, capsys):
    code = main(
        [
            "style-train",
            "--data-option",
            "n_images=700",
            "--epochs",
            "1",
            "--autoencoder-epochs",
            "0",
            "--width",
            "4",
            "--name",
            "cli_tiny",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert (tmp_path / "cli_tiny.safetensors").exists()
    assert "style_model=cli_tiny" in capsys.readouterr().out
    assert main(["generators", "--kind", "adain"]) == 0
    assert "shipped" in capsys.readouterr().out
    assert main(["style-train", "--epochs", "1", "--autoencoder-epochs", "3"]) == 2  # bad recipe: clear error
    assert "autoencoder_epochs must be" in capsys.readouterr().err


def test_two_style_kd_runs_of_one_seed_agree_byte_for_byte(store):
    """Issue 40: a style_kd retrain did not reproduce its archived run. On one machine, two runs of one seed give
    the same test probabilities, bit for bit (the default tool: Fourier)."""
    import numpy as np

    config = tiny_config(method="style_kd")  # 1 teacher + 1 student epoch: auxiliary images and distillation
    first, second = (train(config, store) for _ in range(2))
    probs = [np.load(store.run_dir(run) / "predictions.npz")["probs"] for run in (first, second)]
    assert probs[0].tobytes() == probs[1].tobytes()


def test_fourier_auxiliary_images_do_not_depend_on_the_cpus_vector_kernels():
    """Issue 40: in float32 the Fourier swap's last bits depend on torch's SIMD kernels, and the uint8 auxiliary
    images flipped a level where a value sat near .5 (without vector kernels: another picture hash than with
    AVX2/AVX-512). Computed in float64 they are the same under every kernel level torch can be told to use."""
    import hashlib
    import os
    import subprocess
    import sys

    script = (
        "import hashlib, torch\n"
        "from imbal_core.synth.style import create_style_tool, stylise_uint8\n"
        "g = torch.Generator().manual_seed(0)\n"
        "content, style = (torch.randint(0, 256, (256, 3, 28, 28), generator=g, dtype=torch.uint8) for _ in '12')\n"
        "out = stylise_uint8(create_style_tool('fourier'), content, style, 1.0)\n"
        "print(hashlib.sha256(out.numpy().tobytes()).hexdigest())\n"
    )
    digests = {
        level: subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "ATEN_CPU_CAPABILITY": level, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for level in ("default", "avx2", "avx512")  # a level the CPU lacks falls back to the best it has
    }
    assert len(set(digests.values())) == 1, digests
    assert hashlib.sha256(b"").hexdigest() not in digests.values()

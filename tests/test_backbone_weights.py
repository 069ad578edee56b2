"""Pretrained starting weights: a local file, a timm tag read from a hub cache laid out as the hub lays it (offline),
strict key checks, clear errors, the record a run keeps, and the input normalisation that follows the weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from imbal_core.errors import ConfigError
from imbal_core.models import create_model

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"channels": (32, 64, 128, 256), "stem_width": 16}  # resnet10t_small's widths
TAG = "resnet10t.c3_in1k"


def _reference_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return timm.create_model("resnet10t", num_classes=1000, **SMALL).state_dict()


def test_a_local_safetensors_file_loads_into_the_backbone_and_sets_imagenet_normalisation(tmp_path):
    weights = _reference_weights()
    file = tmp_path / "backbone.safetensors"
    save_file(weights, str(file))
    model = create_model("resnet10t_small", num_classes=3, image_size=128, pretrained=str(file))
    assert torch.equal(model.backbone.conv1[0].weight, weights["conv1.0.weight"])
    assert torch.equal(model.backbone.layer4[0].bn2.running_var, weights["layer4.0.bn2.running_var"])
    record = model.weights
    assert record is not None and record.source == "file"
    assert record.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert record.mean == pytest.approx((0.485, 0.456, 0.406)) and record.std == pytest.approx((0.229, 0.224, 0.225))
    # the lab's inputs are in [-1, 1]; the backbone sees (p - mean) / std
    pixel = torch.full((1, 3, 1, 1), 0.25)
    seen = pixel * 2 - 1
    expected = (pixel - torch.tensor(record.mean).view(1, 3, 1, 1)) / torch.tensor(record.std).view(1, 3, 1, 1)
    assert torch.allclose(seen * model.input_scale + model.input_shift, expected)


def test_a_torch_state_dict_without_a_head_loads_and_adapts_to_grey_images(tmp_path):
    weights = {k: v for k, v in _reference_weights().items() if not k.startswith("fc.")}
    file = tmp_path / "backbone.pth"
    torch.save({"state_dict": weights}, file)
    model = create_model("resnet10t_small", num_classes=2, in_chans=1, image_size=28, pretrained=str(file))
    assert model.backbone.conv1[0].weight.shape[1] == 1  # timm sums the colour filters for one channel
    assert torch.allclose(model.backbone.conv1[0].weight[:, 0], weights["conv1.0.weight"].sum(1))
    assert torch.equal(model.backbone.layer1[0].conv1.weight, weights["layer1.0.conv1.weight"])


def test_a_file_of_another_architecture_is_refused_with_the_key_names(tmp_path):
    file = tmp_path / "other.safetensors"
    save_file(_reference_weights(), str(file))
    with pytest.raises(ConfigError) as error:
        create_model("resnet18", image_size=28, pretrained=str(file))
    message = str(error.value)
    assert "do not match backbone 'resnet18'" in message
    assert "missing: conv1.weight" in message and "unexpected: " in message and "conv1.0.weight" in message


def test_a_file_with_keys_missing_is_refused_not_started_partly_at_random(tmp_path):
    weights = _reference_weights()
    del weights["layer3.0.conv1.weight"]
    file = tmp_path / "partial.safetensors"
    save_file(weights, str(file))
    with pytest.raises(ConfigError, match=r"1 key\(s\) missing: layer3.0.conv1.weight"):
        create_model("resnet10t_small", image_size=28, pretrained=str(file))


@pytest.mark.parametrize(
    ("backbone", "pretrained", "expected"),
    [
        ("resnet18", "resnet50.a1_in1k", "holds weights for backbone 'resnet50'"),
        ("resnet10t_small", TAG, "reduced-width presets have no published weights"),
        ("resnet18", "resnet18.no_such_tag", "neither a timm pretrained tag nor a weights file"),
        ("resnet18", "weights.npz", "neither a timm pretrained tag"),
        ("resnet18", "dir/weights.npz", "must end in one of"),
        ("resnet18", "missing/file.safetensors", "does not exist"),
    ],
)
def test_weights_not_meant_for_the_backbone_are_refused_before_anything_loads(backbone, pretrained, expected):
    with pytest.raises(ConfigError, match=expected):
        create_model(backbone, image_size=28, pretrained=pretrained)


def _hub_cache(root: Path) -> Path:
    """A Hugging Face hub cache holding TAG's weights, laid out as the hub lays it (refs/main -> a snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / "hub" / "models--timm--resnet10t.c3_in1k"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    torch.manual_seed(7)
    save_file(timm.create_model("resnet10t").state_dict(), str(repo / "snapshots" / commit / "model.safetensors"))
    return root / "hub"


def _offline(hub: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def test_a_tag_is_read_offline_from_a_hub_cache_by_timms_own_loading_code(tmp_path):
    hub = _hub_cache(tmp_path)
    script = f"""
import json, timm.models._hub as hub_module
calls = []
original = hub_module.hf_hub_download
hub_module.hf_hub_download = lambda *a, **k: calls.append(k.get("filename")) or original(*a, **k)
from imbal_core.models import create_model
model = create_model("resnet10t", num_classes=2, image_size=128, pretrained="{TAG}")
conv = model.backbone.conv1[0].weight.sum().item()
print(json.dumps({{"calls": calls, "record": model.weights.to_dict(), "conv": conv}}))
"""
    out = subprocess.run([sys.executable, "-c", script], env=_offline(hub), capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["calls"] == ["model.safetensors"]  # through timm's hub loader, which asked the hub's cache
    file = next(hub.rglob("model.safetensors"))
    from safetensors.torch import load_file

    assert result["conv"] == pytest.approx(load_file(str(file))["conv1.0.weight"].sum().item(), rel=1e-6)
    assert result["record"]["source"] == "hf-hub:timm/resnet10t.c3_in1k"
    assert result["record"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()


def test_train_from_a_cached_tag_records_the_weights_and_labels_the_run(tmp_path):
    hub = _hub_cache(tmp_path)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "imbal_core", "--store", str(store), "train", "--pretrained", TAG, "--quiet"]
    command += ["--epochs", "1", "--data-option", "n_images=300", "--image-size", "32", "--device", "cpu"]
    subprocess.run(command, env=_offline(hub), capture_output=True, text=True, check=True)
    (run_dir,) = (store / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["backbone"] == "resnet10t" and config["pretrained"] == TAG
    record = json.loads((run_dir / "weights.json").read_text())
    assert record["weights"] == TAG and record["source"] == "hf-hub:timm/resnet10t.c3_in1k"
    assert len(record["sha256"]) == 64

    from imbal_core.compare import group_label

    assert group_label(json.dumps(config)) == "ce · 1 ep · resnet10t · ImageNet (c3_in1k)"


def test_missing_weights_give_one_error_naming_both_ways_and_create_no_run(tmp_path):
    store = tmp_path / "store"
    command = [sys.executable, "-m", "imbal_core", "--store", str(store), "train", "--pretrained", TAG, "--quiet"]
    out = subprocess.run(command, env=_offline(tmp_path / "empty_hub"), capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "HF_HUB_OFFLINE=1" in out.stderr and "--pretrained path/to/weights.safetensors" in out.stderr
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


def test_a_pretrained_run_trains_resumes_and_reloads_without_reading_the_weights_again(tmp_path, store):
    from imbal_core.engine import train
    from imbal_core.engine.evaluate import load_run_model

    file = tmp_path / "backbone.safetensors"
    save_file(_reference_weights(), str(file))
    config = tiny_config(pretrained=str(file), epochs=2)
    run_id = train(config, store)
    file.unlink()  # the run's own checkpoints carry its weights from here
    model, _, _ = load_run_model(store, run_id)
    assert model.rescales_input and model.weights is None
    record = json.loads((store.run_dir(run_id) / "weights.json").read_text())
    assert record["weights"] == str(file) and record["source"] == "file"


def test_configs_of_runs_made_before_pretrained_weights_round_trip_unchanged():
    """The store and the archives match whole configs: a run without starting weights must keep the config it was
    archived with, or every archived run would be trained again."""
    from imbal_core.engine import TrainConfig

    archived = sorted((ROOT / "results" / "ham10000_28_runs").glob("*/config.json"))
    assert archived, "results/ham10000_28_runs ships with the repository"
    config = json.loads(archived[0].read_text())
    assert "pretrained" not in config
    assert TrainConfig.from_dict(config).to_dict() == config
    assert TrainConfig(pretrained="resnet18.a1_in1k", backbone="resnet18").to_dict()["pretrained"] == "resnet18.a1_in1k"

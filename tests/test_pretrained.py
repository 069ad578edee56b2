"""The shipped runs: small enough to ship, and their float16 weights still give the numbers recorded with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
LIMIT_MB = 60


def test_pretrained_stays_under_the_size_limit():
    files = [f for f in PRETRAINED.rglob("*") if f.is_file() and not f.name.endswith(("-wal", "-shm"))]
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    assert size_mb < LIMIT_MB, (
        f"pretrained/ is {size_mb:.1f} MB; keep it under {LIMIT_MB} MB (scripts/make_pretrained.py --shrink)"
    )


def test_float16_weights_reproduce_the_recorded_test_predictions():
    """Shipped weights are stored as float16 (half the bytes); re-predicting the test split with them must agree
    with the probabilities recorded when the run finished (in float32)."""
    import torch

    from imbal_core.compare import PRETRAINED_DIR
    from imbal_core.data import load_dataset
    from imbal_core.engine.evaluate import load_run_model
    from imbal_core.engine.trainer import predict
    from imbal_core.runs import MODEL_FILE, RunStore

    store = RunStore(PRETRAINED_DIR)
    shipped = [r for r in store.runs(status="finished").itertuples() if r.method == "ce" and r.data == "synthetic"]
    run = next((r for r in shipped if (store.run_dir(r.run_id) / MODEL_FILE).is_file()), None)
    assert run is not None, "the shipped ce run must keep its weights (Explain's default model)"
    model, config, _ = load_run_model(store, run.run_id)
    assert any(t.dtype == torch.float16 for t in _weights(store.run_dir(run.run_id) / MODEL_FILE))
    dataset = load_dataset(
        config.data, image_size=config.image_size, split_seed=config.split_seed, **config.data_options
    )
    logits, _ = predict(model, dataset.test.images, torch.device("cpu"), amp=False)
    recorded = np.load(store.run_dir(run.run_id) / "predictions.npz")["probs"]
    probs = torch.softmax(logits.float(), dim=1).numpy()
    assert np.abs(probs - recorded).max() < 0.02
    assert (probs.argmax(1) == recorded.argmax(1)).mean() > 0.99


def _weights(path: Path) -> list:
    from imbal_core.checkpoint import load_checkpoint

    return list(load_checkpoint(path)["model"].values())


def test_every_shipped_generator_is_recorded_with_its_recipe_and_samples():
    """Each generator of the manifest is there, finished, made by the recipe recorded with its command; the 64 px
    HAM10000 model (latent space, float16 weights) samples images at 64 px."""
    import torch

    from imbal_core.synth.diffusion import load_diffusion_model
    from imbal_core.synth.generators import load_generator_info, read_generator
    from imbal_core.utils import read_json

    entries = read_json(PRETRAINED / "manifest.json")["generators"]
    files = sorted(p.name for p in (PRETRAINED / "generators").glob("*.safetensors"))
    assert sorted(Path(e["file"]).name for e in entries) == files  # none unrecorded, none missing
    for entry in entries:
        info = load_generator_info(PRETRAINED / entry["file"])
        assert info.status == "finished" and info.config == entry["recipe"] and entry["command"], entry["name"]
    demo = next(e for e in entries if e["name"] == "diffusion_ham10000_64")
    assert demo["weights_dtype"] == "float16" and demo["train_seconds"] > 0
    weights, _ = read_generator(PRETRAINED / demo["file"])
    assert weights["down_blocks.0.resnets.0.conv1.weight"].dtype == torch.float16
    assert weights["codec.scale"].dtype == torch.float32  # a scalar keeps its precision
    model = load_diffusion_model("diffusion_ham10000_64")
    images, _ = model.sample(torch.tensor([3, 6]), steps=2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8

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

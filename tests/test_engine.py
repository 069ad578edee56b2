"""Training engine: determinism, resume, checkpoints, every baseline, decoupled stages, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imbal_core.checkpoint import load_checkpoint, save_checkpoint
from imbal_core.engine import train
from imbal_core.engine.evaluate import evaluate_run, has_split_embeddings, load_run_model, split_embeddings
from imbal_core.errors import ConfigError, DataError, RunError
from imbal_core.methods import METHODS
from imbal_core.models import create_model
from imbal_core.runs import MODEL_FILE

from .conftest import TINY, assert_resume_matches_uninterrupted, tiny_config

BASELINES = [
    "ce",
    "weighted_ce",
    "cb_loss",
    "focal",
    "ldam_drw",
    "balanced_softmax",
    "logit_adjust",
    "cb_resample",
    "mixup",
    "crt",
    "lws",
    "tau_norm",
]


def _summary(store, run_id):
    return store.get_run(run_id)["summary"]


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(METHODS.names())


@pytest.mark.parametrize("method", BASELINES)
def test_every_baseline_trains_one_epoch(store, method):
    settings = {"stage2_epochs": 1} if method in ("crt", "lws") else {}
    run_id = train(tiny_config(method=method, method_settings=settings), store)
    run = store.get_run(run_id)
    assert run["status"] == "finished"
    assert 0 <= run["summary"]["balanced_acc"] <= 1
    folder = store.run_dir(run_id)
    for name in (
        "config.json",
        "metrics.json",
        "predictions.npz",
        "model.safetensors",
        "best.safetensors",
        "last.safetensors",
        "kept_indices.npy",
    ):
        assert (folder / name).exists(), name
    with np.load(folder / "predictions.npz", allow_pickle=False) as preds:
        assert preds["probs"].shape[1] == 7
        assert np.allclose(preds["probs"].sum(1), 1, atol=1e-4)


def test_same_seed_same_metrics(store):
    a = train(tiny_config(method="mixup", epochs=2), store)
    b = train(tiny_config(method="mixup", epochs=2), store)
    c = train(tiny_config(method="mixup", epochs=2, seed=1), store)
    assert _summary(store, a) == _summary(store, b)
    assert _summary(store, a) != _summary(store, c)


def test_resume_equals_uninterrupted(store):
    assert_resume_matches_uninterrupted(store, tiny_config(method="cb_resample", epochs=3))


def test_a_run_records_the_environment_of_each_training_call(store, monkeypatch):
    """A run resumed in the same environment lists it once; resumed in another (a newer torch, another CPU), both."""
    import threading

    from imbal_core.engine import trainer
    from imbal_core.utils import environment_differences, numerics_environment

    stop = threading.Event()
    run_id = train(
        tiny_config(epochs=2), store, stop_event=stop, progress=lambda e: stop.set() if e["event"] == "epoch" else None
    )
    here = numerics_environment(torch.device("cpu"))
    assert here["summary"].startswith(f"torch {torch.__version__}, numpy {np.__version__}")
    assert here["torch_kernels"] == torch.backends.cpu.get_cpu_capability() and len(here["torch_build"]) == 16
    assert trainer.run_environment_records(store.run_dir(run_id)) == [here]
    assert trainer.run_environments(store.run_dir(run_id)) == [here["summary"]]
    elsewhere = {**here, "cpu": "Another CPU", "threads": "torch 1 intra-op"}
    monkeypatch.setattr(trainer, "numerics_environment", lambda device: elsewhere)
    train(tiny_config(epochs=2), store, resume=run_id)
    assert trainer.run_environment_records(store.run_dir(run_id)) == [here, elsewhere]
    assert environment_differences(here, elsewhere) == [
        f"cpu: {here['cpu']} (recorded) vs Another CPU (here)",
        f"threads: {here['threads']} (recorded) vs torch 1 intra-op (here)",
    ]
    # a run recorded before the parts were kept: its summary line, and every part said as not recorded then
    (store.run_dir(run_id) / trainer.ENVIRONMENT_FILE).write_text(json.dumps([here["summary"]]))
    assert trainer.run_environment_records(store.run_dir(run_id)) == [{"summary": here["summary"]}]
    assert (
        environment_differences({"summary": here["summary"]}, here)[0]
        == f"cpu: not recorded then (here: {here['cpu']})"
    )


def test_crt_second_stage_keeps_backbone(store):
    first = train(tiny_config(method="ce"), store)
    second = train(tiny_config(method="crt", init_from=first, method_settings={"stage2_epochs": 1}), store)
    a = load_checkpoint(store.run_dir(first) / "model.safetensors")["model"]
    b = load_checkpoint(store.run_dir(second) / "model.safetensors")["model"]
    backbone_keys = [k for k in a if k.startswith("backbone.")]
    assert all(torch.equal(a[k], b[k]) for k in backbone_keys)
    assert not torch.equal(a["head.weight"], b["head.weight"])
    history = store.get_run(second)["progress"]["history"]
    assert [h["stage"] for h in history] == ["classifier"]


def test_init_from_rejects_mismatch(store):
    """A bad init_from is refused before a run is created (probe L03: an unknown id left a failed run)."""
    first = train(tiny_config(method="ce"), store)
    before = len(store.runs())
    with pytest.raises(ConfigError, match="image_size"):
        train(tiny_config(method="crt", init_from=first, image_size=32), store)
    with pytest.raises(ConfigError, match="init_from run 'nosuchrun' is not in the store"):
        train(tiny_config(method="crt", init_from="nosuchrun"), store)
    with pytest.raises(ConfigError, match="no stage left to train after init_from"):
        train(tiny_config(method="ce", init_from=first), store)
    assert len(store.runs()) == before


def test_checkpoint_round_trip(tmp_path):
    model = create_model(num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3, 28, 28)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 4, "history": [{"a": 1.5}]}
    save_checkpoint(tmp_path / "ck.safetensors", state)
    loaded = load_checkpoint(tmp_path / "ck.safetensors")
    assert loaded["epoch"] == 4 and loaded["history"] == [{"a": 1.5}]
    assert all(torch.equal(v, loaded["model"][k]) for k, v in state["model"].items())
    fresh = torch.optim.AdamW(model.parameters())
    fresh.load_state_dict(loaded["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="cannot be read"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_bad_settings_fail_before_a_run_is_created(store):
    with pytest.raises(ConfigError, match="gamma"):
        tiny_config(method="focal", method_settings={"gamma": -3})
    with pytest.raises(ConfigError, match="unknown data source"):
        tiny_config(data="mnist")
    assert store.runs().empty


def test_failed_run_is_recorded(store):
    """A run that fails while it trains (here: the run it starts from vanished after it was queued; a new run with
    that init_from is refused before it is created) is recorded as failed, with the error."""
    config = tiny_config(method="crt", init_from="no-such-run")
    run_id = store.create_run(config.to_dict())
    with pytest.raises(ConfigError, match="not in the store"):
        train(config, store, run_id=run_id)
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "no-such-run" in run["error"]


def test_evaluate_on_another_dataset_and_reload(store):
    run_id = train(tiny_config(method="ldam_drw"), store)
    model, config, metrics = load_run_model(store, run_id)
    assert type(model.head).__name__ == "CosineHead"
    other = evaluate_run(store, run_id, "synthetic", split="test", device="cpu", **TINY)  # unseen by the run
    assert set(other["summary"]) == set(metrics["summary"]) and other["n_images"] == len(config.load_data().test)
    evals = set(store.tidy([run_id])["eval"])
    assert evals == {"test", "synthetic:test"}


def test_a_run_without_weights_is_listed_but_not_loaded(store):
    """Shipped runs of some methods keep results only: Compare lists them, loading their model says why not."""
    from imbal_core.compare import finished_runs

    run_id = train(tiny_config(method="ce"), store)
    assert finished_runs([store]).set_index("run_id").loc[run_id, "has_model"]
    (store.run_dir(run_id) / "model.safetensors").unlink()
    assert not finished_runs([store]).set_index("run_id").loc[run_id, "has_model"]
    with pytest.raises(RunError, match="keeps no model weights.*manifest"):
        load_run_model(store, run_id)


def test_features_not_kept_are_computed_with_the_weights_and_match_the_kept_ones(store):
    """Shipped runs drop their test features when their weights can give them back (Compare's feature map, tau-norm);
    the computed features are the kept ones, and another test set than the one scored is refused, not mixed up."""
    from imbal_core.runs.archive import slim_predictions

    run_id = train(tiny_config(), store)
    kept_test, kept_labels = split_embeddings(store, run_id, "test")
    kept_val, _ = split_embeddings(store, run_id, "val")
    slim_predictions(store.run_dir(run_id) / "predictions.npz")
    assert has_split_embeddings(store.run_dir(run_id), "test")
    computed_test, computed_labels = split_embeddings(store, run_id, "test")
    computed_val, _ = split_embeddings(store, run_id, "val")
    np.testing.assert_array_equal(computed_labels, kept_labels)
    # kept features are float16: equal to the computed float32 ones within that precision
    np.testing.assert_allclose(computed_test, kept_test, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(computed_val, kept_val, rtol=2e-3, atol=2e-3)

    predictions = store.run_dir(run_id) / "predictions.npz"
    with np.load(predictions) as saved:
        arrays = {key: saved[key] for key in saved.files}
    np.savez_compressed(predictions, **{**arrays, "ids": arrays["ids"][::-1]})  # scored on other images
    with pytest.raises(DataError, match="other test images"):
        split_embeddings(store, run_id, "test")

    (store.run_dir(run_id) / MODEL_FILE).unlink()
    assert not has_split_embeddings(store.run_dir(run_id), "test")

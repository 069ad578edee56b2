"""The GPU path (CUDA only; skipped on machines without one): bf16 training at 128 px with the images held on the GPU
and streamed through pinned memory, and a training step that never waits for the host between progress reports."""

from __future__ import annotations

import warnings

import pytest
import torch

from imbal_core.engine import train

from .conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device tool lends one)")


@pytest.mark.parametrize("placement", ["device", "stream"])
def test_a_cuda_run_trains_at_128_px_with_its_images_held_or_streamed(store, placement):
    config = tiny_config(device="cuda", image_size=128, epochs=2, data_placement=placement, augment="crop")
    run = store.get_run(train(config, store))
    assert run["status"] == "finished", run["error"]
    assert 0 <= run["summary"]["balanced_acc"] <= 1
    assert all(torch.isfinite(torch.tensor(epoch["loss"])) for epoch in run["progress"]["history"])


def test_training_steps_wait_for_the_host_only_at_progress_reports(store, monkeypatch):
    """Within an epoch of `ce` (augmentation included), the GPU waits for the host only when progress is read (every
    10 steps), when the epoch's labels go to the host for its sample order, and for the epoch's mean loss."""
    from imbal_core.engine import trainer

    syncs: list[str] = []
    steps: list[int] = []
    one_epoch = trainer.train_one_epoch

    def watched(run, *args, **kwargs):
        steps.append(run.steps_per_epoch)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                return one_epoch(run, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            syncs.extend(str(w.message) for w in caught if "synchroniz" in str(w.message))

    monkeypatch.setattr(trainer, "train_one_epoch", watched)
    train(tiny_config(device="cuda", image_size=64, epochs=1, batch_size=16, data_placement="device"), store)
    (steps_in_epoch,) = steps
    assert steps_in_epoch >= 20
    assert len(syncs) <= steps_in_epoch // 10 + 4, syncs[:5]

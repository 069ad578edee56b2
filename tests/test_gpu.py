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
    """Between two progress reports (every 10 steps) a `ce` step makes no synchronising CUDA call."""
    from imbal_core.engine import trainer

    steps: list[int] = []
    reported = trainer._checked_losses

    def counting(losses, start, stop, epoch):
        steps.append(stop - start)
        return reported(losses, start, stop, epoch)

    monkeypatch.setattr(trainer, "_checked_losses", counting)
    config = tiny_config(device="cuda", image_size=64, epochs=1, batch_size=16, data_placement="device")
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(config, store)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    # the progress reads, plus setup, validation, checkpoints and the test pass: far fewer than one per step
    assert sum(steps) >= 20 and len(syncs) < sum(steps) / 2, [str(w.message)[:120] for w in syncs[:5]]

"""Grad-CAM maps and overlays."""

from __future__ import annotations

import torch


def test_grad_cam_maps_and_overlay():
    from imbal_core.explain import grad_cam, overlay
    from imbal_core.models import create_model

    model = create_model(num_classes=3, image_size=64)
    images = (torch.rand(2, 64, 64, 3) * 255).to(torch.uint8).numpy()
    heat, probs = grad_cam(model, images, target=1)
    assert heat.shape == (2, 64, 64) and probs.shape == (2, 3)
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6
    blended = overlay(images[0], heat[0])
    assert blended.shape == (64, 64, 3) and blended.dtype.name == "uint8"


def test_familiarity_flags_images_unlike_the_runs_data(store):
    """An uploaded image is checked against the run's validation images: the run's own test images pass, noise and a
    grey-scale copy of a colour image do not, and a built-in-data run always says it never saw a photograph."""
    from dataclasses import replace

    import numpy as np

    from imbal_core.data.images import is_grey
    from imbal_core.engine import train
    from imbal_core.engine.evaluate import load_run_model
    from imbal_core.familiarity import check_image, reference_for_run
    from imbal_core.utils import read_json, write_json

    from .conftest import tiny_config

    config = tiny_config(epochs=2)
    run_id = train(config, store)
    model, _, metrics = load_run_model(store, run_id)
    assert metrics["val_colour_share"] == 1.0  # the built-in images are in colour
    builtin = reference_for_run(store, run_id)
    assert (builtin.colour_share, builtin.data_source) == (1.0, "synthetic")
    reference = replace(builtin, data_source="ham10000")  # as a real data set's run: the other checks alone
    test = config.load_data().test

    checks = [check_image(model, image, reference) for image in test.images[:200]]
    flagged = np.mean([not c.familiar for c in checks])
    assert flagged <= 0.05, f"{flagged:.0%} of the run's own test images were called unfamiliar"

    noise = np.random.default_rng(0).integers(0, 256, size=test.images[0].shape, dtype=np.uint8)
    far = check_image(model, noise, reference)
    assert far.distance > far.threshold and "unlike its training data" in " ".join(far.warnings)

    grey = np.repeat(test.images[0].mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    assert is_grey(grey[None])[0] and not is_grey(test.images[:1])[0]
    assert any("grey-scale image" in w for w in check_image(model, grey, reference).warnings)

    assert any("never seen a photograph" in w for w in check_image(model, test.images[0], builtin).warnings)
    assert not any("never seen a photograph" in w for w in check_image(model, test.images[0], reference).warnings)

    assert read_json(store.run_dir(run_id) / "metrics.json")["val_colour_share"] == 1.0

    # A run made before runs kept the share counts it from its data set.
    metrics_file = store.run_dir(run_id) / "metrics.json"
    write_json(metrics_file, {k: v for k, v in read_json(metrics_file).items() if k != "val_colour_share"})
    assert reference_for_run(store, run_id).colour_share == 1.0


def test_leave_one_out_neighbour_distances_match_brute_force_across_blocks():
    import numpy as np

    from imbal_core.familiarity import _kth_distance

    points = np.random.default_rng(0).normal(size=(2500, 8)).astype(np.float32)  # more than one block of 1024
    every = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    np.fill_diagonal(every, np.inf)
    assert np.allclose(_kth_distance(points, points, 3, leave_one_out=True), np.sort(every, 1)[:, 2], atol=1e-4)
    assert np.allclose(_kth_distance(points[:5], points, 1, leave_one_out=False), 0.0, atol=1e-3)


def test_shipped_ham10000_models_check_an_upload_without_their_data_set():
    """The real-data models shipped for Explain keep their validation features and colour share, so an upload is
    checked on a machine without HAM10000: a dermoscopy photo reads as like their data, a grey X-ray does not."""
    import numpy as np

    from imbal_core.data.images import decode_image_bytes
    from imbal_core.engine.evaluate import load_run_model
    from imbal_core.familiarity import check_image, reference_for_run
    from imbal_core.runs import RunStore
    from imbal_core.utils import PRETRAINED_DIR, read_json

    from .conftest import shared_path

    shipped = [e for e in read_json(PRETRAINED_DIR / "manifest.json")["runs"] if e["data"] == "ham10000"]
    assert shipped and {e["image_size"] for e in shipped} == {128}
    photo_file = shared_path("ham10000", "images", "ISIC_0025964.jpg")  # a melanoma of the test split
    xray = np.load(shared_path("medmnist", "pneumoniamnist.npz"))["test_images"][0]
    store = RunStore(PRETRAINED_DIR)
    for entry in shipped:
        model, config, _ = load_run_model(store, entry["run_id"])
        reference = reference_for_run(store, entry["run_id"])
        assert reference.data_source == "ham10000" and reference.colour_share is not None
        photo = decode_image_bytes(photo_file.read_bytes(), config.image_size, photo_file.name)
        assert check_image(model, photo, reference).familiar, entry["method"]
        grey = decode_image_bytes(_png(xray), config.image_size, "xray.png")
        assert any("grey-scale image" in w for w in check_image(model, grey, reference).warnings)


def _png(image) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()

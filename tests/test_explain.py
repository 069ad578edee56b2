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

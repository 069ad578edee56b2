"""Grad-CAM (captum LayerGradCam on the last feature map, ReLU on, bilinear upsampling)."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from .engine.augment import to_float
from .models import Classifier


def grad_cam(model: Classifier, images: np.ndarray, target: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps in [0, 1] of shape (N, H, W) and class probabilities (N, C) for uint8 (N, H, W, C) images.

    target=None explains each image's predicted class.
    """
    device = next(model.parameters()).device
    model.eval()
    x = to_float(torch.tensor(images).permute(0, 3, 1, 2).to(device))  # a copy: cached arrays are read-only
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    targets = probs.argmax(1) if target is None else torch.full((len(x),), target, device=device)
    cam = LayerGradCam(model, model.cam_layer())
    attribution = cam.attribute(x, target=targets, relu_attributions=True)
    maps = LayerAttribution.interpolate(attribution, tuple(x.shape[2:]), interpolate_mode="bilinear")[:, 0]
    peak = maps.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]
    return (maps / peak).detach().cpu().numpy(), probs.cpu().numpy()


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a [0, 1] heat map (jet colours) onto a uint8 RGB image; cold areas stay see-through."""
    jet = np.stack([np.clip(1.5 - np.abs(4 * heat - k), 0, 1) for k in (3, 2, 1)], axis=-1)
    weight = (alpha * (0.3 + 0.7 * heat))[..., None]
    blended = np.clip((1 - weight) * image / 255.0 + weight * jet, 0, 1)
    return (blended * 255).astype(np.uint8)

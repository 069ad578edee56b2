"""Backbones: small-input stem adaptation and the interface methods rely on."""

from __future__ import annotations

import pytest
import torch

from imbal_core.errors import ConfigError
from imbal_core.models import DEFAULT_BACKBONE, create_model


@pytest.mark.parametrize("backbone", [DEFAULT_BACKBONE, "resnet18", "convnext_atto"])
def test_feature_map_at_least_4x4_at_28px(backbone):
    model = create_model(backbone, num_classes=5, image_size=28)
    x = torch.randn(2, 3, 28, 28)
    fmap = model.forward_features(x)
    assert fmap.shape[2] >= 4 and fmap.shape[3] >= 4
    assert model.features(x).shape == (2, model.embed_dim)
    assert model(x).shape == (2, 5)
    assert torch.allclose(model.head(model.features(x)), model(x))
    assert model.cam_layer() is not None


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="unknown backbone"):
        create_model("no_such_net")


@pytest.mark.parametrize(
    ("size", "adapted", "cam_side"),
    [(28, True, 4), (64, True, 4), (112, False, 7), (128, False, 8), (224, False, 7)],
)
def test_stem_is_adapted_only_below_112_px_and_grad_cam_reads_a_7x7_map_from_there(size, adapted, cam_side):
    """Below 112 px the earliest strides go so the last map stays >= 4x4; from 112 px the published architecture is
    kept (ImageNet weights see what they were trained on) and Grad-CAM reads the deepest map with >= 7x7 cells."""
    model = create_model("resnet18", num_classes=3, image_size=size)
    assert bool(model.adapted) is adapted
    assert model.backbone.conv1.stride == ((2, 2) if not adapted else (1, 1))
    maps = []
    hook = model.cam_layer().register_forward_hook(lambda _m, _i, out: maps.append(out))
    model(torch.zeros(1, 3, size, size))
    hook.remove()
    assert min(maps[0].shape[2:]) == cam_side

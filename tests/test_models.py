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


def test_local_weights_only(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_model(weights=tmp_path / "missing.safetensors")

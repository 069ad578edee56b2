"""Classifier = timm backbone (stem adapted to small images) + pooled embedding + linear head.

Methods work through one small interface: `forward_features(x)` (the last feature map, the
Grad-CAM layer), `features(x)` (pooled embedding of size `embed_dim`), `head(f)` (logits).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import ConfigError

# Named reduced-width variants of timm architectures: (timm name, constructor arguments).
# resnet10t_small trains one 28 px HAM10000 epoch (7,000 images) in ~15 s on 2 CPU cores.
PRESETS: dict[str, tuple[str, dict]] = {
    "resnet10t_small": ("resnet10t", {"channels": (32, 64, 128, 256), "stem_width": 16}),
    "resnet18_small": ("resnet18", {"channels": (32, 64, 128, 256)}),
}
DEFAULT_BACKBONE = "resnet10t_small"
MIN_FEATURE_SIZE = 4  # Grad-CAM needs a spatial map, at least 4x4 at 28 px
SMALL_INPUT = 28


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(embed_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def cam_layer(self) -> nn.Module:
        """The module whose output is the last feature map (target layer for Grad-CAM)."""
        return self.backbone.get_submodule(self.backbone.feature_info[-1]["module"])


def create_model(
    backbone: str = DEFAULT_BACKBONE,
    num_classes: int = 7,
    in_chans: int = 3,
    image_size: int = 28,
    weights: str | Path | None = None,
) -> Classifier:
    """Build a classifier from any timm CNN name, adapted so small inputs keep a >= 4x4 map.

    `weights`: an optional local file of ImageNet weights (safetensors), never a download.
    """
    timm_name, kwargs = PRESETS.get(backbone, (backbone, {}))
    try:
        net = timm.create_model(timm_name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans, **kwargs)
    except RuntimeError as err:
        raise ConfigError(
            f"unknown backbone {backbone!r} ({err}); use {', '.join(PRESETS)} or a timm CNN name such as resnet18"
        ) from None
    if weights is not None:
        _load_local_weights(net, Path(weights))
    fmap = _adapt_to_size(net, backbone, in_chans, image_size)
    return Classifier(net, fmap.shape[1], num_classes)


def _adapt_to_size(net: nn.Module, backbone: str, in_chans: int, image_size: int) -> torch.Tensor:
    """Turn the earliest strided layers (stem conv, max-pool) into stride 1 until the final
    feature map is at least MIN_FEATURE_SIZE wide. Keeps every weight: only strides change."""
    strided = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and _stride(m) > 1]
    while True:
        try:
            with torch.no_grad():
                net.eval()
                fmap = net.forward_features(torch.zeros(1, in_chans, image_size, image_size))
                net.train()
            problem = (
                None if fmap.ndim == 4 and min(fmap.shape[2:]) >= MIN_FEATURE_SIZE else f"a {tuple(fmap.shape[1:])} map"
            )
        except RuntimeError as err:  # e.g. a pooling kernel larger than the shrunken input
            problem = str(err)
        if problem is None:
            return fmap
        if not strided:
            raise ConfigError(
                f"backbone {backbone!r} cannot give a {MIN_FEATURE_SIZE}x{MIN_FEATURE_SIZE} feature map at "
                f"{image_size} px ({problem}); use {DEFAULT_BACKBONE}, resnet18 or another CNN"
            )
        layer = strided.pop(0)
        layer.stride = (1, 1) if isinstance(layer, nn.Conv2d) else 1


def _stride(module: nn.Module) -> int:
    stride = module.stride
    return stride[0] if isinstance(stride, tuple) else stride


def _load_local_weights(net: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.exists():
        raise ConfigError(f"weights file {path} does not exist; pass a local .safetensors file")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier.", "head."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or len(missing) > 0.5 * len(list(net.state_dict())):
        raise ConfigError(f"{path} does not match the backbone (unexpected keys e.g. {unexpected[:3]})")

"""Classifier = timm backbone (stem adapted to small images) + pooled embedding + linear head.

Methods work through one small interface: `forward_features(x)` (the last feature map), `features(x)` (pooled
embedding of size `embed_dim`), `head(f)` (logits). Inputs are in [-1, 1] everywhere in the lab; a backbone that
starts from pretrained weights turns them into the normalisation those weights were trained with.

Below FULL_SIZE px the earliest strides are removed until the last map is at least MIN_FEATURE_SIZE wide (a 28 px
image would otherwise end as a 1x1 map). From FULL_SIZE px up the published architecture is kept unchanged, so
ImageNet weights see what they were trained on.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from ..errors import ConfigError
from .pretrained import (
    WeightsRecord,
    check_pretrained,
    create_pretrained_backbone,
    input_normalisation,
    is_weights_file,
    weights_label,
    weights_record,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "PRESETS",
    "Classifier",
    "WeightsRecord",
    "check_backbone",
    "create_model",
    "default_backbone",
    "default_tag",
    "is_weights_file",
    "timm_architecture",
    "weights_label",
]

# Named reduced-width variants of timm architectures: (timm name, constructor arguments).
# resnet10t_small trains one 28 px HAM10000 epoch (7,000 images) in ~15 s on 2 CPU cores.
PRESETS: dict[str, tuple[str, dict]] = {
    "resnet10t_small": ("resnet10t", {"channels": (32, 64, 128, 256), "stem_width": 16}),
    "resnet18_small": ("resnet18", {"channels": (32, 64, 128, 256)}),
}
DEFAULT_BACKBONE = "resnet10t_small"
MIN_FEATURE_SIZE = 4  # below FULL_SIZE px: the last map is kept at least 4x4 (Grad-CAM needs a spatial map)
FULL_SIZE = 112  # from here up the architecture is the published one
MIN_CAM_CELLS = 7  # from FULL_SIZE px up, Grad-CAM reads the deepest map with at least 7x7 cells


class Classifier(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        num_classes: int,
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        std: tuple[float, ...] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(embed_dim, num_classes)
        # x in [-1, 1] is (p - 0.5) / 0.5; (p - mean) / std = x * 0.5 / std + (0.5 - mean) / std. Not saved with the
        # weights: the run's config says which normalisation its backbone has.
        mean_t, std_t = torch.tensor(mean), torch.tensor(std)
        self.rescales_input = bool((mean_t != 0.5).any() or (std_t != 0.5).any())
        self.register_buffer("input_scale", (0.5 / std_t).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((0.5 - mean_t) / std_t).view(1, -1, 1, 1), persistent=False)
        self.cam_module = backbone.feature_info[-1]["module"]
        self.cam_cells = 0  # the side of the map Grad-CAM reads, in cells (set by create_model)
        self.adapted: list[str] = []  # the layers whose stride was removed for a small input
        self.weights: WeightsRecord | None = None  # where pretrained starting weights came from

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.rescales_input:
            x = x * self.input_scale + self.input_shift
        return self.backbone.forward_features(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def cam_layer(self) -> nn.Module:
        """The module whose output map Grad-CAM weighs: the last one, or at FULL_SIZE px and more the deepest stage
        with at least MIN_CAM_CELLS x MIN_CAM_CELLS cells (chosen when the model was created)."""
        return self.backbone.get_submodule(self.cam_module)


def timm_architecture(backbone: str) -> str:
    """The timm architecture of a backbone name (a preset's base, or the name itself)."""
    return PRESETS.get(backbone, (backbone, {}))[0]


def default_backbone(pretrained: str | None) -> str:
    """The backbone a run has when none is named: a pretrained tag's architecture, else DEFAULT_BACKBONE."""
    if pretrained is not None and not is_weights_file(pretrained) and "." in pretrained:
        return pretrained.split(".", 1)[0]
    return DEFAULT_BACKBONE


def default_tag(backbone: str) -> str | None:
    """timm's default pretrained tag of a backbone (e.g. resnet18 -> resnet18.a1_in1k); None for the presets."""
    if backbone in PRESETS:
        return None
    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except RuntimeError:
        return None
    return f"{backbone}.{cfg.tag}" if cfg is not None and cfg.tag else None


def check_backbone(backbone: str, pretrained: str | None) -> None:
    """Raise ConfigError when `pretrained` is not meant for `backbone` (no weights are read)."""
    if pretrained is not None:
        check_pretrained(timm_architecture(backbone), pretrained, backbone)


def create_model(
    backbone: str = DEFAULT_BACKBONE,
    num_classes: int = 7,
    in_chans: int = 3,
    image_size: int = 28,
    pretrained: str | None = None,
    load_weights: bool = True,
) -> Classifier:
    """Build a classifier from any timm CNN name, adapted so small inputs keep a >= 4x4 map.

    `pretrained`: a timm tag (`resnet18.a1_in1k`) or a local weights file for this architecture; the input
    normalisation follows it. `load_weights=False` builds the same model (architecture, normalisation) without
    reading the weights, for a run whose own checkpoint is loaded next. After loading, `model.weights` says where
    the weights came from.
    """
    timm_name, kwargs = PRESETS.get(backbone, (backbone, {}))
    check_backbone(backbone, pretrained)
    if pretrained is not None and load_weights:
        net = create_pretrained_backbone(timm_name, pretrained, in_chans, **kwargs)
    else:
        try:
            net = timm.create_model(
                timm_name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans, **kwargs
            )
        except RuntimeError as err:
            raise ConfigError(
                f"unknown backbone {backbone!r} ({err}); use {', '.join(PRESETS)} or a timm CNN name such as resnet18"
            ) from None
    adapted = _adapt_to_size(net, backbone, in_chans, image_size) if image_size < FULL_SIZE else []
    mean, std = input_normalisation(timm_name, pretrained)
    if in_chans != len(mean):  # grey images: the mean of the colour channels' statistics
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    stage_sizes = _stage_sizes(net, in_chans, image_size)
    model = Classifier(net, stage_sizes[-1][1], num_classes, mean, std)
    model.adapted = adapted
    model.cam_module = _cam_module(stage_sizes, image_size)
    model.cam_cells = next(side for name, _, side in stage_sizes if name == model.cam_module)
    if pretrained is not None and load_weights:
        model.weights = weights_record(timm_name, pretrained)
    return model


def _stage_sizes(net: nn.Module, in_chans: int, image_size: int) -> list[tuple[str, int, int]]:
    """(module, channels, map side) of each feature stage timm names, from one forward pass of a blank image."""
    modules = [info["module"] for info in net.feature_info]
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        net.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
        for name in modules
    ]
    try:
        with torch.no_grad():
            was_training = net.training
            net.eval()
            last = net.forward_features(torch.zeros(1, in_chans, image_size, image_size))
            net.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    outputs[modules[-1]] = last
    return [(name, int(outputs[name].shape[1]), int(min(outputs[name].shape[2:]))) for name in modules]


def _cam_module(stage_sizes: list[tuple[str, int, int]], image_size: int) -> str:
    """The last stage, or at FULL_SIZE px and more the deepest stage whose map has >= MIN_CAM_CELLS cells a side."""
    if image_size >= FULL_SIZE:
        for name, _, side in reversed(stage_sizes):
            if side >= MIN_CAM_CELLS:
                return name
    return stage_sizes[-1][0]


def _adapt_to_size(net: nn.Module, backbone: str, in_chans: int, image_size: int) -> list[str]:
    """Turn the earliest strided layers (stem conv, max-pool) into stride 1 until the final
    feature map is at least MIN_FEATURE_SIZE wide. Keeps every weight: only strides change.
    Returns the names of the layers changed."""
    strided = [
        (name, m)
        for name, m in net.named_modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and _stride(m) > 1
    ]
    changed: list[str] = []
    while True:
        try:
            with torch.no_grad():
                net.eval()
                fmap = net.forward_features(torch.zeros(1, in_chans, image_size, image_size))
                net.train()
            problem = (
                None if fmap.ndim == 4 and min(fmap.shape[2:]) >= MIN_FEATURE_SIZE else f"a {tuple(fmap.shape[1:])} map"
            )
        except (RuntimeError, AssertionError) as err:  # a pooling kernel larger than the input; a fixed-size ViT
            problem = str(err) or f"{type(err).__name__}: it takes one input size only"
        if problem is None:
            return changed
        if not strided:
            raise ConfigError(
                f"backbone {backbone!r} cannot give a {MIN_FEATURE_SIZE}x{MIN_FEATURE_SIZE} feature map at "
                f"{image_size} px ({problem}); use {DEFAULT_BACKBONE}, resnet18 or another CNN"
            )
        name, layer = strided.pop(0)
        layer.stride = (1, 1) if isinstance(layer, nn.Conv2d) else 1
        changed.append(name)


def _stride(module: nn.Module) -> int:
    stride = module.stride
    return stride[0] if isinstance(stride, tuple) else stride

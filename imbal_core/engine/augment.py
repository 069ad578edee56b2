"""Batched augmentation on the device: no per-image PIL work in the training loop.

Input: uint8 (B, C, H, W). Output: float, normalised to [-1, 1]. All randomness comes from
the generator passed in, so a seeded run is reproducible. Every geometric change is one affine resampling of the
batch, so the cost grows with the pixels and not with the number of operations.

Policies (`TrainConfig.augment`): "basic" (True; what every run so far used: flips, quarter turns, a small rotation,
scale and shift, colour jitter) and "crop" (what the seed papers use at 128-224 px: a random resized crop of 35-100 %
of the area at aspect 3/4-4/3, flips, quarter turns, rotation up to 20 degrees, colour jitter 0.2).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flips: bool = True
    rot90: bool = True
    max_rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_translate: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    # Random resized crop: the share of the image's area kept and the crop's aspect ratio (replaces scale and shift).
    crop_area: tuple[float, float] | None = None
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)


NO_AUGMENT = AugmentConfig(False, False, 0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0)
POLICIES: dict[str, AugmentConfig] = {
    "basic": AugmentConfig(),
    "crop": AugmentConfig(max_rotate_deg=20.0, brightness=0.2, contrast=0.2, saturation=0.2, crop_area=(0.35, 1.0)),
}


def augment_policy(setting: bool | str) -> AugmentConfig:
    """The augmentation a run's `augment` setting names: True = "basic", False = none, or a policy's name."""
    if setting is False:
        return NO_AUGMENT
    return POLICIES["basic" if setting is True else str(setting)]


def to_float(raw: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (mean 0.5, std 0.5 normalisation)."""
    return raw.float().div_(127.5).sub_(1.0)


def augment(raw: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    b, device = raw.shape[0], raw.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(b, *shape, generator=generator, device=device) * (high - low) + low

    # Flips and quarter turns only move pixels: done on the uint8 images.
    x = raw.clone() if cfg.flips or cfg.rot90 else raw
    if cfg.flips:
        flip_h = uniform(0, 1) < 0.5
        flip_v = uniform(0, 1) < 0.5
        x = _where(flip_h, lambda chosen: chosen.flip(3), x)
        x = _where(flip_v, lambda chosen: chosen.flip(2), x)
    if cfg.rot90 and x.shape[2] == x.shape[3]:
        turns = torch.randint(0, 4, (b,), generator=generator, device=device)
        for k in (1, 2, 3):
            x = _where(turns == k, functools.partial(torch.rot90, k=k, dims=(2, 3)), x)
    x = x.float().div_(255.0)
    if cfg.crop_area is not None:
        # The crop's half-size (w, h) in [-1, 1] image coordinates, and its centre anywhere that keeps it inside.
        area = uniform(*cfg.crop_area)
        aspect = torch.exp(uniform(math.log(cfg.crop_aspect[0]), math.log(cfg.crop_aspect[1])))
        w, h = torch.sqrt(area * aspect).clamp(max=1.0), torch.sqrt(area / aspect).clamp(max=1.0)
        centre = uniform(-1, 1, 2) * torch.stack([1 - w, 1 - h], 1)
        angle = uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg) * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([w * cos, -h * sin, centre[:, 0]], 1), torch.stack([w * sin, h * cos, centre[:, 1]], 1)], 1
        )
        x = _resample(x, theta)
    elif cfg.max_rotate_deg or cfg.scale != (1.0, 1.0) or cfg.max_translate:
        angle = uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg) * math.pi / 180
        scale = uniform(*cfg.scale)
        shift = uniform(-cfg.max_translate, cfg.max_translate, 2)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        x = _resample(x, theta)
    # x is this function's own tensor from here: the colour changes work in place (the same arithmetic, less memory)
    if cfg.brightness:
        x.mul_(uniform(1 - cfg.brightness, 1 + cfg.brightness)[:, None, None, None])
    if cfg.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x.sub_(mean).mul_(uniform(1 - cfg.contrast, 1 + cfg.contrast)[:, None, None, None]).add_(mean)
    if cfg.saturation and x.shape[1] == 3:
        grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        x.sub_(grey).mul_(uniform(1 - cfg.saturation, 1 + cfg.saturation)[:, None, None, None]).add_(grey)
    return x.clamp_(0, 1).mul_(2).sub_(1)


def _where(chosen: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x with `change` applied to the images where `chosen` is True (x is the caller's own copy). On the CPU only the
    chosen images are changed; on a GPU every image is and torch.where picks, since indexing by a mask would make the
    GPU wait for the host (the number of chosen images decides the result's size). The same pixels either way."""
    if x.is_cuda:
        return torch.where(chosen[:, None, None, None], change(x), x)
    x[chosen] = change(x[chosen])
    return x


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """x seen through the affine maps `theta` (B, 2, 3), reflecting at the borders."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

"""Style transfer without downloaded weights: Fourier amplitude swap, histogram matching, AdaIN.

Every tool maps content images and style references of the same shape — float (B, C, H, W) in
[0, 1], on any device — to stylised images in [0, 1]. `strength` goes from the content (0) to the
full transfer (1). `auxiliary_pairs` decides which content meets which reference when Style-KD
balances a training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

POLICIES = ("same", "any", "majority")
CHUNK = 1024  # images stylised per call when a whole pool is made at once


# ---- Fourier domain adaptation (Yang & Soatto, CVPR 2020) -------------------------------------


def low_frequency_mask(height: int, width: int, beta: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W) bool: the frequencies with |f_y|, |f_x| <= floor(beta * min(H, W)) in FFT order.

    The band is symmetric under f -> -f, so swapping amplitudes inside it keeps the image real.
    """
    half = math.floor(beta * min(height, width))
    fy = torch.fft.fftfreq(height, 1 / height, device=device).abs()
    fx = torch.fft.fftfreq(width, 1 / width, device=device).abs()
    return (fy[:, None] <= half) & (fx[None, :] <= half)


def fourier_amplitude_swap(
    content: torch.Tensor, style: torch.Tensor, beta: float = 0.1, strength: float = 1.0
) -> torch.Tensor:
    """Content phase everywhere; the style's amplitude (mixed by `strength`) in the low band.

    Low-frequency amplitude carries colour, illumination and texture statistics ("style"), the
    phase carries the structure ("content"). Not clamped, so the phase can be checked exactly.

    Computed in float64, returned in float32: in float32 the last bits depend on the kernels the CPU runs (torch's
    SIMD level, the FFT library's code path), and an auxiliary image rounded to uint8 then flips a level wherever a
    value sits near .5, so one seed gave other images, and other numbers, on another machine (issue 40).
    """
    spectrum_c = torch.fft.fft2(content.double())
    amplitude_s = torch.fft.fft2(style.double()).abs()
    height, width = content.shape[-2:]
    band = low_frequency_mask(height, width, beta, content.device) * strength
    amplitude = spectrum_c.abs() * (1 - band) + amplitude_s * band
    return torch.fft.ifft2(torch.polar(amplitude, spectrum_c.angle())).real.float()


# ---- Histogram matching -----------------------------------------------------------------------


def histogram_match(content: torch.Tensor, style: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Per image and channel, give the content the style's values in the content's rank order.

    Exact matching: the k-th smallest content pixel takes the k-th smallest style value, so at
    strength 1 each channel's CDF is the style's. Ties keep their spatial order.
    """
    if content.shape != style.shape:
        raise ConfigError(
            f"histogram matching needs content and style of one shape; got {tuple(content.shape)} "
            f"and {tuple(style.shape)}"
        )
    flat = content.float().flatten(2)
    ranks = flat.argsort(dim=-1, stable=True).argsort(dim=-1)
    matched = style.float().flatten(2).sort(dim=-1).values.gather(-1, ranks)
    return torch.lerp(flat, matched, strength).view_as(content)


# ---- AdaIN (Huang & Belongie, ICCV 2017) with a small encoder/decoder trained on the data -----


def channel_stats(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation, shaped (B, C, 1, 1)."""
    mean = features.mean(dim=(2, 3), keepdim=True)
    std = (features.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Content features re-normalised to the style features' channel means and stds."""
    mean_c, std_c = channel_stats(content)
    mean_s, std_s = channel_stats(style)
    return (content - mean_c) / std_c * std_s + mean_s


def _conv(in_chans: int, out_chans: int) -> nn.Sequential:
    # Reflection padding avoids the border artefacts zero padding leaves in decoded images.
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_chans, out_chans, 3), nn.ReLU(inplace=True))


class StyleEncoder(nn.Module):
    """Three stages (full, 1/2, 1/2 resolution); the style loss reads all three outputs.

    One downsampling only: small medical images (28 px) keep enough spatial detail at 1/2 for
    the decoder to restore the lesion's shape.
    """

    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            [
                nn.Sequential(_conv(in_chans, width), _conv(width, width)),
                nn.Sequential(nn.AvgPool2d(2), _conv(width, 2 * width), _conv(2 * width, 2 * width)),
                nn.Sequential(_conv(2 * width, 4 * width)),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = x * 2 - 1
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class StyleDecoder(nn.Module):
    """Mirror of the encoder: 1/2-resolution features back to an image."""

    def __init__(self, out_chans: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv(4 * width, 2 * width),
            _conv(2 * width, 2 * width),
            _conv(2 * width, width),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(width, width),
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, out_chans, 3),
        )

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.layers(features)
        if x.shape[-2:] != size:  # odd sides
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x + 1) / 2


class AdaINModel(nn.Module):
    """Encoder -> AdaIN at the deepest stage -> decoder. Trained by `style_models.train_style_model`."""

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.in_chans, self.width = in_chans, width
        self.encoder = StyleEncoder(in_chans, width)
        self.decoder = StyleDecoder(in_chans, width)

    def forward(
        self, content: torch.Tensor, style: torch.Tensor, strength: float = 1.0, keep_detail: bool = False
    ) -> torch.Tensor:
        """The decoded AdaIN image; with `keep_detail`, the content image plus only the change the style
        makes (decoded target minus decoded content), so the decoder's blur never reaches the output."""
        content_features = self.encoder(content)[-1]
        target = torch.lerp(content_features, adain(content_features, self.encoder(style)[-1]), strength)
        stylised = self.decoder(target, content.shape[-2:])
        if keep_detail:
            return content + stylised - self.decoder(content_features, content.shape[-2:])
        return stylised


# ---- Tools behind one interface ---------------------------------------------------------------


@dataclass
class StyleTool:
    """A style-transfer tool: call it on (content, style, strength) batches in [0, 1]."""

    name: ClassVar[str]

    def transfer(self, content: torch.Tensor, style: torch.Tensor, strength: float) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, content: torch.Tensor, style: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        if content.shape != style.shape:
            raise ConfigError(
                f"content and style batches must have one shape; got {tuple(content.shape)} and {tuple(style.shape)}"
            )
        if not 0.0 <= strength <= 1.0:
            raise ConfigError(f"strength must be in [0, 1]; got {strength}")
        # Full precision even inside a mixed-precision training step: FFTs and ranks need it.
        with torch.autocast(content.device.type, enabled=False):
            return self.transfer(content.float(), style.float(), strength).clamp_(0, 1)


STYLE_TOOLS: Registry[type[StyleTool]] = Registry("style tool")


register_style_tool = STYLE_TOOLS.register_named


@register_style_tool("fourier")
@dataclass
class FourierTool(StyleTool):
    beta: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 0.5:
            raise ConfigError(
                f"beta (the low-frequency band, a share of the image side) must be in [0, 0.5]; got {self.beta}"
            )

    def transfer(self, content: torch.Tensor, style: torch.Tensor, strength: float) -> torch.Tensor:
        return fourier_amplitude_swap(content, style, self.beta, strength)


@register_style_tool("histogram")
@dataclass
class HistogramTool(StyleTool):
    def transfer(self, content: torch.Tensor, style: torch.Tensor, strength: float) -> torch.Tensor:
        return histogram_match(content, style, strength)


@register_style_tool("adain")
@dataclass
class AdaINTool(StyleTool):
    model: AdaINModel | None = None
    # A small decoder trained on small images blurs; auxiliary images that are all blurred (and all of
    # minority classes) teach the classifier "blurred = minority". Keeping the detail avoids that.
    keep_detail: bool = True

    def __post_init__(self) -> None:
        if self.model is None:
            raise ConfigError(
                "the adain tool needs a trained model: train one with `python -m imbal_core style-train` "
                "(or on the Synthesis page) and pass its name as style_model"
            )
        self.model.eval()

    def transfer(self, content: torch.Tensor, style: torch.Tensor, strength: float) -> torch.Tensor:
        model = self.model
        assert model is not None, "__post_init__ refuses a tool without a model"
        if content.shape[1] != model.in_chans:
            raise ConfigError(
                f"the AdaIN model was trained on {model.in_chans}-channel images; these have {content.shape[1]}"
            )
        model.to(content.device)
        return model(content, style, strength, self.keep_detail)


def create_style_tool(name: str, **options) -> StyleTool:
    """`create_style_tool("fourier", beta=0.05)`, `create_style_tool("adain", model=m)`."""
    return STYLE_TOOLS.get(name)(**options)


def stylise_uint8(tool: StyleTool, content: torch.Tensor, style: torch.Tensor, strength: float) -> torch.Tensor:
    """uint8 (B, C, H, W) in, uint8 out, in chunks so a whole auxiliary pool fits in memory."""
    out = torch.empty_like(content)
    for start in range(0, len(content), CHUNK):
        part = slice(start, start + CHUNK)
        stylised = tool(content[part].float() / 255, style[part].float() / 255, strength)
        out[part] = stylised.mul_(255).round_().to(torch.uint8)
    return out


# ---- Which content meets which reference ------------------------------------------------------


@dataclass
class AuxiliaryPairs:
    """Auxiliary images of one epoch: content index, reference index and label (= content's class)."""

    content: torch.Tensor
    reference: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice) -> AuxiliaryPairs:
        return AuxiliaryPairs(self.content[index], self.reference[index], self.labels[index])


def reference_pool(labels: torch.Tensor, num_classes: int, target: int, policy: str) -> torch.Tensor:
    """Indices a reference for a class-`target` content may come from, under `policy`."""
    if policy not in POLICIES:
        raise ConfigError(f"reference policy must be one of {list(POLICIES)}; got {policy!r}")
    if policy == "any":
        return torch.arange(len(labels), device=labels.device)
    if policy == "majority":
        target = int(torch.bincount(labels, minlength=num_classes).argmax())
    return torch.nonzero(labels == target).flatten()


def style_grid(tool: StyleTool, contents: torch.Tensor, references: torch.Tensor, strength: float) -> torch.Tensor:
    """Every content under every reference: uint8 (n_contents, n_references, C, H, W)."""
    n, m = len(contents), len(references)
    out = stylise_uint8(tool, contents.repeat_interleave(m, 0), references.repeat(n, 1, 1, 1), strength)
    return out.view(n, m, *contents.shape[1:])


def auxiliary_pairs(
    labels: torch.Tensor, num_classes: int, policy: str, generator: torch.Generator, fraction: float = 1.0
) -> AuxiliaryPairs:
    """For each class c, round(fraction * (n_max - n_c)) pairs whose content is a class-c image.

    Contents cycle through a shuffled list of the class's images, so each is used about equally.
    References, by `policy`: "any" training image, one of the "majority" class, or another image
    of the "same" class (the content itself only when the class has a single image).
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction of the auxiliary images must be in (0, 1]; got {fraction}")
    device = labels.device
    counts = torch.bincount(labels, minlength=num_classes)
    contents, references, aux_labels = [], [], []
    for c in range(num_classes):
        k = round(fraction * int(counts.max() - counts[c]))
        if k == 0 or counts[c] == 0:  # an empty class has no content to stylise
            continue
        own = torch.nonzero(labels == c).flatten()
        content = own[torch.randperm(len(own), generator=generator, device=device)].repeat(math.ceil(k / len(own)))[:k]
        if policy == "same":  # a draw among the class's other images (shift past the content's own position)
            position = torch.searchsorted(own, content)
            offset = torch.randint(max(len(own) - 1, 1), (k,), generator=generator, device=device)
            reference = own[(position + 1 + offset) % len(own)] if len(own) > 1 else content
        else:
            pool = reference_pool(labels, num_classes, c, policy)
            reference = pool[torch.randint(len(pool), (k,), generator=generator, device=device)]
        contents.append(content)
        references.append(reference)
        aux_labels.append(torch.full((k,), c, device=device, dtype=labels.dtype))
    if not contents:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return AuxiliaryPairs(empty, empty, empty.to(labels.dtype))
    return AuxiliaryPairs(torch.cat(contents), torch.cat(references), torch.cat(aux_labels))

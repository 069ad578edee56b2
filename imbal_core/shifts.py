"""Acquisition shifts: controlled, graded changes in how a test image was taken.

A model that learnt from one clinic's camera meets another clinic's: other light, other
contrast, other focus, other compression. Each shift here maps uint8 (N, H, W, C) images to
images of the same shape and type at an integer strength 0..MAX_STRENGTH, where 0 leaves the
images unchanged and every step is the same physical amount more (each shift's description says
what one step is). Shifts apply at the model's input size: at 28 px one JPEG block of 8 x 8
pixels covers 2/7 of the image side, far coarser than compressing a full-size photograph.

Shifts are pure functions of (images, strength, seed): the same call gives the same images, and
a random choice (the colour of a cast) depends on the seed and the image's position only, never
on the strength, so strength k is the same change as strength 1, k times as large.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .errors import ConfigError, DataError
from .registry import Registry

MAX_STRENGTH = 5
CAST_LOG_GAIN_PER_STEP = 0.1  # length of the vector of log channel gains, per step
CONTRAST_LOSS_PER_STEP = 0.15  # share of the original contrast removed per step
BLUR_SIGMA_PER_STEP = 0.0125  # Gaussian sd per step, as a share of the image side
JPEG_QUALITY = {1: 75, 2: 50, 3: 30, 4: 20, 5: 10}  # PIL quality by strength (75 is PIL's default)


@dataclass(frozen=True)
class Shift:
    name: str
    description: str  # what one step of strength means physically
    transform: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]  # float [0, 1] images -> same


SHIFTS: Registry[Shift] = Registry("acquisition shift")


def apply_shift(images: np.ndarray, name: str, strength: int, seed: int = 0) -> np.ndarray:
    """`images` (uint8, N x H x W x C) under shift `name` at `strength` (0 = a copy of the images)."""
    shift = SHIFTS.get(name)
    check_strength(strength)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f"shifts take uint8 images (N, H, W, C); got {images.dtype} {images.shape}")
    if strength == 0:
        return images.copy()
    shifted = shift.transform(images.astype(np.float32) / 255, strength, np.random.default_rng(seed))
    return np.rint(np.clip(shifted, 0, 1) * 255).astype(np.uint8)


def check_strength(strength: int) -> None:
    if not isinstance(strength, (int, np.integer)) or isinstance(strength, bool) or not 0 <= strength <= MAX_STRENGTH:
        raise ConfigError(f"shift strength must be an integer in [0, {MAX_STRENGTH}] (0 = unchanged); got {strength!r}")


def _register(name: str, description: str) -> Callable:
    def decorator(transform: Callable) -> Callable:
        SHIFTS.register(name)(Shift(name, description, transform))
        return transform

    return decorator


@_register(
    "colour_cast",
    "white-balance error: per-channel gains exp(g), g a random direction orthogonal to grey "
    "(one per image), |g| = 0.1 per step; brightness is kept, and at strength 5 one channel's gain is up to about "
    "2x another's",
)
def colour_cast(images: np.ndarray, strength: int, rng: np.random.Generator) -> np.ndarray:
    """A light source (or camera white balance) of another colour: the von Kries model, one gain per channel."""
    if images.shape[-1] != 3:
        raise DataError(f"a colour cast needs RGB images; got {images.shape[-1]} channel(s)")
    directions = rng.normal(size=(len(images), 3))
    directions -= directions.mean(axis=1, keepdims=True)  # orthogonal to grey: the mean log gain is 0
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    gains = np.exp(CAST_LOG_GAIN_PER_STEP * strength * directions).astype(np.float32)
    return images * gains[:, None, None, :]


@_register(
    "contrast",
    "flat exposure or haze: each channel pulled toward the image's mean, 15 % of the contrast "
    "lost per step (25 % of it left at strength 5)",
)
def contrast(images: np.ndarray, strength: int, rng: np.random.Generator) -> np.ndarray:
    mean = images.mean(axis=(1, 2), keepdims=True)  # per image and channel, so the mean colour is kept
    return mean + (images - mean) * (1 - CONTRAST_LOSS_PER_STEP * strength)


@_register(
    "blur",
    "defocus: a Gaussian point-spread function with sd 1.25 % of the image side per step (0.35 px per step at 28 px)",
)
def blur(images: np.ndarray, strength: int, rng: np.random.Generator) -> np.ndarray:
    sigma = BLUR_SIGMA_PER_STEP * strength * min(images.shape[1:3])
    return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="reflect")


@_register(
    "jpeg",
    "lossy compression (PACS, tele-dermatology, web upload): baseline JPEG with 4:2:0 chroma "
    "subsampling at quality 75, 50, 30, 20, 10 for strengths 1-5",
)
def jpeg(images: np.ndarray, strength: int, rng: np.random.Generator) -> np.ndarray:
    as_bytes = np.rint(images * 255).astype(np.uint8)
    out = np.empty_like(images)
    for i, image in enumerate(as_bytes):
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            buffer, format="JPEG", quality=JPEG_QUALITY[strength], subsampling="4:2:0"
        )
        decoded = np.asarray(Image.open(buffer))
        out[i] = decoded.reshape(image.shape) / 255
    return out

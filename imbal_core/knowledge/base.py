"""What a knowledge recipe is: named, graded image operations that move a normal image toward abnormal.

An operation takes one float image (H, W, C) in [0, 1], the region it works on (a lesion, the
fundus disc, the lung fields), a strength in [0, 1] and a random generator, and returns the new
image and region. Strength 0 returns the image unchanged; strength 1 is a clearly abnormal finding.
Middle class k of K applies every operation of the recipe at strength k / (K + 1).

This module holds the recipe types and the drawing helpers the recipes share (radial warps,
Gaussian spots, smooth noise, a lesion finder); each recipe module holds only its knowledge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class Region:
    """Where a recipe acts: a soft mask (H, W) in [0, 1], its centre (row, col) and radius in pixels."""

    mask: np.ndarray
    centre: tuple[float, float]
    radius: float

    @classmethod
    def from_pixels(cls, pixels: np.ndarray, mask: np.ndarray) -> Region:
        """A region around the True pixels of `pixels`: their centroid and the radius of a disc of their area."""
        rows, cols = np.nonzero(pixels)
        return cls(mask, (float(rows.mean()), float(cols.mean())), float(np.sqrt(pixels.sum() / np.pi)))


OperationFn = Callable[[np.ndarray, Region, float, np.random.Generator], tuple[np.ndarray, Region]]


@dataclass(frozen=True)
class Operation:
    name: str
    description: str  # what it draws, in clinical words
    apply: OperationFn | None = None  # None in recipes that render new images instead of editing (built-in)


class Recipe:
    """Base of all recipes: `middle_class(images, strength, seed)` and the cards shown in the app."""

    name: str
    title: str
    source: str  # where the knowledge comes from
    operations: tuple[Operation, ...] = ()
    needs_task_classes: bool = False  # True when the recipe renders from the task's class names (built-in data)

    def check_weights(self, weights: Mapping[str, float] | None) -> dict[str, float]:
        """Per-operation strength multipliers in [0, 1]; missing operations get 1."""
        names = [op.name for op in self.operations]
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"recipe {self.name!r} has no operation(s) {unknown}; its operations are {names}")
        for name, value in weights.items():
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"weight of operation {name!r} must be in [0, 1]; got {value!r}")
        return {name: float(weights.get(name, 1.0)) for name in names}

    def check_task(self, task_classes: Sequence[Sequence[str]]) -> None:
        """Raise ConfigError when the recipe cannot serve a task's (positive, negative) classes."""

    def middle_class(
        self,
        images: np.ndarray,
        strength: float,
        seed: int,
        weights: Mapping[str, float] | None = None,
        task_classes: Sequence[Sequence[str]] = (),
    ) -> np.ndarray:
        """Images (N, H, W, C) uint8 of the normal class -> the same images at `strength` toward abnormal."""
        if not 0.0 <= strength <= 1.0:
            raise ConfigError(f"strength must be in [0, 1]; got {strength!r}")
        return self.render(images, strength, seed, self.check_weights(weights), task_classes)

    def render(
        self,
        images: np.ndarray,
        strength: float,
        seed: int,
        weights: Mapping[str, float],
        task_classes: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """`middle_class` after its arguments are checked; each recipe family implements it."""
        raise NotImplementedError


class ImageRecipe(Recipe):
    """A recipe of pixel operations applied, in order, to each normal image inside a region it finds."""

    def find_region(self, image: np.ndarray) -> Region:
        """The whole image by default; recipes override it (lesion, fundus disc, lungs)."""
        h, w = image.shape[:2]
        return Region(np.ones((h, w), dtype=np.float32), ((h - 1) / 2, (w - 1) / 2), min(h, w) / 2)

    def render(
        self,
        images: np.ndarray,
        strength: float,
        seed: int,
        weights: Mapping[str, float],
        task_classes: Sequence[Sequence[str]],
    ) -> np.ndarray:
        out = np.empty_like(images)
        for i, rng in enumerate(np.random.default_rng(seed).spawn(len(images))):
            out[i] = self.apply_one(images[i], strength, rng, weights)
        return out

    def apply_one(
        self, image: np.ndarray, strength: float, rng: np.random.Generator, weights: Mapping[str, float]
    ) -> np.ndarray:
        pixels = image.astype(np.float32) / 255.0
        region = self.find_region(pixels)
        for op in self.operations:
            s = strength * weights.get(op.name, 1.0)
            if s > 0 and op.apply is not None:  # strength 0 leaves the image exactly as it was
                pixels, region = op.apply(pixels, region, s, rng)
        return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


RECIPES: Registry[Recipe] = Registry("knowledge recipe")


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: registers one instance under `cls.name`."""
    RECIPES.register(cls.name)(cls())
    return cls


# ---- drawing helpers shared by the recipes -------------------------------------------------


def polar(shape: tuple[int, int], centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distance (pixels) and angle of every pixel from `centre`."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    return np.sqrt(dx**2 + dy**2), np.arctan2(dy, dx)


def radial_warp(image: np.ndarray, region: Region, displacement: np.ndarray) -> tuple[np.ndarray, Region]:
    """Move content radially: a pixel at distance r samples the input at r / (1 + d) (d > 0 pushes outward).

    `displacement` is d per pixel (H, W); the region's mask moves with the image.
    """
    r, theta = polar(image.shape[:2], region.centre)
    source_r = r / np.maximum(1.0 + displacement, 0.2)
    rows = region.centre[0] + source_r * np.sin(theta)
    cols = region.centre[1] + source_r * np.cos(theta)

    def sample(channel: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(channel, [rows, cols], order=1, mode="nearest")

    warped = np.stack([sample(image[..., c]) for c in range(image.shape[2])], axis=-1)
    mask = sample(region.mask)
    return warped, replace(region, mask=mask, radius=region.radius * float(1 + displacement.mean()))


def near_border(region: Region, width: float = 0.6) -> np.ndarray:
    """Weight (H, W) peaking on the region's border and fading `width` radii inside and outside."""
    r, _ = polar(region.mask.shape, region.centre)
    return np.exp(-(((r / max(region.radius, 1.0) - 1) / width) ** 2)).astype(np.float32)


def blend(image: np.ndarray, colour: Sequence[float] | np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Mix `colour` into the image with a per-pixel alpha (H, W); grey images take the colour's mean."""
    colour = np.asarray(colour, dtype=np.float32)
    if image.shape[2] == 1:
        colour = colour.mean(keepdims=True)
    alpha = np.clip(alpha, 0, 1)[..., None]
    return image * (1 - alpha) + colour * alpha


def gaussian_spots(
    shape: tuple[int, int],
    centres: np.ndarray,
    sigmas: np.ndarray,
    elongation: np.ndarray | None = None,
    angles: np.ndarray | None = None,
) -> np.ndarray:
    """Max over spots of an (elliptical) Gaussian bump of height 1: (H, W) in [0, 1]."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    for k, (cy, cx) in enumerate(centres):
        dy, dx = rows - cy, cols - cx
        if elongation is not None:
            a = 0.0 if angles is None else angles[k]  # elongated along x unless angles are given
            along, across = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
            d2 = (along / elongation[k]) ** 2 + across**2
        else:
            d2 = dx**2 + dy**2
        out = np.maximum(out, np.exp(-d2 / (2 * sigmas[k] ** 2)))
    return out


def points_in(mask: np.ndarray, n: int, rng: np.random.Generator, weight: np.ndarray | None = None) -> np.ndarray:
    """n (row, col) positions drawn inside a soft mask (optionally weighted), with sub-pixel jitter."""
    p = np.clip(mask, 0, None) * (1.0 if weight is None else weight)
    p = p.ravel() / p.sum() if p.sum() > 0 else np.full(p.size, 1.0 / p.size)
    flat = rng.choice(p.size, size=n, p=p)
    rows, cols = np.divmod(flat, mask.shape[1])
    return np.stack([rows, cols], axis=1) + rng.uniform(-0.5, 0.5, size=(n, 2))


def smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise with blobs about `scale` pixels wide, normalised to mean 0, sd 1."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=max(scale, 0.5))
    return (field - field.mean()) / (field.std() + 1e-6)


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold between two modes that maximises the between-class variance (Otsu, 1979)."""
    hist, edges = np.histogram(values, bins=64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centres) / np.maximum(weight_low, 1)
    mean_high = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(weight_high, 1)
    return float(centres[np.argmax(weight_low * weight_high * (mean_low - mean_high) ** 2)])


def dark_region(image: np.ndarray, min_share: float = 0.02, max_share: float = 0.85) -> Region:
    """The dark blob nearest the image centre (a pigmented lesion, a hypoechoic mass).

    Otsu threshold on the smoothed darkness; the connected component nearest the centre wins. When
    nothing plausible is found (too small or too large) a centred disc of 0.3 x the size stands in.
    """
    h, w = image.shape[:2]
    darkness = ndimage.gaussian_filter(1.0 - image.mean(axis=2), sigma=max(min(h, w) / 40, 0.5))
    dark = darkness > otsu_threshold(darkness)
    components, count = ndimage.label(dark)
    centre = ((h - 1) / 2, (w - 1) / 2)
    if count:
        rows, cols = np.mgrid[0:h, 0:w]
        distance = np.hypot(rows - centre[0], cols - centre[1])
        nearest = [distance[components == k].min() for k in range(1, count + 1)]
        dark = ndimage.binary_fill_holes(components == 1 + int(np.argmin(nearest)))
    share = dark.mean()
    if not count or not min_share <= share <= max_share:
        r, _ = polar((h, w), centre)
        dark = r <= 0.3 * min(h, w)
    return Region.from_pixels(dark, ndimage.gaussian_filter(dark.astype(np.float32), sigma=0.7))

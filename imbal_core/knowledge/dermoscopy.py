"""Dermoscopy: a benign naevus made more melanoma-like, one ABCD criterion or structure at a time.

Knowledge: the ABCD rule of dermoscopy (Stolz et al., Eur J Dermatol 1994: Asymmetry, Border,
Colours, Differential structures; a lesion scores higher with each) and the 7-point checklist
(Argenziano et al., Arch Dermatol 1998: blue-whitish veil, irregular streaks, irregular dots and
globules, irregular blotches, ...). Diameter > 6 mm is the "D" of the clinical ABCD(E) rule
(Friedman et al., 1985). All operations act on the lesion found in the image (`dark_region`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import (
    ImageRecipe,
    Operation,
    Region,
    blend,
    dark_region,
    gaussian_spots,
    near_border,
    points_in,
    polar,
    radial_warp,
    register_recipe,
    smooth_noise,
)

BLUE_WHITE = (0.55, 0.62, 0.75)
BLOTCH = (0.13, 0.08, 0.07)
DOT = (0.18, 0.11, 0.08)
STREAK = (0.12, 0.07, 0.05)


def asymmetry(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """One side of the lesion bulges, the opposite side shrinks: asymmetric in shape along an axis."""
    _, theta = polar(image.shape[:2], region.centre)
    axis = rng.uniform(0, 2 * np.pi)
    displacement = 0.45 * s * (np.cos(theta - axis) + 0.5 * np.cos(2 * (theta - axis) + rng.uniform(0, np.pi)))
    return radial_warp(image, region, displacement * near_border(region, width=0.9))


def border_irregularity(
    image: np.ndarray, region: Region, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, Region]:
    """Notched, jagged edge: high angular harmonics (5-9 lobes) pushing the border in and out."""
    _, theta = polar(image.shape[:2], region.centre)
    displacement = sum(rng.uniform(0.05, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(5, 10))
    return radial_warp(image, region, s * displacement * near_border(region, width=0.5))


def diameter(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """A larger lesion: the lesion grows up to 1.5x its radius (skin beyond it is pushed outward)."""
    r, _ = polar(image.shape[:2], region.centre)
    fade = np.exp(-(((r / max(region.radius, 1.0)) / 2.0) ** 2))  # grow the lesion, not the whole frame
    return radial_warp(image, region, 0.5 * s * fade)


def colour_variegation(
    image: np.ndarray, region: Region, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, Region]:
    """More colours: a blue-white veil and dark (black-brown) blotches over growing parts of the lesion."""
    shape = image.shape[:2]
    scale = max(region.radius / 2.5, 1.0)

    def patch(threshold: float) -> np.ndarray:  # soft-edged patches covering more of the lesion as s grows
        return region.mask / (1 + np.exp(-(smooth_noise(shape, scale, rng) - threshold) / 0.3))

    image = blend(image, BLUE_WHITE, 0.6 * s * patch(1.4 - 1.0 * s))
    return blend(image, BLOTCH, 0.75 * s * patch(1.7 - 1.0 * s)), region


def dots_globules(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Irregular dots and globules: dark, unevenly sized, crowded toward the periphery."""
    n = int(round(3 + 12 * s))
    size = min(image.shape[:2])
    centres = points_in(region.mask, n, rng, weight=0.2 + near_border(region, width=0.4))
    sigmas = rng.uniform(0.012, 0.035, size=n) * size
    return blend(image, DOT, (0.45 + 0.45 * s) * gaussian_spots(image.shape[:2], centres, sigmas)), region


def streaks(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Radial streaks (pseudopods) at the edge, reaching up to 40 % of the radius past the border."""
    r, theta = polar(image.shape[:2], region.centre)
    n = int(round(3 + 9 * s))
    width = 0.5 + 0.012 * min(image.shape[:2])  # half-width of a streak, in pixels
    lines = np.zeros(r.shape, dtype=np.float32)
    radius = max(region.radius, 1.0)
    for angle in rng.uniform(0, 2 * np.pi, size=n):
        off_axis = np.abs(np.angle(np.exp(1j * (theta - angle)))) * r  # distance from the ray, in pixels
        reach = radius * (1 + 0.4 * s * rng.uniform(0.5, 1.0))
        along = (r > 0.7 * radius) & (r < reach)
        lines = np.maximum(lines, along * np.exp(-((off_axis / width) ** 2)))
    image = blend(image, STREAK, (0.5 + 0.4 * s) * lines)
    return image, replace(region, mask=np.maximum(region.mask, lines * s))


@register_recipe
class Dermoscopy(ImageRecipe):
    name = "dermoscopy"
    title = "Dermoscopy (ABCD rule, 7-point checklist)"
    source = (
        "ABCD rule of dermoscopy (Stolz et al., Eur J Dermatol 1994); 7-point checklist (Argenziano et al., "
        "Arch Dermatol 1998); clinical ABCD(E) diameter criterion (Friedman et al., CA Cancer J Clin 1985)"
    )
    operations = (
        Operation("diameter", "D: the lesion grows (up to 1.5x its radius)", diameter),
        Operation("asymmetry", "A: the shape loses its mirror symmetry (one side bulges)", asymmetry),
        Operation("border", "B: irregular, notched border (5-9 lobes)", border_irregularity),
        Operation("colours", "C: colour variegation — blue-white veil and black-brown blotches", colour_variegation),
        Operation("dots_globules", "irregular dots and globules, crowded at the periphery", dots_globules),
        Operation("streaks", "irregular streaks (pseudopods) at the edge", streaks),
    )

    def find_region(self, image: np.ndarray) -> Region:
        return dark_region(image)

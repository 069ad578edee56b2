"""Breast ultrasound: a benign-looking (oval, circumscribed, uniform) mass given malignant features.

Knowledge: the ACR BI-RADS ultrasound lexicon (5th edition, 2013) and Stavros et al. (Radiology
1995): suspicious findings include a non-circumscribed margin (angular, spiculated, microlobulated),
posterior acoustic shadowing, and a heterogeneous internal echo pattern. The mass is the dark
(hypoechoic) region nearest the image centre (`dark_region`).
"""

from __future__ import annotations

import numpy as np

from .base import (
    ImageRecipe,
    Operation,
    Region,
    dark_region,
    near_border,
    polar,
    radial_warp,
    register_recipe,
    smooth_noise,
)


def irregular_margin(
    image: np.ndarray, region: Region, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, Region]:
    """Angular / spiculated margin: sharp outward spikes (|cos|^6 lobes) around the border."""
    _, theta = polar(image.shape[:2], region.centre)
    lobes = rng.integers(6, 12)
    spikes = np.abs(np.cos(lobes / 2 * theta + rng.uniform(0, np.pi))) ** 6
    return radial_warp(image, region, 0.35 * s * spikes * near_border(region, width=0.5))


def posterior_shadowing(
    image: np.ndarray, region: Region, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, Region]:
    """A dark band below the mass (sound does not pass it), up to 70 % darker."""
    h, w = image.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = region.centre
    radius = max(region.radius, 1.0)
    beneath = 1 / (1 + np.exp(-(rows - cy - 0.6 * radius) / 1.0))  # starts at the mass's lower half
    column = np.exp(-(((cols - cx) / (0.9 * radius)) ** 4))  # as wide as the mass
    return image * (1 - 0.7 * s * beneath * column)[..., None], region


def heterogeneous_echo(
    image: np.ndarray, region: Region, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, Region]:
    """Mixed internal echoes: bright and dark patches inside the mass."""
    texture = smooth_noise(image.shape[:2], max(region.radius / 4, 0.7), rng)
    return image * (1 + 0.6 * s * texture * region.mask)[..., None], region


@register_recipe
class BreastUltrasound(ImageRecipe):
    name = "breast_ultrasound"
    title = "Breast ultrasound (BI-RADS lexicon)"
    source = "ACR BI-RADS Atlas, ultrasound lexicon, 5th ed. (2013); Stavros et al., Radiology 196 (1995) 123-134"
    operations = (
        Operation("margin", "non-circumscribed margin: angular spikes around the mass", irregular_margin),
        Operation("shadowing", "posterior acoustic shadowing below the mass", posterior_shadowing),
        Operation("heterogeneous_echo", "heterogeneous internal echo pattern", heterogeneous_echo),
    )

    def find_region(self, image: np.ndarray) -> Region:
        return dark_region(image)

"""Generic "imaging complexity": knowledge-free perturbations, the ablation of the knowledge recipes.

Gao et al. (Artif. Intell. Med. 108, 2020, 101935) trained one-class models with simple image
perturbations that make the task harder; we use the usual four: blur, noise, contrast loss and
an elastic warp. They say nothing about the disease, so a knowledge recipe should beat them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .base import ImageRecipe, Operation, Region, register_recipe, smooth_noise


def blur(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Gaussian blur, sigma up to 4 % of the image size."""
    sigma = 0.04 * s * min(image.shape[:2])
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0)), region


def noise(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Additive Gaussian noise, sd up to 0.12."""
    return image + rng.normal(0, 0.12 * s, size=image.shape).astype(np.float32), region


def contrast(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Contrast pulled toward the mean, down to 40 % of the original."""
    mean = image.mean(axis=(0, 1), keepdims=True)
    return mean + (image - mean) * (1 - 0.6 * s), region


def elastic(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Smooth random displacement of up to 6 % of the image size."""
    h, w = image.shape[:2]
    amplitude = 0.06 * s * min(h, w)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = (amplitude * smooth_noise((h, w), 0.12 * min(h, w), rng) for _ in range(2))
    coords = [rows + dy, cols + dx]
    warped = [ndimage.map_coordinates(image[..., c], coords, order=1, mode="reflect") for c in range(image.shape[2])]
    return np.stack(warped, axis=-1), region


@register_recipe
class Generic(ImageRecipe):
    name = "generic"
    title = "Generic imaging complexity (knowledge-free ablation)"
    source = "Gao et al., Artif. Intell. Med. 108 (2020) 101935: one-class learning with image-complexity perturbations"
    operations = (
        Operation("blur", "Gaussian blur", blur),
        Operation("noise", "additive Gaussian noise", noise),
        Operation("contrast", "loss of contrast", contrast),
        Operation("elastic", "smooth elastic deformation", elastic),
    )

"""Fundus photographs: a healthy retina given the lesions of diabetic retinopathy, in increasing number.

Knowledge: the International Clinical Diabetic Retinopathy severity scale (Wilkinson et al.,
Ophthalmology 2003) and the ETDRS grading: mild NPDR = microaneurysms only; moderate = also
dot-blot haemorrhages, hard exudates, cotton-wool spots; severe = many haemorrhages in all four
quadrants. So microaneurysms come first and most numerous, the other lesions grow with strength.
Lesions are drawn inside the fundus disc (the bright area, `fundus_disc`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .base import ImageRecipe, Operation, Region, blend, gaussian_spots, points_in, register_recipe

MICROANEURYSM = (0.42, 0.06, 0.05)
HAEMORRHAGE = (0.33, 0.04, 0.03)
EXUDATE = (0.96, 0.86, 0.38)
COTTON_WOOL = (0.93, 0.91, 0.84)


def _spots(
    image: np.ndarray,
    region: Region,
    rng: np.random.Generator,
    n: int,
    sigma: tuple[float, float],
    colour: tuple[float, float, float],
    alpha: float,
    elongation: tuple[float, float] = (1.0, 1.0),
    centres: np.ndarray | None = None,
) -> np.ndarray:
    size = min(image.shape[:2])
    centres = points_in(region.mask, n, rng) if centres is None else centres
    sigmas = rng.uniform(*sigma, size=len(centres)) * size
    stretch = rng.uniform(*elongation, size=len(centres))
    spots = gaussian_spots(image.shape[:2], centres, sigmas, stretch, rng.uniform(0, np.pi, size=len(centres)))
    return blend(image, colour, alpha * spots)


def microaneurysms(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Tiny round dark-red dots, the first sign of retinopathy (up to 20)."""
    return _spots(image, region, rng, int(round(2 + 18 * s)), (0.008, 0.015), MICROANEURYSM, 0.85), region


def haemorrhages(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Dot-blot and flame-shaped haemorrhages: larger dark-red blots, some elongated (up to 10)."""
    n = int(round(10 * s))
    if n == 0:
        return image, region
    return _spots(image, region, rng, n, (0.02, 0.045), HAEMORRHAGE, 0.8, elongation=(1.0, 2.5)), region


def hard_exudates(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Bright yellow waxy deposits in clusters (up to 4 clusters of 3-7)."""
    clusters = int(round(4 * s))
    if clusters == 0:
        return image, region
    size = min(image.shape[:2])
    seeds = points_in(region.mask, clusters, rng)
    centres = np.concatenate([seed + rng.normal(0, 0.05 * size, size=(rng.integers(3, 8), 2)) for seed in seeds])
    return _spots(image, region, rng, len(centres), (0.008, 0.016), EXUDATE, 0.85, centres=centres), region


def cotton_wool_spots(
    image: np.ndarray, region: Region, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, Region]:
    """Pale fluffy patches with soft edges (nerve-fibre infarcts; up to 4)."""
    n = int(round(4 * s))
    if n == 0:
        return image, region
    return _spots(image, region, rng, n, (0.04, 0.07), COTTON_WOOL, 0.55, elongation=(1.0, 1.8)), region


@register_recipe
class Fundus(ImageRecipe):
    name = "fundus"
    title = "Fundus (diabetic retinopathy grading)"
    source = (
        "International Clinical Diabetic Retinopathy Disease Severity Scale (Wilkinson et al., Ophthalmology "
        "2003); ETDRS lesion definitions (ETDRS Report 10, Ophthalmology 1991)"
    )
    operations = (
        Operation("microaneurysms", "tiny dark-red dots (mild NPDR), 2 to 20", microaneurysms),
        Operation("haemorrhages", "dot-blot and flame haemorrhages, up to 10", haemorrhages),
        Operation("hard_exudates", "yellow waxy deposits in clusters, up to 4 clusters", hard_exudates),
        Operation("cotton_wool_spots", "pale fluffy patches, up to 4", cotton_wool_spots),
    )

    def find_region(self, image: np.ndarray) -> Region:
        """The fundus disc: pixels brighter than the black surround, shrunk a little from its edge."""
        h, w = image.shape[:2]
        disc = ndimage.binary_erosion(image.mean(axis=2) > 0.08, iterations=max(1, min(h, w) // 20))
        if disc.mean() < 0.1:  # no black surround found (cropped fundus): the whole image
            disc = np.ones((h, w), dtype=bool)
        return Region.from_pixels(disc, disc.astype(np.float32))

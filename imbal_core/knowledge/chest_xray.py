"""Chest X-ray: clear lung fields given the patchy consolidation of pneumonia.

Knowledge: Fleischner Society glossary of terms for thoracic imaging (Hansell et al., Radiology
2008): consolidation is a homogeneous increase in lung density that obscures the vessels, often
patchy and lobar or segmental in bacterial pneumonia (lower zones more often); ground-glass
opacity is a hazy increase in density that leaves the vessels visible. The lung fields are the
two dark regions of a frontal film; we take two ellipses at their usual place, kept where the
film is darker than its median.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .base import ImageRecipe, Operation, Region, blend, register_recipe, smooth_noise

OPACITY = (0.88, 0.88, 0.88)


def consolidation(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Patchy white consolidation covering up to about half of the lung fields, lower zones first."""
    h, w = image.shape[:2]
    lower = np.linspace(0.6, 1.4, h, dtype=np.float32)[:, None]  # lower zones are involved more often
    patches = smooth_noise((h, w), 0.08 * min(h, w), rng) * lower
    covered = 1 / (1 + np.exp(-(patches - (1.6 - 1.6 * s)) / 0.25))
    return blend(image, OPACITY, 0.85 * covered * region.mask), region


def ground_glass(image: np.ndarray, region: Region, s: float, rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """Hazy increase in density over the lung fields (vessels stay visible), up to 35 %."""
    haze = 0.5 + 0.5 * np.tanh(smooth_noise(image.shape[:2], 0.15 * min(image.shape[:2]), rng))
    return blend(image, OPACITY, 0.35 * s * haze * region.mask), region


@register_recipe
class ChestXray(ImageRecipe):
    name = "chest_xray"
    title = "Chest X-ray (pneumonia: consolidation)"
    source = "Fleischner Society glossary of terms for thoracic imaging (Hansell et al., Radiology 246 (2008) 697-722)"
    operations = (
        Operation("consolidation", "patchy consolidation in the lung fields, lower zones first", consolidation),
        Operation("ground_glass", "hazy ground-glass opacity over the lungs", ground_glass),
    )

    def find_region(self, image: np.ndarray) -> Region:
        h, w = image.shape[:2]
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
        lungs = np.zeros((h, w), dtype=bool)
        for centre_col in (0.3 * w, 0.7 * w):
            lungs |= ((rows - 0.48 * h) / (0.32 * h)) ** 2 + ((cols - centre_col) / (0.16 * w)) ** 2 <= 1
        grey = image.mean(axis=2)
        darker = grey <= np.median(grey)
        field = lungs & darker if (lungs & darker).sum() > 0.05 * h * w else lungs
        mask = ndimage.gaussian_filter(field.astype(np.float32), sigma=max(min(h, w) / 40, 0.6))
        return Region(mask, (0.48 * h, 0.5 * w), 0.3 * min(h, w))

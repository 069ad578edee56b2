"""Knowledge recipes: graded, named image operations that turn normal images into "middle classes".

`RECIPES` holds one recipe per modality (dermoscopy, fundus, breast ultrasound, chest X-ray),
the knowledge-free `generic` ablation and `builtin` for the built-in data set. `middle_classes`
makes K middle classes from normal images: class k of K at strength k / (K + 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from .base import RECIPES, ImageRecipe, Operation, Recipe, Region
from . import builtin, chest_xray, dermoscopy, fundus, generic, ultrasound  # noqa: F401  (registers the recipes)

__all__ = [
    "RECIPES",
    "ImageRecipe",
    "Operation",
    "Recipe",
    "Region",
    "level_strengths",
    "middle_classes",
    "recipe_for_data",
]

# Which recipe "auto" picks for a data source (MedMNIST by its flag or file name).
SOURCE_RECIPES = {"synthetic": "builtin", "ham10000": "dermoscopy", "isic2018": "dermoscopy", "aptos2019": "fundus"}
MEDMNIST_RECIPES = {
    "retinamnist": "fundus",
    "pneumoniamnist": "chest_xray",
    "breastmnist": "breast_ultrasound",
    "dermamnist": "dermoscopy",
    "chestmnist": "chest_xray",
}


def recipe_for_data(data: str, data_path: str | None = None, data_options: Mapping[str, Any] | None = None) -> str:
    """The recipe that fits a data source, or "generic" when no knowledge of its modality is written down."""
    if data == "medmnist":
        flag = (data_options or {}).get("flag") or (Path(data_path).stem.split("_")[0] if data_path else "")
        return MEDMNIST_RECIPES.get(str(flag).lower(), "generic")
    return SOURCE_RECIPES.get(data, "generic")


def level_strengths(levels: int) -> list[float]:
    """Strength of middle class k = 1..K: k / (K + 1), so the classes sit evenly between normal (0) and abnormal (1)."""
    return [k / (levels + 1) for k in range(1, levels + 1)]


def middle_classes(
    recipe: str | Recipe,
    normal_images: np.ndarray,
    levels: int,
    seed: int,
    weights: Mapping[str, float] | None = None,
    task_classes: Sequence[Sequence[str]] = (),
) -> list[np.ndarray]:
    """K arrays like `normal_images`: middle class 1..K (class k made at strength k / (K + 1))."""
    recipe = RECIPES.get(recipe) if isinstance(recipe, str) else recipe
    return [
        recipe.middle_class(normal_images, strength, seed + k, weights, task_classes)
        for k, strength in enumerate(level_strengths(levels), start=1)
    ]

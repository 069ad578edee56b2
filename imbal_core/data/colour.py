"""Colour constancy: take the colour of the light source out of every image (a data option).

Dermoscopes differ in their light and white balance, so the same lesion looks warmer or cooler
from clinic to clinic. Shades of Gray (Finlayson & Trezzi, Color Imaging Conference 2004)
estimates the light's colour as the Minkowski p-mean of each channel, e_c = (mean_pixels I_c^p)^(1/p),
and divides it out (a von Kries correction). p = 1 is Gray World, p -> infinity is max-RGB;
p = 6 is the usual choice for dermoscopy (Barata et al., IEEE JBHI 19(3), 2015), used by many
ISIC challenge entries. The correction is normalised so that a grey light changes nothing: a
grey image stays as it is, and a cast made by channel gains is removed up to clipping.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError
from .base import ImageDataset, Split

SHADES_OF_GRAY_P = 6


def shades_of_gray(images: np.ndarray, p: float = SHADES_OF_GRAY_P) -> np.ndarray:
    """uint8 (N, H, W, C) images with each image's light colour, estimated by the p-norm of its channels, removed."""
    x = images.astype(np.float32) / 255
    light = np.mean(x**p, axis=(1, 2)) ** (1 / p)  # (N, C)
    light = np.maximum(light, 1e-6)  # an all-black image has no light to remove
    # Scale so a grey light (equal channels) is the identity: gains sqrt(C) * e_c / |e|.
    gains = light / np.linalg.norm(light, axis=1, keepdims=True) * np.sqrt(images.shape[-1])
    corrected = x / gains[:, None, None, :].astype(np.float32)
    return np.rint(np.clip(corrected, 0, 1) * 255).astype(np.uint8)


COLOUR_CONSTANCY: dict[str, Callable[[np.ndarray], np.ndarray]] = {"shades_of_gray": shades_of_gray}


def check_colour_constancy(name: str | None) -> None:
    if name is not None and name not in COLOUR_CONSTANCY:
        raise ConfigError(f"colour_constancy must be None (off) or one of {sorted(COLOUR_CONSTANCY)}; got {name!r}")


def correct_images(images: np.ndarray, name: str | None) -> np.ndarray:
    """`images` with colour constancy `name` applied; None returns them as they are."""
    check_colour_constancy(name)
    return images if name is None else COLOUR_CONSTANCY[name](images)


def correct_dataset(dataset: ImageDataset, name: str) -> ImageDataset:
    """The data set with colour constancy applied to every split alike (labels, ids and metadata unchanged)."""
    check_colour_constancy(name)
    splits = {
        key: Split(correct_images(split.images, name), split.labels, split.ids, split.metadata)
        for key, split in dataset.splits.items()
    }
    return ImageDataset(
        dataset.name, dataset.class_names, splits, f"{dataset.description} Colour constancy: {name}.".strip()
    )

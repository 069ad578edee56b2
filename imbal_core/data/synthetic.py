"""The built-in data set: dermoscopy-like lesions drawn by code, no files needed.

Each image is a lesion on a skin-toned background. Seven classes differ in visual factors in
the spirit of the dermoscopic ABCD rule — Asymmetry, Border irregularity, Colour count,
Diameter — plus Dermoscopic structures (network, dots, globules, streaks, vessels, ...).
Every factor is drawn from a class-dependent *distribution* and the distributions overlap,
so no single factor identifies a class and a balanced classifier stays below 100 %.
Natural class counts follow HAM10000's long tail (ratio 58). Class names describe the visual
factor, not a disease. Everything is a pure function of (n_images, image_size, seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import DataError
from .base import ImageDataset, Split, register_source
from .images import check_memory
from .splitting import stratified_split

# RGB in [0, 1].
PALETTE = {
    "tan": (0.72, 0.55, 0.40),
    "light_brown": (0.60, 0.40, 0.26),
    "dark_brown": (0.36, 0.21, 0.13),
    "black": (0.14, 0.10, 0.09),
    "blue_grey": (0.42, 0.47, 0.56),
    "pink": (0.86, 0.54, 0.54),
    "red": (0.72, 0.22, 0.22),
    "purple": (0.46, 0.18, 0.34),
}
PATTERNS = ("network", "dots", "globules", "milia", "streaks", "vessels", "white_patch", "lacunae", "scale")


@dataclass(frozen=True)
class ClassSpec:
    name: str
    share: float  # fraction of images, shaped like HAM10000 (nv, mel, bkl, bcc, akiec, vasc, df)
    diameter: tuple[float, float]  # lesion radius as a fraction of the half-width
    asymmetry: tuple[float, float]
    border: tuple[float, float]  # amplitude of high-frequency border harmonics
    edge_blur: tuple[float, float]  # ill-defined edges, in units of the half-width
    colours: tuple[str, ...]
    colour_count_probs: tuple[float, float, float]  # P(1, 2, 3 colours)
    pattern_probs: tuple[float, ...]  # independent P(pattern present), in PATTERNS order
    colour_weights: tuple[float, ...] | None = None  # P(each of `colours`); None = uniform


CLASSES = (
    ClassSpec(
        "symmetric_uniform",
        6705,
        (0.28, 0.50),
        (0.00, 0.14),
        (0.00, 0.10),
        (0.02, 0.06),
        ("light_brown", "dark_brown", "tan"),
        (0.65, 0.30, 0.05),
        (0.55, 0.20, 0.25, 0.05, 0.05, 0.03, 0.03, 0.00, 0.05),
    ),
    ClassSpec(
        "asymmetric_multicolour",
        1113,
        (0.40, 0.72),
        (0.08, 0.35),
        (0.05, 0.25),
        (0.02, 0.08),
        ("dark_brown", "black", "blue_grey", "light_brown"),
        (0.15, 0.40, 0.45),
        (0.35, 0.50, 0.30, 0.02, 0.45, 0.08, 0.10, 0.02, 0.10),
    ),
    ClassSpec(
        "waxy_milia",
        1099,
        (0.32, 0.65),
        (0.04, 0.25),
        (0.04, 0.18),
        (0.02, 0.07),
        ("tan", "light_brown", "dark_brown"),
        (0.40, 0.50, 0.10),
        (0.15, 0.15, 0.10, 0.60, 0.03, 0.10, 0.05, 0.00, 0.45),
    ),
    ClassSpec(
        "branching_vessels",
        514,
        (0.28, 0.60),
        (0.04, 0.25),
        (0.03, 0.15),
        (0.03, 0.09),
        ("pink", "blue_grey", "tan"),
        (0.40, 0.45, 0.15),
        (0.03, 0.05, 0.35, 0.05, 0.05, 0.75, 0.10, 0.05, 0.15),
    ),
    ClassSpec(
        "scaly_red_rough",
        327,
        (0.30, 0.60),
        (0.04, 0.25),
        (0.05, 0.20),
        (0.06, 0.14),
        ("red", "pink", "tan"),
        (0.40, 0.45, 0.15),
        (0.03, 0.35, 0.05, 0.05, 0.02, 0.35, 0.10, 0.03, 0.75),
    ),
    ClassSpec(
        "red_lacunae",
        142,
        (0.22, 0.45),
        (0.00, 0.15),
        (0.00, 0.10),
        (0.02, 0.05),
        ("red", "purple", "dark_brown"),
        (0.30, 0.50, 0.20),
        (0.00, 0.05, 0.10, 0.00, 0.00, 0.15, 0.05, 0.85, 0.03),
    ),
    ClassSpec(
        "central_white_patch",
        115,
        (0.22, 0.42),
        (0.00, 0.15),
        (0.00, 0.10),
        (0.03, 0.07),
        ("light_brown", "tan", "dark_brown"),
        (0.50, 0.40, 0.10),
        (0.50, 0.10, 0.05, 0.05, 0.02, 0.05, 0.75, 0.00, 0.10),
    ),
)
CLASS_NAMES = [spec.name for spec in CLASSES]
SKIN_LIGHT = np.array([0.93, 0.76, 0.64], dtype=np.float32)
SKIN_DARK = np.array([0.55, 0.38, 0.28], dtype=np.float32)
MAX_BLOBS = 12


def natural_counts(n_images: int) -> np.ndarray:
    """Split n_images over the classes in HAM10000's proportions (largest remainder)."""
    shares = np.array([spec.share for spec in CLASSES], dtype=float)
    exact = shares / shares.sum() * n_images
    counts = np.floor(exact).astype(int)
    counts[np.argsort(exact - counts)[::-1][: n_images - counts.sum()]] += 1
    return np.maximum(counts, 1)


# The factor groups a middle class interpolates (the built-in data's "knowledge recipe").
FACTOR_GROUPS = {
    "diameter": ("diameter",),
    "asymmetry": ("asymmetry",),
    "border": ("border", "edge_blur"),
    "colours": ("colour_count_probs",),  # and the colour palette itself, mixed by weight
    "structures": ("pattern_probs",),
}


def interpolate_spec(normal: ClassSpec, abnormal: ClassSpec, amounts: Mapping[str, float]) -> ClassSpec:
    """A class between two: each factor group of FACTOR_GROUPS moves `amounts[group]` (0..1) of the way.

    Ranges and probabilities are interpolated linearly; the colour palette becomes a mixture that
    draws the abnormal class's colours with probability amounts["colours"].
    """
    changes: dict[str, Any] = {}  # ClassSpec fields of several types
    for group, names in FACTOR_GROUPS.items():
        t = float(amounts.get(group, 0.0))
        for name in names:
            a, b = np.asarray(getattr(normal, name)), np.asarray(getattr(abnormal, name))
            changes[name] = tuple(float(v) for v in (1 - t) * a + t * b)
    t = float(amounts.get("colours", 0.0))
    normal_weights = normal.colour_weights or (1 / len(normal.colours),) * len(normal.colours)
    abnormal_weights = abnormal.colour_weights or (1 / len(abnormal.colours),) * len(abnormal.colours)
    changes["colours"] = normal.colours + abnormal.colours
    changes["colour_weights"] = tuple((1 - t) * w for w in normal_weights) + tuple(t * w for w in abnormal_weights)
    return replace(normal, name=f"{normal.name}->{abnormal.name}", **changes)


def render_specs(specs: Sequence[ClassSpec], image_size: int, seed: int) -> np.ndarray:
    """One image per spec (uint8 (N, S, S, 3)), e.g. middle-class lesions whose factors lie between two classes."""
    labels = np.arange(len(specs))
    return _render_all(labels, tuple(specs), image_size, np.random.default_rng(seed))


def _sample_factors(
    labels: np.ndarray, rng: np.random.Generator, classes: Sequence[ClassSpec] = CLASSES
) -> dict[str, np.ndarray]:
    """Draw every per-image factor up front, so rendering in chunks stays deterministic."""
    n = len(labels)

    def per_class(field: str) -> np.ndarray:
        low = np.array([getattr(classes[c], field)[0] for c in labels])
        high = np.array([getattr(classes[c], field)[1] for c in labels])
        return rng.uniform(low, high)

    colours = np.zeros((n, 3, 3))
    n_colours = np.zeros(n, dtype=int)
    patterns = np.zeros((n, len(PATTERNS)), dtype=bool)
    for c, spec in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        n_colours[idx] = rng.choice(3, size=len(idx), p=spec.colour_count_probs) + 1
        choices = np.array([PALETTE[name] for name in spec.colours])
        for k in range(3):
            if spec.colour_weights is None:
                drawn = rng.integers(0, len(choices), size=len(idx))
            else:
                p = np.asarray(spec.colour_weights) / np.sum(spec.colour_weights)
                drawn = rng.choice(len(choices), size=len(idx), p=p)
            picked = choices[drawn]
            colours[idx, k] = picked + rng.normal(0, 0.04, size=picked.shape)
        patterns[idx] = rng.random((len(idx), len(PATTERNS))) < np.array(spec.pattern_probs)
    return {
        "radius": per_class("diameter"),
        "asymmetry": per_class("asymmetry"),
        "border": per_class("border"),
        "edge_blur": per_class("edge_blur"),
        "colours": np.clip(colours, 0, 1),
        "n_colours": n_colours,
        "patterns": patterns,
        "centre": rng.normal(0, 0.08, size=(n, 2)),
        "angle": rng.uniform(0, 2 * np.pi, size=n),
        "harmonic_phase": rng.uniform(0, 2 * np.pi, size=(n, 6)),
        "harmonic_amp": rng.uniform(0.3, 1.0, size=(n, 6)),
        "colour_field": rng.normal(0, 1, size=(n, 3, 4)),  # 3 sinusoids: fx, fy, phase, unused
        "skin": rng.beta(2, 2, size=n),
        "light_grad": rng.normal(0, 0.06, size=(n, 2)),
        "blobs": rng.uniform(-1, 1, size=(n, MAX_BLOBS, 2)),
        "n_blobs": rng.integers(4, MAX_BLOBS + 1, size=n),
        "stripe_freq": rng.uniform(10, 18, size=n),
        "vessel": rng.uniform(0, 2 * np.pi, size=(n, 4)),
        "hairs": rng.uniform(-1, 1, size=(n, 3, 3)),
        "n_hairs": rng.choice(4, size=n, p=(0.55, 0.25, 0.15, 0.05)),
        "vignette": rng.random(n) < 0.3,
    }


def _render(f: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render a chunk of images from their factors; returns float (B, S, S, 3) in [0, 1]."""
    b = len(f["radius"])
    axis = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    u = axis[None, None, :].repeat(b, 0)  # (B, 1, S)
    v = axis[None, :, None].repeat(b, 0)  # (B, S, 1)
    pixel = 2.0 / size
    dx = u - f["centre"][:, 0, None, None]
    dy = v - f["centre"][:, 1, None, None]
    r = np.sqrt(dx**2 + dy**2)
    theta = np.arctan2(dy, dx) - f["angle"][:, None, None]

    # Border: asymmetry = low harmonics, irregularity = high harmonics.
    radius = f["radius"][:, None, None]
    shape = 1 + f["asymmetry"][:, None, None] * (0.8 * np.cos(theta) + 0.6 * np.cos(2 * theta))
    for k, order in enumerate(range(3, 9)):
        amp = f["border"] * f["harmonic_amp"][:, k] / (1 + 0.3 * k)
        shape = shape + amp[:, None, None] * np.cos(order * theta + f["harmonic_phase"][:, k, None, None])
    boundary = radius * np.maximum(shape, 0.3)
    softness = f["edge_blur"][:, None, None] + pixel
    rho = r / boundary
    streaks = f["patterns"][:, PATTERNS.index("streaks"), None, None]
    rays = (0.5 + 0.5 * np.cos(f["stripe_freq"][:, None, None] * theta)) ** 8
    reach = boundary * (1 + 0.25 * rays * streaks)  # streaks stick out past the border
    mask = 1 / (1 + np.exp(-(reach - r) / softness))

    # Colours: up to three, blended over a smooth random field.
    cf = f["colour_field"]
    field = sum(
        np.sin(2.0 * cf[:, j, 0, None, None] * u + 2.0 * cf[:, j, 1, None, None] * v + 3 * cf[:, j, 2, None, None])
        for j in range(3)
    ) / 1.8 + 0.6 * (rho - 0.5)
    colours = f["colours"]
    weight2 = (f["n_colours"] >= 2)[:, None, None] / (1 + np.exp(-field / 0.15))
    weight3 = (f["n_colours"] >= 3)[:, None, None] / (1 + np.exp(-(field - 0.7) / 0.15))
    lesion = colours[:, None, None, 0] * (1 - weight2[..., None]) + colours[:, None, None, 1] * weight2[..., None]
    lesion = lesion * (1 - weight3[..., None]) + colours[:, None, None, 2] * weight3[..., None]

    def has(name: str) -> np.ndarray:
        return f["patterns"][:, PATTERNS.index(name), None, None, None]

    ur = dx * np.cos(f["angle"])[:, None, None] + dy * np.sin(f["angle"])[:, None, None]
    vr = dy * np.cos(f["angle"])[:, None, None] - dx * np.sin(f["angle"])[:, None, None]
    network = ((0.5 + 0.5 * np.cos(np.pi * ur / 0.11)) * (0.5 + 0.5 * np.cos(np.pi * vr / 0.11)))[..., None]
    lesion = lesion * (1 - 0.35 * has("network") * (1 - network))
    lesion = lesion * (1 - 0.5 * has("streaks") * rays[..., None] * (rho > 0.7)[..., None])

    # max_k exp(-d_k^2 / s) = exp(-min_k d_k^2 / s): track the nearest blob, exponentiate once.
    nearest = np.full((b, size, size), np.inf, dtype=np.float32)
    for k in range(MAX_BLOBS):
        bx = f["centre"][:, 0, None, None] + 0.75 * radius * f["blobs"][:, k, 0, None, None]
        by = f["centre"][:, 1, None, None] + 0.75 * radius * f["blobs"][:, k, 1, None, None]
        d2 = np.where((k < f["n_blobs"])[:, None, None], (u - bx) ** 2 + (v - by) ** 2, np.inf)
        nearest = np.minimum(nearest, d2)
    blob_dark = np.exp(-nearest / (2 * (0.035 + pixel) ** 2))
    blob_big = np.exp(-nearest / (2 * (0.07 + pixel) ** 2))
    blob_dark, blob_big = blob_dark[..., None], blob_big[..., None]
    lesion = lesion * (1 - 0.6 * has("dots") * blob_dark)
    lesion = (
        lesion * (1 - has("globules") * blob_big)
        + has("globules") * blob_big * np.array(PALETTE["blue_grey"], dtype=np.float32) * 0.8
    )
    lesion = lesion * (1 - 0.8 * has("milia") * blob_dark) + 0.8 * has("milia") * blob_dark * 0.95
    lacuna = np.array(PALETTE["purple"], dtype=np.float32) * 0.9
    lesion = lesion * (1 - has("lacunae") * blob_big) + has("lacunae") * blob_big * lacuna

    vp = f["vessel"]
    wave = np.abs(np.sin(4.0 * ur + 1.5 * np.sin(5.0 * vr + vp[:, 0, None, None]) + vp[:, 1, None, None]))
    wave2 = np.abs(np.sin(4.0 * vr + 1.5 * np.sin(5.0 * ur + vp[:, 2, None, None]) + vp[:, 3, None, None]))
    vessels = np.maximum(np.exp(-((wave / (0.12 + pixel)) ** 2)), np.exp(-((wave2 / (0.12 + pixel)) ** 2)))[..., None]
    lesion = lesion * (1 - 0.8 * has("vessels") * vessels) + 0.8 * has("vessels") * vessels * np.array(
        (0.78, 0.12, 0.15), dtype=np.float32
    )
    patch = np.exp(-((r / (0.45 * radius)) ** 2))[..., None]
    lesion = lesion * (1 - 0.75 * has("white_patch") * patch) + 0.75 * has("white_patch") * patch * 0.93
    roughness = rng.standard_normal(size=(b, size, size, 1), dtype=np.float32) * 0.09
    lesion = lesion * (1 + has("scale") * roughness)

    # Skin: tone, illumination gradient, texture; then hairs and a dermoscope vignette.
    tone = f["skin"][:, None, None, None]
    skin = SKIN_LIGHT * (1 - tone) + SKIN_DARK * tone
    skin = skin * (
        1
        + f["light_grad"][:, 0, None, None, None] * u[..., None]
        + f["light_grad"][:, 1, None, None, None] * v[..., None]
    )
    image = skin * (1 - mask[..., None]) + lesion * mask[..., None]
    nearest_hair = np.full((b, size, size), np.inf, dtype=np.float32)
    for k in range(3):
        a, bb, c = (f["hairs"][:, k, j, None, None] for j in range(3))
        dist = np.abs(a * u + bb * v + 0.6 * c) / np.sqrt(a**2 + bb**2 + 1e-6)
        nearest_hair = np.minimum(nearest_hair, np.where((k < f["n_hairs"])[:, None, None], dist, np.inf))
    hair_dark = np.exp(-((nearest_hair / (0.012 + 0.5 * pixel)) ** 2))
    image = image * (1 - 0.7 * hair_dark[..., None]) + 0.7 * hair_dark[..., None] * 0.12
    corner = np.sqrt(u**2 + v**2)
    vignette = f["vignette"][:, None, None] / (1 + np.exp(-(corner - 1.25) / 0.05))
    image = image * (1 - vignette[..., None])
    image = image + rng.standard_normal(size=image.shape, dtype=np.float32) * 0.025
    return np.clip(image, 0, 1)


def generate(n_images: int = 10_000, image_size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 images (N, S, S, 3) and labels (N,) with HAM10000-shaped class counts."""
    if n_images < len(CLASSES):
        raise ValueError(f"n_images must be at least {len(CLASSES)} (one per class); got {n_images}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), natural_counts(n_images)))
    return _render_all(labels, CLASSES, image_size, rng), labels


MIN_SIZE, MAX_SIZE = 28, 512  # drawn in continuous coordinates: any size in between shows the same lesions


def _render_all(
    labels: np.ndarray, classes: Sequence[ClassSpec], image_size: int, rng: np.random.Generator
) -> np.ndarray:
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ValueError(f"image_size must be between {MIN_SIZE} and {MAX_SIZE} pixels; got {image_size}")
    # float32 halves the rendering time; the factors themselves are drawn in float64.
    factors = {
        k: v.astype(np.float32) if v.dtype == np.float64 else v
        for k, v in _sample_factors(labels, rng, classes).items()
    }
    chunk = max(16, int(3e6 // image_size**2))
    images = np.empty((len(labels), image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, len(labels), chunk):
        part = {key: value[start : start + chunk] for key, value in factors.items()}
        images[start : start + chunk] = np.round(_render(part, image_size, rng) * 255).astype(np.uint8)
    return images


@register_source(
    "synthetic",
    description="Built-in dermoscopy-like lesions generated by code (7 classes, HAM10000-shaped counts).",
    layout="No files: generated from a seed. Options: n_images (default 10000).",
    needs_path=False,
)
def load_synthetic(path: str | None, image_size: int, split_seed: int, n_images: int = 10_000) -> ImageDataset:
    if path is not None:  # a path given with the default source is a forgotten --data, not something to ignore
        raise DataError(
            f"a path ({path}) is given, but the data source is 'synthetic', which is generated by code and "
            "reads no files; name the source of those files (--data in the CLI), e.g. --data ham10000, "
            "folder or medmnist, or drop the path"
        )
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < len(CLASSES):
        raise DataError(
            f"option n_images must be an integer >= {len(CLASSES)} (one image per class); got "
            f"{n_images!r}. E.g. n_images=3000 (--data-option n_images=3000 in the CLI)"
        )
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise DataError(
            f"the built-in images are drawn at {MIN_SIZE} to {MAX_SIZE} pixels a side; got image size {image_size}. "
            "Choose a size in that range (--image-size in the CLI)"
        )
    check_memory("synthetic", n_images, image_size)  # before anything is drawn: a typo of 1e11 images is named
    # The generator seed is fixed so that every user sees the same images; split_seed only
    # changes which image lands in which split, as for the real data sets.
    images, labels = generate(n_images, image_size, seed=1234)
    ids = np.array([f"syn_{i:05d}" for i in range(len(labels))])
    parts = stratified_split(labels, split_seed)
    splits = {name: Split(images[idx], labels[idx], ids[idx]) for name, idx in parts.items()}
    return ImageDataset("synthetic", list(CLASS_NAMES), splits, __doc__.strip().splitlines()[0])

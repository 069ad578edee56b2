"""Is an uploaded image like what a run trained on? Checked before its prediction is believed.

A model answers for any image, also for a photograph it has never seen the like of. Three checks, each with
the evidence it used:

- **Feature distance** (k-nearest neighbours, after Sun et al., "Out-of-distribution detection with deep nearest
  neighbors", ICML 2022): the image's pooled features, L2-normalised, and their distance to the k-th nearest of the
  run's validation images. The run's own validation images give the scale: each one's distance to its k-th nearest
  *other* validation image (leave one out). Beyond their 99th percentile, the image is unlike the run's data.
- **Colour**: a grey-scale image for a model that learnt from colour images (or the other way round).
- **Built-in data**: a model trained on the generated images of the `synthetic` source has never seen a photograph.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

import numpy as np
import torch

from .data.images import colour_share, is_grey
from .engine.config import TrainConfig
from .engine.evaluate import split_embeddings
from .engine.trainer import predict
from .errors import DataError, ImbalLabError
from .models import Classifier
from .runs import RunStore
from .utils import read_json

NEIGHBOURS = 10
PERCENTILE = 99.0


@dataclass(frozen=True)
class Reference:
    """What a run's validation images look like to its model: the yardstick for an uploaded image."""

    features: np.ndarray  # (n, d) L2-normalised pooled features of the validation images
    distances: np.ndarray  # sorted leave-one-out k-th-neighbour distances of the validation images
    k: int
    colour_share: float | None  # share of the run's validation images in colour; None when unknown
    data_source: str  # the run's data source ("synthetic": the built-in data)

    @property
    def threshold(self) -> float:
        return float(np.percentile(self.distances, PERCENTILE))


@dataclass(frozen=True)
class Familiarity:
    """The checks' results for one image and one run. `warnings` is empty when the image looks familiar."""

    distance: float
    threshold: float
    percentile: float  # share (%) of the validation images whose own distance is below this image's
    warnings: tuple[str, ...]

    @property
    def familiar(self) -> bool:
        return not self.warnings


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _kth_distance(queries: np.ndarray, reference: np.ndarray, k: int, leave_one_out: bool) -> np.ndarray:
    """Euclidean distance of each query to its k-th nearest reference row. Leaving one out, the queries are the
    reference itself and each row's own distance is excluded. In blocks of rows: memory stays small for any split."""
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), 1024):
        block = queries[start : start + 1024]
        squared = (block**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * block @ reference.T
        squared = np.maximum(squared, 0.0)
        if leave_one_out:
            squared[np.arange(len(block)), start + np.arange(len(block))] = np.inf
        out[start : start + len(block)] = np.sqrt(np.partition(squared, k - 1, axis=1)[:, k - 1])
    return out


def build_reference(val_features: np.ndarray, colour: float | None, data_source: str, k: int = NEIGHBOURS) -> Reference:
    """The yardstick from a run's validation features (N, d); `colour` is the share of them in colour."""
    features = _normalised(val_features)
    if len(features) < 2:
        raise DataError(f"the run has {len(features)} validation image(s); the check needs at least 2")
    k = max(1, min(k, len(features) - 1))
    distances = np.sort(_kth_distance(features, features, k, leave_one_out=True))
    return Reference(features, distances, k, colour, data_source)


def reference_for_run(store: RunStore, run_id: str) -> Reference:
    """A run's reference from its saved validation features (computed with its model when they were not kept) and
    the share of its validation images in colour (kept in its metrics since Explain checks it; for older runs counted
    from its data set, or None when that is not here)."""
    features, _ = split_embeddings(store, run_id, "val", device="cpu")
    config = TrainConfig.from_dict(store.get_run(run_id)["config"])
    colour = read_json(store.run_dir(run_id) / "metrics.json").get("val_colour_share")
    if colour is None:
        with suppress(ImbalLabError):
            colour = colour_share(config.load_data().val.images)
    return build_reference(features, colour, config.data)


@torch.no_grad()
def check_image(model: Classifier, image: np.ndarray, reference: Reference) -> Familiarity:
    """The checks for one uint8 (H, W, C) image, at the run's size, against the run's reference."""
    device = next(model.parameters()).device
    _, features = predict(model, image[None], device)
    distance = float(_kth_distance(_normalised(features.numpy()), reference.features, reference.k, False)[0])
    percentile = float(100.0 * np.searchsorted(reference.distances, distance) / len(reference.distances))
    warnings = []  # short phrases: the page lists them beside the prediction
    if reference.data_source == "synthetic":
        warnings.append("trained on the built-in generated images only: it has never seen a photograph")
    if distance > reference.threshold:
        warnings.append(
            f"unlike its training data: feature distance {distance:.3f}, beyond {PERCENTILE:.0f} % of its "
            f"validation images ({reference.threshold:.3f})"
        )
    grey = bool(is_grey(image[None])[0])
    if reference.colour_share is not None and grey and reference.colour_share >= 0.95:
        warnings.append(
            f"a grey-scale image; {100 * reference.colour_share:.0f} % of its validation images are in colour"
        )
    if reference.colour_share is not None and not grey and reference.colour_share <= 0.05:
        warnings.append(
            f"a colour image; {100 * (1 - reference.colour_share):.0f} % of its validation images are grey-scale"
        )
    return Familiarity(distance, reference.threshold, percentile, tuple(warnings))

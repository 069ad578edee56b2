"""How good are a generator's synthetic images? Four measures per class, each beside a real-data reference.

- label fidelity: share of synthetic images of class c that a classifier trained on real data
  (a finished run of ours) assigns to c; reference: that classifier's recall on real validation
  images of c (a generator cannot be judged more "on label" than real images are).
- Fréchet distance between the Gaussians of real training and synthetic features of c. Features
  are the named run's pooled embeddings, reduced by a PCA fitted on the real training features
  (at most `FD_DIMENSIONS` components, fewer than the images per class: with tens of images per
  class a full covariance is not estimable). It is *not* Inception-FID (that needs downloaded
  weights); reference: the same distance for as many real validation images (the estimate's bias
  depends on the count, so both sides use the same n per class).
- memorisation: RMS pixel distance from each synthetic image to its nearest training image;
  reference: the same for real validation images (never trained on). Synthetic images much
  closer than that are near-copies. The nearest images are returned for display.
- diversity: mean pairwise feature distance among synthetic images of c over the same among
  real training images of c (1 = as varied as the real class).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import linalg

from ..data.images import resize_array
from ..engine.trainer import predict
from ..models import Classifier
from ..runs import RunStore
from .diffusion import DiffusionModel, sdedit_starts

FD_DIMENSIONS = 32
NEAREST_CHUNK = 256
# Targets of a generator worth a demo (issue 35), checked by `targets_table`.
TARGET_MIN_TRAIN = 50  # classes with fewer training images are reported, not judged
FIDELITY_SHARE = 0.8  # label fidelity >= this x the judge's recall on real validation images
FD_FACTOR = 3.0  # Fréchet distance <= this x that of real validation images
TARGET_RATIOS = ("fidelity_vs_real", "fd_vs_real", "nn_distance_vs_real")  # columns of `targets_table`
TARGETS_TEXT = (
    f"Targets, for classes with >= {TARGET_MIN_TRAIN} training images: label fidelity >= {FIDELITY_SHARE:g} x the "
    f"judge's recall on real validation images; Fréchet distance <= {FD_FACTOR:g} x that of real validation images; "
    "median nearest-training-image distance >= that of real validation images. Ratios are synthetic / real; "
    "`misses` names each target a class misses and by how much."
)


@dataclass
class QualityReport:
    table: pd.DataFrame  # one row per class, plus "all"
    synthetic: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray
    nearest: np.ndarray  # index into the training images of each synthetic image's nearest one
    nearest_distance: np.ndarray
    judge_size: int | None = None  # the classifier's image size, when every image was resized to it


def nearest_neighbours(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and RMS pixel distance (images scaled to [0, 1]) of each query's nearest reference image."""
    refs = torch.from_numpy(references.reshape(len(references), -1)).float() / 255
    index, distance = [], []
    for start in range(0, len(queries), NEAREST_CHUNK):
        q = torch.from_numpy(queries[start : start + NEAREST_CHUNK].reshape(-1, refs.shape[1])).float() / 255
        d = torch.cdist(q, refs)
        best = d.min(dim=1)
        index.append(best.indices.numpy())
        distance.append(best.values.numpy() / np.sqrt(refs.shape[1]))
    if not index:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(index), np.concatenate(distance)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets (rows)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # few images per class give singular covariances; sqrtm still answers
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))


def mean_pairwise_distance(features: np.ndarray) -> float:
    if len(features) < 2:
        return float("nan")
    d = torch.cdist(torch.from_numpy(features).float(), torch.from_numpy(features).float())
    return float(d.sum() / (len(features) * (len(features) - 1)))


def generator_quality(
    generator: DiffusionModel,
    classifier: Classifier,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    per_class: int = 64,
    steps: int = 25,
    guidance: float = 2.0,
    strength: float = 1.0,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    judge_size: int | None = None,
) -> QualityReport:
    """Sample `per_class` images of every class and measure them (images are uint8 (N, H, W, C)).

    `train_images` are the images the generator learnt from; with `strength` < 1 (SDEdit) they are
    also the starting points. `progress` gets the share of the sampling done (most of the time).
    `judge_size`: the classifier's image size when it is not the generator's; synthetic, training and validation
    images are all resized to it alike before the classifier sees them (pixel distances stay at the generator's
    size), so each synthetic measure and its real reference are judged on the same footing.
    """
    device = next(classifier.parameters()).device
    num_classes = generator.num_classes
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    generator_rng = torch.Generator().manual_seed(seed)
    init = None
    if strength < 1.0:
        init = sdedit_starts(
            torch.from_numpy(train_images).permute(0, 3, 1, 2), torch.from_numpy(train_labels), labels, generator_rng
        )
    made, _ = generator.sample(
        labels,
        steps=steps,
        guidance=guidance,
        generator=generator_rng,
        init_images=init,
        strength=strength,
        progress=progress,
    )
    synthetic = made.permute(0, 2, 3, 1).cpu().numpy()
    labels_np = labels.numpy()

    def judged(images: np.ndarray) -> np.ndarray:
        return images if judge_size is None else resize_array(images, judge_size)

    syn_logits, syn_features = predict(classifier, judged(synthetic), device)
    train_logits, train_features = predict(classifier, judged(train_images), device)
    val_logits, val_features = predict(classifier, judged(val_images), device)
    pca = _pca(train_features.numpy(), min(FD_DIMENSIONS, per_class - 1))
    syn_f, train_f, val_f = (pca(f.numpy()) for f in (syn_features, train_features, val_features))
    nearest, nearest_distance = nearest_neighbours(synthetic, train_images)
    _, val_nearest_distance = nearest_neighbours(val_images, train_images)

    rows = []
    for c in range(num_classes):
        s, t, v = labels_np == c, train_labels == c, val_labels == c
        n = min(int(s.sum()), int(v.sum()))  # the same count on both sides of the reference comparison
        rows.append(
            {
                "class": generator.class_names[c],
                "train_images": int(t.sum()),
                "synthetic": int(s.sum()),
                "label_fidelity": float((syn_logits[s].argmax(1).numpy() == c).mean()),
                "real_val_recall": float((val_logits[v].argmax(1).numpy() == c).mean()) if v.any() else float("nan"),
                "fd_synthetic": frechet_distance(train_f[t], syn_f[s][:n]),
                "fd_real_val": frechet_distance(train_f[t], val_f[v][:n]),
                "nn_distance_synthetic": float(np.median(nearest_distance[s])),
                "nn_distance_real_val": float(np.median(val_nearest_distance[v])) if v.any() else float("nan"),
                "diversity": mean_pairwise_distance(syn_features[s].numpy())
                / mean_pairwise_distance(train_features[t][:1000].numpy()),
            }
        )
    table = pd.DataFrame(rows)
    table.loc[len(table)] = {
        "class": "all",
        "train_images": int(len(train_labels)),
        "synthetic": int(len(labels_np)),
        **table.drop(columns=["class", "train_images", "synthetic"]).mean().to_dict(),
    }
    return QualityReport(table, synthetic, labels_np, nearest, nearest_distance, judge_size)


def targets_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each class of a quality table against the targets of a generator worth a demo, with ratios to the real
    reference and, per class, what it misses and by how much ("" when it meets them all).

    Targets (classes with at least `TARGET_MIN_TRAIN` training images; fewer are reported, not judged): label
    fidelity >= `FIDELITY_SHARE` x the judge's recall on real validation images; Fréchet distance <=
    `FD_FACTOR` x that of real validation images; median nearest-training distance >= that of real validation
    images (no memorisation).
    """
    rows = []
    for row in table[table["class"] != "all"].itertuples():
        fidelity_needed = FIDELITY_SHARE * row.real_val_recall
        fd_allowed = FD_FACTOR * row.fd_real_val
        misses = []
        if row.train_images < TARGET_MIN_TRAIN:
            misses.append(f"not judged: {row.train_images} training images (< {TARGET_MIN_TRAIN})")
        else:
            if row.label_fidelity < fidelity_needed:
                misses.append(
                    f"label fidelity {row.label_fidelity:.2f} < {fidelity_needed:.2f} ({FIDELITY_SHARE:g} x real "
                    f"recall {row.real_val_recall:.2f})"
                )
            if row.fd_synthetic > fd_allowed:
                misses.append(
                    f"Fréchet distance {row.fd_synthetic:.1f} > {fd_allowed:.1f} ({FD_FACTOR:g} x real "
                    f"{row.fd_real_val:.1f})"
                )
            if row.nn_distance_synthetic < row.nn_distance_real_val:
                misses.append(
                    f"nearer its training images ({row.nn_distance_synthetic:.3f}) than real validation images "
                    f"({row.nn_distance_real_val:.3f})"
                )
        rows.append(
            {
                "class": row[1],
                "train_images": row.train_images,
                "fidelity_vs_real": row.label_fidelity / row.real_val_recall if row.real_val_recall else np.nan,
                "fd_vs_real": row.fd_synthetic / row.fd_real_val if row.fd_real_val else np.nan,
                "nn_distance_vs_real": row.nn_distance_synthetic / row.nn_distance_real_val,
                "misses": "; ".join(misses),
            }
        )
    return pd.DataFrame(rows)


def shipped_quality(generator: str) -> pd.DataFrame | None:
    """The quality table (with `misses`) that `generator-quality --out results/<name>_quality.md` wrote beside its
    Markdown for a shipped generator, or None."""
    from ..benchmark_results import SHIPPED_RESULTS_DIR

    path = SHIPPED_RESULTS_DIR / f"{generator}_quality.csv"
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None


def limits_sentence(config: dict, history: list[dict], class_name: str, train_images: int) -> str:
    """What limits a diffusion model's samples of one class, in one sentence, from its recipe and training record."""
    space = (
        f"denoised in a {config['latent_channels']}-channel latent space, so fine detail is only as sharp as its "
        f"autoencoder's reconstructions (mean error {_last(history, 'autoencoder_reconstruction') / 2:.1%} of the "
        "pixel range)"
        if config.get("latent_channels")
        else "denoised pixel by pixel"
    )
    return (
        f"A small model ({config['width']}-channel UNet, {len(history)} epochs) learnt {class_name} from "
        f"{train_images} training images at {config['image_size']} px, {space}: its samples show the class's "
        "colours, shapes and borders, not diagnostic structure, and they are no substitute for real images."
    )


def _last(history: list[dict], key: str) -> float:
    return next((entry[key] for entry in reversed(history) if key in entry), float("nan"))


def _pca(reference: np.ndarray, dimensions: int) -> Callable[[np.ndarray], np.ndarray]:
    """Projection onto the top `dimensions` principal components of the reference features."""
    mean = reference.mean(0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    basis = vt[: max(1, min(dimensions, len(vt)))].T
    return lambda features: (features - mean) @ basis


def measure_generator(
    generator: str,
    run_id: str,
    store: RunStore,
    per_class: int = 64,
    steps: int = 25,
    guidance: float = 2.0,
    strength: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[float], None] | None = None,
) -> QualityReport:
    """`generator_quality` for a generator name and a finished run (looked up in `store`, then pretrained/).

    The run must be on the generator's data (same source and split; any size: the images are resized to the
    run's, see `generator_quality`) so its classifier and features speak of the same classes; the images measured
    against are the generator's own.
    """
    from ..compare import stores
    from ..data import load_dataset
    from ..engine.evaluate import load_run_model
    from ..errors import ConfigError
    from ..utils import select_device
    from .diffusion import DiffusionTrainConfig, load_diffusion_model
    from .generators import data_mismatch, load_generator_info, resolve_generator, training_split

    target = select_device(device)
    path = resolve_generator(generator, "diffusion")
    config = DiffusionTrainConfig.from_dict(load_generator_info(path).config)
    owner = next((s for s in stores(store) if s.has_run(run_id)), None)
    if owner is None:
        raise ConfigError(f"run {run_id} is in neither the run store nor pretrained/; list runs with `runs`")
    classifier, run_config, metrics = load_run_model(owner, run_id, target)
    mismatch = data_mismatch(config.to_dict(), run_config.to_dict(), ignore=("image_size",))
    if mismatch:
        raise ConfigError(
            f"run {run_id} is on other data than the generator ({mismatch}); pick a run on the generator's data"
        )
    model = load_diffusion_model(str(path), target)
    if metrics["class_names"] != model.class_names:
        raise ConfigError(f"run {run_id} has classes {metrics['class_names']}, the generator {model.class_names}")
    split = training_split(config)
    dataset = load_dataset(
        config.data,
        path=config.data_path,
        image_size=config.image_size,
        split_seed=config.split_seed,
        **(config.data_options or {}),
    )
    return generator_quality(
        model,
        classifier,
        split.images.permute(0, 2, 3, 1).numpy(),
        split.labels.numpy(),
        dataset.val.images,
        dataset.val.labels,
        per_class,
        steps,
        guidance,
        strength,
        seed,
        progress,
        judge_size=run_config.image_size if run_config.image_size != config.image_size else None,
    )

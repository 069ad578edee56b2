"""Loading a finished run's model, and evaluating it on another data set (e.g. HAM10000 -> ISIC 2018)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint, load_model_state
from ..data import Split, load_dataset
from ..errors import DataError, RunError
from ..methods import TrainInfo, create_method
from ..metrics import score_predictions
from ..models import Classifier
from ..runs import MODEL_FILE, RunStore
from ..utils import read_json, select_device, write_json
from .config import TrainConfig
from .trainer import build_model, predict


def load_run_model(
    store: RunStore, run_id: str, device: str | torch.device = "cpu"
) -> tuple[Classifier, TrainConfig, dict]:
    """The final model of a finished run, in eval mode, with its config and metrics."""
    run = store.get_run(run_id)
    if run["status"] != "finished":
        raise RunError(f"run {run_id} is {run['status']}; only finished runs have a final model")
    config = TrainConfig.from_dict(run["config"])
    run_dir = store.run_dir(run_id)
    if not (run_dir / "metrics.json").is_file():
        raise RunError(
            f"run {run_id} is indexed as finished but its folder {run_dir} lacks metrics.json (removed or moved?): "
            f"restore the folder, or remove the run with `python -m imbal_core --store {store.root} runs --delete "
            f"{run_id}`"
        )
    metrics = read_json(run_dir / "metrics.json")
    model = build_model(config, len(metrics["class_names"]), in_chans=3, load_weights=False)
    # The method may have replaced the head (cosine, scaled); rebuild it the same way.
    method = create_method(config.method, **config.method_settings)
    counts = torch.tensor(metrics["train_counts"])
    method.setup(
        model,
        TrainInfo(
            counts,
            torch.zeros(0, dtype=torch.long),
            config.epochs,
            1,
            torch.device("cpu"),
            data_recipe=config.data_recipe(),
        ),
    )
    if not (run_dir / MODEL_FILE).is_file():
        raise RunError(
            f"run {run_id} keeps no model weights ({run_dir / MODEL_FILE} is missing; shipped runs of "
            "some methods keep only their results): re-make it with its command in pretrained/manifest.json, "
            "or pick a run that has them"
        )
    load_model_state(model, load_checkpoint(run_dir / MODEL_FILE)["model"], run_dir / MODEL_FILE)
    return model.to(select_device(str(device))).eval(), config, metrics


EMBEDDING_SPLITS = {"val": ("val_embeddings", "val_labels"), "test": ("embeddings", "labels")}


def split_embeddings(
    store: RunStore, run_id: str, split: str = "val", device: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, labels) of a run's validation or test split: kept with its predictions, else computed with
    the run's final model on its data (for post-hoc rules such as tau-norm, tuned on validation, and Compare's
    feature map; shipped runs with weights keep only what their data cannot give back)."""
    features_key, labels_key = EMBEDDING_SPLITS[split]
    with np.load(store.run_dir(run_id) / "predictions.npz", allow_pickle=False) as saved:
        if _kept_embeddings(saved, split):
            return saved[features_key].astype(np.float32), saved[labels_key]
        saved_ids = saved["ids"] if split == "test" else None
    target = select_device(device)
    model, config, _ = load_run_model(store, run_id, target)
    images = getattr(config.load_data(), split)
    # The test predictions name their images; features of another test set would be a silent mismatch.
    if saved_ids is not None and not np.array_equal(images.ids.astype(str), saved_ids.astype(str)):
        raise DataError(
            f"run {run_id}'s data set loads here with other test images than it was scored on ({len(images)} vs "
            f"{len(saved_ids)}): its test features cannot be computed again; pick a run whose predictions keep them"
        )
    _, features = predict(model, images.images, target, config.amp)
    return features.numpy(), images.labels


def has_split_embeddings(run_dir: Path, split: str = "val") -> bool:
    """Whether `split_embeddings` can give the features of the run in `run_dir`: kept with its predictions, or its
    weights are there to compute them (shipped runs of some methods keep neither)."""
    if (run_dir / MODEL_FILE).is_file():
        return True
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as saved:
        return _kept_embeddings(saved, split)


def _kept_embeddings(saved: np.lib.npyio.NpzFile, split: str) -> bool:
    key = EMBEDDING_SPLITS[split][0]
    return key in saved.files and saved[key].size > 0


OVERLAP_RULES = ("refuse", "exclude")
EVAL_SPLITS = ("all", "train", "val", "test")


# Sources whose image ids name images world-wide (ISIC ids, APTOS id codes), and families of sources that share them
# (ISIC 2018 Task 3's training images are HAM10000's, same ids). Other ids are file names or positions (0001.png,
# train_00001): the same id in two such sets says nothing, so only pixels are compared there.
GLOBAL_ID_SOURCES = ("ham10000", "isic2018", "aptos2019")
SHARED_IDS = ({"ham10000", "isic2018"},)


def seen_images(store: RunStore, run_id: str) -> Split:
    """The images a run learnt from or was selected on: the training images it kept (and those of the runs it
    started from, `init_from`), its validation split, and every other photo of a lesion among them."""
    config = TrainConfig.from_dict(store.get_run(run_id)["config"])
    try:
        dataset = config.load_data()
    except DataError as err:
        raise DataError(
            f"cannot check the images for overlap with run {run_id}'s training data: its data set does not "
            f"load here ({err})"
        ) from None
    kept = np.load(store.run_dir(run_id) / "kept_indices.npy")
    if config.init_from is not None:  # same data (checked when it trained): its images shaped the features too
        kept = np.union1d(kept, np.load(store.run_dir(config.init_from) / "kept_indices.npy"))
    seen = Split.concat([dataset.train.subset(kept), dataset.val])
    if "lesion_id" in seen.metadata:  # HAM10000: several photos per lesion; one seen means the lesion was seen
        lesions = set(seen.metadata["lesion_id"])
        every = Split.concat(list(dataset.splits.values()))
        seen = every.subset(np.flatnonzero(every.metadata["lesion_id"].isin(lesions).to_numpy()))
    return seen


def image_digests(images: np.ndarray) -> np.ndarray:
    """One content hash per image (the same file decoded at the same size gives the same pixels)."""
    return np.array([hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() for image in images])


# Two images whose 8 x 8 mean colours differ by less than this (levels of 255, on average) are one picture saved
# twice: a JPEG re-encoding at quality 98 moves them by well under 1 level, two different photographs by tens.
NEAR_COPY_LEVELS = 1.5


def overlap_with(part: Split, seen: Split, same_ids: bool) -> np.ndarray:
    """Mask of `part`'s images that are among `seen`: the same pixels, near-copies (the same picture re-encoded or
    re-saved under another name), and the same id when both sources name images alike (`same_ids`; file names such
    as 0001.png say nothing across unrelated sets)."""
    if part.image_shape == seen.image_shape:
        same_pixels = np.isin(image_digests(part.images), image_digests(seen.images))
        same_pixels |= near_copies(part.images, seen.images)
    else:
        same_pixels = np.zeros(len(part), dtype=bool)
    if not same_ids:
        return same_pixels
    return same_pixels | np.isin(part.ids.astype(str), seen.ids.astype(str))


def near_copies(images: np.ndarray, seen: np.ndarray, levels: float = NEAR_COPY_LEVELS) -> np.ndarray:
    """Mask of `images` (uint8 N, H, W, C) whose 8 x 8 mean colours lie within `levels` (mean absolute difference)
    of one of `seen`'s."""
    from sklearn.neighbors import NearestNeighbors

    if len(images) == 0 or len(seen) == 0:
        return np.zeros(len(images), dtype=bool)
    index = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(_coarse(seen))
    distance, _ = index.kneighbors(_coarse(images))
    return distance[:, 0] / (8 * 8 * images.shape[-1]) < levels


def _coarse(images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Each image's 8 x 8 mean colours, flattened (float32, levels of 255)."""
    parts = []
    for start in range(0, len(images), batch):
        chunk = torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2).float()
        parts.append(F.adaptive_avg_pool2d(chunk, 8).flatten(1).numpy())
    return np.concatenate(parts)


def evaluate_run(
    store: RunStore,
    run_id: str,
    data: str,
    path: str | None = None,
    split: str = "all",
    device: str = "auto",
    overlap: str = "refuse",
    **data_options,
) -> dict:
    """Metrics of a run's model on another labelled data set; classes are matched by name.

    An external set is scored whole by default (`split="all"`: every image of every split, never a re-split
    share of it). Images the run trained or was selected on (same id, or same pixels) make it refuse
    (`overlap="refuse"`), or are left out and counted (`overlap="exclude"`). A binary run's task is applied to
    the other data set too, and its validation threshold is kept. The metrics are stored with the run
    (eval "<data>:<split>") with the image count, the overlap and the confusion matrix.
    """
    if split not in EVAL_SPLITS:
        raise DataError(f"split must be one of {EVAL_SPLITS}; got {split!r}")
    if overlap not in OVERLAP_RULES:
        raise DataError(f"overlap must be one of {OVERLAP_RULES}; got {overlap!r}")
    device = select_device(device)
    model, config, own = load_run_model(store, run_id, device)
    # The run's own preprocessing applies to the other set too (its task, its colour constancy).
    dataset = load_dataset(
        data,
        path=path,
        image_size=config.image_size,
        split_seed=config.split_seed,
        task=config.task,
        colour_constancy=config.colour_constancy,
        **data_options,
    )
    missing = sorted(set(dataset.class_names) - set(own["class_names"]))
    if missing:
        raise DataError(f"{data} has class(es) {missing} that run {run_id} never saw; classes must match by name")
    if split != "all" and dataset.whole_test_set:
        whole = sum(len(s) for s in dataset.splits.values())
        raise DataError(
            f"{dataset.whole_test_set} is a whole test set; its {split} split is a share the loader made of it "
            f"({len(dataset.splits[split])} of its {whole} images): score it with --split all (the default)"
        )
    part = Split.concat(list(dataset.splits.values())) if split == "all" else dataset.splits[split]
    if len(part) == 0:
        raise DataError(f"split {split!r} of {data} is empty; choose another split")
    same_ids = (data == config.data and data in GLOBAL_ID_SOURCES) or any(
        {data, config.data} <= family for family in SHARED_IDS
    )
    seen = overlap_with(part, seen_images(store, run_id), same_ids)
    if seen.any() and overlap == "refuse":
        raise DataError(
            f"{int(seen.sum())} of the {len(part)} images of {data} ({split}) are images run {run_id} trained or was "
            f"selected on (same id, same pixels, or the same picture re-saved; e.g. {part.ids[seen][:3].tolist()}): "
            "scoring them would flatter "
            "the model. Evaluate on unseen images only with overlap='exclude' (--overlap exclude), or use another set"
        )
    part = part.subset(np.flatnonzero(~seen))
    if len(part) == 0:
        raise DataError(
            f"every image of {data} ({split}) was seen by run {run_id} in training; nothing is left to score"
        )
    # Map the new data set's labels onto the model's class order.
    remap = np.array([own["class_names"].index(name) for name in dataset.class_names])
    labels = remap[part.labels]
    if len(np.unique(labels)) < 2:
        raise DataError(
            f"the {len(part)} images left to score hold only one class; metrics such as balanced accuracy "
            "or AUROC would mean nothing: score a set with at least two classes"
        )
    logits, _ = predict(model, part.images, device, config.amp)
    probs = create_method(config.method, **config.method_settings).class_probs(logits).numpy()
    metrics = score_predictions(probs, labels, own["train_counts"], own["summary"].get("threshold"))
    metrics.update(
        class_names=own["class_names"], data=data, split=split, n_images=len(part), n_overlap_excluded=int(seen.sum())
    )
    eval_name = f"{data}:{split}"
    write_json(store.run_dir(run_id) / f"eval_{data}_{split}.json", metrics)
    store.record_metrics(run_id, eval_name, metrics, own["class_names"])
    return metrics

"""Loading a finished run's model, and evaluating it on another data set (e.g. HAM10000 -> ISIC 2018)."""
from __future__ import annotations

import numpy as np
import torch

from ..data import load_dataset
from ..errors import DataError, RunError
from ..methods import TrainInfo, create_method
from ..metrics import binary_metrics, compute_metrics
from ..models import Classifier
from ..runs import MODEL_FILE, RunStore
from ..utils import read_json, select_device, write_json
from ..checkpoint import load_checkpoint
from .config import TrainConfig
from .trainer import build_model, predict


def load_run_model(store: RunStore, run_id: str, device: str | torch.device = "cpu") -> tuple[Classifier, TrainConfig, dict]:
    """The final model of a finished run, in eval mode, with its config and metrics."""
    run = store.get_run(run_id)
    if run["status"] != "finished":
        raise RunError(f"run {run_id} is {run['status']}; only finished runs have a final model")
    config = TrainConfig.from_dict(run["config"])
    run_dir = store.run_dir(run_id)
    metrics = read_json(run_dir / "metrics.json")
    model = build_model(config, len(metrics["class_names"]), in_chans=3)
    # The method may have replaced the head (cosine, scaled); rebuild it the same way.
    method = create_method(config.method, **config.method_settings)
    counts = torch.tensor(metrics["train_counts"])
    method.setup(model, TrainInfo(counts, torch.zeros(0, dtype=torch.long), config.epochs, 1, torch.device("cpu"),
                                  data_recipe=config.data_recipe()))
    if not (run_dir / MODEL_FILE).is_file():
        raise RunError(f"run {run_id} keeps no model weights ({run_dir / MODEL_FILE} is missing; shipped runs of "
                       "some methods keep only their results): re-make it with its command in pretrained/manifest.json, "
                       "or pick a run that has them")
    model.load_state_dict(load_checkpoint(run_dir / MODEL_FILE)["model"])
    return model.to(select_device(str(device))).eval(), config, metrics


def evaluate_run(
    store: RunStore, run_id: str, data: str, path: str | None = None, split: str = "test", device: str = "auto",
    **data_options,
) -> dict:
    """Metrics of a run's model on `split` of another data set; classes are matched by name.

    A binary run's task is applied to the other data set too, and its validation threshold is kept.
    """
    device = select_device(device)
    model, config, own = load_run_model(store, run_id, device)
    dataset = load_dataset(data, path=path, image_size=config.image_size, split_seed=config.split_seed,
                           task=config.task, **data_options)
    if split not in dataset.splits:
        raise DataError(f"split must be train, val or test; got {split!r}")
    missing = sorted(set(dataset.class_names) - set(own["class_names"]))
    if missing:
        raise DataError(f"{data} has class(es) {missing} that run {run_id} never saw; classes must match by name")
    part = dataset.splits[split]
    if len(part) == 0:
        raise DataError(f"split {split!r} of {data} is empty; choose another split")
    # Map the new data set's labels onto the model's class order.
    remap = np.array([own["class_names"].index(name) for name in dataset.class_names])
    labels = remap[part.labels]
    logits, _ = predict(model, part.images, device, config.amp)
    probs = create_method(config.method, **config.method_settings).class_probs(logits).numpy()
    threshold = own["summary"].get("threshold")
    if threshold is not None:
        metrics = compute_metrics(probs, labels, np.array(own["train_counts"]),
                                  predictions=(probs[:, 1] >= threshold).astype(int))
        metrics["summary"].update(binary_metrics(probs[:, 1], labels, threshold))
    else:
        metrics = compute_metrics(probs, labels, np.array(own["train_counts"]))
    metrics["class_names"] = own["class_names"]
    eval_name = f"{data}:{split}"
    write_json(store.run_dir(run_id) / f"eval_{data}_{split}.json", metrics)
    store.record_metrics(run_id, eval_name, metrics, own["class_names"])
    return metrics

"""The training loop: one run = data -> imbalance -> model + method -> stages of epochs -> test.

Small-image data sets live on the device as uint8 tensors; each batch is gathered by index and
augmented there. Randomness of epoch e comes from generators seeded with (seed, e), so a run
resumed from its last checkpoint ends with the same numbers as an uninterrupted one (on CPU).
"""
from __future__ import annotations

import math
import sqlite3
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data import ImageDataset, Split
from ..errors import ConfigError, RunError
from ..imbalance import kept_indices
from ..methods import Batch, Method, Stage, TrainInfo, create_method
from ..metrics import choose_threshold, score_predictions
from ..models import Classifier, create_model
from ..runs import HEARTBEAT_SECONDS, INTERRUPTED, MODEL_FILE, RunStore
from ..utils import atomic_path, seed_everything, select_device, write_json
from .augment import NO_AUGMENT, AugmentConfig, augment, to_float
from ..checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig

ProgressFn = Callable[[dict[str, Any]], None]
EVAL_BATCH = 512
PROGRESS_EVERY = 10  # steps between progress events
RESUMABLE = ("stopped", INTERRUPTED, "failed")


@dataclass
class RunData:
    """Tensors of one run on its device; `train` is the imbalanced subset."""

    dataset: ImageDataset
    kept: np.ndarray
    train_images: torch.Tensor
    train_labels: torch.Tensor
    class_counts: torch.Tensor


def train(
    config: TrainConfig,
    store: RunStore | None = None,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    resume: str | None = None,
    run_id: str | None = None,
) -> str:
    """Train one run (or `resume` a stopped one by id) and return its run id.

    A `run_id` already created with `store.create_run` (e.g. queued by the app) can be passed.
    Status, progress and metrics land in the store; the model and predictions in the run folder.
    """
    store = store or RunStore()
    if resume is not None:
        run_id = resume
        run = store.get_run(run_id)
        if run["status"] not in RESUMABLE:
            raise RunError(f"run {run_id} is {run['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
        config = TrainConfig.from_dict(run["config"])
    elif run_id is None:
        config.check_ready()
        run_id = store.create_run(config.to_dict())
    store.set_status(run_id, "running")
    started = time.time()
    try:
        finished = _run(config, store, run_id, _with_heartbeat(store, run_id, progress), stop_event or threading.Event())
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI
        store.set_status(run_id, "stopped", error="interrupted (Ctrl-C or SIGTERM)", duration_s=time.time() - started)
        raise RunInterrupted(run_id) from None
    except Exception as err:
        store.set_status(run_id, "failed", error=f"{type(err).__name__}: {err}", duration_s=time.time() - started)
        raise
    store.set_status(run_id, "finished" if finished else "stopped", duration_s=time.time() - started)
    return run_id


class RunInterrupted(KeyboardInterrupt):
    """Training was interrupted; the run is marked stopped and can be resumed by `run_id`."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


def _with_heartbeat(store: RunStore, run_id: str, progress: ProgressFn | None) -> ProgressFn:
    """The caller's progress function, plus a heartbeat in the store at most every HEARTBEAT_SECONDS."""
    last = time.time()

    def report(event: dict[str, Any]) -> None:
        nonlocal last
        if time.time() - last >= HEARTBEAT_SECONDS:
            try:
                store.heartbeat(run_id)
            except sqlite3.OperationalError:  # a busy store: the next beat comes soon; the run goes on
                pass
            last = time.time()
        if progress is not None:
            progress(event)

    return report


def prepare_data(config: TrainConfig, device: torch.device) -> RunData:
    dataset = config.load_data()
    kept = kept_indices(dataset.train.labels, config.ratio, config.profile, config.head_order, config.fit,
                        config.seed, dataset.class_names)
    train_split = dataset.train.subset(kept)
    counts = np.bincount(train_split.labels, minlength=dataset.num_classes)
    return RunData(dataset, kept, _to_device(train_split, device), torch.from_numpy(train_split.labels).to(device),
                   torch.from_numpy(counts).to(device))


def _to_device(split: Split, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous().to(device)


def build_model(config: TrainConfig, num_classes: int, in_chans: int) -> Classifier:
    return create_model(config.backbone, num_classes=num_classes, in_chans=in_chans, image_size=config.image_size)


def _run(config: TrainConfig, store: RunStore, run_id: str, progress: ProgressFn, stop: threading.Event) -> bool:
    """Returns True when training finished, False when it was stopped."""
    run_dir = store.run_dir(run_id)
    device = select_device(config.device)
    seed_everything(config.seed)
    data = prepare_data(config, device)
    np.save(run_dir / "kept_indices.npy", data.kept)
    model = build_model(config, data.dataset.num_classes, data.train_images.shape[1])
    method = create_method(config.method, **config.method_settings)
    stages = method.stages(config.epochs)
    if config.init_from:
        missing, _ = model.load_state_dict(_init_weights(store, config), strict=False)
        if any(key.startswith("backbone.") for key in missing):
            raise ConfigError(f"init_from run {config.init_from} has a different backbone; use the same backbone")
        stages = [s for s in stages if not s.representation]
        if not stages:
            raise ConfigError(f"method {config.method!r} has no stage left to train after init_from; drop init_from")
    plan = [(stage, k) for stage in stages for k in range(stage.epochs)]  # (stage, epoch within stage)
    steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
    info = TrainInfo(data.class_counts, data.train_labels, len(plan), steps_per_epoch, device, data.train_images,
                     config.init_from, train_index=data.kept, data_recipe=config.data_recipe())
    method.setup(model, info)
    model.to(device, memory_format=torch.channels_last)
    method.aux.to(device)

    start_epoch, history, best_score, optimizer_state = 0, [], -1.0, None
    last_path, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"
    if last_path.exists():  # resume after the last completed epoch
        state = load_checkpoint(last_path, device)
        _load_weights(model, method, state)
        start_epoch, history, best_score = state["epoch"] + 1, state["history"], state["best_score"]
        optimizer_state = state["optimizer"]

    augment_cfg = AugmentConfig() if config.augment else NO_AUGMENT
    train_labels_cpu = data.train_labels.cpu()  # the sampler draws on the CPU generator
    optimizer = None
    for epoch in range(start_epoch, len(plan)):
        stage, epoch_in_stage = plan[epoch]
        epoch_seed = config.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        if epoch_in_stage == 0 or optimizer is None:
            if epoch_in_stage == 0:
                best_score = -1.0  # the final model is the best epoch of the last stage
                if stage.reset_head:
                    _reset_head(model)
            params = list(method.stage_parameters(model, stage))
            _train_only(params, method.trainable_parameters(model))
            optimizer = _make_optimizer(config, params, stage)
            if optimizer_state is not None and epoch_in_stage > 0:
                optimizer.load_state_dict(optimizer_state)
        generator = torch.Generator(device=device).manual_seed(epoch_seed)
        order = _sample_order(train_labels_cpu, stage.sampler, torch.Generator().manual_seed(epoch_seed))

        def view(images: torch.Tensor) -> torch.Tensor:
            return augment(images, generator, augment_cfg).contiguous(memory_format=torch.channels_last)

        epoch_start, losses = time.time(), []  # the method's epoch preparation (e.g. synthesis) counts too
        method.on_epoch_start(model, epoch, stage)
        model.train()
        if stage.trainable == "head":
            model.backbone.eval()  # frozen features: BatchNorm statistics must not move
        for step in range(steps_per_epoch):
            if stop.is_set():
                progress({"event": "stopped", "run_id": run_id, "epoch": epoch})
                return False
            index = order[step * config.batch_size:(step + 1) * config.batch_size].to(device)
            raw = data.train_images[index]
            batch = Batch(raw, view(raw), data.train_labels[index], index, epoch, epoch * steps_per_epoch + step,
                          stage, generator, view)
            _set_lr(optimizer, stage.lr or config.lr, epoch_in_stage * steps_per_epoch + step, stage.epochs * steps_per_epoch)
            with _autocast(device, config.amp):
                loss = method.loss(model, batch)
            if not torch.isfinite(loss):
                raise RunError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            method.after_step(model)
            losses.append(loss.item())
            if step % PROGRESS_EVERY == 0 or step == steps_per_epoch - 1:
                progress({"event": "step", "run_id": run_id, "stage": stage.name, "epoch": epoch, "epochs": len(plan),
                          "step": step + 1, "steps": steps_per_epoch, "loss": float(np.mean(losses[-PROGRESS_EVERY:]))})

        logits, _ = predict(model, data.dataset.val.images, device, config.amp)
        val = _validation_scores(method.class_probs(logits).numpy(), data.dataset.val.labels, binary=config.task is not None)
        record = {"epoch": epoch, "stage": stage.name, "loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"],
                  **{f"val_{name}": value for name, value in val.items()}, "seconds": time.time() - epoch_start}
        method_log = method.epoch_log()
        if method_log:
            record["method"] = method_log
        history.append(record)
        selection = val["auroc"] if "auroc" in val else val["balanced_acc"]
        if selection > best_score:
            best_score = selection
            save_checkpoint(best_path, {"model": model.state_dict(), "aux": method.aux.state_dict(), "epoch": epoch})
        save_checkpoint(last_path, {
            "model": model.state_dict(), "aux": method.aux.state_dict(), "extra": method.extra_state(),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "history": history, "best_score": best_score,
        })
        if stage.representation and epoch_in_stage == stage.epochs - 1 and epoch + 1 < len(plan):
            # Features at the end of representation learning: later runs start from here with init_from.
            save_checkpoint(run_dir / "representation.safetensors", {"model": model.state_dict()})
        store.set_progress(run_id, {"epoch": epoch + 1, "epochs": len(plan), "history": history})
        progress({"event": "epoch", "run_id": run_id, **record, "epochs": len(plan)})

    _finish(config, store, run_id, model, method, data, device)
    progress({"event": "finished", "run_id": run_id})
    return True


def _finish(config: TrainConfig, store: RunStore, run_id: str, model: Classifier, method: Method,
            data: RunData, device: torch.device) -> None:
    """Best model -> method's post-hoc step -> test predictions and metrics.

    Binary runs (a task: class 1 = positive) predict "positive" at the threshold with the best balanced
    accuracy on validation. Their scores are kept in float64, so confident images do not tie.
    """
    run_dir = store.run_dir(run_id)
    _load_weights(model, method, load_checkpoint(run_dir / "best.safetensors", device))
    val = data.dataset.val

    def val_features() -> tuple[torch.Tensor, torch.Tensor]:
        _, features = predict(model, val.images, device, config.amp)
        return features.to(device), torch.from_numpy(val.labels).to(device)

    chosen = method.finalize(model, val_features)
    save_checkpoint(run_dir / MODEL_FILE, {"model": model.state_dict()})
    test = data.dataset.test
    logits, features = predict(model, test.images, device, config.amp)
    probs = method.class_probs(logits).numpy()
    val_logits, val_features = predict(model, val.images, device, config.amp)
    val_probs = method.class_probs(val_logits).numpy()
    counts = data.class_counts.cpu().numpy()
    binary = config.task is not None
    threshold = choose_threshold(val_probs[:, 1], val.labels) if binary else None
    metrics = score_predictions(probs, test.labels, counts, threshold)
    if binary:
        metrics["threshold_rule"] = "best balanced accuracy on the validation split"
    metrics.update({"class_names": data.dataset.class_names, "train_counts": counts.tolist(), "posthoc": chosen,
                    "task": config.task})
    # A plain linear head's weights let post-hoc rules (tau-norm) be re-scored without the model.
    head = model.head.weight if isinstance(model.head, torch.nn.Linear) else None
    with atomic_path(run_dir / "predictions.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, probs=probs.astype(np.float32), labels=test.labels, ids=test.ids.astype(str),
                     val_probs=val_probs.astype(np.float32), val_labels=val.labels,
                     scores=probs[:, 1] if binary else np.zeros(0), val_scores=val_probs[:, 1] if binary else np.zeros(0),
                     embeddings=features.numpy().astype(np.float16),
                     val_embeddings=val_features.numpy().astype(np.float16),  # post-hoc rules are tuned on these
                     head_weight=(head.detach().cpu().float().numpy() if head is not None else np.zeros(0)))
    write_json(run_dir / "metrics.json", metrics)
    store.record_metrics(run_id, "test", metrics, data.dataset.class_names)


@torch.no_grad()
def predict(model: Classifier, images: np.ndarray, device: torch.device, amp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pooled embeddings (both on CPU, float32) for uint8 (N, H, W, C) images."""
    was_training = model.training
    model.eval()
    logits, features = [], []
    for start in range(0, len(images), EVAL_BATCH):
        raw = torch.from_numpy(images[start:start + EVAL_BATCH]).permute(0, 3, 1, 2).to(device)
        with _autocast(device, amp):
            f = model.features(to_float(raw).contiguous(memory_format=torch.channels_last))
        z = model.head(f.float())  # the head in float32: scores must not be rounded to bfloat16
        logits.append(z.float().cpu())
        features.append(f.float().cpu())
    model.train(was_training)
    if not logits:
        return torch.zeros(0, model.num_classes), torch.zeros(0, model.embed_dim)
    return torch.cat(logits), torch.cat(features)


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked; nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp else nullcontext()


def _validation_scores(probs: np.ndarray, labels: np.ndarray, binary: bool) -> dict[str, float]:
    """Accuracy and balanced accuracy of the most probable class; binary runs add AUROC (used to pick the epoch)."""
    predictions = probs.argmax(1)
    recalls = [(predictions[labels == c] == c).mean() for c in np.unique(labels)]
    scores = {"acc": float((predictions == labels).mean()), "balanced_acc": float(np.mean(recalls))}
    if binary:
        scores["auroc"] = float(roc_auc_score(labels, probs[:, 1]))
    return scores


def _sample_order(labels: torch.Tensor, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """Indices for one epoch: a permutation (instance) or class-uniform draws (class_balanced)."""
    n = len(labels)
    if sampler == "instance":
        return torch.randperm(n, generator=generator)
    if sampler == "class_balanced":
        counts = torch.bincount(labels).double()
        weights = (1.0 / counts.clamp(min=1))[labels]
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    raise ConfigError(f"unknown sampler {sampler!r}; use 'instance' or 'class_balanced'")


def _make_optimizer(config: TrainConfig, params: list[torch.nn.Parameter], stage: Stage) -> torch.optim.Optimizer:
    """The stage's optimiser when it names one (e.g. LWS's SGD at 0.2), else the run's."""
    lr = stage.lr or config.lr
    if (stage.optimizer or config.optimizer) == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)


def _set_lr(optimizer: torch.optim.Optimizer, base_lr: float, step: int, total_steps: int) -> None:
    """Cosine decay over the stage, computed from the step so resume needs no scheduler state."""
    lr = 0.5 * base_lr * (1 + math.cos(math.pi * step / max(total_steps, 1)))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _train_only(trained: list[torch.nn.Parameter], everything: list[torch.nn.Parameter]) -> None:
    """Freeze what a stage does not train, so no gradient is computed for it."""
    trained_ids = {id(p) for p in trained}
    for p in everything:
        p.requires_grad_(id(p) in trained_ids)


def _reset_head(model: Classifier) -> None:
    for module in model.head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def _load_weights(model: Classifier, method: Method, state: dict[str, Any]) -> None:
    model.load_state_dict(state["model"])
    if "aux" in state:
        method.aux.load_state_dict(state["aux"])
    if "extra" in state:
        method.load_extra_state(state["extra"])


def _init_weights(store: RunStore, config: TrainConfig) -> dict[str, torch.Tensor]:
    source = store.get_run(config.init_from)
    if source["status"] != "finished":
        raise ConfigError(f"init_from run {config.init_from} is {source['status']}; it must be finished")
    theirs = source["config"]
    for key in ("data", "data_path", "image_size", "backbone", "split_seed", "colour_constancy"):
        if theirs.get(key) != getattr(config, key):
            raise ConfigError(f"init_from run has {key}={theirs.get(key)!r} but this run has {getattr(config, key)!r}")
    run_dir = store.run_dir(config.init_from)
    representation = run_dir / "representation.safetensors"  # two-stage runs: the features before stage 2
    state = load_checkpoint(representation if representation.exists() else run_dir / MODEL_FILE)["model"]
    # The backbone and a linear head carry over (a scaled head's inner linear layer counts as one);
    # other method-specific heads start fresh.
    state = {k.replace("head.linear.", "head."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k.startswith("backbone.") or k in ("head.weight", "head.bias")}

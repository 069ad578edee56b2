"""The training loop: one run = data -> imbalance -> model + method -> stages of epochs -> test.

Small-image data sets live on the device as uint8 tensors; each batch is gathered by index and
augmented there. Randomness of epoch e comes from generators seeded with (seed, e), so a run
resumed from its last checkpoint ends with the same numbers as an uninterrupted one (on CPU).

`_run` reads top to bottom: `_setup_run`, `restore_checkpoint`, then for each epoch `train_one_epoch`,
`validate` and `save_checkpoints`, and finally `_finish` (the best model on the test split).
"""

from __future__ import annotations

import errno
import math
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..data import ImageDataset
from ..data.images import colour_share
from ..errors import ConfigError, RunError
from ..imbalance import kept_indices
from ..methods import Batch, Method, Stage, TrainInfo, create_method
from ..metrics import choose_threshold, score_predictions
from ..models import Classifier, create_model
from ..runs import HEARTBEAT_SECONDS, INTERRUPTED, MODEL_FILE, RunStore
from ..utils import (
    atomic_path,
    code_version,
    numerics_environment,
    read_json,
    seed_everything,
    select_device,
    write_json,
)
from .augment import augment, augment_policy, to_float
from .config import TrainConfig
from .streaming import StreamedImages, place_train_images, read_range

ProgressFn = Callable[[dict[str, Any]], None]
EVAL_BATCH = 512
PROGRESS_EVERY = 10  # steps between progress events
RESUMABLE = ("stopped", INTERRUPTED, "failed")
# Checkpoints in the run folder: after every epoch, of the best epoch so far, and at the end of representation learning.
LAST_CHECKPOINT, BEST_CHECKPOINT = "last.safetensors", "best.safetensors"
REPRESENTATION_CHECKPOINT = "representation.safetensors"
WEIGHTS_FILE = "weights.json"  # a pretrained run's starting weights: tag or file, source, SHA-256, normalisation
ENVIRONMENT_FILE = "environment.json"  # the environment of each training call of a run (`run_environments`)


@dataclass
class RunData:
    """One run's data: the imbalanced training subset's images (held on the device, or streamed from the disk
    cache: `streaming.place_train_images`), its labels and class counts on the device."""

    dataset: ImageDataset
    kept: np.ndarray
    train_images: torch.Tensor | StreamedImages
    train_labels: torch.Tensor
    class_counts: torch.Tensor


def train(
    config: TrainConfig,
    store: RunStore | None = None,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    resume: str | None = None,
    run_id: str | None = None,
    keep_failed_checkpoints: bool = False,
) -> str:
    """Train one run (or `resume` a stopped one by id) and return its run id.

    A `run_id` already created with `store.create_run` (e.g. queued by the app) can be passed.
    Status, progress and metrics land in the store; the model and predictions in the run folder.
    A failed run's checkpoints are removed (most failures fail again on resume, and a full disk filled with them is
    how they compound), unless `keep_failed_checkpoints`; a resume then starts from the first epoch.
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
        if config.init_from is not None:
            init_from_checkpoint(store, config)
        run_id = store.create_run(config.to_dict())
    store.set_status(run_id, "running")
    for leftover in store.run_dir(run_id).glob(".*.tmp"):  # a write cut short by a kill: this run owns its folder
        leftover.unlink(missing_ok=True)
    store.record_code_version(run_id, code_version())
    started = time.time()
    try:
        finished = _run(
            config, store, run_id, _with_heartbeat(store, run_id, progress), stop_event or threading.Event()
        )
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI
        store.set_status(run_id, "stopped", error="interrupted (Ctrl-C or SIGTERM)", duration_s=time.time() - started)
        raise RunInterrupted(run_id) from None
    except ResumeRefused as err:
        store.set_status(run_id, "stopped", error=str(err))
        raise
    except Exception as err:
        if not keep_failed_checkpoints:
            for checkpoint in store.run_dir(run_id).glob("*.safetensors"):
                checkpoint.unlink(missing_ok=True)
        disk_full = isinstance(err, OSError) and err.errno == errno.ENOSPC
        message = _disk_full_message(store.root) if disk_full else f"{type(err).__name__}: {err}"
        store.set_status(run_id, "failed", error=message, duration_s=time.time() - started)
        if disk_full:
            raise RunError(message) from None
        raise
    if not (store.run_dir(run_id) / "config.json").is_file():  # removed while it trained: its files are gone
        message = f"its folder {store.run_dir(run_id)} was removed while it trained; train it again"
        store.set_status(run_id, "failed", error=message, duration_s=time.time() - started)
        raise RunError(f"run {run_id}: {message}")
    store.set_status(run_id, "finished" if finished else "stopped", duration_s=time.time() - started)
    return run_id


def _disk_full_message(store_root: Path) -> str:
    free_mb = shutil.disk_usage(store_root).free // 2**20
    return (
        f"the disk holding the run store {store_root} is full ({free_mb} MB free; a run needs room for its "
        "checkpoints, from a few MB at 28 px to a few hundred for large backbones): free space, or train into a "
        "store on another disk with --store"
    )


class ResumeRefused(RunError):
    """A stopped run's last checkpoint cannot be loaded: the run stays stopped, its files kept."""


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
            with suppress(sqlite3.OperationalError):  # a busy store: the next beat comes soon; the run goes on
                store.heartbeat(run_id)
            last = time.time()
        if progress is not None:
            progress(event)

    return report


def prepare_data(config: TrainConfig, device: torch.device) -> RunData:
    dataset = config.load_data()
    kept = kept_indices(config, dataset)
    labels = dataset.train.labels[kept]
    counts = np.bincount(labels, minlength=dataset.num_classes)
    return RunData(
        dataset,
        kept,
        place_train_images(dataset.train.images, kept, device, config.data_placement),
        torch.from_numpy(labels).to(device),
        torch.from_numpy(counts).to(device),
    )


def build_model(config: TrainConfig, num_classes: int, in_chans: int, load_weights: bool = True) -> Classifier:
    """The run's model; `load_weights=False` skips reading pretrained weights (a checkpoint of the run follows)."""
    return create_model(
        config.backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=config.image_size,
        pretrained=config.pretrained,
        load_weights=load_weights,
    )


@dataclass
class RunState:
    """One run's model, data and epoch plan, and the history and best score that last.safetensors keeps."""

    config: TrainConfig
    run_id: str
    run_dir: Path
    device: torch.device
    data: RunData
    model: Classifier
    method: Method
    plan: list[tuple[Stage, int]]  # per epoch: (its stage, its epoch within that stage)
    steps_per_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -1.0  # validation score of best.safetensors, within the current stage


def _run(config: TrainConfig, store: RunStore, run_id: str, progress: ProgressFn, stop: threading.Event) -> bool:
    """Returns True when training finished, False when it was stopped."""
    run = _setup_run(config, store, run_id)
    start_epoch, optimizer_state = restore_checkpoint(run)
    epochs = len(run.plan)
    optimizer: torch.optim.Optimizer | None = None  # the current stage's
    for epoch in range(start_epoch, epochs):
        stage, epoch_in_stage = run.plan[epoch]
        seed = _epoch_seed(config, epoch)
        torch.manual_seed(seed)  # the global RNG too (a reset head, dropout): set before anything draws from it
        if epoch_in_stage == 0:
            run.best_score = -1.0  # the final model is the best epoch of the last stage
            if stage.reset_head:
                _reset_head(run.model)
            optimizer = _stage_optimizer(run, stage)
        elif optimizer is None:  # resumed in the middle of a stage: continue its saved optimiser
            optimizer = _stage_optimizer(run, stage, optimizer_state)

        started = time.time()
        loss = train_one_epoch(run, optimizer, epoch, seed, progress, stop)
        if loss is None:
            return False
        scores = validate(run)
        record = {
            "epoch": epoch,
            "stage": stage.name,
            "loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            **{f"val_{name}": value for name, value in scores.items()},
            "seconds": time.time() - started,
        }
        method_log = run.method.epoch_log()
        if method_log:
            record["method"] = method_log
        run.history.append(record)
        # Binary runs pick their best epoch by AUROC, the others by balanced accuracy.
        save_checkpoints(run, optimizer, epoch, scores["auroc"] if "auroc" in scores else scores["balanced_acc"])
        store.set_progress(run_id, {"epoch": epoch + 1, "epochs": epochs, "history": run.history})
        progress({"event": "epoch", "run_id": run_id, **record, "epochs": epochs})

    _finish(config, store, run_id, run.model, run.method, run.data, run.device)
    progress({"event": "finished", "run_id": run_id})
    return True


def _setup_run(config: TrainConfig, store: RunStore, run_id: str) -> RunState:
    """Data, model and method on the device, and the run's plan of epochs."""
    run_dir = store.run_dir(run_id)
    device = select_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
    _record_environment(run_dir, device)
    seed_everything(config.seed)
    data = prepare_data(config, device)
    np.save(run_dir / "kept_indices.npy", data.kept.astype(np.int32))  # half of int64's bytes, for shipped runs
    resuming = (run_dir / LAST_CHECKPOINT).exists()
    model = build_model(config, data.dataset.num_classes, data.train_images.shape[1], load_weights=not resuming)
    if model.weights is not None:  # where the starting weights came from, and their digest
        write_json(run_dir / WEIGHTS_FILE, model.weights.to_dict())
    method = create_method(config.method, **config.method_settings)
    stages = method.stages(config.epochs)
    if config.init_from:  # weights from a finished run stand in for the representation stages
        missing, _ = model.load_state_dict(_init_weights(store, config), strict=False)
        if any(key.startswith("backbone.") for key in missing):
            raise ConfigError(f"init_from run {config.init_from} has a different backbone; use the same backbone")
        stages = [s for s in stages if not s.representation]
    plan = [(stage, k) for stage in stages for k in range(stage.epochs)]
    steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
    info = TrainInfo(
        data.class_counts,
        data.train_labels,
        len(plan),
        steps_per_epoch,
        device,
        data.train_images,
        config.init_from,
        data_recipe=config.data_recipe(),
    )
    method.setup(model, info)
    model.to(device, memory_format=torch.channels_last)
    method.aux.to(device)
    return RunState(config, run_id, run_dir, device, data, model, method, plan, steps_per_epoch)


def _record_environment(run_dir: Path, device: torch.device) -> None:
    """Add this training call's environment to the run's list, unless it is the last one there (a run resumed in
    another environment lists both, in order). In the run folder, so it travels with the run's files (Ray, archive)."""
    path = run_dir / ENVIRONMENT_FILE
    environments = list(read_json(path)) if path.is_file() else []
    here = numerics_environment(device)
    if environments[-1:] != [here]:
        write_json(path, environments + [here])


def run_environment_records(run_dir: Path) -> list[dict[str, str]]:
    """The environments (`utils.numerics_environment`) that trained a run, in order; [] for runs made before they
    were recorded. Runs recorded before the parts were kept have their one-line summary only."""
    path = run_dir / ENVIRONMENT_FILE
    entries = read_json(path) if path.is_file() else []
    return [{"summary": entry} if isinstance(entry, str) else entry for entry in entries]


def run_environments(run_dir: Path) -> list[str]:
    """The one-line summaries (`utils.software_environment`) of the environments that trained a run, in order."""
    return [record["summary"] for record in run_environment_records(run_dir)]


def restore_checkpoint(run: RunState) -> tuple[int, dict[str, Any] | None]:
    """Resume after the last completed epoch when last.safetensors exists.

    Loads the weights, history and best score into `run`; returns (first epoch to train, saved optimiser state).
    """
    path = run.run_dir / LAST_CHECKPOINT
    if not path.exists():
        return 0, None
    try:
        state = load_checkpoint(path, run.device)
        _load_weights(run.model, run.method, state, path)
    except RunError as err:  # the run and its other files are kept: the resume is refused, not the run
        raise ResumeRefused(
            f"{err}; the run stays stopped with its files (delete {path} to train it from epoch 1)"
        ) from None
    run.history, run.best_score = state["history"], state["best_score"]
    return state["epoch"] + 1, state["optimizer"]


def _epoch_seed(config: TrainConfig, epoch: int) -> int:
    """Epoch e's randomness depends on (seed, e) only, so a resumed run draws what an uninterrupted one would."""
    return config.seed * 100_003 + epoch


def _stage_optimizer(run: RunState, stage: Stage, state: dict[str, Any] | None = None) -> torch.optim.Optimizer:
    """Train only what `stage` trains, with the stage's optimiser; `state` continues one saved mid-stage."""
    params = list(run.method.stage_parameters(run.model, stage))
    _train_only(params, run.method.trainable_parameters(run.model))
    optimizer = _make_optimizer(run.config, params, stage)
    if state is not None:
        optimizer.load_state_dict(state)
    return optimizer


def train_one_epoch(
    run: RunState, optimizer: torch.optim.Optimizer, epoch: int, seed: int, progress: ProgressFn, stop: threading.Event
) -> float | None:
    """One pass over the epoch's sample order; returns the mean loss.

    `stop` is checked before each step: once set, a "stopped" event is sent and None returned.
    """
    config, model, method, data = run.config, run.model, run.method, run.data
    stage, epoch_in_stage = run.plan[epoch]
    steps, device = run.steps_per_epoch, run.device
    generator = torch.Generator(device=device).manual_seed(seed)  # augmentation and the method's own draws
    order = _sample_order(data.train_labels.cpu(), stage.sampler, torch.Generator().manual_seed(seed))
    augment_cfg = augment_policy(config.augment)

    def view(images: torch.Tensor) -> torch.Tensor:
        return augment(images, generator, augment_cfg).contiguous(memory_format=torch.channels_last)

    # Step losses stay on the device until a progress report reads them, so a GPU step never waits for the host.
    losses = torch.zeros(steps, device=device)
    reported = 0  # steps whose losses have been read (and checked to be finite)
    if device.type == "cuda":
        order = order.pin_memory()  # each step's indices then go to the GPU without waiting
    streamed = isinstance(data.train_images, StreamedImages)  # read on the host: it takes host indices
    if stop.is_set():  # before the method's epoch work (e.g. IOIS's synthesis), which may take a while
        progress({"event": "stopped", "run_id": run.run_id, "epoch": epoch})
        return None
    method.on_epoch_start(model, epoch, stage)  # e.g. synthesis; it counts in the epoch's seconds
    started = time.time()
    model.train()
    if stage.trainable == "head":
        model.backbone.eval()  # frozen features: BatchNorm statistics must not move
    for step in range(steps):
        if stop.is_set():
            progress({"event": "stopped", "run_id": run.run_id, "epoch": epoch})
            return None
        host_index = order[step * config.batch_size : (step + 1) * config.batch_size]
        index = host_index.to(device, non_blocking=True)
        raw = data.train_images[host_index if streamed else index]
        batch = Batch(
            raw, view(raw), data.train_labels[index], index, epoch, epoch * steps + step, stage, generator, view
        )
        _set_lr(optimizer, stage.lr or config.lr, epoch_in_stage * steps + step, stage.epochs * steps)
        with _autocast(device, config.amp):
            loss = method.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(model)
        losses[step] = loss.detach()
        if step % PROGRESS_EVERY == 0 or step == steps - 1:
            recent = _checked_losses(losses, reported, step + 1, epoch)
            reported = step + 1
            seconds = max(time.time() - started, 1e-6)  # this epoch's steps so far (not the method's epoch work)
            progress(
                {
                    "event": "step",
                    "run_id": run.run_id,
                    "stage": stage.name,
                    "epoch": epoch,
                    "epochs": len(run.plan),
                    "step": step + 1,
                    "steps": steps,
                    "loss": float(np.mean(recent[-PROGRESS_EVERY:].astype(np.float64))),
                    "seconds": seconds,
                    "images_per_second": min((step + 1) * config.batch_size, len(order)) / seconds,
                }
            )
    return float(np.mean(losses.cpu().numpy().astype(np.float64)))


def _checked_losses(losses: torch.Tensor, start: int, stop: int, epoch: int) -> np.ndarray:
    """The losses of steps start..stop-1, read from the device; RunError names the first step whose loss was not
    finite (the steps after it ran on, but the run fails)."""
    window = losses[start:stop].cpu().numpy()
    bad = np.flatnonzero(~np.isfinite(window))
    if len(bad):
        step = start + int(bad[0])
        raise RunError(
            f"loss became {window[bad[0]]} at epoch {epoch + 1}, step {step + 1}: training diverged; lower the "
            "learning rate (or a large weight decay), or check the images for extreme values"
        )
    return window


def validate(run: RunState) -> dict[str, float]:
    """The current model's scores on the validation split (the history's val_* columns)."""
    logits, _ = predict(run.model, run.data.dataset.val.images, run.device, run.config.amp)
    return _validation_scores(
        run.method.class_probs(logits).numpy(), run.data.dataset.val.labels, binary=run.config.task is not None
    )


def save_checkpoints(run: RunState, optimizer: torch.optim.Optimizer, epoch: int, score: float) -> None:
    """The checkpoints after an epoch whose validation `score` (higher is better) selects the best one.

    best.safetensors when `score` beats the stage's best; last.safetensors every epoch (a resume starts from it);
    representation.safetensors at the end of a representation stage that is followed by more training.
    """
    stage, epoch_in_stage = run.plan[epoch]
    model, method = run.model, run.method
    if score > run.best_score:
        run.best_score = score
        save_checkpoint(
            run.run_dir / BEST_CHECKPOINT, {"model": model.state_dict(), "aux": method.aux.state_dict(), "epoch": epoch}
        )
    save_checkpoint(
        run.run_dir / LAST_CHECKPOINT,
        {
            "model": model.state_dict(),
            "aux": method.aux.state_dict(),
            "extra": method.extra_state(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "history": run.history,
            "best_score": run.best_score,
        },
    )
    if stage.representation and epoch_in_stage == stage.epochs - 1 and epoch + 1 < len(run.plan):
        # Features at the end of representation learning: later runs start from here with init_from.
        save_checkpoint(run.run_dir / REPRESENTATION_CHECKPOINT, {"model": model.state_dict()})


def _finish(
    config: TrainConfig,
    store: RunStore,
    run_id: str,
    model: Classifier,
    method: Method,
    data: RunData,
    device: torch.device,
) -> None:
    """Best model -> method's post-hoc step -> test predictions and metrics.

    Binary runs (a task: class 1 = positive) predict "positive" at the threshold with the best balanced
    accuracy on validation. Their scores are kept in float64, so confident images do not tie.
    """
    run_dir = store.run_dir(run_id)
    _load_weights(model, method, load_checkpoint(run_dir / BEST_CHECKPOINT, device), run_dir / BEST_CHECKPOINT)
    val = data.dataset.val

    def val_features() -> tuple[torch.Tensor, torch.Tensor]:
        _, features = predict(model, val.images, device, config.amp)
        return features.to(device), torch.from_numpy(val.labels).to(device)

    chosen = method.finalize(model, val_features)
    save_checkpoint(run_dir / MODEL_FILE, {"model": model.state_dict()})
    test = data.dataset.test
    logits, features = predict(model, test.images, device, config.amp)
    probs = method.class_probs(logits).numpy()
    val_logits, val_embeddings = predict(model, val.images, device, config.amp)
    val_probs = method.class_probs(val_logits).numpy()
    counts = data.class_counts.cpu().numpy()
    binary = config.task is not None
    threshold = choose_threshold(val_probs[:, 1], val.labels) if binary else None
    metrics = score_predictions(probs, test.labels, counts, threshold)
    if binary:
        metrics["threshold_rule"] = "best balanced accuracy on the validation split"
    metrics.update(
        {
            "class_names": data.dataset.class_names,
            "train_counts": counts.tolist(),
            "posthoc": chosen,
            "task": config.task,
            "val_colour_share": colour_share(val.images),  # an upload's colour is checked against it (Explain)
        }
    )
    # A plain linear head's weights let post-hoc rules (tau-norm) be re-scored without the model.
    head = model.head.weight if isinstance(model.head, torch.nn.Linear) else None
    with atomic_path(run_dir / "predictions.npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(  # ids and probabilities compress well: a run folder shrinks by half
            handle,
            probs=probs.astype(np.float32),
            labels=test.labels,
            ids=test.ids.astype(str),
            val_probs=val_probs.astype(np.float32),
            val_labels=val.labels,
            scores=probs[:, 1] if binary else np.zeros(0),
            val_scores=val_probs[:, 1] if binary else np.zeros(0),
            embeddings=features.numpy().astype(np.float16),
            val_embeddings=val_embeddings.numpy().astype(np.float16),  # post-hoc rules are tuned on these
            head_weight=(head.detach().cpu().float().numpy() if head is not None else np.zeros(0)),
        )
    write_json(run_dir / "metrics.json", metrics)
    store.record_metrics(run_id, "test", metrics, data.dataset.class_names)


@torch.no_grad()
def predict(
    model: Classifier, images: np.ndarray, device: torch.device, amp: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pooled embeddings (both on CPU, float32) for uint8 (N, H, W, C) images."""
    was_training = model.training
    model.eval()
    logits, features = [], []
    for start in range(0, len(images), EVAL_BATCH):
        raw = torch.from_numpy(read_range(images, start, start + EVAL_BATCH)).permute(0, 3, 1, 2).to(device)
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


def _load_weights(model: Classifier, method: Method, state: dict[str, Any], path: Path) -> None:
    load_model_state(model, state["model"], path)
    if "aux" in state:
        method.aux.load_state_dict(state["aux"])
    if "extra" in state:
        method.load_extra_state(state["extra"])


def init_from_checkpoint(store: RunStore, config: TrainConfig) -> Path:
    """The checkpoint `config.init_from` names, after checking that the run is there, finished, on the same data and
    backbone, and that the method keeps a stage to train: called before a run is created, so a bad id creates none."""
    source_id = str(config.init_from)
    if not store.has_run(source_id):
        raise ConfigError(f"init_from run {source_id!r} is not in the store {store.root}; `runs` lists the runs")
    source = store.get_run(source_id)
    if source["status"] != "finished":
        raise ConfigError(f"init_from run {source_id} is {source['status']}; it must be finished")
    theirs = source["config"]
    for key in ("data", "data_path", "image_size", "backbone", "split_seed", "colour_constancy"):
        if theirs.get(key) != getattr(config, key):
            raise ConfigError(f"init_from run has {key}={theirs.get(key)!r} but this run has {getattr(config, key)!r}")
    stages = create_method(config.method, **config.method_settings).stages(config.epochs)
    if all(stage.representation for stage in stages):
        raise ConfigError(f"method {config.method!r} has no stage left to train after init_from; drop init_from")
    run_dir = store.run_dir(source_id)
    representation = run_dir / REPRESENTATION_CHECKPOINT  # two-stage runs: the features before stage 2
    checkpoint = representation if representation.exists() else run_dir / MODEL_FILE
    if not checkpoint.is_file():
        raise ConfigError(f"init_from run {source_id} keeps no weights (a slim or archived copy): train it here first")
    return checkpoint


def _init_weights(store: RunStore, config: TrainConfig) -> dict[str, torch.Tensor]:
    """The backbone (and a linear head) of the finished run `config.init_from`, which `config` starts from."""
    state = load_checkpoint(init_from_checkpoint(store, config))["model"]
    # The backbone and a linear head carry over (a scaled head's inner linear layer counts as one);
    # other method-specific heads start fresh.
    state = {k.replace("head.linear.", "head."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k.startswith("backbone.") or k in ("head.weight", "head.bias")}

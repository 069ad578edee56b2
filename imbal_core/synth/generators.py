"""One store and one lifecycle for image generators trained on a data set (AdaIN, diffusion).

A generator is one safetensors file: its weights, and in the metadata its kind, recipe (the
config that made it), per-epoch loss history and status ("partial" while training is under way or
stopped, "finished" at the end). A partial file also holds the training state (raw weights,
optimiser moments) under `TRAINING_PREFIX`, so a resumed training ends exactly where an
uninterrupted one would; the finished file drops it and keeps only what sampling needs.

Files live in $IMBAL_LAB_HOME/generators/ (yours) and pretrained/generators/ (shipped).
`train_generator` runs the lifecycle for any `GeneratorTrainer`: load the data, resume,
train epoch by epoch, save after every epoch, honour a stop event.
"""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..checkpoint import flatten_state, read_weights, unflatten_state, write_weights
from ..data import load_dataset
from ..errors import MAX_LR, SEED_RANGE, ConfigError, RunError, is_number_in, is_seed, require_all
from ..imbalance import kept_indices, subset_suffix
from ..registry import Registry
from ..utils import PRETRAINED_DIR, lab_home, seed_everything, select_device

PRETRAINED_GENERATOR_DIR = PRETRAINED_DIR / "generators"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
TRAINING_PREFIX = "__training__"
INDEX_KEY = "__train_index__"  # which training-split images the generator learnt from

ProgressFn = Callable[[dict[str, Any]], None]


def user_generator_dir() -> Path:
    return lab_home() / "generators"


def _user_folders() -> list[Path]:
    # AdaIN models trained before generators shared one store lie in style_models/: still found, never written.
    return [user_generator_dir(), lab_home() / "style_models"]


@dataclass
class GeneratorConfig:
    """What every generator recipe has: the data it learns from, and the training budget.

    `ratio`/`profile`/`fit` subsample the training split exactly as a run with the same values and
    `seed` does, so a generator never learns from images its classifier run is not allowed to see.
    """

    kind: ClassVar[str]
    data: str = "synthetic"
    data_path: str | None = None
    data_options: dict[str, Any] | None = None
    image_size: int = 28
    split_seed: int = 0
    ratio: float | None = None
    profile: str | dict[str, int] = "exp"
    head_order: str | list[int] = "natural"
    fit: str = "scale"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (
                isinstance(self.epochs, int) and 1 <= self.epochs <= 10_000,
                "epochs",
                "an integer in [1, 10000]",
                self.epochs,
            ),
            (
                isinstance(self.batch_size, int) and 2 <= self.batch_size <= 4096,
                "batch_size",
                "an integer in [2, 4096]",
                self.batch_size,
            ),
            (is_number_in(self.lr, 0, MAX_LR, low_open=True), "lr", f"a number in (0, {MAX_LR:g}]", self.lr),
            (is_seed(self.seed), "seed", SEED_RANGE, self.seed),
            (is_seed(self.split_seed), "split_seed", SEED_RANGE, self.split_seed),
            (
                isinstance(self.image_size, int) and 16 <= self.image_size <= 512,
                "image_size",
                "an integer in [16, 512]",
                self.image_size,
            ),
            (
                self.ratio is None or (isinstance(self.ratio, (int, float)) and self.ratio >= 1),
                "ratio",
                "a number >= 1, or None for the natural counts",
                self.ratio,
            ),
        ]
        require_all(checks)

    def default_name(self) -> str:
        return f"{self.kind}_{self.data}_{self.image_size}{subset_suffix(self.ratio, self.seed)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Older files lack newer keys: those take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class TrainingSplit:
    """The images a generator learns from (uint8 on its device), their labels and split indices."""

    images: torch.Tensor
    labels: torch.Tensor
    index: np.ndarray
    num_classes: int
    class_names: list[str]


def training_split(config: GeneratorConfig, device: torch.device | str = "cpu") -> TrainingSplit:
    dataset = load_dataset(
        config.data,
        path=config.data_path,
        image_size=config.image_size,
        split_seed=config.split_seed,
        **(config.data_options or {}),
    )
    index = kept_indices(config, dataset)
    split = dataset.train.subset(index)
    images = torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous().to(device)
    return TrainingSplit(
        images,
        torch.from_numpy(split.labels).long().to(device),
        np.asarray(index),
        dataset.num_classes,
        list(dataset.class_names),
    )


class GeneratorTrainer(ABC):
    """Trains one kind of generator one epoch at a time; `train_generator` does the rest."""

    kind: ClassVar[str]
    config_class: ClassVar[type[GeneratorConfig]]

    @abstractmethod
    def __init__(self, config: GeneratorConfig, split: TrainingSplit, device: torch.device) -> None: ...

    @abstractmethod
    def train_epoch(self, epoch: int, stop_event: threading.Event, progress: ProgressFn) -> dict[str, float] | None:
        """Mean losses of the epoch, or None when stopped part-way (the epoch is then not saved)."""

    @abstractmethod
    def weights(self) -> dict[str, torch.Tensor]:
        """What sampling needs (e.g. the EMA weights)."""

    @abstractmethod
    def training_state(self) -> dict[str, Any]:
        """What an exact resume needs beyond `weights()` (nested tensors and JSON values)."""

    @abstractmethod
    def load(self, weights: dict[str, torch.Tensor], training_state: dict[str, Any]) -> None: ...

    @abstractmethod
    def metadata(self) -> dict[str, str]:
        """Architecture facts needed to rebuild the model from the file alone."""


GENERATOR_KINDS: Registry[type[GeneratorTrainer]] = Registry("generator kind")


@dataclass
class GeneratorInfo:
    name: str
    kind: str
    path: Path
    source: str  # "yours" or "shipped" (in pretrained/generators)
    config: dict[str, Any]
    history: list[dict[str, Any]]
    status: str  # "finished", or "partial" (usable, fewer epochs; resumable)
    metadata: dict[str, str]


def train_generator(
    config: GeneratorConfig,
    name: str | None = None,
    out_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    resume: bool = False,
) -> Path:
    """Train the generator `config.kind` on the training split; save it after every epoch; return its path.

    A stopped training leaves the last completed epoch's generator (status "partial", usable);
    `resume=True` continues it exactly (same result as an uninterrupted training on CPU).
    """
    trainer_class = GENERATOR_KINDS.get(config.kind)
    name = name or config.default_name()
    check_name(name)
    path = Path(out_dir or user_generator_dir()) / f"{name}.safetensors"
    shipped = PRETRAINED_GENERATOR_DIR / f"{name}.safetensors"
    if shipped.exists() and path.resolve() != shipped.resolve():
        # Runs name their generator; one of yours with a shipped name would silently stand in for it.
        raise ConfigError(
            f"{name!r} is the name of a shipped generator (pretrained/generators); runs that name it would use "
            f"yours instead: choose another name, e.g. {name + '_mine'!r}"
        )
    if path.exists() and not resume:
        raise ConfigError(f"a generator named {name!r} exists at {path}; choose another name, or resume it")
    progress = progress or (lambda event: None)
    stop_event = stop_event or threading.Event()
    device = select_device(config.device)
    seed_everything(config.seed)
    split = training_split(config, device)
    trainer = trainer_class(config, split, device)
    history: list[dict[str, Any]] = []
    if resume and path.exists():
        saved = load_generator_info(path)
        # The device is where it trains, not what it learns: a training may move between CPU and GPU.
        if saved.kind != config.kind or _recipe(type(config).from_dict(saved.config)) != _recipe(config):
            raise ConfigError(
                f"generator {name!r} was trained with another recipe; resume it with the same options "
                "or choose a new name"
            )
        if saved.status == "finished":
            progress({"event": "finished", "path": str(path)})
            return path
        weights, state = read_generator(path, device)
        trainer.load(weights, state)
        history = saved.history
    for epoch in range(len(history), config.epochs):
        losses = trainer.train_epoch(epoch, stop_event, progress)
        if losses is None:
            progress({"event": "stopped", "epoch": epoch})
            return path
        history.append({"epoch": epoch, **losses})
        save_generator(path, trainer, config, history, split.index)
        progress({"event": "epoch", **history[-1], "epochs": config.epochs})
    progress({"event": "finished", "path": str(path)})
    return path


def _recipe(config: GeneratorConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k != "device"}


# ---- Files ------------------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"generator name {name!r} may only use letters, digits, '_', '-' and '.' (1-80 characters)")


def save_generator(
    path: Path, trainer: GeneratorTrainer, config: GeneratorConfig, history: list[dict], train_index: np.ndarray
) -> None:
    finished = len(history) == config.epochs
    tensors = {key: value.detach().cpu().contiguous() for key, value in trainer.weights().items()}
    tensors[INDEX_KEY] = torch.from_numpy(np.asarray(train_index, dtype=np.int64))
    metadata = {
        **trainer.metadata(),
        "kind": config.kind,
        "config": json.dumps(config.to_dict()),
        "history": json.dumps(history),
        "status": "finished" if finished else "partial",
    }
    if not finished:
        metadata["training"] = json.dumps(flatten_state(trainer.training_state(), TRAINING_PREFIX, tensors))
    write_weights(path, tensors, metadata)


def read_metadata(path: Path, kind: str | None = None) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise RunError(f"generator {path} cannot be read ({err}); it is damaged or not a safetensors file") from None
    if metadata.get("kind") not in GENERATOR_KINDS:
        raise RunError(f"{path} is not an Imbalance Lab generator (its metadata names no known kind)")
    if kind is not None and metadata["kind"] != kind:
        raise ConfigError(f"{path.stem!r} is a {metadata['kind']} generator, not a {kind} one")
    return metadata


def read_generator(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, training state); the training state is {} for a finished generator."""
    read_metadata(path)  # a clear error when it is not a generator
    tensors, metadata = read_weights(path, device, what="generator")
    weights = {k: v for k, v in tensors.items() if not k.startswith(TRAINING_PREFIX) and k != INDEX_KEY}
    state = unflatten_state(json.loads(metadata["training"]), tensors) if "training" in metadata else {}
    return weights, state


def generator_train_index(path: Path) -> np.ndarray | None:
    """The training-split indices the generator learnt from (None for files made before this was kept)."""
    with safe_open(str(path), framework="np") as handle:
        # safe_open has keys() but no __contains__
        return handle.get_tensor(INDEX_KEY) if INDEX_KEY in handle.keys() else None  # noqa: SIM118


def load_generator_info(path: Path | str) -> GeneratorInfo:
    path = Path(path)
    metadata = read_metadata(path)
    source = "shipped" if path.resolve().parent == PRETRAINED_GENERATOR_DIR.resolve() else "yours"
    return GeneratorInfo(
        path.stem,
        metadata["kind"],
        path,
        source,
        json.loads(metadata["config"]),
        json.loads(metadata["history"]),
        metadata["status"],
        metadata,
    )


def list_generators(kind: str | None = None) -> list[GeneratorInfo]:
    """Your generators first, then the shipped ones; unreadable files are skipped."""
    found = []
    for folder in (*_user_folders(), PRETRAINED_GENERATOR_DIR):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                info = load_generator_info(path)
            except RunError:
                continue
            if kind is None or info.kind == kind:
                found.append(info)
    return found


def resolve_generator(reference: str, kind: str) -> Path:
    """A generator name (yours first, then pretrained/) or a path to a .safetensors file, of this kind."""
    train_command = {"adain": "style-train", "diffusion": "diffusion-train"}.get(kind, "...")
    if not reference:
        raise ConfigError(
            f"no {kind} generator given: name one (see `python -m imbal_core generators`) or train one "
            f"with `python -m imbal_core {train_command}`"
        )
    candidates = [Path(reference).expanduser()] if reference.endswith(".safetensors") else []
    candidates += [folder / f"{reference}.safetensors" for folder in (*_user_folders(), PRETRAINED_GENERATOR_DIR)]
    for path in candidates:
        if path.is_file():
            read_metadata(path, kind)
            return path
    known = sorted({info.name for info in list_generators(kind)})
    raise ConfigError(
        f"{kind} generator {reference!r} not found; known ones: {known or 'none'}. Train one with "
        f"`python -m imbal_core {train_command} --data ...`"
    )


def generators_for(kind: str, data: str, image_size: int, any_size: bool = False) -> list[GeneratorInfo]:
    """The generators of a kind trained on this data source at this size (any path or split); with `any_size`, at
    every size, this size first (an AdaIN model is fully convolutional: it stylises images of any size)."""
    found = [
        info
        for info in list_generators(kind)
        if info.config.get("data") == data and (any_size or info.config.get("image_size") == image_size)
    ]
    return sorted(found, key=lambda info: info.config.get("image_size") != image_size)


# Generators have no task and learn from the images as they are: their task and colour_constancy read as None.
DATA_KEYS = ("data", "data_options", "image_size", "split_seed", "task", "colour_constancy")


def data_mismatch(
    generator_config: dict[str, Any], data_recipe: dict[str, Any], ignore: tuple[str, ...] = ()
) -> str | None:
    """How a generator's data differs from a run's ("key: theirs vs ours"), or None when they are the same.

    Both are config dicts; a missing data_path (built-in data) only matches a missing one. Keys in `ignore` are not
    compared (IOIS resizes a generator's samples, so the image size may differ).
    """
    for key in DATA_KEYS:
        if key in ignore:
            continue
        theirs, ours = generator_config.get(key), data_recipe.get(key)
        if key == "data_options":
            theirs, ours = theirs or {}, ours or {}
        if theirs != ours:
            return f"{key} {theirs!r} vs {ours!r}"
    theirs, ours = generator_config.get("data_path"), data_recipe.get("data_path")
    if bool(theirs) != bool(ours) or (
        theirs and ours and Path(theirs).expanduser().resolve() != Path(ours).expanduser().resolve()
    ):
        return f"data_path {theirs!r} vs {ours!r}"
    return None


def training_summary(info: GeneratorInfo) -> str:
    last = info.history[-1] if info.history else {}
    losses = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float))
    return f"{len(info.history)}/{info.config['epochs']} epochs ({info.status}); last epoch: {losses or 'n/a'}"

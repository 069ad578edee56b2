"""Everything that defines a run, validated up front with messages that say what was expected."""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..data import DATA_SOURCES, ImageDataset, load_dataset, parse_task
from ..data.colour import check_colour_constancy
from ..errors import MAX_LR, MAX_WEIGHT_DECAY, SEED_RANGE, ConfigError, DataError, is_count, is_number_in, is_seed
from ..imbalance import PROFILES, kept_indices
from ..methods import create_method
from ..models import DEFAULT_BACKBONE, check_backbone, create_model
from ..utils import check_device
from .augment import POLICIES
from .streaming import PLACEMENTS

OPTIMIZERS = ("adamw", "sgd")
# Fields added after runs were archived and shipped: stored only when set, so a run that does not use them keeps the
# config it always had, and the store and archives (which match whole configs) still find the runs made before them.
LATER_FIELDS = {"pretrained": None, "data_placement": "auto"}


@dataclass
class TrainConfig:
    method: str = "ce"
    method_settings: dict[str, Any] = field(default_factory=dict)
    data: str = "synthetic"
    data_path: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # a binary task, e.g. "mel vs nv" (positive vs negative); None keeps all classes
    colour_constancy: str | None = None  # "shades_of_gray": every split's light colour removed (data/colour.py)
    image_size: int = 28
    split_seed: int = 0
    ratio: float | None = None  # None keeps the data set's natural counts
    profile: str | dict[str, int] = "exp"
    head_order: str | list[int] = "natural"
    fit: str = "scale"  # "scale": exact ratio (fewer images); "cap": keep short classes whole
    backbone: str = DEFAULT_BACKBONE
    # Starting weights: a timm tag (e.g. "resnet18.a1_in1k", for backbone resnet18) or a local weights file for the
    # backbone's architecture; None trains from random weights.
    pretrained: str | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    augment: bool | str = True  # True = "basic", False = none, or a policy of engine/augment.py ("crop")
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    # Training images held whole on the device ("device"), streamed from the disk cache ("stream"), or "auto": held
    # when they take at most half the free memory there. The numbers do not depend on it.
    data_placement: str = "auto"
    init_from: str | None = None  # a finished run whose weights start this one

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _require(
            isinstance(self.epochs, int) and 1 <= self.epochs <= 10_000,
            "epochs",
            "an integer in [1, 10000]",
            self.epochs,
        )
        _require(
            isinstance(self.batch_size, int) and 2 <= self.batch_size <= 8192,
            "batch_size",
            "an integer in [2, 8192]",
            self.batch_size,
        )
        _require(is_number_in(self.lr, 0, MAX_LR, low_open=True), "lr", f"a number in (0, {MAX_LR:g}]", self.lr)
        _require(
            is_number_in(self.weight_decay, 0, MAX_WEIGHT_DECAY),
            "weight_decay",
            f"a number in [0, {MAX_WEIGHT_DECAY:g}]",
            self.weight_decay,
        )
        _require(self.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}", self.optimizer)
        _require(is_seed(self.seed), "seed", SEED_RANGE, self.seed)
        _require(is_seed(self.split_seed), "split_seed", SEED_RANGE, self.split_seed)
        _require(
            self.profile in PROFILES
            or isinstance(self.profile, dict)
            and all(isinstance(k, str) and is_count(v) for k, v in self.profile.items()),
            "profile",
            f"one of {list(PROFILES)}, or a {{class name: count}} dict with integer counts >= 1",
            self.profile,
        )
        _require(
            isinstance(self.image_size, int) and 16 <= self.image_size <= 512,
            "image_size",
            "an integer in [16, 512]",
            self.image_size,
        )
        _require(
            self.pretrained is None or isinstance(self.pretrained, str) and self.pretrained.strip() != "",
            "pretrained",
            "a timm tag such as resnet18.a1_in1k, a weights file, or None",
            self.pretrained,
        )
        check_backbone(self.backbone, self.pretrained)
        _require(
            isinstance(self.augment, bool) or isinstance(self.augment, str) and self.augment in POLICIES,
            "augment",
            f"true, false or one of {list(POLICIES)}",
            self.augment,
        )
        _require(self.data_placement in PLACEMENTS, "data_placement", f"one of {PLACEMENTS}", self.data_placement)
        check_data_options(self.data, self.data_options)  # unknown source names raise, listing the choices
        method = create_method(self.method, **self.method_settings)  # unknown or out-of-range settings raise
        if self.task is not None:
            parse_task(self.task)
        elif method.needs_binary_task:
            raise ConfigError(
                f"method {self.method!r} is one-class: it needs a binary task (normal = the right side), "
                "e.g. task='mel vs nv' (--task in the CLI)"
            )
        method.check_data(self.data_recipe())
        check_colour_constancy(self.colour_constancy)
        if self.ratio is not None:
            ok = (
                isinstance(self.ratio, (int, float))
                and not isinstance(self.ratio, bool)
                and math.isfinite(self.ratio)
                and self.ratio >= 1
            )
            _require(ok, "ratio", "a finite number >= 1, or None for the natural counts", self.ratio)

    def check_ready(self, *, device_here: bool = True) -> None:
        """Before a new run, so that bad input creates none: the device is there, the data loads and suits a classifier
        (the task's classes exist), the ratio is reachable, pretrained weights load, and what the method's settings
        name exists and suits the training images (a generator).

        `device_here=False` for a run that a cluster's worker trains: the device is the worker's, checked there
        (a GPU cluster's driver may have none)."""
        if device_here:
            check_device(self.device)
        if self.pretrained is not None:  # the weights are there and fit (one model is built to load them)
            create_model(self.backbone, image_size=self.image_size, pretrained=self.pretrained)
        method = create_method(self.method, **self.method_settings)
        method.check_ready()
        kept = kept_indices(self, self.load_data())  # raises for a ratio out of reach
        method.check_training_set(self.data_recipe(), kept)
        if self.pretrained is None:  # the backbone exists and suits the image size (after the data's own checks)
            create_model(self.backbone, image_size=self.image_size)

    def with_chosen_settings(self) -> tuple[TrainConfig, str | None]:
        """This config with the settings its method picks from the run's data where they were left empty (IOIS's
        generator), and a line saying what was picked (None when nothing was)."""
        method = create_method(self.method, **self.method_settings)
        chosen, note = method.settings_for_data(self.data_recipe(), lambda: kept_indices(self, self.load_data()))
        return replace(self, method_settings={**self.method_settings, **chosen}), note

    def data_recipe(self) -> dict[str, Any]:
        """Everything that decides which images a run sees (generators are checked against it)."""
        return {
            key: getattr(self, key)
            for key in ("data", "data_path", "data_options", "image_size", "split_seed", "task", "colour_constancy")
        }

    def load_data(self) -> ImageDataset:
        """The run's data set (with its binary task and colour constancy applied), checked to have classes to learn."""
        dataset = load_dataset(
            self.data,
            path=self.data_path,
            image_size=self.image_size,
            split_seed=self.split_seed,
            task=self.task,
            colour_constancy=self.colour_constancy,
            **self.data_options,
        )
        check_classes(dataset)
        return dataset

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**values)


def check_data_options(source: str, options: dict[str, Any]) -> None:
    """Raise ConfigError for an option the source's loader does not take (its arguments after path, image_size and
    split_seed), instead of a TypeError deep in loading."""
    known = list(inspect.signature(DATA_SOURCES.get(source).loader).parameters)[3:]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown data option(s) {unknown} for data source {source!r}; its options are "
            f"{known or 'none'} (--data-option KEY=VALUE in the CLI)"
        )


def check_classes(dataset: ImageDataset) -> None:
    """Raise DataError unless the data set and each of its splits hold two classes or more.

    With one class a classifier is trivially right (accuracy 1); the validation split picks the best epoch and the
    test split scores the run, so each needs two classes too.
    """
    if dataset.num_classes < 2:
        raise DataError(
            f"{dataset.name} has {dataset.num_classes} class ({dataset.class_names}); a classifier "
            "needs at least 2 classes: check the labels, or choose a data set with two classes or more"
        )
    for name, split in dataset.splits.items():
        present = [dataset.class_names[c] for c in np.unique(split.labels)]
        if len(present) < 2:
            raise DataError(
                f"the {name} split of {dataset.name} holds images of {len(present)} class(es) {present}; "
                "every split needs images of at least 2 classes (training learns them, validation picks "
                "the best epoch, test scores the run): add images of the other classes to it, or, for "
                "data the lab splits itself, use more images or another split seed"
            )


def _require(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}; got {got!r}")

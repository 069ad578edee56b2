"""What a method is: a card (docs + settings), a loss, and optional hooks into the training loop.

When a config is made, `check_data(data_recipe)` checks settings that depend on the data (e.g. a
recipe's operation names). Before a run is created, `check_ready()` checks what the settings name
outside the config (e.g. a generator file), so a missing one is an error, not a failed run, and, with the data
loaded, `check_training_set(data_recipe, train_index)` checks that it suits the run's training images (e.g. a
generator that learnt from other data). Both run where the run is planned, not on a cluster's worker, whose working
folder and files differ. The engine then calls,
in order:
    setup(model, info)            once: may replace the head, create teachers, heads, banks (self.aux)
    stages(epochs)                the training stages (one for most methods, two for decoupled ones)
    on_epoch_start(model, epoch, stage)  e.g. switch on deferred re-weighting, make auxiliary images
    loss(model, batch)            every step; batch.augment(batch.raw) makes another view
    after_step(model)             after each optimizer step, e.g. update an EMA teacher
    epoch_log()                   after each epoch: JSON facts kept in the run's history (e.g. IOIS's allocation)
    class_probs(logits)           model outputs -> probabilities over the data set's classes (validation, test)
    finalize(model, val_features) once, on the best model: post-hoc changes such as tau-norm
Everything a method adds to `self.aux` is optimised and checkpointed with the model; modules
added with `add_frozen` (an EMA teacher, a memory bank) are checkpointed but never optimised.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..models import Classifier
from ..registry import Registry

SAMPLERS = ("instance", "class_balanced")
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Setting:
    """One method setting with its default and accepted range; `coerce` validates user input."""

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None

    def coerce(self, value: Any) -> Any:
        """`value` as the default's type, checked against the choices and the range.

        Text is parsed (the app's text boxes and "method[key=value]" lists give strings), but nothing else changes
        type: a bool is not a number, a number is not a bool (except 0 and 1), a float is not an integer.
        """
        kind = type(self.default)
        if kind is bool:
            text = str(value).lower()  # True, 1, "1", "true", "yes", ...
            if isinstance(value, float) or text not in BOOL_WORDS:
                raise self._invalid(value)
            value = BOOL_WORDS[text]
        elif kind in (int, float):
            value = self._number(value, kind)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = str(value)  # the CLI reads `--set tau=0.5` as JSON; a text setting gets it back as text
        elif not isinstance(value, kind):
            raise self._invalid(value)
        out_of_range = (
            isinstance(value, float)
            and not math.isfinite(value)
            or self.low is not None
            and value < self.low
            or self.high is not None
            and value > self.high
        )
        if out_of_range or self.choices is not None and value not in self.choices:
            raise self._invalid(value)
        return value

    def _number(self, value: Any, kind: type) -> int | float:
        """An int (or, for a float setting, any real number) as `kind`; text is parsed; bools are refused."""
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise self._invalid(value) from None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if kind is int else numbers.Real):
            raise self._invalid(value)
        return kind(value)

    def expected(self) -> str:
        """What the setting accepts, e.g. "a number in [0.0, 5.0]"."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        kind = type(self.default)
        if kind is bool:
            return "true or false"
        if kind not in (int, float):
            return "text"
        noun = "an integer" if kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} in [{self.low}, {self.high}]"
        bounds = [f"{sign} {bound}" for sign, bound in ((">=", self.low), ("<=", self.high)) if bound is not None]
        return " ".join([noun, *bounds])

    def _invalid(self, value: Any) -> ConfigError:
        default = json.dumps(self.default) if isinstance(self.default, bool) else self.default
        return ConfigError(
            f"setting {self.name!r} must be {self.expected()}; got {value!r} "
            f"({type(value).__name__}), e.g. {self.name}={default} (the default)"
        )


@dataclass(frozen=True)
class Reference:
    """A paper, as BibTeX fields. Only fields read on the paper's own page or a bibliographic index are filled in;
    `note` says where a field's source is weaker (e.g. authors from the authors' lab page only)."""

    key: str
    entry: str  # "inproceedings", "article" or "misc" (an arXiv preprint)
    title: str
    authors: tuple[str, ...]  # "Last, First"
    year: int
    venue: str = ""  # the booktitle of an inproceedings, the journal of an article
    volume: str = ""
    pages: str = ""
    eprint: str = ""  # arXiv id
    doi: str = ""
    url: str = ""
    note: str = ""

    def bibtex(self) -> str:
        venue_field = {"inproceedings": "booktitle", "article": "journal"}.get(self.entry)
        fields = [
            ("title", "{" + self.title + "}"),  # inner braces keep the title's capitals
            ("author", " and ".join(self.authors)),
            ("year", str(self.year)),
            (venue_field or "", self.venue),
            ("volume", self.volume),
            ("pages", self.pages),
            ("eprint", self.eprint),
            ("archivePrefix", "arXiv" if self.eprint else ""),
            ("doi", self.doi),
            ("url", self.url),
            ("note", self.note),
        ]
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if name and value)
        return f"@{self.entry}{{{self.key},\n{body}\n}}"


@dataclass(frozen=True)
class MethodCard:
    """The method's documentation, shown by the CLI and the app."""

    title: str
    idea: str
    formula: str
    paper: str
    settings: tuple[Setting, ...] = ()
    from_paper: tuple[str, ...] = ()  # what the implementation takes from the paper (or its code)
    our_choices: tuple[str, ...] = ()
    approximation: bool = False  # True when the paper's details are unknown and we designed them
    references: tuple[Reference, ...] = ()  # the papers `paper` names, for citing (BibTeX)

    def to_markdown(self, name: str) -> str:
        lines = [
            f"### {self.title} (`{name}`)",
            "",
            self.idea,
            "",
            f"**Loss / rule:** {self.formula}",
            "",
            f"**Paper:** {self.paper}",
        ]
        if self.approximation:
            lines += ["", "**Approximation:** the paper's details are not public; the design below is ours."]
        if self.settings:
            lines += ["", "| setting | default | meaning |", "|---|---|---|"]
            lines += [f"| `{s.name}` | `{s.default}` | {s.help} |" for s in self.settings]
        if self.from_paper:
            lines += ["", "**Following the paper:**"] + [f"- {c}" for c in self.from_paper]
        if self.our_choices:
            lines += ["", "**Our choices where the paper is silent:**"] + [f"- {c}" for c in self.our_choices]
        if self.references:
            lines += ["", "**BibTeX:**", "", "```bibtex", *[r.bibtex() for r in self.references], "```"]
        return "\n".join(lines)


@dataclass(frozen=True)
class Stage:
    """A training stage. `trainable` = "all" or "head" (backbone frozen, in eval mode)."""

    name: str
    epochs: int
    sampler: str = "instance"
    trainable: str = "all"
    reset_head: bool = False
    # A representation stage is skipped when the run starts from another run's weights.
    representation: bool = True
    # The stage's optimiser and base learning rate; None = the run's (LWS trains its scales with SGD at 0.2).
    optimizer: str | None = None
    lr: float | None = None


@dataclass
class TrainInfo:
    """What a method may know about the run when it sets up."""

    class_counts: torch.Tensor  # training images per class (after imbalance), on the device
    train_labels: torch.Tensor  # (N,) on the device
    epochs: int
    steps_per_epoch: int
    device: torch.device
    train_images: torch.Tensor | None = None  # (N, C, H, W) uint8 on the device; None outside training
    init_from: str | None = None  # the finished run whose weights started this one
    data_recipe: dict[str, Any] | None = None  # data, data_path, data_options, image_size, split_seed, task

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


@dataclass
class Batch:
    """One training batch: raw uint8 images, their augmented view x, labels and dataset indices."""

    raw: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    epoch: int
    step: int
    stage: Stage
    generator: torch.Generator
    augment: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)


class Method:
    """Base class: plain cross-entropy, one stage, instance sampling."""

    name: ClassVar[str]
    card: ClassVar[MethodCard]
    # One-class methods learn "normal" (class 0 of a binary task) and score how far an image is from it.
    needs_binary_task: ClassVar[bool] = False

    def __init__(self, **settings: Any) -> None:
        known = {s.name: s for s in self.card.settings}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has no setting(s) {unknown}; its settings are {sorted(known) or 'none'}"
            )
        self.settings = {name: s.coerce(settings.get(name, s.default)) for name, s in known.items()}
        self.aux = nn.ModuleDict()
        self._frozen: set[str] = set()

    def add_frozen(self, name: str, module: nn.Module) -> nn.Module:
        """Keep `module` with the run (device, checkpoints) without training it, e.g. an EMA teacher."""
        module.requires_grad_(False)
        self.aux[name] = module
        self._frozen.add(name)
        return module

    def trainable_parameters(self, model: Classifier) -> list[nn.Parameter]:
        """The model's and the trainable auxiliary modules' parameters."""
        aux = [p for name, m in self.aux.items() if name not in self._frozen for p in m.parameters()]
        return [*model.parameters(), *aux]

    def check_data(self, data_recipe: dict[str, Any]) -> None:
        """Raise ConfigError when the settings do not fit the run's data (`TrainConfig.data_recipe()`)."""

    def check_ready(self) -> None:
        """Raise ConfigError when something the settings name is missing (not called for finished runs)."""

    def check_training_set(self, data_recipe: dict[str, Any], train_index: np.ndarray) -> None:
        """Raise ConfigError when what the settings name does not suit the run's training images: `data_recipe` is
        `TrainConfig.data_recipe()`, `train_index` the images' indices in the train split (not called for finished
        runs)."""

    def settings_for_data(
        self, data_recipe: dict[str, Any], train_index: Callable[[], np.ndarray]
    ) -> tuple[dict[str, Any], str | None]:
        """Settings left empty that the method picks from the run's data (IOIS: the generator trained on exactly
        these training images), with a line saying what it picked and why; ({}, None) when nothing is left to pick.
        Called before the run is created, so its config records the pick. `train_index()` gives the kept images'
        indices in the train split (loads the data)."""
        return {}, None

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        self.info = info

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("train", epochs)]

    def stage_parameters(self, model: Classifier, stage: Stage) -> Iterable[nn.Parameter]:
        if stage.trainable == "head":
            return list(model.head.parameters())
        return self.trainable_parameters(model)

    def on_epoch_start(self, model: Classifier, epoch: int, stage: Stage) -> None:
        pass

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch.x), batch.y)

    def after_step(self, model: Classifier) -> None:
        pass

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities over the data set's classes (float64, so that confident scores do not tie); methods whose
        head predicts something else (levels, a distance) convert here."""
        return torch.softmax(logits.double(), dim=1)

    def epoch_log(self) -> dict[str, Any]:
        """JSON-able facts about the epoch just trained, stored in the run's history under "method"."""
        return {}

    def finalize(self, model: Classifier, val_features: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> dict:
        """Post-hoc change to the best model; returns what it chose (recorded with the run).

        `val_features()` returns the validation embeddings (N, D) and labels (N,).
        """
        return {}

    def extra_state(self) -> dict:
        """JSON-able state beyond tensors in self.aux, saved for resume."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


METHODS: Registry[type[Method]] = Registry("method")


register_method = METHODS.register_named  # `@register_method("focal")` adds the method to the registry


def create_method(name: str, **settings: Any) -> Method:
    """Instantiate a registered method with validated settings."""
    return METHODS.get(name)(**settings)


def normalised(weights: torch.Tensor) -> torch.Tensor:
    """Scale class weights to sum to the number of classes (so the loss scale stays comparable)."""
    return weights / weights.sum() * len(weights)

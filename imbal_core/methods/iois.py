"""IOIS — iterative online image synthesis with accuracy-adaptive sampling (Li et al., MICCAI 2024).

Three steps repeat every epoch after a warm-up on real data:
1. train the classifier (on real + the epoch's synthetic images), tallying per-class training
   accuracy on the real images as it goes;
2. AAS: split a budget B (a share of the training set) across classes, more to the classes whose
   training accuracy was low in the previous epoch;
3. OIS: synthesise that many images per class with a class-conditional diffusion model, either
   fresh every epoch (`online`) or drawn from one pool generated when the warm-up ends (`pool`,
   for CPU budgets); candidates are picked for the *current* classifier (`selection`).
Ablations: allocation=inverse_frequency (AAS off), ois=false (real images only, the allocation
used as class weights in the CE).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import resize_tensor
from ..engine.augment import to_float
from ..errors import ConfigError
from ..models import Classifier
from ..synth.diffusion import DiffusionModel, load_diffusion_model, sdedit_starts
from ..synth.generators import (
    data_mismatch,
    generator_train_index,
    list_generators,
    load_generator_info,
    resolve_generator,
)
from .base import Batch, Method, MethodCard, Reference, Setting, Stage, TrainInfo, register_method

LI_2024 = Reference(
    key="li2024iois",
    entry="inproceedings",
    title="Iterative Online Image Synthesis via Diffusion Model for Imbalanced Classification",
    authors=("Li, Shuhan", "Lin, Yi", "Chen, Hao", "Cheng, Kwang-Ting"),
    year=2024,
    venue="Medical Image Computing and Computer Assisted Intervention (MICCAI)",
    eprint="2403.08407",
)

ALLOCATIONS = ("accuracy", "inverse_frequency")
MODES = ("pool", "online")
SELECTIONS = ("random", "hardest", "loss_weighted")
ACCURACY_EPS = 0.05  # keeps a class at 100 % training accuracy from getting weight exactly 0
SCORE_CHUNK = 512


def split_budget(weights: torch.Tensor, budget: int, floor: float) -> torch.Tensor:
    """Integer counts per class, summing exactly to `budget`, proportional to

        share_c = floor / C + (1 - floor) * w_c / sum(w)

    (every class gets at least floor x the equal share). Largest-remainder rounding.
    """
    if budget < 0 or not 0.0 <= floor <= 1.0:
        raise ConfigError(f"budget must be >= 0 and floor in [0, 1]; got {budget}, {floor}")
    weights = weights.double().clamp(min=0)
    total = weights.sum()
    normalised = weights / total if total > 0 else torch.full_like(weights, 1 / len(weights))
    share = floor / len(weights) + (1 - floor) * normalised
    exact = share * budget
    counts = exact.floor().long()
    remainder = budget - int(counts.sum())
    if remainder > 0:  # the largest fractional parts get one more (ties: lower class index first)
        order = torch.argsort(-(exact - counts), stable=True)
        counts[order[:remainder]] += 1
    return counts


def aas_allocation(train_accuracy: torch.Tensor, budget: int, gamma: float, floor: float) -> torch.Tensor:
    """AAS: w_c = (1 - a_c + eps)^gamma, a_c the class's training accuracy in the last epoch."""
    return split_budget((1 - train_accuracy.double() + ACCURACY_EPS) ** gamma, budget, floor)


def inverse_frequency_allocation(class_counts: torch.Tensor, budget: int, floor: float) -> torch.Tensor:
    """The AAS-off ablation: w_c = 1 / n_c, whatever the classifier does."""
    return split_budget(1.0 / class_counts.double().clamp(min=1), budget, floor)


@register_method("iois")
class IOIS(Method):
    card = MethodCard(
        title="IOIS (online diffusion synthesis + accuracy-adaptive sampling)",
        idea="After a warm-up on real images, every epoch gives the classifier extra synthetic images made by a "
        "class-conditional diffusion model. How many each class gets follows its training accuracy in the last "
        "epoch (AAS): classes the classifier still gets wrong receive more. The synthetic images are chosen for the "
        "current classifier (e.g. the candidates it finds hardest).",
        formula="n_c = B · (floor/C + (1 − floor) · w_c / Σw),  w_c = (1 − a_c + 0.05)^γ;  "
        "L = mean over real ∪ synthetic of CE (synthetic weighted w_syn)",
        paper="Li, Lin, Chen, Cheng, 'Iterative Online Image Synthesis via Diffusion Model for Imbalanced "
        "Classification', MICCAI 2024, arXiv 2403.08407 (architecture, budget and AAS formula not public).",
        references=(LI_2024,),
        approximation=True,
        settings=(
            Setting(
                "generator",
                "",
                "diffusion model name (see `generators`) or .safetensors path, trained on this run's training "
                "images (`diffusion-train`); empty: the one that learnt from exactly them, picked and recorded when "
                "the run is made",
            ),
            Setting("warmup_share", 0.3, "share of the epochs on real images only (at least 1)", low=0.0, high=0.9),
            Setting("budget", 0.3, "B: synthetic images per epoch as a share of the training set", low=0.0, high=4.0),
            Setting(
                "allocation",
                "accuracy",
                "accuracy: AAS; inverse_frequency: the AAS-off ablation (w_c = 1/n_c)",
                choices=ALLOCATIONS,
            ),
            Setting("gamma", 1.0, "γ: how sharply AAS favours low-accuracy classes", low=0.0, high=10.0),
            Setting("floor", 0.1, "every class gets at least floor × the equal share B/C", low=0.0, high=1.0),
            Setting(
                "ois",
                True,
                "false: the OIS-off ablation — no synthetic images, the allocation becomes CE class weights",
            ),
            Setting(
                "mode",
                "pool",
                "pool: one pool generated when the warm-up ends, drawn from every epoch (CPU); "
                "online: fresh images every epoch (GPU)",
                choices=MODES,
            ),
            Setting("pool_per_class", 128, "pool mode: candidates generated per class", low=1, high=100_000),
            Setting(
                "selection",
                "random",
                "which candidates the classifier gets: random, hardest (lowest probability "
                "of their class under the current classifier), loss_weighted (drawn ∝ 1 − p + 0.05)",
                choices=SELECTIONS,
            ),
            Setting(
                "candidates",
                2.0,
                "online mode with a selection other than random: candidates made per image kept",
                low=1.0,
                high=10.0,
            ),
            Setting("guidance", 2.0, "classifier-free guidance scale (1 = none)", low=0.0, high=20.0),
            Setting("steps", 25, "DDIM steps", low=1, high=1000),
            Setting(
                "sdedit_strength",
                1.0,
                "1: start from pure noise; < 1: SDEdit from a real image of the class "
                "noised to this share of the schedule",
                low=0.05,
                high=1.0,
            ),
            Setting(
                "synthetic_weight", 1.0, "w_syn: weight of each synthetic image in the CE mean", low=0.0, high=10.0
            ),
        ),
        from_paper=(
            "Three steps performed iteratively during training: train the classifier, decide the class distribution "
            "of the synthetic images from per-class training accuracy (AAS: more to classes with low accuracy), "
            "synthesise them with a diffusion model (OIS) and train on them with the real images.",
            "Synthetic images join training online, tailored to the current state of the classifier.",
        ),
        our_choices=(
            "The diffusion model is ours: a small class-conditional diffusers UNet2DModel (0.3 M parameters at width "
            "16) trained on the run's training images with a cosine DDPM schedule and v-prediction, label dropout 0.1 "
            "for classifier-free guidance and EMA weights; DDIM sampling, 25 steps, guidance 2.",
            "AAS formula: w_c = (1 − a_c + 0.05)^γ with a floor share per class; a_c is the running accuracy on the "
            "real training images of the previous epoch (with augmentation, as the classifier trains).",
            "Budget B = 0.3 × the training set per epoch; warm-up = 30 % of the epochs on real images.",
            "'Tailored to the classifier' made concrete as a selection rule over candidates scored by the current "
            "classifier (random / hardest / loss-weighted); random is the default: hardest did not beat it on "
            "HAM10000 at a 4-epoch budget, nor did AAS beat inverse-frequency allocation (results/ham10000_iois.md).",
            "Pool mode (default, for CPU): one pool of pool_per_class candidates per class generated when the warm-up "
            "ends; each epoch draws its allocation from it (re-scored by the current classifier). Online mode makes "
            "fresh images every epoch.",
            "Synthetic images get the same random augmentation as real ones and count in one CE mean with them.",
            "The generator must have learnt only from this run's training images (checked before training).",
            "A generator made at another image size than the run's (e.g. the shipped 28 px one for a 128 px run) is "
            "used with its samples resized to the run's size (antialiased bilinear; SDEdit's starting images are "
            "resized to the generator's size first); each epoch's history says so (`synthetic_resized`).",
        ),
    )

    def check_ready(self) -> None:
        if not self.settings["ois"]:
            return
        info = load_generator_info(resolve_generator(self.settings["generator"], "diffusion"))
        # A run names its generator, not a version of it: one still training (or stopped early) would be replaced
        # under the run's name by its finished file later, and the run could not be told apart.
        if info.status != "finished":
            recipe = ", ".join(f"{k} {info.config.get(k)}" for k in ("data", "image_size", "ratio", "seed", "epochs"))
            raise ConfigError(
                f"diffusion generator {info.name!r} is not finished ({len(info.history)} of {info.config['epochs']} "
                f"epochs; {recipe}): if its training is still running, wait for it to end; if it was stopped, run "
                "the `diffusion-train` command that made it again with `--resume` (its whole recipe: "
                "`python -m imbal_core generators`); or name a finished generator"
            )

    def settings_for_data(
        self, data_recipe: dict[str, Any], train_index: Callable[[], np.ndarray]
    ) -> tuple[dict[str, Any], str | None]:
        """No generator named: the finished one of this data and size that learnt from exactly the run's training
        images (its ratio, profile and seed), yours before shipped ones; else one that learnt from part of them
        (no leak), the most images first."""
        if not self.settings["ois"] or self.settings["generator"]:
            return {}, None
        kept = train_index()
        fitting = []
        for info in list_generators("diffusion"):  # yours first, then pretrained/
            learnt = generator_train_index(info.path)
            if info.status != "finished" or learnt is None or data_mismatch(info.config, data_recipe) is not None:
                continue
            if np.isin(learnt, kept).all():
                fitting.append((len(learnt) == len(kept), len(learnt), info))
        if not fitting:
            raise ConfigError(
                f"no diffusion generator named, and none of {data_recipe['data']} at {data_recipe['image_size']} px "
                f"learnt only from this run's {len(kept)} training images: train one with `python -m imbal_core "
                "diffusion-train` and the run's data, --ratio and --seed, or name one with --set generator=NAME "
                "(`python -m imbal_core generators` lists them)"
            )
        exact, count, info = max(fitting, key=lambda fit: fit[:2])  # max keeps the first of equals: yours
        if exact:
            others = sum(1 for fit in fitting if fit[0]) - 1
            note = f"generator: {info.name} ({info.source}), trained on exactly this run's {count} training images"
            note += f" ({others} other(s) were too; yours come first, then by name)" if others else ""
        else:
            note = (
                f"generator: {info.name} ({info.source}), trained on {count} of this run's {len(kept)} training "
                "images (none was trained on exactly them; it learnt from no image this run leaves out)"
            )
        return {"generator": info.name}, note

    def check_training_set(self, data_recipe: dict[str, Any], train_index: np.ndarray) -> None:
        """Refuse a generator that learnt from other data, or from images this run may not train on."""
        if not self.settings["ois"]:
            return
        path = resolve_generator(self.settings["generator"], "diffusion")
        # The same images at another size are the same data: the samples are resized to the run's size.
        mismatch = data_mismatch(load_generator_info(path).config, data_recipe, ignore=("image_size",))
        if mismatch:
            raise ConfigError(
                f"generator {path.stem!r} was trained on other data than this run ({mismatch}); train "
                "one on this run's data with `diffusion-train`"
            )
        learnt = generator_train_index(path)
        if learnt is not None:
            unseen = np.setdiff1d(learnt, train_index).size
            if unseen:
                raise ConfigError(
                    f"generator {path.stem!r} learnt from {unseen} training images this run leaves out by its "
                    f"imbalance profile (it would leak them through synthetic images); train one with the run's "
                    f"--ratio, --profile and --seed: `diffusion-train --ratio ... --seed ...`"
                )

    def stages(self, epochs: int) -> list[Stage]:
        warmup = min(epochs - 1, max(1, round(self.settings["warmup_share"] * epochs))) if epochs > 1 else 0
        synthesis = Stage("synthesis", epochs - warmup, representation=False)
        return [Stage("warmup", warmup), synthesis] if warmup else [synthesis]

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        num_classes = info.num_classes
        # Per-class hits and images on the real training images during the epoch; AAS reads the last epoch's.
        self.correct = torch.zeros(num_classes, dtype=torch.long, device=info.device)
        self.seen = torch.zeros(num_classes, dtype=torch.long, device=info.device)
        self.allocation = torch.zeros(num_classes, dtype=torch.long)
        self.synthetic: tuple[torch.Tensor, torch.Tensor] | None = None  # (uint8 images, labels) of this epoch
        self.class_weights: torch.Tensor | None = None
        self.pool: tuple[torch.Tensor, torch.Tensor] | None = None
        self.pool_seed: int | None = None
        self.generator_model: DiffusionModel | None = None

    # ---- the loop's hooks --------------------------------------------------------------------

    def training_accuracy(self) -> torch.Tensor | None:
        """Per-class accuracy on the real training images in the epoch tallied so far (None before any)."""
        if int(self.seen.sum()) == 0:
            return None
        return (self.correct.double() / self.seen.clamp(min=1)).cpu()

    def on_epoch_start(self, model: Classifier, epoch: int, stage: Stage) -> None:
        last_accuracy = self.training_accuracy()  # of the previous epoch
        self.correct.zero_()
        self.seen.zero_()
        self.synthetic, self.class_weights = None, None
        self.allocation = torch.zeros(self.info.num_classes, dtype=torch.long)
        if stage.name != "synthesis":
            return
        budget = round(self.settings["budget"] * len(self.info.train_labels))
        if self.settings["allocation"] == "accuracy" and last_accuracy is not None:
            allocation = aas_allocation(last_accuracy, budget, self.settings["gamma"], self.settings["floor"])
        else:  # AAS off (or no accuracy measured yet, e.g. with no warm-up)
            allocation = inverse_frequency_allocation(self.info.class_counts.cpu(), budget, self.settings["floor"])
        allocation = allocation * (self.info.class_counts.cpu() > 0)  # a class with no image: nothing to learn from
        self.allocation = allocation
        if not self.settings["ois"]:
            weights = allocation.double() + 1  # + 1: no class weighs 0, even with a tiny budget
            self.class_weights = (weights / weights.sum() * len(weights)).float().to(self.info.device)
            return
        # The engine seeded the global generator for this epoch, so draws are reproducible on resume.
        generator = torch.Generator(device="cpu").manual_seed(int(torch.randint(2**62, (1,))))
        images, labels = self._synthesise(model, allocation, generator)
        order = torch.randperm(len(labels), generator=generator).to(labels.device)
        self.synthetic = (images[order], labels[order])

    def _generator(self) -> DiffusionModel:
        if self.generator_model is None:
            self.generator_model = load_diffusion_model(self.settings["generator"], self.info.device)
        return self.generator_model

    def _synthesise(
        self, model: Classifier, allocation: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's synthetic images (uint8) and labels: `allocation[c]` of each class c."""
        if self.settings["mode"] == "pool":
            if self.pool is None:
                if self.pool_seed is None:
                    self.pool_seed = int(torch.randint(2**62, (1,), generator=generator))
                per_class = self.settings["pool_per_class"] * (self.info.class_counts.cpu() > 0).long()
                self.pool = self._generate(per_class, torch.Generator().manual_seed(self.pool_seed))
            candidates = self.pool
        else:
            factor = 1.0 if self.settings["selection"] == "random" else self.settings["candidates"]
            candidates = self._generate((allocation.double() * factor).ceil().long(), generator)
        return self._select(model, candidates, allocation, generator)

    def _generate(self, per_class: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.info.device
        labels = torch.repeat_interleave(torch.arange(len(per_class)), per_class).to(device)
        init = None
        generator_size = self._generator().image_size
        if self.settings["sdedit_strength"] < 1.0:
            init = sdedit_starts(self.info.train_images, self.info.train_labels, labels, generator)
            init = resize_tensor(init, generator_size)
        images, _ = self._generator().sample(
            labels,
            steps=self.settings["steps"],
            guidance=self.settings["guidance"],
            generator=generator,
            init_images=init,
            strength=self.settings["sdedit_strength"],
        )
        assert self.info.train_images is not None, "synthesis runs in training, which has the training images"
        return resize_tensor(images, self.info.train_images.shape[-1]), labels

    def _select(
        self,
        model: Classifier,
        candidates: tuple[torch.Tensor, torch.Tensor],
        allocation: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = candidates
        selection = self.settings["selection"]
        if selection != "random":
            p_class = self._class_probability(model, images, labels).cpu()
        chosen = []
        for c, n in enumerate(allocation.tolist()):
            own = torch.nonzero(labels.cpu() == c).flatten()
            if n == 0 or len(own) == 0:
                continue
            if selection == "random":
                ranked = own[torch.randperm(len(own), generator=generator)]
            elif selection == "hardest":
                ranked = own[torch.argsort(p_class[own], stable=True)]
            else:
                weights = 1 - p_class[own] + ACCURACY_EPS
                ranked = own[torch.multinomial(weights, len(own), replacement=False, generator=generator)]
            chosen.append(ranked.repeat(math.ceil(n / len(own)))[:n])  # a small pool is cycled through
        index = torch.cat(chosen).to(labels.device) if chosen else labels.new_zeros(0)
        return images[index], labels[index]

    @torch.no_grad()
    def _class_probability(self, model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """p(intended class | image) under the current classifier."""
        was_training = model.training
        model.eval()
        probs = []
        for start in range(0, len(images), SCORE_CHUNK):
            logits = model(to_float(images[start : start + SCORE_CHUNK]).contiguous(memory_format=torch.channels_last))
            probs.append(torch.softmax(logits.float(), 1).gather(1, labels[start : start + SCORE_CHUNK, None])[:, 0])
        model.train(was_training)
        return torch.cat(probs) if probs else images.new_zeros(0, dtype=torch.float)

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        n_real = len(batch.y)
        x, y = batch.x, batch.y
        weights = torch.ones(n_real, device=y.device)
        if self.synthetic is not None:  # each step takes its share, so an epoch uses every synthetic image once
            per_step = math.ceil(len(self.synthetic[1]) / self.info.steps_per_epoch)
            step = batch.step % self.info.steps_per_epoch
            part = slice(step * per_step, (step + 1) * per_step)
            synthetic_images, synthetic_labels = self.synthetic[0][part], self.synthetic[1][part]
            if len(synthetic_labels):
                x = torch.cat([x, batch.augment(synthetic_images)])
                y = torch.cat([y, synthetic_labels])
                weights = torch.cat(
                    [weights, torch.full((len(synthetic_labels),), self.settings["synthetic_weight"], device=y.device)]
                )
        logits = model(x)
        with torch.no_grad():  # AAS reads the accuracy on real images only
            hits = logits[:n_real].argmax(1) == batch.y
            self.correct += torch.bincount(batch.y[hits], minlength=self.info.num_classes)
            self.seen += torch.bincount(batch.y, minlength=self.info.num_classes)
        if self.class_weights is not None:
            return F.cross_entropy(logits, y, weight=self.class_weights.to(logits.dtype))
        per_image = F.cross_entropy(logits, y, reduction="none")
        return (per_image * weights).sum() / weights.sum()

    def epoch_log(self) -> dict[str, Any]:
        accuracy = self.training_accuracy()
        made = self.synthetic is not None
        log = {
            "train_accuracy": [] if accuracy is None else [round(float(a), 4) for a in accuracy],
            "synthetic": [int(n) if made else 0 for n in self.allocation],
        }
        if self.class_weights is not None:  # the OIS-off ablation: the allocation became class weights
            log["class_weights"] = [round(float(w), 4) for w in self.class_weights]
        size = self.info.train_images.shape[-1] if self.info.train_images is not None else None
        if made and self.generator_model is not None and self.generator_model.image_size != size:
            log["synthetic_resized"] = f"{self.generator_model.image_size} px -> {size} px"
        return log

    def extra_state(self) -> dict:
        return {"correct": self.correct.tolist(), "seen": self.seen.tolist(), "pool_seed": self.pool_seed}

    def load_extra_state(self, state: dict) -> None:
        self.correct.copy_(torch.tensor(state["correct"]))
        self.seen.copy_(torch.tensor(state["seen"]))
        self.pool_seed = state["pool_seed"]

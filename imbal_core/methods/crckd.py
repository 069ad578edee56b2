"""CRCKD — Categorical Relation-preserving Contrastive Knowledge Distillation (Xing et al., MICCAI 2021).

A mean teacher (EMA of the student) sees a second view of each image, turned and flipped at random. On top of
weighted CE and mean-teacher consistency, two distillation terms transfer the teacher's knowledge:
CCD (class-guided contrastive distillation: same-class positives, other-class negatives drawn
from a memory bank of the other model, NCE, both directions) and CRP (the relation of each
embedding to the class centroids must match between teacher and student).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Classifier
from . import losses
from .base import Batch, Method, MethodCard, Reference, Setting, TrainInfo, register_method

XING_2021 = Reference(
    key="xing2021crckd",
    entry="inproceedings",
    title="Categorical Relation-Preserving Contrastive Knowledge Distillation for Medical Image Classification",
    authors=("Xing, Xiaohan", "Hou, Yuenan", "Li, Hang", "Yuan, Yixuan", "Li, Hongsheng", "Meng, Max Q.-H."),
    year=2021,
    venue="Medical Image Computing and Computer Assisted Intervention (MICCAI)",
    eprint="2107.03225",
)

FEATURE_DIM = 128
ABLATIONS = ("mt", "mt_ccd", "mt_crp", "full")


class FeatureHead(nn.Module):
    """backbone embedding -> Linear(d, 128) "feature" -> Linear(128, C), as in the public code."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.feature = nn.Linear(embed_dim, FEATURE_DIM)
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature(embedding))


class MemoryBank(nn.Module):
    """N x 128 L2-normalised entries, updated with momentum; a buffer, so it is checkpointed."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        super().__init__()
        start = torch.randn(size, FEATURE_DIM, generator=generator, device=generator.device)
        self.register_buffer("entries", F.normalize(start, dim=1))

    @torch.no_grad()
    def update(self, index: torch.Tensor, values: torch.Tensor, momentum: float) -> None:
        mixed = momentum * self.entries[index] + (1 - momentum) * values.float()
        self.entries[index] = F.normalize(mixed, dim=1)


class ClassIndex:
    """Draws same-class positives and other-class negatives for a batch, vectorised.

    Training indices are sorted by class; class c occupies [start_c, start_c + n_c). A negative
    for class c is a uniform draw from the N - n_c positions outside that block.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int) -> None:
        self.sorted = torch.argsort(labels, stable=True)
        self.counts = torch.bincount(labels, minlength=num_classes)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.total = len(labels)

    def positives(self, index: torch.Tensor, y: torch.Tensor, p: int, generator: torch.Generator) -> torch.Tensor:
        """(B, p): the sample itself first, then p - 1 draws (with replacement) from its class."""
        draws = (torch.rand(len(y), p - 1, generator=generator, device=y.device) * self.counts[y, None]).long()
        others = self.sorted[self.starts[y, None] + draws]
        return torch.cat([index[:, None], others], dim=1)

    def negatives(self, y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """(B, k) draws (with replacement) from the classes other than each anchor's."""
        room = (self.total - self.counts[y])[:, None]
        r = (torch.rand(len(y), k, generator=generator, device=y.device) * room).long()
        r = r + (r >= self.starts[y, None]) * self.counts[y, None]  # skip the anchor's class block
        return self.sorted[r]

    def max_negatives(self) -> int:
        present = self.counts[self.counts > 0]
        return int(self.total - present.max()) if len(present) else 0


def nce_loss(scores: torch.Tensor, num_positives: int, normaliser: float, num_data: int) -> torch.Tensor:
    """CRD's NCE loss with several positives: the first `num_positives` columns are positives.

    With P = exp(score) / Z and noise probability 1/N for each of K negatives:
    loss = mean_pos -log(P / (P + K/N)) + sum_neg -log((K/N) / (P + K/N)), averaged over the batch.
    """
    k = scores.shape[1] - num_positives
    noise = k / num_data
    prob = torch.exp(scores) / normaliser
    positive = -torch.log(prob[:, :num_positives] / (prob[:, :num_positives] + noise + 1e-7)).mean(dim=1)
    negative = -torch.log(noise / (prob[:, num_positives:] + noise + 1e-7)).sum(dim=1)
    return (positive + negative).mean()


def class_centroids(entries: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean of the ReLU'd bank entries per class, L2-normalised (C, 128)."""
    sums = torch.zeros(num_classes, entries.shape[1], device=entries.device).index_add_(0, labels, F.relu(entries))
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1)[:, None]
    return F.normalize(sums / counts, dim=1)


def relation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_centroids: torch.Tensor,
    teacher_centroids: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """CRP: KL(softmax(r_teacher) || softmax(r_student)), r = embedding . centroids^T / T.

    The teacher's relation is the target: it is detached (as in the public code), so CRP trains only the student
    side and does not pull the teacher's embedding head toward the student.
    """
    r_student = student.float() @ student_centroids.t() / temperature
    r_teacher = teacher.detach().float() @ teacher_centroids.t() / temperature
    return F.kl_div(F.log_softmax(r_student, 1), F.log_softmax(r_teacher, 1), reduction="batchmean", log_target=True)


def rotate_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The public code's extra transform of the teacher's view: per image a vertical flip with probability 1/2,
    then k quarter turns, k uniform in 0..3 (square images, as the data sources make)."""
    flip = torch.rand(len(images), generator=generator, device=images.device) < 0.5
    out = torch.where(flip[:, None, None, None], images.flip(2), images)
    turns = torch.randint(0, 4, (len(images),), generator=generator, device=images.device)
    for k in (1, 2, 3):
        out[turns == k] = torch.rot90(out[turns == k], k, dims=(2, 3))
    return out


def sigmoid_rampup(epoch: int, start: int, length: int) -> float:
    """0 before `start`, then exp(-5 (1 - t)^2) with t rising from 0 to 1 over `length` epochs."""
    if epoch < start:
        return 0.0
    t = min(1.0, (epoch - start + 1) / max(length, 1))
    return math.exp(-5.0 * (1.0 - t) ** 2)


@register_method("crckd")
class CRCKD(Method):
    card = MethodCard(
        title="CRCKD (contrastive + relation-preserving distillation)",
        idea="A mean teacher (EMA of the student) on a second view of each image; the student learns with "
        "class-weighted CE, mean-teacher consistency, class-guided contrastive distillation (CCD: pull "
        "same-class embeddings of the other model close, push other classes away, NCE against a memory bank) "
        "and categorical relation preservation (CRP: match each embedding's similarities to the class centroids).",
        formula="before the ramp-up start: L = CE_w + w_CCD,warmup L_CCD;  from it: L = CE_w + λ_MT(e) KL(p_t || p_s) "
        "+ w_CCD L_CCD + w_CRP KL(softmax(r_t) || softmax(r_s)),  L_CCD = NCE(s→t bank) + NCE(t→s bank),"
        "  w_c = N / n_c,  r = v · A^T / τ_CRP (r_t detached)",
        paper="Xing et al., Categorical Relation-Preserving Contrastive Knowledge Distillation for Medical Image "
        "Classification, MICCAI 2021 (arXiv 2107.03225); details read from the public code.",
        references=(XING_2021,),
        settings=(
            Setting(
                "ablation", "full", "which terms: mt (CE_w + mean teacher), mt_ccd, mt_crp, full", choices=ABLATIONS
            ),
            Setting("consistency", 1.0, "maximum weight λ_MT of the mean-teacher KL", low=0.0, high=100.0),
            Setting(
                "w_ccd",
                0.01,
                "weight of CCD from the ramp-up start (the public code's effective 0.1 x 0.1)",
                low=0.0,
                high=10.0,
            ),
            Setting(
                "w_ccd_warmup",
                0.1,
                "weight of CCD before the ramp-up start, its only distillation term then (public code: 0.1)",
                low=0.0,
                high=10.0,
            ),
            Setting("w_crp", 1.0, "weight of CRP", low=0.0, high=10.0),
            Setting("nce_t", 0.07, "CCD temperature", low=0.01, high=1.0),
            Setting("crp_t", 0.07, "CRP temperature", low=0.01, high=1.0),
            Setting("positives", 20, "P: same-class positives per anchor (the anchor included)", low=1, high=1000),
            Setting(
                "negatives",
                4096,
                "K: other-class negatives per anchor (shrinks to what the data has)",
                low=1,
                high=65536,
            ),
            Setting("bank_momentum", 0.5, "memory-bank momentum", low=0.0, high=0.999),
            Setting("ema_decay", 0.99, "teacher EMA decay cap: min(1 - 1/(step+1), this)", low=0.0, high=0.99999),
            Setting(
                "rampup_start",
                0.25,
                "fraction of epochs before the distillation terms start (code: 20 of 80)",
                low=0.0,
                high=1.0,
            ),
            Setting(
                "rampup_length", 0.375, "fraction of epochs of the sigmoid ramp-up (code: 30 of 80)", low=0.0, high=1.0
            ),
        ),
        from_paper=(
            "Mean teacher (EMA) on a second view that also gets a random vertical flip and quarter turns; "
            "class-weighted CE; CCD with two 128-d embedding heads, memory banks (momentum 0.5), P = 20 same-class "
            "positives, K = 4096 negatives, temperature 0.07, NCE normaliser fixed at the first batch, both "
            "directions; CRP over ReLU'd bank centroids at 0.07 with the teacher's relation detached (from the "
            "public code).",
            "CCD and the memory banks run from the first step; the mean-teacher and CRP terms join at the ramp-up "
            "start (the code's epoch 20), so Z is fixed at the first batch and CRP's first centroids come from banks "
            "filled by the warm-up epochs.",
            "CCD weights 0.1 before the ramp-up start and 0.01 after: the code multiplies CCD by its weight 0.1 once "
            "before epoch 20 and twice after. We keep these effective weights as defaults because they are what the "
            "code runs; w_ccd = 0.1 gives the single weight 0.1 its README names.",
            "w_CRP 1.0 and the sigmoid ramp-up of the mean-teacher term (public code).",
        ),
        our_choices=(
            "Schedule scaled to the run: the code's epoch 20 of 80 and 30-epoch ramp become fractions of the epochs.",
            "λ_MT ramps from the ramp-up start, reaching 1 after rampup_length; the code's ramp counts from epoch 0, "
            "so its λ_MT is already 0.57 when the term switches on at epoch 20 and reaches 1 at epoch 30.",
            "The CCD and CRP weights do not ramp.",
            "The teacher's extra flip and turns change nothing in distribution when the engine's augmentation is on "
            "(it already draws flips and quarter turns); they matter when augmentation is off.",
            "With P positives, the NCE loss averages over positives and sums over negatives (CRD has one positive).",
            "CRP compares each model's embedding with its own bank's centroids.",
            "Optimiser and learning rate are the engine's (AdamW 1e-3, cosine), not the code's Adam 1e-4 "
            "one-cycle; backbones are trained from scratch at small sizes.",
            "Evaluation uses the student.",
            "Class weights w_c = N / n_c are scaled to sum to C (same ratios as the code).",
        ),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        model.head = FeatureHead(model.embed_dim, info.num_classes).to(info.device)
        generator = torch.Generator(device=info.device).manual_seed(0)
        self.add_frozen("teacher", copy.deepcopy(model))
        self.add_frozen("student_bank", MemoryBank(len(info.train_labels), generator).to(info.device))
        self.add_frozen("teacher_bank", MemoryBank(len(info.train_labels), generator).to(info.device))
        self.aux["student_embed"] = nn.Linear(FEATURE_DIM, FEATURE_DIM)
        self.aux["teacher_embed"] = nn.Linear(FEATURE_DIM, FEATURE_DIM)
        self.aux.to(info.device)
        self.weight = losses.inverse_frequency_weights(info.class_counts)
        self.classes = ClassIndex(info.train_labels, info.num_classes)
        self.num_negatives = min(self.settings["negatives"], self.classes.max_negatives())
        self.ramp_start = round(self.settings["rampup_start"] * info.epochs)
        self.ramp_length = max(1, round(self.settings["rampup_length"] * info.epochs))
        self.normalisers: dict[str, float] = {}
        self.steps_done = 0
        self.lambda_mt = 0.0
        self.distilling = False  # from the ramp-up start: mean teacher and CRP join CCD
        self.pending_bank_update: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def on_epoch_start(self, model: Classifier, epoch: int, stage) -> None:
        self.distilling = epoch >= self.ramp_start
        self.lambda_mt = sigmoid_rampup(epoch, self.ramp_start, self.ramp_length)

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        student_feature = model.head.feature(model.features(batch.x))
        logits = model.head.classifier(student_feature)
        loss = F.cross_entropy(logits, batch.y, weight=self.weight)
        ablation = self.settings["ablation"]
        # CCD and CRP read the memory banks, which are filled from the first step so that they hold embeddings
        # (not their random start) when CRP starts; the plain mean teacher needs nothing before the ramp-up.
        uses_banks = ablation != "mt"
        if not (self.distilling or uses_banks):
            return loss
        teacher: Classifier = self.aux["teacher"]
        with torch.no_grad():
            teacher_view = rotate_flip(batch.augment(batch.raw), batch.generator)
            teacher_feature = teacher.head.feature(teacher.features(teacher_view))
        if self.distilling:
            teacher_logits = teacher.head.classifier(teacher_feature)  # the teacher is frozen: no graph
            consistency = F.kl_div(
                F.log_softmax(logits, 1), F.log_softmax(teacher_logits, 1), reduction="batchmean", log_target=True
            )
            loss = loss + self.settings["consistency"] * self.lambda_mt * consistency
        if not uses_banks:
            return loss
        v_s = F.normalize(self.aux["student_embed"](student_feature), dim=1)
        v_t = F.normalize(self.aux["teacher_embed"](teacher_feature), dim=1)
        banks = self.aux["student_bank"], self.aux["teacher_bank"]
        if ablation in ("mt_ccd", "full"):
            positives = self.classes.positives(batch.index, batch.y, self.settings["positives"], batch.generator)
            negatives = self.classes.negatives(batch.y, self.num_negatives, batch.generator)
            candidates = torch.cat([positives, negatives], dim=1)
            ccd = self._nce("student", v_s, banks[1].entries, candidates) + self._nce(
                "teacher", v_t, banks[0].entries, candidates
            )
            loss = loss + self.settings["w_ccd" if self.distilling else "w_ccd_warmup"] * ccd
        if self.distilling and ablation in ("mt_crp", "full"):
            labels = self.info.train_labels
            centroids_s = class_centroids(banks[0].entries, labels, self.info.num_classes)
            centroids_t = class_centroids(banks[1].entries, labels, self.info.num_classes)
            loss = loss + self.settings["w_crp"] * relation_loss(
                v_s, v_t, centroids_s, centroids_t, self.settings["crp_t"]
            )
        # The banks are read by this step's graph, so they are updated after the optimizer step.
        self.pending_bank_update = (batch.index, v_s.detach(), v_t.detach())
        return loss

    def _nce(
        self, anchor_name: str, anchors: torch.Tensor, bank: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        # Scores against the whole bank in one matmul, then gather the drawn columns.
        scores = torch.gather(anchors.float() @ bank.t(), 1, candidates) / self.settings["nce_t"]
        if anchor_name not in self.normalisers:  # fixed from the first batch, as in CRD
            self.normalisers[anchor_name] = float(torch.exp(scores).mean().item() * len(bank))
        return nce_loss(scores, self.settings["positives"], self.normalisers[anchor_name], len(bank))

    @torch.no_grad()
    def after_step(self, model: Classifier) -> None:
        if self.pending_bank_update is not None:
            index, v_s, v_t = self.pending_bank_update
            self.aux["student_bank"].update(index, v_s, self.settings["bank_momentum"])
            self.aux["teacher_bank"].update(index, v_t, self.settings["bank_momentum"])
            self.pending_bank_update = None
        self.steps_done += 1
        decay = min(1 - 1 / (self.steps_done + 1), self.settings["ema_decay"])
        teacher_state = self.aux["teacher"].state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                teacher_state[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                teacher_state[name].copy_(value)

    def extra_state(self) -> dict:
        return {"normalisers": self.normalisers, "steps_done": self.steps_done}

    def load_extra_state(self, state: dict) -> None:
        self.normalisers = dict(state.get("normalisers", {}))
        self.steps_done = int(state.get("steps_done", 0))

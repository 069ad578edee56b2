"""Deep SVDD (Ruff et al., ICML 2018): map normal images close to a fixed centre; distance = abnormality.

One-class baseline for knowledge-guided one-class learning: it sees only normal images (class 0
of a binary task) and no knowledge at all.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..engine.augment import to_float
from ..models import Classifier
from .base import Batch, Method, MethodCard, Reference, Setting, Stage, TrainInfo, register_method

RUFF_2018 = Reference(
    key="ruff2018deep",
    entry="inproceedings",
    title="Deep One-Class Classification",
    authors=(
        "Ruff, Lukas",
        "Vandermeulen, Robert A.",
        'G{\\"o}rnitz, Nico',
        "Deecke, Lucas",
        "Siddiqui, Shoaib A.",
        "Binder, Alexander",
        'M{\\"u}ller, Emmanuel',
        "Kloft, Marius",
    ),
    year=2018,
    venue="Proceedings of the 35th International Conference on Machine Learning (ICML), PMLR 80",
    pages="4393--4402",
)

CENTRE_CHUNK = 512


class CentredProjection(nn.Module):
    """φ(x) − c: a bias-free projection of the embedding, minus the centre c (a buffer, saved with the model)."""

    def __init__(self, embed_dim: int, rep_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(embed_dim, rep_dim, bias=False)
        self.register_buffer("centre", torch.zeros(rep_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(features) - self.centre


@register_method("deep_svdd")
class DeepSVDD(Method):
    needs_binary_task = True
    card = MethodCard(
        title="Deep SVDD (one-class baseline)",
        idea="Learn only from normal images: pull their embeddings toward a fixed centre, so that abnormal images, "
        "never seen, land far from it. The squared distance to the centre is the abnormality score.",
        formula="L = mean over normal x of ‖φ(x) − c‖²,  c = mean φ(x) of the untrained network;  score = ‖φ(x) − c‖²",
        paper="Ruff et al., 'Deep One-Class Classification', ICML 2018 (one-class Deep SVDD objective).",
        references=(RUFF_2018,),
        settings=(
            Setting("rep_dim", 32, "size of the projected representation φ(x)", low=2, high=1024),
            Setting("centre_eps", 0.1, "centre coordinates closer to 0 than this are moved to ±eps", low=0.0, high=1.0),
        ),
        from_paper=(
            "One-class objective: mean squared distance of the normal training images' representations to a centre c "
            "fixed as the mean representation after an initial forward pass; coordinates of c near zero are pushed to "
            "±eps (0.1).",
            "Bias terms must not be trained, or the network collapses onto c: bias-free projection, and every bias of "
            "the backbone (BatchNorm shifts included) is frozen at its initial value.",
            "Score: squared distance to c (reported as d / (1 + d), which keeps the order).",
        ),
        our_choices=(
            "Backbone and optimiser are the lab's (timm backbone, AdamW, cosine schedule, weight decay 5e-4), not the "
            "paper's LeNet-style network with Adam and autoencoder pre-training (we skip the pre-training).",
            "BatchNorm layers are kept (their scales train, their shifts stay 0) instead of being removed.",
        ),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        model.head = CentredProjection(model.embed_dim, self.settings["rep_dim"])
        if info.train_images is not None:  # training: fix c now (a finished run loads it with the weights)
            model.head.centre.copy_(self._initial_centre(model, info))

    @torch.no_grad()
    def _initial_centre(self, model: Classifier, info: TrainInfo) -> torch.Tensor:
        assert info.train_images is not None and info.train_labels is not None, "setup calls this only in training"
        model.to(info.device).eval()
        normal = info.train_images[info.train_labels == 0]
        outputs = [model(to_float(normal[i : i + CENTRE_CHUNK])) for i in range(0, len(normal), CENTRE_CHUNK)]
        centre = torch.cat(outputs).mean(0).cpu()
        eps = self.settings["centre_eps"]
        small = centre.abs() < eps
        centre[small] = torch.where(centre[small] < 0, -eps, eps)
        model.train()
        return centre

    def stage_parameters(self, model: Classifier, stage: Stage) -> Iterable[nn.Parameter]:
        """Everything but the biases (BatchNorm shifts included): with them the network could map all inputs to c."""
        return [p for name, p in model.named_parameters() if not name.endswith("bias")]

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        normal = batch.y == 0
        if not normal.any():  # no normal image: nothing to learn (and no abnormal image may reach BatchNorm)
            return batch.x.new_zeros((), requires_grad=True)
        return model(batch.x[normal]).pow(2).sum(1).mean()

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Score d / (1 + d) of the squared distance d, in float64 so that large distances keep their order."""
        distance = logits.double().pow(2).sum(1)
        score = distance / (1 + distance)
        return torch.stack([1 / (1 + distance), score], dim=1)

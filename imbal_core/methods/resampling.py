"""Baselines that change what the model sees: class-balanced re-sampling and mixup."""

from __future__ import annotations

import numpy as np
import torch

from ..models import Classifier
from . import losses
from .base import Batch, Method, MethodCard, Reference, Setting, Stage, register_method
from .decoupled import KANG_2020

SHEN_2016 = Reference(
    key="shen2016relay",
    entry="inproceedings",
    title="Relay Backpropagation for Effective Learning of Deep Convolutional Neural Networks",
    authors=("Shen, Li", "Lin, Zhouchen", "Huang, Qingming"),
    year=2016,
    venue="European Conference on Computer Vision (ECCV)",
    eprint="1512.05830",
)
ZHANG_2018 = Reference(
    key="zhang2018mixup",
    entry="inproceedings",
    title="mixup: Beyond Empirical Risk Minimization",
    authors=("Zhang, Hongyi", "Cisse, Moustapha", "Dauphin, Yann N.", "Lopez-Paz, David"),
    year=2018,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="1710.09412",
)


@register_method("cb_resample")
class ClassBalancedResampling(Method):
    card = MethodCard(
        title="Class-balanced re-sampling",
        idea="Draws each batch so every class is equally likely (a class first, then one of its images); "
        "rare images repeat often, with augmentation making the repeats differ.",
        formula="P(class c) = 1 / C;  L = CE",
        paper="e.g. Shen et al., ECCV 2016; Kang et al., ICLR 2020 (class-balanced sampling).",
        references=(SHEN_2016, KANG_2020),
        our_choices=("An epoch has as many steps as instance sampling would, so budgets compare.",),
    )

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("train", epochs, sampler="class_balanced")]


@register_method("mixup")
class Mixup(Method):
    card = MethodCard(
        title="Mixup",
        idea="Trains on convex combinations of image pairs and their labels, which regularises the "
        "decision boundaries and helps calibration.",
        formula="x = lam x_i + (1 - lam) x_j,  L = lam CE(z, y_i) + (1 - lam) CE(z, y_j),  lam ~ Beta(alpha, alpha)",
        paper="Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018.",
        references=(ZHANG_2018,),
        settings=(Setting("alpha", 0.2, "Beta distribution parameter", low=0.01, high=10.0),),
        our_choices=("One lam per batch, partners from a seeded permutation of the batch.",),
    )

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        alpha = self.settings["alpha"]
        # lam is drawn from a numpy generator seeded by the batch generator: reproducible runs.
        seed = int(torch.randint(2**31, (1,), generator=batch.generator, device=batch.generator.device))
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
        perm = torch.randperm(len(batch.y), device=batch.x.device, generator=batch.generator)
        mixed = lam * batch.x + (1 - lam) * batch.x[perm]
        return losses.mixup_loss(model(mixed), batch.y, batch.y[perm], lam)

"""Baselines that change only the loss: CE, weighted CE, class-balanced loss, focal, LDAM-DRW,
balanced softmax and logit adjustment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Classifier
from . import losses
from .base import Batch, Method, MethodCard, Reference, Setting, Stage, TrainInfo, register_method

HUANG_2016 = Reference(
    key="huang2016learning",
    entry="inproceedings",
    title="Learning Deep Representation for Imbalanced Classification",
    authors=("Huang, Chen", "Li, Yining", "Loy, Chen Change", "Tang, Xiaoou"),
    year=2016,
    venue="Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)",
    pages="5375--5384",
)
CUI_2019 = Reference(
    key="cui2019classbalanced",
    entry="inproceedings",
    title="Class-Balanced Loss Based on Effective Number of Samples",
    authors=("Cui, Yin", "Jia, Menglin", "Lin, Tsung-Yi", "Song, Yang", "Belongie, Serge"),
    year=2019,
    venue="Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    eprint="1901.05555",
    doi="10.1109/CVPR.2019.00949",
)
LIN_2017 = Reference(
    key="lin2017focal",
    entry="inproceedings",
    title="Focal Loss for Dense Object Detection",
    authors=("Lin, Tsung-Yi", "Goyal, Priya", "Girshick, Ross", "He, Kaiming", "Doll{\\'a}r, Piotr"),
    year=2017,
    venue="Proceedings of the IEEE International Conference on Computer Vision (ICCV)",
    eprint="1708.02002",
)
CAO_2019 = Reference(
    key="cao2019ldam",
    entry="inproceedings",
    title="Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
    authors=("Cao, Kaidi", "Wei, Colin", "Gaidon, Adrien", "Arechiga, Nikos", "Ma, Tengyu"),
    year=2019,
    venue="Advances in Neural Information Processing Systems (NeurIPS)",
    volume="32",
    pages="1567--1578",
    eprint="1906.07413",
)
REN_2020 = Reference(
    key="ren2020balanced",
    entry="inproceedings",
    title="Balanced Meta-Softmax for Long-Tailed Visual Recognition",
    authors=("Ren, Jiawei", "Yu, Cunjun", "Sheng, Shunan", "Ma, Xiao", "Zhao, Haiyu", "Yi, Shuai", "Li, Hongsheng"),
    year=2020,
    venue="Advances in Neural Information Processing Systems (NeurIPS)",
    volume="33",
    eprint="2007.10740",
)
MENON_2021 = Reference(
    key="menon2021logit",
    entry="inproceedings",
    title="Long-tail learning via logit adjustment",
    authors=(
        "Menon, Aditya Krishna",
        "Jayasumana, Sadeep",
        "Rawat, Ankit Singh",
        "Jain, Himanshu",
        "Veit, Andreas",
        "Kumar, Sanjiv",
    ),
    year=2021,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="2007.07314",
)


@register_method("ce")
class CrossEntropy(Method):
    card = MethodCard(
        title="Cross-entropy",
        idea="The plain baseline: every image counts once, so the head classes dominate the gradient.",
        formula="L = -log softmax(z)_y",
        paper="—",
    )


@register_method("weighted_ce")
class WeightedCrossEntropy(Method):
    card = MethodCard(
        title="Inverse-frequency weighted CE",
        idea="Each class's loss is scaled by the inverse of its training count, so rare classes weigh more.",
        formula="L = -w_y log softmax(z)_y,  w_c ∝ (1/n_c)^power,  sum_c w_c = C",
        paper="Standard re-weighting (e.g. Huang et al., CVPR 2016); CRCKD uses w_c = N / n_c.",
        references=(HUANG_2016,),
        settings=(Setting("power", 1.0, "exponent on 1/n_c (0.5 = square-root weighting)", low=0.0, high=2.0),),
        our_choices=("Weights are scaled to sum to C so the loss scale matches plain CE.",),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        self.weight = losses.inverse_frequency_weights(info.class_counts, self.settings["power"])

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y, weight=self.weight)


@register_method("cb_loss")
class ClassBalancedLoss(Method):
    card = MethodCard(
        title="Class-balanced loss",
        idea="Weights classes by the inverse *effective number* of samples, (1 - beta^n)/(1 - beta), "
        "which saturates for large classes instead of growing linearly.",
        formula="L = w_y * base(z, y),  w_c = (1 - beta) / (1 - beta^n_c), sum_c w_c = C;  base = CE or focal",
        paper="Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019.",
        references=(CUI_2019,),
        settings=(
            Setting(
                "beta", 0.9999, "effective-number hyperparameter (0.999 or 0.9999 in the paper)", low=0.0, high=0.99999
            ),
            Setting("loss_type", "ce", "base loss", choices=("ce", "focal")),
            Setting("gamma", 2.0, "focusing parameter of the focal variant", low=0.0, high=5.0),
        ),
        our_choices=("The focal variant uses the softmax focal loss (the paper's best used sigmoid).",),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        self.weight = losses.class_balanced_weights(info.class_counts, self.settings["beta"])

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        logits = model(batch.x)
        if self.settings["loss_type"] == "focal":
            return losses.focal_loss(logits, batch.y, self.settings["gamma"], self.weight)
        return F.cross_entropy(logits, batch.y, weight=self.weight)


@register_method("focal")
class Focal(Method):
    card = MethodCard(
        title="Focal loss",
        idea="Down-weights easy, well-classified images so training focuses on hard ones (often the rare classes).",
        formula="L = -(1 - p_y)^gamma log p_y",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017.",
        references=(LIN_2017,),
        settings=(Setting("gamma", 2.0, "focusing parameter", low=0.0, high=5.0),),
        our_choices=("Softmax (multi-class) form without the alpha class weight.",),
    )

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        return losses.focal_loss(model(batch.x), batch.y, self.settings["gamma"])


class CosineHead(nn.Module):
    """Linear head on L2-normalised features and weights: logits are cosines in [-1, 1]."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()


@register_method("ldam_drw")
class LDAMDRW(Method):
    card = MethodCard(
        title="LDAM with deferred re-weighting",
        idea="Enforces larger classification margins for rarer classes, then switches on class-balanced "
        "re-weighting late in training (DRW) once features are learned.",
        formula="L = CE(s (cos - m_y e_y), y) with m_c ∝ n_c^(-1/4), max m = max_margin; "
        "after drw_start: weights w_c = (1-beta)/(1-beta^n_c)",
        paper="Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, NeurIPS 2019.",
        references=(CAO_2019,),
        settings=(
            Setting("max_margin", 0.5, "largest class margin", low=0.0, high=2.0),
            Setting("scale", 30.0, "logit scale s", low=1.0, high=100.0),
            Setting("drw_start", 0.8, "fraction of epochs after which re-weighting starts", low=0.0, high=1.0),
            Setting("beta", 0.9999, "effective-number beta of the DRW weights", low=0.0, high=0.99999),
        ),
        our_choices=(
            "Cosine (normalised) head, as in the authors' code for small images.",
            "DRW starts at the first epoch >= drw_start x epochs.",
        ),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        model.head = CosineHead(model.embed_dim, info.num_classes).to(info.device)
        self.margins = losses.ldam_margins(info.class_counts, self.settings["max_margin"])
        self.drw_weight = losses.class_balanced_weights(info.class_counts, self.settings["beta"])
        self.weight: torch.Tensor | None = None

    def on_epoch_start(self, model: Classifier, epoch: int, stage: Stage) -> None:
        deferred = epoch >= int(self.settings["drw_start"] * self.info.epochs)
        self.weight = self.drw_weight if deferred else None

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        return losses.ldam_loss(model(batch.x), batch.y, self.margins, self.settings["scale"], self.weight)


@register_method("balanced_softmax")
class BalancedSoftmax(Method):
    card = MethodCard(
        title="Balanced softmax",
        idea="Trains with the training prior added to the logits, so at test time (prior removed) the "
        "model predicts as if classes were balanced.",
        formula="L = CE(z + log n_c, y); predict with z",
        paper="Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020.",
        references=(REN_2020,),
    )

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(losses.supervised_logit_adjustment(model(batch.x), self.info.class_counts, 1.0), batch.y)


@register_method("logit_adjust")
class LogitAdjustment(Method):
    card = MethodCard(
        title="Logit adjustment",
        idea="Adds tau x log prior to the logits during training (loss form), which makes the "
        "balanced error the quantity being minimised.",
        formula="L = CE(z + tau log pi_c, y); predict with z",
        paper="Menon et al., Long-tail learning via logit adjustment, ICLR 2021.",
        references=(MENON_2021,),
        settings=(Setting("tau", 1.0, "strength of the adjustment", low=0.0, high=3.0),),
        our_choices=(
            "Only the loss form is offered; for a post-hoc re-balancing of a trained head see tau_norm.",
            "With tau = 1 the loss equals balanced softmax (log pi_c and log n_c differ by a constant), "
            "so the two give identical runs; tau is what sets them apart.",
        ),
    )

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        adjusted = losses.supervised_logit_adjustment(model(batch.x), self.info.class_counts, self.settings["tau"])
        return F.cross_entropy(adjusted, batch.y)

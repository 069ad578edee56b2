"""Decoupled training (Kang et al., ICLR 2020): learn features with plain CE, then re-balance
only the classifier: retrain it (cRT), rescale it (LWS), or normalise its weights (tau-norm)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..models import Classifier
from .base import Method, MethodCard, Reference, Setting, Stage, TrainInfo, register_method

KANG_2020 = Reference(
    key="kang2020decoupling",
    entry="inproceedings",
    title="Decoupling Representation and Classifier for Long-Tailed Recognition",
    authors=(
        "Kang, Bingyi",
        "Xie, Saining",
        "Rohrbach, Marcus",
        "Yan, Zhicheng",
        "Gordo, Albert",
        "Feng, Jiashi",
        "Kalantidis, Yannis",
    ),
    year=2020,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="1910.09217",
)

PAPER = "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020."
STAGE2 = Setting("stage2_epochs", 2, "epochs of the classifier stage (added to the run's epochs)", low=1, high=200)
SHARED_CHOICES = (
    "Stage 1 uses the run's epochs; stage 2 adds stage2_epochs. With --init-from a finished run, stage 1 "
    "is skipped and its weights are used.",
    "In stage 2 the backbone is frozen in eval mode (BatchNorm statistics fixed) and images are still augmented.",
)


LWS_LR = Setting("stage2_lr", 0.2, "SGD learning rate of the per-class scales (Kang et al.: 0.2)", low=1e-4, high=10.0)


def lws_stage(epochs: int, lr: float) -> Stage:
    """LWS's classifier stage: only the scales, class-balanced batches, SGD at `lr` (Kang et al.'s code)."""
    return Stage(
        "classifier", epochs, "class_balanced", "head", reset_head=False, representation=False, optimizer="sgd", lr=lr
    )


def retrain_stage(epochs: int) -> Stage:
    """cRT's classifier stage: a new head on frozen features, class-balanced batches, the run's optimiser."""
    return Stage(
        "classifier", epochs, sampler="class_balanced", trainable="head", reset_head=True, representation=False
    )


@register_method("crt")
class ClassifierRetraining(Method):
    card = MethodCard(
        title="Classifier re-training (cRT)",
        idea="Keeps the features learned with instance sampling and re-initialises and retrains only the "
        "linear classifier with class-balanced sampling.",
        formula="stage 1: CE, instance sampling;  stage 2: new head, frozen backbone, CE, class-balanced sampling",
        paper=PAPER,
        references=(KANG_2020,),
        settings=(STAGE2,),
        our_choices=SHARED_CHOICES,
    )

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("representation", epochs), retrain_stage(self.settings["stage2_epochs"])]


class ScaledHead(nn.Module):
    """A linear head whose logits are multiplied by learnable per-class scales f_c."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.scale = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features) * self.scale


@register_method("lws")
class LearnableWeightScaling(Method):
    card = MethodCard(
        title="Learnable weight scaling (LWS)",
        idea="Keeps the classifier's directions and learns only one scale per class on balanced batches, "
        "correcting the norm bias towards head classes.",
        formula="z_c = f_c (w_c . x + b_c); stage 2 learns f only, class-balanced sampling",
        paper=PAPER,
        references=(KANG_2020,),
        settings=(STAGE2, LWS_LR),
        from_paper=(
            "The stage-1 classifier (weights and bias) is kept frozen; one scale per class, starting at 1, multiplies "
            "its logits and is learned with CE on class-balanced batches over frozen features (the authors' code: "
            "TauNormClassifier with the cls_lws configs).",
        ),
        our_choices=SHARED_CHOICES
        + (
            "The scales are trained with SGD at learning rate 0.2 as in Kang et al. (Nesterov momentum 0.9, cosine, "
            "the run's weight decay); Kang et al. train 5 class-aware epochs of C x n_max images, here stage 2 keeps "
            "2 epochs of the training set's size, in which the scales settle. A multiplying scale cannot lift a class "
            "whose own logits are negative on average; it can only shrink them toward 0.",
        ),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        model.head = ScaledHead(model.head)

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("representation", epochs), lws_stage(self.settings["stage2_epochs"], self.settings["stage2_lr"])]

    def stage_parameters(self, model: Classifier, stage: Stage):
        if stage.trainable == "head":
            return [model.head.scale]
        return [p for n, p in model.named_parameters() if n != "head.scale"]


def tau_normalise(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """w_c / ||w_c||^tau for each class row c."""
    return weight / weight.norm(dim=1, keepdim=True).clamp(min=1e-12) ** tau


@register_method("tau_norm")
class TauNormalisation(Method):
    card = MethodCard(
        title="tau-normalised classifier",
        idea="After CE training, the head's weight norms grow with class size; dividing each class's "
        "weights by its norm to the power tau removes that bias without any retraining.",
        formula="w_c <- w_c / ||w_c||^tau, bias dropped; tau chosen on validation balanced accuracy when 'auto'",
        paper=PAPER,
        references=(KANG_2020,),
        settings=(
            Setting(
                "tau",
                "auto",
                "'auto' (grid 0 to 2 by 0.1 on validation) or a number",
            ),
        ),
        our_choices=(
            "The bias is set to zero, as in the paper's bias-free classifier.",
            "Post-hoc only: the run trains with CE and applies tau to the best checkpoint.",
        ),
    )

    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        tau = self.settings["tau"]
        if tau != "auto":
            self.settings["tau"] = Setting("tau", 1.0, "", low=0.0, high=5.0).coerce(tau)

    def finalize(self, model: Classifier, val_features: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> dict:
        return apply_tau_norm(model, self.settings["tau"], val_features)


def apply_tau_norm(
    model: Classifier, tau: float | str, val_features: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> dict:
    """Replace the linear head's weights by w_c / ||w_c||^tau and drop its bias; tau='auto' picks it on validation."""
    weight = model.head.weight.detach().clone()
    chosen = choose_tau(weight, *val_features()) if tau == "auto" else float(tau)
    with torch.no_grad():
        model.head.weight.copy_(tau_normalise(weight, chosen))
        model.head.bias.zero_()
    return {"tau": chosen}


TAU_GRID = np.round(np.arange(0.0, 2.01, 0.1), 2)


def tau_curve(weight: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, float]]:
    """(tau, balanced accuracy on these features) for each tau of TAU_GRID (validation features: never test)."""
    num_classes = weight.shape[0]
    curve = []
    for tau in TAU_GRID:
        predictions = (features @ tau_normalise(weight, float(tau)).t()).argmax(1)
        recalls = [(predictions[labels == c] == c).float().mean() for c in range(num_classes) if (labels == c).any()]
        curve.append((float(tau), float(torch.stack(recalls).mean())))
    return curve


def best_tau(curve: list[tuple[float, float]]) -> float:
    """The smallest tau with the best score (a later tau must beat it by more than rounding)."""
    chosen, best = 0.0, -1.0
    for tau, score in curve:
        if score > best + 1e-9:
            chosen, best = tau, score
    return chosen


def choose_tau(weight: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Grid-search tau in [0, 2] for the best validation balanced accuracy (features computed once)."""
    return best_tau(tau_curve(weight, features, labels))

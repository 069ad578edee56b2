"""Two-stage training with metric learning (after Zeng et al., arXiv 2207.06975).

Stage 1 learns features with CE plus a metric-learning loss; stage 2 freezes the backbone and
re-balances the classifier (cRT by default, or LWS, or post-hoc tau-norm).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Classifier
from .base import Batch, Method, MethodCard, Reference, Setting, Stage, TrainInfo, register_method
from .decoupled import LWS_LR, STAGE2, ScaledHead, apply_tau_norm, lws_stage, retrain_stage

ZENG_2022 = Reference(
    key="zeng2022learning",
    entry="misc",
    title="Learning Discriminative Representation via Metric Learning for Imbalanced Medical Image Classification",
    authors=("Zeng, Chenghua", "Lu, Huijuan", "Chen, Kanghao", "Wang, Ruixuan", "Zheng, Wei-Shi"),
    year=2022,
    eprint="2207.06975",
)
CHEN_2022_PCCT = Reference(
    key="chen2022pcct",
    entry="misc",
    title="PCCT: Progressive Class-Center Triplet Loss for Imbalanced Medical Image Classification",
    authors=("Chen, Kanghao", "Lei, Weixian", "Zhang, Rong", "Zhao, Shen", "Zheng, Wei-Shi", "Wang, Ruixuan"),
    year=2022,
    eprint="2207.04793",
    note="the arXiv version; a journal version (doi 10.1109/JBHI.2023.3240136) lists five of these authors",
)

METRIC_LOSSES = ("supcon", "triplet_hard", "triplet_cb")
STAGE2_RULES = ("crt", "lws", "tau_norm")


def supervised_contrastive_loss(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al. 2020 (L_out): for each anchor, mean over its positives of
    -log( exp(z_a . z_p / T) / sum_{k != a} exp(z_a . z_k / T) ); anchors without positives are skipped.

    z: (M, D) L2-normalised embeddings of all views; y: (M,) labels.
    """
    z = z.float()  # bf16 under autocast is too coarse for a softmax over the batch
    similarity = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positive = (y[:, None] == y[None, :]) & ~self_mask
    counts = positive.sum(1)
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1)) / counts.clamp(min=1)
    return per_anchor[counts > 0].mean() if (counts > 0).any() else z.sum() * 0.0


def batch_hard_triplet_loss(z: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Hermans et al. 2017: for each anchor, the farthest positive and the closest negative,
    max(0, d(a, p) - d(a, n) + margin), averaged over anchors that have both."""
    distance = torch.cdist(z.float(), z.float())
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    hardest_positive = distance.masked_fill(~same | eye, float("-inf")).max(1).values
    hardest_negative = distance.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(hardest_positive) & torch.isfinite(hardest_negative)
    if not valid.any():
        return z.sum() * 0.0
    return F.relu(hardest_positive[valid] - hardest_negative[valid] + margin).mean()


@register_method("metric_two_stage")
class MetricTwoStage(Method):
    card = MethodCard(
        title="Two-stage with metric learning",
        idea="Stage 1 shapes the feature space with a metric-learning loss beside CE, so that classes form "
        "compact, separated clusters even for rare classes; stage 2 freezes those features and re-balances "
        "only the classifier.",
        formula="stage 1: L = CE + λ L_metric,  L_metric ∈ {SupCon (2 views, projection head, τ), batch-hard "
        "triplet, class-balanced triplet};  stage 2: cRT (new head, class-balanced sampling) | LWS | tau-norm",
        paper="Zeng et al., 'Learning Discriminative Representation via Metric Learning for Imbalanced Medical "
        "Image Classification', arXiv 2207.06975; the class-balanced triplet follows the same group's PCCT (Chen "
        "et al., arXiv 2207.04793).",
        references=(ZENG_2022, CHEN_2022_PCCT),
        approximation=True,
        settings=(
            Setting("metric", "supcon", "stage-1 metric loss", choices=METRIC_LOSSES),
            Setting("lambda_metric", 0.5, "weight λ of the metric loss", low=0.0, high=10.0),
            Setting("temperature", 0.1, "SupCon temperature", low=0.01, high=1.0),
            Setting("margin", 0.3, "triplet margin (on L2-normalised embeddings)", low=0.0, high=2.0),
            Setting("stage2", "crt", "classifier re-balancing", choices=STAGE2_RULES),
            STAGE2,
        ),
        from_paper=(
            "Two stages: stage 1 learns features with a metric-learning loss added to CE; stage 2 re-balances the "
            "classifier on frozen features.",
            "The class-balanced triplet follows the same group's PCCT (arXiv 2207.04793) stage 1.",
        ),
        our_choices=(
            "The paper does not say which metric loss; all three candidates are offered (SupCon by default).",
            "SupCon and triplets act on a 2-layer projection head (d -> d -> 128, L2-normalised) of the pooled "
            "features.",
            "The class-balanced triplet uses class-balanced sampling in stage 1 (equal classes per batch in "
            "expectation) with batch-hard mining, after PCCT; its class-centre loss of stage 2 is not used.",
            "Stage 2 re-uses the decoupled baselines: cRT, LWS (its scales with SGD at 0.2), or tau-norm (tau chosen "
            "on validation).",
            "With --init-from a finished run, stage 1 is skipped: its backbone is re-used (cheap stage-2 variants).",
        ),
    )

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        self.aux["projection"] = nn.Sequential(
            nn.Linear(model.embed_dim, model.embed_dim), nn.ReLU(inplace=True), nn.Linear(model.embed_dim, 128)
        ).to(info.device)
        if self.settings["stage2"] == "lws":
            model.head = ScaledHead(model.head)

    def stages(self, epochs: int) -> list[Stage]:
        sampler = "class_balanced" if self.settings["metric"] == "triplet_cb" else "instance"
        first = Stage("representation", epochs, sampler=sampler)
        rule = self.settings["stage2"]
        if rule == "tau_norm":
            return [first]
        if rule == "lws":
            return [first, lws_stage(self.settings["stage2_epochs"], LWS_LR.default)]
        return [first, retrain_stage(self.settings["stage2_epochs"])]

    def stage_parameters(self, model: Classifier, stage: Stage):
        if stage.trainable == "head" and self.settings["stage2"] == "lws":
            return [model.head.scale]
        params = super().stage_parameters(model, stage)
        return [p for p in params if p is not getattr(model.head, "scale", None)]

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        if batch.stage.trainable == "head":
            return F.cross_entropy(model(batch.x), batch.y)
        features = model.features(batch.x)
        loss = F.cross_entropy(model.head(features), batch.y)
        projection = self.aux["projection"]
        if self.settings["metric"] == "supcon":
            second = model.features(batch.augment(batch.raw))
            z = F.normalize(projection(torch.cat([features, second])), dim=1)
            metric = supervised_contrastive_loss(z, torch.cat([batch.y, batch.y]), self.settings["temperature"])
        else:
            z = F.normalize(projection(features), dim=1)
            metric = batch_hard_triplet_loss(z, batch.y, self.settings["margin"])
        return loss + self.settings["lambda_metric"] * metric

    def finalize(self, model: Classifier, val_features: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> dict:
        if self.settings["stage2"] != "tau_norm":
            return {}
        return apply_tau_norm(model, "auto", val_features)

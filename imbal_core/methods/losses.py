"""Pure loss functions used by the methods (each checked against a hand computation in tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inverse_frequency_weights(counts: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """w_c proportional to (1 / n_c)^power, scaled to sum to C."""
    weights = counts.float().clamp(min=1) ** -power
    return weights / weights.sum() * len(weights)


def class_balanced_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al. 2019: w_c = (1 - beta) / (1 - beta^n_c), scaled to sum to C."""
    effective = 1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts.double().clamp(min=1))
    weights = ((1.0 - beta) / effective).float()
    return weights / weights.sum() * len(weights)


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax focal loss: mean over the batch of w_y * (1 - p_y)^gamma * (-log p_y)."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if weight is not None:
        loss = loss * weight[y]
    return loss.mean()


def ldam_margins(counts: torch.Tensor, max_margin: float) -> torch.Tensor:
    """Cao et al. 2019: m_c proportional to n_c^(-1/4), the largest equal to max_margin."""
    margins = counts.float().clamp(min=1) ** -0.25
    return margins * (max_margin / margins.max())


def ldam_loss(
    cosine: torch.Tensor, y: torch.Tensor, margins: torch.Tensor, scale: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """CE over s * (z - m_y on the true class), z being cosine logits."""
    adjusted = cosine - F.one_hot(y, cosine.shape[1]) * margins[y][:, None]
    return F.cross_entropy(scale * adjusted, y, weight=weight)


def supervised_logit_adjustment(logits: torch.Tensor, counts: torch.Tensor, tau: float) -> torch.Tensor:
    """z + tau * log(prior): the shift used by logit adjustment (tau=1 is balanced softmax)."""
    prior = counts.float().clamp(min=1) / counts.sum()
    return logits + tau * prior.log()


def mixup_loss(logits: torch.Tensor, y: torch.Tensor, y_other: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y_other)

"""Every loss against a value computed by hand, and the re-sampler's class distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbal_core.engine.trainer import _sample_order
from imbal_core.methods import losses
from imbal_core.methods.decoupled import tau_normalise

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
Y = torch.tensor([0, 2])
COUNTS = torch.tensor([100, 10, 1])


def _log_softmax(row, k):
    return row[k] - math.log(sum(math.exp(v) for v in row))


def test_inverse_frequency_weights_by_hand():
    w = losses.inverse_frequency_weights(COUNTS)
    raw = [1 / 100, 1 / 10, 1]
    expected = [3 * r / sum(raw) for r in raw]
    assert w.tolist() == pytest.approx(expected)
    loss = F.cross_entropy(LOGITS, Y, weight=w)
    by_hand = -(expected[0] * _log_softmax([2, 0, -1], 0) + expected[2] * _log_softmax([0.5, 1.5, 0], 2)) / (
        expected[0] + expected[2]
    )
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_class_balanced_weights_by_hand():
    beta = 0.99
    raw = [(1 - beta) / (1 - beta**n) for n in (100, 10, 1)]
    expected = [3 * r / sum(raw) for r in raw]
    assert losses.class_balanced_weights(COUNTS, beta).tolist() == pytest.approx(expected, rel=1e-5)


def test_focal_by_hand():
    p0 = math.exp(_log_softmax([2, 0, -1], 0))
    p1 = math.exp(_log_softmax([0.5, 1.5, 0], 2))
    by_hand = (-((1 - p0) ** 2) * math.log(p0) - (1 - p1) ** 2 * math.log(p1)) / 2
    assert losses.focal_loss(LOGITS, Y, gamma=2.0).item() == pytest.approx(by_hand, rel=1e-5)
    assert losses.focal_loss(LOGITS, Y, gamma=0.0).item() == pytest.approx(F.cross_entropy(LOGITS, Y).item(), rel=1e-6)


def test_ldam_by_hand():
    margins = losses.ldam_margins(COUNTS, 0.5)
    raw = [n**-0.25 for n in (100, 10, 1)]
    assert margins.tolist() == pytest.approx([0.5 * r / max(raw) for r in raw], rel=1e-6)
    cos = torch.tensor([[0.9, 0.1, -0.2]])
    y = torch.tensor([2])
    row = [30 * 0.9, 30 * 0.1, 30 * (-0.2 - margins[2].item())]
    assert losses.ldam_loss(cos, y, margins, 30.0).item() == pytest.approx(-_log_softmax(row, 2), rel=1e-5)


def test_balanced_softmax_and_logit_adjustment_by_hand():
    prior = [100 / 111, 10 / 111, 1 / 111]
    adjusted = losses.supervised_logit_adjustment(LOGITS, COUNTS, tau=1.0)
    assert adjusted[0].tolist() == pytest.approx(
        [2 + math.log(prior[0]), math.log(prior[1]), -1 + math.log(prior[2])], rel=1e-5
    )
    half = losses.supervised_logit_adjustment(LOGITS, COUNTS, tau=0.5)
    assert half[1, 2].item() == pytest.approx(0.5 * math.log(prior[2]), rel=1e-5)


def test_mixup_loss_by_hand():
    y_other = torch.tensor([1, 0])
    expected = 0.3 * F.cross_entropy(LOGITS, Y) + 0.7 * F.cross_entropy(LOGITS, y_other)
    assert losses.mixup_loss(LOGITS, Y, y_other, 0.3).item() == pytest.approx(expected.item())


def test_tau_normalise_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    out = tau_normalise(w, 1.0)
    assert out.flatten().tolist() == pytest.approx([0.6, 0.8, 0.6, 0.8])
    assert tau_normalise(w, 0.0).tolist() == w.tolist()
    assert tau_normalise(w, 0.5)[0].tolist() == pytest.approx([3 / math.sqrt(5), 4 / math.sqrt(5)])


def test_class_balanced_sampler_distribution():
    labels = torch.tensor(np.repeat(np.arange(4), [1000, 100, 10, 2]))
    order = _sample_order(labels, "class_balanced", torch.Generator().manual_seed(0))
    freq = torch.bincount(labels[order], minlength=4).double() / len(order)
    assert len(order) == len(labels)
    assert freq.tolist() == pytest.approx([0.25] * 4, abs=0.03)
    instance = _sample_order(labels, "instance", torch.Generator().manual_seed(0))
    assert sorted(instance.tolist()) == list(range(len(labels)))

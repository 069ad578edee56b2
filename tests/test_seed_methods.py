"""CRCKD and two-stage metric learning: every loss on small hand-checked cases, and short runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imbal_core.checkpoint import load_checkpoint
from imbal_core.engine import train
from imbal_core.methods.crckd import ClassIndex, class_centroids, nce_loss, relation_loss, sigmoid_rampup
from imbal_core.methods.metric_two_stage import batch_hard_triplet_loss, supervised_contrastive_loss

from .conftest import assert_resume_matches_uninterrupted, tiny_config

LABELS = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 0, 1])


def test_ccd_positives_same_class_negatives_other_class():
    index = ClassIndex(LABELS, 3)
    anchors = torch.arange(10)
    g = torch.Generator().manual_seed(0)
    positives = index.positives(anchors, LABELS, 6, g)
    negatives = index.negatives(LABELS, 50, g)
    assert torch.equal(positives[:, 0], anchors)  # the anchor itself is the first positive
    assert (LABELS[positives] == LABELS[:, None]).all()
    assert (LABELS[negatives] != LABELS[:, None]).all()
    # every other-class sample can be drawn: for class 0 anchors these are the 6 samples of classes 1, 2
    assert set(negatives[LABELS == 0].flatten().tolist()) == set(torch.nonzero(LABELS != 0).flatten().tolist())
    assert index.max_negatives() == 10 - 4  # K shrinks to N - (largest class)


def test_nce_loss_direct():
    scores = torch.tensor([[1.0, 0.5, -0.2, 0.3, 0.1]])
    z, n = 2.0, 100
    p = torch.exp(scores[0]) / z
    noise = 3 / n
    expected = (-torch.log(p[:2] / (p[:2] + noise))).mean() + (-torch.log(noise / (p[2:] + noise))).sum()
    assert nce_loss(scores, 2, z, n).item() == pytest.approx(expected.item(), rel=1e-5)


def test_crp_zero_when_student_equals_teacher_and_centroids_by_hand():
    entries = torch.tensor([[1.0, -1.0], [3.0, 1.0], [0.0, 2.0], [-2.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    centroids = class_centroids(entries, labels, 2)
    assert centroids[0].tolist() == pytest.approx(F.normalize(torch.tensor([2.0, 0.5]), dim=0).tolist())
    assert centroids[1].tolist() == pytest.approx([0.0, 1.0])
    z = F.normalize(torch.randn(5, 2), dim=1)
    assert relation_loss(z, z, centroids, centroids, 0.07).item() == pytest.approx(0.0, abs=1e-6)
    assert relation_loss(z, -z, centroids, centroids, 0.07).item() > 0.01


def test_supcon_matches_direct_computation():
    g = torch.Generator().manual_seed(1)
    z = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    y = torch.tensor([0, 1, 0, 1, 2, 0])
    t = 0.1
    per_anchor = []
    for a in range(6):
        positives = [p for p in range(6) if p != a and y[p] == y[a]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[a] @ z[k]) / t) for k in range(6) if k != a)
        per_anchor.append(
            sum(-math.log(math.exp(float(z[a] @ z[p]) / t) / denominator) for p in positives) / len(positives)
        )
    assert supervised_contrastive_loss(z, y, t).item() == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-5)


def test_batch_hard_triplet_by_hand():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 0.5]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 0: farthest positive 1.0 (to 1), closest negative 0.5 (to 3): 1.0 - 0.5 + 0.3 = 0.8
    # anchor 1: 1.0 vs min(sqrt(10), sqrt(1.25)) -> 1.0 - 1.118 + 0.3 = 0.182
    # anchor 2: 2.5 vs min(3, sqrt(10)) -> 2.5 - 3 + 0.3 < 0 -> 0;  anchor 3: 2.5 vs 0.5 -> 2.3
    expected = (0.8 + (1.0 - math.sqrt(1.25) + 0.3) + 0.0 + 2.3) / 4
    assert batch_hard_triplet_loss(z, y, 0.3).item() == pytest.approx(expected, rel=1e-5)


def test_rampup_schedule():
    assert sigmoid_rampup(1, start=2, length=4) == 0.0
    assert sigmoid_rampup(2, 2, 4) == pytest.approx(math.exp(-5 * 0.75**2))
    assert sigmoid_rampup(5, 2, 4) == 1.0


@pytest.mark.parametrize("ablation", ["mt", "mt_ccd", "mt_crp", "full"])
def test_crckd_ablations_train(store, ablation):
    settings = {"ablation": ablation, "rampup_start": 0.0, "negatives": 4096}
    run_id = train(tiny_config(method="crckd", method_settings=settings), store)
    state = load_checkpoint(store.run_dir(run_id) / "last.safetensors")
    assert store.get_run(run_id)["status"] == "finished"
    assert not torch.equal(state["aux"]["teacher.head.classifier.weight"], state["model"]["head.classifier.weight"])
    bank = state["aux"]["student_bank.entries"]
    assert torch.allclose(bank.norm(dim=1), torch.ones(len(bank)), atol=1e-4)


def test_crckd_resumes_exactly(store):
    assert_resume_matches_uninterrupted(
        store, tiny_config(method="crckd", epochs=2, method_settings={"rampup_start": 0.0})
    )


@pytest.mark.parametrize("metric,stage2", [("supcon", "crt"), ("triplet_hard", "lws"), ("triplet_cb", "tau_norm")])
def test_metric_two_stage_variants(store, metric, stage2):
    settings = {"metric": metric, "stage2": stage2, "stage2_epochs": 1}
    run_id = train(tiny_config(method="metric_two_stage", method_settings=settings), store)
    history = store.get_run(run_id)["progress"]["history"]
    assert [h["stage"] for h in history] == (
        ["representation"] if stage2 == "tau_norm" else ["representation", "classifier"]
    )
    if stage2 != "tau_norm":
        assert (store.run_dir(run_id) / "representation.safetensors").exists()
        # a cheap stage-2 variant from the kept stage-1 features
        variant = train(
            tiny_config(method="metric_two_stage", init_from=run_id, method_settings={**settings, "stage2": "crt"}),
            store,
        )
        assert [h["stage"] for h in store.get_run(variant)["progress"]["history"]] == ["classifier"]

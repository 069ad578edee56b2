"""Metrics against scikit-learn and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from imbal_core.metrics import compute_metrics, expected_calibration_error, shot_groups


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + 2.0 * np.eye(4)[labels] * rng.random((400, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, labels


def test_against_sklearn(predictions):
    probs, labels = predictions
    m = compute_metrics(probs, labels, np.array([400, 100, 30, 5]))
    pred = probs.argmax(1)
    s = m["summary"]
    assert s["acc"] == pytest.approx((pred == labels).mean())
    assert s["balanced_acc"] == pytest.approx(balanced_accuracy_score(labels, pred))
    assert s["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert s["kappa_quadratic"] == pytest.approx(cohen_kappa_score(labels, pred, weights="quadratic"))
    assert s["macro_auc_ovr"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    recalls = np.array(m["per_class"]["recall"])
    assert s["g_mean"] == pytest.approx(np.prod(recalls) ** 0.25)
    assert np.array(m["confusion"]).sum() == 400
    assert m["per_class"]["shot_group"] == ["many", "medium", "medium", "few"]
    assert s["few_acc"] == pytest.approx(recalls[3])


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])
    # bins (0.533,0.6]: conf 0.6 wrong + 0.55 right -> |0.5 - 0.575| x 2/4; (0.667,0.733]: 0.7 right -> 0.3 x 1/4;
    # (0.867,0.933]: 0.9 right -> 0.1 x 1/4
    expected = 0.075 * 0.5 + 0.3 * 0.25 + 0.1 * 0.25
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_shot_groups_terciles():
    groups, thresholds = shot_groups(np.array([1000, 500, 200, 100, 50, 20, 5]))
    assert groups.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert thresholds["rule"].startswith("terciles")


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_a_class_absent_from_the_test_set_has_no_per_class_scores_and_leaves_the_averages_alone(predictions):
    """Probe W18: a class with no test image was stored with recall and F1 0.0, read as "the model fails it"."""
    probs, labels = predictions
    keep = labels != 3
    m = compute_metrics(probs[keep], labels[keep], np.array([400, 100, 30, 5]))
    per_class = {k: np.array(v, dtype=float) for k, v in m["per_class"].items() if k != "shot_group"}
    assert per_class["support"][3] == 0
    assert np.isnan(per_class["recall"][3]) and np.isnan(per_class["f1"][3])
    predicted_3 = (probs[keep].argmax(1) == 3).any()
    assert predicted_3 and per_class["precision"][3] == 0.0  # predicted, never right: a real 0
    assert np.isfinite(per_class["recall"][:3]).all()
    assert m["summary"]["balanced_acc"] == pytest.approx(balanced_accuracy_score(labels[keep], probs[keep].argmax(1)))
    assert np.isfinite(m["summary"]["macro_auc_ovr"])

    never = probs[keep].copy()
    never[:, 3] = 0.0  # class 3 neither present nor predicted: its precision is undefined too
    assert np.isnan(compute_metrics(never, labels[keep], np.array([400, 100, 30, 5]))["per_class"]["precision"][3])

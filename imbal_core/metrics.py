"""Evaluation from predicted probabilities: overall, per-class and shot-group metrics.

Everything is computed from (probabilities, labels, training counts), which are saved with
each run, so any chart can be redrawn without the model.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

ECE_BINS = 15
AUC_MODE = "ovr"  # macro one-vs-rest AUC over the classes present in the labels
SUMMARY_METRICS = ("acc", "balanced_acc", "macro_f1", "macro_auc_ovr", "kappa_quadratic", "ece", "g_mean",
                   "many_acc", "medium_acc", "few_acc")


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - confidence| x fraction of images."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def shot_groups(train_counts: np.ndarray) -> tuple[np.ndarray, dict]:
    """Many / medium / few by training-count terciles: 0 = many, 1 = medium, 2 = few."""
    low, high = np.quantile(train_counts, [1 / 3, 2 / 3])
    groups = np.where(train_counts > high, 0, np.where(train_counts < low, 2, 1))
    return groups, {"few_below": float(low), "many_above": float(high), "rule": "terciles of training counts"}


def compute_metrics(probs: np.ndarray, labels: np.ndarray, train_counts: np.ndarray) -> dict:
    """All metrics of a run. Per-class lists follow the class index order."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    num_classes = probs.shape[1]
    classes = np.arange(num_classes)
    predictions = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    present = support > 0
    groups, thresholds = shot_groups(np.asarray(train_counts))
    summary = {
        "acc": accuracy_score(labels, predictions),
        "balanced_acc": float(recall[present].mean()),
        "macro_f1": f1_score(labels, predictions, labels=classes[present], average="macro", zero_division=0),
        "macro_auc_ovr": _macro_auc(probs, labels, present),
        "kappa_quadratic": cohen_kappa_score(labels, predictions, weights="quadratic"),
        "ece": expected_calibration_error(probs, labels),
        "g_mean": float(np.prod(recall[present]) ** (1 / present.sum())),
    }
    for group, name in enumerate(("many_acc", "medium_acc", "few_acc")):
        members = present & (groups == group)
        summary[name] = float(recall[members].mean()) if members.any() else float("nan")
    return {
        "summary": {k: float(v) for k, v in summary.items()},
        "per_class": {
            "recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist(),
            "support": support.tolist(), "shot_group": [("many", "medium", "few")[g] for g in groups],
        },
        "confusion": confusion_matrix(labels, predictions, labels=classes).tolist(),
        "shot_thresholds": thresholds,
        "auc_mode": AUC_MODE,
        "ece_bins": ECE_BINS,
    }


def _macro_auc(probs: np.ndarray, labels: np.ndarray, present: np.ndarray) -> float:
    if present.sum() < 2:
        return float("nan")
    # One-vs-rest per class present in the labels, then the unweighted mean.
    aucs = [roc_auc_score(labels == c, probs[:, c]) for c in np.flatnonzero(present)]
    return float(np.mean(aucs))

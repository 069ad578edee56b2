"""Evaluation from predicted probabilities: overall, per-class and shot-group metrics.

Everything is computed from (probabilities, labels, training counts), which are saved with
each run, so any chart can be redrawn without the model.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

ECE_BINS = 15
AUC_MODE = "ovr"  # macro one-vs-rest AUC over the classes present in the labels
SUMMARY_METRICS = (
    "acc",
    "balanced_acc",
    "macro_f1",
    "macro_auc_ovr",
    "kappa_quadratic",
    "ece",
    "g_mean",
    "many_acc",
    "medium_acc",
    "few_acc",
)
# Binary runs (class 1 = positive) add these; balanced_acc and acc are then taken at `threshold`.
BINARY_METRICS = ("auroc", "auprc", "sens_at_90_spec", "sens_at_95_spec", "sensitivity", "specificity", "threshold")
# The values each metric can take: every other one (accuracies, recalls, AUCs, ECE, the threshold) lies in [0, 1].
METRIC_RANGES = {"kappa_quadratic": (-1.0, 1.0)}
LOWER_IS_BETTER = ("ece",)  # every other metric is better higher (the threshold is a setting, not ranked)


def metric_range(metric: str, difference: bool = False) -> tuple[float, float]:
    """(lowest, highest) value of `metric`, or of a difference of two of its values (e.g. [-1, 1] for a recall)."""
    low, high = METRIC_RANGES.get(metric, (0.0, 1.0))
    return (low - high, high - low) if difference else (low, high)


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


def compute_metrics(
    probs: np.ndarray, labels: np.ndarray, train_counts: np.ndarray, predictions: np.ndarray | None = None
) -> dict:
    """All metrics of a run. Per-class lists follow the class index order.

    `predictions` default to the most probable class; binary runs pass those at their validation threshold.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    num_classes = probs.shape[1]
    classes = np.arange(num_classes)
    predictions = probs.argmax(axis=1) if predictions is None else np.asarray(predictions)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    present = support > 0
    # A class with no test image has no recall or F1, and no precision unless it was predicted: NaN, never a 0.0
    # that reads as "the model fails this class" in tables, charts and paired tests.
    predicted = np.bincount(predictions, minlength=num_classes)[:num_classes] > 0
    recall[~present], f1[~present] = np.nan, np.nan
    precision[~present & ~predicted] = np.nan
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
            "recall": recall.tolist(),
            "precision": precision.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
            "shot_group": [("many", "medium", "few")[g] for g in groups],
        },
        "confusion": confusion_matrix(labels, predictions, labels=classes).tolist(),
        "shot_thresholds": thresholds,
        "auc_mode": AUC_MODE,
        "ece_bins": ECE_BINS,
    }


def score_predictions(probs: np.ndarray, labels: np.ndarray, train_counts, threshold: float | None = None) -> dict:
    """All metrics, decided as the run decides: a binary run positive at its `threshold` (chosen on validation,
    never on the images scored; binary metrics added), any other run by the most probable class."""
    counts = np.asarray(train_counts)
    if threshold is None:
        return compute_metrics(probs, labels, counts)
    metrics = compute_metrics(probs, labels, counts, predictions=(probs[:, 1] >= threshold).astype(int))
    metrics["summary"].update(binary_metrics(probs[:, 1], labels, threshold))
    return metrics


def _macro_auc(probs: np.ndarray, labels: np.ndarray, present: np.ndarray) -> float:
    if present.sum() < 2:
        return float("nan")
    # One-vs-rest per class present in the labels, then the unweighted mean.
    aucs = [roc_auc_score(labels == c, probs[:, c]) for c in np.flatnonzero(present)]
    return float(np.mean(aucs))


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (predict positive when score >= t) with the best balanced accuracy on these labels.

    Call it on validation scores only: a threshold picked on the test set flatters every method.
    """
    _require_both_classes(labels, "choose a threshold")
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))  # balanced accuracy = (1 + tpr - fpr) / 2; ties: the highest threshold
    if not np.isfinite(thresholds[best]):  # roc_curve's first point (+inf): nothing is called positive
        return float(np.nextafter(np.float32(np.max(scores)), np.float32(np.inf)))
    return float(thresholds[best])


def sensitivity_at_specificity(scores: np.ndarray, labels: np.ndarray, specificity: float) -> float:
    """The highest true-positive rate on the ROC curve whose false-positive rate is <= 1 - specificity."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= 1 - specificity + 1e-12].max())


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Threshold-free curve summaries plus sensitivity, specificity and balanced accuracy at `threshold`.

    scores: higher = more likely positive (class 1). The threshold must come from validation data.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    _require_both_classes(labels, "compute binary metrics")
    predicted = scores >= threshold
    sensitivity = float(predicted[labels == 1].mean())
    specificity = float((~predicted[labels == 0]).mean())
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "auprc": float(average_precision_score(labels, scores)),
        "sens_at_90_spec": sensitivity_at_specificity(scores, labels, 0.90),
        "sens_at_95_spec": sensitivity_at_specificity(scores, labels, 0.95),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_acc": (sensitivity + specificity) / 2,
        "threshold": float(threshold),
    }


def _require_both_classes(labels: np.ndarray, what: str) -> None:
    present = set(np.unique(labels).tolist())
    if present != {0, 1}:
        raise ValueError(
            f"cannot {what}: labels must contain both 0 (negative) and 1 (positive); got {sorted(present)}"
        )

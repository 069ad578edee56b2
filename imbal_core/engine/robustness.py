"""Robustness to acquisition shift: a finished run's model on its own test split, shifted.

Each shift (imbal_core.shifts) at each strength changes the test images the way another camera,
light or pipeline would; the model, its method's class probabilities and, for binary runs, its
validation threshold stay as they are. A run trained with colour constancy gets it after the
shift, as a new clinic's images would: shift first (acquisition), then the run's own
preprocessing, so constancy can undo part of a colour cast.

Results go with the run: `robustness.json` in its folder (merged over calls, keyed by eval name)
and tidy rows in the run store under eval names "shift:<shift>:<strength>", with the unshifted
test set as "shift:none:0" (recomputed here, so a drop compares like with like on one device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.colour import correct_images
from ..errors import ConfigError
from ..methods import create_method
from ..metrics import score_predictions
from ..runs import RunStore
from ..shifts import MAX_STRENGTH, SHIFTS, apply_shift, check_strength
from ..utils import read_json, select_device, write_json
from .evaluate import load_run_model
from .trainer import predict

ROBUSTNESS_FILE = "robustness.json"
CLEAN = "shift:none:0"
# Metrics whose drop is reported (all higher-is-better, so drop = clean - shifted > 0 means worse).
MULTICLASS_DROP_METRICS = ("balanced_acc", "acc", "macro_f1", "macro_auc_ovr")
BINARY_DROP_METRICS = ("auroc", "auprc", "balanced_acc", "sensitivity", "specificity")
DEFAULT_STRENGTHS = tuple(range(1, MAX_STRENGTH + 1))


def eval_name(shift: str, strength: int) -> str:
    return f"shift:{shift}:{strength}"


def evaluate_shifts(
    store: RunStore,
    run_id: str,
    shifts: Sequence[str] | None = None,
    strengths: Sequence[int] = DEFAULT_STRENGTHS,
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Metrics of a run's model on its test split under every shift x strength; stored with the run and returned.

    `shifts` defaults to every registered shift; `seed` draws the random parts of a shift (a cast's colour).
    The report: {"clean": summary, "results": {eval name: {"shift", "strength", "seed", "summary"}}, ...}.
    """
    shifts = list(shifts) if shifts is not None else SHIFTS.names()
    for name in shifts:
        SHIFTS.get(name)  # unknown names fail before the model is loaded
    for strength in strengths:
        check_strength(strength)
    target = select_device(device)
    model, config, own = load_run_model(store, run_id, target)
    # The images as taken: the run's colour constancy comes after each shift, in `score`.
    test = replace(config, colour_constancy=None).load_data().test
    method = create_method(config.method, **config.method_settings)

    def score(images: np.ndarray) -> dict:
        logits, _ = predict(model, correct_images(images, config.colour_constancy), target, config.amp)
        return score_predictions(
            method.class_probs(logits).numpy(), test.labels, own["train_counts"], own["summary"].get("threshold")
        )  # binary runs: their validation threshold

    report = load_report(store.run_dir(run_id)) or {"results": {}}
    clean = score(test.images)
    store.record_metrics(run_id, CLEAN, clean, own["class_names"])
    report.update(
        clean=clean["summary"],
        colour_constancy=config.colour_constancy,
        binary="threshold" in own["summary"],
        shifts={name: SHIFTS.get(name).description for name in SHIFTS.names()},
    )
    for name in shifts:
        for strength in strengths:
            metrics = score(apply_shift(test.images, name, strength, seed))
            store.record_metrics(run_id, eval_name(name, strength), metrics, own["class_names"])
            report["results"][eval_name(name, strength)] = {
                "shift": name,
                "strength": int(strength),
                "seed": seed,
                "summary": metrics["summary"],
            }
        write_json(store.run_dir(run_id) / ROBUSTNESS_FILE, report)  # after each shift: an interruption keeps them
    return report


def drop_table(report: dict, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows (shift, strength, metric, value, clean, drop) of a report, strength 0 = the clean test set for each shift.

    `metrics` defaults to the report's kind: BINARY_DROP_METRICS or MULTICLASS_DROP_METRICS.
    """
    metrics = metrics or (BINARY_DROP_METRICS if report["binary"] else MULTICLASS_DROP_METRICS)
    unknown = sorted(set(metrics) - set(report["clean"]))
    if unknown:
        raise ConfigError(f"no metric(s) {unknown} in the shift results; choose from {sorted(report['clean'])}")
    shifted = list(report["results"].values())
    shifts = dict.fromkeys(e["shift"] for e in shifted)
    entries = [{"shift": s, "strength": 0, "summary": report["clean"]} for s in shifts] + shifted
    rows = [
        {
            "shift": e["shift"],
            "strength": e["strength"],
            "metric": m,
            "value": e["summary"][m],
            "clean": report["clean"][m],
            "drop": report["clean"][m] - e["summary"][m],
        }
        for e in entries
        for m in metrics
    ]
    table = pd.DataFrame(rows, columns=["shift", "strength", "metric", "value", "clean", "drop"])
    # Shifts in the registry's order (colour cast first), then by metric and strength.
    order = {name: i for i, name in enumerate(SHIFTS.names())}
    return table.sort_values(
        ["shift", "metric", "strength"],
        key=lambda c: c.map(order) if c.name == "shift" else c,
        kind="stable",
        ignore_index=True,
    )


def load_report(run_dir: Path) -> dict | None:
    """The shift results stored in a run's folder, or None when it has none yet."""
    path = run_dir / ROBUSTNESS_FILE
    return read_json(path) if path.is_file() else None

"""Why knowledge_one_class collapsed: which middle-class operations does a trained model key on?

For finished knowledge_one_class runs of a dermoscopy task (e.g. HAM10000 "mel vs nv"), prints what the model
makes of the run's validation images (mean p(normal) of the real normal and abnormal images, AUROC of 1 - p(normal))
and, for each operation of the recipe alone at strength 0.5 on 300 normal validation images, the mean p(normal)
and the share called a middle class. A model that calls an image abnormal only for some operations has learnt a
shortcut: real abnormal images without those marks look normal to it. `--checkpoint last` reads the last epoch's
weights instead of the best epoch's. Then each run's validation AUROC per epoch.

    .venv/bin/python benchmarks/one_class_shortcut.py --store lab_data/store RUN_ID [RUN_ID ...] \\
        [--checkpoint last]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_ids", nargs="+")
    parser.add_argument("--store", default="lab_data/store", help="the run store holding the runs")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--images", type=int, default=300, help="normal validation images per operation")
    args = parser.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from imbal_core.checkpoint import load_checkpoint
    from imbal_core.engine.evaluate import load_run_model
    from imbal_core.engine.trainer import LAST_CHECKPOINT, predict
    from imbal_core.knowledge import RECIPES
    from imbal_core.runs import RunStore

    store = RunStore(args.store)
    rows, curves = [], {}
    for run_id in args.run_ids:
        model, config, metrics = load_run_model(store, run_id)
        if args.checkpoint == "last":
            model.load_state_dict(load_checkpoint(store.run_dir(run_id) / LAST_CHECKPOINT)["model"])
        run = store.get_run(run_id)
        history = run["progress"]["history"]
        label = f"{config.method_settings.get('operation_mix', 'all')} · seed {config.seed} · {config.epochs} ep"
        curves[label] = [entry["val_auroc"] for entry in history]
        val = config.load_data().val

        def p_normal(images: np.ndarray, model=model) -> np.ndarray:
            logits, _ = predict(model, images, torch.device("cpu"))
            return torch.softmax(logits.double(), 1)[:, 0].numpy()

        p = p_normal(val.images)
        normal = val.images[val.labels == 0][: args.images]
        recipe = RECIPES.get(metrics["posthoc"]["recipe"])
        per_operation = {}
        for operation in recipe.operations:
            alone = {other.name: float(other.name == operation.name) for other in recipe.operations}
            q = p_normal(recipe.middle_class(normal, 0.5, 7, alone))
            per_operation[operation.name] = (q.mean(), np.mean(q < 0.5))
        rows.append(
            (
                run_id,
                label,
                roc_auc_score(val.labels, 1 - p),
                p[val.labels == 0].mean(),
                p[val.labels == 1].mean(),
                per_operation,
            )
        )

    names = list(rows[0][5])
    print(f"checkpoint: {args.checkpoint}; per operation: mean p(normal) / share called a middle class, strength 0.5")
    print("| run | mix · seed | val AUROC | p(normal) normal | p(normal) abnormal | " + " | ".join(names) + " |")
    print("|---|---|---|---|---|" + "---|" * len(names))
    for run_id, label, auroc, p_norm, p_abn, per_operation in rows:
        cells = " | ".join(f"{mean:.2f} / {share:.2f}" for mean, share in per_operation.values())
        print(f"| {run_id} | {label} | {auroc:.3f} | {p_norm:.2f} | {p_abn:.2f} | {cells} |")
    print("\nvalidation AUROC per epoch (the curves; Compare draws them for runs in a store)")
    for label, values in curves.items():
        print(f"{label:24s} " + " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()

"""Reading finished runs from one or more stores for side-by-side comparison.

Everything here works from files saved with each run (metrics.json, predictions.npz), never
from the models, so comparisons are fast and redrawable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .engine.evaluate import split_embeddings
from .engine.robustness import drop_table, load_report
from .errors import ImbalLabError
from .imbalance import subset_suffix
from .methods.decoupled import best_tau, tau_curve, tau_normalise
from .metrics import BINARY_METRICS, SUMMARY_METRICS, compute_metrics
from .runs import MODEL_FILE, RunStore
from .runs.archive import local_config
from .stats import MIN_SEEDS_FOR_INTERVAL
from .utils import IN_CHECKOUT, PRETRAINED_DIR, REPO_ROOT, lab_home, read_json


def stores(user_store: RunStore | None = None) -> list[RunStore]:
    """The user's store, then the pretrained store shipped with the code (when present).

    Your own runs come first, so they are among the runs picked by default on Compare.
    """
    found = [RunStore(PRETRAINED_DIR)] if (PRETRAINED_DIR / "runs.sqlite").exists() else []
    return [user_store or RunStore()] + found


ARCHIVE_STORES = "archives"  # under the lab home: each benchmark archive restored as a store Compare reads


def archive_stores() -> list[RunStore]:
    """Each shipped benchmark archive (`results/<protocol>_runs`: finished runs without weights) as a store of its
    own, `<lab home>/archives/<protocol>_runs`, restored with the runs it lacks. Compare reads them as it reads runs
    of its own (per-class bars, confusion matrices, ROC, validation curves), labelled "archive <protocol>"."""
    from .benchmark_results import SHIPPED_RESULTS_DIR
    from .runs import RunArchive

    found = []
    for folder in sorted(SHIPPED_RESULTS_DIR.glob("*_runs")):
        archive = RunArchive(folder)
        if archive.run_ids():
            store = RunStore(lab_home() / ARCHIVE_STORES / folder.name)
            archive.restore(store)
            found.append(store)
    return found


def finished_runs(all_stores: list[RunStore]) -> pd.DataFrame:
    """One row per finished run across stores, with its store, its source (shipped, yours, or the archive of a
    benchmark protocol), a label and summary metrics. A run in two stores (two archives share runs) is listed once,
    from the first."""
    frames = []
    for store in all_stores:
        runs = store.runs(status="finished")
        if runs.empty:
            continue
        runs["store"] = str(store.root)
        # Shipped runs of some methods keep only results (not weights): Explain and quality need the weights.
        runs["has_model"] = [(store.run_dir(run_id) / MODEL_FILE).is_file() for run_id in runs["run_id"]]
        runs["source"] = _source(store)
        frames.append(runs)
    if not frames:
        return pd.DataFrame(columns=["run_id", "method", "data", "ratio", "seed", "source", "label", "has_model"])
    runs = pd.concat(frames, ignore_index=True).drop_duplicates("run_id").reset_index(drop=True)
    runs["ratio_label"] = runs["ratio"].map(lambda r: "natural" if pd.isna(r) else f"{r:g}")
    # Runs are comparable when they share the data set, its options, image size and split.
    runs["data"] = _data_labels(runs["config"])
    # Runs that differ only in their seed form one group (one bar colour, mean ± sd).
    runs["group"] = runs["config"].map(group_label)
    runs["label"] = (
        runs["method"]
        + " · "
        + runs["data"]
        + " · ratio "
        + runs["ratio_label"]
        + " · seed "
        + runs["seed"].astype(str)
        + " · "
        + runs["source"]
        + " · "
        + runs["run_id"].str[-6:]
    )
    summaries = runs["summary"].map(lambda s: json.loads(s) if s else {})
    for metric in SUMMARY_METRICS + BINARY_METRICS:
        runs[metric] = summaries.map(lambda s, m=metric: s.get(m))
    return runs


def ratio_order(label: str) -> float:
    """Sort key of ratio labels: natural counts first, then the ratios by size."""
    return 0.0 if label == "natural" else float(label)


def first_ratio_with_intervals(runs: pd.DataFrame) -> str | None:
    """The first ratio (in `ratio_order`) where a method group has enough seeds for intervals (the shipped grid's
    10, 50, 100: 3 seeds each), else the first ratio: the page opens on a comparison with statistics rather than
    the one-seed natural counts. None without runs."""
    ratios = sorted(runs["ratio_label"].unique(), key=ratio_order)
    seeds_at = runs.groupby(["ratio_label", "group"])["seed"].nunique().groupby(level="ratio_label").max()
    with_intervals = [r for r in ratios if seeds_at.get(r, 0) >= MIN_SEEDS_FOR_INTERVAL]
    return (with_intervals or ratios or [None])[0]


def _source(store: RunStore) -> str:
    root = store.root.resolve()
    if root == PRETRAINED_DIR.resolve():
        return "shipped"
    if root.parent == (lab_home() / ARCHIVE_STORES).resolve():
        return f"archive {root.name.removesuffix('_runs')}"
    return "yours"


def default_selection(pool: pd.DataFrame, reference: str = "ce") -> pd.DataFrame:
    """The runs Compare picks first: for each method one group, all its runs; `reference` always among them.

    A method's group is the one with the most seeds, then the longest training, then shipped before yours
    (so a quick 1-epoch run of one's own never replaces the shipped 8-epoch baseline). Methods come in the
    registry's order with the reference first; the order does not depend on when runs were made.
    """
    from .methods import METHODS

    if pool.empty:
        return pool
    epochs = pool["config"].map(lambda c: json.loads(c)["epochs"])
    ranked = (
        pool.assign(epochs=epochs, shipped=pool["source"] == "shipped")
        .groupby(["method", "group"], sort=False)
        .agg(seeds=("seed", "nunique"), epochs=("epochs", "max"), shipped=("shipped", "max"))
        .reset_index()
        .sort_values(["seeds", "epochs", "shipped", "group"], ascending=[False, False, False, True])
    )
    chosen = ranked.drop_duplicates("method")
    order = {name: i for i, name in enumerate([reference] + [m for m in METHODS.names() if m != reference])}
    chosen = chosen.assign(rank=chosen["method"].map(order).fillna(len(order))).sort_values(["rank", "method"])
    picked = pool[pool["group"].isin(chosen["group"])]
    position = {group: i for i, group in enumerate(chosen["group"])}
    return picked.assign(_order=picked["group"].map(position)).sort_values(["_order", "seed"]).drop(columns="_order")


# Training options that make runs of one method differ in more than their seed (named in the group when not default).
TRAINING_OPTIONS = (
    "profile",
    "fit",
    "head_order",
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "augment",
    "init_from",
)


SUBSET_IN_NAME = "_r<ratio>_s<seed>"  # in a group's label: each run used the generator of its own ratio and seed


def group_label(config_json: str) -> str:
    """Method with its non-default settings, epochs, backbone, starting weights and other non-default training
    options, e.g. "crckd[ablation=mt] · 6 ep · resnet10t_small", "ce · 8 ep · resnet10t_small · lr=0.01" or
    "ce · 8 ep · resnet18 · ImageNet (a1_in1k)"."""
    from .engine import TrainConfig
    from .models import weights_label

    config = json.loads(config_json)
    # A generator trained for this run's own ratio and seed (`diffusion-train --ratio R --seed S` names it
    # <name>_r<R>_s<S>, a protocol writes <name>{subset}) belongs to the seed's replicate: the seeds stay one group
    # (and the ratios one method, for charts over ratios), labelled <name>_r<ratio>_s<seed>.
    subset = subset_suffix(config.get("ratio"), config["seed"])
    settings = ",".join(
        f"{k}={v.removesuffix(subset)}{SUBSET_IN_NAME}"
        if subset and isinstance(v, str) and v.endswith(subset)
        else f"{k}={v}"
        for k, v in sorted(config["method_settings"].items())
    )
    method = f"{config['method']}[{settings}]" if settings else config["method"]
    defaults = TrainConfig.__dataclass_fields__
    options = [
        f"{key}={config[key]}"
        for key in TRAINING_OPTIONS
        if key in config
        and config[key] != defaults[key].default
        and not (key == "profile" and config.get("ratio") is None)
    ]  # a profile means nothing at natural counts
    weights = weights_label(config.get("pretrained"))
    return " · ".join([method, _epochs_label(config), config["backbone"], *filter(None, [weights]), *options])


def _epochs_label(config: dict) -> str:
    """ "30 ep"; a method whose stages add epochs to the budget says how many it trains: "30+2 ep" (a decoupled
    classifier stage after 30 epochs of features)."""
    trained = [epochs for _, epochs in run_stages(config)]
    return f"{config['epochs']} ep" if sum(trained) == config["epochs"] else f"{'+'.join(map(str, trained))} ep"


def run_stages(config: dict) -> list[tuple[str, int]]:
    """(stage, epochs) a run's method trains for its epoch budget (e.g. [("representation", 30), ("classifier",
    2)]); a method or setting this code no longer has: one stage of the recorded budget."""
    from .methods import create_method

    try:
        stages = create_method(config["method"], **config["method_settings"]).stages(config["epochs"])
    except ImbalLabError:
        return [("train", config["epochs"])]
    return [(stage.name, stage.epochs) for stage in stages]


def embedding_projection(result: RunResult, max_points: int = 2000) -> pd.DataFrame:
    """2-D PCA of a run's test features (kept with its predictions, or computed with its weights), with each
    point's true class (for a scatter plot)."""
    from sklearn.decomposition import PCA

    embeddings, labels = split_embeddings(RunStore(result.run_dir.parent.parent), result.run_id, "test")
    ids = result.predictions()["ids"]
    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings[:max_points])
    names = np.array(result.class_names)[labels[:max_points]]
    return pd.DataFrame({"pc1": xy[:, 0], "pc2": xy[:, 1], "class": names, "id": ids[:max_points]})


def _data_labels(configs: pd.Series) -> pd.Series:
    """Each run's data set label ("ham10000 28px", "ham10000 [mel vs nv] 28px"). Two folders of one source are two
    data sets: a folder named otherwise than its source is named, and when two folders would share a label, a hash
    of each one's full path tells them apart ("ham10000 ham10000#d74c 28px")."""
    parsed = configs.map(json.loads)
    plain = parsed.map(lambda config: _data_label(config, hashed=False))
    paths = parsed.map(lambda config: _folder_of(config.get("data_path")))
    shared = plain.map(paths.groupby(plain).nunique()) > 1
    return plain.where(~shared, parsed.map(lambda config: _data_label(config, hashed=True)))


def _folder_of(path: str | None) -> str:
    """The folder a recorded data path names, however it was written (an archive's "<checkout>/..", a shipped run's
    path relative to the checkout, an absolute one): two spellings of one folder are one data set."""
    if not path:
        return ""
    local = local_config({"data_path": path})["data_path"]
    return os.path.normpath(REPO_ROOT / local)  # an absolute path stays as it is


def _data_label(config: dict, hashed: bool) -> str:
    options = "".join(f" {k}={v}" for k, v in sorted(config["data_options"].items()))
    split = f" split {config['split_seed']}" if config["split_seed"] else ""
    task = f" [{config['task']}]" if config.get("task") else ""  # a binary task is another data set
    # Colour-corrected images are other inputs: runs with and without constancy are not pooled.
    constancy = f" {config['colour_constancy']}" if config.get("colour_constancy") else ""
    path = config.get("data_path")
    where = ""
    if path and hashed:  # the folder's hash, however its path was written
        where = f" {Path(path).name}#{hashlib.sha1(_folder_of(path).encode()).hexdigest()[:4]}"
    elif path and Path(path).name != config["data"]:
        where = f" {Path(path).name}"
    return f"{config['data']}{where}{options}{task}{constancy} {config['image_size']}px{split}"


@dataclass
class RunResult:
    run_id: str
    method: str
    group: str
    label: str
    metrics: dict
    run_dir: Path

    @property
    def class_names(self) -> list[str]:
        return self.metrics["class_names"]

    def has_linear_head(self) -> bool:
        """Whether the run saved a plain linear head over its classes (needed to re-score it with tau-norm).

        One-class heads predict levels, not the data set's classes, and do not count.
        """
        with np.load(self.run_dir / "predictions.npz", allow_pickle=False) as archive:
            weight = archive["head_weight"]  # reads only this member of the archive
        return weight.ndim == 2 and len(weight) == len(self.class_names)

    @property
    def is_binary(self) -> bool:
        return "auroc" in self.metrics["summary"]

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Predicted classes: the most probable one, or for binary runs positive at the validation threshold."""
        if self.is_binary:
            return (probs[:, 1] >= self.metrics["summary"]["threshold"]).astype(int)
        return probs.argmax(1)

    def predictions(self) -> dict[str, np.ndarray]:
        with np.load(self.run_dir / "predictions.npz", allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}


def identical_groups(results: list[RunResult], runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(group, earlier group) pairs whose runs gave byte-identical test probabilities on every seed both have (e.g.
    `logit_adjust` at tau = 1 is `balanced_softmax`'s loss): one method counted twice, said beside its numbers.
    `results` are the `RunResult`s of `runs`' rows, of one data set and ratio."""
    seed_of = dict(zip(runs["run_id"], runs["seed"]))
    digests: dict[str, dict[int, str]] = {}
    for result in results:
        probs = np.ascontiguousarray(result.predictions()["probs"])
        digests.setdefault(result.group, {})[int(seed_of[result.run_id])] = hashlib.sha256(probs.tobytes()).hexdigest()
    groups = list(digests)
    return [
        (group, earlier)
        for i, group in enumerate(groups)
        for earlier in groups[:i]
        if (shared := digests[group].keys() & digests[earlier].keys())
        and all(digests[group][seed] == digests[earlier][seed] for seed in shared)
    ]


def identical_note(pairs: list[tuple[str, str]], name: Callable[[str], str] = str) -> str:
    """`identical_groups`' pairs as a sentence; `name` shortens a group label."""
    named = "; ".join(f"`{name(group)}` = `{name(earlier)}`" for group, earlier in pairs)
    return (
        f"Identical test predictions, byte for byte, on every seed: {named}. The same model counted twice (e.g. "
        "`logit_adjust` at its default tau = 1 is `balanced_softmax`'s loss; see its card): one is not evidence "
        "for the other."
    )


def run_history(row: pd.Series) -> list[dict]:
    """The per-epoch history a run recorded (loss, validation scores, a method's own log such as IOIS's AAS)."""
    progress = RunStore(row["store"]).get_run(row["run_id"])["progress"] or {}
    return progress.get("history", [])


def load_results(runs: pd.DataFrame) -> list[RunResult]:
    results = []
    for row in runs.itertuples():
        run_dir = Path(row.store) / "runs" / row.run_id
        results.append(
            RunResult(row.run_id, row.method, row.group, row.label, read_json(run_dir / "metrics.json"), run_dir)
        )
    return results


def per_class_table(results: list[RunResult], metric: str = "recall") -> pd.DataFrame:
    """Rows (group, class, training count, value) averaged over the seeds of a group (mean and sd)."""
    rows = []
    for r in results:
        for name, count, value in zip(r.class_names, r.metrics["train_counts"], r.metrics["per_class"][metric]):
            rows.append({"method": r.group, "class": name, "train_count": count, "value": value})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    table = (
        frame.groupby(["method", "class"], sort=False)
        .agg(train_count=("train_count", "mean"), mean=("value", "mean"), sd=("value", "std"), runs=("value", "size"))
        .reset_index()
        .sort_values("train_count", ascending=False, kind="stable")
    )
    table["class_label"] = class_labels(table["class"], table["train_count"])
    return table


def class_labels(classes: pd.Series, train_counts: pd.Series) -> pd.Series:
    """ "name (training images)": how every per-class chart and table labels a class."""
    return classes + " (" + train_counts.round().astype(int).astype(str) + ")"


def change_vs_baseline(results: list[RunResult], baseline: str, relative: bool = False) -> pd.DataFrame:
    """Per-class recall of every group minus that of the `baseline` group (means over seeds).

    Absolute change in percentage points, or relative change in % of the baseline's recall (undefined,
    NaN, where the baseline's recall is 0: rare classes a plain CE never predicts).
    """
    table = per_class_table(results, "recall")
    if table.empty or baseline not in set(table["method"]):
        return pd.DataFrame(columns=["method", "class", "class_label", "change"])
    base = table[table["method"] == baseline].set_index("class")["mean"]
    others = table[table["method"] != baseline].copy()
    reference = others["class"].map(base)
    difference = others["mean"] - reference
    others["change"] = 100 * (difference / reference.where(reference > 0) if relative else difference)
    return others[["method", "class", "class_label", "change", "runs"]]


def binary_curves(results: list[RunResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC and precision-recall points of binary runs' test scores (one curve per run, labelled by its group)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    roc, pr = [], []
    for r in results:
        preds = r.predictions()
        labels, scores = preds["labels"], preds["scores"]
        fpr, tpr, _ = roc_curve(labels, scores)
        precision, recall, _ = precision_recall_curve(labels, scores)
        name = f"{r.group.split(' · ')[0]} · {r.run_id[-6:]}"
        roc.append(
            pd.DataFrame({"run": name, "group": r.group, "fpr": fpr, "tpr": tpr, "auc": r.metrics["summary"]["auroc"]})
        )
        pr.append(
            pd.DataFrame(
                {
                    "run": name,
                    "group": r.group,
                    "recall": recall,
                    "precision": precision,
                    "auc": r.metrics["summary"]["auprc"],
                }
            )
        )
    return pd.concat(roc, ignore_index=True), pd.concat(pr, ignore_index=True)


def score_table(result: RunResult) -> pd.DataFrame:
    """A binary run's test scores with each image's true side (normal / abnormal by class name)."""
    preds = result.predictions()
    names = np.array(result.class_names)[preds["labels"]]
    return pd.DataFrame({"score": preds["scores"], "class": names, "id": preds["ids"]})


def normalised_confusion(result: RunResult) -> np.ndarray:
    """Rows are true classes, normalised to sum to 1 (recall on the diagonal)."""
    confusion = np.asarray(result.metrics["confusion"], dtype=float)
    return confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)


def tau_rescore(result: RunResult, tau: float, embeddings: np.ndarray, labels: np.ndarray) -> dict:
    """Metrics of a run's head with its weights tau-normalised (bias dropped) on saved embeddings of one split."""
    import torch

    weight = result.predictions()["head_weight"]
    if weight.ndim != 2:
        raise ValueError(f"run {result.run_id} has no linear head to tau-normalise")
    logits = embeddings.astype(np.float32) @ tau_normalise(torch.from_numpy(weight), tau).numpy().T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return compute_metrics(probs, labels, np.asarray(result.metrics["train_counts"]))


def tau_on_validation(
    result: RunResult, val_embeddings: np.ndarray, val_labels: np.ndarray
) -> tuple[pd.DataFrame, float]:
    """Validation balanced accuracy for each tau, and the tau the tau_norm method would choose from it.

    Tau is chosen here, on validation; the test set is only scored at the chosen tau (`tau_rescore`).
    """
    import torch

    weight = result.predictions()["head_weight"]
    if weight.ndim != 2:
        raise ValueError(f"run {result.run_id} has no linear head to tau-normalise")
    curve = tau_curve(
        torch.from_numpy(weight),
        torch.from_numpy(val_embeddings.astype(np.float32)),
        torch.from_numpy(np.asarray(val_labels)),
    )
    return pd.DataFrame(curve, columns=["tau", "val_balanced_acc"]), best_tau(curve)


def shift_results(results: list[RunResult], metric: str) -> pd.DataFrame:
    """`metric` of each run under every acquisition shift and strength it was evaluated at (strength 0 = unshifted).

    Rows: run (method · id), run_id, group, shift, strength, value, clean, drop; runs without shift results are left out
    (`shift_commands` says how to compute them).
    """
    frames = []
    for r in results:
        report = load_report(r.run_dir)
        if report is not None:
            constancy = f" · {report['colour_constancy']}" if report["colour_constancy"] else ""
            name = f"{r.group.split(' · ')[0]}{constancy} · {r.run_id[-6:]}"
            frames.append(drop_table(report, [metric]).assign(run=name, run_id=r.run_id, group=r.group))
    columns = ["run", "run_id", "group", "shift", "strength", "value", "clean", "drop"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def shift_drops(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, shift): the unshifted value, then the drop at each strength (from `shift_results`)."""
    shifted = table[table["strength"] > 0]
    wide = shifted.pivot_table(index=["run", "shift"], columns="strength", values="drop", sort=False)
    wide = wide[sorted(wide.columns)]
    wide.columns = [f"drop at {s}" for s in wide.columns]
    clean = table.groupby(["run", "shift"], sort=False)["clean"].first()
    return pd.concat([clean.rename("unshifted"), wide], axis=1).reset_index()


def shift_commands(runs: pd.DataFrame) -> list[str]:
    """CLI commands that compute shift results for these runs (rows of `finished_runs`), one per store.

    Runs without weights are left out: they cannot be re-evaluated.
    """
    commands = []
    for store, rows in runs[runs["has_model"]].groupby("store", sort=False):
        root = Path(store).resolve()
        if root == (lab_home() / "store").resolve():
            option = ""  # the default store
        else:
            shown = root.relative_to(REPO_ROOT) if IN_CHECKOUT and root.is_relative_to(REPO_ROOT) else root
            option = f" --store {shown}"
        commands.append(f"python -m imbal_core{option} robustness {' '.join(rows['run_id'])}")
    return commands

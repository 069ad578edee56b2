"""Compare: runs side by side — per-class recall, metrics with mean ± sd, per-class change against a
baseline (e.g. ce), confusion matrices, metric versus ratio, and a live tau-norm re-scoring."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from imbal_core import charts
from imbal_core.compare import (binary_curves, change_vs_baseline, embedding_projection, finished_runs, load_results,
                                normalised_confusion, per_class_table, score_table, shift_commands, shift_drops,
                                shift_results, summary_table, tau_rescore)
from imbal_core.metrics import SUMMARY_METRICS
from imbal_core.shifts import SHIFTS

BINARY_TABLE = ("auroc", "auprc", "sens_at_90_spec", "sens_at_95_spec", "sensitivity", "specificity", "balanced_acc",
                "acc")
from app_pages.common import all_stores


@st.cache_data(ttl=5, show_spinner=False)
def runs_table() -> pd.DataFrame:
    return finished_runs(all_stores())


st.title("Compare")
runs = runs_table()
if runs.empty:
    st.info("No finished runs yet: train some on the Train page.")
    st.stop()

f1, f2, f3, f4 = st.columns(4)
data = f1.multiselect("Data set", sorted(runs["data"].unique()), default=sorted(runs["data"].unique())[:1], key="cmp_data")
ratios = f2.multiselect("Ratio", sorted(runs["ratio_label"].unique()), key="cmp_ratio", placeholder="all")
methods = f3.multiselect("Method", sorted(runs["method"].unique()), key="cmp_method", placeholder="all")
sources = f4.multiselect("Source", ["pretrained", "yours"], default=["pretrained", "yours"], key="cmp_source")
pool = runs[runs["data"].isin(data) & runs["source"].isin(sources)]
if ratios:
    pool = pool[pool["ratio_label"].isin(ratios)]
if methods:
    pool = pool[pool["method"].isin(methods)]
# Keyed by the filters, so the default selection follows them.
filters_key = "|".join(map(str, (data, ratios, methods, sources)))
picked_labels = st.multiselect("Runs", pool["label"].tolist(), default=pool["label"].tolist()[:12],
                               key=f"cmp_runs_{filters_key}")
picked = pool[pool["label"].isin(picked_labels)]
if picked.empty:
    st.info("Pick at least one run.")
    st.stop()
results = load_results(picked)
if len({tuple(r.class_names) for r in results}) > 1:
    st.error("The picked runs have different classes; pick runs of one data set.")
    st.stop()

binary = all(r.is_binary for r in results)
if binary:
    st.header("Abnormal vs normal: ROC, precision–recall and scores")
    roc, pr = binary_curves(results)
    left, right = st.columns(2)
    left.plotly_chart(charts.roc_curves(roc), key="cmp_roc")
    labels = results[0].predictions()["labels"]
    right.plotly_chart(charts.pr_curves(pr, float(labels.mean())), key="cmp_pr")
    st.caption("Test-set curves of each picked run (score = the run's abnormality score: p(abnormal) for classifiers, "
               "1 − p(normal) or the expected level for knowledge_one_class, d / (1 + d) of the squared distance d to "
               "the centre for deep_svdd). "
               "Dashed lines mark 90 % and 95 % specificity: the sensitivity where a curve crosses them is in the "
               "Metrics tab.")
    shown = st.selectbox("Score histograms of", [r.label for r in results], key="cmp_hist_run")
    result = next(r for r in results if r.label == shown)
    st.plotly_chart(charts.score_histogram(score_table(result), result.class_names,
                                           result.metrics["summary"]["threshold"], result.group),
                    key="cmp_score_hist")
    st.caption("Where normal and abnormal test images fall on the score; their overlap is what AUROC measures. "
               "The threshold was chosen on the validation split (best balanced accuracy), never on test.")

st.header("Per-class recall")
metric = st.radio("Per-class metric", ["recall", "precision", "f1"], horizontal=True, key="cmp_metric")
st.plotly_chart(charts.per_class_bars(per_class_table(results, metric), metric), key="cmp_per_class")
st.caption("Classes ordered by training count (head first). Error bars: sd over runs of the same method.")

# One tab per view: only the open tab's charts are drawn, so the first chart shows at once.
metrics_tab, change_tab, confusion_tab, ratio_tab, tau_tab, embedding_tab = st.tabs(
    ["Metrics", "Change vs a baseline", "Confusion matrices", "Metric vs ratio", "tau-norm, live", "Embeddings"])
with metrics_tab:
    shown_metrics = BINARY_TABLE if binary else SUMMARY_METRICS
    table = summary_table(picked, shown_metrics)
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Download CSV", picked[["run_id", "method", "group", "data", "ratio", "seed", *shown_metrics]]
                       .to_csv(index=False), "imbalance_lab_metrics.csv", "text/csv", key="cmp_csv")
    if binary:
        st.caption("AUROC, AUPRC and sensitivity at 90 / 95 % specificity come from the test ROC curve; sensitivity, "
                   "specificity, balanced acc and acc are at each run's threshold, chosen on validation.")
    else:
        st.caption("Macro AUC is one-vs-rest. many/medium/few: classes split by terciles of their training counts. "
                   "ECE uses 15 bins. Charts download as PNG from their toolbar (camera icon).")

with change_tab:
    groups = list(dict.fromkeys(r.group for r in results))
    if picked[["data", "ratio_label"]].drop_duplicates().shape[0] > 1:
        st.caption("The picked runs span several data sets or ratios: filter to one ratio (above) so each method is "
                   "compared with the baseline on the same training data.")
    elif len(groups) < 2:
        st.caption("Pick runs of at least two methods to see one's per-class change against another.")
    else:
        default = next((i for i, g in enumerate(groups) if g.split(" · ")[0] == "ce"), 0)
        baseline = st.selectbox("Baseline", groups, index=default, key="cmp_baseline")
        relative = st.radio("Change", ["percentage points", "relative (%)"], horizontal=True,
                            key="cmp_change_kind") == "relative (%)"
        change = change_vs_baseline(results, baseline, relative)
        st.plotly_chart(charts.change_vs_baseline(change, baseline, relative), key="cmp_change_chart")
        st.caption("Per-class test recall of each method minus the baseline's (means over the picked runs of each "
                   "group), classes labelled with their training counts — the IOIS paper's per-class figure, for "
                   "any method." + (" Relative change is undefined (no bar) where the baseline's recall is 0."
                                    if relative else ""))

with confusion_tab:
    columns = st.columns(min(3, len(results)))
    for i, result in enumerate(results[:9]):
        with columns[i % len(columns)]:
            st.plotly_chart(charts.confusion_heatmap(normalised_confusion(result), result.class_names, result.label),
                            key=f"cmp_confusion_{result.run_id}")

with ratio_tab:
    if picked["ratio"].notna().sum() and picked["ratio_label"].nunique() > 1:
        ratio_metric = st.selectbox("Metric", BINARY_TABLE if binary else SUMMARY_METRICS, index=0 if binary else 1,
                                    key="cmp_ratio_metric")
        st.plotly_chart(charts.metric_vs_ratio(picked, ratio_metric), key="cmp_ratio_chart")
    else:
        st.caption("Pick runs at two or more imbalance ratios to see this curve.")

with tau_tab:
    st.caption("Divides each class's head weights by their norm to the power tau (bias dropped) and re-scores the "
               "saved test embeddings: no retraining.")
    # tau-norm re-balances many classes' logits; binary runs decide at a validation threshold instead.
    linear = [r for r in results if r.has_linear_head() and not r.is_binary]
    if linear:
        target = st.selectbox("Run", [r.label for r in linear], key="cmp_tau_run")
        tau = st.slider("tau", 0.0, 2.0, 1.0, 0.05, key="cmp_tau")
        result = next(r for r in linear if r.label == target)
        rescored = tau_rescore(result, tau)
        base = tau_rescore(result, 0.0)
        cols = st.columns(3)
        for col, key in zip(cols, ("balanced_acc", "acc", "few_acc")):
            col.metric(key, f"{rescored['summary'][key]:.3f}", f"{rescored['summary'][key] - base['summary'][key]:+.3f} vs tau 0")
        rows = [{"method": f"tau={tau:g}", "class": n, "train_count": c, "mean": v, "sd": None, "runs": 1}
                for n, c, v in zip(result.class_names, result.metrics["train_counts"], rescored["per_class"]["recall"])]
        rows += [{"method": "tau=0", "class": n, "train_count": c, "mean": v, "sd": None, "runs": 1}
                 for n, c, v in zip(result.class_names, result.metrics["train_counts"], base["per_class"]["recall"])]
        frame = pd.DataFrame(rows).sort_values("train_count", ascending=False, kind="stable")
        st.plotly_chart(charts.per_class_bars(frame), key="cmp_tau_chart")
    else:
        st.caption("None of the picked runs is a multi-class run with a plain linear head.")

with embedding_tab:
    st.caption("PCA of the pooled test-set features, coloured by true class. For two-stage runs these are the "
               "stage-1 features (the backbone is frozen in stage 2).")
    projected = st.selectbox("Run", [r.label for r in results], key="cmp_embedding_run")
    chosen = next(r for r in results if r.label == projected)
    st.plotly_chart(charts.embedding_scatter(embedding_projection(chosen), chosen.group), key="cmp_embedding_chart")

st.header("Robustness to acquisition shift")
shift_metric = "auroc" if binary else "balanced_acc"
shifted = shift_results(results, shift_metric)
if not shifted.empty:
    st.plotly_chart(charts.shift_curves(shifted, shift_metric), key="cmp_shift_chart")
    st.dataframe(shift_drops(shifted), hide_index=True, width="stretch")
    st.caption(f"Test {shift_metric} of each run's model on its own test split, shifted; strength 0 is the unshifted "
               "test set. Drop = unshifted − shifted (> 0: worse). Binary runs keep their validation threshold; runs "
               "trained with colour constancy get it after the shift, as a new clinic's images would. What one "
               "step of strength is: " + "; ".join(f"**{name}**: {SHIFTS.get(name).description}"
                                                    for name in SHIFTS.names()) + ".")
without = picked[~picked["run_id"].isin(shifted["run_id"])]
if not without.empty:
    no_weights = int((~without["has_model"]).sum())
    st.caption(f"{len(without)} picked run(s) have no shift results yet"
               + (f"; {no_weights} of them keep no weights (shipped results only) and cannot be shifted: re-make "
                  "them with their command in pretrained/manifest.json" if no_weights else "")
               + ("." if no_weights == len(without) else ". Compute the others' (then reload this page):"))
    commands = shift_commands(without)
    if commands:
        st.code("\n".join(commands), language="bash")

"""Compare: runs of one data set and ratio side by side — a leaderboard (n seeds, mean ± sd, 95% intervals),
differences paired by seed against a reference method, per-class recall, a method x class heat map,
confusion matrices, metric vs ratio, tau-norm tuned on validation, and acquisition-shift robustness.
Everything exports: CSV tables, PNG or SVG charts, and a one-file HTML report. A second view shows the benchmarks'
results files (results/) as reference tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import compare_stores
from imbal_core import charts
from imbal_core.benchmark_results import BenchmarkResults, read_results, results_dir, results_files
from imbal_core.compare import (
    SUBSET_IN_NAME,
    RunResult,
    binary_curves,
    change_vs_baseline,
    class_labels,
    default_selection,
    embedding_projection,
    finished_runs,
    first_ratio_with_intervals,
    identical_groups,
    identical_note,
    load_results,
    normalised_confusion,
    per_class_table,
    ratio_order,
    run_history,
    score_table,
    shift_commands,
    shift_drops,
    shift_results,
    tau_on_validation,
    tau_rescore,
)
from imbal_core.engine.evaluate import has_split_embeddings, split_embeddings
from imbal_core.errors import ImbalLabError
from imbal_core.report import Section, html_report, results_file_report, runs_provenance
from imbal_core.runs import RunStore
from imbal_core.shifts import SHIFTS
from imbal_core.stats import (
    MIN_SEEDS_FOR_INTERVAL,
    Ranking,
    formatted_leaderboard,
    leaderboard,
    paired_class_differences,
    paired_differences,
    rank_groups,
    verdict,
)
from imbal_core.stats import validation_curves as stats_validation_curves

# The numbers imbalance is about first: accuracy of the rare, medium and common classes.
LEADERBOARD_METRICS = [
    "few_acc",
    "medium_acc",
    "many_acc",
    "balanced_acc",
    "macro_f1",
    "acc",
    "macro_auc_ovr",
    "g_mean",
    "kappa_quadratic",
    "ece",
]
BINARY_METRICS = [
    "auroc",
    "auprc",
    "sens_at_90_spec",
    "sens_at_95_spec",
    "sensitivity",
    "specificity",
    "balanced_acc",
    "acc",
]


def subset_note(table: pd.DataFrame) -> None:
    if table["group"].str.contains(SUBSET_IN_NAME, regex=False).any():
        st.caption(
            f"`{SUBSET_IN_NAME}` in a group: each run used a generator trained on its own training subset, named "
            "with the run's ratio and seed, so the seeds are one group, as replicates of the whole recipe."
        )


def leaderboard_columns(table: pd.DataFrame) -> dict[str, st.column_config.Column]:
    """A narrow, pinned method column (the group label wraps in its tooltip), and each metric column as wide as its
    longest "mean ± sd [low, high]" cell: sized by its content, a grid keeps the widths of its first table, so a
    one-seed table ("± —") would cut the intervals of a three-seed one drawn in its place."""
    columns = {"group": st.column_config.TextColumn(width="medium", pinned=True)}
    for name in table.columns.drop("group"):
        longest = max(len(str(name)), *(len(str(cell)) for cell in table[name]))
        columns[name] = st.column_config.Column(width=int(6.8 * longest) + 24)
    return columns


HOLM_NOTE = (
    "verdict: the raw 95 % interval, and beside it Holm's correction over every difference of the table (p_holm "
    "< 0.05: the difference holds with all of them tested together). With 3 seeds a correction over many "
    "differences keeps only very consistent ones."
)
RUNS_VIEW, FILES_VIEW = "Runs", "Benchmark results files"
SPREAD_NOTE = (
    "Test-set metrics as mean ± sd over **seeds** [95% t interval, from 3 seeds]. With 3 seeds an interval is wide; "
    "where it would pass the metric's range (0 to 1) it is cut there, and the cut end is marked *: the seeds do not "
    "pin the mean down."
)
# What the paired-difference charts show unless the user picks others: the scores imbalance moves, on one scale.
# g_mean, kappa and ECE have other ranges, and a seed that never predicts a class has a g_mean of 0, whose interval
# stretches the axis until differences of a few points in the rest cannot be seen.
PAIRED_CHART_METRICS = [
    "auroc",
    "auprc",
    "sens_at_95_spec",
    "balanced_acc",
    "macro_f1",
    "few_acc",
    "medium_acc",
    "many_acc",
]

# The widgets inside Compare's tabs (their state outlives a closed tab, see below).
TAB_WIDGETS = [
    "cmp_heat_kind",
    "cmp_change_kind",
    "cmp_confusion_run",
    "cmp_confusion_all",
    "cmp_ratio_metric",
    "cmp_tau_run",
    "cmp_embedding_run",
]


@st.cache_data(show_spinner=False, max_entries=4)
def _finished_runs(stores_state: tuple) -> pd.DataFrame:
    runs = finished_runs(compare_stores())
    # Your runs form groups of their own, tagged in every legend: a shipped run of the same config is not yours.
    yours = runs["source"] == "yours"
    runs.loc[yours, "group"] = runs.loc[yours, "group"] + " · yours"
    return runs


def runs_table() -> pd.DataFrame:
    """Finished runs of every store, read again whenever a store was written to."""
    return _finished_runs(tuple((str(store.root), store.state()) for store in compare_stores()))


@st.cache_data(show_spinner=False, max_entries=8)
def cached_identical_groups(run_ids: tuple[str, ...], _results: list[RunResult], _runs: pd.DataFrame) -> list:
    """`identical_groups` (it reads every picked run's predictions), once per set of picked runs."""
    return identical_groups(_results, _runs)


CHART_CONTEXT = {"text": ""}  # what every chart of this rerun shows: data set, ratio, seeds (set below)


def show(fig: go.Figure, key: str, target=st) -> None:
    """A chart titled with what it shows (data set, ratio, seeds, and the parts every group's label shares, which
    leave its legend), whose toolbar camera downloads it in the format chosen at the top of the page."""
    chart_format = st.session_state.get("cmp_chart_format", "png")
    target.plotly_chart(
        charts.with_context(fig, CHART_CONTEXT["text"]),
        key=key,
        config={"toImageButtonOptions": {"format": chart_format, "scale": 2, "filename": key.removeprefix("cmp_")}},
    )


@st.cache_data(show_spinner="Tuning tau on the validation split…", max_entries=16)
def cached_tau_norm(store_root: str, run_id: str, _result: RunResult) -> tuple[pd.DataFrame, float, dict]:
    """(validation curve, chosen tau, test metrics at that tau) of one run; 41 re-scorings, so computed once."""
    store = RunStore(store_root)
    curve, tau = tau_on_validation(_result, *split_embeddings(store, run_id, "val"))
    return curve, tau, tau_rescore(_result, tau, *split_embeddings(store, run_id, "test"))


def tau_norm_view(result: RunResult) -> None:
    """tau chosen on the validation split; the test set scored once, at that tau."""
    curve, tau, tuned = cached_tau_norm(str(result.run_dir.parent.parent), result.run_id, result)
    cols = st.columns(4)
    cols[0].metric("tau chosen on validation", f"{tau:g}")
    for col, key in zip(cols[1:], ("balanced_acc", "few_acc", "acc")):
        change = tuned["summary"][key] - result.metrics["summary"][key]
        col.metric(
            f"test {key}",
            f"{tuned['summary'][key]:.3f}",
            f"{change:+.3f} vs as trained (with bias)",
            delta_color="normal" if round(change, 3) else "off",  # no green arrow for +0.000
        )
    show(
        go.Figure(go.Scatter(x=curve["tau"], y=curve["val_balanced_acc"], mode="lines+markers"))
        .add_vline(x=tau, line_dash="dash", annotation_text=f"chosen tau = {tau:g}")
        .update_layout(xaxis_title="tau", yaxis_title="validation balanced accuracy", height=320, margin=dict(t=30)),
        "cmp_tau_curve",
    )
    rows = [
        {"method": label, "class": n, "train_count": c, "mean": v, "sd": None, "runs": 1}
        for label, recalls in (
            ("as trained", result.metrics["per_class"]["recall"]),
            (f"tau-norm, tau = {tau:g}", tuned["per_class"]["recall"]),
        )
        for n, c, v in zip(result.class_names, result.metrics["train_counts"], recalls)
    ]
    show(
        charts.per_class_bars(pd.DataFrame(rows).sort_values("train_count", ascending=False, kind="stable")),
        "cmp_tau_chart",
    )
    st.caption(
        "Each class's head weights are divided by their norm to the power tau (bias dropped). tau is "
        "chosen where the **validation** balanced accuracy peaks; the test set is scored once, at that "
        "tau — tuning on test would flatter the method."
    )


@dataclass(frozen=True)
class Comparison:
    """What every tab draws from: the picked runs (table and loaded results), the reference group, the metrics,
    and the picked groups' runs at every ratio of the data set (for metric vs ratio)."""

    picked: pd.DataFrame
    results: list[RunResult]
    reference: str
    metrics: list[str]
    ratio_runs: pd.DataFrame

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.picked["group"]))


def paired_metrics_view(differences: pd.DataFrame, reference: str, metrics: list[str], key: str) -> None:
    """The paired differences of the metrics the user picks (PAIRED_CHART_METRICS at first) as a chart, and of every
    metric as a table, in `metrics`' order."""
    picked = st.multiselect(
        "Metrics in the chart",
        metrics,
        default=[m for m in PAIRED_CHART_METRICS if m in metrics],
        key=f"{key}_picked_{'binary' if 'auroc' in metrics else 'classes'}",  # a pick per kind of task
        persist_state="page",
        help="g_mean, kappa and ECE are left out at first: their ranges differ, and a g_mean of 0 (a class never "
        "predicted) stretches the axis. For ECE lower is better, so a difference above 0 is worse. The table has "
        "every metric.",
    )
    ordered = differences[differences["metric"].isin(metrics)]
    ordered = ordered.sort_values("metric", key=lambda m: m.map(metrics.index), kind="stable")
    if picked:
        rows = ordered[ordered["metric"].isin(picked)]
        show(charts.paired_difference_chart(rows.assign(x=rows["metric"]), reference, "metric"), key)
    else:
        st.caption("Pick a metric to chart.")
    ordered = ordered.assign(verdict=[verdict(*row) for row in zip(ordered["low"], ordered["high"], ordered["p_holm"])])
    st.dataframe(
        ordered,
        hide_index=True,
        width="stretch",
        column_config={col: st.column_config.NumberColumn(format="%+.3f") for col in ("mean_diff", "low", "high")}
        | {col: st.column_config.NumberColumn(format="%.2g") for col in ("p", "p_holm")},
    )
    st.caption(HOLM_NOTE)


def paired_view(c: Comparison) -> None:
    differences = paired_differences(c.picked, c.reference, c.metrics)
    if differences.empty:
        st.caption("Pick runs of the reference and of at least one other method.")
        return
    paired_metrics_view(differences.drop(columns=["data", "ratio_label"]), c.reference, c.metrics, "cmp_paired_metrics")
    class_differences = paired_class_differences(c.results, c.picked, c.reference)
    class_differences["x"] = class_labels(class_differences["class"], class_differences["train_count"])
    show(charts.paired_difference_chart(class_differences, c.reference, "test recall"), "cmp_paired_classes")
    st.caption(
        f"Each method minus {charts.method_of(c.reference)}, paired by seed on the same data, split and ratio "
        "(seeds without a reference run are left out); bars: 95% t interval of the paired differences, "
        "shown from 3 pairs and cut at the range a difference can take. Each interval holds at 95 % on its own; "
        "with many shown together, some exclude 0 by chance: the table's verdict says which hold after Holm's "
        "correction."
    )
    st.download_button(
        "Paired differences (CSV)",
        pd.concat([differences, class_differences.drop(columns="x")]).to_csv(index=False),
        "paired_differences.csv",
        "text/csv",
        key="cmp_paired_csv",
    )


def ranking_block(ranking: Ranking | None, title: str) -> None:
    """A Friedman / Nemenyi ranking: its critical-difference diagram, its mean ranks, and what it says."""
    if ranking is None:
        st.caption(
            "A ranking needs at least 3 method groups measured in at least 2 blocks (a block: one data set, ratio "
            "and seed)."
        )
        return
    st.pyplot(charts.critical_difference_figure(ranking, title), width="content")
    left_out = f" Left out (not measured in every block): {', '.join(ranking.left_out)}." if ranking.left_out else ""
    st.caption(
        f"Mean rank over {ranking.n_blocks} blocks (1 = best). Friedman's test that all methods rank alike: "
        f"chi-square {ranking.statistic:.1f}, p = {ranking.p:.2g}. A bar joins methods that Nemenyi's post-hoc test "
        f"(Demšar 2006, by scikit-posthocs) cannot tell apart at 5 %: their mean ranks differ by less than the "
        f"critical difference {ranking.critical_difference:.2f}. Seeds of one data set share its images, so this "
        f"ranks the methods on these data, not on data sets in general.{left_out}"
    )


def curves_view(c: Comparison) -> None:
    """Each picked group's validation score by epoch: did the epoch budget suffice?"""
    histories = {row.run_id: run_history(pd.Series(row._asdict())) for row in c.picked.itertuples(index=False)}
    curves = stats_validation_curves(c.picked, histories)
    if curves.empty:
        st.caption("The picked runs recorded no validation history.")
        return
    show(charts.validation_curves(curves), "cmp_curves")
    st.caption(
        "Each method's validation score by epoch (mean over seeds; the score its runs pick their best epoch by), a "
        "diamond at the mean curve's best epoch: one still rising at its last epoch had not converged in the budget. "
        "A two-stage method resets its head at the second stage, so its curve starts again there."
    )


def comparison_ranking(c: Comparison) -> Ranking | None:
    """The picked groups ranked by their main score (AUROC for binary runs) over every ratio and seed they share."""
    runs = c.ratio_runs if c.ratio_runs["ratio_label"].nunique() > 1 else c.picked
    return rank_groups(runs, "auroc" if "auroc" in c.metrics else "balanced_acc")


def ranking_view(c: Comparison) -> None:
    runs = c.ratio_runs if c.ratio_runs["ratio_label"].nunique() > 1 else c.picked
    ratios = ", ".join(sorted(runs["ratio_label"].unique(), key=ratio_order))
    ranking = comparison_ranking(c)
    ranking_block(ranking, f"{ranking.metric if ranking else ''} over ratios {ratios} x seeds")


def heatmap_figure(c: Comparison, kind: str) -> go.Figure:
    if kind == "recall":
        return charts.method_class_heatmap(per_class_table(c.results, "recall"), "mean", "test recall", diverging=False)
    return charts.method_class_heatmap(change_vs_baseline(c.results, c.reference), "change", "points", diverging=True)


def heatmap_view(c: Comparison) -> None:
    kind = st.radio(
        "Cells", ["recall", f"change vs {charts.method_of(c.reference)} (points)"], horizontal=True, key="cmp_heat_kind"
    )
    show(heatmap_figure(c, kind), "cmp_heatmap")
    st.caption(
        "Mean over seeds; classes ordered by training count (in brackets), most first. Readable with many "
        "methods, where grouped bars are not."
    )


def change_view(c: Comparison) -> None:
    if len(c.groups) < 2:
        st.caption("Pick runs of at least two methods to see one's per-class change against another.")
        return
    relative = (
        st.radio("Change", ["percentage points", "relative (%)"], horizontal=True, key="cmp_change_kind")
        == "relative (%)"
    )
    show(
        charts.change_vs_baseline(change_vs_baseline(c.results, c.reference, relative), c.reference, relative),
        "cmp_change_chart",
    )
    st.caption(
        "Per-class test recall of each method minus the reference's (means over seeds), classes labelled "
        "with their training counts — the IOIS paper's per-class figure, for any method."
        + (" Relative change is undefined (no bar) where the reference's recall is 0." if relative else "")
    )


def confusion_view(c: Comparison) -> None:
    focus = st.selectbox("Run", [r.label for r in c.results], key="cmp_confusion_run")
    result = next(r for r in c.results if r.label == focus)
    show(charts.confusion_heatmap(normalised_confusion(result), result.class_names, result.group), "cmp_confusion")
    st.caption("Rows are the true classes, each normalised to 1: the diagonal is per-class recall.")
    if len(c.results) > 1 and st.toggle("All picked runs (small multiples)", key="cmp_confusion_all"):
        columns = st.columns(3)
        for i, other in enumerate(c.results):
            show(
                charts.confusion_heatmap(
                    normalised_confusion(other),
                    other.class_names,
                    f"{other.group.split(' · ')[0]} · seed {c.picked.iloc[i]['seed']}",
                    small=True,
                ),
                f"cmp_confusion_{other.run_id}",
                columns[i % 3],
            )


def ratio_figure(c: Comparison, metric: str) -> go.Figure:
    runs = c.ratio_runs.assign(
        ratio=c.ratio_runs["ratio_label"].map(lambda label: np.nan if label == "natural" else float(label))
    ).sort_values("group", key=lambda group: group.map(c.groups.index), kind="stable")  # the legend in picked order
    return charts.metric_vs_ratio(runs, metric)


def ratio_view(c: Comparison) -> None:
    if c.ratio_runs["ratio_label"].nunique() < 2:
        st.caption(
            "The picked method groups were run at one ratio only on this data set; the shipped runs of the built-in "
            "data (the builtin_ratios benchmark) cover every method at ratios 10, 50 and 100 (3 seeds each)."
        )
        return
    metric = st.selectbox("Metric", c.metrics, key="cmp_ratio_metric")
    show(ratio_figure(c, metric), "cmp_ratio_chart")
    st.caption(
        "The picked method groups at every ratio they were run at on this data set (all seeds; natural "
        "counts are not on this axis). Error bars: sd over seeds."
    )


def tau_view(c: Comparison) -> None:
    # Runs that were tau-normalised already (tau_norm, metric_two_stage with it) would be normalised twice; tau is
    # tuned on the validation features, which a run keeps or its weights compute.
    linear = [
        r
        for r in c.results
        if r.has_linear_head()
        and not r.is_binary
        and "tau" not in (r.metrics.get("posthoc") or {})
        and has_split_embeddings(r.run_dir, "val")
        and has_split_embeddings(r.run_dir, "test")
    ]
    if not linear:
        without_weights = int((~c.picked["has_model"]).sum())
        st.caption(
            "None of the picked runs is a multi-class run with a plain linear head that was not tau-normalised already"
            + (
                f"; {without_weights} of them keep no model weights (the shipped ratio grid keeps metrics and "
                "predictions only), so their heads cannot be re-scored."
                if without_weights
                else "."
            )
        )
        return
    target = st.selectbox(
        "Run",
        [r.label for r in linear],
        key="cmp_tau_run",
        help="the picked runs with a plain linear head, not tau-normalised already, whose validation features are "
        "kept or can be computed with their weights",
    )
    try:
        tau_norm_view(next(r for r in linear if r.label == target))
    except ImbalLabError as err:
        st.info(f"tau cannot be tuned for this run: {err}")


def embedding_view(c: Comparison) -> None:
    st.caption(
        "PCA of the pooled test-set features, coloured by true class. For two-stage runs these are the "
        "stage-1 features (the backbone is frozen in stage 2)."
    )
    projected = st.selectbox("Run", [r.label for r in c.results], key="cmp_embedding_run")
    chosen = next(r for r in c.results if r.label == projected)
    if not has_split_embeddings(chosen.run_dir, "test"):
        st.info(
            "This shipped run keeps neither its test features nor its weights (to keep the repository small, only "
            "the shipped runs Explain uses keep weights): pick another run, or train this method yourself."
        )
        return
    try:
        projection = cached_projection(str(chosen.run_dir), chosen)
    except ImbalLabError as err:
        st.info(f"No feature map for this run: {err}")
        return
    show(charts.embedding_scatter(projection, chosen.group), "cmp_embedding_chart")


@st.cache_data(show_spinner="Computing the test features…", max_entries=8)
def cached_projection(run_dir: str, _result: RunResult) -> pd.DataFrame:
    """A run's feature map; a run whose features are not kept computes them with its weights, so once."""
    return embedding_projection(_result)


def shift_view(c: Comparison) -> None:
    shift_metric = "auroc" if all(r.is_binary for r in c.results) else "balanced_acc"
    shifted = shift_results(c.results, shift_metric)
    if not shifted.empty:
        show(charts.shift_curves(shifted, shift_metric), "cmp_shift_chart")
        st.dataframe(shift_drops(shifted), hide_index=True, width="stretch")
        st.caption(
            f"Test {shift_metric} of each run's model on its own test split, shifted; strength 0 is the "
            "unshifted test set. Drop = unshifted − shifted (> 0: worse). Binary runs keep their validation "
            "threshold; runs trained with colour constancy get it after the shift, as a new clinic's images "
            "would. What one step of strength is: "
            + "; ".join(f"**{name}**: {SHIFTS.get(name).description}" for name in SHIFTS.names())
            + "."
        )
    without = c.picked[~c.picked["run_id"].isin(shifted["run_id"])]
    if without.empty:
        return
    no_weights = int((~without["has_model"]).sum())
    st.caption(
        f"{len(without)} picked run(s) have no shift results yet"
        + (
            f"; {no_weights} of them keep no weights (shipped results only) and cannot be shifted: re-make "
            "them with their command in pretrained/manifest.json"
            if no_weights
            else ""
        )
        + ("." if no_weights == len(without) else ". Compute the others' (then reload this page):")
    )
    commands = shift_commands(without)
    if commands:
        st.code("\n".join(commands), language="bash")


@st.cache_data(show_spinner=False, max_entries=8)
def cached_results(name: str, csv: str, modified_ns: int) -> BenchmarkResults:
    """A results file, read again when it changes (a running benchmark rewrites it when it ends)."""
    return read_results(name, [Path(csv).parent])


def benchmark_files_view() -> None:
    """The benchmarks' results files as reference tables: how they were made, leaderboard, paired differences (against
    the reference or another one the protocol names), per-class recall change and validation curves of one section
    (data set and ratio), drawn as live runs are."""
    st.header("Benchmark results files")
    files = results_files()
    if not files:
        st.caption(
            f"No benchmark results files yet: `python -m imbal_core benchmark NAME` writes them to {results_dir()}."
        )
        return
    left, right = st.columns(2)
    # persist_state: the picks outlive a visit to the Runs view, where these widgets are not drawn.
    name = left.selectbox("Results file", list(files), key="cmp_bench_file", persist_state="page")
    results = cached_results(name, str(files[name]), files[name].stat().st_mtime_ns)
    with st.expander("How these numbers were made: command, code version, wall time, protocol"):
        st.markdown(results.header)
    sections = results.sections()
    if not sections:
        st.info(f"{name} has no finished runs yet (see how it was made above); its command resumes it.")
        return
    data, ratio = right.selectbox(
        "Section",
        sections,
        format_func=lambda s: f"ratio {s[1]} · {s[0]}",  # the ratio first: a long data label is cut at the end
        key=f"cmp_bench_section_{name}",
        persist_state="page",
    )
    CHART_CONTEXT["text"] = f"{name}: {data} · ratio {ratio}"
    board, available = results.leaderboard(data, ratio)
    shown = [m for m in (BINARY_METRICS if results.is_binary(data, ratio) else LEADERBOARD_METRICS) if m in available]
    table = formatted_leaderboard(board, shown).drop(columns=["data", "ratio", "repeats"])
    st.dataframe(table, hide_index=True, width="stretch", height="content", column_config=leaderboard_columns(table))
    st.caption(f"{SPREAD_NOTE} Scroll the table sideways for every metric; click a column to sort.")
    subset_note(table)
    if same := results.identical(data, ratio):
        st.caption(identical_note(same, charts.method_of))
    reference = results.reference(data, ratio)
    if reference is not None:
        references = results.references(data, ratio)
        against = (
            st.selectbox(
                "Paired differences against",
                references,
                format_func=charts.method_of,
                key=f"cmp_bench_against_{name}",
                persist_state="page",
                help="the protocol's reference, then its other_references",
            )
            if len(references) > 1
            else reference
        )
        differences = results.paired_differences(data, ratio, against)
        paired_metrics_view(differences, against, shown, "cmp_bench_paired")  # in the leaderboard's order
        change = results.recall_change(data, ratio, against)
        if change.empty:  # a file written before the per-class changes were kept against every reference
            st.caption(
                f"This file has per-class changes against {charts.method_of(reference)} only; its command with "
                "`--results-only` writes them against every reference."
            )
        else:
            heatmap = charts.method_class_heatmap(change, "change", "points", diverging=True)
            heatmap.update_layout(
                title=f"Per-class test recall change vs {charts.method_of(against)} (points)", margin=dict(t=60)
            )
            show(heatmap, "cmp_bench_heatmap")
        caption = (
            f"Paired by seed against {charts.method_of(against)} (95% t interval from {MIN_SEEDS_FOR_INTERVAL} "
            f"pairs); the heat map is the per-class test-recall change against {charts.method_of(against)} in "
            "percentage points, classes by training count (in brackets)."
        )
    else:
        show(
            charts.method_class_heatmap(results.per_class_recall(data, ratio), "mean", "test recall", diverging=False),
            "cmp_bench_heatmap",
        )
        caption = "No reference runs in this section: per-class test recall, classes by training count (in brackets)."
    curves = results.validation_curves(data, ratio)
    if not curves.empty:
        show(charts.validation_curves(curves), "cmp_bench_curves")
        caption += (
            " The curves are each method's validation score by epoch (mean over seeds; the score its runs pick "
            "their best epoch by), a diamond at the mean curve's best epoch: one still rising at its last epoch had "
            "not converged in the budget, one whose best is early and that falls after it trained past its best "
            "model (the runs keep their best epoch's model). A two-stage method resets its head at the second "
            "stage, so its curve breaks and starts again there (the stage is in the hover)."
        )
    st.caption(
        f"From {results.csv.with_suffix('.md').name} and {results.csv.name} in `{results.csv.parent}`, as the "
        f"benchmark command wrote them (not runs in a store: nothing here to pick or re-score). {caption}"
    )
    for ranking in results.rankings():
        st.subheader(f"Ranking by {ranking.metric} across the file's data sets, ratios and seeds")
        ranking_block(ranking, f"{name}: {ranking.metric}, {ranking.n_blocks} blocks")
    left, right = st.columns(2)
    left.download_button(
        f"{name}.csv (every number of the file)",
        results.csv.read_bytes(),  # the file as the benchmark wrote it
        f"{name}.csv",
        "text/csv",
        key="cmp_bench_csv",
    )
    right.download_button(
        f"{name} report (HTML, opens offline)",
        lambda: results_file_report(results),  # built when clicked: it draws every section
        f"{name}_report.html",
        "text/html",
        key="cmp_bench_report",
    )


def stop_page(message: str) -> None:
    """Nothing to compare: say why and end the page."""
    st.info(message)
    st.stop()


st.title("Compare")
# Streamlit forgets the value of a widget it did not draw, and a closed tab's widgets are not drawn: re-setting their
# values here keeps the choices made in a tab (and the report built from them) while another tab is open.
for tab_widget in TAB_WIDGETS:
    if tab_widget in st.session_state:
        st.session_state[tab_widget] = st.session_state[tab_widget]
st.session_state.setdefault("cmp_ratio_metric", "balanced_acc")
runs = runs_table()
# Two views, only the chosen one drawn: the results files' tables and charts would otherwise be drawn below the
# comparison on every visit and delay its first chart (benchmarks/app_speed.py).
view = st.segmented_control(
    "Show",
    [RUNS_VIEW, FILES_VIEW],
    default=FILES_VIEW if runs.empty else RUNS_VIEW,
    required=True,
    key="cmp_page_view",
    help="Runs: the shipped runs and yours, picked and compared here. Benchmark results files: the tables the "
    "`benchmark` command wrote (results/), as reference tables.",
)
if view == FILES_VIEW:
    benchmark_files_view()
    st.stop()
if runs.empty:
    stop_page("No finished runs yet: train some on the Train page (or switch to the benchmark results files).")

# ---- What to compare: one data set and one ratio (runs of other classes or counts are not comparable) ----------
f1, f2, f3, f4 = st.columns([3, 1, 2, 2])
# Your newest finished run is on screen first: its data set, its ratio and its group among the picks.
newest = runs[runs["source"] == "yours"].sort_values("created").tail(1)
data_sets = runs["data"].value_counts().index.tolist()  # else the data set with the most runs first
if not newest.empty:
    data_sets.remove(newest["data"].iloc[0])
    data_sets.insert(0, newest["data"].iloc[0])
# persist_state: the picks outlive a visit to the results files' view, where these widgets are not drawn.
data = f1.selectbox("Data set", data_sets, key="cmp_data", persist_state="page")
source_names = list(dict.fromkeys(["shipped", "yours", *sorted(runs["source"].unique())]))
sources = f4.multiselect(
    "Source",
    source_names,
    default=source_names,
    key="cmp_source",
    persist_state="page",
    help="shipped: pretrained/; yours: your store; archive <protocol>: the finished runs a benchmark archived in "
    "results/<protocol>_runs (no weights: charts and statistics only; how they were made: results/<protocol>.md)",
)
in_data = runs[(runs["data"] == data) & runs["source"].isin(sources)]
ratio_labels = sorted(in_data["ratio_label"].unique(), key=ratio_order)
newest_here = newest[(newest["data"] == data) & newest["ratio_label"].isin(ratio_labels)]
first_ratio = newest_here["ratio_label"].iloc[0] if not newest_here.empty else first_ratio_with_intervals(in_data)
ratio = (
    f2.selectbox(
        "Ratio",
        ratio_labels,
        index=ratio_labels.index(first_ratio) if ratio_labels else 0,
        key=f"cmp_ratio_{data}",
        persist_state="page",
        help="imbalance ratio of the training split (most / fewest images per class); natural: the data set's own",
    )
    if ratio_labels
    else None
)
methods = f3.multiselect(
    "Method", sorted(in_data["method"].unique()), key="cmp_method", placeholder="all", persist_state="page"
)
if methods:
    in_data = in_data[in_data["method"].isin(methods)]
pool = in_data[in_data["ratio_label"] == ratio]
if pool.empty:
    stop_page("No finished runs match these filters.")
default = default_selection(pool)
yours_newest = pool[pool["run_id"].isin(newest["run_id"])]
if not yours_newest.empty and not yours_newest["group"].isin(default["group"]).all():
    default = pd.concat([pool[pool["group"] == yours_newest["group"].iloc[0]], default])
options = default["label"].tolist() + [label for label in pool["label"] if label not in set(default["label"])]
# Keyed by the filters, so the default selection follows them; the chosen order is kept everywhere below.
picked_labels = st.multiselect(
    "Runs",
    options,
    default=default["label"].tolist(),
    key="cmp_runs_" + "|".join(map(str, (data, ratio, methods, sources))),
    persist_state="page",
    help="By default one group of runs per method (the one with the most seeds, then the "
    "longest training, shipped first), with ce as the reference, and the group of your newest run ('yours').",
)
picked = pool.set_index("label").loc[picked_labels].reset_index()
if picked.empty:
    stop_page("Pick at least one run.")
seeds_here = picked.groupby("group")["seed"].nunique().max()
seeded = in_data.groupby(["ratio_label", "group"])["seed"].nunique().loc[lambda n: n >= MIN_SEEDS_FOR_INTERVAL]
if seeds_here < MIN_SEEDS_FOR_INTERVAL and not seeded.empty:
    elsewhere = sorted(seeded.index.get_level_values("ratio_label").unique(), key=ratio_order)
    choices = " or ".join([", ".join(elsewhere[:-1]), elsewhere[-1]] if len(elsewhere) > 1 else elsewhere)
    st.info(
        f"Every picked method has fewer than {MIN_SEEDS_FOR_INTERVAL} seeds at ratio {ratio}, so no spreads or "
        f"intervals: pick ratio {choices} for methods with {MIN_SEEDS_FOR_INTERVAL} seeds or more."
    )
results = load_results(picked)
seed_counts = sorted(set(picked.groupby("group")["seed"].nunique()))
CHART_CONTEXT["text"] = f"{data} · ratio {ratio} · {'/'.join(map(str, seed_counts))} seed(s) per group"
binary = all(r.is_binary for r in results)
metrics = BINARY_METRICS if binary else LEADERBOARD_METRICS
groups = list(dict.fromkeys(picked["group"]))
top_left, top_right = st.columns([3, 1])
reference = top_left.selectbox(
    "Reference method (paired differences, per-class change)",
    groups,
    # ce, the shipped group before yours (a quick run of one's own is compared against it)
    index=min(
        (i for i, g in enumerate(groups) if charts.method_of(g) == "ce"),
        key=lambda i: (groups[i].endswith(" · yours"), i),
        default=0,
    ),
    key="cmp_reference",
    persist_state="page",
)
top_right.radio(
    "Chart downloads",
    ["png", "svg"],
    horizontal=True,
    key="cmp_chart_format",
    help="the camera icon in each chart's toolbar saves it in this format",
)

# ---- Leaderboard ---------------------------------------------------------------------------------------------------
st.header("Leaderboard")
board = leaderboard(picked, metrics)
table = formatted_leaderboard(board, metrics).drop(columns=["data", "ratio"])
if not table["repeats"].str.len().any():
    table = table.drop(columns="repeats")
st.dataframe(table, hide_index=True, width="stretch", height="content", column_config=leaderboard_columns(table))
st.caption(
    f"One row per method group. {SPREAD_NOTE} Only different seeds are replicates: repeated runs of one seed are "
    "averaged and flagged in *repeats*; a single seed has no spread (± —). Click a column to sort. "
    + (
        "AUROC, AUPRC and sensitivity at 90/95 % specificity come from the test ROC curve; the rest are at each "
        "run's threshold, chosen on validation."
        if binary
        else "few / medium / many: accuracy of the classes in the lowest, middle and top third of training counts."
    )
)
subset_note(table)
same = cached_identical_groups(tuple(picked["run_id"]), results, picked)
if same:
    st.caption(identical_note(same))
left, right = st.columns(2)
left.download_button("Leaderboard (CSV)", board.to_csv(index=False), "leaderboard.csv", "text/csv", key="cmp_board_csv")
right.download_button(
    "Every picked run (CSV)",
    picked[["run_id", "method", "group", "data", "ratio", "seed", "source", *metrics]].to_csv(index=False),
    "runs.csv",
    "text/csv",
    key="cmp_runs_csv",
)

# ---- Binary runs: curves and scores --------------------------------------------------------------------------------
if binary:
    st.header("Abnormal vs normal: ROC, precision–recall and scores")
    roc, pr = binary_curves(results)
    left, right = st.columns(2)
    show(charts.roc_curves(roc), "cmp_roc", left)
    show(charts.pr_curves(pr, float(results[0].predictions()["labels"].mean())), "cmp_pr", right)
    st.caption(
        "Test-set curves of each picked run (score = the run's abnormality score: p(abnormal) for classifiers, "
        "1 − p(normal) or the expected level for knowledge_one_class, d / (1 + d) of the squared distance d to "
        "the centre for deep_svdd). Dashed lines mark 90 % and 95 % specificity."
    )
    shown = st.selectbox("Score histograms of", [r.label for r in results], key="cmp_hist_run")
    result = next(r for r in results if r.label == shown)
    show(
        charts.score_histogram(
            score_table(result), result.class_names, result.metrics["summary"]["threshold"], result.group
        ),
        "cmp_score_hist",
    )
    st.caption(
        "Where normal and abnormal test images fall on the score; their overlap is what AUROC measures. "
        "The threshold was chosen on the validation split (best balanced accuracy), never on test."
    )

# ---- Per-class ------------------------------------------------------------------------------------------------------
st.header("Per-class recall")
metric = st.radio("Per-class metric", ["recall", "precision", "f1"], horizontal=True, key="cmp_metric")
per_class = per_class_table(results, metric)
per_class_chart = charts.per_class_bars(per_class, metric)
show(per_class_chart, "cmp_per_class")
st.caption(
    "Classes ordered by training count (head first). Error bars: sd over the seeds of a method group. "
    "One colour per method on every page; a method's second group is hatched."
)
comparison = Comparison(picked, results, reference, metrics, ratio_runs=in_data[in_data["group"].isin(groups)])

# Only the open tab's work runs (stateful tabs): each tab computes its own tables and charts.
# The first (open) tab is the one-chart overview: the paired view's two charts and table would delay the page's
# first chart by about 0.6 s on 2 CPU cores (benchmarks/app_speed.py).
views = {
    "Method × class": heatmap_view,
    "Paired differences": paired_view,
    "Change vs reference": change_view,
    "Confusion matrix": confusion_view,
    "Metric vs ratio": ratio_view,
    "Validation curves": curves_view,
    "Ranking": ranking_view,
    "tau-norm (tuned on validation)": tau_view,
    "Embeddings": embedding_view,
    "Acquisition shift": shift_view,
}
for tab, view in zip(st.tabs(list(views), key="cmp_view", on_change="rerun"), views.values()):
    if tab.open:
        with tab:
            view(comparison)

# ---- One-file report ------------------------------------------------------------------------------------------------
st.header("Report")
heat_kind = st.session_state.get("cmp_heat_kind", "recall")
ratio_metric = st.session_state.get("cmp_ratio_metric", "balanced_acc")
report_inputs = (tuple(picked_labels), reference, metric, heat_kind, ratio_metric)
if st.button("Build an HTML report of this comparison", key="cmp_build_report"):
    sections = [
        Section(
            "Leaderboard",
            "Mean ± sd over seeds [95% t interval from 3 seeds; * = cut at the range]."
            + (f" {identical_note(same)}" if same else ""),
            table,
        ),
        Section("Per-class " + metric, "Classes ordered by training count.", per_class_chart),
        Section("Method × class", "Mean over seeds.", heatmap_figure(comparison, heat_kind)),
    ]
    differences = paired_differences(picked, reference, metrics)
    if not differences.empty:
        differences["verdict"] = [
            verdict(*r) for r in zip(differences["low"], differences["high"], differences["p_holm"])
        ]
        class_differences = paired_class_differences(results, picked, reference)
        sections += [
            Section(f"Paired differences vs {reference}", HOLM_NOTE, differences.drop(columns=["data", "ratio_label"])),
            Section(f"Per-class test recall, paired differences vs {reference}", HOLM_NOTE, class_differences),
        ]
    if comparison.ratio_runs["ratio_label"].nunique() > 1:
        sections.append(
            Section(f"{ratio_metric} vs ratio", "All seeds at each ratio.", ratio_figure(comparison, ratio_metric))
        )
    ranking = comparison_ranking(comparison)
    if ranking is not None:
        figure = charts.critical_difference_figure(ranking, f"{ranking.metric}, {ranking.n_blocks} blocks")
        note = f"Friedman chi-square {ranking.statistic:.1f}, p = {ranking.p:.2g}; Nemenyi at 5 %."
        sections.append(Section("Ranking", note, figure))
    runs_list = picked[["run_id", "group", "seed", "source"]]
    sections.append(Section("Runs", "The runs behind every number above.", runs_list))
    st.session_state["cmp_report"] = (
        report_inputs,
        html_report(
            f"Imbalance Lab: {data}, ratio {ratio}",
            f"{len(picked)} runs of {len(groups)} method groups.",
            sections,
            runs_provenance(picked, results),
            list(picked["method"]),
        ),
    )
report_for, report = st.session_state.get("cmp_report", (None, None))
if report_for == report_inputs:  # a report of other runs or choices is not offered
    st.download_button(
        "Download the report (HTML, opens offline)",
        report,
        "imbalance_lab_report.html",
        "text/html",
        key="cmp_report_download",
    )

"""Plotly figures shared by the app's pages (kept here so they are testable without Streamlit)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Vivid


def class_counts_bar(class_names: Sequence[str], natural: Sequence[int], kept: Sequence[int], log_y: bool) -> go.Figure:
    """Training images per class before and after the imbalance profile, head class first."""
    order = np.argsort(-np.asarray(natural), kind="stable")
    names = [class_names[i] for i in order]
    fig = go.Figure([
        go.Bar(name="available", x=names, y=[int(natural[i]) for i in order], marker_color="#c7c7c7"),
        go.Bar(name="kept for training", x=names, y=[int(kept[i]) for i in order], marker_color="#1f77b4",
               text=[int(kept[i]) for i in order], textposition="outside"),
    ])
    fig.update_layout(barmode="overlay", yaxis_title="training images", xaxis_title="class",
                      yaxis_type="log" if log_y else "linear", legend_orientation="h", margin=dict(t=30, b=10))
    return fig


def balancing_bar(class_names: Sequence[str], real: Sequence[int], auxiliary: Sequence[int]) -> go.Figure:
    """Stacked bars: real training images and the auxiliary images that top each class up."""
    order = np.argsort(-np.asarray(real), kind="stable")
    names = [class_names[i] for i in order]
    fig = go.Figure([
        go.Bar(name="real", x=names, y=[int(real[i]) for i in order], marker_color="#1f77b4"),
        go.Bar(name="auxiliary (style-transferred)", x=names, y=[int(auxiliary[i]) for i in order],
               marker_color="#ff7f0e", text=[int(auxiliary[i]) or "" for i in order], textposition="inside"),
    ])
    fig.update_layout(barmode="stack", yaxis_title="training images per epoch", xaxis_title="class",
                      legend_orientation="h", margin=dict(t=30, b=10))
    return fig


def per_class_bars(table: pd.DataFrame, metric: str = "recall") -> go.Figure:
    """Grouped bars: classes on x (ordered by training count), one colour per method, sd as error bars."""
    classes = list(dict.fromkeys(table["class"]))
    fig = go.Figure()
    for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
        rows = rows.set_index("class").reindex(classes)
        fig.add_bar(name=method, x=classes, y=rows["mean"], marker_color=PALETTE[i % len(PALETTE)],
                    error_y=dict(type="data", array=rows["sd"].fillna(0), visible=bool(rows["runs"].max() > 1)),
                    customdata=rows["train_count"],
                    hovertemplate="%{x}<br>" + metric + " %{y:.3f}<br>train images %{customdata:.0f}<extra>" + method + "</extra>")
    fig.update_layout(barmode="group", yaxis_title=f"test {metric}", yaxis_range=[0, 1.05],
                      xaxis_title="class (most training images first)", legend_orientation="h", margin=dict(t=30))
    return fig


def confusion_heatmap(matrix: np.ndarray, class_names: Sequence[str], title: str) -> go.Figure:
    fig = px.imshow(matrix, x=list(class_names), y=list(class_names), zmin=0, zmax=1, color_continuous_scale="Blues",
                    text_auto=".2f", labels=dict(x="predicted", y="true", color="share of true class"))
    fig.update_layout(title=title, margin=dict(t=40, l=10, r=10, b=10), coloraxis_showscale=False)
    return fig


def metric_vs_ratio(runs: pd.DataFrame, metric: str) -> go.Figure:
    """Mean metric over seeds against the imbalance ratio, one line per group (method and budget)."""
    numeric = runs.dropna(subset=["ratio"])
    grouped = numeric.groupby(["group", "ratio"])[metric].agg(["mean", "std"]).reset_index()
    fig = px.line(grouped, x="ratio", y="mean", color="group", error_y="std", markers=True, log_x=True,
                  color_discrete_sequence=PALETTE, labels={"mean": metric, "ratio": "imbalance ratio (log)"})
    fig.update_layout(legend_orientation="h", margin=dict(t=30))
    return fig


def training_curve(history: list[dict]) -> go.Figure:
    """Validation score per epoch (AUROC for binary runs, which pick their epoch by it) and training loss."""
    frame = pd.DataFrame(history)
    fig = go.Figure()
    column, label = ("val_auroc", "val AUROC") if "val_auroc" in frame else ("val_balanced_acc", "val balanced acc")
    if not frame.empty:
        epochs = frame["epoch"] + 1
        fig.add_scatter(x=epochs, y=frame[column], name=label, mode="lines+markers")
        fig.add_scatter(x=epochs, y=frame["loss"], name="train loss", mode="lines+markers", yaxis="y2")
    fig.update_layout(xaxis_title="epoch", yaxis=dict(title=label, range=[0, 1]),
                      yaxis2=dict(title="loss", overlaying="y", side="right"), height=260,
                      margin=dict(t=10, b=10), legend_orientation="h")
    return fig


def embedding_scatter(points: pd.DataFrame, title: str) -> go.Figure:
    fig = px.scatter(points, x="pc1", y="pc2", color="class", hover_data=["id"], opacity=0.7,
                     color_discrete_sequence=PALETTE, title=title)
    fig.update_traces(marker_size=5)
    fig.update_layout(legend_orientation="h", margin=dict(t=40))
    return fig


def aas_accuracy(history: list[dict], class_names: Sequence[str]) -> go.Figure:
    """IOIS: each class's training accuracy per epoch (from the run's history)."""
    fig = go.Figure()
    epochs = [h["epoch"] + 1 for h in history if h.get("method", {}).get("train_accuracy")]
    for c, name in enumerate(class_names):
        values = [h["method"]["train_accuracy"][c] for h in history if h.get("method", {}).get("train_accuracy")]
        fig.add_scatter(x=epochs, y=values, name=name, mode="lines+markers", line_color=PALETTE[c % len(PALETTE)])
    fig.update_layout(xaxis_title="epoch", yaxis=dict(title="training accuracy", range=[0, 1.02]), height=300,
                      margin=dict(t=10, b=10), legend_orientation="h", legend_y=-0.3)
    return fig


def aas_allocation(history: list[dict], class_names: Sequence[str]) -> go.Figure:
    """IOIS: synthetic images each class received per epoch (stacked)."""
    fig = go.Figure()
    rows = [h for h in history if "synthetic" in h.get("method", {})]
    for c, name in enumerate(class_names):
        fig.add_bar(x=[h["epoch"] + 1 for h in rows], y=[h["method"]["synthetic"][c] for h in rows], name=name,
                    marker_color=PALETTE[c % len(PALETTE)])
    fig.update_layout(barmode="stack", xaxis_title="epoch", yaxis_title="synthetic images", height=300,
                      margin=dict(t=10, b=10), legend_orientation="h", legend_y=-0.3)
    return fig


def change_vs_baseline(table: pd.DataFrame, baseline: str, relative: bool) -> go.Figure:
    """Per-class change of each method against `baseline` (the IOIS paper's figure), classes labelled with counts."""
    fig = go.Figure()
    for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
        fig.add_bar(name=method, x=rows["class_label"], y=rows["change"], marker_color=PALETTE[i % len(PALETTE)],
                    hovertemplate="%{x}<br>%{y:+.1f}" + ("%" if relative else " points") + "<extra>" + method +
                    "</extra>")
    fig.add_hline(y=0, line_color="#555")
    title = "relative change of recall (%)" if relative else "change of recall (percentage points)"
    fig.update_layout(barmode="group", yaxis_title=f"{title} vs {baseline.split(' · ')[0]}",
                      xaxis_title="class (training images), most first", legend_orientation="h", legend_y=-0.35,
                      margin=dict(t=30))
    return fig


def roc_curves(points: pd.DataFrame) -> go.Figure:
    """Binary runs' ROC curves (one line per run, colour per method group), chance diagonal, 90/95 % specificity."""
    fig = go.Figure()
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(dict.fromkeys(points["group"]))}
    for run, rows in points.groupby("run", sort=False):
        fig.add_scatter(x=rows["fpr"], y=rows["tpr"], mode="lines", name=f"{run} (AUROC {rows['auc'].iloc[0]:.3f})",
                        line_color=colours[rows["group"].iloc[0]], line_shape="hv")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), showlegend=False)
    for spec, side in ((0.95, "top left"), (0.90, "top right")):  # labels on either side: the lines are close
        fig.add_vline(x=1 - spec, line=dict(dash="dash", color="#bbb"),
                      annotation_text=f"{spec:.0%} spec.", annotation_position=side)
    fig.update_layout(xaxis=dict(title="false-positive rate (1 − specificity)", range=[0, 1]),
                      yaxis=dict(title="sensitivity", range=[0, 1.02]), legend=dict(orientation="h", y=-0.25),
                      margin=dict(t=30, b=10), height=460)
    return fig


def pr_curves(points: pd.DataFrame, prevalence: float) -> go.Figure:
    """Precision against recall per run; the dotted line is the precision of a random score (the prevalence)."""
    fig = go.Figure()
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(dict.fromkeys(points["group"]))}
    for run, rows in points.groupby("run", sort=False):
        fig.add_scatter(x=rows["recall"], y=rows["precision"], mode="lines", line_shape="vh",
                        name=f"{run} (AUPRC {rows['auc'].iloc[0]:.3f})", line_color=colours[rows["group"].iloc[0]])
    fig.add_hline(y=prevalence, line=dict(dash="dot", color="#999"),
                  annotation_text=f"random ({prevalence:.2f})", annotation_position="bottom right")
    fig.update_layout(xaxis=dict(title="recall (sensitivity)", range=[0, 1]), yaxis=dict(title="precision", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.25), margin=dict(t=30, b=10), height=460)
    return fig


def score_histogram(scores: pd.DataFrame, class_names: Sequence[str], threshold: float, title: str) -> go.Figure:
    """Overlaid histograms of the abnormality score for normal and abnormal test images, with the threshold."""
    fig = go.Figure()
    for name, colour in zip(class_names, ("#1f77b4", "#d62728")):
        values = scores.loc[scores["class"] == name, "score"]
        fig.add_histogram(x=values, name=f"{name} ({len(values)})", marker_color=colour, opacity=0.6,
                          xbins=dict(start=0, end=1.0001, size=0.025), histnorm="percent")
    fig.add_vline(x=threshold, line=dict(color="#333", dash="dash"), annotation_text="threshold (from validation)",
                  annotation_position="top")
    fig.update_layout(barmode="overlay", title=title, xaxis=dict(title="abnormality score", range=[0, 1]),
                      yaxis_title="% of the class's test images", legend=dict(orientation="h", y=-0.3),
                      margin=dict(t=40, b=10), height=360)
    return fig


def shift_curves(table: pd.DataFrame, metric: str) -> go.Figure:
    """A metric against shift strength, one panel per shift and one line per run (strength 0 = unshifted test set)."""
    fig = px.line(table, x="strength", y="value", color="run", facet_col="shift", markers=True,
                  color_discrete_sequence=PALETTE, labels={"value": f"test {metric}", "strength": "strength"},
                  hover_data={"drop": ":.3f"})
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))  # "shift=blur" -> "blur"
    fig.update_xaxes(dtick=1)
    fig.update_layout(legend_orientation="h", margin=dict(t=30))
    return fig

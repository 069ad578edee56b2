"""Plotly figures shared by the app's pages (kept here so they are testable without Streamlit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.colors
import plotly.express as px
import plotly.graph_objects as go

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .stats import Ranking

PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Vivid  # classes and runs (not methods)
# One colour per method on every page. Methods of one family share a hue and differ in lightness (ColorBrewer's
# sequential ramps); the reference `ce` is black. Every pair differs by CIEDE2000 >= 12 in normal vision, and members
# of a family also with simulated deuteranopia; across families, where deuteranopia merges hues, each method's own
# marker tells them apart (tests/test_charts.py checks both). A method's variants (other settings or budgets) keep
# its colour and get a hatch pattern or a dashed line.
METHOD_FAMILIES = {
    "reference": {"ce": "#000000"},
    "re-weighting": {"weighted_ce": "#08519C", "cb_loss": "#4292C6", "focal": "#9ECAE1"},
    "logit adjustment": {"ldam_drw": "#8C2D04", "balanced_softmax": "#E6550D", "logit_adjust": "#FDAE6B"},
    "re-sampling": {"cb_resample": "#54278F", "mixup": "#9E9AC8"},
    "decoupled": {"crt": "#00441B", "lws": "#238B45", "tau_norm": "#74C476"},
    "seed methods": {"crckd": "#980043", "metric_two_stage": "#DD1C77", "style_kd": "#DF65B0", "iois": "#F1B6DA"},
    "one-class": {"knowledge_one_class": "#737373", "deep_svdd": "#BDBDBD"},
}
METHOD_COLOURS = {method: colour for family in METHOD_FAMILIES.values() for method, colour in family.items()}
MARKERS = (
    "circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "x", "pentagon", "hexagon", "star",
    "triangle-left", "triangle-right", "hourglass", "bowtie", "star-square", "star-diamond", "diamond-tall",
    "square-x", "circle-x", "diamond-wide",
)  # fmt: skip
METHOD_MARKERS = dict(zip(METHOD_COLOURS, MARKERS, strict=False))  # one shape per method, in the families' order
VARIANT_PATTERNS = ("", "/", "x", ".", "\\", "+")
EXPORT_FONT = "Arial, Helvetica, 'Liberation Sans', sans-serif"  # the same on the page and in a downloaded image
TITLE_AT_TOP = dict(x=0, xanchor="left", yref="container", y=1, yanchor="top", pad=dict(t=8))
LEGEND_ABOVE = dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0)  # never over an axis title


def method_of(group: str) -> str:
    """ "crckd[ablation=mt] · 6 ep · resnet10t_small" -> "crckd"."""
    return group.split(" · ")[0].split("[")[0]


def shorten_groups(groups: Sequence[str]) -> tuple[dict[str, str], str]:
    """({group: its label without the parts every group shares}, those shared parts): "ce · 30 ep ·
    resnet10t_small" and "crt · 30+2 ep · resnet10t_small" -> "ce · 30 ep", "crt · 30+2 ep" and "resnet10t_small",
    for a chart's subtitle, so legends and axes show what differs."""
    parts = {group: group.split(" · ") for group in dict.fromkeys(groups)}
    shared = set.intersection(*(set(p[1:]) for p in parts.values())) if parts else set()
    short = {group: " · ".join([p[0], *(x for x in p[1:] if x not in shared)]) for group, p in parts.items()}
    if len(set(short.values())) < len(short):  # shortening would merge two groups
        return {group: group for group in parts}, ""
    order = next(iter(parts.values()), [])
    return short, " · ".join(x for x in order if x in shared)


def with_context(fig: go.Figure, context: str) -> go.Figure:
    """`fig` titled with what it shows (`context`: data set, ratio, seeds, what its bars are) and the parts every
    group's label shares ("8 ep · resnet10t_small"), which leave its legend: an exported PNG or SVG says what it is,
    and the legend names the methods.

    Over a legend above the plot, the title is the legend's own: plotly makes room above the plot for the taller
    of a figure title and such a legend, not for both, so the two would overlap. Titles are one line each: plotly
    moves a title of several lines up by its extra lines, out of the picture. The font is a system one: a
    downloaded image is drawn without the page's web font, and legend boxes sized for the web font's narrower text
    would cut the last letters off."""
    names = [trace.name for trace in fig.data if trace.name]
    short, shared = shorten_groups(names) if len(set(names)) > 1 else ({}, "")
    for trace in fig.data:
        trace.name = short.get(trace.name, trace.name)
    described = " · ".join([context] + ([f"every group: {shared}"] if shared else []))
    title = fig.layout.title.text
    fig.update_layout(font_family=EXPORT_FONT)
    legend_above = fig.layout.legend.y is not None and fig.layout.legend.y >= 1 and fig.layout.showlegend is not False
    if legend_above and any(trace.showlegend is not False and trace.name for trace in fig.data):
        text = f"<b>{title}</b> · {described}" if title else described
        fig.update_layout(title_text="", legend_title=dict(text=text, side="top", font=dict(size=12)))
        return fig
    if title:  # a title and a subtitle: plotly's automatic margin makes room for the title only
        fig.update_layout(
            title=dict(
                text=title,
                subtitle=dict(text=described, font=dict(size=12, color="#555")),
                font=dict(size=16, color="#222"),
                **TITLE_AT_TOP,
            ),
            margin_t=max(fig.layout.margin.t or 0, 64),
        )
    else:
        fig.update_layout(
            title=dict(text=described, font=dict(size=12, color="#555"), automargin=True, **TITLE_AT_TOP),
        )
    return fig


def method_marker(group: str) -> str:
    """The marker symbol of a group's method (a method outside the table: a circle)."""
    return METHOD_MARKERS.get(method_of(group), "circle")


def group_styles(groups: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, hatch pattern) per group: the method's colour; its second, third ... group is hatched."""
    seen: dict[str, int] = {}
    styles = {}
    for group in dict.fromkeys(groups):
        method = method_of(group)
        index = seen.get(method, 0)
        seen[method] = index + 1
        colour = METHOD_COLOURS.get(method, PALETTE[sum(map(ord, method)) % len(PALETTE)])
        styles[group] = (colour, VARIANT_PATTERNS[index % len(VARIANT_PATTERNS)])
    return styles


def class_counts_bar(class_names: Sequence[str], natural: Sequence[int], kept: Sequence[int], log_y: bool) -> go.Figure:
    """Training images per class before and after the imbalance profile, head class first."""
    order = np.argsort(-np.asarray(natural), kind="stable")
    names = [class_names[i] for i in order]
    fig = go.Figure(
        [
            go.Bar(name="available", x=names, y=[int(natural[i]) for i in order], marker_color="#c7c7c7"),
            go.Bar(
                name="kept for training",
                x=names,
                y=[int(kept[i]) for i in order],
                marker_color="#1f77b4",
                text=[int(kept[i]) for i in order],
                textposition="outside",
            ),
        ]
    )
    fig.update_layout(
        barmode="overlay",
        xaxis_title="class",
        legend=LEGEND_ABOVE,
        margin=dict(t=40, b=10),
        yaxis=dict(title="training images", type="log" if log_y else "linear", dtick=1 if log_y else None),
    )
    return fig


def balancing_bar(class_names: Sequence[str], real: Sequence[int], auxiliary: Sequence[int]) -> go.Figure:
    """Stacked bars: real training images and the auxiliary images that top each class up."""
    order = np.argsort(-np.asarray(real), kind="stable")
    names = [class_names[i] for i in order]
    fig = go.Figure(
        [
            go.Bar(name="real", x=names, y=[int(real[i]) for i in order], marker_color="#1f77b4"),
            go.Bar(
                name="auxiliary (style-transferred)",
                x=names,
                y=[int(auxiliary[i]) for i in order],
                marker_color="#ff7f0e",
                text=[int(auxiliary[i]) or "" for i in order],
                textposition="inside",
            ),
        ]
    )
    fig.update_layout(
        barmode="stack",
        yaxis_title="training images per epoch",
        xaxis_title="class",
        legend=LEGEND_ABOVE,
        margin=dict(t=40, b=10),
    )
    return fig


def per_class_bars(table: pd.DataFrame, metric: str = "recall") -> go.Figure:
    """Grouped bars: classes on x (ordered by training count), one colour per method, sd over seeds as error bars."""
    classes = list(dict.fromkeys(table["class"]))
    styles = group_styles(table["method"])
    fig = go.Figure()
    for method, rows in table.groupby("method", sort=False):
        rows = rows.set_index("class").reindex(classes)
        colour, pattern = styles[method]
        fig.add_bar(
            name=method,
            x=classes,
            y=rows["mean"],
            marker=dict(color=colour, pattern_shape=pattern),
            error_y=dict(type="data", array=rows["sd"].fillna(0), visible=bool(rows["runs"].max() > 1)),
            customdata=rows["train_count"],
            hovertemplate="%{x}<br>"
            + metric
            + " %{y:.3f}<br>train images %{customdata:.0f}<extra>"
            + method
            + "</extra>",
        )
    fig.update_layout(
        barmode="group",
        yaxis_title=f"test {metric}",
        yaxis_range=[0, 1.05],
        xaxis_title="class (most training images first)",
        legend=LEGEND_ABOVE,
        margin=dict(t=40),
    )
    return fig


def confusion_heatmap(matrix: np.ndarray, class_names: Sequence[str], title: str, small: bool = False) -> go.Figure:
    """Rows = true class, normalised; large (readable numbers) or small (a multiple: colours only)."""
    fig = px.imshow(
        matrix,
        x=list(class_names),
        y=list(class_names),
        zmin=0,
        zmax=1,
        color_continuous_scale="Blues",
        text_auto=False if small else ".2f",
        labels=dict(x="predicted", y="true", color="share of true class"),
    )
    size = 300 if small else 560
    fig.update_layout(
        title=dict(text=title, font_size=12 if small else 15),
        height=size,
        font_size=11 if small else 14,
        margin=dict(t=50, l=10, r=10, b=10),
        coloraxis_showscale=not small,
    )
    if small:  # plotly's automatic ticks skip every other class on a small chart
        names = list(class_names)
        fig.update_xaxes(tickmode="array", tickvals=names, tickangle=-45, tickfont_size=9)
        fig.update_yaxes(tickmode="array", tickvals=names, tickfont_size=9)
    return fig


def method_class_heatmap(table: pd.DataFrame, value: str, title: str, diverging: bool) -> go.Figure:
    """Methods (rows) x classes (columns, most training images first, counts in the labels): readable at 15+ methods."""
    grid = table.pivot_table(index="method", columns="class_label", values=value, sort=False)
    grid = grid[list(dict.fromkeys(table["class_label"]))]
    limit = float(np.nanmax(np.abs(grid.to_numpy()))) if diverging and grid.size else 1.0
    fig = px.imshow(
        grid,
        text_auto=".2f" if not diverging else ".1f",
        aspect="auto",
        color_continuous_scale="RdBu" if diverging else "Viridis",
        zmin=-limit if diverging else 0,
        zmax=limit if diverging else 1,
        labels=dict(x="class (training images)", y="", color=title),
    )
    fig.update_layout(height=max(260, 34 * len(grid) + 120), margin=dict(t=30, l=10, r=10, b=10), font_size=13)
    if {"low", "high"} <= set(table.columns):  # a paired change: its 95% interval in the hover
        intervals = table.assign(interval=_interval_text(table["low"], table["high"], decimals=1))
        text = intervals.pivot_table(index="method", columns="class_label", values="interval", aggfunc="first")
        fig.update_traces(
            customdata=text.reindex(index=grid.index, columns=grid.columns).fillna("").to_numpy(),
            hovertemplate="%{y}<br>%{x}: %{z:+.1f} %{customdata}<extra></extra>",
        )
    return fig


def paired_difference_chart(table: pd.DataFrame, reference: str, what: str) -> go.Figure:
    """Mean paired difference vs the reference with its 95% interval, one marker per group (x = `table['x']`)."""
    styles = group_styles(table["group"])
    fig = go.Figure()
    for group, rows in table.groupby("group", sort=False):
        colour, _ = styles[group]
        has_interval = rows["low"].notna()
        fig.add_scatter(
            x=rows["x"],
            y=rows["mean_diff"],
            mode="markers",
            name=group,
            marker=dict(color=colour, size=10, symbol=method_marker(group), line=dict(width=0.5, color="#333")),
            error_y=dict(
                type="data",
                symmetric=False,
                visible=bool(has_interval.any()),
                array=(rows["high"] - rows["mean_diff"]).fillna(0),
                arrayminus=(rows["mean_diff"] - rows["low"]).fillna(0),
            ),
            customdata=np.stack([_interval_text(rows["low"], rows["high"]), rows["n_pairs"]], axis=-1),
            hovertemplate="%{x}<br>%{y:+.3f} %{customdata[0]} (pairs: %{customdata[1]})<extra>" + group + "</extra>",
        )
    fig.add_hline(y=0, line_color="#555")
    fig.update_layout(
        yaxis_title=f"{what} − {method_of(reference)}'s (paired by seed)",
        legend=LEGEND_ABOVE,
        margin=dict(t=40),
        scattermode="group",
    )
    return fig


def _interval_text(low: pd.Series, high: pd.Series, decimals: int = 3) -> list[str]:
    """Each row's 95% interval as "[low, high]"; "(no interval)" where there are too few pairs for one, "(no
    variation)" where every pair differs alike (a zero-width interval would read as certainty)."""
    return [
        "(no interval)"
        if pd.isna(lo)
        else "(no variation)"
        if lo == hi
        else f"[{lo:+.{decimals}f}, {hi:+.{decimals}f}]"
        for lo, hi in zip(low, high)
    ]


def critical_difference_figure(ranking: Ranking, title: str) -> Figure:
    """Demšar's critical-difference diagram of `ranking` (scikit-posthocs draws it): mean ranks on the axis (1 =
    best, left), and a bar joining methods that Nemenyi's test cannot tell apart at 5 % (the critical difference is
    in the title). A matplotlib figure (made without pyplot, so app threads do not share one), a row per method."""
    from matplotlib.figure import Figure
    from scikit_posthocs import critical_difference_diagram

    labels = {group: group.split(" · ")[0] for group in ranking.mean_ranks.index}  # the method with its settings
    if len(set(labels.values())) < len(labels):  # two groups of one method: keep their whole labels
        labels = {group: group for group in ranking.mean_ranks.index}
    ranks = ranking.mean_ranks.rename(labels)
    p_values = ranking.p_values.rename(index=labels, columns=labels)
    # matplotlib takes 0-1 tuples, not plotly's "rgb(...)" strings
    colours = {label: _matplotlib_colour(group_styles([group])[group][0]) for group, label in labels.items()}
    figure = Figure(figsize=(9, 1.2 + 0.3 * len(ranks)), layout="constrained")
    axes = figure.add_subplot()
    drawn = critical_difference_diagram(
        ranks,
        p_values,
        ax=axes,
        color_palette=colours,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": 9},
    )
    for label in drawn["labels"]:  # the lines keep the method's colour; light ones (focal, iois) would be faint text
        label.set_color("#222222")
    axes.set_title(f"{title}; critical difference {ranking.critical_difference:.2f}", fontsize=10, loc="left", pad=20)
    return figure


def metric_vs_ratio(runs: pd.DataFrame, metric: str) -> go.Figure:
    """Mean metric over seeds against the imbalance ratio, one line per group, sd over seeds as error bars."""
    numeric = runs.dropna(subset=["ratio"])
    grouped = numeric.groupby(["group", "ratio"])[metric].agg(["mean", "std", "size"]).reset_index()
    styles = group_styles(grouped["group"])
    fig = go.Figure()
    for group in dict.fromkeys(numeric["group"]):  # in the runs' order (as every chart), not alphabetical
        rows = grouped[grouped["group"] == group]
        colour, pattern = styles[group]
        fig.add_scatter(
            x=rows["ratio"],
            y=rows["mean"],
            name=group,
            mode="lines+markers",
            line=dict(color=colour, dash="dash" if pattern else "solid"),
            marker=dict(symbol=method_marker(group), size=9),
            error_y=dict(type="data", array=rows["std"].fillna(0)),
            customdata=rows["size"],
            hovertemplate="ratio %{x:g}<br>" + metric + " %{y:.3f} (seeds: %{customdata})<extra>" + group + "</extra>",
        )
    ratios = sorted(grouped["ratio"].unique())
    fig.update_layout(
        xaxis=dict(
            type="log",
            title="imbalance ratio n_max / n_min (log scale)",
            tickvals=ratios,
            ticktext=[f"{r:g}" for r in ratios],
        ),
        yaxis_title=f"test {metric}",
        legend=LEGEND_ABOVE,
        margin=dict(t=40),
    )
    return fig


def validation_curves(curves: pd.DataFrame) -> go.Figure:
    """Mean validation score per epoch over seeds, one line per group (`stats.validation_curves`' rows)."""
    styles = group_styles(curves["group"])
    metric = str(curves["metric"].iloc[0]).removeprefix("val_") if len(curves) else "score"
    fig = go.Figure()
    for group, rows in curves.groupby("group", sort=False):
        colour, pattern = styles[group]
        rows = rows.sort_values("epoch").reset_index(drop=True)
        # The best epoch of the mean curve in its last stage (where the runs pick their final model): a diamond.
        last_stage = rows[rows["stage"] == rows["stage"].iloc[-1]]
        best_note = " · best epoch of the mean curve" + (" in its last stage" if len(last_stage) < len(rows) else "")
        rows["note"] = ""
        rows.loc[last_stage["mean"].idxmax(), "note"] = best_note
        # A gap where a stage begins: a two-stage method's head is new there, its curve starts again.
        new_stage = rows["stage"].ne(rows["stage"].shift()) & (rows.index > 0)
        gaps = rows[new_stage].assign(epoch=rows.loc[new_stage, "epoch"] - 0.5, mean=np.nan, note="")
        drawn = pd.concat([rows, gaps]).sort_values("epoch")
        best = drawn["note"] != ""
        fig.add_scatter(
            x=drawn["epoch"].tolist(),
            y=drawn["mean"].tolist(),
            name=group,
            mode="lines+markers",
            line=dict(color=colour, dash="dash" if pattern else "solid"),
            marker=dict(symbol="diamond", size=np.where(best, 10, 0).tolist(), color=colour),
            customdata=np.stack(
                [
                    drawn["sd"].map(lambda sd: f"{sd:.3f}" if np.isfinite(sd) else "—"),
                    drawn["n"],
                    drawn["stage"],
                    drawn["note"],
                ],
                axis=-1,
            ),
            hovertemplate="epoch %{x} (%{customdata[2]})%{customdata[3]}<br>%{y:.3f} ± %{customdata[0]} "
            "(seeds: %{customdata[1]})<extra>" + group + "</extra>",
        )
    fig.update_layout(
        xaxis_title="epoch",
        yaxis_title=f"validation {metric} (mean over seeds)",
        legend=LEGEND_ABOVE,
        margin=dict(t=40),
    )
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
    fig.update_layout(
        xaxis_title="epoch",
        yaxis=dict(title=label, range=[0, 1]),
        yaxis2=dict(title="loss", overlaying="y", side="right"),
        height=260,
        margin=dict(t=10, b=10),
        legend_orientation="h",
    )
    return fig


def embedding_scatter(points: pd.DataFrame, title: str) -> go.Figure:
    fig = px.scatter(
        points,
        x="pc1",
        y="pc2",
        color="class",
        hover_data=["id"],
        opacity=0.7,
        color_discrete_sequence=PALETTE,
        title=title,
    )
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
    fig.update_layout(
        xaxis_title="epoch",
        yaxis=dict(title="training accuracy", range=[0, 1.02]),
        height=300,
        margin=dict(t=10, b=10),
        legend_orientation="h",
        legend_y=-0.3,
    )
    return fig


def aas_allocation(history: list[dict], class_names: Sequence[str]) -> go.Figure:
    """IOIS: synthetic images each class received per epoch (stacked)."""
    fig = go.Figure()
    rows = [h for h in history if "synthetic" in h.get("method", {})]
    for c, name in enumerate(class_names):
        fig.add_bar(
            x=[h["epoch"] + 1 for h in rows],
            y=[h["method"]["synthetic"][c] for h in rows],
            name=name,
            marker_color=PALETTE[c % len(PALETTE)],
        )
    fig.update_layout(
        barmode="stack",
        xaxis_title="epoch",
        yaxis_title="synthetic images",
        height=300,
        margin=dict(t=10, b=10),
        legend_orientation="h",
        legend_y=-0.3,
    )
    return fig


def change_vs_baseline(table: pd.DataFrame, baseline: str, relative: bool) -> go.Figure:
    """Per-class change of each method against `baseline` (the IOIS paper's figure), classes labelled with counts."""
    styles = group_styles(table["method"])
    fig = go.Figure()
    for method, rows in table.groupby("method", sort=False):
        colour, pattern = styles[method]
        fig.add_bar(
            name=method,
            x=rows["class_label"],
            y=rows["change"],
            marker=dict(color=colour, pattern_shape=pattern),
            hovertemplate="%{x}<br>%{y:+.1f}" + ("%" if relative else " points") + "<extra>" + method + "</extra>",
        )
    fig.add_hline(y=0, line_color="#555")
    title = "relative change of recall (%)" if relative else "change of recall (percentage points)"
    fig.update_layout(
        barmode="group",
        yaxis_title=f"{title} vs {method_of(baseline)}",
        xaxis_title="class (training images), most first",
        legend=LEGEND_ABOVE,
        margin=dict(t=40),
    )
    return fig


def roc_curves(points: pd.DataFrame) -> go.Figure:
    """Binary runs' ROC curves (one line per run, colour per method group), chance diagonal, 90/95 % specificity."""
    fig = go.Figure()
    colours = {g: style[0] for g, style in group_styles(points["group"]).items()}
    for run, rows in points.groupby("run", sort=False):
        fig.add_scatter(
            x=rows["fpr"],
            y=rows["tpr"],
            mode="lines",
            name=f"{run} (AUROC {rows['auc'].iloc[0]:.3f})",
            line_color=colours[rows["group"].iloc[0]],
            line_shape="hv",
        )
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), showlegend=False)
    for spec in (0.95, 0.90):
        fig.add_vline(x=1 - spec, line=dict(dash="dash", color="#bbb"))
    # one label for both lines, where no curve goes (a label beside each would cover the other line or the axis)
    fig.add_annotation(
        text="dashed: 95 % and 90 % specificity", x=0.98, y=0.03, xanchor="right", yanchor="bottom", showarrow=False
    )
    fig.update_layout(
        xaxis=dict(title="false-positive rate (1 − specificity)", range=[0, 1]),
        yaxis=dict(title="sensitivity", range=[0, 1.02]),
        legend=dict(orientation="h", y=-0.25),
        margin=dict(t=30, b=10),
        height=460,
    )
    return fig


def pr_curves(points: pd.DataFrame, prevalence: float) -> go.Figure:
    """Precision against recall per run; the dotted line is the precision of a random score (the prevalence)."""
    fig = go.Figure()
    colours = {g: style[0] for g, style in group_styles(points["group"]).items()}
    for run, rows in points.groupby("run", sort=False):
        fig.add_scatter(
            x=rows["recall"],
            y=rows["precision"],
            mode="lines",
            line_shape="vh",
            name=f"{run} (AUPRC {rows['auc'].iloc[0]:.3f})",
            line_color=colours[rows["group"].iloc[0]],
        )
    fig.add_hline(
        y=prevalence,
        line=dict(dash="dot", color="#999"),
        annotation_text=f"random ({prevalence:.2f})",
        annotation_position="bottom right",
    )
    fig.update_layout(
        xaxis=dict(title="recall (sensitivity)", range=[0, 1]),
        yaxis=dict(title="precision", range=[0, 1.02]),
        legend=dict(orientation="h", y=-0.25),
        margin=dict(t=30, b=10),
        height=460,
    )
    return fig


def score_histogram(scores: pd.DataFrame, class_names: Sequence[str], threshold: float, title: str) -> go.Figure:
    """Overlaid histograms of the abnormality score for normal and abnormal test images, with the threshold."""
    fig = go.Figure()
    for name, colour in zip(class_names, ("#1f77b4", "#d62728")):
        values = scores.loc[scores["class"] == name, "score"]
        fig.add_histogram(
            x=values,
            name=f"{name} ({len(values)})",
            marker_color=colour,
            opacity=0.6,
            xbins=dict(start=0, end=1.0001, size=0.025),
            histnorm="percent",
        )
    fig.add_vline(
        x=threshold,
        line=dict(color="#333", dash="dash"),
        annotation_text="threshold (from validation)",
        annotation_position="top right",  # inside the plot: above it, the chart's subtitle is
    )
    fig.update_layout(
        barmode="overlay",
        title=title,
        xaxis=dict(title="abnormality score", range=[0, 1]),
        yaxis_title="% of the class's test images",
        legend=dict(orientation="h", y=-0.3),
        margin=dict(t=40, b=10),
        height=360,
    )
    return fig


def shift_curves(table: pd.DataFrame, metric: str) -> go.Figure:
    """A metric against shift strength, one panel per shift and one line per run (strength 0 = unshifted test set)."""
    fig = px.line(
        table,
        x="strength",
        y="value",
        color="run",
        facet_col="shift",
        markers=True,
        color_discrete_sequence=PALETTE,
        labels={"value": f"test {metric}", "strength": "strength"},
        hover_data={"drop": ":.3f"},
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))  # "shift=blur" -> "blur"
    fig.update_xaxes(dtick=1)
    fig.update_layout(legend_orientation="h", margin=dict(t=30))
    return fig


def _matplotlib_colour(colour: str) -> tuple[float, ...]:
    return tuple(plotly.colors.convert_colors_to_same_type([colour], colortype="tuple")[0][0])

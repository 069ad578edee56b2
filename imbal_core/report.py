"""A one-file HTML report of a comparison or of a benchmark's results file, to attach to a review: where every number
came from (provenance), tables, charts that fit a 1200 px page (plotly's JavaScript inlined once, diagrams as inline
SVG) and each method's reference. It opens offline in any browser."""

from __future__ import annotations

import html
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from . import __version__
from .compare import run_stages
from .utils import code_version

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .benchmark_results import BenchmarkResults
    from .compare import RunResult

PAGE_WIDTH = 1200  # px: every chart is drawn to fit it
STYLE = (
    f"body{{font-family:system-ui,sans-serif;max-width:{PAGE_WIDTH}px;margin:2em auto;color:#222}}"
    "table{border-collapse:collapse;font-size:12px;max-width:100%}td,th{border:1px solid #ccc;padding:3px 6px;"
    "text-align:right;vertical-align:top}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    ".note{color:#555;font-size:14px}.wide{overflow-x:auto;max-width:100%}pre{white-space:pre-wrap;font-size:12px;"
    "background:#f7f7f7;padding:8px}dl{display:grid;grid-template-columns:220px 1fr;gap:4px 12px;font-size:14px}"
    "dt{font-weight:600}dd{margin:0}"
)
STATISTICS = (
    "Replicates are seeds (repeats of a seed averaged, counted once). Mean ± sd over seeds, with a 95 % t interval "
    "from 3 seeds, cut at the metric's range (a cut end is marked *). Differences against the reference are paired "
    "by seed; p is the paired t test's and p_holm Holm's adjustment over every difference of the table. Methods are "
    "ranked by Friedman's test with Nemenyi's post-hoc test (critical-difference diagram). See docs/statistics.md."
)


@dataclass
class Section:
    heading: str
    note: str
    content: pd.DataFrame | go.Figure | Figure | str  # a table, a chart, a matplotlib diagram or preformatted text


def html_report(
    title: str,
    intro: str,
    sections: list[Section],
    provenance: dict[str, str] | None = None,
    methods: Sequence[str] = (),
) -> str:
    """The report as one HTML document: provenance first, then the sections in order, then the references of
    `methods` (each method's paper, from its card)."""
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{html.escape(intro)}</p>",
        "<h2>Provenance</h2><dl>"
        + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
            for k, v in {**_made_by(), **(provenance or {})}.items()
        )
        + "</dl>",
    ]
    plotly_included = False
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.note:
            parts.append(f"<p class='note'>{html.escape(section.note)}</p>")
        content = section.content
        if isinstance(content, go.Figure):
            parts.append(_plotly_html(content, include_js=not plotly_included))
            plotly_included = True
        elif isinstance(content, pd.DataFrame):
            table = content.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—")
            parts.append(f"<div class='wide'>{table}</div>")
        elif isinstance(content, str):
            parts.append(f"<pre>{html.escape(content)}</pre>")
        else:
            parts.append(_svg(content))
    if methods:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in references(methods))
        parts.append(f"<h2>References</h2><ul>{items}</ul>")
        if entries := bibtex_entries(methods):
            parts.append(f"<h3>BibTeX</h3><pre class='bibtex'>{html.escape(entries)}</pre>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def references(methods: Sequence[str]) -> list[str]:
    """ "method: its paper" for each registered method named (in order, once); others are left out."""
    from .methods import METHODS

    names = [m for m in dict.fromkeys(methods) if m in METHODS]
    return [f"{name}: {METHODS.get(name).card.paper}" for name in names]


def bibtex_entries(methods: Sequence[str]) -> str:
    """The BibTeX of every paper the registered methods named cite, each paper once (crt, lws and tau_norm share
    theirs), in the methods' order."""
    from .methods import METHODS

    cited = {
        ref.key: ref for name in dict.fromkeys(methods) if name in METHODS for ref in METHODS.get(name).card.references
    }
    return "\n\n".join(ref.bibtex() for ref in cited.values())


def runs_provenance(runs: pd.DataFrame, results: list[RunResult]) -> dict[str, str]:
    """Where a comparison of runs (rows of `compare.finished_runs`, one data set and ratio) came from: data, split,
    class counts, each group's epochs and stages, the code and environments that trained them, the statistics."""
    from .engine.trainer import run_environments

    first = results[0].metrics if results else {}
    names = first.get("class_names", [])
    test = dict(zip(names, first.get("per_class", {}).get("support", [])))
    train = dict(zip(names, first.get("train_counts", [])))
    environments = sorted({env for r in results for env in run_environments(r.run_dir)}) or ["not recorded"]
    versions = sorted({str(v)[:7] for v in runs.get("code_version", pd.Series(dtype=str)).dropna()}) or ["unrecorded"]
    return {
        "Data set": ", ".join(dict.fromkeys(runs["data"])),
        "Ratio": ", ".join(dict.fromkeys(runs["ratio_label"])),
        "Training images per class": _counts(train),
        "Test images per class": _counts(test),
        "Runs": f"{len(runs)}: " + ", ".join(runs["run_id"]),
        "Seeds per group": "; ".join(f"{g}: {sorted(s)}" for g, s in runs.groupby("group", sort=False)["seed"]),
        "Epochs and stages": "; ".join(
            f"{group}: {_stages(config)}" for group, config in runs.drop_duplicates("group")[["group", "config"]].values
        ),
        "Code that trained them": ", ".join(versions),
        "Environment that trained them": "; ".join(environments),
        "Statistics": STATISTICS,
        "Every number again": "python -m imbal_core export --runs " + ",".join(runs["run_id"]),
    }


def results_file_report(results: BenchmarkResults) -> str:
    """A benchmark results file as a report: its header (command, code, protocol, environment) as provenance, then
    per section the leaderboard, the paired differences with their verdicts, the per-class recall change with
    intervals, and the file's rankings as critical-difference diagrams."""
    from .charts import critical_difference_figure, method_class_heatmap, method_of, shorten_groups
    from .compare import identical_note
    from .stats import formatted_leaderboard, verdict

    sections = []
    for data, ratio in results.sections():
        board, metrics = results.leaderboard(data, ratio)
        short, shared = shorten_groups(board["group"])
        every = f"Every group: {shared}. " if shared else ""
        table = formatted_leaderboard(board, metrics).drop(columns=["data", "ratio", "repeats"])
        table["group"] = table["group"].map(short)
        note = f"{every}Mean ± sd over seeds [95 % interval; * = cut at the metric's range]."
        if same := results.identical(data, ratio):
            note += " " + identical_note(same, method_of)
        sections.append(Section(f"{data} · ratio {ratio}: leaderboard", note, table))
        reference = results.reference(data, ratio)
        if reference is None:
            continue
        against = short.get(reference, reference)
        paired = results.paired_differences(data, ratio, reference)
        paired["verdict"] = [verdict(*row) for row in zip(paired["low"], paired["high"], paired["p_holm"])]
        paired["group"] = paired["group"].map(short)
        title = f"{data} · ratio {ratio}: paired differences vs {against}"
        sections.append(Section(title, every + STATISTICS, paired.astype({"n_pairs": "Int64"})))
        change = results.recall_change(data, ratio, reference)
        if not change.empty:
            change["method"] = change["method"].map(short)
            heat = method_class_heatmap(change, "change", "points", diverging=True)
            heat.update_layout(
                title=f"Per-class test recall change vs {against} (points){'; ' + shared if shared else ''}"
            )
            sections.append(Section(f"{data} · ratio {ratio}: per-class recall change", every, heat))
            per_class = change[["method", "class_label", "change", "low", "high", "runs"]].rename(
                columns={"method": "group", "class_label": "class (training images)", "runs": "n pairs"}
            )
            title = f"{data} · ratio {ratio}: per-class paired intervals (points)"
            sections.append(Section(title, every, per_class.astype({"n pairs": "Int64"})))
    for ranking in results.rankings():
        title = f"{results.name}: {ranking.metric}, {ranking.n_blocks} blocks"
        note = f"Friedman chi-square {ranking.statistic:.1f}, p = {ranking.p:.2g}; Nemenyi at 5 %."
        sections.append(Section(f"Ranking by {ranking.metric}", note, critical_difference_figure(ranking, title)))
    markdown = results.csv.with_suffix(".md").read_text(encoding="utf-8")
    protocol = markdown.split("\n## Protocol file\n", 1)[-1] if "\n## Protocol file\n" in markdown else ""
    if protocol:
        sections.append(Section("Protocol file", "", protocol.strip()))
    methods = sorted(set(results.table["method"].str.split("[").str[0]) - {""})
    return html_report(
        f"Imbalance Lab: benchmark {results.name}",
        f"From {results.csv.name} and {results.csv.with_suffix('.md').name}, as the benchmark command wrote them.",
        sections,
        _header_items(results.header),
        methods,
    )


def _header_items(header: str) -> dict[str, str]:
    """A results file's markdown header ("- Command: `...`" lines) as provenance items."""
    description, *items = header.split("\n- ")
    found = {"Description": description.strip()} if description.strip() else {}
    for item in items:
        key, _, value = item.partition(": ")
        found[key.strip()] = value.strip().replace("`", "")
    return found


def _made_by() -> dict[str, str]:
    return {"Made by": f"Imbalance Lab {__version__} (code {code_version()[:12]}) on {time.strftime('%Y-%m-%d %H:%M')}"}


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{name} {int(count):,}" for name, count in counts.items()) or "—"


def _stages(config_json: str) -> str:
    """ "representation 30 + classifier 2": a run's stages and their epochs."""
    return " + ".join(f"{name} {epochs}" for name, epochs in run_stages(json.loads(config_json)))


def _plotly_html(figure: go.Figure, include_js: bool) -> str:
    """A plotly chart as wide as the page, its axis labels inside it (automargin grows the margins to fit them)."""
    figure = go.Figure(figure)  # a copy: the page keeps its own sizes
    figure.update_layout(width=PAGE_WIDTH, autosize=False)
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    return figure.to_html(full_html=False, include_plotlyjs=include_js, config={"responsive": False})


def _svg(figure: Figure) -> str:
    """A matplotlib figure as inline SVG (its XML header dropped)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return f"<div>{text[text.index('<svg') :]}</div>"

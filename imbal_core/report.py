"""A one-file HTML report of a comparison: tables and interactive charts that open offline in any browser
(plotly's JavaScript is inlined once), to attach to a review."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:14px}"
)


@dataclass
class Section:
    heading: str
    note: str
    content: pd.DataFrame | go.Figure


def html_report(title: str, intro: str, sections: list[Section]) -> str:
    """The report as one HTML document (headings, notes, tables and charts, in order)."""
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{html.escape(intro)}</p>",
        f"<p class='note'>Made by Imbalance Lab on {time.strftime('%Y-%m-%d %H:%M')}.</p>",
    ]
    plotly_included = False
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.note:
            parts.append(f"<p class='note'>{html.escape(section.note)}</p>")
        if isinstance(section.content, go.Figure):
            parts.append(section.content.to_html(full_html=False, include_plotlyjs=not plotly_included))
            plotly_included = True
        else:
            parts.append(section.content.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—"))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )

"""The one-file HTML report: provenance, statistics, references; it stands alone (issue 38)."""

from __future__ import annotations

from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR, read_results
from imbal_core.compare import finished_runs, load_results, stores
from imbal_core.report import references, results_file_report, runs_provenance


def test_a_results_file_report_carries_its_provenance_statistics_diagrams_and_references():
    html = results_file_report(read_results("ham10000_28", [SHIPPED_RESULTS_DIR]))
    for expected in (
        "<h2>Provenance</h2>",
        "<dt>Command</dt><dd>python -m imbal_core",
        "<dt>Code version</dt>",
        "<dt>Environment that trained them",
        "paired differences vs ce",
        "differs, also after Holm",  # the verdict column
        "per-class paired intervals",
        "<h2>Ranking by balanced_acc</h2>",
        "<svg",  # the critical-difference diagram, inline
        "<h2>Protocol file</h2>",
        "<h2>References</h2>",
        "ldam_drw: Cao et al.",
    ):
        assert expected in html, expected
    assert html.count('<script type="text/javascript">/**') <= 1  # plotly's JavaScript once, inlined
    shown = html.split("<h2>Protocol file</h2>")[0]  # the protocol's own text keeps its placeholders
    assert "{subset}" not in shown and "#d74c" not in html and "<script src=" not in html  # nothing fetched


def test_a_runs_report_says_where_its_numbers_came_from():
    runs = finished_runs(stores()[1:])
    grid = runs[(runs["data"] == "synthetic 28px") & (runs["ratio_label"] == "10") & runs["method"].isin(["ce", "crt"])]
    provenance = runs_provenance(grid, load_results(grid))
    assert provenance["Training images per class"].startswith("symmetric_uniform ")
    assert "crt · 8+2 ep · resnet10t_small: representation 8 + classifier 2" in provenance["Epochs and stages"]
    assert provenance["Every number again"].startswith("python -m imbal_core export --runs ")
    assert "Holm" in provenance["Statistics"]
    assert references(["crt", "ce", "crt", "nope"])[0].startswith("crt: ")

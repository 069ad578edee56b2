"""The one-file HTML report: provenance, statistics, references; it stands alone (issue 38)."""

from __future__ import annotations

from imbal_core.benchmark_results import SHIPPED_RESULTS_DIR, read_results
from imbal_core.compare import finished_runs, load_results, stores
from imbal_core.methods import METHODS
from imbal_core.report import bibtex_entries, references, results_file_report, runs_provenance

# the BibTeX field that names where a paper appeared, per entry type; a preprint is found by its arXiv id
WHERE = {"inproceedings": "booktitle", "article": "journal", "misc": "eprint"}


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
        "@inproceedings{cao2019ldam,",  # the BibTeX of each method's paper
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


def test_every_method_but_ce_cites_its_papers_in_bibtex_that_parses():
    """Each card's BibTeX parses (pybtex), names authors, title, year and where it appeared, and agrees with the
    card's paper line (first author and year or arXiv id); one key is one paper across all cards."""
    from pybtex.database import parse_string

    seen = {}
    for name in METHODS.names():
        card = METHODS.get(name).card
        assert card.references or name == "ce", f"{name} cites no paper"
        for ref in card.references:
            entry = parse_string(ref.bibtex(), "bibtex").entries[ref.key]
            assert entry.type == ref.entry and entry.persons["author"] and entry.fields["title"]
            assert entry.fields["year"] == str(ref.year) and entry.fields[WHERE[ref.entry]]
            assert ref.authors[0].split(",")[0] in card.paper, (name, ref.key)
            assert str(ref.year) in card.paper or ref.eprint in card.paper, (name, ref.key)
            assert seen.setdefault(ref.key, ref) == ref, f"two papers under the key {ref.key}"
    assert len(seen) >= 17
    shared = bibtex_entries(["crt", "lws", "tau_norm", "ce", "nope"])
    assert shared.count("@inproceedings{kang2020decoupling,") == 1 and shared.count("@") == 1

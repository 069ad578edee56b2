"""Page wiring with streamlit's AppTest (the full UI is built in the app issue)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_home_page_renders_method_cards():
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "Imbalance Lab"
    titles = [e.label for e in app.expander]
    assert any("ldam_drw" in t for t in titles) and len(titles) >= 12


def test_docs_method_cards_are_current():
    from imbal_core.cli import methods_markdown

    # `print` adds the final newline when `make docs` writes the file
    assert (ROOT / "docs" / "methods.md").read_text() == methods_markdown() + "\n", "run `make docs`"

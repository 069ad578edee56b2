"""Home: what the lab is for, the methods as cards, the data sources."""
from __future__ import annotations

import streamlit as st

from imbal_core.data import DATA_SOURCES
from imbal_core.methods import METHODS

st.title("Imbalance Lab")
st.write(
    "Rare diseases have few training images, so classifiers learn to ignore them. "
    "This lab trains and compares class-imbalance methods on medical images, side by side, on the same data."
)
st.info("The engine is ready (CLI: `python -m imbal_core --help`). The Data, Train, Compare, Synthesis and "
        "Explain pages come next.")

st.header("Methods")
for name in METHODS.names():
    card = METHODS.get(name).card
    with st.expander(f"{card.title} — `{name}`" + (" (approximation)" if card.approximation else "")):
        st.markdown(card.to_markdown(name))

st.header("Data sources")
for name in DATA_SOURCES.names():
    info = DATA_SOURCES.get(name)
    st.markdown(f"**`{name}`** — {info.description}  \nLayout: {info.layout}")

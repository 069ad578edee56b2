"""Home: what the lab is for, where to start, the methods as cards."""

from __future__ import annotations

import streamlit as st

from imbal_core.methods import METHODS

st.title("Imbalance Lab")
st.write(
    "Rare diseases have few training images, so classifiers learn to ignore them. This lab trains and "
    "compares class-imbalance methods on medical images — side by side, on the same data, class by class."
)
st.markdown(
    "**Where to start**\n"
    "1. **Data** — the built-in dermoscopy-like set (or your own folder); shape the imbalance with the ratio slider.\n"
    "2. **Compare** — the shipped runs of every method are there already (3 seeds at ratios 10, 50 and 100): "
    "leaderboards with spreads, paired differences, per-class recall, confusion matrices, tau-norm tuned on "
    "validation; and the benchmarks' results files (HAM10000, RetinaMNIST).\n"
    "3. **Train** — queue a few methods and seeds; they train in the background and land in Compare.\n"
    "4. **Explain** — Grad-CAM of several models on the same image.\n"
    "5. **Synthesis** — what minority-class images the methods make: style-transferred (Style-KD) and "
    "diffusion samples (IOIS) beside real images, with their quality measured."
)

st.header("Methods")
for name in METHODS.names():
    card = METHODS.get(name).card
    with st.expander(f"{card.title} — `{name}`" + (" (approximation)" if card.approximation else "")):
        st.markdown(card.to_markdown(name))

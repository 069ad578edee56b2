"""Imbalance Lab — Streamlit entry point: `make app` (or `streamlit run app.py`).

Pages live in pages/ and only call imbal_core; this file builds the navigation and sidebar.
"""
from __future__ import annotations

import streamlit as st
import torch

from imbal_core.runs import RunStore
from imbal_core.utils import lab_home

st.set_page_config(page_title="Imbalance Lab", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", default=True),
]
navigation = st.navigation(pages)

with st.sidebar:
    device = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    st.caption(f"**Device:** {device}")
    st.caption(f"**Data cache:** `{lab_home() / 'cache'}`")
    st.caption(f"**Run store:** `{RunStore().root}`")

navigation.run()

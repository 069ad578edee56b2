"""Imbalance Lab — Streamlit entry point: `make app` (or `streamlit run app.py`).

Pages live in pages/ and only call imbal_core; this file builds the navigation and sidebar.
"""
from __future__ import annotations

import streamlit as st
import torch

from imbal_core.compare import PRETRAINED_DIR
from imbal_core.utils import lab_home
from pages.common import job_runner, user_store

st.set_page_config(page_title="Imbalance Lab", page_icon="⚖️", layout="wide")

navigation = st.navigation([
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/data.py", title="Data", icon="🗂️"),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/compare.py", title="Compare", icon="📊"),
    st.Page("pages/synthesis.py", title="Synthesis", icon="🧪"),
    st.Page("pages/explain.py", title="Explain", icon="🔍"),
])
job_runner()  # start the background worker with the server, so queued runs proceed

with st.sidebar:
    device = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    st.caption(f"**Device:** {device}")
    st.caption(f"**Data cache:** `{lab_home() / 'cache'}`")
    st.caption(f"**Run store:** `{user_store().root}`")
    st.caption(f"**Pretrained runs:** `{PRETRAINED_DIR}`")

navigation.run()

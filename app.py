"""Imbalance Lab — Streamlit entry point: `make app` (or `streamlit run app.py`).

Pages live in app_pages/ and only call imbal_core; this file builds the navigation and sidebar.
(Not `pages/`: Streamlit treats a folder of that name as an old-style multipage app and, for a
fresh session opened on a page URL, would run that page without this script.)
"""

from __future__ import annotations

import streamlit as st
import torch

from app_pages.common import (
    app_icon,
    data_choice,
    describe_data,
    ignored_query_values,
    job_runner,
    sync_address,
    user_store,
)
from imbal_core.compare import PRETRAINED_DIR
from imbal_core.utils import lab_home, restrict_data_reads

# The tab icon is drawn here: emoji and material icons are fetched from a CDN by the browser (fails offline).
st.set_page_config(page_title="Imbalance Lab", page_icon=app_icon(), layout="wide")

navigation = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/data.py", title="Data", icon=":material/dataset:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/bar_chart:"),
        st.Page("app_pages/synthesis.py", title="Synthesis", icon=":material/science:"),
        st.Page("app_pages/explain.py", title="Explain", icon=":material/visibility:"),
    ]
)
restrict_data_reads()  # a web page reads no data outside the allowed data folders (the CLI reads any path)
job_runner()  # start the background worker with the server, so queued runs proceed
ignored = ignored_query_values()  # the data choice of the page address (a reload, a shared link), read once
if ignored:
    st.warning(
        "The page address asks for data the app cannot use; these were left at their defaults: " + "; ".join(ignored)
    )
sync_address()  # and written back, on every page

with st.sidebar:
    device = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    st.caption(f"**Data (chosen on Data, trained on Train):** {describe_data(data_choice())}")
    st.caption(f"**Device:** {device}")
    st.caption(f"**Data cache:** `{lab_home() / 'cache'}`")
    st.caption(f"**Run store:** `{user_store().root}`")
    st.caption(f"**Shipped runs:** `{PRETRAINED_DIR}`")

navigation.run()

"""Objects shared by every page and session: the user's run store and the background job runner."""
from __future__ import annotations

import streamlit as st

from imbal_core.compare import stores
from imbal_core.jobs import JobRunner
from imbal_core.runs import RunStore


@st.cache_resource
def user_store() -> RunStore:
    return RunStore()


@st.cache_resource
def job_runner() -> JobRunner:
    """One runner per server process: jobs outside the script thread, shared by all tabs."""
    return JobRunner(user_store())


def all_stores() -> list[RunStore]:
    return stores(user_store())

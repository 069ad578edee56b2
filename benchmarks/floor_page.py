"""The floor of the stack for benchmarks/app_speed.py: a bare Streamlit page with one plotly chart the size of
Compare's first chart (14 method groups x 7 classes of grouped bars), nothing of Imbalance Lab imported.

`?with=dataframe` and `?with=widgets` put one of Compare's other stock elements above the chart (a 14 x 12 table;
two filters and a run picker with 14 chips), to measure what each costs on its own; `?with=both` puts both, the
stock elements Compare shows above its first chart."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

rng = np.random.default_rng(0)
extra = st.query_params.get("with", "")
if extra in ("dataframe", "both"):
    st.dataframe(pd.DataFrame(rng.random((14, 12))))
if extra in ("widgets", "both"):
    left, right = st.columns(2)
    left.selectbox("Data set", ["synthetic 28px", "ham10000 28px"])
    right.selectbox("Ratio", ["natural", "10", "50", "100"])
    runs = [f"method_{m} · 8 ep · seed 0" for m in range(20)]
    st.multiselect("Runs", runs, default=runs[:14])
classes = [f"class_{c}" for c in range(7)]
fig = go.Figure([go.Bar(name=f"method_{m}", x=classes, y=rng.random(7)) for m in range(14)])
fig.update_layout(barmode="group")
st.plotly_chart(fig)

"""The floor of the stack for benchmarks/app_speed.py: a bare Streamlit page with one plotly chart the size of
Compare's first chart (14 method groups x 7 classes of grouped bars), nothing of Imbalance Lab imported."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

rng = np.random.default_rng(0)
classes = [f"class_{c}" for c in range(7)]
fig = go.Figure([go.Bar(name=f"method_{m}", x=classes, y=rng.random(7)) for m in range(14)])
fig.update_layout(barmode="group")
st.plotly_chart(fig)

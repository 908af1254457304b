"""The floor for bench_ui.py: a bare Streamlit app with one slider and one plotly chart, nothing else."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

k = st.slider("Bins", 5, 50, 15)
x = np.linspace(0, 1, 200)
st.plotly_chart(go.Figure(go.Scatter(x=x, y=np.sin(k * x))), key="chart")

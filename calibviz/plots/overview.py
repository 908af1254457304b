"""Figures of the Overview page."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def metrics_comparison(names: list[str], metrics: list[dict[str, float]]) -> go.Figure:
    """Side-by-side bars of accuracy, ECE and NLL per model: the first look at who is miscalibrated."""
    keys = [("accuracy", "Accuracy ↑"), ("ece", "ECE ↓ (15 bins)"), ("nll", "NLL ↓")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in keys], horizontal_spacing=0.08)
    for col, (key, _) in enumerate(keys, start=1):
        vals = [m[key] for m in metrics]
        fig.add_trace(go.Bar(x=names, y=vals, name=key, showlegend=False,
                             text=[f"{v:.3f}" for v in vals], textposition="outside",
                             hovertemplate="%{x}<br>" + key + " = %{y:.4f}<extra></extra>"),
                      row=1, col=col)
        top = max(vals) if vals else 1.0
        fig.update_yaxes(range=[0, top * 1.2 if top > 0 else 1.0], row=1, col=col)
    fig.update_layout(height=360, margin={"t": 40, "b": 10, "l": 10, "r": 10}, bargap=0.3)
    fig.update_xaxes(tickangle=-30)
    return fig

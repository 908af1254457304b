"""Figures of the Overview page."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_layout

_SPACING = 0.08


def metrics_comparison(names: list[str], metrics: list[dict[str, float]]) -> go.Figure:
    """Side-by-side bars of accuracy, ECE and NLL per model: the first look at who is miscalibrated."""
    keys = [("accuracy", "Accuracy ↑"), ("ece", "ECE ↓ (15 bins)"), ("nll", "NLL ↓")]
    # three titled subplots in a row, as make_subplots(rows=1, cols=3, horizontal_spacing=0.08) lays them out
    layout = grid_layout(grid_cells(1, len(keys), _SPACING), [label for _, label in keys])
    layout.update(height=360, margin={"t": 40, "b": 10, "l": 10, "r": 10}, bargap=0.3)
    data = []
    for i, (key, _) in enumerate(keys):
        vals = [m[key] for m in metrics]
        top = max(vals) if vals else 1.0
        x, y, kx, ky = axis_names(i)
        data.append({"type": "bar", "x": names, "y": vals, "name": key, "showlegend": False,
                     "text": [f"{v:.3f}" for v in vals], "textposition": "outside",
                     "hovertemplate": "%{x}<br>" + key + " = %{y:.4f}<extra></extra>", "xaxis": x, "yaxis": y})
        layout[kx]["tickangle"] = -30
        layout[ky]["range"] = [0, top * 1.2 if top > 0 else 1.0]
    return build_figure({"data": data, "layout": layout}, template=pio.templates.default)  # no template set here

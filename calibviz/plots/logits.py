"""Figures of logit statistics: overlaid histograms / KDEs of one statistic for several models,
with masked-input variants drawn dashed in their base model's colour."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from calibviz.logit_stats import SUBSETS, StatisticDistributions

STYLES = ("kde", "hist", "both")
PALETTE = qualitative.Plotly


def model_colors(names: list[str], overlays: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per model name; an overlay (e.g. a masked-input variant) takes its base's colour."""
    overlays = overlays or {}
    bases = [n for n in names if n not in overlays]
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(bases)}
    for n in names:
        if n in overlays:
            colors[n] = colors.get(overlays[n], PALETTE[len(colors) % len(PALETTE)])
    return colors


def distribution_figure(dists: StatisticDistributions, subset: str = "all", style: str = "kde",
                        overlays: Mapping[str, str] | None = None, title: str | None = None) -> go.Figure:
    """Overlay one statistic's distribution for every model in `dists` on one subset of examples.

    style: 'kde' (lines), 'hist' (translucent bars of the density on the shared edges) or 'both'.
    overlays maps an overlay entry (e.g. 'ce · mask 0.3') to its base model; overlays are dashed."""
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r} is unknown; known: {list(SUBSETS)}")
    if style not in STYLES:
        raise ValueError(f"style {style!r} is unknown; known: {list(STYLES)}")
    overlays = overlays or {}
    names = list(dists.by_model)
    colors = model_colors(names, overlays)
    centres = ((dists.edges[:-1] + dists.edges[1:]) / 2).astype(np.float32)
    widths = np.diff(dists.edges).astype(np.float32)
    fig = go.Figure()
    for name in names:
        d = dists.by_model[name][subset]
        dash = "dash" if name in overlays else "solid"
        label = f"{name} (n={d.n})"
        if style in ("hist", "both"):
            fig.add_trace(go.Bar(
                x=centres, y=d.density.astype(np.float32), width=widths, name=label, legendgroup=name,
                marker={"color": colors[name], "line": {"width": 0}}, opacity=0.35,
                showlegend=style == "hist",
                marker_pattern_shape="/" if name in overlays else "",
                hovertemplate=f"{name}<br>%{{x:.3g}}: density %{{y:.3g}}<extra></extra>"))
        if style in ("kde", "both"):
            fig.add_trace(go.Scatter(
                x=dists.grid.astype(np.float32), y=d.kde.astype(np.float32), mode="lines", name=label,
                legendgroup=name, line={"color": colors[name], "dash": dash, "width": 2},
                hovertemplate=f"{name}<br>%{{x:.3g}}: density %{{y:.3g}}<extra></extra>"))
    fig.update_layout(
        barmode="overlay", bargap=0, title=title or f"{dists.label} — {subset} examples",
        xaxis_title=dists.label, yaxis_title="density", legend_title_text="model",
        margin={"l": 50, "r": 20, "t": 50, "b": 45}, template="plotly_white")
    return fig

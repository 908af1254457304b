"""Figures of logit statistics: overlaid histograms / KDEs of one statistic for several models,
with masked-input variants drawn dashed in their base model's colour, and their spreads (std, IQR) as bars."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from calibviz.logit_stats import SUBSETS, StatisticDistributions
from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_layout

STYLES = ("kde", "hist", "both")
LEGENDS = ("right", "below")
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
                        overlays: Mapping[str, str] | None = None, title: str | None = None,
                        legend: str = "right") -> go.Figure:
    """Overlay one statistic's distribution for every model in `dists` on one subset of examples.

    style: 'kde' (lines), 'hist' (translucent bars of the density on the shared edges) or 'both'.
    overlays maps an overlay entry (e.g. 'ce · mask 0.3') to its base model; overlays are dashed.
    legend: 'right' (plotly's default place) or 'below' (horizontal, under the axis: more room for the curves)."""
    if legend not in LEGENDS:
        raise ValueError(f"legend {legend!r} is unknown; known: {list(LEGENDS)}")
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r} is unknown; known: {list(SUBSETS)}")
    if style not in STYLES:
        raise ValueError(f"style {style!r} is unknown; known: {list(STYLES)}")
    overlays = overlays or {}
    names = list(dists.by_model)
    colors = model_colors(names, overlays)
    centres = ((dists.edges[:-1] + dists.edges[1:]) / 2).astype(np.float32)
    widths = np.diff(dists.edges).astype(np.float32)
    grid = dists.grid.astype(np.float32)
    data = []
    for name in names:
        d = dists.by_model[name][subset]
        dash = "dash" if name in overlays else "solid"
        label = f"{name} (n={d.n})"
        hover = f"{name}<br>%{{x:.3g}}: density %{{y:.3g}}<extra></extra>"
        if style in ("hist", "both"):
            data.append({"type": "bar", "x": centres, "y": d.density.astype(np.float32), "width": widths,
                         "name": label, "legendgroup": name, "opacity": 0.35, "showlegend": style == "hist",
                         "marker": {"color": colors[name], "line": {"width": 0},
                                    "pattern": {"shape": "/" if name in overlays else ""}},
                         "hovertemplate": hover})
        if style in ("kde", "both"):
            data.append({"type": "scatter", "x": grid, "y": d.kde.astype(np.float32), "mode": "lines",
                         "name": label, "legendgroup": name, "line": {"color": colors[name], "dash": dash, "width": 2},
                         "hovertemplate": hover})
    layout = {"barmode": "overlay", "bargap": 0, "title": title or f"{dists.label} — {subset} examples",
              "xaxis": {"title": {"text": dists.label}}, "yaxis": {"title": {"text": "density"}},
              "legend": {"title": {"text": "model"}}, "margin": {"l": 50, "r": 20, "t": 50, "b": 45}}
    if legend == "below":
        layout.update(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0,
                              "title": {"text": ""}},
                      margin={"l": 50, "r": 20, "t": 50, "b": 20})
    return build_figure({"data": data, "layout": layout})


def spread_figure(dists: StatisticDistributions, subset: str = "all", overlays: Mapping[str, str] | None = None,
                  title: str | None = None) -> go.Figure:
    """Side-by-side horizontal bars of each model's std and IQR of the statistic on one subset: concentration at a
    glance (shorter bars = more concentrated). Colours match `distribution_figure`; overlays are hatched."""
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r} is unknown; known: {list(SUBSETS)}")
    overlays = overlays or {}
    names = list(dists.by_model)
    colors = model_colors(names, overlays)
    spreads = [float(getattr(d[subset], a)) for d in dists.by_model.values() for a in ("std", "iqr")]
    top = max([v for v in spreads if np.isfinite(v)], default=0.0)
    x_range = [0, 1.3 * top if top > 0 else 1.0]  # one scale: same units
    # make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1, subplot_titles=("std", "IQR"))
    layout = grid_layout(grid_cells(1, 2, 0.1), ("std", "IQR"))
    layout["yaxis2"].update(matches="y", showticklabels=False)
    data = []
    for i, (attr, label) in enumerate((("std", "std"), ("iqr", "IQR"))):
        x, y, kx, ky = axis_names(i)
        values = [float(getattr(dists.by_model[n][subset], attr)) for n in names]
        data.append({
            "type": "bar", "x": values, "y": names, "orientation": "h", "showlegend": False, "name": label,
            "marker": {"color": [colors[n] for n in names], "line": {"width": 0},
                       "pattern": {"shape": ["/" if n in overlays else "" for n in names], "fillmode": "overlay",
                                   "solidity": 0.3}},
            "text": [f"{v:.3g}" if np.isfinite(v) else "no examples" for v in values], "textposition": "outside",
            "cliponaxis": False, "hovertemplate": "%{y}<br>" + label + " %{x:.4g}<extra></extra>",
            "xaxis": x, "yaxis": y})
        layout[kx]["range"] = x_range
        layout[ky].update(autorange="reversed", automargin=True)
    layout.update(title=title or f"Spread of the {dists.label} — {subset} examples",
                  height=max(220, 90 + 34 * len(names)), margin={"l": 10, "r": 20, "t": 70, "b": 30}, bargap=0.25)
    return build_figure({"data": data, "layout": layout})

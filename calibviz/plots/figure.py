"""One way to make a figure fast: from a single plotly dict, validated once.

plotly validates a figure again on every update call (make_subplots, update_layout, update_xaxes, add_trace with a
row); a two-panel diagram built that way took 30-40 ms, several times a bare Streamlit redraw. Built from one dict it
takes about a third of that, and most of the rest was assigning the template, which plotly validates in full (about
9 ms) unless it is its own default: so the template is attached the way plotly attaches its default, unvalidated
(it is a registered, valid template).

A grid of subplots is laid out as make_subplots would lay it out (same domains, same floats, same axis ids and title
annotations) by the helpers below, without its per-call validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE = "plotly_white"


def build_figure(spec: dict[str, Any], template: str = TEMPLATE) -> go.Figure:
    """A go.Figure from {"data": [trace dicts], "layout": {...}}, validated once, with a registered template."""
    fig = go.Figure(spec)
    layout = fig.layout
    layout._validate = False  # as plotly's own _initialize_layout_template does for a registered template
    try:
        layout.template = pio.templates[template]
    finally:
        layout._validate = True
    return fig


Domain = list[float]
Cell = tuple[Domain, Domain]


def grid_domains(n: int, spacing: float, weights: Sequence[float] | None = None, extent: float = 1.0,
                 top_down: bool = False) -> list[Domain]:
    """The [start, end] domains of `n` cells along one axis, as make_subplots computes them: `spacing` apart, sized by
    `weights` (equal by default) within `extent` (0.94 beside a secondary y axis); `top_down`: rows from the top."""
    free = extent - spacing * (n - 1)
    sizes = [free / n] * n if weights is None else [free * (w / float(sum(weights))) for w in weights]
    if top_down:
        sizes = sizes[::-1]  # stacked from the bottom of the figure
    cells = [[sum(sizes[:i]) + i * spacing, sum(sizes[:i]) + i * spacing + sizes[i]] for i in range(n)]
    if top_down:
        cells = [[min(max(v, 0.0), 1.0) for v in cell] for cell in cells[::-1]]  # as make_subplots rounds
    return cells


def grid_cells(rows: int, cols: int, h_spacing: float, v_spacing: float = 0.0) -> list[Cell]:
    """The (x domain, y domain) of each cell of make_subplots(rows, cols, horizontal_spacing=h_spacing,
    vertical_spacing=v_spacing), row by row from the top left."""
    return [(x, y) for y in grid_domains(rows, v_spacing, top_down=True) for x in grid_domains(cols, h_spacing)]


def axis_names(i: int) -> tuple[str, str, str, str]:
    """The axis ids of cell `i` (0-based) in traces and in the layout: ("x", "y", "xaxis", "yaxis"), then
    ("x2", "y2", "xaxis2", "yaxis2"), ..."""
    n = "" if i == 0 else str(i + 1)
    return f"x{n}", f"y{n}", f"xaxis{n}", f"yaxis{n}"


def grid_layout(cells: Sequence[Cell], titles: Sequence[str] = (), title_size: int | None = None) -> dict[str, Any]:
    """A layout with the axes of `cells` (cell i on `axis_names(i)`) and their `titles` as make_subplots' subplot_titles
    writes them (centred over the cell, on its top edge; empty ones skipped); `title_size` None is its 16."""
    layout: dict[str, Any] = {}
    for i, (xd, yd) in enumerate(cells):
        x, y, kx, ky = axis_names(i)
        layout[kx] = {"anchor": y, "domain": list(xd)}
        layout[ky] = {"anchor": x, "domain": list(yd)}
    layout["annotations"] = [
        {"font": {"size": 16 if title_size is None else title_size}, "showarrow": False, "text": t,
         "x": sum(xd) / 2.0, "xanchor": "center", "xref": "paper", "y": yd[1], "yanchor": "bottom", "yref": "paper"}
        for t, (xd, yd) in zip(titles, cells, strict=False) if t]
    return layout


def vline(x: float, line: dict[str, Any]) -> dict[str, Any]:
    """The shape add_vline draws on the first subplot: from the bottom to the top of its plot area at `x`."""
    return {"type": "line", "x0": x, "x1": x, "xref": "x", "y0": 0, "y1": 1, "yref": "y domain", "line": line}

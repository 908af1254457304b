"""The figure factory every builder uses (validated once, with the plotly_white template) and its subplot grids,
the same as make_subplots'."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import plotly.io as pio
import pytest
from plotly.subplots import make_subplots

from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_domains, grid_layout


def test_build_figure_validates_and_attaches_the_template() -> None:
    spec = {"data": [{"type": "bar", "x": [1, 2], "y": [3, 4], "name": "b"}],
            "layout": {"title": {"text": "t"}, "yaxis": {"range": [0, 5]}}}
    fig = build_figure(spec)
    ref = go.Figure(spec).update_layout(template="plotly_white")   # the slow, fully validated way
    assert json.loads(pio.to_json(fig)) == json.loads(pio.to_json(ref))
    assert fig.layout.template.layout.plot_bgcolor == "white"
    fig.update_layout(height=300)                                   # later updates are validated as usual
    with pytest.raises(ValueError, match="colour|color"):
        fig.update_layout(plot_bgcolor="not a colour")
    with pytest.raises(ValueError):
        build_figure({"data": [{"type": "bar", "nonsense": 1}], "layout": {}})
    with pytest.raises(KeyError):
        build_figure({"data": [], "layout": {}}, template="no such template")


# make_subplots' own defaults: horizontal_spacing 0.2 / cols, vertical_spacing 0.3 / rows
@pytest.mark.parametrize("rows, cols, kw", [
    (1, 1, {}),
    (1, 3, {"horizontal_spacing": 0.08}),
    (2, 4, {}),
    (2, 3, {"horizontal_spacing": 0.02, "vertical_spacing": 0.08}),
    (5, 3, {"horizontal_spacing": 0.06, "vertical_spacing": 0.025 / 2, "row_heights": [0.62, 0.22, 0.16, 0.62, 0.22]}),
    (2, 3, {"vertical_spacing": 0.14, "row_heights": [0.5, 0.5]}),
    (11, 1, {"vertical_spacing": 0.02}),                     # the top row ends at 1.0000000000000002, kept to 1.0
    (1, 1, {"specs": [[{"secondary_y": True}]]}),
    (2, 3, {"horizontal_spacing": 0.05, "row_heights": [0.7, 0.3], "specs": [[{"secondary_y": True}] * 3] * 2}),
])
def test_grid_domains_are_make_subplots_domains(rows: int, cols: int, kw: dict) -> None:
    fig = make_subplots(rows=rows, cols=cols, **kw)
    xs = grid_domains(cols, kw.get("horizontal_spacing", 0.2 / cols), extent=0.94 if "specs" in kw else 1.0)
    ys = grid_domains(rows, kw.get("vertical_spacing", 0.3 / rows), kw.get("row_heights"), top_down=True)
    for r in range(rows):
        for c in range(cols):
            cell = fig.get_subplot(r + 1, c + 1)
            assert list(cell.xaxis.domain) == xs[c]   # the same floats, not just close
            assert list(cell.yaxis.domain) == ys[r]


def test_grid_layout_is_make_subplots_layout() -> None:
    titles = ["a", "", "c", "d", "e"]
    for rows, cols, h, v in ((2, 3, 0.02, 0.08), (1, 3, 0.08, 0.3), (3, 2, 0.06, 0.1)):
        fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=h, vertical_spacing=v,
                            subplot_titles=titles[:rows * cols])
        ref = json.loads(pio.to_json(fig))["layout"]
        ref.pop("template")
        ours = json.loads(pio.to_json(go.Figure({"layout": grid_layout(grid_cells(rows, cols, h, v), titles)})))
        ours["layout"].pop("template")
        assert ours["layout"] == ref
        assert axis_names(0) == ("x", "y", "xaxis", "yaxis") and axis_names(rows * cols - 1)[2] in ref

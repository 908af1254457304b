"""Figures of calibration under shift: pure functions from calibviz.shift results to plotly figures.

- `shift_curves_figure`: accuracy, ECE and NLL against corruption severity (0 = the clean test split), one panel
  column per corruption and one row per metric; one colour per model, solid before temperature scaling and dashed
  after it, 95% bootstrap intervals as error bars;
- `shift_reliability_figure`: one model's reliability diagrams on the clean test split beside one shifted split,
  before and after TS (the panels of `reliability_grid_figure`).

Built from one dict (`build_figure`), the grid laid out as make_subplots would (`grid_cells`, `grid_layout`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_layout
from calibviz.plots.recalibration import reliability_grid_figure
from calibviz.plots.reliability import metric_note
from calibviz.shift import CALIBRATIONS, CLEAN, METRIC_LABELS, SHIFT_METRICS, ShiftCurves, ShiftReliability

PALETTE = qualitative.Plotly
DASH = {"before": "solid", "after": "dash"}
WORDS = {"before": "before TS", "after": "after TS"}
Y_TITLES = {"accuracy": "Accuracy", "ece": "ECE", "nll": "NLL"}


def _check(values: Sequence[str], known: Sequence[str], what: str) -> None:
    if not values:
        raise ValueError(f"no {what} to draw")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"{what} {unknown[0]!r} is unknown; known: {list(known)}")


def _same_accuracy(curves: ShiftCurves, corruption: str) -> bool:
    """Whether TS left accuracy exactly as it was at every severity (it keeps the argmax), so one line shows both."""
    a, b = curves.curve(corruption, "accuracy", "before"), curves.curve(corruption, "accuracy", "after")
    return bool(np.array_equal(a.value, b.value))


def shift_curves_figure(curves: Mapping[str, ShiftCurves], metrics: Sequence[str] = SHIFT_METRICS,
                        corruptions: Sequence[str] | None = None, calibrations: Sequence[str] = CALIBRATIONS,
                        title: str | None = None, row_height: int = 220) -> go.Figure:
    """Each metric (rows) against severity 0-5 under each corruption (columns) for every model (keyed by its display
    label): solid lines before TS, dashed after TS fitted on the clean val split, error bars the 95% bootstrap
    intervals. The points of different lines are set a little apart along x so their error bars do not hide each
    other (hover gives the exact severity). Panels of a row share their y axis. Where TS leaves accuracy unchanged
    (always, up to ties) the accuracy row draws one line per model, marked so in its axis title."""
    if not curves:
        raise ValueError("no shift curves to draw")
    first = next(iter(curves.values()))
    corruptions = list(corruptions if corruptions is not None else first.corruptions)
    _check(list(metrics), SHIFT_METRICS, "metric")
    _check(corruptions, first.corruptions, "corruption")
    _check(list(calibrations), CALIBRATIONS, "calibration")
    metrics = [m for m in SHIFT_METRICS if m in metrics]
    calibrations = [c for c in CALIBRATIONS if c in calibrations]
    rows, cols = len(metrics), len(corruptions)
    cells = grid_cells(rows, cols, 0.12 / cols if cols > 1 else 0.0, 0.14 / rows if rows > 1 else 0.0)
    layout = grid_layout(cells, [c.capitalize() for c in corruptions] + [""] * (cols * (rows - 1)), title_size=13)
    lines = [(label, cal) for label in curves for cal in calibrations]
    gap = min(0.09, 0.6 / max(len(lines), 1))
    offset = {key: (j - (len(lines) - 1) / 2) * gap for j, key in enumerate(lines)}
    colors = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(curves)}
    ticks = sorted(first.severities)
    data: list[dict[str, Any]] = []
    shown: set[tuple[str, str]] = set()
    merged_accuracy = len(calibrations) > 1 and all(_same_accuracy(c, k) for c in curves.values() for k in corruptions)
    for r, metric in enumerate(metrics):
        for col, corruption in enumerate(corruptions):
            i = r * cols + col
            x, y, kx, ky = axis_names(i)
            layout[kx].update(range=[min(ticks) - 0.4, max(ticks) + 0.4], tickvals=ticks,
                              ticktext=["clean" if t == CLEAN else str(t) for t in ticks],
                              showticklabels=r == rows - 1, zeroline=False)
            if r == rows - 1:
                layout[kx]["title"] = {"text": "severity", "standoff": 2}
            if col == 0:
                text = Y_TITLES[metric] + (" (same after TS)" if metric == "accuracy" and merged_accuracy else "")
                layout[ky]["title"] = {"text": text}
            else:
                layout[ky].update(matches=axis_names(r * cols)[1], showticklabels=False)
            for label, c in curves.items():
                for cal in calibrations:
                    if metric == "accuracy" and cal == "after" and merged_accuracy:
                        continue
                    cv = c.curve(corruption, metric, cal)
                    group = (label, cal)
                    err = {"type": "data", "symmetric": False, "array": np.nan_to_num(cv.high - cv.value),
                           "arrayminus": np.nan_to_num(cv.value - cv.low), "thickness": 1.2, "width": 3,
                           "color": colors[label]}
                    name = f"{label} · {WORDS[cal]}" + (f" (T = {c.temperature:.3g})" if cal == "after" else "")
                    data.append({
                        "type": "scatter", "mode": "lines+markers", "x": cv.severities + offset[group],
                        "y": cv.value, "error_y": err, "name": name, "legendgroup": f"{label}|{cal}",
                        "showlegend": group not in shown, "xaxis": x, "yaxis": y,
                        "line": {"color": colors[label], "dash": DASH[cal], "width": 2},
                        "marker": {"color": colors[label], "size": 6,
                                   "symbol": "circle" if cal == "before" else "diamond-open"},
                        "customdata": np.column_stack([cv.severities, cv.low, cv.high]),
                        "hovertemplate": (f"{label}, {WORDS[cal]}<br>{corruption}, severity %{{customdata[0]}}"
                                          f"<br>{METRIC_LABELS[metric]} %{{y:.4f}} "
                                          "[%{customdata[1]:.4f}, %{customdata[2]:.4f}]<extra></extra>")})
                    shown.add(group)
    n_legend = len(shown)
    legend_rows = -(-n_legend // 3)
    top = 50 + 20 * legend_rows + (30 if title else 0)
    layout.update(
        title={"text": title, "x": 0.01, "y": 0.99, "yanchor": "top"} if title else None,
        height=row_height * rows + top + 50, hovermode="closest", font={"size": 11},
        legend={"orientation": "h", "yref": "container", "y": 1 - (30 if title else 6) / (row_height * rows + top + 50),
                "yanchor": "top", "x": 0, "font": {"size": 11}},
        margin={"l": 60, "r": 15, "t": top, "b": 45})
    return build_figure({"data": data, "layout": layout})


def shift_reliability_figure(rel: ShiftReliability, curves: ShiftCurves, calibrations: Sequence[str] = CALIBRATIONS,
                             title: str | None = None, panel_height: int = 300) -> go.Figure:
    """One model's top-label reliability diagrams on the clean test split beside the `rel.corruption` split at
    `rel.severity`, before and/or after TS, in one row; each panel's corner gives its ECE and accuracy with their
    95% bootstrap intervals (from `curves`, the same numbers as the curves and the table). The title, when given,
    ends with the temperature when the after-TS panels are drawn."""
    _check(list(calibrations), CALIBRATIONS, "calibration")
    labels = {"ece": "ECE", "accuracy": "acc."}
    panels, notes = {}, {}
    for cal in (c for c in CALIBRATIONS if c in calibrations):
        suffix = WORDS[cal]
        for shifted in (False, True):
            name = (f"{rel.corruption} {rel.severity} · {suffix}" if shifted else f"clean · {suffix}")
            point = curves.point(rel.corruption, rel.severity if shifted else CLEAN)
            panels[name] = rel.bins(shifted, cal)
            values = point.metrics(cal).to_json()
            notes[name] = metric_note(values, values["intervals"], labels).replace(" · ", "<br>")
    fig = reliability_grid_figure(panels, notes, cols=len(panels), panel_height=panel_height)
    if title:  # above the legend, which the grid puts just over the panels' titles
        if "after" in calibrations:
            title = f"{title} · T = {rel.temperature:.3g}, fitted on the clean val split"
        fig.update_layout(title={"text": title, "x": 0.0, "xref": "paper", "y": 0.995, "yref": "container",
                                 "yanchor": "top", "font": {"size": 14}},
                          margin={"t": fig.layout.margin.t + 30}, height=fig.layout.height + 30)
    return fig

"""Distillation figures: pure functions from calibviz.distillation results to plotly figures.

- `students_figure`: agreement, KL, accuracy and ECE of each student, train and test, with intervals;
- `temperature_figure`: the same against the distillation temperature T, one line per teacher, with the students'
  class separation R² and the teachers' soft-label entropy against T;
- `teacher_student_reliability`: the teacher's and the student's reliability curves overlaid, counts beneath;
- `confidence_scatter`: per example, the student's confidence against the teacher's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from calibviz.distillation import EntropyCurve, Fidelity
from calibviz.metrics import MetricEstimate, ReliabilityBins
from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_layout

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
SPLIT_COLORS = {"train": "#9ecae1", "test": "#1f77b4"}
DIAGONAL = {"color": "#555555", "dash": "dash", "width": 1.5}
PANELS = (("agreement", "Top-1 agreement ↑"), ("kl", "KL(teacher ‖ student), nats ↓"),
          ("accuracy", "Accuracy ↑"), ("ece", "ECE ↓"))


def _err(estimates: Sequence[MetricEstimate]) -> dict:
    """Plotly asymmetric error bars from the estimates' intervals (none drawn where an interval is missing)."""
    v = np.array([e.value for e in estimates], dtype=np.float64)
    hi = np.array([e.high if e.high is not None else e.value for e in estimates], dtype=np.float64)
    lo = np.array([e.low if e.low is not None else e.value for e in estimates], dtype=np.float64)
    return {"type": "data", "symmetric": False, "array": hi - v, "arrayminus": v - lo, "thickness": 1.2, "width": 3}


def students_figure(students: Sequence[str], by_split: Mapping[str, Sequence[Fidelity]]) -> go.Figure:
    """Horizontal bars of each student's agreement, KL, accuracy and ECE (with 95% intervals), one colour per split,
    the students down the shared y axis."""
    cells = grid_cells(1, len(PANELS), 0.03)
    layout = grid_layout(cells, [t for _, t in PANELS], title_size=13)
    layout.update(height=140 + 46 * len(students), barmode="group", bargap=0.2, hovermode="closest",
                  margin={"t": 50, "b": 30, "l": 10, "r": 10},
                  legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 0, "traceorder": "normal"})
    data = []
    names = list(students)
    for i, (key, title) in enumerate(PANELS):
        x, y, kx, ky = axis_names(i)
        for split, fids in reversed(list(by_split.items())):  # plotly stacks horizontal groups bottom-up
            est = [getattr(f, key) for f in fids]
            data.append({"type": "bar", "orientation": "h", "y": names, "x": [e.value for e in est], "name": split,
                         "legendgroup": split, "showlegend": i == 0, "error_x": _err(est),
                         "marker": {"color": SPLIT_COLORS.get(split, PALETTE[len(data) % len(PALETTE)])},
                         "hovertemplate": f"%{{y}}<br>{split}: {title.rstrip(' ↑↓')} = %{{x:.4f}}<extra></extra>",
                         "xaxis": x, "yaxis": y})
        layout[kx]["rangemode"] = "tozero"
        layout[ky].update(autorange="reversed", automargin=True, showticklabels=i == 0)
        if i:
            layout[ky]["matches"] = "y"
    return build_figure({"data": data, "layout": layout})


def temperature_figure(sweeps: Mapping[str, Sequence[tuple[float, Fidelity]]],
                       entropy: Mapping[str, EntropyCurve],
                       separation: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                       height: int = 620) -> go.Figure:
    """Against the distillation temperature T (log axis), one colour per teacher: the students' agreement with their
    teacher, KL, accuracy and ECE (with 95% intervals), their penultimate class separation R² (Kornblith et al.
    2021: how tight and apart the classes sit), and the teacher's mean soft-label entropy (quartile band)."""
    panels = (("agreement", "Student agreement with teacher ↑"), ("accuracy", "Student accuracy ↑"),
              ("ece", "Student ECE ↓"), ("kl", "KL(teacher ‖ student) ↓"),
              ("separation", "Student class separation R²"), ("entropy", "Teacher soft-label entropy (nats)"))
    cells = grid_cells(2, 3, 0.07, 0.16)
    layout = grid_layout(cells, [t for _, t in panels], title_size=13)
    layout.update(height=height, margin={"t": 70, "b": 40, "l": 50, "r": 10}, hovermode="closest",
                  legend={"orientation": "h", "y": 1.1, "x": 0})
    data: list[dict] = []
    names = list(dict.fromkeys([*sweeps, *entropy]))
    temps = sorted({t for pts in sweeps.values() for t, _ in pts})
    for i, (key, _title) in enumerate(panels):
        x, y, kx, ky = axis_names(i)
        ticks = [1, 2, 4, 8, 16] if key == "entropy" else temps
        layout[kx].update(type="log", title={"text": "T", "standoff": 2}, tickvals=ticks,
                          ticktext=[f"{t:g}" for t in ticks])
        for j, name in enumerate(names):
            color = PALETTE[j % len(PALETTE)]
            common = {"legendgroup": name, "name": name, "xaxis": x, "yaxis": y, "showlegend": False}
            hover = f"{name}<br>T = %{{x:g}}<br>{key} = %{{y:.4f}}<extra></extra>"
            if key == "entropy":
                curve = entropy.get(name)
                if curve is None:
                    continue
                t = curve.temperatures.tolist()
                data.append({"type": "scatter", "x": t + t[::-1], "y": [*curve.q75, *curve.q25[::-1]],
                             "fill": "toself", "fillcolor": "rgba(127,127,127,0.15)", "line": {"width": 0},
                             "hoverinfo": "skip", **common})
                data.append({"type": "scatter", "x": t, "y": curve.mean, "mode": "lines",
                             "line": {"color": color, "dash": "dot"}, "hovertemplate": hover, **common})
            elif key == "separation":
                pts = [(t, r) for t, r in (separation or {}).get(name, []) if np.isfinite(r)]
                if pts:
                    data.append({"type": "scatter", "x": [t for t, _ in pts], "y": [r for _, r in pts],
                                 "mode": "lines+markers", "marker": {"color": color, "size": 8},
                                 "line": {"color": color}, "hovertemplate": hover, **common})
            elif sweeps.get(name):
                points = sweeps[name]
                est = [getattr(f, key) for _, f in points]
                data.append({"type": "scatter", "x": [t for t, _ in points], "y": [e.value for e in est],
                             "mode": "lines+markers", "error_y": {**_err(est), "color": color},
                             "marker": {"color": color, "size": 8}, "line": {"color": color},
                             "hovertemplate": hover, **{**common, "showlegend": i == 0}})
        if key == "entropy" and entropy:
            top = max(c.max_entropy for c in entropy.values())
            layout[ky]["range"] = [0, top * 1.05]
            layout.setdefault("shapes", []).append(
                {"type": "line", "xref": f"{x} domain", "x0": 0, "x1": 1, "yref": y, "y0": top, "y1": top,
                 "line": {"color": "#999999", "dash": "dash", "width": 1}})
    return build_figure({"data": data, "layout": layout})


def _curve(bins: ReliabilityBins) -> tuple[np.ndarray, np.ndarray, dict]:
    """Mean confidence and accuracy of each non-empty bin, and its Wilson error bars."""
    keep = bins.count > 0
    conf, acc = bins.confidence[keep].astype(np.float64), bins.accuracy[keep].astype(np.float64)
    err: dict = {}
    if bins.accuracy_low is not None and bins.accuracy_high is not None:
        err = {"type": "data", "symmetric": False, "array": bins.accuracy_high[keep] - acc,
               "arrayminus": acc - bins.accuracy_low[keep], "thickness": 1, "width": 2}
    return conf, acc, err


def teacher_student_reliability(curves: Mapping[str, ReliabilityBins], title: str | None = None,
                                height: int = 460) -> go.Figure:
    """Reliability curves of a teacher and its student(s) overlaid: accuracy against mean confidence per bin (95%
    Wilson bars), the diagonal, and each model's count of predictions per bin beneath."""
    layout = {"height": height, "title": {"text": title, "x": 0.01}, "hovermode": "closest", "barmode": "group",
              "bargap": 0.1, "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
              "margin": {"l": 60, "r": 20, "t": 80, "b": 50},
              "xaxis": {"anchor": "y", "domain": [0, 1], "matches": "x2", "showticklabels": False, "range": [0, 1]},
              "yaxis": {"anchor": "x", "domain": [0.3, 1], "range": [0, 1.02], "title": {"text": "Accuracy in bin"}},
              "xaxis2": {"anchor": "y2", "domain": [0, 1], "range": [0, 1],
                         "title": {"text": "Confidence (predicted probability of the top class)"}},
              "yaxis2": {"anchor": "x2", "domain": [0, 0.24], "type": "log", "title": {"text": "Count"}}}
    data: list[dict] = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "line": DIAGONAL,
                         "name": "Perfect calibration", "hoverinfo": "skip"}]
    for j, (name, bins) in enumerate(curves.items()):
        color = PALETTE[j % len(PALETTE)]
        conf, acc, err = _curve(bins)
        data.append({"type": "scatter", "x": conf, "y": acc, "mode": "lines+markers", "name": name,
                     "legendgroup": name, "marker": {"color": color, "size": 7}, "line": {"color": color},
                     "error_y": {**err, "color": color} if err else None,
                     "hovertemplate": f"{name}<br>mean confidence %{{x:.3f}}<br>accuracy %{{y:.3f}}<extra></extra>"})
        e = np.asarray(bins.edges, dtype=np.float64)
        data.append({"type": "bar", "x": (e[:-1] + e[1:]) / 2, "y": bins.count, "name": name, "legendgroup": name,
                     "showlegend": False, "marker": {"color": color}, "xaxis": "x2", "yaxis": "y2",
                     "hovertemplate": f"{name}<br>bin centre %{{x:.3f}}<br>n = %{{y}}<extra></extra>"})
    return build_figure({"data": data, "layout": layout})


def confidence_scatter(teacher_conf: np.ndarray, student_conf: np.ndarray, agree: np.ndarray, teacher: str,
                       student: str, max_points: int = 3000, seed: int = 0, height: int = 460) -> go.Figure:
    """Per example: the student's confidence against the teacher's, coloured by whether their top-1 classes agree. At
    most `max_points` examples are drawn (a seeded sample, said in the title); the diagonal is equal confidence."""
    n = len(teacher_conf)
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    shown = f"{len(idx):,} of {n:,} examples (seeded sample)" if len(idx) < n else f"all {n:,} examples"
    data: list[dict] = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "line": DIAGONAL,
                         "name": "Equal confidence", "hoverinfo": "skip"}]
    for value, name, color in ((1.0, "Same top-1 class", "#1f77b4"), (0.0, "Different top-1 class", "#d62728")):
        sel = idx[agree[idx] == value]
        data.append({"type": "scattergl", "x": teacher_conf[sel], "y": student_conf[sel], "mode": "markers",
                     "name": f"{name} ({len(sel):,})", "marker": {"color": color, "size": 4, "opacity": 0.5},
                     "hovertemplate": "teacher %{x:.3f}<br>student %{y:.3f}<extra></extra>"})
    layout = {"height": height, "hovermode": "closest",
              "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
              "margin": {"l": 60, "r": 20, "t": 80, "b": 60},
              "xaxis": {"range": [0, 1.01], "title": {"text": f"Teacher confidence ({teacher})"}},
              "annotations": [{"text": shown, "xref": "x domain", "yref": "y domain", "x": 0.02, "y": 0.98,
                               "xanchor": "left", "yanchor": "top", "showarrow": False, "font": {"size": 11},
                               "bgcolor": "rgba(255,255,255,0.8)"}],
              "yaxis": {"range": [0, 1.01], "title": {"text": f"Student confidence ({student})"}}}
    return build_figure({"data": data, "layout": layout})

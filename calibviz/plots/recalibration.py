"""Figures of re-calibration: NLL (and ECE) against temperature with the optimum marked, the MTS
mask-ratio curve for several models, a before/after bar chart per method, the manual-temperature
teaching view and side-by-side reliability diagrams in one figure. Pure functions: plain data in,
plotly figure out.

Each figure is built from one dict (`build_figure`: validated once), the subplot grids laid out as make_subplots
would lay them out (`grid_domains`, `grid_layout`), since plotly validates the whole figure again on every
make_subplots, add_trace(row=, col=), update_* and add_* call."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative

from calibviz.calibrators import MTSPoint
from calibviz.metrics import ReliabilityBins
from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_domains, grid_layout, vline
from calibviz.plots.reliability import metric_note, reliability_figure, reliability_traces
from calibviz.recalibration import AtTemperature, MethodResult, TemperatureCurve

PALETTE = qualitative.Plotly
METRIC_TITLES = {"ece": "ECE", "nll": "NLL", "brier": "Brier", "accuracy": "Accuracy", "auroc": "AUROC"}


def _secondary_y_axes(x_title: str, show_secondary: bool = True) -> dict[str, Any]:
    """The axes of make_subplots(specs=[[{"secondary_y": show_secondary}]]): x (narrowed to 0.94 for the right
    axis, log scale here, titled) and y, and the right axis y2 overlaying y."""
    layout: dict[str, Any] = {
        "xaxis": {"anchor": "y", "domain": [0.0, 0.94 if show_secondary else 1.0], "type": "log",
                  "title": {"text": x_title}},
        "yaxis": {"anchor": "x", "domain": [0.0, 1.0]}}
    if show_secondary:
        layout["yaxis2"] = {"anchor": "x", "overlaying": "y", "side": "right"}
    return layout


_PRIMARY, _SECONDARY = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x", "yaxis": "y2"}


def temperature_curve_figure(curve: TemperatureCurve, current: float | None = None,
                             show_ece: bool = True, title: str | None = None) -> go.Figure:
    """NLL against T (log axis) with the exact optimum marked; ECE on a second axis; an optional
    vertical line at the temperature the user has chosen (`current`)."""
    data: list[dict[str, Any]] = [
        {"type": "scatter", "x": curve.temperatures, "y": curve.nll, "mode": "lines", "name": "NLL",
         "line": {"color": PALETTE[0], "width": 2}, "hovertemplate": "T=%{x:.4g}<br>NLL %{y:.5f}<extra></extra>",
         **_PRIMARY}]
    if show_ece:
        data.append({"type": "scatter", "x": curve.temperatures, "y": curve.ece, "mode": "lines",
                     "name": f"ECE ({curve.n_bins} bins)", "line": {"color": PALETTE[1], "width": 2, "dash": "dot"},
                     "hovertemplate": "T=%{x:.4g}<br>ECE %{y:.4f}<extra></extra>", **_SECONDARY})
    data.append({"type": "scatter", "x": [curve.optimal_temperature], "y": [curve.optimal_nll],
                 "mode": "markers+text", "name": f"optimum T = {curve.optimal_temperature:.4g}",
                 "marker": {"color": PALETTE[0], "size": 11, "symbol": "star"},
                 "text": [f"T* = {curve.optimal_temperature:.4g}"], "textposition": "top center",
                 "hovertemplate": "T*=%{x:.6g}<br>NLL %{y:.6f}<extra></extra>", **_PRIMARY})
    layout = _secondary_y_axes("temperature T (log scale)", show_ece)
    layout["yaxis"]["title"] = {"text": "NLL (fit data)"}
    if show_ece:
        layout["yaxis2"].update(title={"text": "ECE"}, rangemode="tozero")
    shapes, annotations = [], []
    if current is not None:
        shapes.append(vline(float(current), {"color": "gray", "dash": "dash"}))
        annotations.append({"showarrow": False, "text": f"T = {float(current):.3g}",
                            "x": math.log10(float(current)),  # a log axis places annotations by log10
                            "xanchor": "right", "xref": "x", "y": 1, "yanchor": "top", "yref": "y domain"})
    shapes.append(vline(1.0, {"color": "lightgray", "width": 1}))
    layout.update(shapes=shapes, annotations=annotations, title={"text": title or "Log-loss against temperature"},
                  hovermode="x unified", legend={"orientation": "h", "y": -0.25}, margin={"t": 50, "b": 10})
    return build_figure({"data": data, "layout": layout}, template=pio.templates.default)  # no template set here


LOG_SPREAD = 8.0
"""An MTS curve figure switches to a log y axis by itself when its largest value exceeds its smallest by this
factor: one steep curve would otherwise flatten the others."""


def mts_curve_figure(curves: Mapping[str, Sequence[MTSPoint]], metric: str = "ece",
                     title: str | None = None, height: int | None = None, log_y: bool | None = None) -> go.Figure:
    """The MTS curve (mask ratio r against evaluation-split ECE or NLL) of several models; r = 0 is
    plain temperature scaling and is marked with a square. Hover shows the fitted T. `title` "" draws
    none; `log_y` None picks a log axis when the values spread over more than `LOG_SPREAD`."""
    if metric not in ("ece", "nll"):
        raise ValueError(f"metric must be 'ece' or 'nll', got {metric!r}")
    data = []
    for i, (name, points) in enumerate(curves.items()):
        pts = sorted(points, key=lambda p: p.ratio)
        data.append({
            "type": "scatter", "x": [p.ratio for p in pts], "y": [getattr(p, metric) for p in pts],
            "mode": "lines+markers", "name": name, "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
            "customdata": [[p.temperature] for p in pts],
            "marker": {"symbol": ["square" if p.ratio == 0 else "circle" for p in pts], "size": 8},
            "hovertemplate": (f"{name}<br>r=%{{x:.2f}}<br>{METRIC_TITLES[metric]} %{{y:.4f}}"
                              "<br>T=%{customdata[0]:.3f}<extra></extra>")})
    default_title = f"Masked temperature scaling: mask ratio r against {METRIC_TITLES[metric]}"
    ys = [getattr(p, metric) for pts in curves.values() for p in pts]
    if log_y is None:
        log_y = bool(ys) and min(ys) > 0 and max(ys) / min(ys) > LOG_SPREAD
    y_title = f"{METRIC_TITLES[metric]} on the evaluation split (inputs never masked)"
    yaxis: dict[str, Any] = {"title": {"text": y_title}, "rangemode": "tozero"}
    if log_y:
        ticks = [m * 10.0 ** e for e in range(-4, 2) for m in (1, 2, 5)]
        yaxis.update(type="log", title={"text": f"{METRIC_TITLES[metric]} on the evaluation split (log scale)"},
                     tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], minor={"showgrid": False})
    layout = {"title": {"text": default_title if title is None else (title or None)}, "height": height,
              "xaxis": {"title": {"text": "mask ratio r (r = 0: plain temperature scaling)"}}, "yaxis": yaxis,
              "legend": {"orientation": "h", "y": -0.25}, "margin": {"t": 50, "b": 10}}
    return build_figure({"data": data, "layout": layout})


def _err(y: float | None, interval: Sequence[float | None] | None, side: int) -> float:
    """Length of the error bar from y to one end of its interval (0 where unknown)."""
    if y is None or not interval or interval[side] is None:
        return 0.0
    return float(interval[1] - y) if side == 1 else float(y - interval[0])


def method_comparison_figure(reports: Mapping[str, Mapping[str, Any]],
                             metrics: Sequence[str] = ("ece", "nll"), title: str | None = None,
                             height: int | None = None) -> go.Figure:
    """Grouped bars per metric: the uncalibrated value and each method's value on the evaluation
    split, from `recalibration_report` dicts keyed by a display name. Error bars show the bootstrap
    intervals where the report carries them."""
    if not reports:
        raise ValueError("no reports to compare")
    names = list(reports)
    first = next(iter(reports.values()))
    xs = ["uncalibrated", *names]
    colors = ["lightgray", *[PALETTE[i % len(PALETTE)] for i in range(len(names))]]
    # one row of len(metrics) subplots, titled, as make_subplots(rows=1, cols=len(metrics)) spaces them
    layout = grid_layout(grid_cells(1, len(metrics), 0.2 / len(metrics)), [METRIC_TITLES.get(m, m) for m in metrics])
    layout.update(bargap=0.25, height=height, margin={"t": 60, "b": 10},
                  title={"text": title or "Evaluation split: uncalibrated and each method"})
    data = []
    for i, m in enumerate(metrics):
        ys = [first["before"].get(m)] + [reports[n]["after"].get(m) for n in names]
        ivs = [first["before"].get("intervals", {}).get(m)] + [
            reports[n]["after"].get("intervals", {}).get(m) for n in names]
        plus = [_err(y, iv, 1) for iv, y in zip(ivs, ys, strict=True)]
        minus = [_err(y, iv, 0) for iv, y in zip(ivs, ys, strict=True)]
        x, y, kx, _ = axis_names(i)
        data.append({"type": "bar", "x": xs, "y": ys, "marker": {"color": colors}, "name": METRIC_TITLES.get(m, m),
                     "showlegend": False,
                     "error_y": {"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                     "hovertemplate": f"%{{x}}<br>{METRIC_TITLES.get(m, m)} %{{y:.4f}}<extra></extra>",
                     "xaxis": x, "yaxis": y})
        layout[kx]["tickangle"] = 0
    return build_figure({"data": data, "layout": layout})


def temperature_teaching_figure(fit_curve: TemperatureCurve, eval_curve: TemperatureCurve, current: float,
                                title: str | None = None) -> go.Figure:
    """The manual-temperature view: NLL against T on the fit split (its minimum, marked with a star,
    is the fitted temperature T*) and on the evaluation split, evaluation ECE on a second axis, and
    the chosen T as a vertical line with its evaluation NLL and ECE marked."""
    t_star = fit_curve.optimal_temperature
    cur_nll = float(np.interp(math.log(current), np.log(eval_curve.temperatures), eval_curve.nll))
    cur_ece = float(np.interp(math.log(current), np.log(eval_curve.temperatures), eval_curve.ece))
    data = [
        {"type": "scatter", "x": fit_curve.temperatures, "y": fit_curve.nll, "mode": "lines",
         "name": "NLL, fit split", "line": {"color": PALETTE[0], "width": 2},
         "hovertemplate": "NLL (fit) %{y:.4f}<extra></extra>", **_PRIMARY},
        {"type": "scatter", "x": eval_curve.temperatures, "y": eval_curve.nll, "mode": "lines",
         "name": "NLL, evaluation split", "line": {"color": PALETTE[2], "width": 2, "dash": "dash"},
         "hovertemplate": "NLL (eval) %{y:.4f}<extra></extra>", **_PRIMARY},
        {"type": "scatter", "x": eval_curve.temperatures, "y": eval_curve.ece, "mode": "lines",
         "name": f"ECE, evaluation split ({eval_curve.n_bins} bins)",
         "line": {"color": PALETTE[1], "width": 2, "dash": "dot"},
         "hovertemplate": "ECE (eval) %{y:.4f}<extra></extra>", **_SECONDARY},
        {"type": "scatter", "x": [t_star], "y": [fit_curve.optimal_nll], "mode": "markers",
         "name": f"fitted T* = {t_star:.4g}",
         "marker": {"color": PALETTE[0], "size": 14, "symbol": "star", "line": {"color": "white", "width": 1}},
         "hovertemplate": "fitted T* = %{x:.5g}<br>NLL (fit) %{y:.5f}<extra></extra>", **_PRIMARY},
        {"type": "scatter", "x": [current], "y": [cur_nll], "mode": "markers", "name": "chosen T: NLL (eval)",
         "marker": {"color": PALETTE[2], "size": 10, "line": {"color": "black", "width": 1}}, "showlegend": False,
         "hovertemplate": "chosen T<br>NLL (eval) %{y:.4f}<extra></extra>", **_PRIMARY},
        {"type": "scatter", "x": [current], "y": [cur_ece], "mode": "markers", "name": "chosen T: ECE (eval)",
         "marker": {"color": PALETTE[1], "size": 10, "line": {"color": "black", "width": 1}}, "showlegend": False,
         "hovertemplate": "chosen T<br>ECE (eval) %{y:.4f}<extra></extra>", **_SECONDARY}]
    ts = [float(fit_curve.temperatures[0]), float(fit_curve.temperatures[-1]), t_star, float(current)]
    layout = _secondary_y_axes("temperature T (log scale; T > 1 softens, T < 1 sharpens)")
    layout["xaxis"]["range"] = [math.log10(min(ts)) - 0.03, math.log10(max(ts)) + 0.03]
    layout["yaxis"].update(title={"text": "NLL (lower is better)"}, rangemode="tozero")
    layout["yaxis2"].update(title={"text": "ECE"}, rangemode="tozero", showgrid=False, tickmode="auto", nticks=6,
                            tickformat=".2f")
    layout.update(
        shapes=[vline(1.0, {"color": "lightgray", "width": 1}),
                vline(float(current), {"color": "black", "dash": "dash", "width": 1.5})],
        annotations=[{"x": math.log10(current), "y": 1.0, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "showarrow": False, "text": f"chosen T = {current:.4g}", "font": {"size": 11}}],
        title={"text": title or "Log-loss and ECE against temperature"}, hovermode="x unified",
        legend={"orientation": "h", "y": -0.22, "x": 0}, margin={"l": 60, "r": 60, "t": 60, "b": 10}, height=460)
    return build_figure({"data": data, "layout": layout})


def reliability_grid_figure(panels: Mapping[str, ReliabilityBins], notes: Mapping[str, str] | None = None,
                            cols: int = 3, title: str | None = None, panel_height: int = 330) -> go.Figure:
    """Several top-label reliability diagrams in one figure, `cols` per row, each with its count
    histogram beneath (the traces of `reliability_figure`, one legend for all). `notes` puts a line
    of metrics in each panel's corner."""
    if not panels:
        raise ValueError("no reliability diagrams to draw")
    names = list(panels)
    cols = max(1, min(cols, len(names)))
    rows = math.ceil(len(names) / cols)
    # Grid rows, top to bottom: each row of panels is a diagram over its histogram, then (but after the last) an
    # empty spacer row for the titles and the axis labels; laid out as make_subplots(specs=...) with
    # row_heights [0.62, 0.22, 0.16] repeated would, its subplots numbered row by row over the cells that exist.
    x_domains = grid_domains(cols, 0.06)
    y_domains = grid_domains(3 * rows - 1, 0.025 / rows, ([0.62, 0.22, 0.16] * rows)[:3 * rows - 1], top_down=True)
    cells, titles = [], []
    for r in range(rows):
        for below in (False, True):
            for c in range(cols):
                cells.append((x_domains[c], y_domains[3 * r + below]))
                titles.append("" if below or r * cols + c >= len(names) else names[r * cols + c])
    layout = grid_layout(cells, titles)
    corner, data = [], []
    for i, name in enumerate(names):
        k = 2 * cols * (i // cols) + i % cols  # the diagram's cell; the histogram beneath it is `cols` cells on
        x, y, kx, ky = axis_names(k)
        xb, yb, kxb, kyb = axis_names(k + cols)
        layout[kx].update(range=[0, 1], showticklabels=False)
        layout[ky]["range"] = [0, 1.02]
        layout[kxb].update(range=[0, 1], title={"text": "confidence", "standoff": 4})
        layout[kyb]["rangemode"] = "tozero"
        if i % cols == 0:
            layout[ky]["title"] = {"text": "accuracy"}
            layout[kyb]["title"] = {"text": "count"}
        note = (notes or {}).get(name)
        if note:
            corner.append({"text": note, "xref": f"{x} domain", "yref": f"{y} domain", "x": 0.02, "y": 0.98,
                           "showarrow": False, "align": "left", "xanchor": "left", "yanchor": "top",
                           "font": {"size": 10}, "bgcolor": "rgba(255,255,255,0.85)"})
        upper, lower = reliability_traces(panels[name])
        data += [{**tr, "legendgroup": tr.get("name"), "showlegend": i == 0, "xaxis": x, "yaxis": y} for tr in upper]
        data += [{**tr, "legendgroup": tr.get("name"), "showlegend": i == 0, "xaxis": xb, "yaxis": yb} for tr in lower]
    layout["annotations"] += corner
    layout.update(title={"text": title}, barmode="overlay", bargap=0,
                  height=int(panel_height * rows * (1 + 0.16 * (rows - 1) / rows)) + 90, font={"size": 11},
                  legend={"orientation": "h", "yanchor": "bottom", "y": 1.0 + 40 / (panel_height * rows),
                          "x": 0, "font": {"size": 11}},
                  margin={"l": 55, "r": 15, "t": 80, "b": 40})
    return build_figure({"data": data, "layout": layout})


def temperature_diagram_figure(at: AtTemperature, height: int = 460) -> go.Figure:
    """The manual-temperature view's reliability diagram of the evaluation split at the chosen T, with its NLL
    and ECE in the corner."""
    t = at.temperature
    note = f"T = {t:g} · NLL {at.nll:.4f} · ECE {at.ece:.4f}"
    return reliability_figure(at.bins, title=f"Evaluation split at T = {t:g}", note=note, height=height)


def methods_grid_figure(uncalibrated: ReliabilityBins, results: Mapping[str, MethodResult]) -> go.Figure:
    """The uncalibrated model's reliability diagram beside each fitted method's, each with its evaluation ECE
    and NLL; three panels a row for 3, 5, 6 or more than 8 panels, else up to four."""
    first = next(iter(results.values())).report
    labels = {"ece": "ECE", "nll": "NLL"}
    panels, notes = {"Uncalibrated": uncalibrated}, {"Uncalibrated": metric_note(first["before"], None, labels)}
    for res in results.values():
        panels[res.report["method_label"]] = res.bins
        notes[res.report["method_label"]] = metric_note(res.report["after"], None, labels)
    cols = 3 if len(panels) in (3, 5, 6) or len(panels) > 8 else min(4, len(panels))
    return reliability_grid_figure(panels, notes, cols=cols)

"""Figures of re-calibration: NLL (and ECE) against temperature with the optimum marked, the MTS
mask-ratio curve for several models, a before/after bar chart per method, the manual-temperature
teaching view and side-by-side reliability diagrams in one figure. Pure functions: plain data in,
plotly figure out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from calibviz.calibrators import MTSPoint
from calibviz.metrics import ReliabilityBins
from calibviz.plots.reliability import metric_note, reliability_figure
from calibviz.recalibration import AtTemperature, MethodResult, TemperatureCurve

PALETTE = qualitative.Plotly
METRIC_TITLES = {"ece": "ECE", "nll": "NLL", "brier": "Brier", "accuracy": "Accuracy", "auroc": "AUROC"}


def temperature_curve_figure(curve: TemperatureCurve, current: float | None = None,
                             show_ece: bool = True, title: str | None = None) -> go.Figure:
    """NLL against T (log axis) with the exact optimum marked; ECE on a second axis; an optional
    vertical line at the temperature the user has chosen (`current`)."""
    fig = make_subplots(specs=[[{"secondary_y": show_ece}]])
    fig.add_trace(go.Scatter(x=curve.temperatures, y=curve.nll, mode="lines", name="NLL",
                             line={"color": PALETTE[0], "width": 2},
                             hovertemplate="T=%{x:.4g}<br>NLL %{y:.5f}<extra></extra>"), secondary_y=False)
    if show_ece:
        fig.add_trace(go.Scatter(x=curve.temperatures, y=curve.ece, mode="lines",
                                 name=f"ECE ({curve.n_bins} bins)",
                                 line={"color": PALETTE[1], "width": 2, "dash": "dot"},
                                 hovertemplate="T=%{x:.4g}<br>ECE %{y:.4f}<extra></extra>"), secondary_y=True)
    fig.add_trace(go.Scatter(x=[curve.optimal_temperature], y=[curve.optimal_nll], mode="markers+text",
                             name=f"optimum T = {curve.optimal_temperature:.4g}",
                             marker={"color": PALETTE[0], "size": 11, "symbol": "star"},
                             text=[f"T* = {curve.optimal_temperature:.4g}"], textposition="top center",
                             hovertemplate="T*=%{x:.6g}<br>NLL %{y:.6f}<extra></extra>"), secondary_y=False)
    if current is not None:
        fig.add_vline(x=float(current), line={"color": "gray", "dash": "dash"},
                      annotation_text=f"T = {float(current):.3g}", annotation_position="top left")
    fig.add_vline(x=1.0, line={"color": "lightgray", "width": 1})
    fig.update_xaxes(type="log", title_text="temperature T (log scale)")
    fig.update_yaxes(title_text="NLL (fit data)", secondary_y=False)
    if show_ece:
        fig.update_yaxes(title_text="ECE", secondary_y=True, rangemode="tozero")
    fig.update_layout(title=title or "Log-loss against temperature", hovermode="x unified",
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 50, "b": 10})
    return fig


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
    fig = go.Figure()
    for i, (name, points) in enumerate(curves.items()):
        pts = sorted(points, key=lambda p: p.ratio)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=[p.ratio for p in pts], y=[getattr(p, metric) for p in pts], mode="lines+markers", name=name,
            line={"color": color, "width": 2}, customdata=[[p.temperature] for p in pts],
            marker={"symbol": ["square" if p.ratio == 0 else "circle" for p in pts], "size": 8},
            hovertemplate=(f"{name}<br>r=%{{x:.2f}}<br>{METRIC_TITLES[metric]} %{{y:.4f}}"
                           "<br>T=%{customdata[0]:.3f}<extra></extra>")))
    default_title = f"Masked temperature scaling: mask ratio r against {METRIC_TITLES[metric]}"
    fig.update_layout(title=default_title if title is None else (title or None), template="plotly_white",
                      height=height, xaxis_title="mask ratio r (r = 0: plain temperature scaling)",
                      yaxis_title=f"{METRIC_TITLES[metric]} on the evaluation split (inputs never masked)",
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 50, "b": 10})
    fig.update_yaxes(rangemode="tozero")
    ys = [getattr(p, metric) for pts in curves.values() for p in pts]
    if log_y is None:
        log_y = bool(ys) and min(ys) > 0 and max(ys) / min(ys) > LOG_SPREAD
    if log_y:
        ticks = [m * 10.0 ** e for e in range(-4, 2) for m in (1, 2, 5)]
        fig.update_yaxes(type="log", title_text=f"{METRIC_TITLES[metric]} on the evaluation split (log scale)",
                         tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], minor={"showgrid": False})
    return fig


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
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics])
    first = next(iter(reports.values()))
    for j, m in enumerate(metrics, start=1):
        xs = ["uncalibrated", *names]
        ys = [first["before"].get(m)] + [reports[n]["after"].get(m) for n in names]
        ivs = [first["before"].get("intervals", {}).get(m)] + [
            reports[n]["after"].get("intervals", {}).get(m) for n in names]
        plus = [_err(y, iv, 1) for iv, y in zip(ivs, ys, strict=True)]
        minus = [_err(y, iv, 0) for iv, y in zip(ivs, ys, strict=True)]
        colors = ["lightgray", *[PALETTE[i % len(PALETTE)] for i in range(len(names))]]
        fig.add_trace(go.Bar(x=xs, y=ys, marker_color=colors, name=METRIC_TITLES.get(m, m), showlegend=False,
                             error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                             hovertemplate=f"%{{x}}<br>{METRIC_TITLES.get(m, m)} %{{y:.4f}}<extra></extra>"),
                      row=1, col=j)
    fig.update_layout(title=title or "Evaluation split: uncalibrated and each method", bargap=0.25,
                      template="plotly_white", height=height, margin={"t": 60, "b": 10})
    fig.update_xaxes(tickangle=0)
    return fig


def temperature_teaching_figure(fit_curve: TemperatureCurve, eval_curve: TemperatureCurve, current: float,
                                title: str | None = None) -> go.Figure:
    """The manual-temperature view: NLL against T on the fit split (its minimum, marked with a star,
    is the fitted temperature T*) and on the evaluation split, evaluation ECE on a second axis, and
    the chosen T as a vertical line with its evaluation NLL and ECE marked."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=fit_curve.temperatures, y=fit_curve.nll, mode="lines", name="NLL, fit split",
                             line={"color": PALETTE[0], "width": 2},
                             hovertemplate="NLL (fit) %{y:.4f}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=eval_curve.temperatures, y=eval_curve.nll, mode="lines",
                             name="NLL, evaluation split", line={"color": PALETTE[2], "width": 2, "dash": "dash"},
                             hovertemplate="NLL (eval) %{y:.4f}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=eval_curve.temperatures, y=eval_curve.ece, mode="lines",
                             name=f"ECE, evaluation split ({eval_curve.n_bins} bins)",
                             line={"color": PALETTE[1], "width": 2, "dash": "dot"},
                             hovertemplate="ECE (eval) %{y:.4f}<extra></extra>"), secondary_y=True)
    t_star = fit_curve.optimal_temperature
    fig.add_trace(go.Scatter(x=[t_star], y=[fit_curve.optimal_nll], mode="markers", name=f"fitted T* = {t_star:.4g}",
                             marker={"color": PALETTE[0], "size": 14, "symbol": "star",
                                     "line": {"color": "white", "width": 1}},
                             hovertemplate="fitted T* = %{x:.5g}<br>NLL (fit) %{y:.5f}<extra></extra>"),
                  secondary_y=False)
    cur_nll = float(np.interp(math.log(current), np.log(eval_curve.temperatures), eval_curve.nll))
    cur_ece = float(np.interp(math.log(current), np.log(eval_curve.temperatures), eval_curve.ece))
    fig.add_trace(go.Scatter(x=[current], y=[cur_nll], mode="markers", name="chosen T: NLL (eval)",
                             marker={"color": PALETTE[2], "size": 10, "line": {"color": "black", "width": 1}},
                             showlegend=False, hovertemplate="chosen T<br>NLL (eval) %{y:.4f}<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=[current], y=[cur_ece], mode="markers", name="chosen T: ECE (eval)",
                             marker={"color": PALETTE[1], "size": 10, "line": {"color": "black", "width": 1}},
                             showlegend=False, hovertemplate="chosen T<br>ECE (eval) %{y:.4f}<extra></extra>"),
                  secondary_y=True)
    fig.add_vline(x=1.0, line={"color": "lightgray", "width": 1})
    fig.add_vline(x=float(current), line={"color": "black", "dash": "dash", "width": 1.5})
    fig.add_annotation(x=math.log10(current), y=1.0, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                       text=f"chosen T = {current:.4g}", font={"size": 11})
    ts = [float(fit_curve.temperatures[0]), float(fit_curve.temperatures[-1]), t_star, float(current)]
    fig.update_xaxes(type="log", range=[math.log10(min(ts)) - 0.03, math.log10(max(ts)) + 0.03],
                     title_text="temperature T (log scale; T > 1 softens, T < 1 sharpens)")
    fig.update_yaxes(title_text="NLL (lower is better)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="ECE", secondary_y=True, rangemode="tozero", showgrid=False, tickmode="auto",
                     nticks=6, tickformat=".2f")
    fig.update_layout(title=title or "Log-loss and ECE against temperature", hovermode="x unified",
                      template="plotly_white", legend={"orientation": "h", "y": -0.22, "x": 0},
                      margin={"l": 60, "r": 60, "t": 60, "b": 10}, height=460)
    return fig


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
    titles = []
    specs: list[list[dict | None]] = []
    for r in range(rows):
        titles += [names[r * cols + c] if r * cols + c < len(names) else "" for c in range(cols)]
        titles += [""] * cols
        specs += [[{}] * cols, [{}] * cols]
        if r < rows - 1:  # an empty spacer row between rows of panels, for the titles and the axis labels
            specs.append([None] * cols)
    heights = ([0.62, 0.22, 0.16] * rows)[:3 * rows - 1]
    fig = make_subplots(rows=len(specs), cols=cols, specs=specs, row_heights=heights, subplot_titles=titles,
                        horizontal_spacing=0.06, vertical_spacing=0.025 / rows)
    for i, name in enumerate(names):
        r, c = 3 * (i // cols) + 1, i % cols + 1
        single = reliability_figure(panels[name])
        for tr in single.data:
            below = tr.yaxis == "y2"
            tr.update(legendgroup=tr.name, showlegend=i == 0)
            fig.add_trace(tr, row=r + 1 if below else r, col=c)
        fig.update_xaxes(range=[0, 1], showticklabels=False, row=r, col=c)
        fig.update_xaxes(range=[0, 1], title_text="confidence", title_standoff=4, row=r + 1, col=c)
        fig.update_yaxes(range=[0, 1.02], title_text="accuracy" if c == 1 else None, row=r, col=c)
        fig.update_yaxes(rangemode="tozero", title_text="count" if c == 1 else None, row=r + 1, col=c)
        note = (notes or {}).get(name)
        if note:
            fig.add_annotation(text=note, xref="x domain", yref="y domain", x=0.02, y=0.98, showarrow=False,
                               align="left", xanchor="left", yanchor="top", font={"size": 10},
                               bgcolor="rgba(255,255,255,0.85)", row=r, col=c)
    fig.update_layout(title=title, barmode="overlay", bargap=0, template="plotly_white",
                      height=int(panel_height * rows * (1 + 0.16 * (rows - 1) / rows)) + 90, font={"size": 11},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0 + 40 / (panel_height * rows),
                              "x": 0, "font": {"size": 11}},
                      margin={"l": 55, "r": 15, "t": 80, "b": 40})
    return fig


def temperature_diagram_figure(at: AtTemperature, height: int = 460) -> go.Figure:
    """The manual-temperature view's reliability diagram of the evaluation split at the chosen T, with its NLL
    and ECE in the corner."""
    t = at.temperature
    note = f"T = {t:g} · NLL {at.nll:.4f} · ECE {at.ece:.4f}"
    fig = reliability_figure(at.bins, title=f"Evaluation split at T = {t:g}", note=note)
    fig.update_layout(height=height)
    return fig


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

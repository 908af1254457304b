"""Figures of re-calibration: NLL (and ECE) against temperature with the optimum marked, the MTS
mask-ratio curve for several models, and a before/after bar chart per method. Pure functions:
plain data in, plotly figure out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from calibviz.calibrators import MTSPoint
from calibviz.recalibration import TemperatureCurve

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


def mts_curve_figure(curves: Mapping[str, Sequence[MTSPoint]], metric: str = "ece",
                     title: str | None = None) -> go.Figure:
    """The MTS curve (mask ratio r against evaluation-split ECE or NLL) of several models; r = 0 is
    plain temperature scaling and is marked with a square. Hover shows the fitted T."""
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
    fig.update_layout(title=title or default_title,
                      xaxis_title="mask ratio r (r = 0: plain temperature scaling)",
                      yaxis_title=f"{METRIC_TITLES[metric]} on the evaluation split (inputs never masked)",
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 50, "b": 10})
    fig.update_yaxes(rangemode="tozero")
    return fig


def _err(y: float | None, interval: Sequence[float | None] | None, side: int) -> float:
    """Length of the error bar from y to one end of its interval (0 where unknown)."""
    if y is None or not interval or interval[side] is None:
        return 0.0
    return float(interval[1] - y) if side == 1 else float(y - interval[0])


def method_comparison_figure(reports: Mapping[str, Mapping[str, Any]],
                             metrics: Sequence[str] = ("ece", "nll"), title: str | None = None) -> go.Figure:
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
                      margin={"t": 60, "b": 10})
    return fig

"""Reliability figures: pure functions from calibviz.metrics results to plotly figures.

- `reliability_figure`: outputs (accuracy per bin, with its 95% interval) and gaps against the
  diagonal, and the confidence histogram beneath on a shared x axis;
- `classwise_figure`: the same for one class (predicted probability of k against how often it is k);
- `smooth_figure`: the kernel-smoothed reliability curve with its bootstrap band, density beneath;
- `risk_coverage_figure`: selective risk against coverage.

Several models side by side are several figures (one per model), so each keeps its own histogram.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from calibviz.metrics import ClasswiseCalibration, ReliabilityBins, RiskCoverage, SmoothCalibration
from calibviz.plots.figure import build_figure
from calibviz.report import interval_text

OUTPUT_COLOR = "#1f77b4"
GAP_COLOR = "rgba(214, 39, 40, 0.45)"
GAP_LINE = "#d62728"
COUNT_COLOR = "#7f7f7f"
DIAGONAL = {"color": "#555555", "dash": "dash", "width": 1.5}
_MIN_BAR = 0.008      # narrowest bar drawn (equal-mass bins of tied confidences have zero width)


def metric_note(values: Mapping[str, float | None], intervals: Mapping[str, Sequence[float | None]] | None,
                labels: Mapping[str, str]) -> str:
    """One line such as 'ECE 0.055 [0.051, 0.059] · MCE 0.30 [...]' for the keys in `labels`."""
    parts = []
    for key, label in labels.items():
        v = values.get(key)
        if v is None:
            continue
        parts.append(f"{label} {interval_text(v, (intervals or {}).get(key), space=' ')}")
    return " · ".join(parts)


def _bar_geometry(bins: ReliabilityBins) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bar centres, widths and the (lo, hi) limits shown in hover text."""
    e = np.asarray(bins.edges, dtype=np.float64)
    lo, hi = e[:-1], e[1:]
    width = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
    centre = (lo + hi) / 2
    narrow = width < _MIN_BAR
    centre = np.where(narrow & np.isfinite(bins.confidence), bins.confidence, centre)
    width = np.maximum(width, _MIN_BAR) * 0.96
    return centre, width, lo, hi


# The two panels of a reliability-type figure (the diagram over its histogram, sharing x), as make_subplots(rows=2,
# cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.04) lays them out, in one dict
# (`build_figure`: validated once).
_TOP, _BOTTOM = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x2", "yaxis": "y2"}


def _two_panels(top: list[dict], bottom: list[dict], title: str | None, x_title: str, y_title: str,
                y2_title: str, note: str, height: int | None = None) -> go.Figure:
    """One figure from the traces of the upper and lower panels, the axes' titles and the corner note."""
    layout = {"height": height,
        "title": {"text": title, "x": 0.01, "y": 0.98, "yanchor": "top"}, "barmode": "overlay", "bargap": 0,
        "hovermode": "closest",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0, "font": {"size": 11}},
        "margin": {"l": 60, "r": 20, "t": 110, "b": 50},
        "xaxis": {"anchor": "y", "domain": [0.0, 1.0], "matches": "x2", "showticklabels": False, "range": [0, 1]},
        "yaxis": {"anchor": "x", "domain": [0.28, 1.0], "range": [0, 1.02], "title": {"text": y_title}},
        "xaxis2": {"anchor": "y2", "domain": [0.0, 1.0], "range": [0, 1], "title": {"text": x_title}},
        "yaxis2": {"anchor": "x2", "domain": [0.0, 0.24], "rangemode": "tozero", "title": {"text": y2_title}},
        "annotations": [{"text": note, "xref": "x domain", "yref": "y domain", "x": 0.02, "y": 0.98,
                         "showarrow": False, "align": "left", "xanchor": "left", "yanchor": "top",
                         "font": {"size": 11}, "bgcolor": "rgba(255,255,255,0.8)"}]}
    return build_figure({"data": [{**t, **_TOP} for t in top] + [{**t, **_BOTTOM} for t in bottom], "layout": layout})


def reliability_figure(bins: ReliabilityBins, title: str | None = None, note: str | None = None,
                       x_title: str = "Confidence (predicted probability of the top class)",
                       y_title: str = "Accuracy in bin",
                       output_name: str = "Output: accuracy in bin (95% interval)",
                       gap_name: str = "Gap: mean confidence − accuracy", height: int | None = None) -> go.Figure:
    """Reliability diagram: per-bin accuracy (the outputs, with 95% Wilson intervals) and the gap to
    the mean confidence, against the diagonal; the count of predictions per bin beneath.

    Equal-width bins are drawn as bars over each bin. Equal-mass bins (often many narrow bins near
    1) are drawn as points at each bin's mean confidence, the gap as a segment to the diagonal.
    """
    top, bottom = reliability_traces(bins, output_name, gap_name)
    return _two_panels(top, bottom, title, x_title, y_title, "Count",
                       bins.convention if note is None else f"{note}<br>{bins.convention}", height)


def reliability_traces(bins: ReliabilityBins, output_name: str = "Output: accuracy in bin (95% interval)",
                       gap_name: str = "Gap: mean confidence − accuracy") -> tuple[list[dict], list[dict]]:
    """The trace dicts of `reliability_figure`'s upper panel (diagonal, outputs, gaps) and lower panel (counts),
    without their axes: for figures that place several diagrams on one grid."""
    centre, width, lo, hi = _bar_geometry(bins)
    acc = bins.accuracy.astype(np.float64)
    conf = bins.confidence.astype(np.float64)
    gap = conf - acc
    count = bins.count
    hover = [
        (f"bin ({a:.4f}, {b:.4f}]<br>n = {n:,}<br>accuracy = {ac:.3f}<br>mean confidence = {c:.3f}"
         f"<br>gap = {g:+.3f} ({'over' if g > 0 else 'under'}-confident)")
        if n else f"bin ({a:.4f}, {b:.4f}]<br>empty"
        for a, b, n, ac, c, g in zip(lo, hi, count, acc, conf, gap, strict=True)]
    top: list[dict] = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "line": DIAGONAL,
                        "name": "Perfect calibration", "hoverinfo": "skip"}]
    err = None
    if bins.accuracy_low is not None and bins.accuracy_high is not None:
        err = {"type": "data", "symmetric": False, "array": np.nan_to_num(bins.accuracy_high - acc),
               "arrayminus": np.nan_to_num(acc - bins.accuracy_low), "color": "#0b3d66", "thickness": 1.2,
               "width": 3}
    if bins.scheme == "mass":
        seg_x = np.repeat(conf, 3)
        seg_y = np.column_stack([acc, conf, np.full_like(acc, np.nan)]).ravel()
        top += [{"type": "scatter", "x": seg_x, "y": seg_y, "mode": "lines", "line": {"color": GAP_LINE, "width": 3},
                 "name": gap_name, "hoverinfo": "skip"},
                {"type": "scatter", "x": conf, "y": acc, "mode": "markers+lines", "name": output_name,
                 "error_y": err, "marker": {"color": OUTPUT_COLOR, "size": 8},
                 "line": {"color": OUTPUT_COLOR, "width": 1}, "hovertext": hover, "hoverinfo": "text"}]
    else:
        top += [{"type": "bar", "x": centre, "y": acc, "width": width, "name": output_name,
                 "marker": {"color": OUTPUT_COLOR, "line": {"width": 0}}, "error_y": err,
                 "hovertext": hover, "hoverinfo": "text"},
                {"type": "bar", "x": centre, "y": gap, "base": acc, "width": width, "name": gap_name,
                 "marker": {"color": GAP_COLOR, "line": {"color": GAP_LINE, "width": 1},
                            "pattern": {"shape": "/", "fgcolor": GAP_LINE, "size": 6}},
                 "hovertext": hover, "hoverinfo": "text"}]
    bottom = [{"type": "bar", "x": centre, "y": count, "width": width, "name": "Predictions per bin",
               "marker": {"color": COUNT_COLOR}, "hovertext": hover, "hoverinfo": "text"}]
    return top, bottom


def classwise_figure(cw: ClasswiseCalibration, k: int, class_name: str | None = None,
                     title: str | None = None, note: str | None = None) -> go.Figure:
    """Reliability diagram of one class: bins of p_k against the share of rows whose label is k."""
    name = class_name if class_name is not None else str(k)
    ece_k = f"classwise ECE of this class {cw.ece_per_class[k]:.4f}"
    return reliability_figure(cw.for_class(k), title=title or f"Class '{name}'",
                              note=ece_k if note is None else f"{note} · {ece_k}",
                              x_title=f"Predicted probability of class '{name}'",
                              y_title=f"Share of rows that are '{name}'",
                              output_name=f"Output: share of rows that are '{name}' (95% interval)",
                              gap_name="Gap: mean predicted probability − share")


def smooth_figure(sc: SmoothCalibration, title: str | None = None, note: str | None = None) -> go.Figure:
    """Smoothed reliability curve (kernel width sigma = smooth ECE) with its bootstrap band against
    the diagonal; the kernel density of the confidences beneath."""
    t = sc.t.astype(np.float64)
    top: list[dict] = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "line": DIAGONAL,
                        "name": "Perfect calibration", "hoverinfo": "skip"}]
    if sc.low is not None and sc.high is not None:
        ok = np.isfinite(sc.low) & np.isfinite(sc.high)
        top.append({"type": "scatter", "x": np.concatenate([t[ok], t[ok][::-1]]),
                    "y": np.concatenate([sc.high[ok], sc.low[ok][::-1]]), "fill": "toself",
                    "fillcolor": "rgba(31, 119, 180, 0.2)", "line": {"width": 0},
                    "name": "95% bootstrap band", "hoverinfo": "skip"})
    top.append({"type": "scatter", "x": t, "y": sc.accuracy, "mode": "lines",
                "line": {"color": OUTPUT_COLOR, "width": 2.5},
                "name": f"Smoothed accuracy (kernel width σ = {sc.sigma:.3f})",
                "hovertemplate": "confidence %{x:.3f}<br>smoothed accuracy %{y:.3f}<extra></extra>"})
    bottom = [{"type": "scatter", "x": t, "y": sc.density, "mode": "lines", "fill": "tozeroy",
               "line": {"color": COUNT_COLOR}, "name": "Density of confidences",
               "hovertemplate": "confidence %{x:.3f}<br>density %{y:.3g}<extra></extra>"}]
    text = f"smooth ECE {sc.smooth_ece:.4f} (kernel width σ = smooth ECE)"
    return _two_panels(top, bottom, title, "Confidence (predicted probability of the top class)",
                       "Smoothed accuracy", "Density", text if note is None else f"{note}<br>{text}")


def risk_coverage_figure(rc: RiskCoverage, title: str | None = None, max_points: int = 2000) -> go.Figure:
    """Error rate among the most confident predictions against the share of predictions kept."""
    n = rc.coverage.size
    keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(np.int64)) if n else []
    fig = go.Figure(go.Scatter(
        x=rc.coverage[keep], y=rc.risk[keep], mode="lines", line={"color": OUTPUT_COLOR, "width": 2},
        name=f"Risk (AURC {rc.aurc:.4f})", customdata=rc.threshold[keep],
        hovertemplate="keep %{x:.1%} most confident<br>error rate %{y:.3f}<br>"
                      "confidence ≥ %{customdata:.4f}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", xaxis_title="Coverage (share of predictions kept)",
                      yaxis_title="Risk (error rate among kept)", margin={"l": 60, "r": 20, "t": 60, "b": 50})
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(rangemode="tozero")
    return fig


def _wrap(text: str, width: int) -> str:
    """Plotly text with its ' · '-separated parts and long lines broken to at most about `width` characters."""
    import textwrap

    lines = [p for line in text.split("<br>") for p in line.split(" · ")]
    return "<br>".join(w for line in lines for w in (textwrap.wrap(line, width) or [""]))


def _lower_values(fig: go.Figure) -> np.ndarray:
    """The finite values drawn in the lower panel (counts per bin, or the density of confidences)."""
    parts = [np.asarray(t.y, dtype=np.float64) for t in fig.data if t.yaxis == "y2" and t.y is not None]
    v = np.concatenate(parts) if parts else np.zeros(0)
    return v[np.isfinite(v)]


def side_by_side(figs: Sequence[go.Figure], log_counts: bool = False, height: int = 620) -> list[go.Figure]:
    """Reliability-type figures (one per model) laid out for columns side by side: new figures, the inputs stay.

    Every column gets the same height and margins, so the panels line up, and the count panels share one range,
    so they compare at a glance (densities keep their own: one model's can be twenty times another's). The legend
    sits at the top, the note (metrics, convention) just above the plot, where it hides no bar, wrapped to the
    column width like the x title. From three columns on, type is smaller and only the first column keeps the
    legend (the traces are the same in every column). With `log_counts` the count axes are logarithmic where the
    counts span more than a factor of 20, so bins of a handful of predictions stay visible beside a bin of
    thousands (equal-mass counts are all alike and stay linear). Edited as dicts and built once (`build_figure`):
    plotly's update_layout on the figures cost more than drawing them.
    """
    n = len(figs)
    narrow = n >= 3
    size = 10 if narrow else 11
    chars = 70 if n <= 2 else (34 if n == 3 else 28)
    lower = [_lower_values(f) for f in figs]
    top = max((float(v.max()) for v in lower if v.size), default=0.0)
    positive = np.concatenate([v[v > 0] for v in lower] or [np.zeros(0)])
    bars = all(any(t.type == "bar" and t.yaxis == "y2" for t in f.data) for f in figs)
    log = log_counts and bars and positive.size > 0 and positive.max() > 20 * positive.min()
    out = []
    for i, spec in enumerate(f.to_plotly_json() for f in figs):
        lay = {k: v for k, v in spec["layout"].items() if k != "template"}
        lay.update(height=height, font={"size": size}, showlegend=not narrow or i == 0,
                   margin={"l": 55, "r": 15, "t": 185, "b": 70},
                   legend={"font": {"size": size}, "orientation": "v", "yref": "container",
                           "y": 1 - 32 / height, "yanchor": "top", "x": 0},
                   annotations=[{**a, "text": _wrap(a["text"], chars), "font": {"size": size}, "y": 1.02,
                                 "yanchor": "bottom", "bgcolor": "rgba(0,0,0,0)"} for a in lay.get("annotations", [])])
        x2, y2 = dict(lay.get("xaxis2", {})), dict(lay.get("yaxis2", {}))
        if x2.get("title", {}).get("text"):
            x2["title"] = {**x2["title"], "text": _wrap(x2["title"]["text"], chars)}
        if log:
            y2.update(type="log", title={"text": "Count (log)"}, dtick=1,
                      range=[np.log10(0.7), np.log10(top * 1.6)])
        elif bars and top > 0:
            y2["range"] = [0, top * 1.05]
        lay.update(xaxis2=x2, yaxis2=y2)
        out.append(build_figure({"data": spec["data"], "layout": lay}))
    return out

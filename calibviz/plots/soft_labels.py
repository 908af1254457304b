"""Figures of the Soft-labels page: order violations of teachers' soft labels on mixed samples."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibviz.soft_labels import GalleryItem, OrderViolations

METRIC_TITLES = {
    "violation_rate": "share of samples with any violation",
    "pair_violation_rate": "share of known pairs violated",
    "kendall_tau": "mean Kendall τ over known pairs",
    "parent_in_top2": "share with a or b in the top-2",
    "parents_are_top2": "share with {a, b} = the top-2",
    "correction_kl": "mean KL(p ‖ p′) of the fix",
}


def _metric_title(metric: str) -> str:
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric {metric!r} is unknown; known: {list(METRIC_TITLES)}")
    return METRIC_TITLES[metric]


def violations_vs_lambda(results: Mapping[str, OrderViolations], metric: str = "violation_rate") -> go.Figure:
    """One line per teacher: a statistic per λ bin (λ ≥ ½ is the larger parent's weight); empty bins
    are gaps, and the hover gives each bin's sample count."""
    title = _metric_title(metric)
    fig = go.Figure()
    for name, res in results.items():
        y = np.asarray(getattr(res.by_lambda, metric), dtype=float)
        count = res.by_lambda.count
        fig.add_trace(go.Scatter(
            x=res.lambda_centers, y=y, mode="lines+markers", name=name, customdata=count,
            hovertemplate=f"{name}<br>λ ≈ %{{x:.3f}}<br>{title} = %{{y:.3f}}<br>n = %{{customdata}}"
                          "<extra></extra>"))
    fig.update_xaxes(title_text="λ (weight of the larger parent a)", range=[0.5, 1.0])
    y_range = [-1.0, 1.0] if metric == "kendall_tau" else None
    if metric not in ("kendall_tau", "correction_kl"):
        y_range = [0.0, 1.0]
    fig.update_yaxes(title_text=title, range=y_range)
    fig.update_layout(height=380, margin={"t": 30, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": 1.08})
    return fig


def class_pair_heatmap(result: OrderViolations, class_names: list[str] | tuple[str, ...] | None = None,
                       metric: str = "violation_rate", title: str | None = None) -> go.Figure:
    """A C×C heatmap of one teacher's statistic per class pair: rows a (larger-weight parent), columns b;
    the diagonal holds same-class pairs (order a ≥ every other). Empty pairs are blank; hover gives n."""
    z = np.asarray(getattr(result.by_pair, metric), dtype=float)
    c = z.shape[0]
    names = [str(x) for x in (class_names or range(c))]
    count = result.by_pair.count
    text = np.where(count > 0, np.char.mod("%.2f", np.nan_to_num(z)), "")
    zmin, zmax = (-1.0, 1.0) if metric == "kendall_tau" else (0.0, 1.0)
    if metric == "correction_kl":
        zmin, zmax = 0.0, float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, customdata=count, text=text, texttemplate="%{text}",
        colorscale="Reds" if metric != "kendall_tau" else "RdBu", zmin=zmin, zmax=zmax,
        colorbar={"title": {"text": metric.replace("_", " ")}},
        hovertemplate="a = %{y}, b = %{x}<br>" + _metric_title(metric)
                      + " = %{z:.3f}<br>n = %{customdata}<extra></extra>"))
    fig.update_xaxes(title_text="b (smaller-weight parent)", type="category")
    fig.update_yaxes(title_text="a (larger-weight parent)", type="category", autorange="reversed")
    fig.update_layout(height=440, margin={"t": 40 if title else 10, "b": 10, "l": 10, "r": 10},
                      title={"text": title} if title else None)
    return fig


def kendall_tau_distributions(results: Mapping[str, OrderViolations], max_values: int = 60,
                              n_bins: int = 40) -> go.Figure:
    """Per-sample Kendall τ over the known pairs, as the share of samples at each τ, one bar group per
    teacher (τ = 1: the soft label respects a ≥ b ≥ others completely). τ takes few distinct values
    when C is small; above `max_values` distinct values it is binned into `n_bins` bins on [−1, 1]."""
    taus = {name: np.round(res.per_sample.kendall_tau, 9) for name, res in results.items()}
    values = np.unique(np.concatenate(list(taus.values()))) if taus else np.array([])
    binned = len(values) > max_values
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    fig = go.Figure()
    for name, tau in taus.items():
        if binned:
            hist, _ = np.histogram(tau, bins=edges)
            x = 0.5 * (edges[1:] + edges[:-1])
        else:
            hist = np.array([np.count_nonzero(tau == v) for v in values])
            x = values
        fig.add_trace(go.Bar(x=x, y=hist / max(len(tau), 1), name=name,
                             hovertemplate=f"{name}<br>τ ≈ %{{x:.3f}}<br>share = %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.15, height=340, margin={"t": 30, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": 1.1})
    fig.update_xaxes(title_text="Kendall τ over known pairs (per mixed sample)", range=[-1.05, 1.05])
    fig.update_yaxes(title_text="share of samples")
    return fig


def _input_traces(fig: go.Figure, item: GalleryItem) -> None:
    """The mixed input and both parents: three heatmaps for images, overlaid lines for signals."""
    parts = [("mixed", item.x), (f"a = {item.class_names[item.label_a]}", item.x_a),
             (f"b = {item.class_names[item.label_b]}", item.x_b)]
    if item.input_kind == "image":
        for col, (name, img) in enumerate(parts, start=1):
            fig.add_trace(go.Heatmap(z=np.asarray(img, dtype=float).reshape(img.shape[-2:]),
                                     colorscale="Greys", reversescale=False, showscale=False, zmin=0,
                                     zmax=1, name=name, hovertemplate=f"{name}<br>%{{z:.2f}}<extra></extra>"),
                          row=1, col=col)
            fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor=f"x{col}",
                             row=1, col=col)
            fig.update_xaxes(showticklabels=False, row=1, col=col)
    else:
        styles = [("solid", 3), ("dash", 1.5), ("dot", 1.5)]
        for (name, sig), (dash, width) in zip(parts, styles, strict=True):
            s = np.asarray(sig, dtype=float).ravel()
            fig.add_trace(go.Scatter(x=np.arange(len(s)), y=s, mode="lines", name=name,
                                     line={"dash": dash, "width": width}), row=1, col=1)


def gallery_item_figure(item: GalleryItem) -> go.Figure:
    """One mixed sample: the input with its two parents and λ, and bars of the teacher's soft label at T
    before and after the tree isotonic fix (a and b marked on the axis)."""
    image = item.input_kind == "image"
    specs = ([[{}, {}, {}], [{"colspan": 3}, None, None]] if image
             else [[{"colspan": 3}, None, None], [{"colspan": 3}, None, None]])
    titles = (["mixed input", f"parent a: {item.class_names[item.label_a]}",
               f"parent b: {item.class_names[item.label_b]}"] if image else ["mixed input and parents"])
    fig = make_subplots(rows=2, cols=3, specs=specs, row_heights=[0.5, 0.5], vertical_spacing=0.14,
                        subplot_titles=[*titles, f"soft label at T = {item.temperature:g}"])
    _input_traces(fig, item)
    labels = [f"{n}{' (a)' if i == item.label_a else ''}{' (b)' if i == item.label_b else ''}"
              for i, n in enumerate(item.class_names)]
    fig.add_trace(go.Bar(x=labels, y=item.before, name="teacher", marker_color="#888",
                         hovertemplate="%{x}: %{y:.4f}<extra>teacher</extra>"), row=2, col=1)
    fig.add_trace(go.Bar(x=labels, y=item.after, name="isotonic fix", marker_color="#d62728",
                         hovertemplate="%{x}: %{y:.4f}<extra>isotonic fix</extra>"), row=2, col=1)
    fig.update_layout(
        barmode="group", height=520, margin={"t": 60, "b": 10, "l": 10, "r": 10},
        title={"text": f"sample {item.index}: λ = {item.lam:.3f}, Kendall τ = {item.kendall_tau:.2f}",
               "x": 0.0},
        legend={"orientation": "h", "y": -0.08})
    fig.update_xaxes(type="category", row=2, col=1)
    fig.update_yaxes(title_text="probability", row=2, col=1)
    return fig

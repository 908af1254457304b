"""Figures of the Soft-labels page: order violations of teachers' soft labels on mixed samples."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from calibviz.plots.figure import axis_names, build_figure, grid_domains, grid_layout
from calibviz.soft_labels import GalleryItem, OrderViolations

METRIC_TITLES = {
    "violation_rate": "share of samples with any violation",
    "pair_violation_rate": "share of known pairs violated",
    "kendall_tau": "mean Kendall τ over known pairs",
    "parent_in_top2": "share with a or b in the top-2",
    "parents_are_top2": "share with {a, b} = the top-2",
    "correction_kl": "mean KL(p ‖ p′) of the fix",
}


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """One figure from its traces and layout, validated once; these figures keep plotly's default template."""
    return build_figure({"data": data, "layout": layout}, template=pio.templates.default)


def _metric_title(metric: str) -> str:
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric {metric!r} is unknown; known: {list(METRIC_TITLES)}")
    return METRIC_TITLES[metric]


def violations_vs_lambda(results: Mapping[str, OrderViolations], metric: str = "violation_rate") -> go.Figure:
    """One line per teacher: a statistic per λ bin (λ ≥ ½ is the larger parent's weight); empty bins
    are gaps, and the hover gives each bin's sample count."""
    title = _metric_title(metric)
    data = [{"type": "scatter", "x": res.lambda_centers, "y": np.asarray(getattr(res.by_lambda, metric), dtype=float),
             "mode": "lines+markers", "name": name, "customdata": res.by_lambda.count,
             "hovertemplate": f"{name}<br>λ ≈ %{{x:.3f}}<br>{title} = %{{y:.3f}}<br>n = %{{customdata}}"
                              "<extra></extra>"}
            for name, res in results.items()]
    yaxis: dict = {"title": {"text": title}}
    if metric == "kendall_tau":
        yaxis["range"] = [-1.0, 1.0]
    elif metric != "correction_kl":
        yaxis["range"] = [0.0, 1.0]
    return _figure(data, {"xaxis": {"title": {"text": "λ (weight of the larger parent a)"}, "range": [0.5, 1.0]},
                          "yaxis": yaxis, "height": 380, "margin": {"t": 30, "b": 10, "l": 10, "r": 10},
                          "legend": {"orientation": "h", "y": 1.08}})


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
    trace = {"type": "heatmap", "z": z, "x": names, "y": names, "customdata": count, "text": text,
             "texttemplate": "%{text}", "colorscale": "Reds" if metric != "kendall_tau" else "RdBu",
             "zmin": zmin, "zmax": zmax, "colorbar": {"title": {"text": metric.replace("_", " ")}},
             "hovertemplate": "a = %{y}, b = %{x}<br>" + _metric_title(metric)
                              + " = %{z:.3f}<br>n = %{customdata}<extra></extra>"}
    layout = {"xaxis": {"title": {"text": "b (smaller-weight parent)"}, "type": "category"},
              "yaxis": {"title": {"text": "a (larger-weight parent)"}, "type": "category", "autorange": "reversed"},
              "height": 440, "margin": {"t": 40 if title else 10, "b": 10, "l": 10, "r": 10}}
    if title:
        layout["title"] = {"text": title}
    return _figure([trace], layout)


def kendall_tau_distributions(results: Mapping[str, OrderViolations], max_values: int = 60,
                              n_bins: int = 40) -> go.Figure:
    """Per-sample Kendall τ over the known pairs, as the share of samples at each τ, one bar group per
    teacher (τ = 1: the soft label respects a ≥ b ≥ others completely). τ takes few distinct values
    when C is small; above `max_values` distinct values it is binned into `n_bins` bins on [−1, 1]."""
    taus = {name: np.round(res.per_sample.kendall_tau, 9) for name, res in results.items()}
    values = np.unique(np.concatenate(list(taus.values()))) if taus else np.array([])
    binned = len(values) > max_values
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    data = []
    for name, tau in taus.items():
        if binned:
            hist, _ = np.histogram(tau, bins=edges)
            x = 0.5 * (edges[1:] + edges[:-1])
        else:
            hist = np.array([np.count_nonzero(tau == v) for v in values])
            x = values
        data.append({"type": "bar", "x": x, "y": hist / max(len(tau), 1), "name": name,
                     "hovertemplate": f"{name}<br>τ ≈ %{{x:.3f}}<br>share = %{{y:.3f}}<extra></extra>"})
    return _figure(data, {"barmode": "group", "bargap": 0.15, "height": 340,
                          "margin": {"t": 30, "b": 10, "l": 10, "r": 10}, "legend": {"orientation": "h", "y": 1.1},
                          "xaxis": {"title": {"text": "Kendall τ over known pairs (per mixed sample)"},
                                    "range": [-1.05, 1.05]},
                          "yaxis": {"title": {"text": "share of samples"}}})


def _input_traces(item: GalleryItem, layout: dict) -> list[dict]:
    """The mixed input and both parents: three heatmaps for images (their axes set in `layout`), overlaid lines
    for signals."""
    parts = [("mixed", item.x), (f"a = {item.class_names[item.label_a]}", item.x_a),
             (f"b = {item.class_names[item.label_b]}", item.x_b)]
    if item.input_kind == "image":
        data = []
        for i, (name, img) in enumerate(parts):
            x, y, kx, ky = axis_names(i)
            data.append({"type": "heatmap", "z": np.asarray(img, dtype=float).reshape(img.shape[-2:]),
                         "colorscale": "Greys", "reversescale": False, "showscale": False, "zmin": 0, "zmax": 1,
                         "name": name, "hovertemplate": f"{name}<br>%{{z:.2f}}<extra></extra>",
                         "xaxis": x, "yaxis": y})
            layout[ky].update(autorange="reversed", showticklabels=False, scaleanchor=f"x{i + 1}")  # "x1" is "x"
            layout[kx]["showticklabels"] = False
        return data
    styles = [("solid", 3), ("dash", 1.5), ("dot", 1.5)]
    signals = [np.asarray(sig, dtype=float).ravel() for _, sig in parts]
    return [{"type": "scatter", "x": np.arange(len(s)), "y": s, "mode": "lines", "name": name,
             "line": {"dash": dash, "width": width}, "xaxis": "x", "yaxis": "y"}
            for (name, _), s, (dash, width) in zip(parts, signals, styles, strict=True)]


def gallery_item_figure(item: GalleryItem) -> go.Figure:
    """One mixed sample: the input with its two parents and λ, and bars of the teacher's soft label at T
    before and after the tree isotonic fix (a and b marked on the axis)."""
    image = item.input_kind == "image"
    titles = (["mixed input", f"parent a: {item.class_names[item.label_a]}",
               f"parent b: {item.class_names[item.label_b]}"] if image else ["mixed input and parents"])
    # make_subplots(rows=2, cols=3, row_heights=[0.5, 0.5], vertical_spacing=0.14, subplot_titles=...) with specs
    # [[{}, {}, {}], [{"colspan": 3}, None, None]] (images) or both rows [{"colspan": 3}, None, None] (signals)
    xs, (top, bottom) = grid_domains(3, 0.2 / 3), grid_domains(2, 0.14, top_down=True)
    wide = [xs[0][0], xs[2][1]]
    cells = [(x, top) for x in xs] if image else [(wide, top)]
    layout = grid_layout([*cells, (wide, bottom)], [*titles, f"soft label at T = {item.temperature:g}"])
    x_low, y_low, kx_low, ky_low = axis_names(len(cells))
    data = _input_traces(item, layout)
    labels = [f"{n}{' (a)' if i == item.label_a else ''}{' (b)' if i == item.label_b else ''}"
              for i, n in enumerate(item.class_names)]
    data += [{"type": "bar", "x": labels, "y": item.before, "name": "teacher", "marker": {"color": "#888"},
              "hovertemplate": "%{x}: %{y:.4f}<extra>teacher</extra>", "xaxis": x_low, "yaxis": y_low},
             {"type": "bar", "x": labels, "y": item.after, "name": "isotonic fix", "marker": {"color": "#d62728"},
              "hovertemplate": "%{x}: %{y:.4f}<extra>isotonic fix</extra>", "xaxis": x_low, "yaxis": y_low}]
    layout[kx_low]["type"] = "category"
    layout[ky_low]["title"] = {"text": "probability"}
    layout.update(barmode="group", height=520, margin={"t": 60, "b": 10, "l": 10, "r": 10},
                  title={"text": f"sample {item.index}: λ = {item.lam:.3f}, Kendall τ = {item.kendall_tau:.2f}",
                         "x": 0.0},
                  legend={"orientation": "h", "y": -0.08})
    return _figure(data, layout)

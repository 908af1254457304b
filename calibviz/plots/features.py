"""Figures of penultimate features: PCA / UMAP scatter (WebGL, float32), the Müller template
projection with its triangle, a class-separation R² bar chart, a CKA heatmap, and a small gallery of
selected inputs (images or 1-D signals) for the points a user picks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from calibviz.features import TemplateProjection
from calibviz.predictions import Predictions

COLOR_BY = ("class", "correctness", "confidence")
PALETTE = qualitative.Plotly + qualitative.Dark24
_HOVER = ("id %{customdata[0]:d}<br>label %{customdata[1]:d}<br>pred %{customdata[2]:d}"
          "<br>confidence %{customdata[3]:.3f}<extra>%{fullData.name}</extra>")


def _class_name(names: Sequence[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def _title(text: str, size: int | None) -> str | dict:
    return text if size is None else {"text": text, "font": {"size": size}}


def embedding_figure(coords: np.ndarray, preds: Predictions, color_by: str = "class", title: str = "",
                     axis_titles: tuple[str, str] = ("dim 1", "dim 2"), marker_size: int = 4,
                     height: int | None = None, title_size: int | None = None) -> go.Figure:
    """Scatter of 2-D coordinates (PCA or UMAP) of the rows of `preds` (aligned to `coords`), drawn
    with scattergl and float32 arrays; coloured by class, correctness or confidence. Hover shows
    sample id, label, prediction and confidence; `selected_sample_ids` reads a selection back."""
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by {color_by!r} is unknown; known: {list(COLOR_BY)}")
    xy = np.asarray(coords, dtype=np.float32)
    if xy.ndim != 2 or xy.shape[1] < 2 or xy.shape[0] != preds.n:
        raise ValueError(f"coords must be ({preds.n}, >=2) aligned with the predictions, got {xy.shape}")
    probs = preds.probabilities()
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1).astype(np.float32)
    ids = preds.sample_id if preds.sample_id is not None else np.arange(preds.n)
    custom = np.stack([ids, preds.labels, pred, conf], axis=1).astype(np.float32)
    names = preds.class_names
    fig = go.Figure()

    def add(mask: np.ndarray, name: str, marker: dict) -> None:
        fig.add_trace(go.Scattergl(
            x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name, customdata=custom[mask],
            hovertemplate=_HOVER, marker={"size": marker_size, **marker}))

    if color_by == "class":
        for c in np.unique(preds.labels):
            add(preds.labels == c, _class_name(names, int(c)),
                {"color": PALETTE[int(c) % len(PALETTE)], "opacity": 0.75})
    elif color_by == "correctness":
        correct = pred == preds.labels
        add(correct, f"correct ({int(correct.sum())})", {"color": "#1f77b4", "opacity": 0.5})
        add(~correct, f"wrong ({int((~correct).sum())})", {"color": "#d62728", "opacity": 0.9})
    else:
        add(np.ones(preds.n, dtype=bool), "confidence",
            {"color": conf, "colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0, "opacity": 0.8,
             "colorbar": {"title": {"text": "confidence"}}})
    fig.update_layout(title=_title(title, title_size), xaxis_title=axis_titles[0], yaxis_title=axis_titles[1],
                      legend={"itemsizing": "constant"}, template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 50, "b": 45})
    if height is not None:
        fig.update_layout(height=height)
    return fig


def selected_sample_ids(event: object) -> list[float]:
    """Sample ids (customdata[0]) of the points selected on an `embedding_figure` chart (Streamlit's selection
    event). The browser sends a point's customdata as a list, or as {"0": id, "1": label, ...} when the figure
    carried a typed array."""
    points = event.get("selection", {}).get("points", []) if isinstance(event, dict) else []
    out = []
    for p in points:
        cd = p.get("customdata")
        first = cd[0] if isinstance(cd, (list, tuple)) and cd else cd.get("0") if isinstance(cd, dict) else None
        if isinstance(first, (int, float)):
            out.append(first)
    return out


def template_projection_figure(panels: Mapping[str, Mapping[str, TemplateProjection]],
                               class_names: Sequence[str] | None = None, marker_size: int = 4,
                               title: str = "", class_colored_templates: bool = False,
                               subplot_title_size: int | None = None, margin_top: int = 70) -> go.Figure:
    """Müller template projections, one column per model and one row per split (e.g. train and
    held-out): the examples of the three classes, and the triangle of their templates. With
    `class_colored_templates` each template's marker takes its class's colour instead of a text label
    (labels pile up where the triangle is small beside the clouds)."""
    models = list(panels)
    if not models:
        raise ValueError("template_projection_figure needs at least one model")
    splits: list[str] = []
    for m in models:
        splits += [s for s in panels[m] if s not in splits]
    fig = make_subplots(rows=len(splits), cols=len(models), horizontal_spacing=0.06,
                        vertical_spacing=0.1,
                        subplot_titles=[f"{m} · {s}" for s in splits for m in models])
    shown: set[int] = set()
    for r, split in enumerate(splits, start=1):
        for c, model in enumerate(models, start=1):
            proj = panels[model].get(split)
            if proj is None:
                continue
            names = class_names or [str(k) for k in range(max(proj.classes) + 1)]
            for cls in proj.classes:
                mask = proj.labels == cls
                ids = proj.sample_id[mask].astype(np.float32)
                fig.add_trace(go.Scattergl(
                    x=proj.coords[mask, 0], y=proj.coords[mask, 1], mode="markers",
                    name=_class_name(names, cls), legendgroup=str(cls), showlegend=cls not in shown,
                    marker={"size": marker_size, "color": PALETTE[cls % len(PALETTE)], "opacity": 0.6},
                    customdata=ids, hovertemplate="id %{customdata:d}<extra>%{fullData.name}</extra>"),
                    row=r, col=c)
                shown.add(cls)
            v = np.asarray(proj.vertices, dtype=np.float32)
            tri = np.concatenate([v, v[:1]])
            if class_colored_templates:
                marker = {"symbol": "x", "size": 11, "line": {"width": 1, "color": "black"},
                          "color": [PALETTE[k % len(PALETTE)] for k in (*proj.classes, proj.classes[0])]}
                text_kw: dict = {"mode": "lines+markers", "hovertext": [
                    f"template of {_class_name(names, k)}" for k in (*proj.classes, proj.classes[0])],
                    "hoverinfo": "text"}
            else:
                marker = {"symbol": "x", "size": 9, "color": "black"}
                text_kw = {"mode": "lines+markers+text", "textposition": "top center", "hoverinfo": "skip",
                           "text": [f"w{_class_name(names, k)}" for k in proj.classes] + [""]}
            fig.add_trace(go.Scatter(
                x=tri[:, 0], y=tri[:, 1], name="templates", legendgroup="templates",
                showlegend=(r, c) == (1, 1), line={"color": "black", "width": 1.5}, marker=marker, **text_kw),
                row=r, col=c)
            axis = (r - 1) * len(models) + c
            fig.update_yaxes(scaleanchor=f"x{'' if axis == 1 else axis}", scaleratio=1, row=r, col=c)
    fig.update_layout(title=title, template="plotly_white", height=360 * len(splits) + 80,
                      legend={"itemsizing": "constant"}, margin={"l": 40, "r": 20, "t": margin_top, "b": 40})
    if subplot_title_size is not None:
        fig.update_annotations(font_size=subplot_title_size)
    return fig


def separation_bar_figure(values: Mapping[str, Mapping[str, float]], title: str = "class separation R²",
                          height: int | None = None, margin_top: int = 50,
                          legend_on_top: bool = False) -> go.Figure:
    """Grouped bars of class separation R²: values[model][series] (series e.g. 'train', 'test'); with
    `legend_on_top` the series legend runs in a row above the bars."""
    models = list(values)
    series: list[str] = []
    for m in models:
        series += [s for s in values[m] if s not in series]
    fig = go.Figure()
    for i, s in enumerate(series):
        y = [values[m].get(s, np.nan) for m in models]
        fig.add_trace(go.Bar(x=models, y=y, name=s, marker_color=PALETTE[i % len(PALETTE)],
                             text=[f"{v:.3f}" for v in y], textposition="outside",
                             hovertemplate="%{x}: R² %{y:.4f}<extra>" + s + "</extra>"))
    top = np.nanmax([values[m].get(s, np.nan) for m in models for s in series] + [0.0])
    fig.update_layout(barmode="group", title=title, yaxis={"title": "R²", "range": [0, max(1.0, top) * 1.05]},
                      template="plotly_white", margin={"l": 50, "r": 20, "t": margin_top, "b": 45})
    if height is not None:
        fig.update_layout(height=height)
    if legend_on_top:
        fig.update_layout(legend={"orientation": "h", "y": 1.12})
    return fig


def cka_heatmap_figure(matrix: np.ndarray, names: Sequence[str], title: str = "linear CKA",
                       height: int | None = None, margin_top: int = 50) -> go.Figure:
    """Heatmap of a symmetric (M, M) CKA matrix on a fixed [0, 1] colour scale, values printed. Without a
    `height`, plotly's default; pages pass one that grows with the number of models."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (len(names), len(names)):
        raise ValueError(f"matrix must be ({len(names)}, {len(names)}), got {m.shape}")
    fig = go.Figure(go.Heatmap(z=m, x=list(names), y=list(names), zmin=0.0, zmax=1.0, colorscale="Blues",
                               texttemplate="%{z:.2f}", hovertemplate="%{y} vs %{x}: %{z:.4f}<extra></extra>",
                               colorbar={"title": {"text": "CKA"}}))
    fig.update_layout(title=title, template="plotly_white", yaxis={"autorange": "reversed", "showgrid": False},
                      xaxis={"scaleanchor": "y", "showgrid": False},
                      margin={"l": 60, "r": 20, "t": margin_top, "b": 60})
    if height is not None:
        fig.update_layout(height=height)
    return fig


def gallery_figure(x: np.ndarray, captions: Sequence[str], ncols: int = 8) -> go.Figure:
    """A small grid of inputs: images (n, 1, H, W) or (n, H, W) as grey heatmaps, colour images (n, 3, H, W) in
    [0, 1] as pictures, signals (n, L) as lines, each with its caption. For a handful of points selected on a
    scatter."""
    a = np.asarray(x, dtype=np.float32)
    n = a.shape[0]
    if n == 0:
        raise ValueError("gallery_figure needs at least one input")
    if len(captions) != n:
        raise ValueError(f"got {n} inputs but {len(captions)} captions")
    image = a.ndim >= 3
    rgb = a.ndim == 4 and a.shape[1] == 3
    if rgb:  # colour images (n, 3, H, W) in [0, 1]: drawn as they are
        a = (np.clip(a, 0.0, 1.0).transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    elif image:
        a = a.reshape(n, a.shape[-2], a.shape[-1])
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(captions),
                        horizontal_spacing=0.02, vertical_spacing=0.08 if rows > 1 else 0.02)
    for i in range(n):
        r, c = divmod(i, cols)
        if rgb:
            fig.add_trace(go.Image(z=a[i], hoverinfo="skip"), row=r + 1, col=c + 1)
        elif image:
            fig.add_trace(go.Heatmap(z=a[i][::-1], colorscale="Greys", showscale=False, hoverinfo="skip"),
                          row=r + 1, col=c + 1)  # rows flipped so the image's top row is drawn on top
            fig.update_xaxes(constrain="domain", row=r + 1, col=c + 1)
            fig.update_yaxes(scaleanchor=f"x{'' if i == 0 else i + 1}", scaleratio=1, constrain="domain",
                             row=r + 1, col=c + 1)
        else:
            fig.add_trace(go.Scatter(y=a[i].reshape(-1), mode="lines", line={"color": "black", "width": 1},
                                     showlegend=False, hoverinfo="skip"), row=r + 1, col=c + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=130 * rows + 40, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      template="plotly_white", showlegend=False)
    return fig

"""Figures of penultimate features: PCA / UMAP scatter (WebGL, float32), the Müller template
projection with its triangle, a class-separation R² bar chart, a CKA heatmap, and a small gallery of
selected inputs (images or 1-D signals) for the points a user picks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from calibviz.features import TemplateProjection
from calibviz.plots.figure import axis_names, build_figure, grid_cells, grid_layout
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
    data: list[dict] = []

    def add(mask: np.ndarray, name: str, marker: dict) -> None:
        data.append({"type": "scattergl", "x": xy[mask, 0], "y": xy[mask, 1], "mode": "markers", "name": name,
                     "customdata": custom[mask], "hovertemplate": _HOVER, "marker": {"size": marker_size, **marker}})

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
    layout = {"title": _title(title, title_size), "xaxis": {"title": {"text": axis_titles[0]}},
              "yaxis": {"title": {"text": axis_titles[1]}}, "legend": {"itemsizing": "constant"},
              "margin": {"l": 50, "r": 20, "t": 50, "b": 45}}
    if height is not None:
        layout["height"] = height
    return build_figure({"data": data, "layout": layout})


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
    layout = grid_layout(grid_cells(len(splits), len(models), 0.06, 0.1),
                         [f"{m} · {s}" for s in splits for m in models], subplot_title_size)
    data: list[dict] = []
    shown: set[int] = set()
    for r, split in enumerate(splits, start=1):
        for c, model in enumerate(models, start=1):
            proj = panels[model].get(split)
            if proj is None:
                continue
            x, y, _, ky = axis_names((r - 1) * len(models) + c - 1)
            names = class_names or [str(k) for k in range(max(proj.classes) + 1)]
            for cls in proj.classes:
                mask = proj.labels == cls
                ids = proj.sample_id[mask].astype(np.float32)
                data.append({
                    "type": "scattergl", "x": proj.coords[mask, 0], "y": proj.coords[mask, 1], "mode": "markers",
                    "name": _class_name(names, cls), "legendgroup": str(cls), "showlegend": cls not in shown,
                    "marker": {"size": marker_size, "color": PALETTE[cls % len(PALETTE)], "opacity": 0.6},
                    "customdata": ids, "hovertemplate": "id %{customdata:d}<extra>%{fullData.name}</extra>",
                    "xaxis": x, "yaxis": y})
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
            data.append({"type": "scatter", "x": tri[:, 0], "y": tri[:, 1], "name": "templates",
                         "legendgroup": "templates", "showlegend": (r, c) == (1, 1),
                         "line": {"color": "black", "width": 1.5}, "marker": marker, **text_kw,
                         "xaxis": x, "yaxis": y})
            layout[ky].update(scaleanchor=x, scaleratio=1)
    layout.update(title=title, height=360 * len(splits) + 80, legend={"itemsizing": "constant"},
                  margin={"l": 40, "r": 20, "t": margin_top, "b": 40})
    return build_figure({"data": data, "layout": layout})


def separation_bar_figure(values: Mapping[str, Mapping[str, float]], title: str = "class separation R²",
                          height: int | None = None, margin_top: int = 50,
                          legend_on_top: bool = False) -> go.Figure:
    """Grouped bars of class separation R²: values[model][series] (series e.g. 'train', 'test'); with
    `legend_on_top` the series legend runs in a row above the bars."""
    models = list(values)
    series: list[str] = []
    for m in models:
        series += [s for s in values[m] if s not in series]
    data = []
    for i, s in enumerate(series):
        y = [values[m].get(s, np.nan) for m in models]
        data.append({"type": "bar", "x": models, "y": y, "name": s, "marker": {"color": PALETTE[i % len(PALETTE)]},
                     "text": [f"{v:.3f}" for v in y], "textposition": "outside",
                     "hovertemplate": "%{x}: R² %{y:.4f}<extra>" + s + "</extra>"})
    top = np.nanmax([values[m].get(s, np.nan) for m in models for s in series] + [0.0])
    layout = {"barmode": "group", "title": title,
              "yaxis": {"title": {"text": "R²"}, "range": [0, max(1.0, top) * 1.05]},
              "margin": {"l": 50, "r": 20, "t": margin_top, "b": 45}}
    if height is not None:
        layout["height"] = height
    if legend_on_top:
        layout["legend"] = {"orientation": "h", "y": 1.12}
    return build_figure({"data": data, "layout": layout})


def cka_heatmap_figure(matrix: np.ndarray, names: Sequence[str], title: str = "linear CKA",
                       height: int | None = None, margin_top: int = 50) -> go.Figure:
    """Heatmap of a symmetric (M, M) CKA matrix on a fixed [0, 1] colour scale, values printed. Without a
    `height`, plotly's default; pages pass one that grows with the number of models."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (len(names), len(names)):
        raise ValueError(f"matrix must be ({len(names)}, {len(names)}), got {m.shape}")
    trace = {"type": "heatmap", "z": m, "x": list(names), "y": list(names), "zmin": 0.0, "zmax": 1.0,
             "colorscale": "Blues", "texttemplate": "%{z:.2f}",
             "hovertemplate": "%{y} vs %{x}: %{z:.4f}<extra></extra>", "colorbar": {"title": {"text": "CKA"}}}
    layout = {"title": title, "yaxis": {"autorange": "reversed", "showgrid": False},
              "xaxis": {"scaleanchor": "y", "showgrid": False}, "margin": {"l": 60, "r": 20, "t": margin_top, "b": 60}}
    if height is not None:
        layout["height"] = height
    return build_figure({"data": [trace], "layout": layout})


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
    cells = grid_cells(rows, cols, 0.02, 0.08 if rows > 1 else 0.02)
    layout = grid_layout(cells, list(captions))
    bare = {"showticklabels": False, "showgrid": False, "zeroline": False}
    for i in range(len(cells)):
        for key in axis_names(i)[2:]:
            layout[key].update(bare)
    data = []
    for i in range(n):
        xa, ya, kx, ky = axis_names(i)
        if rgb:
            data.append({"type": "image", "z": a[i], "hoverinfo": "skip", "xaxis": xa, "yaxis": ya})
        elif image:  # rows flipped so the image's top row is drawn on top
            data.append({"type": "heatmap", "z": a[i][::-1], "colorscale": "Greys", "showscale": False,
                         "hoverinfo": "skip", "xaxis": xa, "yaxis": ya})
            layout[kx]["constrain"] = "domain"
            layout[ky].update(scaleanchor=xa, scaleratio=1, constrain="domain")
        else:
            data.append({"type": "scatter", "y": a[i].reshape(-1), "mode": "lines",
                         "line": {"color": "black", "width": 1}, "showlegend": False, "hoverinfo": "skip",
                         "xaxis": xa, "yaxis": ya})
    layout.update(height=130 * rows + 40, margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False)
    return build_figure({"data": data, "layout": layout})

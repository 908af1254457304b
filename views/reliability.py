"""Reliability: reliability diagrams of up to four models side by side, and every calibration metric with intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from calibviz.app import cached, explain, guarded, predictions_by_model, selection
from calibviz.metrics import (
    Binning,
    Bootstrap,
    ClasswiseCalibration,
    ReliabilityBins,
    SmoothCalibration,
    classwise_calibration,
    reliability_bins,
    smooth_calibration,
    top_label,
)
from calibviz.plots.reliability import (
    classwise_figure,
    metric_note,
    reliability_figure,
    side_by_side,
    smooth_figure,
)
from calibviz.predictions import Predictions
from calibviz.report import View, conventions_note, metrics_report, metrics_table, table_note
from calibviz.sources import display_labels

KEY = "reliability"
MAX_MODELS = 4
# 100 seeded resamples: a full report of a 10,000-row split takes about 0.3 s on one CPU core, so a new bin count
# for two models redraws in well under a second; the percentile interval is then good to about ±0.01 of its level
BOOT_CHOICES = (100, 200, 500, 1000)
SCHEMES = {"width": "equal-width", "mass": "equal-mass"}
VIEWS = {"top": "top-label", "classwise": "classwise", "smooth": "smooth"}
DEFAULTS: dict[str, Any] = {f"{KEY}_bins": 15, f"{KEY}_scheme": "width", f"{KEY}_view": "top",
                            f"{KEY}_class": 0, f"{KEY}_boot": BOOT_CHOICES[0], f"{KEY}_log": True}

st.title("Reliability")
explain(
    "A **reliability diagram** sorts a model's predictions by confidence into bins and, in each bin, compares the "
    "average confidence with how often the model was actually right. A calibrated model sits on the dashed "
    "diagonal. A blue bar that stops *below* the diagonal, with the red hatched gap above it, means the model was "
    "right less often than it claimed: **over-confident**; a bar that rises *above* the diagonal (the gap then "
    "shades the top of the bar) means **under-confident**. The whiskers show how sure we can be of each bar's "
    "height: wide for a bin with few predictions, and the grey histogram beneath counts the predictions in each "
    "bin. The **expected calibration error (ECE)** is the average gap, each bin weighted by its share of the "
    "predictions. ECE depends on how you bin: with more bins each bin holds fewer predictions, so chance alone "
    "widens the gaps and ECE grows; equal-width bins leave a confident model's predictions crowded into the last "
    "bin or two, while equal-mass bins give every bin the same number of predictions. So an ECE means little "
    "without its bin count and convention. **Smooth ECE** replaces the bins with a kernel whose width is chosen "
    "from the data itself."
)


# ---------------------------------------------------------------------------------------------
# Cached computation, keyed on the predictions' content digest and the parameters' values, so a widget change on
# data seen before only reads the cache.


@cached
def _report(preds: Predictions, n_bins: int, n_boot: int) -> dict[str, Any]:
    """Every metric with bootstrap intervals (equal-width and equal-mass rows both; the scheme does not change it)."""
    return metrics_report(preds, n_bins=n_bins, n_boot=n_boot)


@cached
def _top_bins(preds: Predictions, binning: Binning) -> ReliabilityBins:
    """Top-label reliability bins of one binning."""
    conf, correct = top_label(preds.probabilities(), preds.labels)
    return reliability_bins(conf, correct, binning)


@cached(max_entries=128)
def _classwise(preds: Predictions, binning: Binning) -> ClasswiseCalibration:
    """Classwise reliability bins of every class, one binning."""
    return classwise_calibration(preds.probabilities(), preds.labels, binning)


@cached(max_entries=64)
def _smooth(preds: Predictions, boot: Bootstrap) -> SmoothCalibration:
    """Smooth ECE and the smoothed reliability curve with its bootstrap band."""
    conf, correct = top_label(preds.probabilities(), preds.labels)
    return smooth_calibration(conf, correct, boot)


# ---------------------------------------------------------------------------------------------
# Widgets


@dataclass(frozen=True)
class Controls:
    """What the diagram controls chose."""

    n_bins: int
    scheme: Literal["width", "mass"]
    view: View
    k: int
    n_boot: int
    log_counts: bool


def _controls(class_names: list[str]) -> Controls:
    """Draw the diagram controls; return bins, scheme, view, class, bootstrap count and count axis."""
    c1, c2, c3, c4 = st.columns([3, 2, 3, 2])
    with c1:
        n_bins = st.slider("Bins", 5, 50, key=f"{KEY}_bins",
                           help="How many bins the confidences are cut into. Papers use 10, 15 (the default, as "
                                "Guo et al.) or 30. The metrics table uses the same count.")
    with c3:
        view = st.radio("Diagram", list(VIEWS), key=f"{KEY}_view", format_func=VIEWS.get, horizontal=True,
                        help="Top-label: the confidence of the predicted class against accuracy. Classwise: the "
                             "predicted probability of one class against how often the label is that class. "
                             "Smooth: a kernel-smoothed curve with no bins at all.")
    with c2:
        scheme = st.radio("Binning", list(SCHEMES), key=f"{KEY}_scheme", format_func=SCHEMES.get, horizontal=True,
                          disabled=view == "smooth",
                          help="Equal-width: bins of the same width, closed on the right (lo, hi]. Equal-mass: "
                               "bins holding the same number of predictions. The smooth view has no bins.")
    with c4:
        if view == "classwise":
            if st.session_state[f"{KEY}_class"] >= len(class_names):
                st.session_state[f"{KEY}_class"] = 0
            k = st.selectbox("Class", range(len(class_names)), key=f"{KEY}_class",
                             format_func=lambda i: f"{i}: {class_names[i]}" if class_names[i] != str(i) else str(i))
        else:
            k = int(st.session_state[f"{KEY}_class"])
        with st.expander("More options"):
            log_counts = st.toggle("Log count axis", key=f"{KEY}_log",
                                   help="Counts per bin on a log scale, so that bins holding a handful of "
                                        "predictions stay visible beside a bin holding thousands.")
            n_boot = st.select_slider("Bootstrap resamples", BOOT_CHOICES, key=f"{KEY}_boot",
                                      help="Resamples for the table's intervals and the smooth curve's band "
                                           "(seeded). More is steadier and slower.")
    return Controls(int(n_bins), scheme, view, int(k), int(n_boot), bool(log_counts))


# ---------------------------------------------------------------------------------------------
# Output


def _figure(preds: Predictions, rep: dict[str, Any], c: Controls, title: str) -> Any:
    """One model's diagram for the chosen view."""
    if c.view == "smooth":
        return smooth_figure(_smooth(preds, Bootstrap(n_boot=c.n_boot)), title=title)
    if c.view == "classwise":
        if c.k >= preds.n_classes:
            raise ValueError(f"this model has {preds.n_classes} classes; there is no class {c.k}")
        cw = _classwise(preds, Binning(c.n_bins, c.scheme))
        name = preds.class_names[c.k]
        return classwise_figure(cw, c.k, name, title=f"{title} · class '{name}'")
    keys = {"ece": "ECE", "mce": "MCE"} if c.scheme == "width" else {"ece_mass": "ECE", "mce_mass": "MCE"}
    note = metric_note(rep, rep["intervals"], keys)
    return reliability_figure(_top_bins(preds, Binning(c.n_bins, c.scheme)), title=title, note=note)


def body() -> None:
    sel = selection(need_models=True)
    if sel is None:
        return
    models = list(sel.models[:MAX_MODELS])
    if len(sel.models) > MAX_MODELS:
        st.info(f"{len(sel.models)} models are selected; the diagrams show the first {MAX_MODELS}: "
                + ", ".join(m.title for m in models) + ". Remove some in the sidebar to see the others.")
    labels = display_labels(models)
    loaded = predictions_by_model(models, sel.data)
    if not loaded:
        return
    first = next(iter(loaded.values()))
    controls = _controls(first.class_names)
    st.caption(f"**{sel.dataset} · {sel.data.label}** (the sidebar's split), {first.n:,} predictions per model.")
    reports = {labels[n]: _report(p, controls.n_bins, controls.n_boot) for n, p in loaded.items()}

    figures = []
    for n, p in loaded.items():
        try:
            figures.append((n, _figure(p, reports[labels[n]], controls, labels[n])))
        except ValueError as e:
            figures.append((n, e))
    drawn = iter(side_by_side([f for _, f in figures if not isinstance(f, Exception)], controls.log_counts))
    figures = [(n, f if isinstance(f, Exception) else next(drawn)) for n, f in figures]
    for col, (n, fig) in zip(st.columns(len(figures)), figures, strict=True):
        with col:
            if isinstance(fig, Exception):
                st.warning(f"{labels[n]}: {fig}")
            else:
                st.plotly_chart(fig, width="stretch", key=f"{KEY}_chart_{n}")
    st.caption(conventions_note(next(iter(reports.values())), controls.view, controls.scheme))

    st.subheader("Metrics with 95% intervals")
    st.table(metrics_table(reports, controls.n_bins))
    st.caption(table_note(sel.data, controls.n_bins, controls.n_boot))


guarded(body, state=KEY, defaults=DEFAULTS)

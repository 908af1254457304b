"""Reliability: reliability diagrams of up to four models side by side, and every calibration metric with intervals."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from calibviz.app import (
    cached,
    explain,
    guarded,
    predictions,
    restore_page_state,
    save_page_state,
    selection,
)
from calibviz.data import DataSpec
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
from calibviz.report import metrics_report
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

# (report key, label, what it measures) in table order; binned rows get their binning appended
ROWS = (
    ("accuracy", "Accuracy", "share of correct top-label predictions"),
    ("nll", "NLL", "mean −log p(label)"),
    ("brier", "Brier", "mean Σ_k (p_k − 1[k = label])²"),
    ("ece", "ECE", "Σ_b n_b/N·|conf_b − acc_b|, {width}"),
    ("rmsce", "RMSCE", "root of Σ_b n_b/N·(conf_b − acc_b)², {width}"),
    ("mce", "MCE", "largest |conf_b − acc_b|, {width}"),
    ("ece_mass", "ECE (equal-mass)", "as ECE, {mass}"),
    ("rmsce_mass", "RMSCE (equal-mass)", "as RMSCE, {mass}"),
    ("mce_mass", "MCE (equal-mass)", "as MCE, {mass}"),
    ("debiased_l2_ce", "Debiased L2 CE", "Kumar et al. 2019, RMSCE minus its sampling bias, {mass}"),
    ("classwise_ece_mean", "Classwise ECE (mean)", "ECE of p_k for each class k, averaged; {width}"),
    ("classwise_ece_sum", "Classwise ECE (sum)", "the same, summed over classes (Kull et al. 2019)"),
    ("smooth_ece", "Smooth ECE", "Błasiok & Nakkiran 2023: kernel instead of bins, no bin count"),
    ("auroc", "AUROC", "how well confidence separates right from wrong (higher is better)"),
    ("aurc", "AURC", "mean error rate among the k most confident, over k (lower is better)"),
)

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


def _controls(class_names: list[str]) -> dict[str, Any]:
    """Draw the diagram controls; return bins, scheme, view, class and bootstrap count."""
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
    return {"n_bins": int(n_bins), "scheme": str(scheme), "view": str(view), "k": int(k), "n_boot": int(n_boot),
            "log_counts": bool(log_counts)}


# ---------------------------------------------------------------------------------------------
# Output


def _figure(view: str, preds: Predictions, rep: dict[str, Any], prm: dict[str, Any], title: str) -> Any:
    """One model's diagram for the chosen view."""
    n_bins, scheme = prm["n_bins"], prm["scheme"]
    if view == "smooth":
        return smooth_figure(_smooth(preds, Bootstrap(n_boot=prm["n_boot"])), title=title)
    if view == "classwise":
        k = prm["k"]
        if k >= preds.n_classes:
            raise ValueError(f"this model has {preds.n_classes} classes; there is no class {k}")
        cw = _classwise(preds, Binning(n_bins, scheme))
        return classwise_figure(cw, k, preds.class_names[k], title=f"{title} · class '{preds.class_names[k]}'")
    keys = {"ece": "ECE", "mce": "MCE"} if scheme == "width" else {"ece_mass": "ECE", "mce_mass": "MCE"}
    note = metric_note(rep, rep["intervals"], keys)
    return reliability_figure(_top_bins(preds, Binning(n_bins, scheme)), title=title, note=note)


def _cell(value: float | None, interval: list[float | None] | None) -> str:
    """'value [low, high]' with non-breaking spaces, so that a narrow column never splits a cell."""
    if value is None:
        return "—"
    if interval is None or None in interval:
        return f"{value:.4f}"
    return f"{value:.4f}\u00a0[{interval[0]:.4f},\u00a0{interval[1]:.4f}]"


def _table(reports: dict[str, dict[str, Any]], n_bins: int) -> pd.DataFrame:
    """Rows: metrics; columns: one per model ('value [low, high]'), then what each metric measures."""
    width, mass = f"{n_bins} equal-width bins", f"{n_bins} equal-mass bins"
    rows = []
    for key, label, what in ROWS:
        row = {"metric": label}
        row.update({name: _cell(rep[key], rep["intervals"].get(key)) for name, rep in reports.items()})
        row["what it measures"] = what.format(width=width, mass=mass)
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def _convention(prm: dict[str, Any], rep: dict[str, Any]) -> str:
    """The caption saying exactly which convention the diagrams and the table use."""
    if prm["view"] == "smooth":
        diagrams = (f"top-label confidence (the largest probability), smoothed by a {SmoothCalibration.convention}; "
                    f"the band is a pointwise 95% percentile bootstrap over {prm['n_boot']} resamples (seed 0)")
    else:
        what = ("top-label: confidence is the largest probability, a prediction is right when the label has it"
                if prm["view"] == "top" else "classwise: the predicted probability p_k of the chosen class k against "
                "the share of rows whose label is k")
        diagrams = (f"{what}; {Binning(prm['n_bins'], prm['scheme']).convention}; bars with 95% Wilson intervals of "
                    "each bin's accuracy (a binomial interval given the bin's count)")
    return (f"**Diagrams:** {diagrams}. **Table:** `ece`, `rmsce`, `mce` and classwise ECE use {rep['convention']} "
            f"(the `ece` of `calibviz report --bins {prm['n_bins']}`); the equal-mass rows and debiased L2 use "
            f"{rep['mass_convention']}. Intervals: 95% percentile bootstrap, {rep['n_boot']} resamples of the "
            f"{rep['n']:,} rows, seed {rep['seed']}. Binned errors are biased upward, so for a nearly calibrated "
            "model the interval can lie above the estimate.")


def _split_arg(data: DataSpec) -> str:
    """The `--split` argument of `calibviz report` that selects the same rows."""
    if data.builtin:
        return f" --split {data}"
    return "" if data.split == "all" else f" --split {data.split}"


def body() -> None:
    sel = selection()
    if sel is None:
        return
    if not sel.models:
        st.warning("Select at least one model in the sidebar.")
        return
    restore_page_state(KEY, DEFAULTS)
    models = list(sel.models[:MAX_MODELS])
    if len(sel.models) > MAX_MODELS:
        st.info(f"{len(sel.models)} models are selected; the diagrams show the first {MAX_MODELS}: "
                + ", ".join(m.title for m in models) + ". Remove some in the sidebar to see the others.")
    labels = display_labels(models)
    loaded: dict[str, Predictions] = {}
    for m in models:
        try:
            loaded[m.name] = predictions(m, sel.data)
        except Exception as e:  # one model that cannot give this split must not hide the others
            st.error(f"{labels[m.name]}: {type(e).__name__}: {e}")
    if not loaded:
        return
    first = next(iter(loaded.values()))
    prm = _controls(first.class_names)
    st.caption(f"**{sel.dataset} · {sel.data.label}** (the sidebar's split), {first.n:,} predictions per model.")
    reports = {labels[n]: _report(p, prm["n_bins"], prm["n_boot"]) for n, p in loaded.items()}

    figures = []
    for n, p in loaded.items():
        try:
            figures.append((n, _figure(prm["view"], p, reports[labels[n]], prm, labels[n])))
        except ValueError as e:
            figures.append((n, e))
    side_by_side([f for _, f in figures if not isinstance(f, Exception)], prm["log_counts"])
    for col, (n, fig) in zip(st.columns(len(figures)), figures, strict=True):
        with col:
            if isinstance(fig, Exception):
                st.warning(f"{labels[n]}: {fig}")
            else:
                st.plotly_chart(fig, width="stretch", key=f"{KEY}_chart_{n}")
    st.caption(_convention(prm, next(iter(reports.values()))))

    st.subheader("Metrics with 95% intervals")
    st.table(_table(reports, prm["n_bins"]))
    st.caption("Each cell is the estimate on all rows, then [low, high] of its bootstrap interval. Lower is better "
               "for every row except accuracy and AUROC. When a model errs the same way across the whole confidence "
               "range (every bin's gap, and the smoothed curve, on one side of the diagonal), the top-label ECE, "
               "equal-width or equal-mass, and smooth ECE all equal |mean confidence − accuracy|, whatever the "
               "binning; the binning matters where over- and under-confident regions sit side by side, or where "
               "bins hold few predictions. The same numbers, as JSON: "
               f"`python -m calibviz report MODEL{_split_arg(sel.data)} --bins {prm['n_bins']} "
               f"--boot {prm['n_boot']} --json`.")


guarded(body)
save_page_state(KEY)

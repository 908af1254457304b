"""Shift: accuracy, ECE and NLL against corruption severity, before and after temperature scaling fitted on the clean
val split (Ovadia et al. 2019), reliability diagrams at one severity beside the clean ones, and the numbers."""

from __future__ import annotations

from typing import Any

import streamlit as st

from calibviz.app import cached, explain, guarded, predictions, selection
from calibviz.findings import shift_finding, shift_reading
from calibviz.plots.shift import shift_curves_figure, shift_reliability_figure
from calibviz.predictions import Predictions
from calibviz.shift import (
    METRIC_LABELS,
    SHIFT_METRICS,
    ShiftCurves,
    ShiftParams,
    ShiftReliability,
    ShiftSpecs,
    shift_curves,
    shift_reliability,
    shift_specs,
    shift_table,
)
from calibviz.sources import ModelEntry, display_labels

KEY = "shift"
MAX_DIAGRAMS = 4
PARAMS = ShiftParams()  # 15 equal-width bins, 200 seeded bootstrap resamples
TS_VIEWS = {"both": "before + after", "before": "before", "after": "after"}
DEFAULTS: dict[str, Any] = {f"{KEY}_metrics": list(SHIFT_METRICS), f"{KEY}_ts": "both", f"{KEY}_severity": 5}

st.title("Calibration under shift")
explain(
    "A model is usually tested on data like the data it was trained on, but real inputs drift: sensors get noisier, "
    "images blur, objects sit off-centre. Here the clean test split is corrupted on purpose (added noise, blur, a "
    "translation; on your own images also JPEG compression and lower contrast) at a **severity** from 1 (mild) to "
    "5 (strong); severity 0 is the clean test split. Ovadia et al. (NeurIPS 2019) measured many models this way and "
    "found that accuracy falls as the shift grows but confidence does not fall as fast, so the calibration error "
    "(ECE) grows; and that **temperature scaling** (TS), which fixes calibration on clean data, does not survive "
    "the shift when its temperature is fitted on clean validation data: the calibrated model drifts away from the "
    "diagonal too. What the selected models show is computed below from their numbers."
)


@cached(max_entries=64)
def _curves(fit: Predictions, clean: Predictions, shifted: tuple[tuple[str, int, Predictions], ...],
            params: ShiftParams, title: str) -> ShiftCurves:
    """One model's curves (a bootstrap report per set, before and after TS), with a progress bar while measured."""
    bar = st.progress(0.0, text=f"Measuring {title} …")
    try:
        return shift_curves(fit, clean, {(c, s): p for c, s, p in shifted}, params, name=title,
                            progress=lambda f, m: bar.progress(f, text=f"Measuring {title} before and after TS: {m}"))
    finally:
        bar.empty()


@cached(max_entries=128)
def _reliability(clean: Predictions, shifted: Predictions, temperature: float, n_bins: int) -> ShiftReliability:
    return shift_reliability(clean, shifted, temperature, n_bins)


def _load(models: list[ModelEntry], specs: ShiftSpecs, labels: dict[str, str]) -> dict[str, dict[str, Predictions]]:
    """Every model's predictions on every set of the study, under one progress bar (a run's own bar, while the
    backend computes it, shows beneath); a model that fails is reported and left out."""
    runs = [(m, s) for m in models for s in specs.all]
    out: dict[str, dict[str, Predictions]] = {}
    failed: dict[str, str] = {}
    slot = st.empty()
    with slot.container():
        bar, below = st.progress(0.0), st.empty()
        for i, (m, s) in enumerate(runs):
            if m.name in failed:
                continue
            bar.progress(i / len(runs), text=f"Predictions {i + 1} of {len(runs)}: {labels[m.name]} on {s.label}")
            with below.container():
                try:
                    out.setdefault(m.name, {})[str(s)] = predictions(m, s)
                except Exception as e:  # shown in the page; the other models still load
                    failed[m.name] = f"{labels[m.name]} on {s}: {type(e).__name__}: {e}"
                    out.pop(m.name, None)
    slot.empty()
    for text in failed.values():
        st.error(text)
    return out


def _pick(key: str, options: list, fallback: list | Any) -> None:
    """Keep a widget's stored value only where it is still offered (another dataset offers other corruptions); a
    multiselect that held every option offered before holds every option offered now."""
    v = st.session_state.get(key)
    if isinstance(fallback, list):
        seen = st.session_state.get(f"_{key}_offered")
        kept = [x for x in (v or []) if x in options]
        st.session_state[key] = fallback if not kept or (seen is not None and v == seen) else kept
        st.session_state[f"_{key}_offered"] = list(options)
    elif v not in options:
        st.session_state[key] = fallback


def body() -> None:
    sel = selection(need_models=True)
    if sel is None:
        return
    try:
        specs = shift_specs(sel.data)
    except ValueError as e:
        st.warning(f"Calibration under shift needs image or signal inputs to corrupt and a val and a test split: {e}")
        return
    bundles = [m.title for m in sel.models if not m.runnable]
    if bundles:
        st.info(f"{', '.join(bundles)}: a predictions bundle holds only outputs, so it has no shifted copies and is "
                "left out here.")
    models = [m for m in sel.models if m.runnable]
    if not models:
        st.warning("Select a checkpoint or your own model in the sidebar: shift runs the model on corrupted inputs.")
        return
    corruptions = list(specs.corruptions)
    _pick(f"{KEY}_corruptions", corruptions, corruptions)
    _pick(f"{KEY}_diagram", corruptions, corruptions[0])
    c1, c2, c3 = st.columns([3, 3.6, 3.4])
    metrics = c1.pills("Metrics", list(SHIFT_METRICS), selection_mode="multi", key=f"{KEY}_metrics",
                       format_func=METRIC_LABELS.get,
                       help="Rows of the figure: accuracy (TS never changes it), ECE and NLL (log-loss).")
    chosen = c2.pills("Corruptions", corruptions, selection_mode="multi", key=f"{KEY}_corruptions",
                      help="Columns of the figure; severity 0 is the clean test split in every column.")
    ts = c3.segmented_control("Temperature scaling", list(TS_VIEWS), key=f"{KEY}_ts", format_func=TS_VIEWS.get,
                              help="Solid: the model as it is. Dashed: after TS, T fitted once by NLL on the clean "
                                   "val split.")
    ts = ts or "both"  # a click on the chosen segment clears it
    calibrations = ("before", "after") if ts == "both" else (ts,)
    labels = display_labels(models)
    loaded = _load(models, specs, labels)
    if not loaded:
        return
    curves = {labels[n]: _curves(p[str(specs.fit)], p[str(specs.clean)],
                                 tuple((s.corruption, s.severity, p[str(s)]) for s in specs.shifted), PARAMS,
                                 labels[n]) for n, p in loaded.items()}
    first = next(iter(curves.values()))
    st.caption(f"**{sel.dataset}**: T fitted by NLL on the clean **val** split ({first.fit_n:,} rows) of each model, "
               f"curves on the **test** split ({first.clean.n:,} rows), clean and corrupted; the sidebar's split does "
               f"not apply here. ECE: {first.convention}. Intervals: 95% percentile bootstrap, {PARAMS.n_boot} "
               f"resamples, seed {PARAMS.bootstrap.seed}, the same resampled rows before and after TS.")
    if not metrics or not chosen:
        st.warning("Pick at least one metric and one corruption.")
        return
    st.markdown(shift_finding(curves, chosen).text)
    st.plotly_chart(shift_curves_figure(curves, metrics, chosen, calibrations), width="stretch", key=f"{KEY}_curves")
    st.caption("Solid: the model as it is; dashed: after TS with the one T fitted on the clean val split. Whiskers: "
               "95% bootstrap intervals. Lower is better for ECE and NLL; severity 0 (clean) starts every column.")

    st.subheader("Reliability at one severity, beside the clean test split")
    d1, d2 = st.columns([2, 3])
    corruption = d1.selectbox("Corruption", corruptions, key=f"{KEY}_diagram")
    severity = d2.select_slider("Severity", [s for s in first.severities if s], key=f"{KEY}_severity")
    for label in list(curves)[:MAX_DIAGRAMS]:
        st.markdown("- " + shift_reading(curves[label], corruption, label))
    if len(curves) > MAX_DIAGRAMS:
        st.info(f"The diagrams show the first {MAX_DIAGRAMS} models; the curves and the table show all.")
    spec = next(s for s in specs.shifted if s.corruption == corruption and s.severity == severity)
    for n, label in [(n, labels[n]) for n in loaded][:MAX_DIAGRAMS]:
        rel = _reliability(loaded[n][str(specs.clean)], loaded[n][str(spec)], curves[label].temperature,
                           PARAMS.n_bins)
        st.plotly_chart(shift_reliability_figure(rel, curves[label], calibrations, title=label), width="stretch",
                        key=f"{KEY}_diagrams_{n}")

    st.subheader("The numbers, with 95% intervals")
    for tab, (label, c) in zip(st.tabs(list(curves)), curves.items(), strict=True):
        tab.dataframe(shift_table({label: c}, chosen).droplevel("model"), width="stretch")
        tab.caption(f"T = {c.temperature:.4g}, fitted on {c.fit_data}: NLL there {c.fit_nll_before:.4f} → "
                    f"{c.fit_nll_after:.4f}.")
    zoo = all(m.origin == "zoo" for m in models)
    command = (f"{' '.join(m.name for m in models)} --dataset {sel.dataset}" if zoo
               else f"--arch FILE.py:CALLABLE --weights FILE --data {sel.data.with_split('all')}")
    st.caption("Each cell: the estimate on all rows, then [low, high]. Lower is better for ECE and NLL. The same "
               f"numbers as JSON: `python -m calibviz shift-report {command} --json`.")


guarded(body, state=KEY, defaults=DEFAULTS)

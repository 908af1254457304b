"""Re-calibration: temperature by hand, every standard calibrator fitted on one split and compared on another,
the fitted calibrator as JSON, and the masked-temperature-scaling curve of the zoo's full-data and distilled-data
models."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from calibviz import recalibration
from calibviz.app import cached, explain, guarded, predictions, selection, zoo_models
from calibviz.backend import predict_entry
from calibviz.calibrators import REGISTRY, ZERO_PROBABILITY_NOTE, MTSPoint, mts_curve
from calibviz.data import DATASET_NAMES, DataSpec
from calibviz.metrics import Binning, ece
from calibviz.plots import recalibration as figures
from calibviz.predictions import Predictions
from calibviz.recalibration import MethodResult, MTSSummary, TemperatureCurve
from calibviz.sources import ModelEntry

KEY = "recalibration"
BOOT_CHOICES = (100, 200, 500, 1000)
T_GRID = recalibration.manual_temperature_grid()  # 0.1 ... 10, 50 steps per factor of 10, T = 1 included
MTS_GRIDS = {"coarse": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5), "fine": tuple(round(0.05 * k, 2) for k in range(11))}
DEFAULTS: dict[str, Any] = {f"{KEY}_methods": ["ts", "ets", "vs", "dirichlet"], f"{KEY}_bins": 15,
                            f"{KEY}_boot": BOOT_CHOICES[0], f"{KEY}_mts_r": 0.1, f"{KEY}_temperature": 1.0,
                            f"{KEY}_mts_grid": "coarse", f"{KEY}_mts_metric": "ece"}

st.title("Re-calibration")
explain(
    "A classifier is **calibrated** when its confidence matches how often it is right. Most trained networks are "
    "over-confident, and the usual fix is applied *after* training: keep the model, and learn a small map from its "
    "outputs (logits) to better probabilities on a held-out **fit split**, then check it on a different "
    "**evaluation split**. The simplest map is **temperature scaling**: divide every logit by one number T before "
    "the softmax. T > 1 flattens the probabilities (less confident), T < 1 sharpens them, and the predicted class "
    "never changes. Drag the temperature slider below and watch the reliability diagram, the log-loss (NLL) and "
    "the calibration error (ECE) move; the star on the curve is the T that minimises the fit split's log-loss, "
    "which is what temperature scaling picks. Further down, richer maps (one scale per class, a full matrix, "
    "binning, isotonic curves) are fitted side by side. More parameters can fit the fit split better and the "
    "evaluation split worse, which is why every number here is measured on the evaluation split."
)


@cached
def _fitted(fit: Predictions, ev: Predictions, method: str, n_bins: int, n_boot: int) -> MethodResult:
    """One method fitted on the fit split and measured on the evaluation split (report, JSON, reliability bins).
    Every cache here is keyed on content, so a widget change on data seen before only reads."""
    return recalibration.fit_method(fit, ev, method, n_bins, n_boot=n_boot)


@cached(max_entries=128)
def _curve(preds: Predictions, n_bins: int) -> TemperatureCurve:
    """NLL and ECE of one split on the slider's temperature grid, with the exact NLL optimum."""
    return recalibration.temperature_curve(preds.scores(), preds.labels, list(T_GRID), n_bins)


@cached(max_entries=256)
def _mts_curve(entry: ModelEntry, fit_spec: str, eval_spec: str, ratios: tuple[float, ...], n_bins: int,
               device: str) -> tuple[list[MTSPoint], float]:
    """The MTS curve of one checkpoint (T fitted on the fit split with inputs masked at each ratio, scored on clean
    inputs) and its uncalibrated evaluation ECE."""
    fits = [predict_entry(entry, fit_spec, device=device, mask_ratio=r) for r in ratios]
    ev = predict_entry(entry, eval_spec, device=device)
    return mts_curve(fits, ev, n_bins=n_bins, device=device), ece(ev.probabilities(), ev.labels, n_bins)


def _follow(key: str, seen_key: str, options: list[str], wanted: str) -> None:
    """Set a picker to `wanted` the first time and whenever `wanted` changes (the sidebar's split); otherwise keep
    the user's choice while it is still offered."""
    if st.session_state.get(seen_key) != wanted or st.session_state.get(key) not in options:
        st.session_state[key] = wanted if wanted in options else options[0]
        st.session_state[seen_key] = wanted


def _controls(sel: Any) -> dict[str, Any]:
    """Draw the model, fit split, evaluation split, methods and options pickers; return the choices."""
    models = {m.name: m for m in sel.models}
    mkey = f"{KEY}_model_{sel.dataset}"
    if st.session_state.get(mkey) not in models:
        st.session_state[mkey] = next(iter(models))
    c1, c2, c3, c4 = st.columns([2, 1.2, 1.6, 1.3], vertical_alignment="bottom")
    m = models[c1.selectbox("Model", list(models), key=mkey, format_func=lambda n: models[n].title,
                            help="One of the models selected in the sidebar (the first by default).")]
    if m.kind == "source":  # the user's own model on its folder or tensor file
        fit_opts, eval_opts = recalibration.source_split_choices(m.data)
    elif m.runnable and m.dataset in DATASET_NAMES:
        fit_opts, eval_opts = recalibration.split_choices(m.dataset)
    else:
        fit_opts, eval_opts = recalibration.split_choices(sel.dataset, predictions(m, sel.data.with_split("all")))
    fkey, ekey = f"{KEY}_fit_{sel.dataset}", f"{KEY}_eval_{sel.dataset}"
    if st.session_state.get(fkey) not in fit_opts:
        st.session_state[fkey] = fit_opts[0]
    wanted = recalibration.default_evaluation(sel.spec, st.session_state[fkey], eval_opts)
    _follow(ekey, f"_{KEY}_eval_seen_{sel.dataset}", eval_opts, wanted)
    fit_spec = c2.selectbox("Fit split", fit_opts, key=fkey, format_func=lambda s: DataSpec.of(s).label,
                            help="The held-out rows each calibrator is fitted on (val, the calibration split, by "
                                 "default). Fitting on train shows why not to: the model has memorised it.")
    eval_spec = c3.selectbox("Evaluation split", eval_opts, key=ekey, format_func=lambda s: DataSpec.of(s).label,
                             help="Where the before/after numbers are measured; it follows the sidebar's split. The "
                                  "shifted test sets show how a calibrator fitted on clean data holds up under "
                                  "corruption.")
    options = [k for k, info in REGISTRY.items() if m.runnable or not info.needs_model]
    st.session_state[f"{KEY}_methods"] = [k for k in st.session_state[f"{KEY}_methods"] if k in options]
    with c4, st.expander("More options"):
        n_bins = st.slider("ECE bins", 5, 30, key=f"{KEY}_bins",
                           help="Equal-width bins closed on the right, (lo, hi]; 15 as in Guo et al.")
        n_boot = st.select_slider("Bootstrap resamples", BOOT_CHOICES, key=f"{KEY}_boot",
                                  help="Seeded percentile bootstrap of the evaluation rows for the table's intervals.")
        mts_r = st.select_slider("MTS mask ratio r", MTS_GRIDS["fine"][1:], key=f"{KEY}_mts_r",
                                 disabled=not m.runnable,
                                 help="For the method 'Masked temperature scaling': each input element of the fit "
                                      "split is zeroed with probability r before T is fitted.")
    methods = st.multiselect("Methods", options, key=f"{KEY}_methods", format_func=lambda k: REGISTRY[k].label,
                             help="Each is fitted on the fit split and drawn beside the uncalibrated model. "
                                  "'What each method does' at the bottom explains them.")
    for info in REGISTRY.values():
        if info.needs_model and not m.runnable:  # dropped from the choices, if it was chosen
            st.caption(f"{info.label} is not offered for this model: it {info.model_use}, and a predictions bundle "
                       "holds only the model's outputs.")
    return {"model": m, "fit_spec": fit_spec, "eval_spec": eval_spec, "methods": list(methods),
            "n_bins": int(n_bins), "n_boot": int(n_boot), "mts_r": float(mts_r)}


@st.fragment
def _manual_temperature(fit: Predictions, ev: Predictions, n_bins: int, where: str) -> None:
    """The teaching view: a log-scaled temperature slider that redraws the diagram, NLL and ECE at once. A
    fragment, so dragging the slider reruns only this part of the page."""
    fit_curve, eval_curve = _curve(fit, n_bins), _curve(ev, n_bins)
    t_star = fit_curve.optimal_temperature
    tkey = f"{KEY}_temperature"
    if st.session_state.get(tkey) not in T_GRID:
        st.session_state[tkey] = 1.0

    def snap(t: float) -> None:
        st.session_state[tkey] = recalibration.nearest_temperature(T_GRID, t)

    s1, s2, s3 = st.columns([5, 1.3, 1.3], vertical_alignment="bottom")
    t = float(s1.select_slider("Temperature T (log scale)", T_GRID, key=tkey, format_func=lambda v: f"{v:g}",
                               help="softmax(logits / T). The slider moves in equal steps of log T, from 0.1 to 10; "
                                    "the arrow keys step it once the handle has focus."))
    s2.button(f"T* = {t_star:.3g} (fitted)", key=f"{KEY}_btn_snap", on_click=snap, args=(t_star,), width="stretch",
              help="Move the slider to the grid value nearest the temperature that minimises the fit split's NLL: "
                   "what temperature scaling picks.")
    s3.button("T = 1 (as trained)", key=f"{KEY}_btn_reset", on_click=snap, args=(1.0,), width="stretch")
    now, base = (recalibration.at_temperature(ev.scores(), ev.labels, v, n_bins) for v in (t, 1.0))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Temperature T", f"{t:g}", help=f"Fitted T* = {t_star:.6g} (exact optimum on the fit split).")
    for col, label, v, v1 in ((m2, "NLL (evaluation)", now.nll, base.nll),
                              (m3, f"ECE (evaluation, {n_bins} bins)", now.ece, base.ece)):
        col.metric(label, f"{v:.4f}", delta=f"{v - v1:+.4f} vs T = 1" if t != 1.0 else None, delta_color="inverse")
    m4.metric("Accuracy (evaluation)", f"{now.accuracy:.4f}", delta="unchanged by T", delta_color="off",
              delta_arrow="off")
    left, right = st.columns([1, 1.15])
    left.plotly_chart(figures.temperature_diagram_figure(now), width="stretch", key=f"{KEY}_manual_diagram")
    right.plotly_chart(figures.temperature_teaching_figure(fit_curve, eval_curve, t), width="stretch",
                       key=f"{KEY}_manual_curve")
    st.caption(f"{where}. The star is temperature scaling's choice: the exact minimum of the fit split's NLL "
               f"(T* = {t_star:.4g}). The evaluation split's own minimum lies at T = "
               f"{eval_curve.optimal_temperature:.4g}, but a real deployment cannot see that split, which is why TS "
               "is fitted elsewhere. NLL is smooth in T and has a single minimum; ECE is a binned, jumpy quantity "
               "whose minimum need not coincide with NLL's.")


def _export(results: dict[str, MethodResult], model: ModelEntry) -> None:
    """Pick a fitted calibrator and download it as JSON."""
    pick = st.selectbox("Calibrator to export", list(results), key=f"{KEY}_export",
                        format_func=lambda k: results[k].report["method_label"])
    res = results[pick]
    text = json.dumps(res.calibrator, indent=1)
    st.download_button(f"Download {res.report['method_label'].lower()} as JSON", text,
                       file_name=f"{model.name.replace('/', '_')}_{pick}.json", mime="application/json",
                       key=f"{KEY}_btn_download", icon=":material/download:")
    st.caption("Load it with `calibviz.calibrators.load_calibrator(path)` and call `.transform(logits)`; "
               "temperature, vector and matrix scaling can also be folded into the model's last layer with "
               "`calibrate_model`. Plain JSON, never pickle.")
    with st.expander("Show the JSON"):
        st.code(text if len(text) < 20_000 else text[:20_000] + "\n…", language="json")


def _mts_section(sel: Any, prm: dict[str, Any]) -> None:
    """The MTS mask-ratio curve of the zoo's CE, DM and MDT models (and the chosen model if it is a checkpoint)."""
    st.subheader("Masked temperature scaling: full-data against distilled-data models")
    m, ds, ev = prm["model"], sel.dataset, DataSpec.of(prm["eval_spec"])
    if not sel.data.builtin or ev.name != ds:
        st.info("The MTS curve needs checkpoints and one of the built-in datasets: MTS masks the *inputs* of the "
                "fit split and runs the model again, which a predictions bundle cannot do.")
        return
    if not m.runnable:
        st.info(f"{m.title} is a predictions bundle: MTS needs the model itself (it masks the inputs and runs the "
                "model again), so the curve shows the zoo's checkpoints only.")
    lineup = recalibration.mts_lineup(m, zoo_models(ds))
    if not lineup:
        st.info(f"The zoo has no CE, DM or MDT checkpoint for {ds}.")
        return
    fit_spec = prm["fit_spec"] if DataSpec.of(prm["fit_spec"]).name == ds else str(ev.with_split("val"))
    g1, g2 = st.columns([2, 1])
    grid = g1.radio("Mask ratios", list(MTS_GRIDS), key=f"{KEY}_mts_grid", horizontal=True,
                    format_func=lambda g: ("coarse: r ∈ {0, .05, .1, .2, .3, .5}" if g == "coarse"
                                           else "fine: r = 0 to 0.5 in steps of 0.05 (one inference per r)"))
    metric = g2.radio("Curve", ("ece", "nll"), key=f"{KEY}_mts_metric", horizontal=True, format_func=str.upper)
    ratios = MTS_GRIDS[grid]
    curves: dict[str, list[MTSPoint]] = {}
    summaries: dict[str, MTSSummary] = {}
    bar = st.progress(0.0, text="Masked inference …")
    for i, model in enumerate(lineup):
        bar.progress(i / len(lineup), text=f"{model.entry.title}: fitting T on inputs masked at each r …")
        try:
            pts, uncalibrated = _mts_curve(model.entry, fit_spec, prm["eval_spec"], ratios, prm["n_bins"], sel.device)
            curves[model.label] = pts
            summaries[model.key] = recalibration.mts_summary(model.entry.title, pts, uncalibrated)
        except Exception as exc:  # one model that cannot be run must not hide the others
            st.error(f"{model.entry.title}: {type(exc).__name__}: {exc}")
    bar.empty()
    if not curves:
        return
    left, right = st.columns([1.2, 1])
    left.plotly_chart(figures.mts_curve_figure(curves, metric=metric, title="", height=430), width="stretch",
                      key=f"{KEY}_mts_chart")
    right.markdown(recalibration.mts_explanation(DataSpec.of(fit_spec), ev, summaries))
    right.caption(recalibration.MTS_CAVEAT)


def _methods_section(prm: dict[str, Any], fit: Predictions, ev: Predictions, where: str) -> None:
    """Each chosen method fitted (cached; one that fails is an error beside the others) and shown side by side:
    reliability diagrams, warnings, the table, the bars and the export."""
    results: dict[str, MethodResult] = {}
    bar = st.progress(0.0, text="Fitting …")
    for i, method in enumerate(prm["methods"]):
        bar.progress(i / len(prm["methods"]), text=f"Fitting {REGISTRY[method].label} …")
        try:
            on = predictions(prm["model"], prm["fit_spec"], mask_ratio=prm["mts_r"]) \
                if REGISTRY[method].needs_model else fit
            results[method] = _fitted(on, ev, method, prm["n_bins"], prm["n_boot"])
        except Exception as e:  # one method that cannot be fitted must not hide the others
            st.error(f"{REGISTRY[method].label}: {type(e).__name__}: {e}")
    bar.empty()
    if not results:
        return
    uncalibrated = recalibration.top_label_bins(ev.probabilities(), ev.labels, prm["n_bins"])
    st.plotly_chart(figures.methods_grid_figure(uncalibrated, results), width="stretch", key=f"{KEY}_grid")
    st.caption(f"{where}. Top-label reliability diagrams, {Binning(prm['n_bins']).convention}; bars show each "
               "bin's accuracy with its 95% Wilson interval, the hatched red part the gap to the mean "
               "confidence; the grey histogram beneath counts the predictions per bin.")
    warnings = [f"- {w}" for res in results.values() for w in res.report["warnings"]]
    if warnings:
        st.warning("\n".join(warnings), icon=":material/warning:")
    st.markdown("**Metrics with 95% intervals and the change from uncalibrated, one column per method**")
    st.table(pd.DataFrame(recalibration.comparison_columns(results)).rename_axis("metric"))
    st.caption(recalibration.comparison_note(results))
    if any(REGISTRY[k].zero_probabilities for k in results):
        st.markdown(ZERO_PROBABILITY_NOTE)
    left, right = st.columns([1.4, 1])
    bars = {REGISTRY[k].short: r.report for k, r in results.items()}
    left.plotly_chart(figures.method_comparison_figure(bars, height=360), width="stretch", key=f"{KEY}_bars")
    with right:
        st.markdown("**Take a calibrator to production**")
        _export(results, prm["model"])


def body() -> None:
    sel = selection(need_models=True)
    if sel is None:
        return
    prm = _controls(sel)
    m = prm["model"]
    fit, ev = predictions(m, prm["fit_spec"]), predictions(m, prm["eval_spec"])
    where = (f"**{m.title}**, fitted on **{DataSpec.of(prm['fit_spec']).label}** ({fit.n:,} rows), evaluated on "
             f"**{DataSpec.of(prm['eval_spec']).label}** ({ev.n:,} rows)")
    if prm["fit_spec"] == prm["eval_spec"]:
        st.warning("The fit and evaluation splits are the same rows: every method looks better here than it will "
                   "on new data. Pick a different evaluation split.")
    st.subheader("Temperature by hand")
    _manual_temperature(fit, ev, prm["n_bins"], where)
    st.subheader("Fitted methods side by side")
    if prm["methods"]:
        _methods_section(prm, fit, ev, where)
    else:
        st.info("Pick one or more methods above.")
    with st.expander("What each method does"):
        for k, info in REGISTRY.items():
            st.markdown(f"**{info.label}** (`{k}`). {info.description}")
        st.markdown(ZERO_PROBABILITY_NOTE)
    _mts_section(sel, prm)


guarded(body, state=KEY, defaults=DEFAULTS)

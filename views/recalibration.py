"""Re-calibration: temperature by hand, every standard calibrator fitted on one split and compared on another,
the fitted calibrator as JSON, and the masked-temperature-scaling curve of the zoo's full-data and distilled-data
models."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from calibviz.app import (
    explain,
    guarded,
    predictions,
    restore_page_state,
    save_page_state,
    selection,
    zoo_models,
)
from calibviz.backend import file_digest
from calibviz.calibrators import CALIBRATORS, METHOD_DESCRIPTIONS, MaskedTemperatureScaling, MTSPoint, mts_curve
from calibviz.data import DATASET_NAMES, DataSpec, spec_choices
from calibviz.metrics import Binning, ReliabilityBins, ece
from calibviz.plots.recalibration import (
    method_comparison_figure,
    mts_curve_figure,
    reliability_grid_figure,
    temperature_teaching_figure,
)
from calibviz.plots.reliability import metric_note, reliability_figure
from calibviz.predictions import Predictions
from calibviz.recalibration import (
    MethodResult,
    MTSSummary,
    TemperatureCurve,
    at_temperature,
    distilled_vs_full,
    fit_method,
    manual_temperature_grid,
    mts_summary,
    nearest_temperature,
    parameter_summary,
    temperature_curve,
    top_label_bins,
)
from calibviz.sources import ModelEntry

KEY = "recalibration"
LABELS = {**{k: c.label for k, c in CALIBRATORS.items()}, "mts": MaskedTemperatureScaling.label}
SHORT = {"ts": "TS", "ets": "ETS", "vs": "VS", "ms": "MS", "dirichlet": "Dir.", "histogram": "Hist.",
         "isotonic": "Iso.", "mts": "MTS"}
DEFAULT_METHODS = ("ts", "ets", "vs", "dirichlet")
BOOT_CHOICES = (100, 200, 500, 1000)
T_GRID = manual_temperature_grid()  # 0.1 ... 10, 50 steps per factor of 10, T = 1 included
MTS_GRIDS = {"coarse": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5), "fine": tuple(round(0.05 * k, 2) for k in range(11))}
MTS_RECIPES = {"ce": "full data", "dm": "distilled data", "mdt": "distilled data"}
ZERO_PROB_NOTE = (
    "**Histogram binning and isotonic regression can make NLL worse** even when they lower ECE: where a class "
    "never occurred in a bin (or a stretch of the isotonic curve) of the fit split, they give it probability "
    "exactly zero, and log-loss charges log(1e12) ≈ 27.6 nats for every evaluation example that then turns out to "
    "be that class.")
DEFAULTS: dict[str, Any] = {f"{KEY}_methods": list(DEFAULT_METHODS), f"{KEY}_bins": 15,
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


# ---------------------------------------------------------------------------------------------
# Cached computation. A predictions key is a content key: the model file's sha256, the data spec, the device and
# the input mask ratio; a widget change on data seen before only reads these caches.


def _key(m: ModelEntry, spec: str, device: str, mask_ratio: float = 0.0) -> str:
    return f"{file_digest(m.path)}|{spec}|{device}|{mask_ratio:g}"


@st.cache_data(show_spinner=False, max_entries=256)
def _fitted(fit_key: str, eval_key: str, _fit: Predictions, _eval: Predictions, method: str, n_bins: int,
            n_boot: int) -> MethodResult:
    """One method fitted on the fit split and measured on the evaluation split (report, JSON, reliability bins)."""
    return fit_method(_fit, _eval, method, n_bins, n_boot=n_boot)


@st.cache_data(show_spinner=False, max_entries=128)
def _uncalibrated_bins(eval_key: str, _eval: Predictions, n_bins: int) -> ReliabilityBins:
    """Reliability bins of the model as it is."""
    return top_label_bins(_eval.probabilities(), _eval.labels, n_bins)


@st.cache_data(show_spinner=False, max_entries=128)
def _curve(key: str, _preds: Predictions, n_bins: int) -> TemperatureCurve:
    """NLL and ECE of one split on the slider's temperature grid, with the exact NLL optimum."""
    return temperature_curve(_preds.scores(), _preds.labels, list(T_GRID), n_bins)


@st.cache_data(show_spinner=False, max_entries=128)
def _ece(key: str, _preds: Predictions, n_bins: int) -> float:
    """ECE of the uncalibrated predictions."""
    return ece(_preds.probabilities(), _preds.labels, n_bins)


@st.cache_data(show_spinner=False, max_entries=1024)
def _mts_point(digest: str, _path: str, fit_spec: str, eval_spec: str, ratio: float, n_bins: int,
               device: str) -> MTSPoint:
    """One point of the MTS curve: T fitted on the fit split with inputs masked at `ratio`, scored on clean inputs."""
    return mts_curve(_path, fit_spec, eval_spec, [ratio], n_bins=n_bins, device=device)[0]


# ---------------------------------------------------------------------------------------------
# Widgets


def _is_checkpoint(m: ModelEntry) -> bool:
    return m.runnable


def _split_options(m: ModelEntry, dataset: str) -> tuple[list[str], list[str]]:
    """Fit-split and evaluation-split specs for a model: the dataset's splits (evaluation also on the shifted
    test sets) for a checkpoint; the splits a predictions bundle carries (and all its rows) for a bundle."""
    if _is_checkpoint(m) and m.dataset in DATASET_NAMES:
        ds = m.dataset
        return [f"{ds}:{s}" for s in ("val", "train", "test")], [str(s) for s in spec_choices(ds)]
    whole = predictions(m, f"{dataset}:all")
    present = []
    if whole.split is not None:
        names = whole.split_names
        present = [n for i, n in enumerate(names) if (whole.split == i).any()]
    order = sorted(present, key=lambda n: (n != "val", n != "test", n))
    specs = [f"{dataset}:{s}" for s in order] + [f"{dataset}:all"]
    return specs, specs


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
    with c1:
        name = st.selectbox("ModelEntry", list(models), key=mkey, format_func=lambda n: models[n].title,
                            help="One of the models selected in the sidebar (the first by default).")
    m = models[name]
    fit_opts, eval_opts = _split_options(m, sel.dataset)
    fkey, ekey = f"{KEY}_fit_{sel.dataset}", f"{KEY}_eval_{sel.dataset}"
    if st.session_state.get(fkey) not in fit_opts:
        st.session_state[fkey] = fit_opts[0]
    wanted = sel.spec
    if wanted == st.session_state[fkey] or wanted.endswith(":all"):  # rows that overlap the fit split
        wanted = next((s for s in eval_opts if s != st.session_state[fkey] and not s.endswith(":all")), wanted)
    _follow(ekey, f"_{KEY}_eval_seen_{sel.dataset}", eval_opts, wanted)
    with c2:
        fit_spec = st.selectbox("Fit split", fit_opts, key=fkey, format_func=lambda s: DataSpec.of(s).label,
                                help="The held-out rows each calibrator is fitted on (val, the calibration split, by "
                                     "default). Fitting on train shows why not to: the model has memorised it.")
    with c3:
        eval_spec = st.selectbox("Evaluation split", eval_opts, key=ekey, format_func=lambda s: DataSpec.of(s).label,
                                 help="Where the before/after numbers are measured; it follows the sidebar's split. "
                                      "The shifted test sets show how a calibrator fitted on clean data holds up "
                                      "under corruption.")
    options = list(CALIBRATORS) + (["mts"] if _is_checkpoint(m) else [])
    chosen = [k for k in st.session_state[f"{KEY}_methods"] if k in options]
    dropped_mts = "mts" in st.session_state[f"{KEY}_methods"] and "mts" not in options
    st.session_state[f"{KEY}_methods"] = chosen
    with c4, st.expander("More options"):
        n_bins = st.slider("ECE bins", 5, 30, key=f"{KEY}_bins",
                           help="Equal-width bins closed on the right, (lo, hi]; 15 as in Guo et al.")
        n_boot = st.select_slider("Bootstrap resamples", BOOT_CHOICES, key=f"{KEY}_boot",
                                  help="Seeded percentile bootstrap of the evaluation rows for the table's intervals.")
        mts_r = st.select_slider("MTS mask ratio r", MTS_GRIDS["fine"][1:], key=f"{KEY}_mts_r",
                                 disabled=not _is_checkpoint(m),
                                 help="For the method 'Masked temperature scaling': each input element of the fit "
                                      "split is zeroed with probability r before T is fitted.")
    methods = st.multiselect("Methods", options, key=f"{KEY}_methods", format_func=LABELS.get,
                             help="Each is fitted on the fit split and drawn beside the uncalibrated model. "
                                  "'What each method does' at the bottom explains them.")
    if dropped_mts or not _is_checkpoint(m):
        st.caption("Masked temperature scaling is not offered for this model: it masks the *inputs* and runs the "
                   "model again, and a predictions bundle holds only the model's outputs.")
    return {"model": m, "fit_spec": fit_spec, "eval_spec": eval_spec, "methods": list(methods),
            "n_bins": int(n_bins), "n_boot": int(n_boot), "mts_r": float(mts_r)}


# ---------------------------------------------------------------------------------------------
# Output


@st.fragment
def _manual_temperature(fit_key: str, eval_key: str, fit: Predictions, ev: Predictions, n_bins: int,
                        where: str) -> None:
    """The teaching view: a log-scaled temperature slider that redraws the diagram, NLL and ECE at once. A
    fragment, so dragging the slider reruns only this part of the page."""
    fit_curve, eval_curve = _curve(fit_key, fit, n_bins), _curve(eval_key, ev, n_bins)
    t_star = fit_curve.optimal_temperature
    tkey = f"{KEY}_temperature"
    if st.session_state.get(tkey) not in T_GRID:
        st.session_state[tkey] = 1.0

    def snap(t: float) -> None:
        st.session_state[tkey] = nearest_temperature(T_GRID, t)

    s1, s2, s3 = st.columns([5, 1.3, 1.3], vertical_alignment="bottom")
    with s1:
        t = float(st.select_slider("Temperature T (log scale)", T_GRID, key=tkey, format_func=lambda v: f"{v:g}",
                                   help="softmax(logits / T). The slider moves in equal steps of log T, from 0.1 to "
                                        "10; the arrow keys step it once the handle has focus."))
    with s2:
        st.button(f"T* = {t_star:.3g} (fitted)", key=f"{KEY}_btn_snap", on_click=snap, args=(t_star,),
                  help="Move the slider to the grid value nearest the temperature that minimises the fit "
                       "split's NLL: what temperature scaling picks.", width="stretch")
    with s3:
        st.button("T = 1 (as trained)", key=f"{KEY}_btn_reset", on_click=snap, args=(1.0,), width="stretch")
    now = at_temperature(ev.scores(), ev.labels, t, n_bins)
    base = at_temperature(ev.scores(), ev.labels, 1.0, n_bins)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Temperature T", f"{t:g}", help=f"Fitted T* = {t_star:.6g} (exact optimum on the fit split).")
    moved = t != 1.0
    m2.metric("NLL (evaluation)", f"{now.nll:.4f}", delta=f"{now.nll - base.nll:+.4f} vs T = 1" if moved else None,
              delta_color="inverse")
    m3.metric(f"ECE (evaluation, {n_bins} bins)", f"{now.ece:.4f}",
              delta=f"{now.ece - base.ece:+.4f} vs T = 1" if moved else None, delta_color="inverse")
    m4.metric("Accuracy (evaluation)", f"{now.accuracy:.4f}", delta="unchanged by T", delta_color="off",
              delta_arrow="off")
    left, right = st.columns([1, 1.15])
    with left:
        note = f"T = {t:g} · NLL {now.nll:.4f} · ECE {now.ece:.4f}"
        fig = reliability_figure(now.bins, title=f"Evaluation split at T = {t:g}", note=note)
        fig.update_layout(height=460)
        st.plotly_chart(fig, width="stretch", key=f"{KEY}_manual_diagram")
    with right:
        st.plotly_chart(temperature_teaching_figure(fit_curve, eval_curve, t), width="stretch",
                        key=f"{KEY}_manual_curve")
    st.caption(f"{where}. The star is temperature scaling's choice: the exact minimum of the fit split's NLL "
               f"(T* = {t_star:.4g}). The evaluation split's own minimum lies at T = "
               f"{eval_curve.optimal_temperature:.4g}, but a real deployment cannot see that split, which is why TS "
               "is fitted elsewhere. NLL is smooth in T and has a single minimum; ECE is a binned, jumpy quantity "
               "whose minimum need not coincide with NLL's.")


def _cell(value: float | None, interval: list[float | None] | None) -> str:
    if value is None:
        return "—"
    if not interval or None in interval:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def _delta(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


TABLE_METRICS = (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier"), ("accuracy", "Accuracy"), ("auroc", "AUROC"))


def _table(results: dict[str, MethodResult]) -> pd.DataFrame:
    """One column for the uncalibrated model and one per method; rows: each metric with its 95% interval and its
    change from uncalibrated, the fit split's NLL before → after, and the fitted parameters."""
    first = next(iter(results.values())).report
    columns: dict[str, dict[str, str]] = {"Uncalibrated": {}}
    for k, label in TABLE_METRICS:
        columns["Uncalibrated"][label] = _cell(first["before"][k], first["before"]["intervals"].get(k))
        columns["Uncalibrated"][f"Δ {label}"] = ""
    columns["Uncalibrated"]["NLL on the fit split"] = f"{first['fit_split']['nll_before']:.4f}"
    columns["Uncalibrated"]["fitted parameters"] = "—"
    for res in results.values():
        rep = res.report
        col: dict[str, str] = {}
        for k, label in TABLE_METRICS:
            col[label] = _cell(rep["after"][k], rep["after"]["intervals"].get(k))
            col[f"Δ {label}"] = _delta(rep["change"].get(k))
        col["NLL on the fit split"] = f"{rep['fit_split']['nll_before']:.4f} → {rep['fit_split']['nll_after']:.4f}"
        col["fitted parameters"] = parameter_summary(rep["parameters"])
        columns[rep["method_label"]] = col
    df = pd.DataFrame(columns)
    df.index.name = "metric"
    return df


def _warnings(results: dict[str, MethodResult]) -> None:
    """The reports' warnings: argmax changes and overfitting first, then anything made worse."""
    lines = []
    for res in results.values():
        rep, flags = res.report, res.report["flags"]
        head = []
        if flags["argmax_changed"]:
            head.append(f"changes the predicted class of {flags['argmax_changed_share']:.2%} of the evaluation "
                        f"examples (accuracy {flags['accuracy_change']:+.2%})")
        if flags["fits_fit_split_much_better"]:
            head.append(f"fits the fit split much better than the evaluation split (NLL gain "
                        f"{flags['fit_nll_gain']:.4f} there, {flags['eval_nll_gain']:.4f} here)")
        if flags["nll_worse"]:
            head.append(f"makes evaluation NLL worse ({rep['before']['nll']:.4f} → {rep['after']['nll']:.4f})")
        if flags["ece_worse"]:
            head.append(f"makes evaluation ECE worse ({rep['before']['ece']:.4f} → {rep['after']['ece']:.4f})")
        if flags["temperature_at_limit"]:
            head.append(f"hit the temperature limit ({flags['temperature_at_limit']})")
        if head:
            lines.append(f"- **{rep['method_label']}** " + "; ".join(head) + ".")
    if lines:
        st.warning("\n".join(lines), icon=":material/warning:")


def _fitted_section(prm: dict[str, Any], fit: Predictions, ev: Predictions, keys: tuple[str, str],
                    sel_device: str) -> dict[str, MethodResult]:
    """Fit each chosen method (cached), with a progress bar; a method that fails is an error beside the others."""
    m = prm["model"]
    results: dict[str, MethodResult] = {}
    bar = st.progress(0.0, text="Fitting …")
    for i, method in enumerate(prm["methods"]):
        bar.progress(i / len(prm["methods"]), text=f"Fitting {LABELS[method]} …")
        try:
            if method == "mts":
                r = prm["mts_r"]
                masked = predictions(m, prm["fit_spec"], mask_ratio=r)
                res = _fitted(_key(m, prm["fit_spec"], sel_device, r), keys[1], masked, ev, method, prm["n_bins"],
                              prm["n_boot"])
            else:
                res = _fitted(keys[0], keys[1], fit, ev, method, prm["n_bins"], prm["n_boot"])
            results[method] = res
        except Exception as e:  # one method that cannot be fitted must not hide the others
            st.error(f"{LABELS[method]}: {type(e).__name__}: {e}")
    bar.empty()
    return results


def _export(results: dict[str, MethodResult], model: ModelEntry) -> None:
    """Pick a fitted calibrator and download it as JSON."""
    pick = st.selectbox("Calibrator to export", list(results), key=f"{KEY}_export",
                        format_func=lambda k: results[k].report["method_label"])
    res = results[pick]
    text = json.dumps(res.calibrator, indent=1)
    stem = model.name.replace("/", "_")
    st.download_button(f"Download {res.report['method_label'].lower()} as JSON", text,
                       file_name=f"{stem}_{pick}.json", mime="application/json", key=f"{KEY}_btn_download",
                       icon=":material/download:")
    st.caption("Load it with `calibviz.calibrators.load_calibrator(path)` and call `.transform(logits)`; "
               "temperature, vector and matrix scaling can also be folded into the model's last layer with "
               "`calibrate_model`. Plain JSON, never pickle.")
    with st.expander("Show the JSON"):
        st.code(text if len(text) < 20_000 else text[:20_000] + "\n…", language="json")


def _mts_section(sel: Any, prm: dict[str, Any]) -> None:
    """The MTS mask-ratio curve of the zoo's CE, DM and MDT models (and the chosen model if it is a checkpoint)."""
    st.subheader("Masked temperature scaling: full-data against distilled-data models")
    m = prm["model"]
    ds = sel.dataset
    if ds not in DATASET_NAMES or prm["eval_spec"].split(":")[0].split("-")[0] != ds:
        st.info("The MTS curve needs checkpoints and one of the built-in datasets: MTS masks the *inputs* of the "
                "fit split and runs the model again, which a predictions bundle cannot do.")
        return
    if not _is_checkpoint(m):
        st.info(f"{m.title} is a predictions bundle: MTS needs the model itself (it masks the inputs and runs the "
                "model again), so the curve shows the zoo's checkpoints only.")
    zoo = {e.recipe: e for e in zoo_models(ds)}
    zoo_names = {z.name for z in zoo.values()}
    models = [zoo[r] for r in MTS_RECIPES if r in zoo]
    if _is_checkpoint(m) and m.name not in {z.name for z in models}:
        models.insert(0, m)
    if not models:
        st.info(f"The zoo has no CE, DM or MDT checkpoint for {ds}.")
        return
    fit_spec = prm["fit_spec"] if prm["fit_spec"].split(":")[0] == ds else f"{ds}:val"
    eval_spec, n_bins = prm["eval_spec"], prm["n_bins"]
    g1, g2 = st.columns([2, 1])
    with g1:
        grid = st.radio("Mask ratios", list(MTS_GRIDS), key=f"{KEY}_mts_grid", horizontal=True,
                        format_func=lambda g: ("coarse: r ∈ {0, .05, .1, .2, .3, .5}" if g == "coarse"
                                               else "fine: r = 0 to 0.5 in steps of 0.05 (one inference per r)"))
    with g2:
        metric = st.radio("Curve", ("ece", "nll"), key=f"{KEY}_mts_metric", horizontal=True, format_func=str.upper)
    ratios = MTS_GRIDS[grid]
    curves: dict[str, list[MTSPoint]] = {}
    summaries: dict[str, MTSSummary] = {}
    bar = st.progress(0.0, text="Masked inference …")
    total, done = len(models) * len(ratios), 0
    for e in models:
        label = f"{e.title} (full data)" if e.recipe == "ce" and e.name in zoo_names else e.title
        try:
            pts = []
            for r in ratios:
                bar.progress(done / total, text=f"{e.title}: fitting T on inputs masked at r = {r:g} …")
                pts.append(_mts_point(file_digest(e.path), str(e.path), fit_spec, eval_spec, float(r), n_bins,
                                      sel.device))
                done += 1
            curves[label] = pts
            uncal = _ece(_key(e, eval_spec, sel.device), predictions(e, eval_spec), n_bins)
            summaries[e.recipe if e.name in zoo_names else e.name] = mts_summary(e.title, pts, uncal)
        except Exception as exc:  # one model that cannot be run must not hide the others
            st.error(f"{e.title}: {type(exc).__name__}: {exc}")
    bar.empty()
    if not curves:
        return
    left, right = st.columns([1.2, 1])
    with left:
        fig = mts_curve_figure(curves, metric=metric)
        fig.update_layout(template="plotly_white", height=430, title=None)
        ys = [getattr(p, metric) for pts in curves.values() for p in pts]
        if min(ys) > 0 and max(ys) / min(ys) > 8:  # one steep curve would flatten the others: log scale
            ticks = [m * 10.0 ** e for e in range(-4, 2) for m in (1, 2, 5)]
            fig.update_yaxes(type="log", title_text=f"{metric.upper()} on the evaluation split (log scale)",
                             tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], minor={"showgrid": False})
        st.plotly_chart(fig, width="stretch", key=f"{KEY}_mts_chart")
    with right:
        st.markdown(f"Fitted on **{DataSpec.of(fit_spec).label}** with masked inputs, measured on "
                    f"**{DataSpec.of(eval_spec).label}** "
                    "with clean inputs; r = 0 (the square) is plain temperature scaling. Computed now, on these "
                    "checkpoints:")
        st.markdown("\n".join(f"- {s.sentence}" for s in summaries.values()))
        if "ce" in summaries:
            distilled = [summaries[r] for r in ("dm", "mdt") if r in summaries]
            st.markdown(distilled_vs_full(summaries["ce"], distilled))
        st.caption("Zhu et al. (ICCV 2023) found that TS cannot fix models trained on distilled data, and that MTS "
                   "does. The best r above is picked on the evaluation split itself, which flatters MTS; 'helps' "
                   "needs a gain over plain TS of more than 0.005 and 10% of its ECE.")


def _methods_help() -> None:
    with st.expander("What each method does"):
        for k, text in METHOD_DESCRIPTIONS.items():
            st.markdown(f"**{LABELS[k]}** (`{k}`). {text}")
        st.markdown(ZERO_PROB_NOTE)


def body() -> None:
    sel = selection()
    if sel is None:
        return
    if not sel.models:
        st.warning("Select at least one model in the sidebar.")
        return
    restore_page_state(KEY, DEFAULTS)
    prm = _controls(sel)
    m = prm["model"]
    fit, ev = predictions(m, prm["fit_spec"]), predictions(m, prm["eval_spec"])
    keys = (_key(m, prm["fit_spec"], sel.device), _key(m, prm["eval_spec"], sel.device))
    where = (f"**{m.title}**, fitted on **{DataSpec.of(prm['fit_spec']).label}** ({fit.n:,} rows), evaluated on "
             f"**{DataSpec.of(prm['eval_spec']).label}** ({ev.n:,} rows)")
    if prm["fit_spec"] == prm["eval_spec"]:
        st.warning("The fit and evaluation splits are the same rows: every method looks better here than it will "
                   "on new data. Pick a different evaluation split.")

    st.subheader("Temperature by hand")
    _manual_temperature(keys[0], keys[1], fit, ev, prm["n_bins"], where)

    st.subheader("Fitted methods side by side")
    if not prm["methods"]:
        st.info("Pick one or more methods above.")
        _methods_help()
        _mts_section(sel, prm)
        return
    results = _fitted_section(prm, fit, ev, keys, sel.device)
    if results:
        first = next(iter(results.values())).report
        panels = {"Uncalibrated": _uncalibrated_bins(keys[1], ev, prm["n_bins"])}
        notes = {"Uncalibrated": metric_note(first["before"], None, {"ece": "ECE", "nll": "NLL"})}
        for res in results.values():
            label = res.report["method_label"]
            panels[label] = res.bins
            notes[label] = metric_note(res.report["after"], None, {"ece": "ECE", "nll": "NLL"})
        cols = 3 if len(panels) in (3, 5, 6) or len(panels) > 8 else min(4, len(panels))
        st.plotly_chart(reliability_grid_figure(panels, notes, cols=cols), width="stretch", key=f"{KEY}_grid")
        st.caption(f"{where}. Top-label reliability diagrams, {Binning(prm['n_bins']).convention}; bars show each "
                   "bin's accuracy with its 95% Wilson interval, the hatched red part the gap to the mean "
                   "confidence; the grey histogram beneath counts the predictions per bin.")
        _warnings(results)
        st.markdown("**Metrics with 95% intervals and the change from uncalibrated, one column per method**")
        st.table(_table(results))
        st.caption(f"Each value: the estimate on all {ev.n:,} evaluation rows, then [low, high] of a 95% percentile "
                   f"bootstrap ({first['before']['n_boot']} resamples, seed {first['before']['seed']}). Δ = method − "
                   "uncalibrated: negative is better for ECE, NLL and Brier, positive for accuracy and AUROC. "
                   "Temperature scaling and ensemble TS never change the predicted class, so their accuracy Δ is 0. "
                   "A method whose fit-split NLL falls much further than its evaluation NLL is fitting noise. "
                   "Bars below: " + ", ".join(f"{SHORT[k]} = {LABELS[k]}" for k in results) + ".")
        if {"histogram", "isotonic"} & set(results):
            st.markdown(ZERO_PROB_NOTE)
        left, right = st.columns([1.4, 1])
        with left:
            fig = method_comparison_figure({SHORT[k]: r.report for k, r in results.items()}, metrics=("ece", "nll"))
            fig.update_layout(template="plotly_white", height=360)
            fig.update_xaxes(tickangle=0)
            st.plotly_chart(fig, width="stretch", key=f"{KEY}_bars")
        with right:
            st.markdown("**Take a calibrator to production**")
            _export(results, m)
    _methods_help()
    _mts_section(sel, prm)


guarded(body)
save_page_state(KEY)

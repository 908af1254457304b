"""Features: how each model's penultimate layer arranges the classes. PCA at once, UMAP on request (fitted in a
background thread, cached on disk), the Müller template projection of three classes, class separation R² and
linear CKA between the compared models."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
from calibviz.data import DATASET_NAMES, DataSpec, load_dataset
from calibviz.features import (
    TemplateProjection,
    UmapEmbedding,
    UmapParams,
    cached_umap_for_predictions,
    cka_matrix,
    class_separation,
    gallery_rows,
    pca,
    predictions_source_digest,
    projection_spread,
    rows_for_sample_ids,
    stratified_sample,
    template_projection_for,
    umap_for_predictions,
)
from calibviz.plots.features import (
    cka_heatmap_figure,
    embedding_figure,
    gallery_figure,
    separation_bar_figure,
    template_projection_figure,
)
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry

KEY = "features"
MAX_PANELS = 4  # scatter charts and projection columns: each embedding is one WebGL chart (at most ~8 a page)
MAX_GALLERY = 24
SAMPLE_SIZES = (1000, 2000, 5000, 10000, 20000)
METHODS = ("PCA", "UMAP")
COLORS = {"class": "class", "correctness": "correct / wrong", "confidence": "confidence"}
COMPARE = {"sidebar": "the sidebar's models", "ce_ls": "CE vs LS teacher",
           "ls_students": "LS teacher + students T=1, T=4", "ce_students": "CE teacher + students T=1, T=4"}
PRESETS = {"ce_ls": ("ce", "ls"), "ls_students": ("ls", "kd_ls_t1", "kd_ls_t4"),
           "ce_students": ("ce", "kd_ce_t1", "kd_ce_t4")}
DEFAULTS = {f"{KEY}_compare": "sidebar", f"{KEY}_method": "PCA", f"{KEY}_color": "class", f"{KEY}_n": 5000,
            f"{KEY}_neighbors": 15, f"{KEY}_min_dist": 0.1}

st.title("Penultimate features")
explain(
    "The last hidden layer of a classifier turns every input into a vector; the final linear layer then scores "
    "each class by comparing that vector with the class's **template** (its weight row). This page looks at those "
    "vectors. Each dot below is one input of the chosen split, squashed to 2-D: PCA (a straight projection that "
    "keeps the most variance) appears at once; UMAP (which keeps neighbours together) takes a few seconds and is "
    "saved for the next visit. Click or lasso points to see the inputs. Müller et al. (2019) found that label "
    "smoothing (LS) squeezes every class into a tight blob, all blobs equally far apart, which erases the hints "
    "about which classes look alike that a distilled student learns from; the **template projection** shows three "
    "classes of your choice in the plane of their templates, so you can see it. **R²** puts a number on how "
    "separated the classes are (1: each class collapses to a point) and **CKA** on how alike two models' vectors "
    "are (1: the same up to rotation and scale)."
)


# ---------------------------------------------------------------------------------------------
# Cached computation, keyed on Predictions.digest() and small parameters


@st.cache_data(show_spinner=False, max_entries=64)
def _pca(digest: str, _preds: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA of all rows' features: (coords, explained variance ratio)."""
    return pca(_preds.features, q=2)


@st.cache_data(show_spinner=False, max_entries=64)
def _sample(digest: str, _preds: Predictions, size: int | None) -> np.ndarray:
    """The stratified sample of rows the embeddings show (the same rows UMAP embeds)."""
    return stratified_sample(_preds.labels, size, seed=0)


@st.cache_data(show_spinner=False, max_entries=256)
def _projection(digest: str, _preds: Predictions, classes: tuple[int, int, int]) -> TemplateProjection:
    """The Müller template projection of one model on one split."""
    return template_projection_for(_preds, classes)


@st.cache_data(show_spinner=False, max_entries=256)
def _spread(digest: str, _preds: Predictions, classes: tuple[int, int, int]) -> float:
    return projection_spread(_projection(digest, _preds, classes))


@st.cache_data(show_spinner=False, max_entries=128)
def _separation(digest: str, _preds: Predictions) -> float:
    """Class separation R² of one model's features on one split."""
    return class_separation(_preds.features, _preds.labels)


@st.cache_data(show_spinner=False, max_entries=64)
def _cka(digests: tuple[str, ...], _features: list[np.ndarray]) -> np.ndarray:
    """Linear CKA between every pair of the models' features (rows aligned)."""
    return cka_matrix(_features)


# ---------------------------------------------------------------------------------------------
# UMAP in a background thread: the page run ends at once (PCA shown), a small fragment polls the fit's progress
# and reruns the page when it is done; a widget change meanwhile does not throw the fit away


@dataclass
class _UmapJob:
    label: str
    fraction: float = 0.0
    message: str = "starting (loading umap-learn)"
    result: UmapEmbedding | None = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def report(self, fraction: float, message: str) -> None:
        self.fraction, self.message = float(fraction), message


@st.cache_resource(show_spinner=False)
def _umap_jobs() -> tuple[dict[tuple, Any], threading.Lock]:
    """UMAP fits started by this server process (running, finished or failed), shared by sessions and reruns."""
    return {}, threading.Lock()


def _run_job(job: _UmapJob, preds: Predictions, params: UmapParams) -> None:
    try:
        job.result = umap_for_predictions(preds, params, progress=job.report)
    except Exception as e:  # shown in the page, with a retry button
        job.error = f"{type(e).__name__}: {e}"
    finally:
        job.done.set()


def _umap_key(preds: Predictions, params: UmapParams) -> tuple:
    return predictions_source_digest(preds), str(preds.meta.get("data_spec", "")), params


def _umap(preds: Predictions, params: UmapParams, label: str) -> UmapEmbedding | _UmapJob:
    """The embedding from the disk cache (or a finished fit) at once, else the running or failed fit."""
    hit = cached_umap_for_predictions(preds, params)
    if hit is not None:
        return hit
    jobs, lock = _umap_jobs()
    with lock:
        job = jobs.get(_umap_key(preds, params))
        if job is None:
            job = jobs[_umap_key(preds, params)] = _UmapJob(label)
            threading.Thread(target=_run_job, args=(job, preds, params), name=f"umap {label}", daemon=True).start()
    return job.result if job.result is not None else job


def _forget_failed() -> None:
    jobs, lock = _umap_jobs()
    with lock:
        for k in [k for k, j in jobs.items() if j.done.is_set() and j.result is None]:
            del jobs[k]


def _progress(jobs: list[Any]) -> None:
    """A progress bar for the running fits, refreshed twice a second by a fragment; when every fit has ended the
    whole page reruns and shows the embeddings (now in the disk cache)."""

    @st.fragment(run_every=0.5)
    def poll() -> None:
        if all(j.done.is_set() for j in jobs):
            st.rerun()
        left = [j for j in jobs if not j.done.is_set()]
        run = next((j for j in left if j.fraction > 0), left[0])  # the one holding the UMAP lock, if any
        frac = min(max((len(jobs) - len(left) + run.fraction) / len(jobs), 0.0), 1.0)
        st.progress(frac, text=f"UMAP, {len(left)} of {len(jobs)} fits left · {run.label}: {run.message}. PCA is "
                               "shown until it is done; the page stays usable.")

    poll()


# ---------------------------------------------------------------------------------------------
# Widgets


def _compared_models(dataset: str, sidebar_models: tuple[ModelEntry, ...]) -> list[ModelEntry]:
    """The models this page compares: the sidebar's, or a quick-compare preset from the zoo."""
    zoo = {e.recipe: e for e in zoo_models(dataset)}
    offered = ["sidebar"] + [k for k, recipes in PRESETS.items() if all(r in zoo for r in recipes)]
    if st.session_state[f"{KEY}_compare"] not in offered:
        st.session_state[f"{KEY}_compare"] = "sidebar"
    choice = st.selectbox("Compare", offered, key=f"{KEY}_compare", format_func=COMPARE.get,
                          help="The stories of the papers in one click: CE against LS teachers (Müller et al. "
                               "2019), and an LS or CE teacher with its students distilled at T = 1 and T = 4 "
                               "(Chandrasegaran et al. 2022). 'The sidebar's models' follows the sidebar.")
    if choice == "sidebar":
        return list(sidebar_models)
    return [zoo[r] for r in PRESETS[choice]]


def _labels(models: list[ModelEntry]) -> dict[str, str]:
    """Display names: titles, disambiguated by name where two models share one."""
    titles = [m.title for m in models]
    return {m.name: (m.title if titles.count(m.title) == 1 else f"{m.title} ({m.name})") for m in models}


def _class_triple(dataset: str, names: list[str]) -> tuple[int, int, int] | None:
    """Three class pickers; None (with a warning) unless the three classes are distinct."""
    if len(names) < 3:
        st.info("The template projection needs at least three classes.")
        return None
    cols = st.columns([1, 1, 1, 2.4])[:3]
    picked = []
    for i, col in enumerate(cols):
        key = f"{KEY}_class_{dataset}_{i}"
        if st.session_state.get(key) not in range(len(names)):
            st.session_state[key] = i
        with col:
            picked.append(st.selectbox(f"Class {'abc'[i]}", range(len(names)), key=key,
                                       format_func=lambda c: names[c]))
    if len(set(picked)) < 3:
        st.warning("Pick three different classes: the projection needs the plane through three templates.")
        return None
    return int(picked[0]), int(picked[1]), int(picked[2])


# ---------------------------------------------------------------------------------------------
# Sections


def _load(models: list[ModelEntry], labels: dict[str, str], spec: str, *,
          secondary: bool = False) -> dict[str, Predictions]:
    """Each model's predictions on a spec; a model that fails is reported and left out. On a secondary split (the
    projection's train / held-out rows) a missing split is a note, not an error: a bundle may hold only test rows."""
    out = {}
    for m in models:
        try:
            out[m.name] = predictions(m, spec)
        except Exception as e:  # one broken model must not hide the others
            if secondary:
                st.info(f"{labels[m.name]}: no predictions on {DataSpec.of(spec).label} ({e}); it is left out of the "
                        "projection and R² there.")
            else:
                st.error(f"{labels[m.name]} on {spec}: {type(e).__name__}: {e}")
    return out


def _selected_ids(event: Any) -> list[float]:
    """Sample ids (customdata[0]) of the points selected on an embedding chart. The browser sends a point's
    customdata as a list, or as {"0": id, "1": label, ...} when the figure carried a typed array."""
    points = event.get("selection", {}).get("points", []) if isinstance(event, dict) else []
    out = []
    for p in points:
        cd = p.get("customdata")
        first = cd[0] if isinstance(cd, (list, tuple)) and cd else cd.get("0") if isinstance(cd, dict) else None
        if isinstance(first, (int, float)):
            out.append(first)
    return out


def _gallery(label: str, preds: Predictions, spec: str, ids: list[float], key: str) -> None:
    """The inputs of the selected points (images or signals): wrong predictions first, then the least confident."""
    if not ids:
        return
    if spec.split(":")[0].split("-")[0] not in DATASET_NAMES or preds.sample_id is None:
        st.caption(f"{label}: {len(ids)} points selected; their inputs are not available for this data.")
        return
    ds = load_dataset(spec)
    prow = gallery_rows(preds, rows_for_sample_ids(preds.sample_id, ids), MAX_GALLERY)
    xrow = rows_for_sample_ids(ds.sample_id, preds.sample_id[prow])
    if prow.size == 0 or xrow.size != prow.size:
        return
    probs = preds.probabilities()[prow]
    names = preds.class_names
    caps = [f"{names[int(y)]}→{names[int(q)]} {c:.2f}"
            for y, q, c in zip(preds.labels[prow], probs.argmax(1), probs.max(1), strict=True)]
    more = f"; the {MAX_GALLERY} shown are the wrong ones first, then the least confident" if len(ids) > MAX_GALLERY \
        else "; wrong ones first, then the least confident"
    st.markdown(f"**{label}: {len(ids)} points selected**{more} · caption: label→prediction, confidence")
    st.plotly_chart(gallery_figure(ds.x[xrow], caps, ncols=12), key=key, width="stretch")


def _draw_embeddings(items: list[dict[str, Any]], color_by: str, spec: str) -> None:
    """One scatter per model and, under them, the inputs of the points selected on each."""
    ncol = len(items) if len(items) <= 3 else 2
    cols = st.columns(ncol)
    events = []
    for i, it in enumerate(items):
        with cols[i % ncol]:
            fig = embedding_figure(it["coords"], it["preds"].subset(it["rows"]), color_by, title=it["label"],
                                   axis_titles=it["axes"], marker_size=4 if len(it["rows"]) > 2000 else 6)
            fig.update_layout(height=430, title={"font": {"size": 15}})
            events.append(st.plotly_chart(fig, key=f"{KEY}-chart-{it['method'].lower()}-{i}", on_select="rerun",
                                          selection_mode=("points", "box", "lasso"), width="stretch"))
    for i, (it, ev) in enumerate(zip(items, events, strict=True)):
        _gallery(it["label"], it["preds"], spec, _selected_ids(ev), key=f"{KEY}-gallery-{it['method'].lower()}-{i}")


def _embeddings(shown: list[ModelEntry], labels: dict[str, str], preds: dict[str, Predictions], spec: str,
                method: str, color_by: str, size: int, umap_params: dict[str, Any]) -> None:
    """PCA or UMAP scatters of the models' features on `spec`. A UMAP not in the disk cache yet is fitted in the
    background while PCA is shown in its place, with a progress bar; the page reruns when it is done."""
    items, running, failed = [], [], []
    for m in shown:
        p = preds[m.name]
        sample = None if size >= p.n else size
        d = p.digest()
        rows = _sample(d, p, sample)
        coords, ratio = _pca(d, p)
        item = {"label": labels[m.name], "preds": p, "rows": rows, "coords": coords[rows], "method": "PCA",
                "axes": (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%})")}
        if method == "UMAP":
            got = _umap(p, UmapParams(sample_size=sample, **umap_params), labels[m.name])
            if isinstance(got, UmapEmbedding):
                item |= {"rows": got.indices, "coords": got.coords, "axes": ("UMAP 1", "UMAP 2"), "method": "UMAP"}
            elif got.done.is_set():
                failed.append(f"{labels[m.name]}: {got.error}")
            else:
                running.append(got)
        items.append(item)
    n_all = preds[shown[0].name].n
    shown_n = len(items[0]["rows"])
    note = (f"{shown_n:,} of {n_all:,} points (a class-stratified sample)" if shown_n < n_all
            else f"all {n_all:,} points")
    shown_as = "PCA for now (UMAP is on its way)" if running and len(running) == len(items) else method
    st.caption(f"**{shown_as}** of the penultimate features on **{DataSpec.of(spec).label}**, {note}; coloured by "
               f"{COLORS[color_by]}. Hover a point for its sample id, label, prediction and confidence; click it, "
               "or drag a box or lasso (toolbar), to see the inputs. "
               + ("PCA axes: the two directions of largest variance (fitted on all points of the split). "
                  if method == "PCA" else
                  "UMAP keeps near neighbours together; distances between far-apart clusters mean little. "))
    if running:
        _progress(running)
    if failed:
        st.error("UMAP failed, PCA is shown instead. " + " · ".join(failed))
        if st.button("Retry UMAP", key=f"{KEY}-retry"):
            _forget_failed()
            st.rerun()
    _draw_embeddings(items, color_by, spec)


def _projection_section(shown: list[ModelEntry], labels: dict[str, str], train: dict[str, Predictions],
                        held: dict[str, Predictions], held_spec: str, dataset: str, names: list[str]) -> None:
    """The Müller template projection of a chosen class triple, one column per model, train above held-out."""
    st.subheader("Template projection (Müller et al. 2019)")
    ok = [m for m in shown if all(m.name in d and d[m.name].head_weight is not None and d[m.name].features
                                  is not None for d in (train, held))]
    for m in shown:
        if any(m.name in d and d[m.name].head_weight is None for d in (train, held)):
            st.info(f"{labels[m.name]}: these predictions carry no final-layer weights ('head_weight'), which the "
                    "template projection needs; it is left out here.")
    triple = _class_triple(dataset, names)
    if triple is None or not ok:
        return
    held_name = DataSpec.of(held_spec).label
    panels, spread_rows = {}, []
    for m in ok:
        pt, ph = train[m.name], held[m.name]
        panels[labels[m.name]] = {"train": _projection(pt.digest(), pt, triple),
                                  held_name: _projection(ph.digest(), ph, triple)}
        spread_rows.append({"model": labels[m.name], "spread, train": _spread(pt.digest(), pt, triple),
                            f"spread, {held_name}": _spread(ph.digest(), ph, triple)})
    fig = template_projection_figure(panels, names, class_colored_templates=True)
    fig.update_annotations(font_size=13)
    fig.update_layout(margin={"t": 30})
    st.plotly_chart(fig, key=f"{KEY}-chart-projection", width="stretch")
    left, right = st.columns([1, 1.4])
    with left:
        df = pd.DataFrame(spread_rows)
        st.table(df.style.format({c: "{:.3f}" for c in df.columns if c != "model"}).hide(axis="index"))
    with right:
        st.caption(
            f"Top row: the train split; bottom row: held-out **{held_name}**. Every example of classes "
            f"{', '.join(names[c] for c in triple)} in the plane through their three templates (× marks, joined by "
            "the triangle): the activations with a 1 appended, minus template a, on an orthonormal basis of the "
            "plane. Each panel has its own scale. **What the papers predict:** with label smoothing each class "
            "becomes a tight blob and the blobs sit equally far apart (Müller et al. 2019); with cross-entropy "
            "the clouds are broader and stretch toward the classes they resemble. For students of an LS teacher, "
            "Chandrasegaran et al. (2022) report that distilling at a higher T makes the clusters *diffuse* "
            "toward similar classes. **Spread** (table) = mean RMS radius of a class's cloud / mean distance "
            "between the three cloud centres, in this plane: smaller is tighter. "
            + _spread_story(spread_rows, held_name))


def _spread_story(rows: list[dict[str, Any]], held: str) -> str:
    """A live sentence: which compared model has the tightest clusters in the plane, on each split."""
    if len(rows) < 2:
        return ""
    parts = []
    for col in ("spread, train", f"spread, {held}"):
        vals = {r["model"]: r[col] for r in rows if np.isfinite(r[col])}
        if vals:
            best = min(vals, key=vals.get)
            parts.append(f"{col.split(', ', 1)[1]}: **{best}** ({vals[best]:.3f})")
    return "Tightest here — " + "; ".join(parts) + "." if parts else ""


def _verdict(rises: list[bool], want_rise: bool) -> str:
    agree = [r == want_rise for r in rises]
    if all(agree):
        return "this agrees"
    if not any(agree):
        return "this does **not** agree"
    return "this agrees on one split only"


def _separation_story(by_recipe: dict[str, str], r2: dict[str, tuple[float, float]], held: str) -> list[str]:
    """Live sentences comparing the zoo's pairs with what the papers predict (only for pairs being compared)."""
    out = []

    def pair(a: str, b: str) -> tuple[tuple[float, float], tuple[float, float], list[bool]] | None:
        if a not in by_recipe or b not in by_recipe:
            return None
        x, y = r2[by_recipe[a]], r2[by_recipe[b]]
        return x, y, [y[0] > x[0], y[1] > x[1]]

    if got := pair("ce", "ls"):
        x, y, rises = got
        out.append(f"**CE → LS.** Müller et al. (2019) and Kornblith et al. (2021): label smoothing increases class "
                   f"separation, so LS should score higher. Here R² goes {x[0]:.3f} → {y[0]:.3f} on train and "
                   f"{x[1]:.3f} → {y[1]:.3f} on {held}: {_verdict(rises, True)}.")
    if got := pair("kd_ls_t1", "kd_ls_t4"):
        x, y, rises = got
        v = _verdict(rises, False)
        out.append(f"**LS teacher's students, T=1 → T=4.** Chandrasegaran et al. (2022): at a higher temperature "
                   f"an LS teacher's student diffuses toward similar classes, so its separation should drop. Here "
                   f"R² goes {x[0]:.3f} → {y[0]:.3f} on train and {x[1]:.3f} → {y[1]:.3f} on {held}: {v}"
                   + (" (the predicted diffusion does not show in this zoo)." if "not" in v else "."))
    if got := pair("kd_ce_t1", "kd_ce_t4"):
        x, y, rises = got
        out.append(f"**CE teacher's students, T=1 → T=4.** No diffusion is predicted for a CE teacher. Here R² "
                   f"goes {x[0]:.3f} → {y[0]:.3f} on train and {x[1]:.3f} → {y[1]:.3f} on {held}.")
    return out


def _separation_section(ok: list[ModelEntry], labels: dict[str, str], train: dict[str, Predictions],
                        held: dict[str, Predictions], held_spec: str) -> None:
    """Class separation R² of every compared model on train and held-out: a table, bars and the live story."""
    st.subheader("Class separation R² (Kornblith et al. 2021)")
    held_name = DataSpec.of(held_spec).label
    r2: dict[str, tuple[float, float]] = {}
    for m in ok:
        pt, ph = train.get(m.name), held.get(m.name)
        r_tr = _separation(pt.digest(), pt) if pt is not None and pt.features is not None else float("nan")
        r_te = _separation(ph.digest(), ph) if ph is not None and ph.features is not None else float("nan")
        r2[labels[m.name]] = (r_tr, r_te)
    df = pd.DataFrame([{"model": k, "R² train": v[0], f"R² {held_name}": v[1]} for k, v in r2.items()])
    left, right = st.columns([1, 1.3])
    with left:
        st.table(df.style.format({c: "{:.4f}" for c in df.columns if c != "model"}, na_rep="—").hide(axis="index"))
        st.caption("R² = 1 − (mean cosine distance within a class) / (mean cosine distance overall), classes "
                   "weighted equally, on all examples of the split. 0: classes as mixed as random; 1: each "
                   "class collapses to one direction. Higher R² means tighter classes, and Kornblith et al. found "
                   "it comes with features that transfer worse to other tasks.")
    with right:
        fig = separation_bar_figure({k: {"train": v[0], held_name: v[1]} for k, v in r2.items()}, title="")
        fig.update_layout(height=320, margin={"t": 20}, legend={"orientation": "h", "y": 1.12})
        st.plotly_chart(fig, key=f"{KEY}-chart-r2", width="stretch")
    story = _separation_story({m.recipe: labels[m.name] for m in ok}, r2, held_name)
    if story:
        st.markdown("**What the zoo shows, measured live**\n\n" + "\n\n".join(f"- {s}" for s in story))


def _cka_section(ok: list[ModelEntry], labels: dict[str, str], preds: dict[str, Predictions], spec: str) -> None:
    """Linear CKA between the compared models' features on the same split and samples."""
    st.subheader("Similarity of representations: linear CKA")
    if len(ok) < 2:
        st.caption("CKA compares two or more models: select another one.")
        return
    ps = [preds[m.name] for m in ok]
    ids = [p.sample_id for p in ps]
    aligned = all(p.n == ps[0].n for p in ps) and (
        all(i is None for i in ids) or all(i is not None and np.array_equal(i, ids[0]) for i in ids))
    if not aligned:
        st.info("CKA needs the same examples, in the same order, for every model; these predictions do not share "
                "their sample ids on this split.")
        return
    names = [labels[m.name] for m in ok]
    mat = _cka(tuple(p.digest() for p in ps), [p.features for p in ps])
    left, right = st.columns([1, 1.3])
    with left:
        fig = cka_heatmap_figure(mat, names, title="")
        fig.update_layout(height=120 + 70 * len(names), margin={"t": 20})
        st.plotly_chart(fig, key=f"{KEY}-chart-cka", width="stretch")
    with right:
        off = [(mat[i, j], names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
        hi, lo = max(off), min(off)
        st.caption(
            f"Linear CKA of the penultimate features on **{DataSpec.of(spec).label}** (all {ps[0].n:,} examples, the "
            "same for every model). 1 means the two models' features are the same up to a rotation and a "
            "uniform scale; different widths are fine. "
            f"Here the most alike pair is **{hi[1]}** and **{hi[2]}** ({hi[0]:.3f})"
            + (f", the least alike **{lo[1]}** and **{lo[2]}** ({lo[0]:.3f})." if len(off) > 1 else ".")
            + " A student closer to its teacher in CKA has copied more of the teacher's representation."
            + _teacher_student_cka(ok, mat))


def _teacher_student_cka(models: list[ModelEntry], mat: np.ndarray) -> str:
    """A live sentence: CKA of each zoo student to its teacher at T=1 and T=4, when all three are compared."""
    at = {m.recipe: i for i, m in enumerate(models)}
    out = []
    for t in ("ce", "ls"):
        if all(r in at for r in (t, f"kd_{t}_t1", f"kd_{t}_t4")):
            out.append(f" Students of the {t.upper()} teacher, CKA to it: **{mat[at[t], at[f'kd_{t}_t1']]:.3f}** at "
                       f"T=1, **{mat[at[t], at[f'kd_{t}_t4']]:.3f}** at T=4.")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The page


def body() -> None:
    sel = selection()
    if sel is None:
        return
    restore_page_state(KEY, DEFAULTS)
    c1, c2, c3, c4, c5 = st.columns([2.2, 1.0, 1.9, 1.7, 1.3])
    with c1:
        models = _compared_models(sel.dataset, sel.models)
    with c2:
        method = st.radio("Embedding", METHODS, key=f"{KEY}_method", horizontal=True,
                          help="PCA is instant. UMAP is fitted in the background (seconds; about a minute the "
                               "first time a server compiles it) while PCA is shown, and is cached on disk, so a "
                               "second visit or a restart shows it at once.")
    with c3:
        color_by = st.radio("Colour by", list(COLORS), key=f"{KEY}_color", format_func=COLORS.get, horizontal=True)
    with c4:
        size = st.select_slider("Points (stratified sample)", SAMPLE_SIZES, key=f"{KEY}_n",
                                format_func=lambda v: f"{v:,}",
                                help="How many points each scatter shows (and UMAP embeds), each class keeping "
                                     "its share. Splits with fewer examples are shown whole.")
    with c5, st.popover("UMAP options"):
        n_neighbors = st.select_slider("Neighbours", (5, 10, 15, 30, 50), key=f"{KEY}_neighbors")
        min_dist = st.select_slider("Min. distance", (0.0, 0.05, 0.1, 0.25, 0.5), key=f"{KEY}_min_dist")
    if not models:
        st.warning("Select at least one model in the sidebar, or pick a comparison above.")
        return
    labels = _labels(models)
    split = sel.spec.split(":")[1]
    held_spec = sel.spec if split not in ("train", "all") else f"{sel.dataset}:test"
    preds = _load(models, labels, sel.spec)
    with_feats = [m for m in models if m.name in preds and preds[m.name].features is not None]
    train = _load(with_feats, labels, f"{sel.dataset}:train", secondary=True)
    held = preds if held_spec == sel.spec else _load(with_feats, labels, held_spec, secondary=True)
    for m in models:
        if m.name in preds and m not in with_feats:
            st.info(f"{labels[m.name]}: these predictions carry no penultimate features, so the model is left out "
                    "of this page. A bundle written by `calibviz extract` (or with a 'features' array and the "
                    "head's 'head_weight'/'head_bias') has them.")
    if not with_feats:
        return
    st.caption("Comparing " + ", ".join(f"**{labels[m.name]}**" for m in models) + f" on {sel.dataset}.")

    st.subheader("The features in 2-D")
    shown = with_feats[:MAX_PANELS]
    if len(with_feats) > MAX_PANELS:
        st.caption(f"Showing the first {MAX_PANELS} of {len(with_feats)} models in the scatters and the projection "
                   "(each scatter is a WebGL chart and a browser allows only a few); R² and CKA cover all.")
    _embeddings(shown, labels, preds, sel.spec, method, color_by, int(size),
                {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist)})
    names = preds[with_feats[0].name].class_names
    _projection_section(shown, labels, train, held, held_spec, sel.dataset, names)
    _separation_section(with_feats, labels, train, held, held_spec)
    _cka_section(with_feats, labels, preds, sel.spec)


guarded(body)
save_page_state(KEY)

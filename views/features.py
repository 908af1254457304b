"""Features: how each model's penultimate layer arranges the classes. PCA at once, UMAP on request (fitted in a
background thread, cached on disk), the Müller template projection of three classes, class separation R² and
linear CKA between the compared models."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from calibviz import features, findings
from calibviz.app import (
    cached,
    explain,
    guarded,
    predictions_by_model,
    selection,
    umap_embedding_or_job,
    umap_job_status,
    zoo_models,
)
from calibviz.data import DataSpec
from calibviz.plots import features as figures
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry, display_labels

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


# Cached computation, keyed on the Predictions' content and small parameters
_pca = cached(features.pca_embedding, max_entries=64)
_projection = cached(features.template_projection_for)
_separation = cached(features.class_separation_for, max_entries=128)
_cka = cached(features.cka_matrix_for, max_entries=64)


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
    return list(sidebar_models) if choice == "sidebar" else [zoo[r] for r in PRESETS[choice]]


def _class_triple(dataset: str, names: list[str]) -> tuple[int, int, int] | None:
    """Three class pickers; None (with a warning) unless the three classes are distinct."""
    if len(names) < 3:
        st.info("The template projection needs at least three classes.")
        return None
    picked = []
    for i, col in enumerate(st.columns([1, 1, 1, 2.4])[:3]):
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


def _draw_embeddings(items: list[tuple[str, Predictions, features.Embedding2D]], color_by: str, data: DataSpec) -> None:
    """One scatter per model and, under them, the inputs of the points selected on each (images or signals): wrong
    predictions first, then the least confident."""
    ncol = len(items) if len(items) <= 3 else 2
    cols = st.columns(ncol)
    events = []
    for i, (label, p, emb) in enumerate(items):
        with cols[i % ncol]:
            fig = figures.embedding_figure(emb.coords, p.subset(emb.rows), color_by, title=label,
                                           axis_titles=emb.axes, marker_size=4 if len(emb.rows) > 2000 else 6,
                                           height=430, title_size=15)
            events.append(st.plotly_chart(fig, key=f"{KEY}-chart-{emb.method.lower()}-{i}", on_select="rerun",
                                          selection_mode=("points", "box", "lasso"), width="stretch"))
    for i, ((label, p, emb), ev) in enumerate(zip(items, events, strict=True)):
        ids = figures.selected_sample_ids(ev)
        if ids and (not data.has_inputs or p.sample_id is None):
            st.caption(f"{label}: {len(ids)} points selected; their inputs are not available for this data.")
        elif ids and (got := features.selected_inputs(p, data, ids, MAX_GALLERY)) is not None:
            more = (f"; the {MAX_GALLERY} shown are the wrong ones first, then the least confident"
                    if len(ids) > MAX_GALLERY else "; wrong ones first, then the least confident")
            st.markdown(f"**{label}: {len(ids)} points selected**{more} · caption: label→prediction, confidence")
            st.plotly_chart(figures.gallery_figure(got.x, got.captions, ncols=12),
                            key=f"{KEY}-gallery-{emb.method.lower()}-{i}", width="stretch")


def _embeddings(shown: list[ModelEntry], labels: dict[str, str], preds: dict[str, Predictions], data: DataSpec,
                method: str, color_by: str, size: int, umap: features.UmapParams) -> None:
    """PCA or UMAP scatters of the models' features on `data`. A UMAP not in the disk cache yet is fitted in the
    background while PCA is shown in its place, with a progress bar; the page reruns when it is done."""
    items, running, failed = [], [], []
    for m in shown:
        p = preds[m.name]
        sample = None if size >= p.n else size
        emb = _pca(p, sample)
        if method == "UMAP":
            got = umap_embedding_or_job(p, dataclasses.replace(umap, sample_size=sample), labels[m.name])
            if isinstance(got, features.UmapEmbedding):
                emb = features.Embedding2D.from_umap(got)
            elif got.failed:
                failed.append(f"{labels[m.name]}: {got.error}")
            else:
                running.append(got)
        items.append((labels[m.name], p, emb))
    n_all, n = preds[shown[0].name].n, len(items[0][2].rows)
    note = f"{n:,} of {n_all:,} points (a class-stratified sample)" if n < n_all else f"all {n_all:,} points"
    shown_as = "PCA for now (UMAP is on its way)" if running and len(running) == len(items) else method
    st.caption(f"**{shown_as}** of the penultimate features on **{data.label}**, {note}; coloured by "
               f"{COLORS[color_by]}. Hover a point for its sample id, label, prediction and confidence; click it, "
               "or drag a box or lasso (toolbar), to see the inputs. "
               + ("PCA axes: the two directions of largest variance (fitted on all points of the split). "
                  if method == "PCA" else
                  "UMAP keeps near neighbours together; distances between far-apart clusters mean little. "))
    umap_job_status(running, failed, retry_key=f"{KEY}-retry")
    _draw_embeddings(items, color_by, data)


def _projection_section(shown: list[ModelEntry], labels: dict[str, str], train: dict[str, Predictions],
                        held: dict[str, Predictions], held_name: str, dataset: str, names: list[str]) -> None:
    """The Müller template projection of a chosen class triple, one column per model, train above held-out."""
    st.subheader("Template projection (Müller et al. 2019)")
    ok = [m for m in shown if all(m.name in d and features.has_template_inputs(d[m.name]) for d in (train, held))]
    for m in shown:
        if any(m.name in d and d[m.name].head_weight is None for d in (train, held)):
            st.info(f"{labels[m.name]}: these predictions carry no final-layer weights ('head_weight'), which the "
                    "template projection needs; it is left out here.")
    triple = _class_triple(dataset, names)
    if triple is None or not ok:
        return
    splits = {"train": train, held_name: held}
    panels = {labels[m.name]: {s: _projection(d[m.name], triple) for s, d in splits.items()} for m in ok}
    spreads = {s: {model: features.projection_spread(ps[s]) for model, ps in panels.items()} for s in splits}
    fig = figures.template_projection_figure(panels, names, class_colored_templates=True, subplot_title_size=13,
                                             margin_top=30)
    st.plotly_chart(fig, key=f"{KEY}-chart-projection", width="stretch")
    left, right = st.columns([1, 1.4])
    with left:
        df = pd.DataFrame({"model": list(panels)} | {f"spread, {s}": list(v.values()) for s, v in spreads.items()})
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
            + (tightest.text if (tightest := findings.tightest_spread(spreads)) else ""))


def _separation_section(ok: list[ModelEntry], labels: dict[str, str], train: dict[str, Predictions],
                        held: dict[str, Predictions], held_name: str) -> None:
    """Class separation R² of every compared model on train and held-out: a table, bars and the live story."""
    st.subheader("Class separation R² (Kornblith et al. 2021)")
    r2 = {labels[m.name]: (_separation(train.get(m.name)), _separation(held.get(m.name))) for m in ok}
    df = pd.DataFrame([{"model": k, "R² train": v[0], f"R² {held_name}": v[1]} for k, v in r2.items()])
    left, right = st.columns([1, 1.3])
    with left:
        st.table(df.style.format({c: "{:.4f}" for c in df.columns if c != "model"}, na_rep="—").hide(axis="index"))
        st.caption("R² = 1 − (mean cosine distance within a class) / (mean cosine distance overall), classes "
                   "weighted equally, on all examples of the split. 0: classes as mixed as random; 1: each "
                   "class collapses to one direction. Higher R² means tighter classes, and Kornblith et al. found "
                   "it comes with features that transfer worse to other tasks.")
    with right:
        fig = figures.separation_bar_figure({k: {"train": v[0], held_name: v[1]} for k, v in r2.items()}, title="",
                                            height=320, margin_top=20, legend_on_top=True)
        st.plotly_chart(fig, key=f"{KEY}-chart-r2", width="stretch")
    story = findings.separation_findings({m.recipe: r2[labels[m.name]] for m in ok}, held_name)
    if story:
        st.markdown("**What the zoo shows, measured live**\n\n" + "\n\n".join(f"- {f.text}" for f in story))


def _cka_section(ok: list[ModelEntry], labels: dict[str, str], preds: dict[str, Predictions], data: DataSpec) -> None:
    """Linear CKA between the compared models' features on the same split and samples."""
    st.subheader("Similarity of representations: linear CKA")
    if len(ok) < 2:
        st.caption("CKA compares two or more models: select another one.")
        return
    ps = [preds[m.name] for m in ok]
    if not features.same_rows(ps):
        st.info("CKA needs the same examples, in the same order, for every model; these predictions do not share "
                "their sample ids on this split.")
        return
    names, mat = [labels[m.name] for m in ok], _cka(tuple(ps))
    left, right = st.columns([1, 1.3])
    with left:
        fig = figures.cka_heatmap_figure(mat, names, title="", height=120 + 70 * len(names), margin_top=20)
        st.plotly_chart(fig, key=f"{KEY}-chart-cka", width="stretch")
    with right:
        st.caption(
            f"Linear CKA of the penultimate features on **{data.label}** (all {ps[0].n:,} examples, the "
            "same for every model). 1 means the two models' features are the same up to a rotation and a "
            "uniform scale; different widths are fine. " + findings.alike_pairs(mat, names).text
            + " A student closer to its teacher in CKA has copied more of the teacher's representation."
            + "".join(" " + f.text for f in findings.teacher_student_cka(mat, [m.recipe for m in ok])))


def body() -> None:
    sel = selection()
    if sel is None:
        return
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
        umap = features.UmapParams(
            n_neighbors=int(st.select_slider("Neighbours", (5, 10, 15, 30, 50), key=f"{KEY}_neighbors")),
            min_dist=float(st.select_slider("Min. distance", (0.0, 0.05, 0.1, 0.25, 0.5), key=f"{KEY}_min_dist")))
    if not models:
        st.warning("Select at least one model in the sidebar, or pick a comparison above.")
        return
    labels = display_labels(models)
    held_data = sel.data if sel.data.split not in ("train", "all") else sel.data.with_split("test")
    preds = predictions_by_model(models, sel.data)
    with_feats = [m for m in models if m.name in preds and preds[m.name].features is not None]
    gone = "it is left out of the projection and R² there."
    train = predictions_by_model(with_feats, sel.data.with_split("train"), missing_note=gone)
    held = preds if held_data == sel.data else predictions_by_model(with_feats, held_data, missing_note=gone)
    for m in (m for m in models if m.name in preds and m not in with_feats):
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
    _embeddings(shown, labels, preds, sel.data, method, color_by, int(size), umap)
    names = preds[with_feats[0].name].class_names
    _projection_section(shown, labels, train, held, held_data.label, sel.dataset, names)
    _separation_section(with_feats, labels, train, held, held_data.label)
    _cka_section(with_feats, labels, preds, sel.data)


guarded(body, state=KEY, defaults=DEFAULTS)

"""Soft labels: how often teachers break the order a ≥ b ≥ others on mixup / CutMix samples, and the exact fix."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from calibviz.app import cached, explain, guarded, predictions, selection, zoo_models
from calibviz.augment import AugmentParams, TeacherOnMixed, teacher_on_mixed
from calibviz.calibrators import fit_temperature
from calibviz.data import DATASET_NAMES, DataSpec, load_dataset
from calibviz.plots.soft_labels import (
    METRIC_TITLES,
    class_pair_heatmap,
    gallery_item_figure,
    kendall_tau_distributions,
    violations_vs_lambda,
)
from calibviz.predictions import Predictions
from calibviz.soft_labels import (
    GalleryItem,
    OrderViolations,
    ViolationParams,
    kendall_tau_bins,
    summary_row,
    teacher_violations,
    worst_gallery,
)
from calibviz.sources import ModelEntry, display_labels

KEY = "soft_labels"
DEFAULT_TEACHERS = ("ce", "ls")
AUGMENTATIONS = {"mixup": "Mixup", "cutmix": "CutMix"}
ALPHAS = (0.2, 0.4, 1.0, 2.0, 4.0)
SAMPLE_COUNTS = (250, 500, 1000, 2000, 4000, 8000)
TEMPERATURES = {"1": "T = 1", "ts": "TS (T fitted on val)", "4": "T = 4 (KD)"}
SPACES = {"logits": "logits / T (as Cui & Yan)", "probs": "probabilities"}
DEFAULTS = {f"{KEY}_aug": "mixup", f"{KEY}_alpha": 1.0, f"{KEY}_n": 2000, f"{KEY}_temp": "1",
            f"{KEY}_metric": "violation_rate", f"{KEY}_space": "logits", f"{KEY}_bins": 10, f"{KEY}_seed": 0,
            f"{KEY}_gallery_n": 4}

st.title("Soft labels on mixed inputs")
explain(
    "Mix two training images, say 70% of a **3** and 30% of an **8** (mixup blends them; CutMix pastes a patch of "
    "one into the other). A sensible teacher should then give the mixed input a soft label with P(3) ≥ P(8) ≥ "
    "P(any other digit): the larger parent *a* first, the smaller parent *b* second, everything else below. "
    "Cui & Yan (2021) showed that real teachers often break this order, and that a student distilled from such "
    "labels learns the mistakes. This page mixes samples from the chosen split, asks each teacher for its soft "
    "labels and counts the broken pairs: by λ (the weight of *a*), by class pair and per sample (Kendall τ: 1 "
    "means every required pair is in order). The gallery shows the worst samples with the teacher's label before "
    "and after the exact repair, the closest soft label that respects the order (isotonic regression on the "
    "tree a → b → others)."
)


# ---------------------------------------------------------------------------------------------
# Cached computation: teacher logits on the mixed samples, statistics, gallery items, fitted T


@cached(max_entries=64)
def _on_mixed(entry: ModelEntry, data: DataSpec, augment: AugmentParams, device: str) -> TeacherOnMixed:
    """A teacher's logits on the mixed samples (also cached on disk by the library), with a progress bar."""
    bar = st.progress(0.0, text=f"Running {entry.title} on {augment.n_samples} {AUGMENTATIONS[augment.kind]} "
                                "samples …")
    try:
        return teacher_on_mixed(entry.path, data, augment, device=device,
                                progress=lambda f, msg: bar.progress(float(f), text=f"{entry.title}: {msg}"))
    finally:
        bar.empty()


@cached(max_entries=128)
def _violations(entry: ModelEntry, data: DataSpec, augment: AugmentParams, device: str,
                params: ViolationParams) -> OrderViolations:
    """Order-violation statistics of one teacher, computed once per (teacher, parameters)."""
    return teacher_violations(_on_mixed(entry, data, augment, device), params)


@cached(max_entries=64)
def _gallery(entry: ModelEntry, data: DataSpec, augment: AugmentParams, device: str, params: ViolationParams,
             k: int) -> list[GalleryItem]:
    """The k worst violations of one teacher, ready to draw."""
    return worst_gallery(_on_mixed(entry, data, augment, device), load_dataset(data).x,
                         _violations(entry, data, augment, device, params), k)


@cached(max_entries=64)
def _fitted_temperature(preds: Predictions) -> float:
    """The teacher's NLL-optimal temperature on the given (validation) predictions."""
    return float(fit_temperature(preds.logits, preds.labels))


# ---------------------------------------------------------------------------------------------
# Widgets


def _teacher_picker(dataset: str, sidebar_models: tuple[ModelEntry, ...]) -> list[ModelEntry]:
    """A page-level multiselect of teachers: every runnable checkpoint of the dataset. It starts from (and
    follows changes of) the sidebar's model selection, or the dataset's CE and LS teachers."""
    options: dict[str, ModelEntry] = {e.name: e for e in zoo_models(dataset)}
    options.update({m.name: m for m in sidebar_models})
    key, seen_key = f"{KEY}_teachers_{dataset}", f"_{KEY}_sidebar_{dataset}"
    from_sidebar = [m.name for m in sidebar_models]
    if key not in st.session_state or st.session_state.get(seen_key) != from_sidebar:
        st.session_state[key] = from_sidebar or [e.name for e in options.values() if e.recipe in DEFAULT_TEACHERS]
        st.session_state[seen_key] = from_sidebar
    else:
        st.session_state[key] = [n for n in st.session_state[key] if n in options]
    chosen = st.multiselect(
        "Teachers", list(options), key=key, format_func=lambda n: options[n].title,
        help="Any checkpoint of this dataset can act as a teacher. The list starts from the models selected in "
             "the sidebar (CE and LS by default) and follows it when the sidebar changes.")
    return [options[n] for n in chosen]


@dataclasses.dataclass(frozen=True)
class Choices:
    """What the controls chose: teachers, the mixing, the statistics (at T = 1), the temperature choice and the
    statistic the λ chart and heatmaps show."""

    teachers: tuple[ModelEntry, ...]
    augment: AugmentParams
    violations: ViolationParams
    temperature: str
    metric: str


def _controls(dataset: str, sidebar_models: tuple[ModelEntry, ...]) -> Choices:
    """Draw the page's controls; return what they chose."""
    c1, c2, c3, c4 = st.columns([3.2, 1.2, 1.6, 1.8])
    with c1:
        teachers = _teacher_picker(dataset, sidebar_models)
    with c2:
        kind = st.radio("Augmentation", list(AUGMENTATIONS), key=f"{KEY}_aug", format_func=AUGMENTATIONS.get,
                        help="Mixup blends the two inputs: x = λ·a + (1−λ)·b. CutMix pastes a box (a window of "
                             "the signal) of b into a; λ is the share of a that is left.")
    with c3:
        alpha = st.select_slider("α of Beta(α, α)", ALPHAS, key=f"{KEY}_alpha",
                                 help="λ is drawn from Beta(α, α) and folded onto [½, 1]. α = 1 spreads λ evenly; "
                                      "small α puts most samples near λ = 1 (barely mixed), large α near ½.")
    with c4:
        n = st.select_slider("Mixed samples per teacher", SAMPLE_COUNTS, key=f"{KEY}_n",
                             help="Parents are drawn at random (seeded) from the sidebar's data split.")
    d1, d2, d3 = st.columns([3.2, 2.8, 1.8])
    with d1:
        temp = st.radio("Teacher's soft-label temperature", list(TEMPERATURES), key=f"{KEY}_temp",
                        format_func=TEMPERATURES.get,
                        horizontal=True,
                        help="T = 1: the teacher as trained. TS: temperature scaling, one T per teacher fitted by "
                             "NLL on the validation split. T = 4: the temperature the zoo's KD students are "
                             "distilled at. The order of the classes does not depend on T (softmax keeps it), so "
                             "the violation counts are the same at every T; T changes the soft labels' shape: the "
                             "KL of the fix and the gallery's bars.")
    with d2:
        metric = st.selectbox("Statistic (λ chart and heatmaps)", list(METRIC_TITLES), key=f"{KEY}_metric",
                              format_func=METRIC_TITLES.get)
    with d3, st.expander("More options"):
        space = st.radio("Fix applied to", list(SPACES), key=f"{KEY}_space", format_func=SPACES.get,
                         horizontal=True, help="Isotonic regression of the logits/T (then softmax) or of the "
                                               "probabilities directly; both give a label that respects the order.")
        n_bins = st.slider("λ bins on [½, 1]", 2, 20, key=f"{KEY}_bins")
        seed = st.number_input("Seed of the mixing", 0, 10_000, step=1, key=f"{KEY}_seed")
    return Choices(tuple(teachers), AugmentParams(kind, float(alpha), int(n), int(seed)),
                   ViolationParams(n_lambda_bins=int(n_bins), space=str(space)), str(temp), str(metric))


# ---------------------------------------------------------------------------------------------
# The page


def _temperature(entry: ModelEntry, data: DataSpec, choice: str) -> float:
    """The teacher's soft-label temperature: fitted on the validation split for TS, else the chosen number."""
    if choice == "ts":
        return _fitted_temperature(predictions(entry, data.with_split("val")))
    return float(choice)


def body() -> None:
    sel = selection()
    if sel is None:
        return
    if sel.dataset not in DATASET_NAMES:
        st.warning("Soft labels need a model calibviz can run on inputs it can mix: pick digits or mnist1d in the "
                   "sidebar (uploaded predictions bundles have no model to run).")
        return
    ch = _controls(sel.dataset, sel.checkpoints)
    if not ch.teachers:
        st.warning("Pick at least one teacher above.")
        return
    aug, mix_args = ch.augment, (sel.data, ch.augment, sel.device)
    labels = display_labels(ch.teachers)
    results: dict[str, OrderViolations] = {}
    params: dict[str, ViolationParams] = {}  # per teacher: the statistics' parameters at its temperature
    for m in ch.teachers:
        try:
            params[m.name] = dataclasses.replace(ch.violations, temperature=_temperature(m, sel.data, ch.temperature))
            results[m.name] = _violations(m, *mix_args, params[m.name])
        except Exception as e:  # one broken teacher must not hide the others
            st.error(f"{labels[m.name]}: {type(e).__name__}: {e}")
    if not results:
        return
    shown = {labels[k]: v for k, v in results.items()}
    st.caption(f"{aug.n_samples} {AUGMENTATIONS[aug.kind]} samples per teacher, mixed from **{sel.dataset} · "
               f"{sel.data.label}** (the sidebar's split), λ ~ Beta({aug.alpha:g}, {aug.alpha:g}) folded onto [½, 1], "
               f"seed {aug.seed}. *a* is the parent with the larger weight λ, *b* the other; when both parents have "
               "the same class the order is a ≥ every other.")

    st.subheader("Per teacher")
    df = pd.DataFrame([summary_row(labels[k], params[k].temperature, r) for k, r in results.items()])
    fmt = {c: "{:.3f}" for c in df.columns if c not in ("teacher", "samples", "T")}
    fmt |= {"T": "{:.3g}", "KL(p ‖ p′) of the fix": "{:.4f}"}
    st.table(df.style.format(fmt).hide(axis="index"))
    st.caption("**any violation**: share of samples whose soft label breaks a ≥ b ≥ others somewhere. **violated "
               "known pairs**: share of the required pairs (a before b, a and b before each other class) that are "
               "out of order. **Kendall τ** = (pairs in order − pairs out of order) / required pairs, per sample. "
               "**KL(p ‖ p′)**: how far the exact fix moves the teacher's soft label at T, i.e. how much a "
               "distillation target would change.")

    metric, class_names = ch.metric, load_dataset(sel.data).class_names
    left, right = st.columns([1.25, 1])
    with left:
        st.markdown(f"**{METRIC_TITLES[metric].capitalize()} against λ**")
        st.plotly_chart(violations_vs_lambda(shown, metric), width="stretch", key=f"{KEY}_lambda_chart")
        st.caption("λ near ½: both parents weigh about the same; λ near 1: barely mixed, so b's share is small and "
                   "its probability easily sinks below an unrelated class. Hover for each bin's sample count.")
    with right:
        st.markdown("**Kendall τ per mixed sample**")
        st.plotly_chart(kendall_tau_distributions(shown, max_values=0, n_bins=kendall_tau_bins(len(class_names))),
                        width="stretch", key=f"{KEY}_tau_chart")
        st.caption("τ = 1: every required pair in order. Mass to the left of 1 is broken order.")

    st.subheader("By class pair")
    cols = st.columns(min(len(results), 2))
    for i, (name, res) in enumerate(results.items()):
        with cols[i % len(cols)]:
            st.plotly_chart(class_pair_heatmap(res, class_names, metric, title=labels[name]), width="stretch",
                            key=f"{KEY}_heatmap_{i}")
    st.caption(f"{METRIC_TITLES[metric].capitalize()} for each pair of parent classes: row a (larger weight), "
               "column b; the diagonal holds pairs of two samples of the same class. Blank cells had no samples.")

    st.subheader("Worst violations")
    g1, g2 = st.columns([3, 1])
    with g1:
        pick = st.selectbox("Teacher", list(results), key=f"{KEY}_gallery_teacher", format_func=labels.get)
    with g2:
        k = st.select_slider("Samples shown", (2, 4, 6, 8), key=f"{KEY}_gallery_n")
    items = _gallery(next(t for t in ch.teachers if t.name == pick), *mix_args, params[pick], int(k))
    if not items:
        st.success(f"{labels[pick]} respects the order on every sample.")
        return
    st.caption("Lowest Kendall τ first. Top: the mixed input and its two parents. Bottom: the teacher's soft label "
               f"at T = {params[pick].temperature:.3g} (grey) and the exact isotonic fix (red); (a) and (b) mark the "
               "parents' classes.")
    grid = st.columns(2)
    for i, item in enumerate(items):
        with grid[i % 2]:
            st.plotly_chart(gallery_item_figure(item), width="stretch", key=f"{KEY}_gallery_{i}")


guarded(body, state=KEY, defaults=DEFAULTS)

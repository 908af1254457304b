"""Logits: the selected models' distributions of a logit statistic, their concentration, and masked-input overlays."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from calibviz.app import cached, explain, guarded, predictions, selection, zoo_models
from calibviz.data import DATASET_NAMES, DataSpec
from calibviz.findings import distilled_data_finding
from calibviz.logit_stats import (
    BANDWIDTH_RULES,
    STATISTICS,
    SUBSETS,
    KdeParams,
    StatisticDistributions,
    concentration_table,
    distilled_data_evidence,
    masked_name,
    spread_changes,
    statistic_distributions,
)
from calibviz.plots.logits import STYLES, distribution_figure, spread_figure
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry, display_labels

KEY = "logits"
PRESETS = {"sidebar": "Sidebar's models", "distilled": "Full vs distilled data (CE · DM · MDT)",
           "ls": "CE vs LS", "custom": "Custom"}
PRESET_RECIPES = {"distilled": ("ce", "dm", "mdt"), "ls": ("ce", "ls")}
EVIDENCE_RECIPES = ("ce", "dm", "mdt")
STYLE_NAMES = {"kde": "KDE", "hist": "Histogram", "both": "Both"}
SUBSET_NAMES = {"all": "All", "correct": "Correct", "wrong": "Wrong"}
STAT_HELP = ("**max logit**: the winning class's raw score. **margin**: how far it leads the runner-up. **logit "
             "norm**: the length of the whole logit vector. **entropy**: how spread the softmax probabilities are "
             "(0 = all on one class). **max probability**: the confidence the calibration pages bin.")
DEFAULTS = {f"{KEY}_quick": "sidebar", f"{KEY}_stat": "max_logit", f"{KEY}_subset": "all", f"{KEY}_style": "kde",
            f"{KEY}_mask": 0.0, f"{KEY}_bins": 40, f"{KEY}_bw": "scott"}

st.title("Logits")
explain(
    "A classifier's **logits** are its raw scores, one per class, before softmax turns them into probabilities; the "
    "largest (the **max logit**) and its lead over the runner-up (the **margin**) set how confident a prediction is. "
    "Each curve shows how one model's score is spread over the examples of the chosen split. A narrow, tall curve "
    "(small std and IQR in the table) is **concentrated**: almost every input gets about the same score. Zhu et al. "
    "(ICCV 2023) found that networks trained on **distilled data** (a small synthetic training set standing in for "
    "the full one) are over-confident in a way temperature scaling cannot fix, partly because their max logits are "
    "concentrated. Their Masked Temperature Scaling fits the temperature on inputs with a share r of their elements "
    "zeroed; the mask slider draws those masked-input distributions dashed, in each model's colour. *Quick compare* "
    "puts full-data CE next to the distilled-data models DM and MDT, or next to label smoothing (LS)."
)


# ---------------------------------------------------------------------------------------------
# Cached computation


@cached
def _summary(preds: dict[str, Predictions], statistic: str, params: KdeParams) -> StatisticDistributions:
    """Distributions of one statistic for the named predictions (keyed on their content)."""
    return statistic_distributions(preds, statistic, params)


# ---------------------------------------------------------------------------------------------
# Widgets


def _preset_names(preset: str, options: dict[str, ModelEntry]) -> list[str]:
    """The option names a quick-compare preset stands for, in the preset's recipe order."""
    recipes = PRESET_RECIPES.get(preset, ())
    return [n for r in recipes for n, m in options.items() if m.recipe == r and m.runnable]


def _apply_preset(models_key: str, options: dict[str, ModelEntry], from_sidebar: list[str]) -> None:
    """on_change of the quick-compare choice: set the page's model picker."""
    preset = st.session_state[f"{KEY}_quick"]
    if preset == "sidebar":
        st.session_state[models_key] = list(from_sidebar)
    elif preset in PRESET_RECIPES:
        st.session_state[models_key] = _preset_names(preset, options)


def _mark_custom() -> None:
    """on_change of the model picker: a hand-made choice is no longer a preset."""
    st.session_state[f"{KEY}_quick"] = "custom"


def _model_picker(dataset: str, sidebar_models: tuple[ModelEntry, ...]) -> list[ModelEntry]:
    """Quick-compare presets and a page-level model picker. It starts from (and follows changes of) the
    sidebar's selection; a preset replaces it by the dataset's CE/DM/MDT or CE/LS checkpoints."""
    options: dict[str, ModelEntry] = {}
    if dataset in DATASET_NAMES:
        options = {e.name: e for e in zoo_models(dataset)}
    options.update({m.name: m for m in sidebar_models})
    models_key, seen_key = f"{KEY}_models_{dataset}", f"_{KEY}_sidebar_{dataset}"
    from_sidebar = [m.name for m in sidebar_models]
    if models_key not in st.session_state or st.session_state.get(seen_key) != from_sidebar:
        st.session_state[models_key] = from_sidebar
        st.session_state[seen_key] = from_sidebar
        st.session_state[f"{KEY}_quick"] = "sidebar"
    else:
        st.session_state[models_key] = [n for n in st.session_state[models_key] if n in options]
    presets = {k: v for k, v in PRESETS.items() if k not in PRESET_RECIPES or len(_preset_names(k, options)) >= 2}
    if st.session_state[f"{KEY}_quick"] not in presets:
        st.session_state[f"{KEY}_quick"] = "custom"
    st.radio("Quick compare", list(presets), key=f"{KEY}_quick", format_func=presets.get, horizontal=True,
             on_change=_apply_preset, args=(models_key, options, from_sidebar),
             help="Presets for the page's model list. Full vs distilled data: the CE teacher trained on the whole "
                  "training set against the same network trained on a 10-per-class distilled set (DM) and on one "
                  "distilled with masking (MDT). CE vs LS: plain cross-entropy against label smoothing.")
    chosen = st.multiselect(
        "Models on this page", list(options), key=models_key, format_func=lambda n: options[n].title,
        on_change=_mark_custom,
        help="Starts from the sidebar's models and follows the sidebar when it changes; edit it here to compare "
             "other checkpoints of this dataset without touching the other pages.")
    return [options[n] for n in chosen]


@dataclass(frozen=True)
class Choices:
    """What the controls chose: the statistic, the examples, how to draw, the mask ratio and the KDE settings."""

    statistic: str
    subset: str
    style: str
    mask_ratio: float
    kde: KdeParams


def _controls(has_checkpoints: bool) -> Choices:
    """The statistic, subset, style and mask-ratio widgets (plus KDE options); returns their values."""
    c1, c2, c3 = st.columns([1.3, 1.5, 1.5])
    with c1:
        stat = st.selectbox("Statistic", list(STATISTICS), key=f"{KEY}_stat", format_func=STATISTICS.get,
                            help=STAT_HELP)
    with c2:
        subset = st.radio("Examples", list(SUBSETS), key=f"{KEY}_subset", format_func=SUBSET_NAMES.get,
                          horizontal=True, help="All examples, or only those the model classifies correctly / "
                                                "wrongly (each model's own correct and wrong examples).")
    with c3:
        style = st.radio("Draw as", list(STYLES), key=f"{KEY}_style", format_func=STYLE_NAMES.get, horizontal=True,
                         help="KDE: a smooth Gaussian kernel density estimate. Histogram: bar heights are densities "
                              "on bins shared by all models. Both: the two together.")
    d1, d2 = st.columns([2.8, 1.5], vertical_alignment="bottom")
    with d1:
        mask = st.slider("Mask ratio r (dashed overlays)", 0.0, 0.9, step=0.05, key=f"{KEY}_mask",
                         disabled=not has_checkpoints,
                         help="Each input element is zeroed independently with probability r (fixed seed), as "
                              "Masked Temperature Scaling does on its calibration set, and the model is run again. "
                              "0 = no overlay. Needs a model calibviz can run, not an uploaded predictions bundle.")
    with d2, st.expander("KDE and histogram options"):
        bins = st.slider("Histogram bins", 10, 100, step=5, key=f"{KEY}_bins")
        bw = st.radio("KDE bandwidth rule", list(BANDWIDTH_RULES), key=f"{KEY}_bw", horizontal=True,
                      format_func=str.capitalize)
    return Choices(str(stat), str(subset), str(style), float(mask), KdeParams(bins=int(bins), bandwidth=str(bw)))


# ---------------------------------------------------------------------------------------------
# The page


EVIDENCE_NOTE = ("A spread counts as changed when std and IQR both move by 10 % or more. Compare the accuracies too: "
                 "a distilled-data model that is also much weaker than CE may have narrow scores for that reason as "
                 "well, and a zoo this small cannot separate the two.")


def _zoo_evidence(dataset: str, data: DataSpec) -> None:
    """Max-logit spread of the zoo's DM and MDT models against its CE model on the current split."""
    entries = {e.recipe: e for e in zoo_models(dataset) if e.recipe in EVIDENCE_RECIPES}
    if "ce" not in entries or len(entries) < 2:
        st.caption(f"The zoo has no CE and distilled-data (DM / MDT) checkpoints for {dataset}, so the "
                   "distilled-data claim cannot be checked here.")
        return
    chosen = [entries[r] for r in EVIDENCE_RECIPES if r in entries]
    dists = _summary({m.recipe: predictions(m, data) for m in chosen}, "max_logit",
                     KdeParams(bins=int(DEFAULTS[f"{KEY}_bins"]), bandwidth="scott"))
    with st.container(border=True):
        changes = spread_changes(dists, "ce")
        st.markdown(distilled_data_evidence(f"{dataset} · {data.label}", changes, {m.recipe: m.title for m in chosen},
                                            distilled_data_finding(changes).text))
        st.caption(EVIDENCE_NOTE)


def _named_predictions(models: list[ModelEntry], data: DataSpec, r: float) -> tuple[dict[str, Predictions],
                                                                                    dict[str, str]]:
    """Each model's predictions by display name, plus (r > 0) each runnable one's on masked inputs; and the
    masked-variant names -> their base names. A model that fails is an error in the page, not a crash."""
    labels = display_labels(models)
    preds: dict[str, Predictions] = {}
    for m in models:
        try:
            preds[labels[m.name]] = predictions(m, data)
        except Exception as e:  # one broken model must not hide the others
            st.error(f"{labels[m.name]}: {type(e).__name__}: {e}")
    overlays: dict[str, str] = {}  # masked display name -> its base's display name
    if r > 0:
        for m in (m for m in models if m.runnable and labels[m.name] in preds):
            preds[masked_name(labels[m.name], r)] = predictions(m, data, mask_ratio=r)
            overlays[masked_name(labels[m.name], r)] = labels[m.name]
        bundles = [labels[m.name] for m in models if not m.runnable]
        if bundles:
            st.info(f"No masked overlay for {', '.join(bundles)}: masking re-runs the model on altered inputs, and "
                    "an uploaded predictions bundle holds only its outputs.")
    return preds, overlays


def body() -> None:
    sel = selection()
    if sel is None:
        return
    models = _model_picker(sel.dataset, sel.models)
    if not models:
        st.warning("Select at least one model (in the sidebar, or in *Models on this page*).")
        return
    ch = _controls(any(m.runnable for m in models))
    r, subset = ch.mask_ratio, ch.subset
    preds, overlays = _named_predictions(models, sel.data, r)
    if not preds:
        return

    dists = _summary(preds, ch.statistic, ch.kde)
    title = f"{dists.label} — {SUBSET_NAMES[subset].lower()} examples of {sel.dataset} · {sel.data.label}"
    st.plotly_chart(distribution_figure(dists, subset=subset, style=ch.style, overlays=overlays,
                                        title=title, legend="below"), width="stretch", key=f"{KEY}_chart")
    st.caption("Each colour is one model; the narrower and taller its curve, the more concentrated the statistic. "
               + ("Dashed, same colour: the same model on inputs with each element zeroed with probability "
                  f"r = {r:g}. " if overlays else "Move the mask ratio above 0 to add masked-input overlays. ")
               + "Each curve's area is 1, so a subset with few examples (e.g. the wrong ones of an accurate model) "
                 "is drawn as tall as a large one; the legend gives each curve's n.")

    left, right = st.columns([1.5, 1])
    with left:
        st.plotly_chart(spread_figure(dists, subset=subset, overlays=overlays,
                                      title=f"Spread of the {dists.label} — {SUBSET_NAMES[subset].lower()} examples"),
                        width="stretch", key=f"{KEY}_spread")
    with right:
        if sel.dataset in DATASET_NAMES:
            _zoo_evidence(sel.dataset, sel.data)

    st.subheader(f"Concentration of the {dists.label}")
    table = pd.DataFrame(concentration_table(dists, overlays, r))
    st.dataframe(table, hide_index=True, width="stretch", height=36 + 35 * len(table),
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("mean", "median", "std", "IQR")})
    st.caption("Per model, for all examples and for each model's own correct and wrong ones; masked rows are the "
               "same model on masked inputs. std: standard deviation (ddof 0). IQR: 75th minus 25th percentile "
               "(linear interpolation). Both small = concentrated.")


guarded(body, state=KEY, defaults=DEFAULTS)

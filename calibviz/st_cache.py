"""Streamlit glue shared by the pages: cached predictions with a progress bar, and the sidebar selection.

This is the one module under calibviz/ that imports Streamlit. Caches are keyed on content digests and
small parameters; heavy arguments are prefixed with `_` so Streamlit does not try to hash them.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from calibviz.backend import file_digest, pick_device, predict
from calibviz.data import CORRUPTIONS, SEVERITIES, SPLITS
from calibviz.predictions import Predictions
from calibviz.zoo import ZooEntry, default_zoo_dir, list_zoo

T = TypeVar("T")


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: a dataset, a dataset spec (split, maybe shifted) and zoo models."""

    dataset: str
    spec: str
    models: tuple[ZooEntry, ...]
    device: str


@st.cache_data(show_spinner=False)
def zoo_entries(root: str) -> list[ZooEntry]:
    """The zoo's checkpoints (headers only), cached per folder."""
    return list_zoo(Path(root))


@st.cache_resource(show_spinner=False, max_entries=512)
def _predictions(digest: str, _path: str, spec: str, mask_ratio: float, device: str) -> Predictions:
    bar = st.progress(0.0, text=f"Running {Path(_path).parent.name}/{Path(_path).stem} on {spec} …")

    def report(frac: float, msg: str) -> None:
        bar.progress(float(frac), text=f"{Path(_path).stem} on {spec}: {msg}")

    try:
        return predict(_path, spec, device=device, mask_ratio=mask_ratio, progress=report)
    finally:
        bar.empty()


def predictions(entry: ZooEntry, spec: str, mask_ratio: float = 0.0) -> Predictions:
    """Predictions of a zoo checkpoint on a dataset spec: from memory, else the disk cache, else the
    backend (with a progress bar)."""
    device = st.session_state.get("device") or str(pick_device())
    return _predictions(file_digest(entry.path), str(entry.path), spec, float(mask_ratio), device)


def spec_label(spec: str) -> str:
    """Human label for a dataset spec in pickers: 'test', 'test — noise, severity 3'."""
    name_part, split = spec.split(":")
    parts = name_part.split("-")
    if len(parts) == 3:
        return f"{split} — {parts[1]}, severity {parts[2]}"
    return split


def specs_for(dataset: str) -> list[str]:
    """Every spec the sidebar offers for a dataset: clean splits, then shifted test sets."""
    return [f"{dataset}:{s}" for s in ("test", "val", "train")] + [
        f"{dataset}-{c}-{k}:test" for c in CORRUPTIONS for k in SEVERITIES]


def sidebar(default_recipes: tuple[str, ...] = ("ce", "ls")) -> Selection | None:
    """Draw the sidebar (dataset, models, split, device) and return the selection, or None when the zoo
    is empty."""
    root = str(default_zoo_dir())
    entries = zoo_entries(root)
    if not entries:
        st.sidebar.error(f"No checkpoints found in {root}. Build them with `python -m calibviz zoo build`.")
        return None
    datasets = sorted({e.dataset for e in entries})
    ds = st.sidebar.radio("Dataset", datasets, key="dataset", horizontal=True)
    mine = [e for e in entries if e.dataset == ds]
    by_name = {e.name: e for e in mine}
    defaults = [e.name for e in mine if e.recipe in default_recipes]
    key = f"models_{ds}"
    if key not in st.session_state:
        st.session_state[key] = defaults
    chosen = st.sidebar.multiselect(
        "Models", list(by_name), key=key, format_func=lambda n: by_name[n].title,
        help="Checkpoints of the shipped zoo for this dataset. Pick one or more to compare.")
    spec = st.sidebar.selectbox("Data split", specs_for(ds), key=f"spec_{ds}", format_func=spec_label,
                                help="test/val/train are the fixed splits (val is the calibration split). "
                                     "The shifted sets are the test split corrupted at severity 1-5.")
    device = str(pick_device())
    st.session_state["device"] = device
    st.sidebar.caption(f"Device: **{device}** · splits: {', '.join(SPLITS)}")
    return Selection(dataset=ds, spec=spec, models=tuple(by_name[n] for n in chosen), device=device)


def guarded(fn: Callable[[], T]) -> T | None:
    """Run a page body; show any exception as an error in the page instead of crashing the app."""
    try:
        return fn()
    except Exception as e:  # the page must keep running whatever went wrong
        st.error(f"{type(e).__name__}: {e}")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(e)))
        return None


def explain(text: str) -> None:
    """The plain one-paragraph explanation every view carries, for students."""
    st.info(text, icon="💡")


def selection() -> Selection | None:
    """The sidebar selection stored by app.py for the current run."""
    sel: Any = st.session_state.get("_selection")
    return sel

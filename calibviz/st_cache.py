"""Streamlit glue shared by the pages: cached predictions with a progress bar, the sidebar selection, uploads.

This is the one module under calibviz/ that imports Streamlit. Caches are keyed on content digests and
small parameters; heavy arguments are prefixed with `_` so Streamlit does not try to hash them.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import streamlit as st

from calibviz.backend import cache_dir, file_digest, pick_device, predict
from calibviz.data import CORRUPTIONS, DATASET_NAMES, SEVERITIES, SPLITS
from calibviz.formats import FormatError, load_bundle
from calibviz.predictions import Predictions
from calibviz.uploads import MAX_UPLOAD_BYTES, UploadedModel, accept_upload, bundle_rows
from calibviz.zoo import ZooEntry, default_zoo_dir, list_zoo

T = TypeVar("T")
Model = ZooEntry | UploadedModel
UPLOADED = "uploaded"


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: a dataset, a dataset spec (split, maybe shifted) and models."""

    dataset: str
    spec: str
    models: tuple[Model, ...]
    device: str

    @property
    def checkpoints(self) -> tuple[Model, ...]:
        """The selected models that are runnable checkpoints (views that re-run the model need these)."""
        return tuple(m for m in self.models if getattr(m, "kind", "checkpoint") == "checkpoint")


@st.cache_data(show_spinner=False)
def zoo_entries(root: str) -> list[ZooEntry]:
    """The zoo's checkpoints (headers only), cached per folder."""
    return list_zoo(Path(root))


@st.cache_resource(show_spinner=False, max_entries=512)
def _predictions(digest: str, _path: str, spec: str, mask_ratio: float, device: str) -> Predictions:
    label = f"{Path(_path).parent.name}/{Path(_path).stem} on {spec}"
    bar = st.progress(0.0, text=f"Running {label} …")

    def report(frac: float, msg: str) -> None:
        bar.progress(float(frac), text=f"{label}: {msg}")

    try:
        return predict(_path, spec, device=device, mask_ratio=mask_ratio, progress=report)
    finally:
        bar.empty()


@st.cache_resource(show_spinner=False, max_entries=64)
def _bundle(digest: str, _path: str, split: str) -> Predictions:
    """An uploaded bundle's rows for a split, loaded once: the same object on every rerun, so its digest (and every
    cache keyed on it) is computed once."""
    return bundle_rows(load_bundle(_path), split)


def predictions(entry: Model, spec: str, mask_ratio: float = 0.0) -> Predictions:
    """Predictions of a model on a dataset spec: from memory, else the disk cache, else the backend (with a
    progress bar). For an uploaded bundle, the spec's split selects its rows."""
    digest = file_digest(entry.path)
    if getattr(entry, "kind", "checkpoint") == "bundle":
        if mask_ratio:
            raise ValueError(f"{entry.title}: masked inputs need the model; a predictions bundle has only outputs")
        name_part, split = spec.split(":")
        if "-" in name_part:
            raise ValueError(f"{entry.title}: a predictions bundle has no shifted copies ({spec_label(spec)})")
        return _bundle(digest, str(entry.path), split)
    device = st.session_state.get("device") or str(pick_device())
    return _predictions(digest, str(entry.path), spec, float(mask_ratio), device)


def spec_label(spec: str) -> str:
    """Human label for a dataset spec in pickers: 'test', 'test — noise, severity 3'."""
    name_part, split = spec.split(":")
    parts = name_part.split("-")
    if len(parts) == 3:
        return f"{split} — {parts[1]}, severity {parts[2]}"
    return split


def specs_for(dataset: str) -> list[str]:
    """Every spec the sidebar offers for a dataset: clean splits, then shifted test sets. Uploaded bundles of
    other data offer all rows or one of their splits."""
    if dataset not in DATASET_NAMES:
        return [f"{dataset}:{s}" for s in ("all", "test", "val", "train")]
    return [f"{dataset}:{s}" for s in ("test", "val", "train")] + [
        f"{dataset}-{c}-{k}:test" for c in CORRUPTIONS for k in SEVERITIES]


def _group(m: Model) -> str:
    return m.dataset if m.dataset in DATASET_NAMES else UPLOADED


def _upload_box() -> None:
    """The sidebar's uploader: accepted files join the model list; a bad file gets an error naming the problem
    and nothing already loaded is lost."""
    uploads: dict[str, UploadedModel] = st.session_state.setdefault("uploads", {})
    seen: dict[str, str] = st.session_state.setdefault("_seen_uploads", {})
    with st.sidebar.expander("Add your own model"):
        st.caption("A predictions bundle (.npz / .safetensors with logits or probs and labels) or a .safetensors "
                   f"checkpoint of a registered architecture with a calibviz card; at most "
                   f"{MAX_UPLOAD_BYTES // 2**20} MB. Nothing is unpickled.")
        files = st.file_uploader("Upload", type=["npz", "safetensors"], accept_multiple_files=True,
                                 key="uploader", label_visibility="collapsed")
        for f in files or []:
            if f.file_id not in seen:
                try:
                    m = accept_upload(f.name, f.getvalue(), cache_dir() / "uploads")
                    uploads[m.name] = m
                    seen[f.file_id] = ""
                except FormatError as e:
                    seen[f.file_id] = str(e)
            if seen[f.file_id]:
                st.error(seen[f.file_id])
        if uploads:
            st.caption("Loaded: " + ", ".join(m.title for m in uploads.values()))


def sidebar(default_recipes: tuple[str, ...] = ("ce", "ls")) -> Selection | None:
    """Draw the sidebar (dataset, models, split, device, uploads) and return the selection, or None when there
    is nothing to show."""
    root = str(default_zoo_dir())
    entries: list[Model] = [*zoo_entries(root), *st.session_state.setdefault("uploads", {}).values()]
    if not entries:
        st.sidebar.error(f"No checkpoints found in {root}. Build them with `python -m calibviz zoo build`.")
        _upload_box()
        return None
    datasets = sorted({_group(e) for e in entries}, key=lambda d: (d == UPLOADED, d))
    ds = st.sidebar.radio("Dataset", datasets, key="dataset", horizontal=True)
    mine = [e for e in entries if _group(e) == ds]
    by_name = {e.name: e for e in mine}
    key = f"models_{ds}"
    if key not in st.session_state:
        st.session_state[key] = [e.name for e in mine if e.recipe in default_recipes] or [mine[0].name]
    else:  # keep the user's choice, minus anything that disappeared
        st.session_state[key] = [n for n in st.session_state[key] if n in by_name]
    chosen = st.sidebar.multiselect(
        "Models", list(by_name), key=key, format_func=lambda n: by_name[n].title,
        help="Checkpoints of the shipped zoo (and your uploads) for this dataset. Pick one or more to compare.")
    spec = st.sidebar.selectbox("Data split", specs_for(ds), key=f"spec_{ds}", format_func=spec_label,
                                help="test/val/train are the fixed splits (val is the calibration split). "
                                     "The shifted sets are the test split corrupted at severity 1-5.")
    device = str(pick_device())
    st.session_state["device"] = device
    st.sidebar.caption(f"Device: **{device}** · splits: {', '.join(SPLITS)}")
    _upload_box()
    return Selection(dataset=ds, spec=spec, models=tuple(by_name[n] for n in chosen), device=device)


_WARMUP: threading.Thread | None = None


def warm_umap_in_background() -> None:
    """Compile UMAP's numba code once per server process, in a daemon thread, so the first UMAP a user asks for
    does not pay ~45 s of JIT. Off when CALIBVIZ_WARM_UMAP=0 (the tests set it)."""
    global _WARMUP
    if _WARMUP is not None or os.environ.get("CALIBVIZ_WARM_UMAP", "1") == "0":
        return
    from calibviz.features import warm_umap_jit

    _WARMUP = threading.Thread(target=warm_umap_jit, name="umap-warmup", daemon=True)
    _WARMUP.start()


def _saved_key(prefix: str) -> str:
    return f"_{prefix}_saved"


def restore_page_state(prefix: str, defaults: dict[str, object]) -> None:
    """Bring back a page's widget values (keys starting with `prefix_`) from its last visit, then fill in the
    defaults. Streamlit drops the state of widgets a run does not draw, so without this every visit to another page
    would reset them; the copy lives in a plain session-state entry, which survives."""
    for k, v in st.session_state.get(_saved_key(prefix), {}).items():
        st.session_state.setdefault(k, v)
    for k, v in defaults.items():
        st.session_state.setdefault(k, v)


def save_page_state(prefix: str, exclude: tuple[str, ...] = ("_btn_",)) -> None:
    """Remember a page's widget values for its next visit (buttons, whose state cannot be set, are left out)."""
    saved = st.session_state.setdefault(_saved_key(prefix), {})
    saved.update({k: st.session_state[k] for k in st.session_state
                  if isinstance(k, str) and k.startswith(f"{prefix}_") and not any(x in k for x in exclude)})


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
    st.info(text, icon=":material/school:")


def _leave_legacy_multipage_mode() -> None:
    """Streamlit treats a pages/ folder beside app.py as a legacy multipage app until app.py's st.navigation has
    run once in the server process, so a fresh server's first request for a page URL (a bookmark) would run the bare
    page file without the app around it. Switch to st.navigation's mode and rerun through app.py instead."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def selection() -> Selection | None:
    """Draw the shared sidebar and return its selection. Every page calls this first; the widgets keep their
    values across pages because their keys are the same and their state is re-asserted here."""
    _leave_legacy_multipage_mode()
    for k in [k for k in st.session_state if k == "dataset" or k.startswith(("models_", "spec_"))]:
        st.session_state[k] = st.session_state[k]
    return sidebar()

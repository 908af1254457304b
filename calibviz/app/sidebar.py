"""The shared sidebar: dataset, models (the zoo's and the user's uploads), data split, device, and the uploader.

Every page calls `selection()` first: AppTest loses app-level sidebar widgets on rerun under `st.navigation`, so
each page draws the sidebar itself; the widgets keep their values across pages because their keys are the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from calibviz.app.state import keep_sidebar_state
from calibviz.config import CONFIG_ENV, ConfigError, load_config
from calibviz.data import DATASET_NAMES, SPLITS, DataSpec, spec_choices
from calibviz.data_sources import spec_choices_for
from calibviz.devices import pick_device
from calibviz.diskcache import cache_dir
from calibviz.formats import FormatError
from calibviz.sources import ModelEntry, models_of
from calibviz.uploads import MAX_UPLOAD_BYTES, accept_upload, restore_upload, upload_key
from calibviz.zoo import default_zoo_dir, list_zoo

UPLOADED = "uploaded"  # the sidebar group of uploads whose data is not a built-in dataset


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: a dataset, a data spec (split, maybe shifted), models and the device."""

    dataset: str
    data: DataSpec
    models: tuple[ModelEntry, ...]
    device: str
    available: tuple[ModelEntry, ...] = ()  # every model of the dataset, selected or not (pages that pick their own)

    @property
    def spec(self) -> str:
        """The data spec as a string, the form every cache and the command line take."""
        return str(self.data)

    @property
    def checkpoints(self) -> tuple[ModelEntry, ...]:
        """The selected models the backend can re-run (views that mask, shift or mix inputs need these)."""
        return tuple(m for m in self.models if m.runnable)


@st.cache_data(show_spinner=False)
def _zoo(root: str) -> list[ModelEntry]:
    return list_zoo(Path(root))


def zoo_models(dataset: str | None = None) -> list[ModelEntry]:
    """The zoo's checkpoints (headers only, cached), all or those of one dataset."""
    entries = _zoo(str(default_zoo_dir()))
    return entries if dataset is None else models_of(entries, dataset)


def _group(m: ModelEntry) -> str:
    """The sidebar group of a model: its built-in dataset, the data of the user's own model, or the uploads."""
    return m.dataset if m.dataset in DATASET_NAMES or m.kind == "source" else UPLOADED


@st.cache_resource(show_spinner=False)
def _configured(path: str) -> tuple[ModelEntry, ...]:
    """The models of the local config file the server was started with (`calibviz serve --config`)."""
    return load_config(path)


def configured_models() -> list[ModelEntry]:
    """The user's own models named in $CALIBVIZ_CONFIG (none without one); a bad file is an error in the sidebar."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return []
    try:
        return list(_configured(path))
    except (ConfigError, OSError) as e:
        st.sidebar.error(f"The config file {path} could not be read: {e}")
        return []


@st.cache_data(show_spinner=False)
def _choices(ds: str, data: str) -> list[DataSpec]:
    """The specs offered for a group: a built-in dataset's, a bundle's splits, or a folder's / tensor file's."""
    if data:
        return spec_choices_for(data)
    return spec_choices(ds, bundle=ds not in DATASET_NAMES)


UPLOAD_PARAM = "upload"  # the URL query parameter that lists this browser's uploads, so a reload keeps them


def _uploads_folder() -> Path:
    return cache_dir() / "uploads"


def _restore_uploads() -> None:
    """Bring back the uploads the page's URL names (after a reload, or in a bookmarked link), once per session."""
    uploads: dict[str, ModelEntry] = st.session_state.setdefault("uploads", {})
    have = {upload_key(m) for m in uploads.values()}
    for key in st.query_params.get_all(UPLOAD_PARAM):
        if key in have or key in st.session_state.setdefault("_bad_upload_keys", set()):
            continue
        try:
            m = restore_upload(key, _uploads_folder())
            uploads[m.name] = m
        except FormatError as e:
            st.session_state["_bad_upload_keys"].add(key)
            st.sidebar.warning(str(e))


def _remember_uploads_in_url() -> None:
    """Keep the URL's list of uploads equal to the session's, so that a reload (or a page switch) keeps them."""
    keys = sorted(upload_key(m) for m in st.session_state.get("uploads", {}).values())
    if sorted(st.query_params.get_all(UPLOAD_PARAM)) != keys:
        st.query_params[UPLOAD_PARAM] = keys


def _upload_box() -> None:
    """The sidebar's uploader: accepted files join the model list at once (the page reruns) and stay after a
    reload (their keys go into the URL); a bad file gets an error naming the problem and nothing already loaded is
    lost."""
    uploads: dict[str, ModelEntry] = st.session_state.setdefault("uploads", {})
    seen: dict[str, str] = st.session_state.setdefault("_seen_uploads", {})
    added = False
    with st.sidebar.expander("Add your own model"):
        st.caption("A predictions bundle (.npz / .safetensors with logits or probs and labels) or a .safetensors "
                   f"checkpoint of a registered architecture with a calibviz card; at most "
                   f"{MAX_UPLOAD_BYTES // 2**20} MB. Nothing is unpickled. Your own PyTorch code and larger files: "
                   "list them in a config file (`calibviz serve --config`).")
        files = st.file_uploader("Upload", type=["npz", "safetensors"], accept_multiple_files=True,
                                 key="uploader", label_visibility="collapsed")
        for f in files or []:
            if f.file_id not in seen:
                try:
                    m = accept_upload(f.name, f.getvalue(), _uploads_folder())
                    uploads[m.name] = m
                    seen[f.file_id] = ""
                    added = True
                except FormatError as e:
                    seen[f.file_id] = str(e)
            if seen[f.file_id]:
                st.error(seen[f.file_id])
        if uploads:
            st.caption("Loaded: " + ", ".join(m.title for m in uploads.values()))
    _remember_uploads_in_url()
    if added:  # the model list above was drawn without it: draw the page again so it is there at once
        st.rerun()


def sidebar(default_recipes: tuple[str, ...] = ("ce", "ls")) -> Selection | None:
    """Draw the sidebar (dataset, models, split, device, uploads) and return the selection, or None when there
    is nothing to show."""
    _restore_uploads()
    entries: list[ModelEntry] = [*zoo_models(), *configured_models(),
                                 *st.session_state.setdefault("uploads", {}).values()]
    if not entries:
        st.sidebar.error(f"No checkpoints found in {default_zoo_dir()}. Build them with `python -m calibviz zoo "
                         "build`.")
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
        help="Checkpoints of the shipped zoo, your configured models and your uploads for this dataset. Pick one or "
             "more to compare.")
    data = next((e.data for e in mine if e.kind == "source"), "")
    choices = {str(s): s for s in _choices(ds, data)}
    spec = st.sidebar.selectbox("Data split", list(choices), key=f"spec_{ds}",
                                format_func=lambda s: choices[s].label,
                                help="test/val/train are the fixed splits (val is the calibration split). "
                                     "The shifted sets are the test split corrupted at severity 1-5.")
    device = str(pick_device())
    st.session_state["device"] = device
    st.sidebar.caption(f"Device: **{device}** · splits: {', '.join(SPLITS)}")
    _upload_box()
    return Selection(dataset=ds, data=choices[spec], models=tuple(by_name[n] for n in chosen), device=device,
                     available=tuple(mine))


def selection(*, need_models: bool = False) -> Selection | None:
    """Draw the shared sidebar and return its selection. Every page calls this first. With `need_models`, a
    selection of no models is None too, after a warning that says to pick one."""
    keep_sidebar_state()
    sel = sidebar()
    if sel is not None and need_models and not sel.models:
        st.warning("Select at least one model in the sidebar.")
        return None
    return sel

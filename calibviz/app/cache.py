"""The app's caches: one decorator for every cached computation, and the cached Predictions of a model.

Streamlit cannot hash tensors and hashes large numpy arrays from a sample, so a `Predictions` argument is hashed by
its content digest and a `ModelEntry` by its file's sha256; everything else a cached function takes is a small
value or a frozen parameter dataclass. A page writes

    @cached
    def bins(preds: Predictions, binning: Binning) -> ReliabilityBins: ...

and never builds a key by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from calibviz.backend import predict_entry
from calibviz.data import DataSpec
from calibviz.devices import pick_device
from calibviz.formats import load_bundle
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry, display_labels
from calibviz.uploads import bundle_rows

F = TypeVar("F", bound=Callable[..., Any])

HASH_FUNCS: dict[Any, Callable[[Any], str]] = {
    Predictions: Predictions.digest,
    ModelEntry: ModelEntry.digest,
}


def cached(fn: F | None = None, *, max_entries: int = 256) -> Any:
    """`st.cache_data` keyed on content: Predictions by digest, models by file sha256, parameters by value."""
    deco = st.cache_data(show_spinner=False, max_entries=max_entries, hash_funcs=HASH_FUNCS)
    return deco(fn) if fn is not None else deco


def cached_resource(fn: F | None = None, *, max_entries: int = 64) -> Any:
    """`st.cache_resource` with the same keys: for results shared by reference (not copied on every read)."""
    deco = st.cache_resource(show_spinner=False, max_entries=max_entries, hash_funcs=HASH_FUNCS)
    return deco(fn) if fn is not None else deco


@cached_resource(max_entries=512)
def _run(entry: ModelEntry, spec: str, mask_ratio: float, device: str) -> Predictions:
    label = f"{entry.title} on {spec}"
    bar = st.progress(0.0, text=f"Running {label} …")

    def report(frac: float, msg: str) -> None:
        bar.progress(float(frac), text=f"{label}: {msg}")

    try:
        return predict_entry(entry, spec, device=device, mask_ratio=mask_ratio, progress=report)
    finally:
        bar.empty()


@cached_resource(max_entries=64)
def _bundle(entry: ModelEntry, split: str) -> Predictions:
    """An uploaded bundle's rows for a split, loaded once: the same object on every rerun, so its digest (and every
    cache keyed on it) is computed once."""
    return bundle_rows(load_bundle(Path(entry.path)), split)


def predictions(entry: ModelEntry, spec: str | DataSpec, mask_ratio: float = 0.0) -> Predictions:
    """Predictions of a model on a dataset spec: from memory, else the disk cache, else the backend (with a
    progress bar). For a predictions bundle, the spec's split selects its rows."""
    if not entry.runnable:
        if mask_ratio:
            raise ValueError(f"{entry.title}: masked inputs need the model; a predictions bundle has only outputs")
        try:  # a bundle of a built-in dataset is listed beside its zoo, whose specs include shifted ones
            data = DataSpec.parse(spec)
        except ValueError:
            data = DataSpec.parse(spec, bundle=True)
        if data.shifted:
            raise ValueError(f"{entry.title}: a predictions bundle has no shifted copies ({data.label})")
        return _bundle(entry, data.split)
    device = st.session_state.get("device") or str(pick_device())
    return _run(entry, str(spec), float(mask_ratio), device)


def predictions_by_model(models: Iterable[ModelEntry], data: str | DataSpec, *,
                         missing_note: str | None = None) -> dict[str, Predictions]:
    """Each model's predictions on `data`, by model name. A model that cannot give them is reported and left out, so
    one broken model never hides the others: as an error, or, with `missing_note` (a split that a bundle may
    lack), as a note that ends with it."""
    models = list(models)
    labels, spec = display_labels(models), DataSpec.of(data)
    out = {}
    for m in models:
        try:
            out[m.name] = predictions(m, spec)
        except Exception as e:  # shown in the page; the others still load
            if missing_note is None:
                st.error(f"{labels[m.name]} on {spec}: {type(e).__name__}: {e}")
            else:
                st.info(f"{labels[m.name]}: no predictions on {spec.label} ({e}); {missing_note}")
    return out

"""Background work of the app server: jobs that outlive one script run (UMAP today), with their progress.

A page asks `umap_embedding_or_job(preds, params, label)`: the embedding at once when the disk cache (or a finished fit)
has it, else the `UmapJob` fitting it in a daemon thread. The page shows PCA meanwhile and calls
`umap_progress(jobs)`, a fragment that polls the fits and reruns the page when all have ended; a widget change in
between does not throw a fit away, since the registry belongs to the server process, not to the script run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import streamlit as st

from calibviz.features import (
    UmapEmbedding,
    UmapParams,
    cached_umap_for_predictions,
    predictions_source_digest,
    umap_for_predictions,
    warm_umap_jit,
)
from calibviz.predictions import Predictions

_WARMUP: threading.Thread | None = None
MAX_FINISHED_JOBS = 64  # finished fits kept in memory (their embeddings are in the disk cache too); running ones all


def warm_umap_in_background() -> None:
    """Compile UMAP's numba code once per server process, in a daemon thread, so the first UMAP a user asks for
    does not pay ~45 s of JIT. Off when CALIBVIZ_WARM_UMAP=0 (the tests set it)."""
    global _WARMUP
    if _WARMUP is not None or os.environ.get("CALIBVIZ_WARM_UMAP", "1") == "0":
        return
    _WARMUP = threading.Thread(target=warm_umap_jit, name="umap-warmup", daemon=True)
    _WARMUP.start()


@dataclass
class UmapJob:
    """One UMAP fit running in a background thread: its progress, and its result or error once `done` is set."""

    label: str
    fraction: float = 0.0
    message: str = "starting (loading umap-learn)"
    result: UmapEmbedding | None = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def report(self, fraction: float, message: str) -> None:
        """The progress callback the fit calls: (fraction done, what it is doing)."""
        self.fraction, self.message = float(fraction), message

    @property
    def failed(self) -> bool:
        """Whether the fit has ended without an embedding (`error` says why)."""
        return self.done.is_set() and self.result is None


@st.cache_resource(show_spinner=False)
def _umap_jobs() -> tuple[dict[tuple, UmapJob], threading.Lock]:
    """UMAP fits started by this server process (running, finished or failed), shared by sessions and reruns."""
    return {}, threading.Lock()


def _run(job: UmapJob, preds: Predictions, params: UmapParams) -> None:
    try:
        job.result = umap_for_predictions(preds, params, progress=job.report)
    except Exception as e:  # shown in the page, with a retry button
        job.error = f"{type(e).__name__}: {e}"
    finally:
        job.done.set()


def _job_key(preds: Predictions, params: UmapParams) -> tuple:
    return predictions_source_digest(preds), str(preds.meta.get("data_spec", "")), params


def umap_embedding_or_job(preds: Predictions, params: UmapParams, label: str) -> UmapEmbedding | UmapJob:
    """The embedding from the disk cache (or a finished fit) at once, else the running or failed fit; the first
    call for a (source, data, params) starts the fit, named `label` in the progress bar."""
    hit = cached_umap_for_predictions(preds, params)
    if hit is not None:
        return hit
    jobs, lock = _umap_jobs()
    key = _job_key(preds, params)
    with lock:
        job = jobs.get(key)
        if job is None:
            job = jobs[key] = UmapJob(label)
            threading.Thread(target=_run, args=(job, preds, params), name=f"umap {label}", daemon=True).start()
            _prune(jobs)
    return job.result if job.result is not None else job


def _prune(jobs: dict[tuple, UmapJob]) -> None:
    """Forget the oldest finished fits beyond MAX_FINISHED_JOBS (dicts keep insertion order), so a long-lived server
    holds a bounded number of embeddings; running fits, and failed ones waiting for a retry, are kept."""
    finished = [k for k, j in jobs.items() if j.result is not None]
    for k in finished[:max(0, len(finished) - MAX_FINISHED_JOBS)]:
        del jobs[k]


def forget_failed_umap_jobs() -> None:
    """Drop the failed fits, so the next `umap_embedding_or_job` call for them starts a new one (the retry button)."""
    jobs, lock = _umap_jobs()
    with lock:
        for k in [k for k, j in jobs.items() if j.failed]:
            del jobs[k]


def umap_progress(jobs: Sequence[UmapJob]) -> None:
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


def umap_job_status(running: Sequence[UmapJob], failed: Sequence[str], retry_key: str) -> None:
    """The fits' state beside the charts: a progress bar while any runs (`umap_progress`), and an error listing the
    failed ones (`failed`: 'model: error' lines) with a retry button that forgets them and reruns the page."""
    if running:
        umap_progress(running)
    if failed:
        st.error("UMAP failed, PCA is shown instead. " + " · ".join(failed))
        if st.button("Retry UMAP", key=retry_key):
            forget_failed_umap_jobs()
            st.rerun()

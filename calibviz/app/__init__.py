"""The app layer: the only code in calibviz that imports Streamlit. A view imports what it needs from here:

    from calibviz.app import cached, explain, guarded, predictions, selection
"""

from __future__ import annotations

from calibviz.app.cache import cached, cached_resource, predictions, predictions_by_model
from calibviz.app.jobs import (
    UmapJob,
    forget_failed_umap_jobs,
    umap_embedding_or_job,
    umap_job_status,
    warm_umap_in_background,
)
from calibviz.app.page import explain, guarded
from calibviz.app.sidebar import Selection, selection, zoo_models

__all__ = [
    "Selection",
    "UmapJob",
    "cached",
    "cached_resource",
    "explain",
    "forget_failed_umap_jobs",
    "guarded",
    "predictions",
    "predictions_by_model",
    "selection",
    "umap_embedding_or_job",
    "umap_job_status",
    "warm_umap_in_background",
    "zoo_models",
]

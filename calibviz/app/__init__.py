"""The app layer: the only code in calibviz that imports Streamlit. A view imports what it needs from here:

    from calibviz.app import cached, explain, guarded, predictions, selection
"""

from __future__ import annotations

import os

import torch

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

# One intra-op thread per torch call in the dashboard process by default: the server runs each session's reruns in
# threads of its own, beside the browser on the same machine, and on the small tensors of a page (a bootstrap of a
# few thousand rows) torch's thread pool then costs more than it gains: a 100-resample report of 500 rows took 1.6 s
# with 2 threads and 0.15 s with 1 on a loaded 2-core machine (bench/results_ui.md). CALIBVIZ_TORCH_THREADS overrides.
torch.set_num_threads(max(1, int(os.environ.get("CALIBVIZ_TORCH_THREADS", "1"))))

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

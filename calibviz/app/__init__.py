"""The app layer: the only code in calibviz that imports Streamlit. A view imports what it needs from here:

    from calibviz.app import cached, explain, guarded, predictions, selection
"""

from __future__ import annotations

from calibviz.app.cache import cached, cached_resource, predictions
from calibviz.app.jobs import warm_umap_in_background
from calibviz.app.page import explain, guarded
from calibviz.app.sidebar import Selection, selection, zoo_models
from calibviz.app.state import restore_page_state, save_page_state

__all__ = [
    "Selection",
    "cached",
    "cached_resource",
    "explain",
    "guarded",
    "predictions",
    "restore_page_state",
    "save_page_state",
    "selection",
    "warm_umap_in_background",
    "zoo_models",
]

"""Background work of the app server: jobs that outlive one script run (UMAP today), with their progress."""

from __future__ import annotations

import os
import threading

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

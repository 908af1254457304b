"""The on-disk caches' shared pieces: where they live, the content digest of a file, and one atomic write.

Every disk cache (predictions, teacher outputs on mixed samples, UMAP embeddings) writes through `atomic_write`,
so a reader never sees a half-written file, and two processes or two server threads writing the same entry never
share a temporary file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "CALIBVIZ_CACHE"


def cache_dir() -> Path:
    """Where cached results live: $CALIBVIZ_CACHE, else ~/.cache/calibviz."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "calibviz"
    return Path(root)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, memoised by (path, size, mtime) so repeated calls are free."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write `path` through `write(tmp)` on a temporary name unique to this process and thread, then rename it
    into place (atomic on one file system). The temporary keeps the final suffix, for writers that check it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}-{threading.get_ident()}{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""The on-disk caches' shared pieces: where they live, the content digest of a file, and one atomic write.

Every disk cache (predictions, teacher outputs on mixed samples, UMAP embeddings) writes through `atomic_write`,
so a reader never sees a half-written file, and two processes, two server threads or two calls of one thread writing
the same entry never share a temporary file. Readers look entries up by their final names only, so a temporary left
behind by a process killed mid-write (`NAME.tmp<pid>-<thread>-<n>SUFFIX`) is never read; `atomic_write` removes
those of dead processes (unchanged for a minute) from the folder it writes in.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import time
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


# The temporary name of an entry being written: NAME.tmp<pid>-<thread id>-<call number>SUFFIX (older versions wrote
# no call number). Only names of this shape are ever swept.
_TMP_NAME = re.compile(r"^.+\.tmp(?P<pid>\d+)-\d+(?:-\d+)?(?:\.[A-Za-z0-9]+)?$")
_CALLS = itertools.count()  # next() on it is atomic under the GIL: one number per call, whatever the thread
_WRITING: set[str] = set()  # temporaries this process is writing now (never swept, whatever their pid)
_WRITING_LOCK = threading.Lock()
STALE_AFTER_S = 60.0  # a temporary unchanged this long, whose writer is gone, is swept


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts as alive: we may not signal it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_stale_temporaries(folder: Path, min_age_s: float | None = None) -> list[Path]:
    """Remove the temporaries in `folder` (not its subfolders) left by writers that died mid-write, e.g. killed with
    kill -9, and return them. A temporary is stale when it has not changed for `min_age_s` and no live process is
    writing it: no process with its pid exists, or the pid is this process's and this process is not writing it (an
    earlier process had the same pid). The age rule keeps a writer whose pid means nothing here (another container or
    host sharing the folder) safe too, so a live writer's temporary is never removed. One directory listing: cheap
    beside the computation a cache write follows. `min_age_s` defaults to `STALE_AFTER_S`, read at call time."""
    if min_age_s is None:
        min_age_s = STALE_AFTER_S
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    me, now = os.getpid(), time.time()
    for name in names:
        m = _TMP_NAME.match(name)
        if m is None:
            continue
        pid, path = int(m["pid"]), Path(folder) / name
        with _WRITING_LOCK:
            try:
                old = now - path.stat().st_mtime >= min_age_s
            except OSError:  # renamed into place or swept meanwhile
                continue
            if old and ((name not in _WRITING) if pid == me else not _pid_alive(pid)):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:  # gone already (another sweeper), or not ours to remove
                    pass
    return removed


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write `path` through `write(tmp)` on a temporary name unique to this process, thread and call, then rename it
    into place (atomic on one file system). The temporary keeps the final suffix, for writers that check it. Stale
    temporaries of dead writers in the same folder are removed first (`sweep_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}-{threading.get_ident()}-{next(_CALLS)}{path.suffix}")
    with _WRITING_LOCK:
        _WRITING.add(tmp.name)
    try:
        sweep_stale_temporaries(path.parent)
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        with _WRITING_LOCK:
            _WRITING.discard(tmp.name)
    return path

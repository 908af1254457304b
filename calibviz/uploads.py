"""Files a user uploads in the browser: predictions bundles and checkpoints of registered architectures.

An upload is size-checked, written under a folder the app owns with a sanitised, content-addressed name (so no
user-supplied path is ever used), then validated exactly like a file given on the command line. TorchScript and
pickled files are refused: only `.npz` (read without pickle) and `.safetensors` are accepted.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from calibviz.diskcache import atomic_write
from calibviz.formats import FormatError, is_checkpoint, load_bundle, load_checkpoint
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
ALLOWED_SUFFIXES = (".npz", ".safetensors")


def _safe_stem(filename: str) -> str:
    stem = Path(filename).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60] or "upload"


def accept_upload(filename: str, data: bytes, folder: Path,
                  max_bytes: int = MAX_UPLOAD_BYTES) -> ModelEntry:
    """Validate and store one uploaded file; raise FormatError saying what was wrong."""
    suffix = Path(filename).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise FormatError(f"{filename}: only predictions bundles (.npz, .safetensors) and .safetensors "
                          f"checkpoints are accepted; pickled or TorchScript files are never loaded from uploads")
    if len(data) > max_bytes:
        raise FormatError(f"{filename}: {len(data) / 2**20:.1f} MB is over the upload limit of "
                          f"{max_bytes / 2**20:.0f} MB")
    if not data:
        raise FormatError(f"{filename}: the file is empty")
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(filename)
    path = folder / f"{digest}-{stem}{suffix}"
    atomic_write(path, lambda tmp: tmp.write_bytes(data))  # named by content: a reader never sees half a file
    try:
        if is_checkpoint(path):
            _, card = load_checkpoint(path)  # validates the card against the tensors
            return ModelEntry(path=path, dataset=str(card.get("dataset", "")), recipe="upload", origin="upload",
                              name=f"upload/{stem}", title=f"{card.get('title') or stem} (uploaded)",
                              arch=str(card["arch"]), kind="checkpoint", card=card)
        preds = load_bundle(path)
    except FormatError as e:
        path.unlink(missing_ok=True)
        raise FormatError(str(e).replace(path.name, filename)) from e
    dataset = str(preds.meta.get("dataset") or "uploaded")
    shown = stem if preds.meta.get("name") in (None, path.stem) else preds.meta["name"]
    return ModelEntry(path=path, dataset=dataset, recipe="bundle", name=f"upload/{stem}", origin="upload",
                      title=f"{shown} (uploaded bundle)", arch="",
                      kind="bundle", card={"meta": preds.meta, "n": preds.n, "n_classes": preds.n_classes})


# The name an upload is stored under, which is also its key in the page's URL: 16 hex digits of its sha256, the
# sanitised stem, the suffix. Only a key of this shape is ever looked up, and only inside the uploads folder.
STORED_NAME = re.compile(r"^[0-9a-f]{16}-[A-Za-z0-9_.-]{1,60}\.(npz|safetensors)$")


def upload_key(entry: ModelEntry) -> str:
    """The key that brings an upload back after a page reload: its stored file name (content-addressed)."""
    return Path(entry.path).name


def restore_upload(key: str, folder: Path) -> ModelEntry:
    """An upload stored earlier, by its key, validated again like a new upload. The key is a capability: only a
    browser that uploaded the file (or was given its link) knows its 64-bit content digest."""
    if not STORED_NAME.match(key):
        raise FormatError(f"{key!r} is not the key of an uploaded file")
    path = folder / key
    if not path.is_file():
        raise FormatError(f"the uploaded file {key.partition('-')[2]} is no longer on this server (its cache was "
                          "emptied); upload it again")
    return accept_upload(key.partition("-")[2], path.read_bytes(), folder)


def bundle_rows(preds: Predictions, split: str) -> Predictions:
    """The rows of an uploaded bundle for a split name: all rows for 'all', else that split (which the
    bundle must carry)."""
    if split == "all":
        return preds
    if preds.split is None:
        raise ValueError(f"this bundle has no 'split' array, so only 'all' rows can be shown, not {split!r}")
    return preds.select_split(split)

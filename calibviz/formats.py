"""Reading and writing checkpoints and predictions bundles, with validation that names the field.

Checkpoints are `.safetensors` state dicts whose metadata key `calibviz_card` holds a JSON card.
Bundles are `.npz` (loaded with allow_pickle=False) or `.safetensors` files of arrays plus a JSON
metadata string. Nothing here ever unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from calibviz.predictions import DEFAULT_SPLIT_NAMES, Predictions

CARD_KEY = "calibviz_card"
META_KEY = "calibviz_meta"
BUNDLE_SUFFIXES = (".npz", ".safetensors")
PROB_SUM_TOL = 1e-3
_OPTIONAL = ("features", "head_weight", "head_bias", "split", "sample_id")


class FormatError(ValueError):
    """A file that is not a valid checkpoint or bundle; the message names the field and the problem."""


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: str | Path, model: Any, card: dict[str, Any]) -> None:
    """Write a model's state dict as safetensors with the JSON card in its metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={CARD_KEY: json.dumps(card, sort_keys=True)})


def _header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The safetensors JSON header (tensor table, metadata), read without loading tensors."""
    raw = path.read_bytes()[:8]
    if len(raw) < 8:
        raise FormatError(f"{path.name}: file is truncated (shorter than the 8-byte safetensors header)")
    n = int.from_bytes(raw, "little")
    size = path.stat().st_size
    if n <= 0 or 8 + n > size:
        raise FormatError(f"{path.name}: file is truncated or not safetensors "
                          f"(header says {n} bytes, file has {size})")
    with path.open("rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path.name}: safetensors header is not valid JSON ({e})") from e
    meta = header.pop("__metadata__", None) or {}
    end = max((v["data_offsets"][1] for v in header.values()), default=0)
    if 8 + n + end > size:
        raise FormatError(f"{path.name}: file is truncated: tensors need {8 + n + end} bytes, "
                          f"file has {size}")
    return header, meta


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of a checkpoint, read from the header only (cheap)."""
    path = Path(path)
    _, meta = _header(path)
    if CARD_KEY not in meta:
        raise FormatError(f"{path.name}: metadata has no '{CARD_KEY}' card; "
                          "not a calibviz checkpoint")
    try:
        card = json.loads(meta[CARD_KEY])
    except json.JSONDecodeError as e:
        raise FormatError(f"{path.name}: card is not valid JSON ({e})") from e
    for key in ("arch", "num_classes"):
        if key not in card:
            raise FormatError(f"{path.name}: card has no '{key}' field")
    return card


def load_checkpoint(path: str | Path, device: str | Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Load (model in eval mode, card); raise FormatError if the card does not match the tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from calibviz.models import build_model

    path = Path(path)
    card = read_card(path)
    try:
        model = build_model(card["arch"], **card.get("arch_kwargs", {}))
    except ValueError as e:
        raise FormatError(f"{path.name}: card field 'arch': {e}") from e
    try:
        state = load_file(str(path))
    except SafetensorError as e:
        raise FormatError(f"{path.name}: cannot read tensors ({e})") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise FormatError(f"{path.name}: card says arch {card['arch']!r} but tensors do not match "
                          f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise FormatError(f"{path.name}: tensor {k!r} has shape {tuple(state[k].shape)}, "
                              f"card's arch {card['arch']!r} expects {tuple(v.shape)}")
        if not state[k].dtype.is_floating_point and v.dtype.is_floating_point:
            raise FormatError(f"{path.name}: tensor {k!r} has dtype {state[k].dtype}, expected float")
    n_out = int(model.head.out_features)
    if int(card["num_classes"]) != n_out:
        raise FormatError(f"{path.name}: card field 'num_classes' is {card['num_classes']}, "
                          f"but the head has {n_out} outputs")
    model.load_state_dict(state)
    return model.to(device).eval(), card


# ---------------------------------------------------------------------------------------------
# Bundles


def _meta_of(preds: Predictions) -> dict[str, Any]:
    meta = dict(preds.meta)
    if preds.split is not None:
        meta.setdefault("split_names", list(DEFAULT_SPLIT_NAMES))
    return meta


def save_bundle(preds: Predictions, path: str | Path) -> None:
    """Write predictions as `.npz` or `.safetensors` (chosen by suffix)."""
    path = Path(path)
    arrays = {k: getattr(preds, k) for k in ("logits", "probs", "labels", *_OPTIONAL)}
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
    meta = json.dumps(_meta_of(preds), sort_keys=True, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        with path.open("wb") as f:
            np.savez(f, **arrays, meta=np.array(meta))
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(path), metadata={META_KEY: meta})
    else:
        raise FormatError(f"{path.name}: bundle must end in {BUNDLE_SUFFIXES}")


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if path.suffix == ".npz":
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise FormatError(f"{path.name}: not a readable .npz file, truncated or corrupt ({e})") from e
        except ValueError as e:  # object arrays need pickle: refused
            raise FormatError(f"{path.name}: holds an object array, which would need unpickling; "
                              f"refused ({e})") from e
        meta_arr = arrays.pop("meta", None)
        meta: dict[str, Any] = {}
        if meta_arr is not None:
            try:
                meta = json.loads(str(meta_arr))
            except json.JSONDecodeError as e:
                raise FormatError(f"{path.name}: field 'meta' is not a JSON string ({e})") from e
        return arrays, meta
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        _, raw_meta = _header(path)
        try:
            arrays = load_file(str(path))
        except SafetensorError as e:
            raise FormatError(f"{path.name}: cannot read tensors ({e})") from e
        try:
            meta = json.loads(raw_meta.get(META_KEY, "{}"))
        except json.JSONDecodeError as e:
            raise FormatError(f"{path.name}: metadata '{META_KEY}' is not JSON ({e})") from e
        return arrays, meta
    raise FormatError(f"{path.name}: a bundle must end in {BUNDLE_SUFFIXES}")


def validate_predictions(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                         source: str = "bundle") -> Predictions:
    """Check bundle arrays against the contract (DESIGN 2.1) and build Predictions.

    Raises FormatError naming the field for: missing or both of logits/probs, wrong shapes or
    dtypes, NaN/inf, labels out of range, probability rows not summing to 1, empty or one-class
    splits."""
    def fail(field: str, msg: str) -> FormatError:
        return FormatError(f"{source}: field '{field}': {msg}")

    has_l, has_p = "logits" in arrays, "probs" in arrays
    if has_l == has_p:
        raise fail("logits/probs", "exactly one of 'logits' and 'probs' is required "
                   f"(found {'both' if has_l else 'neither'}); keys: {sorted(arrays)}")
    key = "logits" if has_l else "probs"
    scores = arrays[key]
    if scores.ndim != 2:
        raise fail(key, f"expected a 2-D (N, C) array, got shape {scores.shape}")
    if scores.dtype.kind != "f":
        raise fail(key, f"expected a float array, got dtype {scores.dtype}")
    n, c = scores.shape
    if n == 0:
        raise fail(key, "has no rows (empty)")
    if c < 2:
        raise fail(key, f"needs at least 2 classes (columns), got {c}")
    bad = ~np.isfinite(scores)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise fail(key, f"contains {int(bad.sum())} NaN/inf values (first in row {r})")
    scores = scores.astype(np.float32, copy=False)
    if key == "probs":
        if (scores < 0).any():
            raise fail("probs", "has negative probabilities")
        dev = np.abs(scores.astype(np.float64).sum(1) - 1.0)
        if (dev > PROB_SUM_TOL).any():
            r = int(dev.argmax())
            raise fail("probs", f"rows must sum to 1 (within {PROB_SUM_TOL}); row {r} sums to "
                       f"{float(scores[r].sum()):.6f}")

    if "labels" not in arrays:
        raise fail("labels", "is missing")
    labels = arrays["labels"]
    if labels.shape != (n,):
        raise fail("labels", f"expected shape ({n},) to match {key}, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise fail("labels", f"expected an integer array, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise fail("labels", f"out of range: values must lie in [0, {c}); found min {labels.min()}, "
                   f"max {labels.max()}")
    labels = labels.astype(np.int64, copy=False)

    opt: dict[str, np.ndarray | None] = {k: arrays.get(k) for k in _OPTIONAL}
    f = opt["features"]
    if f is not None:
        if f.ndim != 2 or f.shape[0] != n:
            raise fail("features", f"expected shape ({n}, D), got {f.shape}")
        if f.dtype.kind != "f" or not np.isfinite(f).all():
            raise fail("features", "must be finite floats")
        opt["features"] = f.astype(np.float32, copy=False)
    w = opt["head_weight"]
    if w is not None:
        d = f.shape[1] if f is not None else w.shape[-1]
        if w.shape != (c, d):
            raise fail("head_weight", f"expected shape ({c}, {d}), got {w.shape}")
    b = opt["head_bias"]
    if b is not None and b.shape != (c,):
        raise fail("head_bias", f"expected shape ({c},), got {b.shape}")
    for k in ("split", "sample_id"):
        a = opt[k]
        if a is not None:
            if a.shape != (n,):
                raise fail(k, f"expected shape ({n},), got {a.shape}")
            if a.dtype.kind not in "iu":
                raise fail(k, f"expected an integer array, got dtype {a.dtype}")
            opt[k] = a.astype(np.int64, copy=False)

    meta = dict(meta)
    split = opt["split"]
    if split is not None:
        names = list(meta.setdefault("split_names", list(DEFAULT_SPLIT_NAMES)))
        if split.min() < 0 or split.max() >= len(names):
            raise fail("split", f"codes must lie in [0, {len(names)}) for split_names {names}")
        for code in np.unique(split):
            classes = np.unique(labels[split == code])
            if len(classes) < 2:
                raise fail("split", f"split {names[code]!r} holds only one class ({classes[0]})")
    elif len(np.unique(labels)) < 2:
        raise fail("labels", "all labels are one class; calibration needs at least two")

    return Predictions(labels=labels, logits=scores if has_l else None,
                       probs=scores if has_p else None, meta=meta, **opt)


def load_bundle(path: str | Path) -> Predictions:
    """Read and validate a predictions bundle (.npz or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    arrays, meta = _read_arrays(path)
    meta.setdefault("name", path.stem)
    return validate_predictions(arrays, meta, source=path.name)


def is_checkpoint(path: str | Path) -> bool:
    """True if the file is a safetensors file carrying a calibviz card."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return False
    try:
        _, meta = _header(path)
    except FormatError:
        return False
    return CARD_KEY in meta

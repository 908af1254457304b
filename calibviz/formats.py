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
from calibviz.safe_read import FormatError, one_line, parse_json_text, read_npz, safetensors_header

__all__ = [
    "FormatError",
    "check_card",
    "is_checkpoint",
    "load_bundle",
    "load_checkpoint",
    "read_card",
    "save_bundle",
    "save_checkpoint",
    "validate_predictions",
]

CARD_KEY = "calibviz_card"
META_KEY = "calibviz_meta"
BUNDLE_SUFFIXES = (".npz", ".safetensors")
PROB_SUM_TOL = 1e-3
_OPTIONAL = ("features", "head_weight", "head_bias", "split", "sample_id")


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: str | Path, model: Any, card: dict[str, Any]) -> None:
    """Write a model's state dict as safetensors with the JSON card in its metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={CARD_KEY: json.dumps(card, sort_keys=True)})


# Metadata fields with a fixed meaning, and the type each must have (other keys are kept as given).
_META_STR_FIELDS = ("name", "dataset", "data_spec", "notes", "input_kind", "checkpoint_sha256")
MAX_CHECKPOINT_ELEMENTS = 200_000_000
MAX_KWARG_LIST = 64  # entries in one arch_kwargs list (layer widths): building 10^5 layers alone takes minutes
MAX_ABS_LOGIT = 1e6  # 800 MB of float32: far above the registered architectures


def _header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The safetensors tensor table and metadata, checked field by field without loading tensors."""
    return safetensors_header(path)


def _shown(v: Any, limit: int = 60) -> str:
    """A value as a message shows it: its repr (so 1 and '1' differ), cut at `limit` characters."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_card(card: Any, where: str) -> dict[str, Any]:
    """A checkpoint card checked against its schema: an object with a string `arch`, an integer `num_classes`
    >= 2, a built-in `dataset`, `arch_kwargs` an object of plain values, and typed optional fields."""
    from calibviz.data import DATASET_NAMES

    def fail(field: str, msg: str) -> FormatError:
        return FormatError(f"{where}: card field '{field}' {msg}")

    if not isinstance(card, dict):
        raise FormatError(f"{where}: the card must be a JSON object, got {type(card).__name__}")
    for key in ("arch", "num_classes", "dataset"):
        if key not in card:
            why = {"dataset": "; calibviz cannot tell which data to run the checkpoint on"}.get(key, "")
            raise FormatError(f"{where}: card has no '{key}' field{why}")
    if not isinstance(card["arch"], str) or not card["arch"]:
        raise fail("arch", f"is {_shown(card['arch'])}; expected the name of a registered architecture")
    n = card["num_classes"]
    if type(n) is not int or n < 2:
        raise fail("num_classes", f"is {_shown(n)}; expected an integer >= 2")
    if card["dataset"] not in DATASET_NAMES:
        raise fail("dataset", f"is {_shown(card['dataset'])}; a checkpoint runs on a built-in dataset "
                   f"{list(DATASET_NAMES)} (for other data, extract a predictions bundle)")
    kwargs = card.get("arch_kwargs", {})
    plain = (int, float, str, bool, type(None))
    if not isinstance(kwargs, dict) or not all(
            isinstance(v, plain) or (isinstance(v, list) and all(isinstance(x, plain) for x in v))
            for v in kwargs.values()):
        raise fail("arch_kwargs", f"is {str(kwargs)[:60]}; expected an object of numbers, strings or lists of them")
    long = next((k for k, v in kwargs.items() if isinstance(v, list) and len(v) > MAX_KWARG_LIST), None)
    if long is not None:
        raise fail("arch_kwargs", f"entry {long[:40]!r} is a list of {len(kwargs[long])} values; at most "
                   f"{MAX_KWARG_LIST} are accepted")
    for key in ("name", "title", "notes"):
        if key in card and not isinstance(card[key], str):
            raise fail(key, f"is a {type(card[key]).__name__}; expected a string")
    for key in ("recipe", "metrics", "teacher", "training"):
        if key in card and not isinstance(card[key], dict | type(None)):
            raise fail(key, f"is a {type(card[key]).__name__}; expected an object")
    names = card.get("class_names")
    if names is not None and (not _is_str_list(names) or len(names) != n):
        raise fail("class_names", f"expected a list of {n} strings (num_classes), got {str(names)[:60]}")
    return card


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of a checkpoint, read from the header only (cheap) and checked against its schema."""
    path = Path(path)
    _, meta = _header(path)
    if CARD_KEY not in meta:
        raise FormatError(f"{path.name}: metadata has no '{CARD_KEY}' card; "
                          "not a calibviz checkpoint")
    card = parse_json_text(meta[CARD_KEY], f"{path.name}: card")
    return check_card(card, path.name)


def load_checkpoint(path: str | Path, device: str | Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Load (model in eval mode, card); raise FormatError if the card does not match the tensors.

    The card's architecture is first built on torch's meta device (no memory) and its state dict compared with the
    file's header, so a card asking for a huge model, or tensors of other shapes, is refused before anything is
    allocated; weights with NaN or inf are refused after reading."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from calibviz.models import build_model

    path = Path(path)
    card = read_card(path)
    header, _ = _header(path)
    arch = card["arch"]
    try:
        with torch.device("meta"):
            skeleton = build_model(arch, **card.get("arch_kwargs", {}))
    except (ValueError, TypeError, RuntimeError) as e:
        raise FormatError(f"{path.name}: card fields 'arch'/'arch_kwargs': {one_line(e, 200)}") from None
    expected = skeleton.state_dict()
    n_params = sum(v.numel() for v in expected.values())
    if n_params > MAX_CHECKPOINT_ELEMENTS:
        raise FormatError(f"{path.name}: card field 'arch_kwargs' asks for {n_params:,} parameters, over the "
                          f"limit of {MAX_CHECKPOINT_ELEMENTS:,}")
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        raise FormatError(f"{path.name}: card says arch {arch!r} but tensors do not match "
                          f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for k, v in expected.items():
        if tuple(header[k]["shape"]) != tuple(v.shape):
            raise FormatError(f"{path.name}: tensor {k!r} has shape {tuple(header[k]['shape'])}, "
                              f"card's arch {arch!r} expects {tuple(v.shape)}")
        if v.dtype.is_floating_point and header[k]["dtype"] not in ("F64", "F32", "F16", "BF16"):
            raise FormatError(f"{path.name}: tensor {k!r} has dtype {header[k]['dtype']}, expected a float")
    n_out = int(skeleton.head.out_features)
    if card["num_classes"] != n_out:
        raise FormatError(f"{path.name}: card field 'num_classes' is {card['num_classes']}, "
                          f"but the head has {n_out} outputs")
    try:
        state = load_file(str(path))
    except (SafetensorError, ValueError, TypeError, RuntimeError) as e:
        raise FormatError(f"{path.name}: cannot read tensors ({one_line(e, 200)})") from None
    for k, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise FormatError(f"{path.name}: tensor {k!r} holds NaN or inf weights")
    model = build_model(arch, **card.get("arch_kwargs", {}))
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


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], Any]:
    """The arrays and the parsed metadata of a bundle, each file's structure checked before it is read."""
    if path.suffix == ".npz":
        arrays = read_npz(path)
        meta_arr = arrays.pop("meta", None)
        if meta_arr is None:
            return arrays, {}
        if meta_arr.shape != () or meta_arr.dtype.kind != "U":
            raise FormatError(f"{path.name}: field 'meta' must be a JSON string (a 0-d str array), got "
                              f"{meta_arr.dtype} of shape {meta_arr.shape}")
        return arrays, parse_json_text(str(meta_arr), f"{path.name}: field 'meta'")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        _, raw_meta = safetensors_header(path, numpy_only=True)
        try:
            arrays = load_file(str(path))
        except (SafetensorError, ValueError, TypeError, OSError) as e:
            raise FormatError(f"{path.name}: cannot read tensors ({one_line(e, 200)})") from None
        if META_KEY not in raw_meta:
            return arrays, {}
        return arrays, parse_json_text(raw_meta[META_KEY], f"{path.name}: metadata '{META_KEY}'")
    raise FormatError(f"{path.name}: a bundle must end in {BUNDLE_SUFFIXES}")


def _check_meta(meta: Any, n_classes: int, source: str) -> dict[str, Any]:
    """Bundle metadata checked against its schema: an object whose known fields have their types (`name` and the
    like strings, `class_names` one string per class, `split_names` distinct strings)."""
    def fail(field: str, msg: str) -> FormatError:
        return FormatError(f"{source}: metadata field '{field}' {msg}")

    if not isinstance(meta, dict):
        raise FormatError(f"{source}: the metadata must be a JSON object, got {type(meta).__name__}")
    for key in _META_STR_FIELDS:
        if key in meta and not isinstance(meta[key], str):
            raise fail(key, f"is a {type(meta[key]).__name__}; expected a string")
    names = meta.get("class_names")
    if names is not None and (not _is_str_list(names) or len(names) != n_classes):
        got = (type(names).__name__ if not isinstance(names, list) else f"{len(names)} entries"
               if len(names) != n_classes else f"non-strings: {_shown(names)}")
        raise fail("class_names", f"expected a list of {n_classes} strings (one per class), got {got}")
    splits = meta.get("split_names")
    if splits is not None:
        if not _is_str_list(splits) or not splits or not all(splits):
            raise fail("split_names", f"expected a list of non-empty strings, got {str(splits)[:60]}")
        if len(set(splits)) != len(splits):
            raise fail("split_names", f"has duplicates: {splits}")
    return meta


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
    peak = float(np.abs(scores).max())
    if key == "logits" and peak > MAX_ABS_LOGIT:
        raise fail("logits", f"holds values up to {peak:.3g}; logits beyond {MAX_ABS_LOGIT:g} are not a model's "
                   "scores (softmax in float32 saturates long before), check the file")
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

    def finite_floats(k: str, shape: tuple[int | None, ...], what: str) -> np.ndarray | None:
        a = opt[k]
        if a is None:
            return None
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape, strict=True)):
            raise fail(k, f"expected shape {what}, got {a.shape}")
        if a.dtype.kind != "f":
            raise fail(k, f"expected a float array, got dtype {a.dtype}")
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise fail(k, "must be finite floats (holds NaN or inf, or values beyond float32's range)")
        return a

    opt["features"] = f = finite_floats("features", (n, None), f"({n}, D)")
    d = f.shape[1] if f is not None else None
    opt["head_weight"] = finite_floats("head_weight", (c, d), f"({c}, {d if d is not None else 'D'})")
    opt["head_bias"] = finite_floats("head_bias", (c,), f"({c},)")
    for k in ("split", "sample_id"):
        a = opt[k]
        if a is not None:
            if a.shape != (n,):
                raise fail(k, f"expected shape ({n},), got {a.shape}")
            if a.dtype.kind not in "iu":
                raise fail(k, f"expected an integer array, got dtype {a.dtype}")
            opt[k] = a.astype(np.int64, copy=False)

    meta = dict(_check_meta(meta, c, source))
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
    if isinstance(meta, dict):
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

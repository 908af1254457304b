"""Datasets as plain strings: `NAME[-CORRUPTION-SEVERITY]:SPLIT`, e.g. `digits:val`, `mnist1d-noise-3:test`.

Two real datasets that work offline: scikit-learn's bundled 8x8 `digits` and `mnist1d`, generated
locally with its `make_dataset`. Splits are fixed by a seeded permutation; `val` is the calibration
split. Corruptions (additive noise, Gaussian blur, translation) at severities 1-5 give shifted copies.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

SPLITS = ("train", "val", "test")
CORRUPTIONS = ("noise", "blur", "shift")
SEVERITIES = (1, 2, 3, 4, 5)
DATASET_NAMES = ("digits", "mnist1d")
SPLIT_SEED = 20240611
# Part of every prediction-cache key: bump when the data a spec denotes changes. (2: mnist1d generation is
# serialised; concurrent first loads used to interleave draws from numpy's global RNG and give other data.)
DATA_VERSION = 2
_RAW_LOCK = threading.Lock()

# Sizes of the fixed splits (train, val, test).
_SPLIT_SIZES = {"digits": (1000, 297, 500), "mnist1d": (10000, 5000, 10000)}
_MNIST1D_SAMPLES = 25000

# Corruption strength per severity 1..5, per dataset: noise as a multiple of the data's std, blur as
# the Gaussian sigma in pixels (samples), shift as the translation in pixels (samples).
_NOISE = (0.15, 0.3, 0.5, 0.75, 1.0)
_BLUR = {"digits": (0.4, 0.6, 0.8, 1.0, 1.3), "mnist1d": (0.75, 1.5, 2.25, 3.0, 4.0)}
_SHIFT = {"digits": (0.5, 1.0, 1.5, 2.0, 2.5), "mnist1d": (2.0, 4.0, 6.0, 8.0, 11.0)}

_SPEC_RE = re.compile(r"^(?P<name>[a-z0-9]+)(?:-(?P<corr>[a-z]+)-(?P<sev>\d+))?:(?P<split>[a-z]+)$")


# Where a spec's rows come from: a built-in dataset, the rows of a predictions bundle (its own dataset name and
# split names), an ImageFolder tree or a tensor file (calibviz.data_sources reads those two).
SOURCES = ("builtin", "bundle", "folder", "tensors")
BUNDLE_SPLITS = ("all", "test", "val", "train")
# The user's own data (folder:, tensors:): the splits they offer, and the corruptions of natural images.
PATH_SOURCES = ("folder", "tensors")
PATH_SPLITS = ("all", "test", "val", "train")
IMAGE_CORRUPTIONS = ("noise", "blur", "shift", "jpeg", "contrast")
_CORRUPTION_SEGMENT_RE = re.compile(r"^(?P<corr>[a-z]+)-(?P<sev>\d+)$")
_SPLIT_SEGMENT_RE = re.compile(r"^[a-z]+$")


class DataSpecError(ValueError):
    """A data spec string that does not parse; the message names the spec and what was expected."""


def _parse_path_spec(spec: str) -> tuple[str, str, str, str | None, int]:
    """Split `SOURCE:PATH[:SPLIT][:CORRUPTION-SEVERITY]` into (source, path, split, corruption, severity).

    The rule, so paths may hold ':': segments are peeled from the right only while at least one is left for the
    path. A last segment `word-digits` is the corruption; then a last segment of lowercase letters is the split
    (default `all`); the rest, joined by ':', is the path. `str(spec)` always writes the split, so a path ending
    in e.g. `:test` round-trips (`folder:/a:test:all`)."""
    source, _, rest = spec.strip().partition(":")
    segments = rest.split(":")
    corr: str | None = None
    sev = 0
    if len(segments) > 1 and (m := _CORRUPTION_SEGMENT_RE.match(segments[-1])):
        corr, sev = m["corr"], int(m["sev"])
        segments.pop()
    split = "all"
    if len(segments) > 1 and _SPLIT_SEGMENT_RE.match(segments[-1]):
        split = segments.pop()
    path = ":".join(segments)
    form = f"{source}:PATH[:SPLIT][:CORRUPTION-SEVERITY], e.g. '{source}:/data/pets:test:noise-3'"
    if not path:
        raise DataSpecError(f"{source} spec {spec!r} has no path; expected {form}")
    if split not in PATH_SPLITS:
        raise DataSpecError(f"split {split!r} in {spec!r} is unknown; known: {list(PATH_SPLITS)} ({form})")
    if corr is not None:
        if corr not in IMAGE_CORRUPTIONS:
            raise DataSpecError(f"corruption {corr!r} in {spec!r} is unknown; known: {list(IMAGE_CORRUPTIONS)}")
        if sev not in SEVERITIES:
            raise DataSpecError(f"severity {sev} in {spec!r} must be one of {list(SEVERITIES)}")
    return source, path, split, corr, sev


def _path_source_of(spec: str) -> str | None:
    """`folder` or `tensors` when the spec string starts with that prefix, else None."""
    head, sep, _ = spec.strip().partition(":")
    return head if sep and head in PATH_SOURCES else None


@dataclass(frozen=True)
class DataSpec:
    """A parsed dataset spec: dataset name, split, an optional corruption with its severity, and its source.

    Code never splits a spec string by hand: parse it once and read the fields."""

    name: str
    split: str
    corruption: str | None = None
    severity: int = 0
    source: str = "builtin"
    path: str = ""  # the folder or tensor file of a `folder` / `tensors` spec, as the user wrote it

    @classmethod
    def from_path(cls, source: str, path: str, split: str = "all", corruption: str | None = None,
                  severity: int = 0) -> DataSpec:
        """The spec of an ImageFolder tree (`source="folder"`) or a tensor file (`"tensors"`); validated by
        parsing its own string, so it equals `DataSpec.parse(str(spec))`."""
        if source not in PATH_SOURCES:
            raise DataSpecError(f"source {source!r} has no path; path sources: {list(PATH_SOURCES)}")
        shift = f":{corruption}-{severity}" if corruption else ""
        return cls.parse(f"{source}:{path}:{split}{shift}")

    @classmethod
    def parse(cls, spec: str | DataSpec, *, bundle: bool = False) -> DataSpec:
        """Parse `NAME[-CORRUPTION-SEVERITY]:SPLIT` or `folder:`/`tensors:PATH[:SPLIT][:CORRUPTION-SEVERITY]`;
        raise ValueError saying what is wrong. With `bundle`, NAME is a predictions bundle's own dataset name and
        SPLIT one of its split names (or `all`); no corruption."""
        if isinstance(spec, DataSpec):
            return spec
        if not bundle and _path_source_of(spec):
            source, path, split, corr, sev = _parse_path_spec(spec)
            where = PurePath(path.replace("\\", "/"))
            name = (where.stem if source == "tensors" else where.name) or path
            return cls(name=name, split=split, corruption=corr, severity=sev, source=source, path=path)
        if bundle:
            name, sep, split = spec.strip().rpartition(":")
            if not sep or not name or not split:
                raise ValueError(f"bundle spec {spec!r} is not of the form NAME:SPLIT, e.g. 'cifar10:test'")
            return cls(name=name, split=split, source="bundle")
        m = _SPEC_RE.match(spec.strip())
        if not m:
            raise ValueError(
                f"dataset spec {spec!r} is not of the form NAME[-CORRUPTION-SEVERITY]:SPLIT, "
                f"e.g. 'digits:test' or 'mnist1d-noise-3:test'")
        name, split = m["name"], m["split"]
        if name not in DATASET_NAMES:
            raise ValueError(f"dataset {name!r} in {spec!r} is unknown; known: {list(DATASET_NAMES)}")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} in {spec!r} is unknown; known: {list(SPLITS)}")
        corr, sev = m["corr"], int(m["sev"]) if m["sev"] else 0
        if corr is not None:
            if corr not in CORRUPTIONS:
                raise ValueError(
                    f"corruption {corr!r} in {spec!r} is unknown; known: {list(CORRUPTIONS)}")
            if sev not in SEVERITIES:
                raise ValueError(f"severity {sev} in {spec!r} must be one of {list(SEVERITIES)}")
        return cls(name=name, split=split, corruption=corr, severity=sev)

    @classmethod
    def of(cls, spec: str | DataSpec) -> DataSpec:
        """A built-in dataset's spec when `spec` names one, an image folder or tensor file when it starts with
        `folder:` / `tensors:` (so no bundle's dataset may be named so), else the rows of a predictions bundle."""
        if isinstance(spec, DataSpec):
            return spec
        if _path_source_of(spec):
            return cls.parse(spec)
        m = _SPEC_RE.match(spec.strip())
        return cls.parse(spec, bundle=m is None or m["name"] not in DATASET_NAMES)

    @property
    def builtin(self) -> bool:
        """Whether calibviz can generate these inputs itself (so a checkpoint can be run on them)."""
        return self.source == "builtin"

    @property
    def has_inputs(self) -> bool:
        """Whether calibviz can read this data's inputs (built-in data, image folders, tensor files), not only a
        predictions bundle's outputs."""
        return self.source != "bundle"

    @property
    def shifted(self) -> bool:
        """Whether the inputs are corrupted (a distribution-shift split)."""
        return self.corruption is not None

    @property
    def label(self) -> str:
        """Human label for pickers and captions: 'test', 'test — noise, severity 3'."""
        if self.shifted:
            return f"{self.split} — {self.corruption}, severity {self.severity}"
        return self.split

    def with_split(self, split: str) -> DataSpec:
        """The clean `split` of the same dataset (e.g. the calibration split `val` beside a shifted test set)."""
        return DataSpec(name=self.name, split=split, source=self.source, path=self.path)

    def __str__(self) -> str:
        if self.source in PATH_SOURCES:
            shift = f":{self.corruption}-{self.severity}" if self.corruption else ""
            return f"{self.source}:{self.path}:{self.split}{shift}"
        shift = f"-{self.corruption}-{self.severity}" if self.corruption else ""
        return f"{self.name}{shift}:{self.split}"


def spec_choices(name: str, *, bundle: bool = False) -> list[DataSpec]:
    """Every spec the dashboard offers for a dataset: clean test/val/train, then each shifted test set; a
    bundle's rows offer all rows or one of its splits."""
    if bundle:
        return [DataSpec(name=name, split=s, source="bundle") for s in BUNDLE_SPLITS]
    return [DataSpec(name=name, split=s) for s in ("test", "val", "train")] + [
        DataSpec(name=name, split="test", corruption=c, severity=k) for c in CORRUPTIONS for k in SEVERITIES]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and labels of one split. `x` is float32 (N, *input_shape); `sample_id` indexes the
    full dataset before splitting, so ids are stable across splits and corruptions."""

    spec: DataSpec
    x: np.ndarray
    y: np.ndarray
    sample_id: np.ndarray
    class_names: tuple[str, ...]
    input_kind: str  # "image" (1, H, W) or "signal" (L,)

    def __len__(self) -> int:
        return int(self.y.shape[0])


def list_specs(name: str) -> list[str]:
    """Every spec of a dataset: the three clean splits, then each corruption and severity of test."""
    out = [f"{name}:{s}" for s in SPLITS]
    out += [f"{name}-{c}-{k}:test" for c in CORRUPTIONS for k in SEVERITIES]
    return out


def _raw(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """The whole dataset before splitting: inputs, labels, class names, input kind. Serialised: mnist1d's
    generator reseeds and draws from numpy's global RNG, so two threads generating at once corrupt each other."""
    with _RAW_LOCK:
        return _raw_once(name)


@functools.lru_cache(maxsize=4)
def _raw_once(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
        return x, d.target.astype(np.int64), tuple(str(i) for i in range(10)), "image"
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = _MNIST1D_SAMPLES
        args.train_split = 1.0
        state = np.random.get_state()  # make_dataset reseeds numpy's global RNG
        try:
            d = make_dataset(args)
        finally:
            np.random.set_state(state)
        x = np.asarray(d["x"], dtype=np.float32)
        y = np.asarray(d["y"], dtype=np.int64)
        return x, y, tuple(str(i) for i in range(10)), "signal"
    raise ValueError(f"dataset {name!r} is unknown; known: {list(DATASET_NAMES)}")


def split_indices(name: str) -> dict[str, np.ndarray]:
    """The fixed, seeded train/val/test index arrays of a dataset (sorted within each split)."""
    x, _, _, _ = _raw(name)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_tr, n_va, n_te = _SPLIT_SIZES[name]
    assert n_tr + n_va + n_te <= len(x)
    return {
        "train": np.sort(perm[:n_tr]),
        "val": np.sort(perm[n_tr:n_tr + n_va]),
        "test": np.sort(perm[n_tr + n_va:n_tr + n_va + n_te]),
    }


def _seed_of(spec: DataSpec) -> int:
    return int.from_bytes(hashlib.sha256(str(spec).encode()).digest()[:4], "little")


def corrupt(x: np.ndarray, name: str, corruption: str, severity: int, seed: int) -> np.ndarray:
    """A corrupted copy of inputs `x` (float32): additive Gaussian noise, Gaussian blur, or
    translation with zero fill, at severity 1..5. Image inputs are clipped back to [0, 1]."""
    from scipy import ndimage

    k = severity - 1
    image = x.ndim == 4
    spatial = (0, 0, 1, 1) if image else (0, 1)  # which axes are spatial, per sample batch
    if corruption == "noise":
        rng = np.random.default_rng(seed)
        out = x + rng.normal(0.0, _NOISE[k] * float(x.std()), size=x.shape).astype(np.float32)
    elif corruption == "blur":
        sigma = tuple(s * _BLUR[name][k] for s in spatial)
        out = ndimage.gaussian_filter(x, sigma=sigma, mode="constant")
    elif corruption == "shift":
        rng = np.random.default_rng(seed)
        d = _SHIFT[name][k]
        out = np.empty_like(x)
        signs = rng.choice([-1.0, 1.0], size=(len(x), 2))
        for i in range(len(x)):  # per-sample direction; sizes here are small (<= 10k rows)
            offs = (0.0, signs[i, 0] * d, signs[i, 1] * d) if image else (signs[i, 0] * d,)
            out[i] = ndimage.shift(x[i], offs, order=1, mode="constant", cval=0.0)
    else:
        raise ValueError(f"corruption {corruption!r} is unknown; known: {list(CORRUPTIONS)}")
    if image:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _load(spec: DataSpec) -> Dataset:
    x, y, class_names, kind = _raw(spec.name)
    idx = split_indices(spec.name)[spec.split]
    xs = x[idx]
    if spec.corruption:
        xs = corrupt(xs, spec.name, spec.corruption, spec.severity, _seed_of(spec))
    xs.setflags(write=False)
    ys = y[idx]
    ys.setflags(write=False)
    return Dataset(spec=spec, x=xs, y=ys, sample_id=idx.astype(np.int64), class_names=class_names,
                   input_kind=kind)


def load_dataset(spec: str | DataSpec) -> Dataset:
    """Load one split (optionally corrupted) of a dataset from its spec string. Results are cached
    in memory and read-only."""
    spec = DataSpec.parse(spec)
    if not spec.builtin:
        raise ValueError(f"{spec} names the rows of a predictions bundle; only built-in datasets have inputs")
    return _load(spec)

"""Seeded mixup and CutMix over one dataset split, and a teacher's logits on the mixed inputs.

Each mixed sample records both parents (row index in the split, sample id, label) and λ, the weight of
parent a; parents are ordered so that a weighs at least as much as b (λ ≥ ½). Teacher logits are cached
on disk by (checkpoint sha256, dataset spec, augmentation parameters); the mixed inputs themselves are
cheap and regenerated from the seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibviz.data import Dataset, DataSpec, load_dataset
from calibviz.diskcache import atomic_write, cache_dir, file_digest

if TYPE_CHECKING:
    import torch

Progress = Callable[[float, str], None]

KINDS = ("mixup", "cutmix")
MIX_FORMAT_VERSION = 1


@dataclass(frozen=True)
class AugmentParams:
    """Which augmentation: `kind` mixup or cutmix, λ0 ~ Beta(alpha, alpha), `n_samples` mixed samples,
    drawn with `seed`."""

    kind: str = "mixup"
    alpha: float = 1.0
    n_samples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"augmentation kind {self.kind!r} is unknown; known: {list(KINDS)}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")

    def key(self) -> str:
        """A stable string of the parameters, for cache keys."""
        return f"{self.kind}|{self.alpha!r}|{self.n_samples}|{self.seed}"


@dataclass(frozen=True, eq=False)
class MixedSamples:
    """Mixed inputs and where they came from. `x` is float32 (n, *input_shape); `lam` (n,) float64 in
    [½, 1] is the weight of parent a (for CutMix, the share of input elements taken from a); `index_*`
    index the split's rows, `sample_id_*` the whole dataset."""

    x: np.ndarray
    lam: np.ndarray
    index_a: np.ndarray
    index_b: np.ndarray
    sample_id_a: np.ndarray
    sample_id_b: np.ndarray
    label_a: np.ndarray
    label_b: np.ndarray
    spec: str
    params: AugmentParams
    input_kind: str
    class_names: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.lam.shape[0])


def _box_masks(shape: tuple[int, ...], lam0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CutMix regions, (n, *shape) bool: per sample one box (images, shape (1, H, W)) or one interval
    (signals, shape (L,)) of side length ⌊side·√(1−λ0)⌋ (interval: ⌊L·(1−λ0)⌋) at a uniform centre,
    clipped to the input."""
    n = len(lam0)
    if len(shape) == 1:
        sizes = [shape[0]]
        frac = [1.0 - lam0]
    elif len(shape) == 3:
        sizes = [shape[1], shape[2]]
        r = np.sqrt(1.0 - lam0)
        frac = [r, r]
    else:
        raise ValueError(f"CutMix needs signal (L,) or image (1, H, W) inputs, got shape {shape}")
    inside = np.ones((n, *sizes), dtype=bool)
    for axis, (size, f) in enumerate(zip(sizes, frac, strict=True)):
        length = np.floor(size * f).astype(np.int64)
        centre = rng.integers(0, size, size=n)
        lo = np.clip(centre - length // 2, 0, size)
        hi = np.clip(centre - length // 2 + length, 0, size)
        pos = np.arange(size)
        along = (pos >= lo[:, None]) & (pos < hi[:, None])  # (n, size)
        view = [n] + [1] * len(sizes)
        view[axis + 1] = size
        inside &= along.reshape(view)
    return inside.reshape((n, *shape))


def mix_split(data: Dataset, params: AugmentParams) -> MixedSamples:
    """Draw `params.n_samples` mixed samples from one split: parents i, j uniform with i ≠ j (their
    classes may coincide), λ0 ~ Beta(α, α); mixup x = λ0·x_i + (1−λ0)·x_j, CutMix pastes x_j into a
    box and sets λ from the box actually pasted. Parents are then swapped where needed so λ ≥ ½."""
    n_rows = len(data)
    if n_rows < 2:
        raise ValueError(f"{data.spec}: mixing needs at least 2 rows, got {n_rows}")
    rng = np.random.default_rng(params.seed)
    n = params.n_samples
    i = rng.integers(0, n_rows, size=n)
    j = (i + rng.integers(1, n_rows, size=n)) % n_rows
    lam0 = rng.beta(params.alpha, params.alpha, size=n)
    xi, xj = data.x[i].astype(np.float32), data.x[j].astype(np.float32)
    if params.kind == "mixup":
        w = lam0.astype(np.float32).reshape((n,) + (1,) * (xi.ndim - 1))
        x = w * xi + (1.0 - w) * xj
        lam_i = lam0
    else:
        inside = _box_masks(tuple(data.x.shape[1:]), lam0, rng)
        x = np.where(inside, xj, xi)
        lam_i = 1.0 - inside.reshape(n, -1).mean(1)
    swap = lam_i < 0.5
    ia, ib = np.where(swap, j, i), np.where(swap, i, j)
    lam = np.where(swap, 1.0 - lam_i, lam_i).astype(np.float64)
    return MixedSamples(
        x=np.ascontiguousarray(x, dtype=np.float32), lam=lam, index_a=ia, index_b=ib,
        sample_id_a=data.sample_id[ia], sample_id_b=data.sample_id[ib],
        label_a=data.y[ia].astype(np.int64), label_b=data.y[ib].astype(np.int64),
        spec=str(data.spec), params=params, input_kind=data.input_kind,
        class_names=tuple(data.class_names))


@dataclass(frozen=True, eq=False)
class TeacherOnMixed:
    """A teacher's logits (n, C) float32 on mixed samples, with the mix record and the checkpoint's card."""

    logits: np.ndarray
    mix: MixedSamples
    checkpoint_sha256: str
    card: dict[str, Any]

    @property
    def name(self) -> str:
        """Display name of the teacher."""
        return str(self.card.get("name", "teacher"))


def _cache_path(digest: str, spec: str, params: AugmentParams) -> Path:
    key = hashlib.sha256(f"{digest}|{spec}|{params.key()}|mix-v{MIX_FORMAT_VERSION}".encode()).hexdigest()
    return cache_dir() / f"mixed-{key[:32]}.safetensors"


def _load_cached(path: Path, mix: MixedSamples) -> np.ndarray | None:
    """Cached logits if the file is readable and its mix record matches the regenerated one."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None
    logits = arrays.get("logits")
    same = (logits is not None and logits.shape[0] == len(mix)
            and np.array_equal(arrays.get("lam"), mix.lam)
            and np.array_equal(arrays.get("index_a"), mix.index_a)
            and np.array_equal(arrays.get("index_b"), mix.index_b))
    return logits if same else None


def teacher_on_mixed(checkpoint: str | Path, data_spec: str | DataSpec, params: AugmentParams, *,
                     device: str | torch.device | None = None, batch_size: int = 2048,
                     use_cache: bool = True, progress: Progress | None = None) -> TeacherOnMixed:
    """Mix one split (`mix_split`) and run a checkpoint over the mixed inputs in batches on `device`
    (default: CUDA when present), reading and writing the logits in the disk cache. The backend (and torch)
    is imported only when the logits are not cached."""
    from calibviz.formats import read_card

    data = load_dataset(data_spec)
    mix = mix_split(data, params)
    digest = file_digest(checkpoint)
    card = read_card(checkpoint)
    path = _cache_path(digest, mix.spec, params)
    if use_cache and path.is_file():
        logits = _load_cached(path, mix)
        if logits is not None:
            if progress:
                progress(1.0, "loaded from cache")
            return TeacherOnMixed(logits=logits, mix=mix, checkpoint_sha256=digest, card=card)
        path.unlink(missing_ok=True)  # a damaged or stale entry is recomputed
    from calibviz.backend import run_model
    from calibviz.devices import pick_device
    from calibviz.formats import load_checkpoint

    dev = pick_device(None if device is None else str(device))
    model, card = load_checkpoint(checkpoint, device=dev)
    logits, _ = run_model(model, mix.x, dev, batch_size, progress=progress)
    if use_cache:
        from safetensors.numpy import save_file

        tensors = {"logits": np.ascontiguousarray(logits), "lam": mix.lam, "index_a": mix.index_a,
                   "index_b": mix.index_b}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    return TeacherOnMixed(logits=logits, mix=mix, checkpoint_sha256=digest, card=card)

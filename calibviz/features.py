"""Penultimate-layer analyses: PCA, UMAP (cached, serialised), the Müller template projection,
class separation R² (Kornblith et al. 2021) and linear CKA.

Label smoothing squeezes each class into a tight, equidistant cluster (Müller, Kornblith & Hinton
2019); these functions give the coordinates and numbers that show it. All return plain data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from calibviz.data import DataSpec, load_dataset
from calibviz.diskcache import atomic_write
from calibviz.predictions import Predictions

Progress = Callable[[float, str], None]
ArrayLike = np.ndarray | torch.Tensor

UMAP_CACHE_VERSION = 2  # 2: exact neighbours from torch (exact_neighbors), not NN-descent


def _as_float64(a: ArrayLike) -> torch.Tensor:
    t = a.detach() if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t.to(torch.float64)


def _as_numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# --------------------------------------------------------------------------------------------- PCA

def pca(features: ArrayLike, q: int = 2, *, oversample: int = 16, niter: int = 4,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centred PCA by `torch.pca_lowrank`: (coords (N, q) float32, explained variance ratio (q,)).

    The randomized solver gets an explicit rank q + `oversample` (capped at min(N, D)) and a fixed
    seed; the ratio is each component's variance over the total variance of the features."""
    x = _as_float64(features)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}")
    n, d = x.shape
    if not 1 <= q <= min(n, d):
        raise ValueError(f"q must lie in [1, min(N, D)] = [1, {min(n, d)}], got {q}")
    rank = min(q + oversample, n, d)
    mean = x.mean(dim=0, keepdim=True)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        _, s, v = torch.pca_lowrank(x, q=rank, center=True, niter=niter)
    coords = (x - mean) @ v[:, :q]
    total = float(((x - mean) ** 2).sum())
    ratio = (s[:q] ** 2 / total).cpu().numpy() if total > 0 else np.zeros(q)
    return coords.cpu().numpy().astype(np.float32), ratio


# -------------------------------------------------------------------------------------------- UMAP

_UMAP_LOCK = threading.Lock()
_JIT_WARM = threading.Event()


@dataclass(frozen=True)
class UmapParams:
    """UMAP settings and the stratified sample size (None: all points). All enter the cache key."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "euclidean"
    n_components: int = 2
    sample_size: int | None = 5000
    seed: int = 0


@dataclass(frozen=True, eq=False)
class UmapEmbedding:
    """A UMAP embedding: row `indices` of the input and their (n, n_components) float32 coords."""

    indices: np.ndarray
    coords: np.ndarray
    from_cache: bool
    seconds: float


@dataclass(frozen=True, eq=False)
class Embedding2D:
    """Points to draw in 2-D: row indices into the predictions, their (n, 2) coords, axis titles and the method."""

    rows: np.ndarray
    coords: np.ndarray
    axes: tuple[str, str]
    method: str

    @classmethod
    def from_umap(cls, emb: UmapEmbedding) -> Embedding2D:
        """A 2-D UMAP embedding's points, with plain 'UMAP 1' / 'UMAP 2' axes (its distances carry no units)."""
        return cls(emb.indices, emb.coords, ("UMAP 1", "UMAP 2"), "UMAP")


def pca_embedding(preds: Predictions, sample_size: int | None) -> Embedding2D:
    """The stratified sample's rows (`stratified_sample`, seed 0; the rows UMAP embeds) at their 2-D PCA
    coordinates, PCA being fitted on all rows; the axes say each component's share of the variance."""
    if preds.features is None:
        raise ValueError(f"{preds.name}: these predictions carry no 'features' array")
    rows = stratified_sample(preds.labels, sample_size, seed=0)
    coords, ratio = pca(preds.features, q=2)
    return Embedding2D(rows, coords[rows], (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%})"), "PCA")


def stratified_sample(labels: np.ndarray, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded sample of `size` rows, each class keeping its share (largest
    remainder rounding; every present class keeps at least one row when size allows). None or a size
    at least N returns all rows."""
    y = np.asarray(labels)
    n = y.shape[0]
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"sample size must be positive, got {size}")
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * size / n
    take = np.floor(exact).astype(np.int64)
    if size >= len(classes):
        take = np.maximum(take, 1)
    short = size - int(take.sum())
    if short > 0:
        order = np.argsort(-(exact - np.floor(exact)), kind="stable")
        order = order[take[order] < counts[order]]
        take[order[:short]] += 1
    while int(take.sum()) > size:  # the at-least-one rule overshot: trim the largest classes
        take[int(np.argmax(take))] -= 1
    rng = np.random.default_rng(seed)
    parts = [rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
             for c, k in zip(classes, take, strict=True) if k > 0]
    return np.sort(np.concatenate(parts))


class _EpochSink:
    """A file-like target for umap-learn's tqdm bar (bar_format '{n}/{total}') that turns each
    update into a progress callback between `lo` and `hi`."""

    def __init__(self, progress: Progress, lo: float, hi: float) -> None:
        self.progress, self.lo, self.hi = progress, lo, hi

    def write(self, text: str) -> int:
        for token in text.replace("\r", "\n").split():
            done, _, total = token.partition("/")
            if done.isdigit() and total.isdigit() and int(total) > 0:
                frac = int(done) / int(total)
                self.progress(self.lo + (self.hi - self.lo) * frac, f"UMAP epoch {done}/{total}")
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


def exact_neighbors(x: np.ndarray, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every row (itself first) and their distances, exactly, by matrix products in row
    blocks of about 2^24 distances: (N, k) int64 and float32. Euclidean or cosine distance."""
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"exact neighbours are for euclidean or cosine distance, not {metric!r}")
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if metric == "cosine":
        t = torch.nn.functional.normalize(t, dim=1)
    sq = (t * t).sum(1)
    n, k = t.shape[0], min(k, t.shape[0])
    idx, dist = np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=np.float32)
    step = max(1, 2**24 // max(n, 1))
    for s in range(0, n, step):
        rows = torch.arange(s, min(n, s + step))
        d = (t[rows] @ t.T).mul_(-2).add_(sq[rows, None]).add_(sq[None, :]).clamp_min_(0)
        d[torch.arange(len(rows)), rows] = -1.0                 # each row is its own first neighbour
        v, i = torch.topk(d, k, dim=1, largest=False)
        v = v.clamp_min_(0)
        idx[rows.numpy()] = i.numpy()
        dist[rows.numpy()] = (v / 2 if metric == "cosine" else v.sqrt_()).numpy()  # cosine: 1 - cos = |a-b|^2 / 2
    return idx, dist


def fit_umap(features: ArrayLike, params: UmapParams | None = None, progress: Progress | None = None,
             *, force_approximation: bool = False) -> np.ndarray:
    """Fit UMAP on all rows of `features` and return (N, n_components) float32 coordinates.

    For euclidean and cosine distance the neighbours are exact, from `exact_neighbors` (a fraction of a second for
    5,000 points), and handed to umap-learn: its NN-descent search is approximate and its numba code cannot be
    cached on disk, so it cost a fresh process 20-50 s of compiling before the first embedding. Other metrics, or
    `force_approximation`, take umap-learn's own search. Fits (and the first import of umap-learn) are serialised by
    a process-wide lock: two concurrent numba fits can abort the process."""
    p = params or UmapParams()
    x = _as_numpy(features).astype(np.float32, copy=False)
    report = progress or (lambda _f, _m: None)
    report(0.0, "waiting for the UMAP lock")
    with _UMAP_LOCK:
        import umap  # heavy (numba); imported only when a fit is asked for, by one thread at a time

        k = min(p.n_neighbors, max(2, len(x) - 1))
        knn = (None, None, None)
        if p.metric in ("euclidean", "cosine") and not force_approximation and len(x) > k:
            report(0.02, "UMAP: exact nearest neighbours")
            knn = (*exact_neighbors(x, k, p.metric), None)
        report(0.05, "UMAP: fuzzy graph" + ("" if _JIT_WARM.is_set() else " (compiling numba)"))
        tqdm_kwds = {"disable": progress is None, "file": _EpochSink(report, 0.3, 0.99),
                     "bar_format": "{n}/{total}", "mininterval": 0.25}
        reducer = umap.UMAP(n_neighbors=k, min_dist=p.min_dist, metric=p.metric, n_components=p.n_components,
                            random_state=p.seed, n_jobs=1, tqdm_kwds=tqdm_kwds, precomputed_knn=knn,
                            force_approximation_algorithm=force_approximation)
        with warnings.catch_warnings():   # "no search index": transform() is never used, only fit_transform
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            coords = reducer.fit_transform(x)
        _JIT_WARM.set()
    report(1.0, "UMAP done")
    return np.asarray(coords, dtype=np.float32)


def warm_umap_jit() -> float:
    """Import umap-learn and compile its numba kernels with a tiny fit on the path real inputs take (exact
    neighbours handed over), once per process; returns the seconds it took (0 when already warm). Meant for a
    background thread at app startup."""
    if _JIT_WARM.is_set():
        return 0.0
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 1.0, size=(100, 8)) for c in (0.0, 6.0)]).astype(np.float32)
    fit_umap(x, UmapParams(n_neighbors=10, sample_size=None))
    return time.perf_counter() - t0


def umap_cache_dir() -> Path:
    """Where cached UMAP embeddings live: the cache folder's umap/."""
    from calibviz.diskcache import cache_dir

    return cache_dir() / "umap"


def umap_cache_key(source_digest: str, data_spec: str, indices: np.ndarray, params: UmapParams) -> str:
    """sha256 key of an embedding: source (checkpoint or predictions) digest, data spec, the sampled
    row indices and the UMAP parameters."""
    h = hashlib.sha256()
    h.update(f"v{UMAP_CACHE_VERSION}|{source_digest}|{data_spec}|".encode())
    h.update(json.dumps(asdict(params), sort_keys=True).encode())
    h.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()


def _umap_cache_path(source_digest: str, data_spec: str, indices: np.ndarray, params: UmapParams) -> Path:
    return umap_cache_dir() / f"{umap_cache_key(source_digest, data_spec, indices, params)[:40]}.npz"


def _read_cached_umap(path: Path, indices: np.ndarray) -> np.ndarray | None:
    """Coordinates stored at `path` for exactly these row indices, or None (absent, damaged or stale)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            cached_idx, coords = z["indices"], z["coords"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged entry (empty, truncated, not a zip) is recomputed and overwritten
    same = np.array_equal(cached_idx, indices) and coords.ndim == 2 and coords.shape[0] == len(indices)
    return coords.astype(np.float32) if same else None


def umap_embedding(features: ArrayLike, labels: np.ndarray, *, source_digest: str, data_spec: str = "",
                   params: UmapParams | None = None, progress: Progress | None = None,
                   use_cache: bool = True) -> UmapEmbedding:
    """UMAP of a stratified sample of the rows, from the disk cache when the same (source digest,
    data spec, sample indices, params) was embedded before; otherwise fitted and stored."""
    p = params or UmapParams()
    t0 = time.perf_counter()
    idx = stratified_sample(labels, p.sample_size, p.seed)
    path = _umap_cache_path(source_digest, data_spec, idx, p)
    coords = _read_cached_umap(path, idx) if use_cache else None
    if coords is not None:
        if progress:
            progress(1.0, "UMAP loaded from cache")
        return UmapEmbedding(idx, coords, True, time.perf_counter() - t0)
    x = _as_numpy(features)[idx]
    coords = fit_umap(x, p, progress)
    if use_cache:
        with contextlib.suppress(OSError):  # a full or read-only cache folder: the fit is kept, only not stored
            atomic_write(path, lambda tmp: np.savez(tmp, indices=idx, coords=coords))
    return UmapEmbedding(idx, coords, False, time.perf_counter() - t0)


def predictions_source_digest(preds: Predictions) -> str:
    """The digest that identifies where features came from: the checkpoint's sha256 plus the input
    mask (ratio, and seed when recorded) when the backend made them, else the Predictions' content
    digest."""
    ck = preds.meta.get("checkpoint_sha256")
    if ck:
        ratio = float(preds.meta.get("mask_ratio", 0.0))
        return f"{ck}|mask={ratio:.6f}|seed={preds.meta.get('mask_seed', 0) if ratio > 0 else 0}"
    return preds.digest()


def umap_for_predictions(preds: Predictions, params: UmapParams | None = None,
                         progress: Progress | None = None, use_cache: bool = True) -> UmapEmbedding:
    """UMAP of a Predictions' penultimate features, stratified by label, cached by checkpoint digest
    (or predictions digest) and data spec."""
    if preds.features is None:
        raise ValueError(f"{preds.name}: these predictions carry no 'features' array")
    return umap_embedding(preds.features, preds.labels, source_digest=predictions_source_digest(preds),
                          data_spec=str(preds.meta.get("data_spec", "")), params=params,
                          progress=progress, use_cache=use_cache)


def cached_umap_for_predictions(preds: Predictions, params: UmapParams | None = None) -> UmapEmbedding | None:
    """The embedding `umap_for_predictions(preds, params)` would return, when it is already in the disk
    cache; None otherwise. Never fits, never waits for the UMAP lock (a page can show it at once)."""
    if preds.features is None:
        return None
    p = params or UmapParams()
    t0 = time.perf_counter()
    idx = stratified_sample(preds.labels, p.sample_size, p.seed)
    path = _umap_cache_path(predictions_source_digest(preds), str(preds.meta.get("data_spec", "")), idx, p)
    coords = _read_cached_umap(path, idx)
    return None if coords is None else UmapEmbedding(idx, coords, True, time.perf_counter() - t0)


def rows_for_sample_ids(sample_ids: np.ndarray, wanted: ArrayLike) -> np.ndarray:
    """Row positions in `sample_ids` of the `wanted` ids, in the order asked; ids not present are dropped
    (e.g. the ids of points a user selected on a chart, looked up in a dataset split)."""
    ids = np.asarray(sample_ids).astype(np.int64, copy=False)
    want = np.asarray(wanted, dtype=np.float64).ravel()
    want = want[np.isfinite(want)].astype(np.int64)
    if ids.size == 0 or want.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], want).clip(max=ids.size - 1)
    found = ids[order][pos] == want
    return order[pos[found]]


def gallery_rows(preds: Predictions, rows: ArrayLike, k: int = 24) -> np.ndarray:
    """Up to k of the given rows of `preds` to show as pictures: misclassified ones first, then by
    ascending confidence (where a model hesitates is the interesting part of a selection)."""
    r = np.asarray(rows, dtype=np.int64).ravel()
    if r.size == 0:
        return r
    probs = preds.probabilities()[r]
    wrong = probs.argmax(axis=1) != preds.labels[r]
    order = np.lexsort((probs.max(axis=1), ~wrong))
    return r[order[:k]]


@dataclass(frozen=True, eq=False)
class SelectedInputs:
    """The inputs of points picked on a chart, in gallery order: x (n, *input_shape) and one caption each."""

    x: np.ndarray
    captions: list[str]


def selected_inputs(preds: Predictions, data: str | DataSpec, ids: ArrayLike, k: int = 24) -> SelectedInputs | None:
    """Up to k inputs of the points with sample `ids` (a built-in dataset's split `data`, the one `preds` was made
    on), ordered by `gallery_rows` and captioned 'label→prediction confidence'; None when none of them is found."""
    if preds.sample_id is None:
        raise ValueError(f"{preds.name}: these predictions carry no sample ids to find the inputs by")
    prow = gallery_rows(preds, rows_for_sample_ids(preds.sample_id, ids), k)
    spec = DataSpec.of(data)
    if spec.builtin:
        ds = load_dataset(spec)
        xrow = rows_for_sample_ids(ds.sample_id, preds.sample_id[prow])
        if prow.size == 0 or xrow.size != prow.size:
            return None
        x = ds.x[xrow]
    else:  # an image folder or tensor file: read just these rows, preprocessed as the model saw them
        from calibviz.data_sources import Preprocess, open_inputs

        if prow.size == 0:
            return None
        pre = Preprocess.from_json(preds.meta["preprocess"]) if preds.meta.get("preprocess") else None
        x = open_inputs(spec, pre).pixels(preds.sample_id[prow])
    probs = preds.probabilities()[prow]
    names = preds.class_names
    caps = [f"{names[int(y)]}→{names[int(q)]} {c:.2f}"
            for y, q, c in zip(preds.labels[prow], probs.argmax(1), probs.max(1), strict=True)]
    return SelectedInputs(x, caps)

# ------------------------------------------------------------------------ Müller template projection

@dataclass(frozen=True, eq=False)
class TemplateProjection:
    """Examples of three classes projected onto the plane through their class templates.

    coords (n, 2) float32; labels (n,); indices: rows of the input; sample_id (n,): the rows' ids
    (the indices when none were given); vertices (3, 2): the templates in plane coordinates (first at
    the origin, second on the first axis); basis (D+1, 2)."""

    classes: tuple[int, int, int]
    coords: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    sample_id: np.ndarray
    vertices: np.ndarray
    basis: np.ndarray


def template_plane(head_weight: np.ndarray, head_bias: np.ndarray | None,
                   classes: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(origin w1 (D+1,), orthonormal basis (D+1, 2)) of the affine plane through the templates of
    three classes (weight rows with the bias appended), by Gram–Schmidt on w2 − w1 and w3 − w1."""
    w = np.asarray(head_weight, dtype=np.float64)
    b = np.zeros(w.shape[0]) if head_bias is None else np.asarray(head_bias, dtype=np.float64)
    if len(set(classes)) != 3:
        raise ValueError(f"the template projection needs three distinct classes, got {classes}")
    for c in classes:
        if not 0 <= c < w.shape[0]:
            raise ValueError(f"class {c} is out of range [0, {w.shape[0]})")
    t = np.concatenate([w, b[:, None]], axis=1)[list(classes)]
    a1, a2 = t[1] - t[0], t[2] - t[0]
    n1 = np.linalg.norm(a1)
    if n1 == 0:
        raise ValueError(f"templates of classes {classes[0]} and {classes[1]} coincide")
    u1 = a1 / n1
    r = a2 - (a2 @ u1) * u1
    nr = np.linalg.norm(r)
    if nr <= 1e-12 * max(np.linalg.norm(a2), 1.0):
        raise ValueError(f"templates of classes {classes} are collinear: they span no plane")
    return t[0], np.stack([u1, r / nr], axis=1)


def template_projection(features: ArrayLike, labels: np.ndarray, head_weight: np.ndarray,
                        head_bias: np.ndarray | None, classes: tuple[int, int, int],
                        sample_id: np.ndarray | None = None) -> TemplateProjection:
    """Müller et al. (2019) projection: for the examples of the three classes, the activations with
    1 appended, minus template w1, dotted with the plane's orthonormal basis [u1, u2]."""
    cls = (int(classes[0]), int(classes[1]), int(classes[2]))
    origin, basis = template_plane(head_weight, head_bias, cls)
    x = _as_numpy(features).astype(np.float64)
    y = np.asarray(labels)
    idx = np.flatnonzero(np.isin(y, cls))
    xa = np.concatenate([x[idx], np.ones((idx.size, 1))], axis=1)
    coords = (xa - origin) @ basis
    w = np.asarray(head_weight, dtype=np.float64)
    b = np.zeros(w.shape[0]) if head_bias is None else np.asarray(head_bias, dtype=np.float64)
    templates = np.concatenate([w, b[:, None]], axis=1)[list(cls)]
    vertices = (templates - origin) @ basis
    ids = idx if sample_id is None else np.asarray(sample_id)[idx]
    return TemplateProjection(classes=cls, coords=coords.astype(np.float32), labels=y[idx], indices=idx,
                              sample_id=ids, vertices=vertices, basis=basis)


def has_template_inputs(preds: Predictions) -> bool:
    """Whether the predictions carry what the template projection needs: penultimate features and the head's
    weights."""
    return preds.features is not None and preds.head_weight is not None


def template_projection_for(preds: Predictions, classes: tuple[int, int, int]) -> TemplateProjection:
    """The template projection of a Predictions' features with its head weight and bias."""
    if not has_template_inputs(preds):
        raise ValueError(f"{preds.name}: the template projection needs 'features' and 'head_weight'")
    return template_projection(preds.features, preds.labels, preds.head_weight, preds.head_bias, classes,
                               sample_id=preds.sample_id)


def projection_spread(proj: TemplateProjection) -> float:
    """How tight the three clusters of a template projection are, scale-free: the mean over the classes of
    the RMS distance of a class's points to their centroid, over the mean distance between the three
    centroids. Smaller means tighter, better separated clusters; nan when a class has no points."""
    centroids, radii = [], []
    for c in proj.classes:
        pts = np.asarray(proj.coords, dtype=np.float64)[proj.labels == c]
        if pts.shape[0] == 0:
            return float("nan")
        mu = pts.mean(axis=0)
        centroids.append(mu)
        radii.append(float(np.sqrt(((pts - mu) ** 2).sum(axis=1).mean())))
    m = np.stack(centroids)
    gaps = [np.linalg.norm(m[i] - m[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    mean_gap = float(np.mean(gaps))
    return float(np.mean(radii)) / mean_gap if mean_gap > 0 else float("nan")


# ------------------------------------------------------------------------------ class separation R²

def class_separation(features: ArrayLike, labels: ArrayLike) -> float:
    """Kornblith et al. (2021) class separation R² = 1 − d̄_within / d̄_total with cosine distance,
    self-pairs included, classes weighted equally; exact in O(N·D) through class means of unit vectors.

    With μ_k the mean of the unit-normalised features of class k (K classes present):
    d̄_within = mean_k mean_{i,j∈k} (1 − cos) = 1 − mean_k ‖μ_k‖² and
    d̄_total = mean_{j,k} mean_{i∈j, l∈k} (1 − cos) = 1 − ‖mean_k μ_k‖². Every class counts 1/K
    whatever its size; with equal class sizes this equals averaging over all N² pairs. All-zero rows
    stay zero vectors (their cosine with anything is taken as 0)."""
    x = _as_float64(features)
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    classes, inverse = torch.unique(y, return_inverse=True)
    k = classes.numel()
    if k < 2:
        raise ValueError("class separation needs at least two classes")
    u = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    inverse = inverse.to(x.device)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, inverse, u)
    counts = torch.bincount(inverse, minlength=k).to(torch.float64)
    mu = sums / counts[:, None]
    within = 1.0 - float((mu * mu).sum(dim=1).mean())
    grand = mu.mean(dim=0)
    total = 1.0 - float(grand @ grand)
    if total <= 0:
        return float("nan")
    return 1.0 - within / total


def class_separation_for(preds: Predictions | None) -> float:
    """`class_separation` of a Predictions' features and labels; NaN when there are no predictions or features
    (a table shows it as missing)."""
    if preds is None or preds.features is None:
        return float("nan")
    return class_separation(preds.features, preds.labels)


# ------------------------------------------------------------------------------------- linear CKA

def linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Centred linear CKA of two feature matrices over the same N examples, in float64:
    ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F) after centring each column (Kornblith et al. 2019)."""
    a = _as_float64(x)
    b = _as_float64(y).to(a.device)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must be (N, D1) and (N, D2), got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a - a.mean(dim=0, keepdim=True)
    b = b - b.mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(b.T @ a) ** 2
    denom = torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b)
    if float(denom) == 0.0:
        return float("nan")
    return float(cross / denom)


def same_rows(preds: Sequence[Predictions]) -> bool:
    """Whether the predictions cover the same examples in the same order, as CKA needs: equal row counts, and
    equal sample ids (or none carries sample ids)."""
    if not preds:
        return True
    ids = [p.sample_id for p in preds]
    return all(p.n == preds[0].n for p in preds) and (
        all(i is None for i in ids) or all(i is not None and np.array_equal(i, ids[0]) for i in ids))


def cka_matrix(features: list[ArrayLike]) -> np.ndarray:
    """(M, M) matrix of linear CKA between every pair of M feature matrices (rows aligned)."""
    m = len(features)
    out = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            out[i, j] = out[j, i] = linear_cka(features[i], features[j])
    return out


def cka_matrix_for(preds: Sequence[Predictions]) -> np.ndarray:
    """`cka_matrix` of the predictions' features; their rows must be the same examples (`same_rows`)."""
    if not same_rows(preds):
        raise ValueError("CKA needs the same examples, in the same order, for every model")
    if any(p.features is None for p in preds):
        raise ValueError("CKA needs penultimate features for every model")
    return cka_matrix([p.features for p in preds])

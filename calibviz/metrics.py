"""Calibration metrics: the full set the field uses, with seeded percentile-bootstrap intervals.

Every binned metric goes through one device-agnostic kernel: `bin_index` (torch.bucketize for
equal-width bins, ranks for equal-mass bins) and `bin_sums` (scatter_add of counts and sums per
bin). Bootstrap resamples are multinomial counts used as weights through the same kernel, so no
Python loop runs over resamples. Functions return plain numbers, numpy arrays or small dataclasses.

Default convention (docs/metrics.md): top-label, 15 equal-width bins closed on the right, (lo, hi], with 0
in the first bin. Every result names the convention it used.

`METRICS` is the registry of the report's metrics: one `MetricInfo` each (key, label, gloss, definition,
bins, direction, and how one evaluation pass computes it). The JSON keys, the bootstrap, the Reliability
page's table and the table in docs/metrics.md all follow from it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import torch

CONVENTION = "top-label, equal-width bins closed on the right (lo, hi]"
SMOOTH_SIGMA_MIN = 1e-3     # smallest kernel width searched (as relplot)
BOOT_SIGMA_ITERS = 18      # bisection steps for each resample's width (bracket 4e-6)
_CHUNK_ELEMENTS = 1 << 22   # bound on temporaries: rows x columns processed at once
_BOOT_CHUNK_ELEMENTS = 1 << 24  # resamples x rows held at once (128 MB of float64 weights)

ArrayLike = np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class Binning:
    """How confidences are binned: `n_bins` bins, equal-width ("width") or equal-mass ("mass").

    width: bin b holds values in (b/B, (b+1)/B]; 0 goes in the first bin.
    mass: values sorted and split by rank into B bins of N/B rows each; a group of tied values
    takes the bin of its lowest rank (the number, or resample weight, of strictly smaller values),
    so ties share a bin and a bin may hold more than N/B rows or none. Independent of row order.
    """

    n_bins: int = 15
    scheme: Literal["width", "mass"] = "width"

    def __post_init__(self) -> None:
        if not isinstance(self.n_bins, int | np.integer) or self.n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {self.n_bins!r}")
        if self.scheme not in ("width", "mass"):
            raise ValueError(f"scheme must be 'width' or 'mass', got {self.scheme!r}")

    @property
    def convention(self) -> str:
        """Plain-words description of the bins, for the UI and the JSON."""
        if self.scheme == "width":
            return f"{self.n_bins} equal-width bins closed on the right (lo, hi]"
        return (f"{self.n_bins} equal-mass bins (sorted by confidence, split by rank into equal counts; "
                "tied confidences share the bin of their lowest rank)")


@dataclass(frozen=True)
class Bootstrap:
    """Seeded percentile bootstrap: `n_boot` resamples of the rows, a `level` two-sided interval."""

    n_boot: int = 200
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be at least 1, got {self.n_boot}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {self.level}")


DEFAULT_BOOTSTRAP = Bootstrap()
DEBIASED_BINNING = Binning(15, "mass")


def _binning(n_bins: int | Binning) -> Binning:
    return n_bins if isinstance(n_bins, Binning) else Binning(int(n_bins))


# ---------------------------------------------------------------------------------------------
# Plain-data results


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin accuracy, mean confidence, count and gap (confidence - accuracy) of a binning.

    `edges` are the bin limits: k/B for equal-width bins; for equal-mass bins, the smallest
    confidence of each bin and the largest of the last. `accuracy_low/high` is the 95% Wilson
    interval of each bin's accuracy (binomial, given the bin's members).
    """

    edges: np.ndarray       # (B+1,)
    accuracy: np.ndarray    # (B,) nan where empty
    confidence: np.ndarray  # (B,) nan where empty
    count: np.ndarray       # (B,) int
    convention: str = CONVENTION
    accuracy_low: np.ndarray | None = None
    accuracy_high: np.ndarray | None = None
    scheme: str = "width"

    @property
    def gap(self) -> np.ndarray:
        """Confidence minus accuracy per bin (positive: over-confident)."""
        return self.confidence - self.accuracy

    @property
    def ece(self) -> float:
        """Count-weighted mean |gap| over the bins."""
        n = self.count.sum()
        return float(np.nansum(self.count * np.abs(self.gap)) / n) if n else float("nan")

    @property
    def mce(self) -> float:
        """Largest |gap| over non-empty bins."""
        g = np.abs(self.gap[self.count > 0])
        return float(g.max()) if g.size else float("nan")


@dataclass(frozen=True)
class ClasswiseCalibration:
    """Classwise reliability: for each class k, bins of p_k with the observed frequency of class k.

    Arrays are (C, B). `ece_per_class[k]` = sum_b count/N * |mean p_k - frequency|.
    """

    edges: np.ndarray           # (B+1,) equal-width, or (C, B+1) equal-mass
    frequency: np.ndarray       # (C, B) share of the bin's rows whose label is k; nan where empty
    confidence: np.ndarray      # (C, B) mean p_k in the bin; nan where empty
    count: np.ndarray           # (C, B) int
    ece_per_class: np.ndarray   # (C,)
    convention: str
    scheme: str = "width"

    def for_class(self, k: int) -> ReliabilityBins:
        """The reliability bins of one class, for a classwise diagram."""
        edges = self.edges if self.edges.ndim == 1 else self.edges[k]
        lo, hi = wilson_interval(self.frequency[k], self.count[k])
        return ReliabilityBins(edges=edges, accuracy=self.frequency[k], confidence=self.confidence[k],
                               count=self.count[k], convention=f"class {k}: {self.convention}",
                               accuracy_low=lo, accuracy_high=hi, scheme=self.scheme)


@dataclass(frozen=True)
class SmoothCalibration:
    """Smooth ECE (Blasiok & Nakkiran 2023) and the kernel-smoothed reliability curve at its width.

    `accuracy[j]` is the Nadaraya-Watson estimate of P(correct | confidence = t[j]) with the
    reflected Gaussian kernel of width `sigma`; nan where the confidence density is below 0.01
    (no data there). `low/high` is its pointwise percentile-bootstrap band; `density` the kernel
    density of the confidences (integrates to 1 on [0, 1]).
    """

    smooth_ece: float
    sigma: float
    t: np.ndarray
    accuracy: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    density: np.ndarray
    convention: str = "reflected Gaussian kernel on [0, 1], width sigma = smooth ECE (fixed point)"


@dataclass(frozen=True)
class RiskCoverage:
    """Selective risk (error rate among the most confident) against coverage, and its area (AURC).

    Points are at the end of each group of tied confidences, from the most confident down.
    """

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray
    aurc: float


@dataclass(frozen=True)
class MetricEstimate:
    """A metric's value on all rows with its percentile-bootstrap interval (None without one)."""

    value: float
    low: float | None = None
    high: float | None = None

    def text(self, digits: int = 4, space: str = "\u00a0") -> str:
        """'value [low, high]' (no-break spaces by default, so a table cell never splits), or the value alone."""
        if self.low is None or self.high is None:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f}{space}[{self.low:.{digits}f},{space}{self.high:.{digits}f}]"

    def to_json(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class MetricSet:
    """Point estimates and percentile-bootstrap intervals of every calibration metric."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    convention: str
    n_bins: int
    n: int
    bootstrap: Bootstrap | None

    def estimate(self, key: str) -> MetricEstimate:
        """One metric with its interval (none where the bootstrap was off or gave no finite resample)."""
        low, high = self.intervals.get(key, (None, None))
        return MetricEstimate(self.values[key], low, high)


# ---------------------------------------------------------------------------------------------
# Inputs


def _t(a: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t if dtype is None else t.to(dtype)


def _float(a: ArrayLike) -> torch.Tensor:
    """A float32/float64 tensor (half precision is widened to float32)."""
    t = _t(a)
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t


def top_label(probs: ArrayLike, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-label confidence (max probability, input dtype) and correctness (bool) of each row.

    A row is correct when the label's probability is the largest (amax + gather: no argmax pass;
    on an exact tie at the top the row counts as correct, where argmax would pick the first index).
    """
    p = _float(probs)
    conf = p.amax(dim=1)
    y = _t(labels).to(p.device).long()
    return conf, p.gather(1, y[:, None]).squeeze(1) == conf


# ---------------------------------------------------------------------------------------------
# The binning kernel


def _inner_edges(n_bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Inner edges k/B (k = 1..B-1) in `dtype`, rounded down so that, for a value v of that dtype,
    v <= edge holds exactly when v <= k/B in float64."""
    e64 = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=device)[1:-1]
    if dtype == torch.float64:
        return e64
    e = e64.to(dtype)
    return torch.where(e.to(torch.float64) > e64, torch.nextafter(e, torch.zeros_like(e)), e)


def _tie_starts(sorted_values: torch.Tensor) -> torch.Tensor:
    """For values sorted along dim 0: the position of the first member of each value's tie group,
    i.e. the number of strictly smaller values (int64, same shape). One pass, no loop over rows."""
    n = sorted_values.shape[0]
    shape = (n,) + (1,) * (sorted_values.dim() - 1)
    pos = torch.arange(n, dtype=torch.int64, device=sorted_values.device).view(shape)
    pos = pos.expand_as(sorted_values).clone()
    pos[1:].masked_fill_(sorted_values[1:] == sorted_values[:-1], 0)
    return pos.cummax(0).values


def bin_index(values: ArrayLike, binning: Binning, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Bin of each value: (N,) int64, or (R, N) when equal-mass bins follow resample `weights` (R, N).

    Equal-width: torch.bucketize against k/B, closed on the right. Equal-mass: sort; a value with
    r rows (resample weight) strictly below it goes to bin floor(r B / N), so tied values share a
    bin whatever the row order, and bins hold N/B rows up to one plus the ties they take in.
    """
    v = _float(values).contiguous()
    if binning.scheme == "width":
        edges = _inner_edges(binning.n_bins, v.dtype, v.device)
        return torch.bucketize(v, edges, right=False)
    n = v.shape[0]
    sv, order = torch.sort(v, stable=True)
    first = _tie_starts(sv)
    del sv
    if weights is None:
        idx = torch.empty(n, dtype=torch.int64, device=v.device)
        idx[order] = first.mul_(binning.n_bins).div_(n, rounding_mode="floor")
        return idx
    w = weights[:, order]
    before = torch.cumsum(w, dim=1).sub_(w)
    total = w.sum(dim=1, keepdim=True).clamp_min(1e-300)
    del w
    before = before.gather(1, first.expand_as(before))           # weight strictly below each tie group
    b = (before.mul_(binning.n_bins / total)).floor_().clamp_(0, binning.n_bins - 1).to(torch.int64)
    del before
    idx = torch.empty_like(b)
    idx[:, order] = b
    return idx


def bin_sums(index: torch.Tensor, n_bins: int, columns: Sequence[torch.Tensor],
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """Count and per-column sums in each bin, by scatter_add, in float64.

    Returns (1 + len(columns), B); with resample `weights` (R, N) it returns (R, 1 + len(columns), B)
    and `index` may be (N,) or (R, N).
    """
    dev = index.device
    f64 = torch.float64
    if weights is None:
        n = index.shape[0]
        out = torch.zeros(1 + len(columns), n_bins, dtype=f64, device=dev)
        out[0].scatter_add_(0, index, torch.ones((), dtype=f64, device=dev).expand(n))
        for j, c in enumerate(columns, start=1):
            out[j].scatter_add_(0, index, c.to(f64))
        return out
    r, n = weights.shape
    idx = index.expand(r, n)
    out = torch.zeros(r, 1 + len(columns), n_bins, dtype=f64, device=dev)
    w = weights.to(f64)
    out[:, 0].scatter_add_(1, idx, w)
    for j, c in enumerate(columns, start=1):
        out[:, j].scatter_add_(1, idx, w * c.to(f64))
    return out


def _errors_from_sums(sums: torch.Tensor) -> dict[str, torch.Tensor]:
    """ECE (L1), RMSCE (L2), MCE (max) and debiased L2 from (..., 3, B) sums of (1, conf, correct)."""
    count, s_conf, s_acc = sums[..., 0, :], sums[..., 1, :], sums[..., 2, :]
    total = count.sum(-1)
    diff = s_conf - s_acc                           # count * gap
    safe = count.clamp_min(1.0)
    gap = diff / safe
    ece_ = diff.abs().sum(-1) / total
    sq = (diff * gap).sum(-1) / total               # sum_b (n_b / N) gap_b^2
    mce_ = torch.where(count > 0, gap.abs(), torch.zeros_like(gap)).amax(-1)
    acc = s_acc / safe
    debias = torch.where(count > 1, count * acc * (1 - acc) / (count - 1).clamp_min(1.0),
                         torch.zeros_like(count)).sum(-1) / total
    return {"ece": ece_, "rmsce": sq.sqrt(), "mce": mce_,
            "debiased_l2_ce": (sq - debias).clamp_min(0.0).sqrt()}


def wilson_interval(accuracy: np.ndarray, count: np.ndarray, z: float = 1.959963984540054
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (95% by default) of binomial proportions; nan where count is 0."""
    n = np.asarray(count, dtype=np.float64)
    p = np.asarray(accuracy, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        lo, hi = centre - half, centre + half
    lo[n == 0] = np.nan
    hi[n == 0] = np.nan
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


def _bins_result(sums: torch.Tensor, edges: np.ndarray, binning: Binning) -> ReliabilityBins:
    s = sums.cpu().numpy()
    c = s[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc, conf = s[2] / c, s[1] / c
    lo, hi = wilson_interval(acc, c)
    return ReliabilityBins(edges=edges, accuracy=acc, confidence=conf, count=c.astype(np.int64),
                           convention=binning.convention, accuracy_low=lo, accuracy_high=hi,
                           scheme=binning.scheme)


def _mass_edges(values: torch.Tensor, index: torch.Tensor, n_bins: int) -> np.ndarray:
    lo = torch.full((n_bins,), float("inf"), dtype=torch.float64, device=values.device)
    lo = lo.scatter_reduce(0, index, values.to(torch.float64), reduce="amin")
    e = np.append(lo.cpu().numpy(), float(values.max()))
    e[~np.isfinite(e)] = np.nan
    return e


def reliability_bins(confidence: ArrayLike, correct: ArrayLike,
                     n_bins: int | Binning = 15) -> ReliabilityBins:
    """Reliability diagram data of a binary outcome against its predicted probability.

    For the top-label diagram pass `top_label(probs, labels)`; for class k pass (probs[:, k],
    labels == k). `n_bins` is a bin count (equal-width) or a `Binning`.
    """
    b = _binning(n_bins)
    conf = _float(confidence)
    corr = _t(correct).to(conf.device)
    idx = bin_index(conf, b)
    sums = bin_sums(idx, b.n_bins, [conf, corr])
    width = b.scheme == "width"
    edges = np.linspace(0.0, 1.0, b.n_bins + 1) if width else _mass_edges(conf, idx, b.n_bins)
    return _bins_result(sums, edges, b)


def calibration_errors(confidence: ArrayLike, correct: ArrayLike,
                       n_bins: int | Binning = 15) -> dict[str, float]:
    """ECE, RMSCE, MCE and debiased L2 calibration error of a binary outcome, one binning."""
    b = _binning(n_bins)
    conf = _float(confidence)
    corr = _t(correct).to(conf.device)
    sums = bin_sums(bin_index(conf, b), b.n_bins, [conf, corr])
    return {k: float(v) for k, v in _errors_from_sums(sums).items()}


# ---------------------------------------------------------------------------------------------
# Top-label binned metrics


def _top_errors(probs: ArrayLike, labels: ArrayLike, n_bins: int | Binning) -> dict[str, float]:
    conf, corr = top_label(probs, labels)
    return calibration_errors(conf, corr, n_bins)


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int | Binning = 15) -> float:
    """Top-label expected calibration error (L1); equal-width bins closed on the right by default.

    sum_b |sum of confidences - number correct| / N over the bins: one top-label pass, one
    bucketize, three scatter_adds."""
    b = _binning(n_bins)
    conf, corr = top_label(probs, labels)
    sums = bin_sums(bin_index(conf, b), b.n_bins, [conf, corr])
    return float((sums[1] - sums[2]).abs_().sum() / conf.shape[0])


def rmsce(probs: ArrayLike, labels: ArrayLike, n_bins: int | Binning = 15) -> float:
    """Top-label root-mean-square calibration error (L2, count-weighted over bins)."""
    return _top_errors(probs, labels, n_bins)["rmsce"]


def mce(probs: ArrayLike, labels: ArrayLike, n_bins: int | Binning = 15) -> float:
    """Top-label maximum calibration error: the largest |gap| over non-empty bins."""
    return _top_errors(probs, labels, n_bins)["mce"]


def debiased_l2_ce(probs: ArrayLike, labels: ArrayLike,
                   n_bins: int | Binning = DEBIASED_BINNING) -> float:
    """Debiased top-label L2 calibration error (Kumar, Liang & Ma 2019), equal-mass bins by default.

    sqrt(max(0, sum_b n_b/N [gap_b^2 - acc_b (1 - acc_b) / (n_b - 1)])): the plug-in squared gap
    minus an unbiased estimate of its sampling variance.
    """
    return _top_errors(probs, labels, n_bins)["debiased_l2_ce"]


# ---------------------------------------------------------------------------------------------
# Classwise


def _row_chunks(n: int, c: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(c, 1))
    for s in range(0, n, step):
        yield slice(s, min(n, s + step))


class _ClasswiseWidth:
    """Classwise equal-width bins without touching most entries twice.

    Entries <= 1/B (nearly all, for many classes) fall in bin 0, whose sums follow from the column
    sums; only entries above 1/B (fewer than B per row) are bucketized and scatter-added. The same
    pass over the matrix also gives each row's sum of squared probabilities (for the Brier score).
    """

    def __init__(self, p: torch.Tensor, labels: torch.Tensor, n_bins: int):
        n, c = p.shape
        self.n, self.c, self.b = n, c, n_bins
        edges = _inner_edges(n_bins, p.dtype, p.device)
        first = float(edges[0]) if n_bins > 1 else math.inf
        rows, cols, vals = [], [], []
        colsum = torch.zeros(c, dtype=torch.float64, device=p.device)
        self.row_sq = torch.empty(n, dtype=torch.float64, device=p.device)
        for sl in _row_chunks(n, c):
            blk = p[sl]
            colsum += blk.sum(0, dtype=torch.float64)
            self.row_sq[sl] = torch.linalg.vector_norm(blk, dim=1).to(torch.float64).square_()
            nz = (blk > first).nonzero()
            rows.append(nz[:, 0] + sl.start)
            cols.append(nz[:, 1])
            vals.append(blk[nz[:, 0], nz[:, 1]])
        self.rows = torch.cat(rows)
        vals_t = torch.cat(vals)
        self.cells = torch.cat(cols) * n_bins + torch.bucketize(vals_t, edges)
        self.vals = vals_t.to(torch.float64)
        self.colsum = colsum
        p_true = p.gather(1, labels[:, None]).squeeze(1)
        self.true_cells = labels * n_bins + torch.bucketize(p_true, edges)
        self.p = p

    def sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count, sum p, sum 1[label = k]) per (class, bin), each (C, B)."""
        cb, dev, f64 = self.c * self.b, self.p.device, torch.float64
        one = torch.ones((), dtype=f64, device=dev)
        cnt = torch.zeros(cb, dtype=f64, device=dev).scatter_add_(0, self.cells, one.expand_as(self.vals))
        sp = torch.zeros(cb, dtype=f64, device=dev).scatter_add_(0, self.cells, self.vals)
        sy = torch.zeros(cb, dtype=f64, device=dev).scatter_add_(0, self.true_cells, one.expand(self.n))
        cnt, sp, sy = (x.view(self.c, self.b) for x in (cnt, sp, sy))
        cnt[:, 0] = self.n - cnt[:, 1:].sum(1)
        sp[:, 0] = self.colsum - sp[:, 1:].sum(1)
        return cnt, sp, sy

    @cached_property
    def _touched(self) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cells holding an entry above 1/B or a true label, found once for every resample: their count, the
        cell of each such entry and of each row's label, each cell's class, and 1.0 where the cell is above bin 0."""
        cells, inv = torch.unique(torch.cat([self.cells, self.true_cells]), return_inverse=True)
        k = len(self.cells)
        return len(cells), inv[:k], inv[k:], cells // self.b, (cells % self.b != 0).to(torch.float64)

    def weighted_ece(self, weights: torch.Tensor) -> torch.Tensor:
        """Per-class ECE under resample weights (R, N): (R, C), float64.

        Only the cells that hold an entry above 1/B or a true label are scattered (at most N (B + 1) of
        them, however many classes); bin 0 of every class follows from the column sums. So a resample
        costs O(N B + C), not O(C B): 2 rows of a million classes stay small and fast.
        """
        r, dev, f64 = weights.shape[0], self.p.device, torch.float64
        w = weights.to(f64)
        n_cells, at_entry, at_label, cls, upper = self._touched
        sp = torch.zeros(r, n_cells, dtype=f64, device=dev).scatter_add_(
            1, at_entry.expand(r, -1), w[:, self.rows] * self.vals)
        sy = torch.zeros(r, n_cells, dtype=f64, device=dev).scatter_add_(1, at_label.expand(r, -1), w)
        cls = cls.expand(r, -1)
        ece = torch.zeros(r, self.c, dtype=f64, device=dev)   # the one (R, C) buffer: column sums, then the ECE
        for sl in _row_chunks(self.n, self.c):
            ece.addmm_(w[:, sl], self.p[sl].to(f64))            # accumulated in float64
        ece.scatter_add_(1, cls, sp.mul(upper).neg_())          # bin 0's sum of p: column sum - bins above
        ece.scatter_add_(1, cls, sy.mul(1 - upper).neg_())      # minus bin 0's sum of labels
        ece.abs_()
        return ece.scatter_add_(1, cls, sp.sub_(sy).abs_().mul_(upper))  # plus |sum p - sum y| of bins above


def _classwise_mass(p: torch.Tensor, labels: torch.Tensor, n_bins: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Equal-mass classwise bins: each column binned as `bin_index` does (sorted, split by rank,
    ties sharing the bin of their lowest rank). Returns cnt, sp, sy, edges (nan for empty bins)."""
    n, c = p.shape
    dev, f64 = p.device, torch.float64
    cnt = torch.zeros(c, n_bins, dtype=f64, device=dev)
    sp = torch.zeros(c, n_bins, dtype=f64, device=dev)
    sy = torch.zeros(c, n_bins, dtype=f64, device=dev)
    edges = torch.zeros(c, n_bins + 1, dtype=f64, device=dev)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for s in range(0, c, step):
        cols = torch.arange(s, min(c, s + step), device=dev)
        vals, order = torch.sort(p[:, cols], dim=0, stable=True)          # (N, Cc)
        idx = _tie_starts(vals).mul_(n_bins).div_(n, rounding_mode="floor").T   # (Cc, N)
        v64 = vals.T.to(f64)
        hit = (labels[order] == cols[None, :]).T.to(f64)
        one = torch.ones((), dtype=f64, device=dev).expand_as(v64)
        for out, src in ((cnt, one), (sp, v64), (sy, hit)):
            out[cols] = torch.zeros(len(cols), n_bins, dtype=f64, device=dev).scatter_add_(1, idx, src)
        edges[cols, :n_bins] = torch.full((len(cols), n_bins), math.inf, dtype=f64, device=dev).scatter_reduce_(
            1, idx, v64, reduce="amin")                                    # smallest value of each bin
        edges[cols, n_bins] = vals[-1].to(f64)
    edges[torch.isinf(edges)] = math.nan                                   # empty bins
    return cnt, sp, sy, edges


def classwise_calibration(probs: ArrayLike, labels: ArrayLike,
                          n_bins: int | Binning = 15) -> ClasswiseCalibration:
    """Classwise reliability bins and per-class ECE (Kull et al. 2019) for every class."""
    b = _binning(n_bins)
    p = _float(probs)
    y = _t(labels).to(p.device).long()
    if b.scheme == "width":
        cnt, sp, sy = _ClasswiseWidth(p, y, b.n_bins).sums()
        edges = np.linspace(0.0, 1.0, b.n_bins + 1)
    else:
        cnt, sp, sy, e = _classwise_mass(p, y, b.n_bins)
        edges = e.cpu().numpy()
    per_class = ((sp - sy).abs().sum(1) / p.shape[0]).cpu().numpy()
    c = cnt.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        freq, conf = sy.cpu().numpy() / c, sp.cpu().numpy() / c
    return ClasswiseCalibration(edges=edges, frequency=freq, confidence=conf, count=c.astype(np.int64),
                                ece_per_class=per_class, convention=b.convention, scheme=b.scheme)


def classwise_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int | Binning = 15,
                  reduction: Literal["mean", "sum"] = "mean") -> float:
    """Classwise ECE: per-class binned |mean p_k - frequency of k|, averaged ("mean") or summed."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    per = classwise_calibration(probs, labels, n_bins).ece_per_class
    return float(per.mean() if reduction == "mean" else per.sum())


# ---------------------------------------------------------------------------------------------
# Smooth ECE (Blasiok & Nakkiran 2023)
#
# smECE_sigma = (1/N) * integral over [0, 1] of |sum_i K_sigma(t, f_i) (y_i - f_i)| dt, with K the
# Gaussian reflected at 0 and 1; smooth ECE is smECE at the width sigma* where smECE_sigma* = sigma*.
# Masses are linearly binned onto a uniform grid and smoothed exactly in Fourier space on the
# circle of length 2 that the reflections make. The grid is refined until sigma* >= 32 grid steps.


def _grid_points(sigma: float) -> int:
    """Grid size for a kernel width: spacing at most sigma / 32 (1025 points, refined up to 16385)."""
    m = 1025
    while m < 16385 and sigma * (m - 1) < 32:
        m = 2 * m - 1
    return m


def _grid_hist(conf: torch.Tensor, columns: Sequence[torch.Tensor], m: int,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Linear binning of each column's mass onto m grid points: (k, m), or (R, k, m) with weights."""
    pos = conf.to(torch.float64).clamp(0.0, 1.0) * (m - 1)
    j0 = pos.floor().clamp_(0, m - 2).to(torch.int64)
    frac = pos - j0
    idx = torch.cat([j0, j0 + 1])
    out = []
    for col in columns:
        c = col.to(torch.float64)
        src = torch.cat([c * (1 - frac), c * frac])
        if weights is None:
            out.append(torch.zeros(m, dtype=torch.float64, device=conf.device).scatter_add_(0, idx, src))
        else:
            w = weights.to(torch.float64)
            r = w.shape[0]
            out.append(torch.zeros(r, m, dtype=torch.float64, device=conf.device).scatter_add_(
                1, idx.expand(r, -1), w.repeat(1, 2) * src))
    return torch.stack(out, dim=-2)


def _spectrum(hist: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients of grid masses (..., M) extended evenly to a circle of length 2.

    Reflection at 0 and 1 is the even extension; boundary masses are doubled so that every mass
    keeps total weight 1 on [0, 1] after folding."""
    h = hist.clone()
    h[..., 0] *= 2
    h[..., -1] *= 2
    return torch.fft.rfft(torch.cat([h, h[..., 1:-1].flip(-1)], dim=-1), dim=-1)


def _smooth_spectrum(spec: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Grid masses convolved with the Gaussian of width sigma reflected at 0 and 1: (..., M).

    An exact Gaussian multiplier exp(-sigma^2 w^2 / 2) on the circle's Fourier coefficients;
    `sigma` broadcasts against the leading dims. Output is in mass-per-grid-point units: its
    trapezoid sum over [0, 1] equals the total mass.
    """
    k = spec.shape[-1]
    omega2 = (math.pi * torch.arange(k, dtype=torch.float64, device=spec.device)) ** 2
    s = sigma.to(torch.float64).reshape(*sigma.shape, *([1] * (spec.dim() - sigma.dim())))
    out = torch.fft.irfft(spec * torch.exp(-0.5 * (s * s) * omega2), n=2 * (k - 1), dim=-1)
    return out[..., :k]


def _trapezoid_abs(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    return a.sum(-1) - 0.5 * (a[..., 0] + a[..., -1])


def _smece_at(spec: torch.Tensor, total: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return _trapezoid_abs(_smooth_spectrum(spec, sigma)) / total


def _fixed_point_sigma(spec: torch.Tensor, total: torch.Tensor, iters: int = 40) -> torch.Tensor:
    """Kernel width sigma* with smECE_sigma* = sigma*, by vectorised bisection on [1e-3, 1].

    smECE_sigma does not increase with sigma (reflected Gaussians form a semigroup), so the fixed
    point is unique; `iters` halvings leave a bracket of 2^-iters."""
    dev = spec.device
    shape = spec.shape[:-1]
    lo = torch.full(shape, SMOOTH_SIGMA_MIN, dtype=torch.float64, device=dev)
    hi = torch.ones(shape, dtype=torch.float64, device=dev)
    g_lo = _smece_at(spec, total, lo) - lo
    g_hi = _smece_at(spec, total, hi) - hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        up = (_smece_at(spec, total, mid) - mid) > 0
        lo = torch.where(up, mid, lo)
        hi = torch.where(up, hi, mid)
    sigma = 0.5 * (lo + hi)
    sigma = torch.where(g_lo <= 0, torch.full_like(sigma, SMOOTH_SIGMA_MIN), sigma)
    return torch.where(g_hi >= 0, torch.ones_like(sigma), sigma)


def _smooth_columns(conf: torch.Tensor, corr: torch.Tensor, curve: bool) -> list[torch.Tensor]:
    c64 = corr.to(torch.float64)
    res = c64 - conf.to(torch.float64)
    return [res, c64, torch.ones_like(c64)] if curve else [res]


def _solve_smooth(conf: torch.Tensor, corr: torch.Tensor, curve: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Spectra (k, K), N, sigma* and grid size for the unweighted data, refining the grid as needed."""
    cols = _smooth_columns(conf, corr, curve)
    total = torch.tensor(float(conf.shape[0]), dtype=torch.float64, device=conf.device)
    m = 1025
    while True:
        spec = _spectrum(_grid_hist(conf, cols, m))
        sigma = _fixed_point_sigma(spec[0], total)
        need = _grid_points(float(sigma))
        if need <= m:
            return spec, total, sigma, m
        m = need


def smooth_ece_at(confidence: ArrayLike, correct: ArrayLike, sigma: float) -> float:
    """smECE_sigma at a fixed reflected-Gaussian width sigma (no fixed-point search)."""
    conf = _float(confidence)
    corr = _t(correct).to(conf.device)
    spec = _spectrum(_grid_hist(conf, _smooth_columns(conf, corr, False), _grid_points(sigma)))[0]
    total = torch.tensor(float(conf.shape[0]), dtype=torch.float64, device=conf.device)
    return float(_smece_at(spec, total, torch.tensor(float(sigma), dtype=torch.float64, device=conf.device)))


def _smooth_curve(spec: torch.Tensor, total: torch.Tensor, sigma: torch.Tensor, m: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nadaraya-Watson accuracy curve and confidence density on 257 grid points, width sigma."""
    stride = (m - 1) // 256
    sm = _smooth_spectrum(spec[..., 1:, :], sigma)[..., ::stride]
    y, d = sm[..., 0, :], sm[..., 1, :]
    dens = d * (m - 1) / total[..., None]
    acc = torch.where(dens >= 0.01, y / d.clamp_min(1e-300), torch.full_like(y, float("nan")))
    return acc, dens


def smooth_calibration(confidence: ArrayLike, correct: ArrayLike,
                       bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP) -> SmoothCalibration:
    """Smooth ECE with its automatic width and the smoothed reliability curve with a bootstrap band
    (resamples at the same width, as relplot draws it)."""
    conf = _float(confidence)
    corr = _t(correct).to(conf.device)
    spec, total, sigma, m = _solve_smooth(conf, corr, curve=True)
    sm = _smece_at(spec[0], total, sigma)
    acc, dens = _smooth_curve(spec, total, sigma, m)
    curve = acc.cpu().numpy()
    low = high = None
    if bootstrap is not None:
        cols = _smooth_columns(conf, corr, True)
        reps = []
        for w in _resample_weights(conf.shape[0], bootstrap, conf.device):
            spec_w = _spectrum(_grid_hist(conf, cols, m, w))
            reps.append(_smooth_curve(spec_w, w.sum(1), sigma, m)[0])
        stack = torch.cat(reps).cpu().numpy()
        q = (1 - bootstrap.level) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low = np.nanquantile(stack, q, axis=0)
            high = np.nanquantile(stack, 1 - q, axis=0)
        low[np.isnan(curve)] = np.nan
        high[np.isnan(curve)] = np.nan
    return SmoothCalibration(smooth_ece=float(sm), sigma=float(sigma), t=np.linspace(0.0, 1.0, 257),
                             accuracy=curve, low=low, high=high, density=dens.cpu().numpy())


def smooth_ece(probs: ArrayLike, labels: ArrayLike) -> float:
    """Top-label smooth ECE (Blasiok & Nakkiran 2023): smECE at the width where it equals the width."""
    conf, corr = top_label(probs, labels)
    spec, total, sigma, _ = _solve_smooth(conf, corr)
    return float(_smece_at(spec[0], total, sigma))


# ---------------------------------------------------------------------------------------------
# Selective prediction: AUROC of confidence, risk-coverage and AURC


class _Ranked:
    """Confidences sorted once (most confident first) with their groups of tied values, shared by
    AUROC, AURC and the risk-coverage curve. Resample statistics touch only the groups holding
    errors, after one cumulative sum of the weights in sorted order."""

    def __init__(self, conf: torch.Tensor, corr: torch.Tensor):
        c = conf.to(torch.float64)
        n = c.numel()
        dev = c.device
        self.n = n
        self.order = torch.argsort(c, descending=True, stable=True)
        cs = c[self.order]
        new = torch.ones_like(cs, dtype=torch.bool)
        new[1:] = cs[1:] != cs[:-1]
        self.group = torch.cumsum(new, 0) - 1
        self.n_groups = int(self.group[-1]) + 1 if n else 0
        self.threshold = cs[new]
        self.correct = corr[self.order].to(torch.float64)
        self.harmonic = _harmonic_table(n, dev)
        starts = new.nonzero().squeeze(1)
        ends = torch.cat([starts[1:] - 1, torch.tensor([n - 1], device=dev)])
        self.err_rows = (self.correct == 0).nonzero().squeeze(1)
        err_groups, self.err_slot = torch.unique_consecutive(self.group[self.err_rows], return_inverse=True)
        self.err_start, self.err_end = starts[err_groups], ends[err_groups]

    def group_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Row count and error count of every tie group, most confident first: (G,) each."""
        dev, g = self.correct.device, self.n_groups
        err = 1.0 - self.correct
        s = torch.zeros(g, dtype=torch.float64, device=dev).scatter_add_(0, self.group, torch.ones_like(err))
        e = torch.zeros(g, dtype=torch.float64, device=dev).scatter_add_(0, self.group, err)
        return s, e

    def error_groups(self, weights: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each tie group holding errors: weight before it, its weight, its error weight
        (R, Ge) each; and the total weight (R,). Unweighted: R = 1."""
        dev = self.correct.device
        if weights is None:
            w = torch.ones(1, self.n, dtype=torch.float64, device=dev)
        else:
            w = weights.to(torch.float64)[:, self.order]
        cum = w.cumsum(1)
        before = cum[:, self.err_start] - w[:, self.err_start]
        size = cum[:, self.err_end] - before
        r, ge = w.shape[0], self.err_start.numel()
        err = torch.zeros(r, ge, dtype=torch.float64, device=dev).scatter_add_(
            1, self.err_slot.expand(r, -1), w[:, self.err_rows])
        return before, size, err, cum[:, -1]


def _harmonic_table(n: int, device: torch.device) -> torch.Tensor:
    """H(k) = 1 + 1/2 + ... + 1/k for k = 0..n (H(0) = 0), float64."""
    h = torch.zeros(n + 1, dtype=torch.float64, device=device)
    h[1:] = torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64, device=device), 0)
    return h


def _auroc(before: torch.Tensor, size: torch.Tensor, err: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """P(conf of a correct row > conf of a wrong row), ties counted one half (Mann-Whitney U).

    Correct rows above an error group = weight before it minus errors before it."""
    err_before = err.cumsum(-1) - err
    num = (err * (before - err_before + 0.5 * (size - err))).sum(-1)
    n_err = err.sum(-1)
    return num / ((total - n_err) * n_err)


def _aurc(before: torch.Tensor, size: torch.Tensor, err: torch.Tensor, total: torch.Tensor,
          harmonic: torch.Tensor) -> torch.Tensor:
    """Mean over coverage k = 1..N of the error rate among the k most confident rows, each tie
    group's errors spread evenly over its positions (the expectation over tie orders).

    An error at position q adds sum_{k >= q} 1/k = H(N) - H(q - 1); averaged over a group's
    positions n+1..n+s that is H(N) - (S(n + s) - S(n)) / s with S(m) = sum_{j<m} H(j) = m H(m) - m.
    Weights are integer counts (rows, or multinomial resample counts).
    """
    n_b = before.round().long()
    n_e = n_b + size.round().long()

    def s_of(m: torch.Tensor) -> torch.Tensor:
        mf = m.to(torch.float64)
        return mf * harmonic[m] - mf

    h_total = harmonic[total.round().long()]
    spread = (s_of(n_e) - s_of(n_b)) / size.clamp_min(0.5)
    return (err * (h_total[..., None] - spread)).sum(-1) / total


def confidence_auroc(probs: ArrayLike, labels: ArrayLike) -> float:
    """AUROC of the top-label confidence for telling correct from wrong predictions (nan if one kind)."""
    conf, corr = top_label(probs, labels)
    return float(_auroc(*_Ranked(conf, corr).error_groups()))


def risk_coverage(confidence: ArrayLike, correct: ArrayLike) -> RiskCoverage:
    """Risk-coverage curve (Geifman & El-Yaniv 2017) and its area AURC (lower is better)."""
    conf = _float(confidence)
    rk = _Ranked(conf, _t(correct).to(conf.device))
    s, e = rk.group_sums()
    cov = s.cumsum(0)
    risk = e.cumsum(0) / cov
    area = float(_aurc(*rk.error_groups(), rk.harmonic))
    return RiskCoverage(coverage=(cov / cov[-1]).cpu().numpy(), risk=risk.cpu().numpy(),
                        threshold=rk.threshold.cpu().numpy(), aurc=area)


def aurc(probs: ArrayLike, labels: ArrayLike) -> float:
    """Area under the top-label risk-coverage curve."""
    conf, corr = top_label(probs, labels)
    rk = _Ranked(conf, corr)
    return float(_aurc(*rk.error_groups(), rk.harmonic))


# ---------------------------------------------------------------------------------------------
# Accuracy, NLL, Brier


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Share of examples whose label has the largest probability (the argmax, ties counted correct)."""
    return float(top_label(probs, labels)[1].double().mean())


def _nll_rows(p: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    pt = p.gather(1, labels.long()[:, None]).squeeze(1).to(torch.float64)
    return -torch.log(pt.clamp_min(eps))


def _brier_rows(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sum_k (p_k - 1[k = y])^2 = sum_k p_k^2 - 2 p_y + 1 (row norms in the input precision)."""
    sq = torch.linalg.vector_norm(p, dim=1).to(torch.float64).square_()
    pt = p.gather(1, labels.long()[:, None]).squeeze(1).to(torch.float64)
    return sq - 2 * pt + 1


def nll(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at eps)."""
    p = _float(probs)
    return float(_nll_rows(p, _t(labels).to(p.device), eps).mean())


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multiclass Brier score: squared error against the one-hot label, summed over classes."""
    p = _float(probs)
    return float(_brier_rows(p, _t(labels).to(p.device)).mean())


def basic_metrics(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL, Brier and ECE (default convention) in one dict with stable keys."""
    return {"accuracy": accuracy(probs, labels), "nll": nll(probs, labels),
            "brier": brier(probs, labels), "ece": ece(probs, labels, n_bins)}


# ---------------------------------------------------------------------------------------------
# Everything at once, with bootstrap intervals


def _resample_weights(n: int, bootstrap: Bootstrap, device: torch.device,
                      per_resample: int = 0) -> Iterator[torch.Tensor]:
    """Multinomial resample counts (R_chunk, N) float64, seeded, in chunks bounding memory: a chunk holds at most
    _BOOT_CHUNK_ELEMENTS weights, and at most that many of the `per_resample` values each resample needs (the
    classwise cells and sums, which outgrow N when there are many classes and few rows)."""
    g = torch.Generator(device=device)
    g.manual_seed(bootstrap.seed)
    chunk = max(1, min(bootstrap.n_boot, _BOOT_CHUNK_ELEMENTS // max(n, per_resample, 1)))
    done = 0
    while done < bootstrap.n_boot:
        r = min(chunk, bootstrap.n_boot - done)
        draws = torch.randint(0, n, (r, n), generator=g, device=device)
        yield torch.zeros(r, n, dtype=torch.float64, device=device).scatter_add_(
            1, draws, torch.ones((), dtype=torch.float64, device=device).expand(r, n))
        done += r


class _Evaluation:
    """One evaluation of every metric: the point estimates (weights None) or a batch of resample weights (R, N).

    Sums that several metrics share (the equal-width bins of ECE, RMSCE and MCE, say) are computed once, on first use.
    """

    def __init__(self, state: _MetricState, weights: torch.Tensor | None):
        self.state, self.w = state, weights

    def shaped(self, v: torch.Tensor) -> torch.Tensor:
        """`v` (1, ...) or (R, ...) as evaluate returns it: without the leading 1 for the point estimates."""
        return v.squeeze(0) if self.w is None else v

    @cached_property
    def means(self) -> torch.Tensor:
        """(Weighted) means of correct, NLL and Brier rows: (3,), or (3, R)."""
        rows, w = self.state.rows, self.w
        return rows.mean(1) if w is None else (w @ rows.T).T / w.sum(1)

    @cached_property
    def width(self) -> dict[str, torch.Tensor]:
        """ECE, RMSCE, MCE and debiased L2 of the top label, equal-width bins."""
        s = self.state
        return _errors_from_sums(bin_sums(s.idx_width, s.n_bins, [s.conf, s.corr], self.w))

    @cached_property
    def mass(self) -> dict[str, torch.Tensor]:
        """The same, equal-mass bins (recomputed for each resample from its weights)."""
        s = self.state
        idx = s.idx_mass if self.w is None else bin_index(s.conf, s.mass, weights=self.w)
        return _errors_from_sums(bin_sums(idx, s.n_bins, [s.conf, s.corr], self.w))

    @cached_property
    def classwise(self) -> torch.Tensor:
        """Per-class ECE, equal-width bins: (C,), or (R, C)."""
        s = self.state
        if self.w is None:  # one resample of weight 1 per row: no (C, B) table, however many classes
            return s.classwise.weighted_ece(torch.ones(1, s.conf.shape[0], dtype=torch.float64,
                                                       device=s.conf.device))[0] / float(s.conf.shape[0])
        return s.classwise.weighted_ece(self.w) / self.w.sum(1, keepdim=True)

    def smooth_ece(self) -> torch.Tensor:
        """Smooth ECE; the point estimate chooses the grid that the resamples then reuse."""
        s, w = self.state, self.w
        if w is None:
            spec, tot, sigma, s.smooth_grid = _solve_smooth(s.conf, s.corr)
            return _smece_at(spec[0], tot, sigma)
        res = _spectrum(_grid_hist(s.conf, _smooth_columns(s.conf, s.corr, False), s.smooth_grid, w))[:, 0]
        tot = w.sum(1)
        return _smece_at(res, tot, _fixed_point_sigma(res, tot, BOOT_SIGMA_ITERS))

    @cached_property
    def error_groups(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tie groups holding errors, as `_Ranked.error_groups` gives them (for AUROC and AURC)."""
        return self.state.ranked.error_groups(self.w)


@dataclass(frozen=True)
class MetricInfo:
    """One metric of the report: its JSON key, how people read it, and how an evaluation pass computes it.

    `what` is the page's one-line gloss ({width} and {mass} stand for the bins used); `definition` is the
    docs' exact definition (Markdown). `binning` names the bins it uses, None for unbinned metrics.
    """

    key: str
    label: str
    what: str
    definition: str
    binning: Literal["width", "mass"] | None
    lower_is_better: bool
    compute: Callable[[_Evaluation], torch.Tensor] = field(repr=False, compare=False)

    def describe(self, n_bins: int) -> str:
        """`what` with the bins spelled out, e.g. '..., 15 equal-width bins'."""
        return self.what.format(width=f"{n_bins} equal-width bins", mass=f"{n_bins} equal-mass bins")


# Every metric of the report, in report and table order. Adding a metric is one entry here; the JSON keys
# (METRIC_KEYS), the bootstrap, the Reliability page's table and the table in docs/metrics.md follow from it.
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("accuracy", "Accuracy", "share of correct top-label predictions",
               "share of correct rows", None, False, lambda e: e.means[0]),
    MetricInfo("nll", "NLL", "mean −log p(label)",
               "mean `-log p_label`, probabilities clipped at 1e-12", None, True, lambda e: e.means[1]),
    MetricInfo("brier", "Brier", "mean Σ_k (p_k − 1[k = label])²",
               "mean over rows of `sum_k (p_k - 1[k = label])^2` (multiclass, summed over classes)", None, True,
               lambda e: e.means[2]),
    MetricInfo("ece", "ECE", "Σ_b n_b/N·|conf_b − acc_b|, {width}",
               "`sum_b n_b/N * abs(conf_b - acc_b)`", "width", True, lambda e: e.width["ece"]),
    MetricInfo("rmsce", "RMSCE", "root of Σ_b n_b/N·(conf_b − acc_b)², {width}",
               "`sqrt(sum_b n_b/N * (conf_b - acc_b)^2)`", "width", True, lambda e: e.width["rmsce"]),
    MetricInfo("mce", "MCE", "largest |conf_b − acc_b|, {width}",
               "`max` over non-empty bins of `abs(conf_b - acc_b)`", "width", True, lambda e: e.width["mce"]),
    MetricInfo("ece_mass", "ECE (equal-mass)", "as ECE, {mass}",
               "as `ece`", "mass", True, lambda e: e.mass["ece"]),
    MetricInfo("rmsce_mass", "RMSCE (equal-mass)", "as RMSCE, {mass}",
               "as `rmsce`", "mass", True, lambda e: e.mass["rmsce"]),
    MetricInfo("mce_mass", "MCE (equal-mass)", "as MCE, {mass}",
               "as `mce`", "mass", True, lambda e: e.mass["mce"]),
    MetricInfo("debiased_l2_ce", "Debiased L2 CE", "Kumar et al. 2019, RMSCE minus its sampling bias, {mass}",
               "Kumar, Liang & Ma 2019: `sqrt(max(0, sum_b n_b/N [(conf_b - acc_b)^2 - acc_b (1 - acc_b) / "
               "(n_b - 1)]))`; bins of one row keep their plug-in term", "mass", True,
               lambda e: e.mass["debiased_l2_ce"]),
    MetricInfo("classwise_ece_mean", "Classwise ECE (mean)", "ECE of p_k for each class k, averaged; {width}",
               "for each class k, bin `p_k` against `1[label = k]`, `ECE_k = sum_b n_b/N * abs(mean p_k - freq_b)`; "
               "then the mean over classes", "width", True, lambda e: e.classwise.mean(-1)),
    MetricInfo("classwise_ece_sum", "Classwise ECE (sum)", "the same, summed over classes (Kull et al. 2019)",
               "as `classwise_ece_mean`, summed over classes (Kull et al. 2019)", "width", True,
               lambda e: e.classwise.sum(-1)),
    MetricInfo("smooth_ece", "Smooth ECE", "Błasiok & Nakkiran 2023: kernel instead of bins, no bin count",
               "Błasiok & Nakkiran 2023, see [Smooth ECE](#smooth-ece)", None, True, _Evaluation.smooth_ece),
    MetricInfo("auroc", "AUROC", "how well confidence separates right from wrong (higher is better)",
               "AUROC of the confidence for telling correct from wrong rows (Mann–Whitney; ties count 1/2); "
               "`null` when every row is correct, or every row is wrong", None, False,
               lambda e: e.shaped(_auroc(*e.error_groups))),
    MetricInfo("aurc", "AURC", "mean error rate among the k most confident, over k (lower is better)",
               "area under the risk–coverage curve: the mean over `k = 1..N` of the error rate among the `k` most "
               "confident rows", None, True, lambda e: e.shaped(_aurc(*e.error_groups, e.state.ranked.harmonic))),
)
METRIC_KEYS: tuple[str, ...] = tuple(m.key for m in METRICS)


class _MetricState:
    """Per-row quantities computed once; `evaluate(weights)` gives every metric of METRICS for a batch of
    resample weights (R, N) or, with weights None, the point estimates. Evaluate the point estimates first:
    they choose the smooth-ECE grid that the resamples reuse."""

    def __init__(self, p: torch.Tensor, y: torch.Tensor, n_bins: int):
        self.n_bins = n_bins
        self.p, self.y = p, y
        self.conf, self.corr = top_label(p, y)
        self.width = Binning(n_bins, "width")
        self.mass = Binning(n_bins, "mass")
        self.idx_width = bin_index(self.conf, self.width)
        self.smooth_grid = 1025

    # built on first use, so that a report of a few metrics (`keys`) pays only for what they need
    @cached_property
    def classwise(self) -> _ClasswiseWidth:
        return _ClasswiseWidth(self.p, self.y, self.n_bins)

    @cached_property
    def rows(self) -> torch.Tensor:
        """Per-row correct, NLL and Brier (3, N) float64."""
        p, y = self.p, self.y
        p_true = p.gather(1, y[:, None]).squeeze(1).to(torch.float64)
        brier_rows = self.classwise.row_sq - 2 * p_true + 1
        return torch.stack([self.corr.to(torch.float64), _nll_rows(p, y), brier_rows])

    @cached_property
    def idx_mass(self) -> torch.Tensor:
        return bin_index(self.conf, self.mass)

    @cached_property
    def ranked(self) -> _Ranked:
        return _Ranked(self.conf, self.corr)

    def evaluate(self, w: torch.Tensor | None = None, keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        ev = _Evaluation(self, w)
        return {m.key: m.compute(ev) for m in METRICS if keys is None or m.key in keys}


def calibration_metrics(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15,
                        bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP, keys: Sequence[str] | None = None
                        ) -> MetricSet:
    """Every metric of METRIC_KEYS (or only `keys`) with percentile-bootstrap intervals, sharing one top-label pass.

    Bootstrap resamples are seeded multinomial counts used as weights through the same kernels,
    processed in chunks of resamples (no loop over single resamples); the same resamples whatever `keys` asks for.
    Runs on the input's device.
    """
    unknown = sorted(set(keys or ()) - set(METRIC_KEYS))
    if unknown:
        raise ValueError(f"metrics {unknown} are unknown; known: {list(METRIC_KEYS)}")
    p = _float(probs)
    y = _t(labels).to(p.device).long()
    state = _MetricState(p, y, n_bins)
    point = {k: float(v) for k, v in state.evaluate(keys=keys).items()}
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap is not None:
        reps: dict[str, list[torch.Tensor]] = {k: [] for k in point}
        n, c = p.shape  # per resample: the touched classwise cells (fewer than C B and N (B + 1)) and (C,) sums
        for w in _resample_weights(n, bootstrap, p.device, per_resample=c + min(c * n_bins, n * (n_bins + 1))):
            for k, v in state.evaluate(w, keys).items():
                reps[k].append(v.reshape(-1))
        q = (1 - bootstrap.level) / 2
        for k, vs in reps.items():
            arr = torch.cat(vs).cpu().numpy()
            arr = arr[np.isfinite(arr)]
            if arr.size:
                intervals[k] = (float(np.quantile(arr, q)), float(np.quantile(arr, 1 - q)))
    return MetricSet(values=point, intervals=intervals, convention=Binning(n_bins).convention,
                     n_bins=n_bins, n=int(p.shape[0]), bootstrap=bootstrap)


@dataclass(frozen=True)
class PairedDifference:
    """metric(a) − metric(b) on the same rows, with a paired percentile-bootstrap interval: both models are scored on
    the same resamples, so the rows' shared difficulty cancels and the interval is narrower than two separate ones."""

    key: str
    value: float
    low: float
    high: float
    level: float

    @property
    def sign(self) -> int:
        """+1 when the whole interval lies above 0, −1 when below, 0 when it contains 0 (no difference shown)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def paired_difference(probs_a: ArrayLike, probs_b: ArrayLike, labels: ArrayLike, key: str, n_bins: int = 15,
                      bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> PairedDifference:
    """metric `key` (one of METRIC_KEYS) of model a minus that of model b on the same labelled rows, with the paired
    bootstrap interval (the same seeded resamples for both)."""
    if key not in METRIC_KEYS:
        raise ValueError(f"metric {key!r} is unknown; known: {list(METRIC_KEYS)}")
    pa, pb = _float(probs_a), _float(probs_b)
    if pa.shape != pb.shape:
        raise ValueError(f"the two models' probabilities differ in shape: {tuple(pa.shape)} and {tuple(pb.shape)}")
    y = _t(labels).to(pa.device).long()
    sa, sb = _MetricState(pa, y, n_bins), _MetricState(pb.to(pa.device), y, n_bins)
    point = float(sa.evaluate(keys=[key])[key] - sb.evaluate(keys=[key])[key])
    reps = [(sa.evaluate(w, [key])[key] - sb.evaluate(w, [key])[key]).reshape(-1)
            for w in _resample_weights(pa.shape[0], bootstrap, pa.device, per_resample=pa.shape[1] * (n_bins + 1))]
    arr = torch.cat(reps).cpu().numpy()
    arr = arr[np.isfinite(arr)]
    q = (1 - bootstrap.level) / 2
    low, high = (float(np.quantile(arr, q)), float(np.quantile(arr, 1 - q))) if arr.size else (np.nan, np.nan)
    return PairedDifference(key=key, value=point, low=low, high=high, level=bootstrap.level)

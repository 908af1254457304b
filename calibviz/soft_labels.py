"""Order violations in a teacher's soft labels on mixed (mixup / CutMix) samples, and their exact fix.

On a mixed sample whose larger-weight parent has class a and whose other parent has class b, a teacher's
soft label should rank a ≥ b ≥ every other class o, with no order among the others; when both parents
have the same class the order is a ≥ every other (Cui & Yan, *Isotonic Data Augmentation for Knowledge
Distillation*, IJCAI 2021). This module measures how often teachers break that order and repairs their
labels with the L2 projection onto it (isotonic regression on the tree a → b → {others}), exactly and
batched, or with the linear-time penalty on the student. Everything returns plain data.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from calibviz.augment import MixedSamples, TeacherOnMixed

ArrayLike = np.ndarray | torch.Tensor
SPACES = ("logits", "probs")
HALF_TOL = 1e-9  # |λ − ½| below this: the two parents weigh the same and their mutual order is unknown
# Rows per chunk in tree_isotonic: about this many elements per (rows, C) block, but at least
# _MIN_CHUNK_ROWS rows on CPU (small blocks stay in cache; too few rows per block cost Python overhead).
_CHUNK_ELEMENTS = {"cpu": 1 << 17, "other": 1 << 25}
_MIN_CHUNK_ROWS = 8192
_NETWORK_MAX_C = 24  # up to this many classes a sorting network on the transposed block beats np.sort (measured)
_NETWORK_MIN_ROWS = 1024  # ... on blocks of at least this many rows; on fewer its per-op overhead loses (measured)
_FULL_SORT_MAX_C = 256  # up to this many classes a full row sort is cheaper than np.partition (measured)
# Others pooled first per row (the k largest): rows that need more are redone with 8x as many. After a
# full sort (C <= _FULL_SORT_MAX_C) a short candidate list is cheaper to transpose and pool; after
# np.partition a longer one saves redone rows (measured).
_PARTIAL_SORT_K = {"sort": 16, "partition": 32}
_TRANSPOSE_BLOCK_ROWS = 512  # at least this many rows per block in _transposed (measured)
_FEW_ROWS = 256  # up to this many rows (the redone ones, tiny inputs) _star_levels uses np.cumsum


# ---------------------------------------------------------------------------------------------
# The exact fix: L2 isotonic regression on the tree a -> b -> {others}


def _to_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _check_rows(values: Any, a: Any, b: Any) -> None:
    """Shapes, dtypes and ranges of (values, a, b); numpy arrays or tensors."""
    if values.ndim != 2:
        raise ValueError(f"values must be (N, C), got shape {tuple(values.shape)}")
    n, c = values.shape
    if c < 2:
        raise ValueError(f"values need at least 2 classes (columns), got {c}")
    for name, idx in (("a", a), ("b", b)):
        if tuple(idx.shape) != (n,):
            raise ValueError(f"{name} must have shape ({n},) to match values, got {tuple(idx.shape)}")
        kind = idx.dtype.kind if isinstance(idx, np.ndarray) else (
            "f" if idx.dtype.is_floating_point or idx.dtype == torch.bool else "i")
        if kind not in "iu":
            raise ValueError(f"{name} must be an integer array, got dtype {idx.dtype}")
        if n and (int(idx.min()) < 0 or int(idx.max()) >= c):
            raise ValueError(f"{name} must hold class indices in [0, {c}); found {int(idx.min())}.."
                             f"{int(idx.max())}")


@functools.cache
def _merge_exchange(c: int) -> tuple[tuple[int, int], ...]:
    """Comparators (i, j), i < j, of Batcher's merge-exchange sorting network for c keys (Knuth, TAOCP 3,
    5.2.2, Algorithm M): applying min to i and max to j for each pair in turn sorts any c values
    ascending. 31 comparators for c = 10, 63 for c = 16."""
    pairs = []
    t = max(1, (c - 1).bit_length())
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while d > 0:
            pairs.extend((i, i + d) for i in range(c - d) if i & p == r)
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return tuple(pairs)


def _network_sorted(cols: np.ndarray) -> list[np.ndarray]:
    """The columns of `cols` (c, n) sorted ascending, as c rows of n values (views into `cols` and one
    spare buffer; `cols` is overwritten). Each comparator is two whole-row vector ops, with none of
    np.sort's per-row cost, which dominates on short rows."""
    rows = list(cols)
    spare = np.empty_like(rows[0])
    for i, j in _merge_exchange(len(rows)):
        np.minimum(rows[i], rows[j], out=spare)
        np.maximum(rows[i], rows[j], out=rows[j])
        rows[i], spare = spare, rows[i]
    return rows


def _transposed(x: np.ndarray) -> np.ndarray:
    """A new C-contiguous array holding x.T, copied in blocks of rows: numpy's strided (n, k) -> (k, n) copy
    walks all of x once per output row, a block of about 64K source entries stays in cache (5x faster at
    C = 1000, measured)."""
    n, k = x.shape
    out = np.empty((k, n), dtype=x.dtype)
    step = max(_TRANSPOSE_BLOCK_ROWS, (1 << 16) // max(1, x.strides[0] // x.itemsize))
    for s in range(0, n, step):
        out[:, s:s + step] = x[s:s + step].T
    return out


def _star_levels(desc: Sequence[np.ndarray], tb: np.ndarray, ta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled levels of both cases of the tree order, from each row's k largest others `desc` (k rows of
    N values: desc[j][i] is row i's (j+1)-th largest other; -inf pads rows with fewer others).

    Pooling a root (sum s, weight w) with descending others while each exceeds the running block mean
    stops at the largest running mean: the means (s + d_1 + ... + d_j) / (w + j) rise while the next
    value exceeds the current mean and fall from then on. So the level is the maximum of k + 1 running
    means, with no per-row stopping test. Case 1 pools b (s = t_b, w = 1), case 2 a and b together
    (s = t_a + t_b, w = 2). Returns (level_b, level_ab), both (N,); the running sums add in the per-row
    reference's order (t_b first, then the others in descending order)."""
    k, n = len(desc), len(tb)
    if n <= _FEW_ROWS:  # np.cumsum along axis 0 runs one strided loop per column: cheap for a few columns
        sums = np.cumsum(np.vstack((tb, *desc)), axis=0)  # sums[j]: t_b plus the j largest others
    else:  # and slow for many, where k whole-row adds are fast; both add in the same order
        sums = np.empty((k + 1, n), dtype=tb.dtype)
        sums[0] = tb
        for j in range(k):
            np.add(sums[j], desc[j], out=sums[j + 1])
    sums_ab = sums + ta
    np.divide(sums, np.arange(1, k + 2, dtype=tb.dtype)[:, None], out=sums)
    np.divide(sums_ab, np.arange(2, k + 3, dtype=tb.dtype)[:, None], out=sums_ab)
    return sums.max(axis=0), sums_ab.max(axis=0)


def _tree_isotonic_np(t: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    """Numpy kernel for one block of rows, writing into `out`; `t` and `out` are C-contiguous (n, C), a and
    b int64. Returns the rows (indices into the block) to redo with more candidates; their `out` rows are
    lower bounds only.

    Each row's others (the parents set to -inf) are sorted, and only the k largest are pooled:
    - C <= _NETWORK_MAX_C (and n >= _NETWORK_MIN_ROWS): a sorting network sorts the transposed block;
    - C <= _FULL_SORT_MAX_C: a full np.sort of the rows;
    - larger C: np.partition finds the k largest, then only those are sorted.
    A row must be redone when its k-th largest other is above its level: the pooled block might reach
    past the candidates. Otherwise the level is exact: every later other is at most the k-th."""
    n, c = t.shape
    rows = np.arange(n)
    first = rows * c  # flat index of each row's first entry
    flat_a, flat_b = first + a, first + b
    t_flat, out_flat = t.reshape(-1), out.reshape(-1)
    ta, tb = t_flat[flat_a], t_flat[flat_b]
    same = a == b
    k = min(k, c - 1)  # each row's smallest entry is a parent's -inf
    if c <= _NETWORK_MAX_C and n >= _NETWORK_MIN_ROWS:
        cols = _transposed(t)  # (C, n): row i of the block is column i
        cols_flat = cols.reshape(-1)
        cols_flat[a * n + rows] = -np.inf
        cols_flat[b * n + rows] = -np.inf
        desc: Sequence[np.ndarray] = _network_sorted(cols)[:-k - 1:-1]  # the k largest, descending
    else:
        np.copyto(out, t)  # `out` is the scratch space for the others until the result overwrites it
        out_flat[flat_a] = -np.inf
        out_flat[flat_b] = -np.inf
        if k < c - 1 and c > _FULL_SORT_MAX_C:
            out.partition(c - k, axis=1)
            out[:, c - k:].sort(axis=1)
        else:  # numpy's vectorised sort of short rows beats partition + sort
            out.sort(axis=1)
        desc = _transposed(out[:, c - k:])[::-1]  # (k, n), the k largest others descending
    level_b, level_ab = _star_levels(desc, tb, ta)
    # Case 1: a stays apart (or a == b: b's pool is the whole answer). Case 2: b's pool would rise above
    # t_a, so a and b share one level, pooled with the others from scratch.
    apart = same | (level_b <= ta)
    level = np.where(apart, level_b, level_ab)
    redo = np.flatnonzero(desc[k - 1] > level) if k < c - 1 else np.empty(0, dtype=np.int64)
    np.minimum(t, level[:, None], out=out)  # the others: min(t_o, level); the parents are set next
    out_flat[flat_b] = level
    out_flat[flat_a] = np.where(apart & ~same, ta, level)
    return redo


def _tree_isotonic_torch(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Torch kernel (any device): the same algorithm with a full sort of the others per row."""
    n, c = t.shape
    rows = torch.arange(n, device=t.device)
    ta, tb = t[rows, a], t[rows, b]
    same = a == b
    others = t.clone()
    others[rows, a] = -torch.inf
    others[rows, b] = -torch.inf
    desc = others.sort(dim=1, descending=True).values
    prefix = desc.cumsum(1)

    def pooled(root_sum: torch.Tensor, root_weight: int) -> torch.Tensor:
        before = torch.cat([root_sum[:, None], root_sum[:, None] + prefix[:, :-1]], dim=1)
        weights = torch.arange(root_weight, root_weight + c, device=t.device, dtype=t.dtype)
        count = (desc * weights > before).sum(1)
        last = prefix.gather(1, (count - 1).clamp_min(0)[:, None]).squeeze(1)
        total = root_sum + torch.where(count > 0, last, torch.zeros_like(last))
        return total / (root_weight + count).to(t.dtype)

    level_b, level_ab = pooled(tb, 1), pooled(ta + tb, 2)
    apart = same | (level_b <= ta)
    level = torch.where(apart, level_b, level_ab)
    out = torch.minimum(t, level[:, None])
    out[rows, b] = level
    out[rows, a] = torch.where(apart & ~same, ta, level)
    return out


def tree_isotonic(values: ArrayLike, a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """L2 projection of each row of `values` (N, C) onto {y_a ≥ y_b ≥ y_o for every other o}.

    a, b: (N,) class indices; a is the larger-weight parent. Rows with a == b (both parents of one class)
    get the order a ≥ every other. Exact; O(C log C) per row, batched with sort + running sums and no
    loop over rows; numpy and CPU tensors use numpy kernels (for C ≤ 24 the sort is a sorting network
    over the transposed block), other devices torch ones. Numpy in -> numpy out, torch in -> torch out
    on the same device (float dtype kept; integers become float64). The input is never modified.
    """
    on_cpu = not isinstance(values, torch.Tensor) or values.device.type == "cpu"
    if on_cpu:
        return _tree_isotonic_cpu(values, a, b)
    t = values if values.dtype.is_floating_point else values.to(torch.float64)
    a_t, b_t = _to_tensor(a), _to_tensor(b)
    _check_rows(t, a_t, b_t)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError("values must be finite (found NaN or inf)")
    a_t, b_t = a_t.to(t.device, torch.long), b_t.to(t.device, torch.long)
    n, c = t.shape
    step = max(1, _CHUNK_ELEMENTS["other"] // c)
    with torch.no_grad():
        parts = [_tree_isotonic_torch(t[s:s + step].detach(), a_t[s:s + step], b_t[s:s + step])
                 for s in range(0, n, step)]
    return torch.cat(parts) if parts else t.detach().clone()


def _as_numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _tree_isotonic_cpu(values: ArrayLike, a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """tree_isotonic for numpy arrays and CPU tensors: the numpy kernel in row blocks, then the rows that
    needed more candidates, all together, with 8x as many (repeated until none is left)."""
    t, an, bn = _as_numpy(values), _as_numpy(a), _as_numpy(b)
    _check_rows(t, an, bn)
    t = np.ascontiguousarray(t if t.dtype.kind == "f" else t.astype(np.float64))  # the kernel's flat indexing
    an, bn = an.astype(np.int64, copy=False), bn.astype(np.int64, copy=False)
    n, c = t.shape
    step = max(_MIN_CHUNK_ROWS, _CHUNK_ELEMENTS["cpu"] // c)
    k = _PARTIAL_SORT_K["partition" if c > _FULL_SORT_MAX_C else "sort"]
    out = np.empty_like(t)
    redo = []
    for s in range(0, n, step):
        block = t[s:s + step]
        # max propagates NaN and finds +inf, min finds -inf: two fast reductions (together about a third
        # cheaper than a sum, measured) over a block that the kernel then reads from cache.
        if not (np.isfinite(block.max()) and np.isfinite(block.min())):
            raise ValueError("values must be finite (found NaN or inf)")
        redo.append(s + _tree_isotonic_np(block, an[s:s + step], bn[s:s + step], k, out[s:s + step]))
    rows = np.concatenate(redo) if redo else np.empty(0, dtype=np.int64)
    while len(rows):  # one pass per 8x more candidates, in row blocks too (bounded temporaries)
        k *= 8
        again = []
        for s in range(0, len(rows), step):
            idx = rows[s:s + step]
            part = np.empty((len(idx), c), dtype=t.dtype)
            again.append(idx[_tree_isotonic_np(t[idx], an[idx], bn[idx], k, part)])
            out[idx] = part
        rows = np.concatenate(again)
    return torch.from_numpy(out) if isinstance(values, torch.Tensor) else out


def tree_isotonic_reference(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The same algorithm as a plain Python loop over rows (DESIGN 3 literally): sort each row's
    others, pool b with them, merge a if needed. The tests' reference and the benchmark's per-row
    baseline; float64 numpy out."""
    vals = np.asarray(values, dtype=np.float64)
    out = np.empty_like(vals)
    c = vals.shape[1]
    for i, row in enumerate(vals.tolist()):
        ai, bi = int(a[i]), int(b[i])
        desc = sorted((row[j] for j in range(c) if j != ai and j != bi), reverse=True)
        total, count, k = row[bi], 1, 0
        while k < len(desc) and desc[k] > total / count:  # pool b with the leading others
            total += desc[k]
            count += 1
            k += 1
        joined = ai != bi and total / count > row[ai]
        if joined:  # a must join; keep absorbing others above the new mean
            total += row[ai]
            count += 1
            while k < len(desc) and desc[k] > total / count:
                total += desc[k]
                count += 1
                k += 1
        level = total / count
        new = [x if x < level else level for x in row]  # pooled others are exactly those above it
        new[bi] = level
        new[ai] = level if joined or ai == bi else row[ai]
        out[i] = new
    return out


def orient_parents(scores: ArrayLike, a: ArrayLike, b: ArrayLike, lam: ArrayLike) -> tuple[Any, Any]:
    """Swap a and b on rows where λ = ½ and the teacher ranks b above a. There the parents weigh the
    same, the true order is {a, b} ≥ others, and the tree projection with the higher-scored parent as a
    is its exact projection. Returns (a, b) of the input's kind."""
    s, a_t, b_t, lam_t = (_to_tensor(v) for v in (scores, a, b, lam))
    rows = torch.arange(s.shape[0], device=s.device)
    a_d, b_d = a_t.to(s.device, torch.long), b_t.to(s.device, torch.long)
    flip = ((lam_t.to(s.device).double() - 0.5).abs() <= HALF_TOL) & (s[rows, b_d] > s[rows, a_d])
    new_a, new_b = torch.where(flip, b_d, a_d), torch.where(flip, a_d, b_d)
    if isinstance(a, torch.Tensor):
        return new_a.to(a.device), new_b.to(b.device)
    return new_a.cpu().numpy(), new_b.cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Corrected targets, how far they move, and the linear-time penalty


def _soft_labels_before_after(teacher_logits: ArrayLike, a: ArrayLike, b: ArrayLike, temperature: float,
                              space: str) -> tuple[torch.Tensor, torch.Tensor]:
    if space not in SPACES:
        raise ValueError(f"space {space!r} is unknown; known: {list(SPACES)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = _to_tensor(teacher_logits)
    if not (z.dtype.is_floating_point and isinstance(teacher_logits, torch.Tensor)):
        z = z.double()  # numpy inputs are computed in float64
    z = z / temperature
    a_t, b_t = _to_tensor(a), _to_tensor(b)
    p = torch.softmax(z, dim=1)
    if space == "logits":
        return p, torch.softmax(tree_isotonic(z, a_t, b_t), dim=1)
    return p, tree_isotonic(p, a_t, b_t)


def corrected_soft_labels(teacher_logits: ArrayLike, a: ArrayLike, b: ArrayLike, temperature: float = 1.0,
                          space: str = "logits") -> ArrayLike:
    """The teacher's soft labels at temperature T after the tree isotonic fix, applied to the logits/T
    (as Cui & Yan do) or to the probabilities softmax(z/T). Rows sum to 1; same kind as the input."""
    _, q = _soft_labels_before_after(teacher_logits, a, b, temperature, space)
    return q if isinstance(teacher_logits, torch.Tensor) else q.numpy()


def correction_kl(teacher_logits: ArrayLike, a: ArrayLike, b: ArrayLike, temperature: float = 1.0,
                  space: str = "logits") -> ArrayLike:
    """Per row KL(p ‖ p'), p the teacher's soft label at T and p' the corrected one: how far the fix
    moves the distillation target (0 where the order already holds). Same kind as the input."""
    p, q = _soft_labels_before_after(teacher_logits, a, b, temperature, space)
    kl = (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(1).clamp_min(0.0)
    return kl if isinstance(teacher_logits, torch.Tensor) else kl.numpy()


def order_penalty(student_logits: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The linear-time alternative to the fix, per row, on the student's probabilities q at T = 1:
    relu(max_{o∉{a,b}} q_o − min(q_a, q_b)) + relu(q_b − q_a). Rows with a == b get relu(max_{o≠a} q_o
    − q_a). Differentiable; (N,) tensor on the logits' device."""
    q = torch.softmax(student_logits, dim=1)
    rows = torch.arange(q.shape[0], device=q.device)
    a, b = a.to(q.device, torch.long), b.to(q.device, torch.long)
    qa, qb = q[rows, a], q[rows, b]
    parents = torch.zeros_like(q, dtype=torch.bool)
    parents[rows, a] = True
    parents[rows, b] = True
    top_other = q.masked_fill(parents, -torch.inf).max(dim=1).values
    return F.relu(top_other - torch.minimum(qa, qb)) + F.relu(qb - qa)


# ---------------------------------------------------------------------------------------------
# Violation statistics


@dataclass(frozen=True)
class ViolationParams:
    """How to summarise order violations: λ bins over [½, 1] (closed on the right), and the teacher's
    temperature and space for the corrected targets (the order itself does not depend on T)."""

    n_lambda_bins: int = 10
    temperature: float = 1.0
    space: str = "logits"

    def __post_init__(self) -> None:
        if self.n_lambda_bins < 1:
            raise ValueError(f"n_lambda_bins must be >= 1, got {self.n_lambda_bins}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.space not in SPACES:
            raise ValueError(f"space {self.space!r} is unknown; known: {list(SPACES)}")


@dataclass(frozen=True, eq=False)
class SampleViolations:
    """Per mixed sample, (N,) arrays: any violation, violated and known pair counts, Kendall τ over the
    known pairs, a-or-b in the teacher's top-2, {a, b} equal to the top-2, and KL(p ‖ p') of the fix."""

    any_violation: np.ndarray
    n_violated: np.ndarray
    n_known: np.ndarray
    kendall_tau: np.ndarray
    parent_in_top2: np.ndarray
    parents_are_top2: np.ndarray
    correction_kl: np.ndarray


@dataclass(frozen=True, eq=False)
class ViolationSummary:
    """Group statistics, each an array of the group shape (0-d overall, (B,) per λ bin, (C, C) per class
    pair [a, b]); rates are nan where a group is empty. `pair_violation_rate` pools pairs: violated
    known pairs / known pairs in the group."""

    count: np.ndarray
    violation_rate: np.ndarray
    pair_violation_rate: np.ndarray
    kendall_tau: np.ndarray
    parent_in_top2: np.ndarray
    parents_are_top2: np.ndarray
    correction_kl: np.ndarray


@dataclass(frozen=True, eq=False)
class OrderViolations:
    """Order-violation statistics of one teacher on one set of mixed samples."""

    per_sample: SampleViolations
    overall: ViolationSummary
    by_lambda: ViolationSummary
    by_pair: ViolationSummary
    lambda_edges: np.ndarray
    params: ViolationParams

    @property
    def lambda_centers(self) -> np.ndarray:
        """Centres of the λ bins."""
        return 0.5 * (self.lambda_edges[1:] + self.lambda_edges[:-1])


def sample_violations(teacher_logits: np.ndarray, a: np.ndarray, b: np.ndarray, lam: np.ndarray,
                      temperature: float = 1.0, space: str = "logits") -> SampleViolations:
    """Per-sample order statistics (see `order_violations` for the definitions)."""
    z = np.asarray(teacher_logits, dtype=np.float64)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    lam = np.asarray(lam, dtype=np.float64)
    n, c = z.shape
    if lam.shape != (n,):
        raise ValueError(f"lam must have shape ({n},), got {lam.shape}")
    _check_rows(z, a, b)
    rows = np.arange(n)
    za, zb = z[rows, a], z[rows, b]
    same = a == b
    tie = (~same) & (np.abs(lam - 0.5) <= HALF_TOL)
    other = np.ones((n, c), dtype=bool)
    other[rows, a] = False
    other[rows, b] = False
    n_other = other.sum(1)
    # (a, o): required z_a >= z_o; (b, o) for distinct parents; (a, b) unless λ = ½.
    ao_bad = (other & (z > za[:, None])).sum(1)
    ao_good = (other & (z < za[:, None])).sum(1)
    bo_bad = np.where(same, 0, (other & (z > zb[:, None])).sum(1))
    bo_good = np.where(same, 0, (other & (z < zb[:, None])).sum(1))
    ab_known = ~same & ~tie
    ab_bad = ab_known & (za < zb)
    ab_good = ab_known & (za > zb)
    n_known = n_other * np.where(same, 1, 2) + ab_known
    n_bad = ao_bad + bo_bad + ab_bad
    n_good = ao_good + bo_good + ab_good
    tau = (n_good - n_bad) / np.maximum(n_known, 1)
    top2 = np.argpartition(-z, 1, axis=1)[:, :2] if c > 2 else np.tile(np.arange(2), (n, 1))
    in_top2_a = (top2 == a[:, None]).any(1)
    in_top2_b = (top2 == b[:, None]).any(1)
    parents_top2 = np.where(same, in_top2_a, in_top2_a & in_top2_b)
    oa, ob = orient_parents(z, a, b, lam)
    kl = correction_kl(z, oa, ob, temperature, space)
    return SampleViolations(any_violation=n_bad > 0, n_violated=n_bad.astype(np.int64),
                            n_known=n_known.astype(np.int64), kendall_tau=tau,
                            parent_in_top2=in_top2_a | in_top2_b, parents_are_top2=parents_top2,
                            correction_kl=np.asarray(kl, dtype=np.float64))


def _summarise(s: SampleViolations, group: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=np.asarray(w, dtype=np.float64), minlength=n_groups)

    count = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count.astype(np.int64),
            "violation_rate": total(s.any_violation) / count,
            "pair_violation_rate": total(s.n_violated) / total(s.n_known),
            "kendall_tau": total(s.kendall_tau) / count,
            "parent_in_top2": total(s.parent_in_top2) / count,
            "parents_are_top2": total(s.parents_are_top2) / count,
            "correction_kl": total(s.correction_kl) / count,
        }


def order_violations(teacher_logits: np.ndarray, a: np.ndarray, b: np.ndarray, lam: np.ndarray,
                     params: ViolationParams | None = None, n_classes: int | None = None) -> OrderViolations:
    """Order-violation statistics of a teacher's soft labels on mixed samples: overall, per λ bin and
    per class pair (a, b), with a the larger-weight parent's class (λ ≥ ½ its weight).

    Known pairs of a sample are the ordered pairs (u, v) the tree order constrains to p_u ≥ p_v:
    (a, b), and (a, o) and (b, o) for every class o ∉ {a, b}: 2C − 3 pairs. If a == b they are (a, o)
    for o ≠ a (C − 1 pairs); if λ = ½ exactly, (a, b) is dropped (the parents weigh the same). A pair
    is violated when p_u < p_v strictly; Kendall τ = (concordant − discordant) / known pairs, ties
    counting as neither. Orders are read from the logits (softmax is monotone, so they hold at every
    T and ties from saturated probabilities do not arise); the temperature only affects
    `correction_kl`, KL(p ‖ p') between the soft label at T and its tree-isotonic fix.
    """
    params = params or ViolationParams()
    z = np.asarray(teacher_logits, dtype=np.float64)
    n, c = z.shape
    n_classes = n_classes or c
    s = sample_violations(z, a, b, lam, params.temperature, params.space)
    lam = np.asarray(lam, dtype=np.float64)
    edges = np.linspace(0.5, 1.0, params.n_lambda_bins + 1)
    lam_bin = np.clip(np.searchsorted(edges[1:-1], lam, side="left"), 0, params.n_lambda_bins - 1)
    pair = np.asarray(a, dtype=np.int64) * n_classes + np.asarray(b, dtype=np.int64)

    def summary(group: np.ndarray, n_groups: int, shape: tuple[int, ...]) -> ViolationSummary:
        d = _summarise(s, group, n_groups)
        return ViolationSummary(**{k: v.reshape(shape) for k, v in d.items()})

    return OrderViolations(
        per_sample=s, overall=summary(np.zeros(n, dtype=np.int64), 1, ()),
        by_lambda=summary(lam_bin, params.n_lambda_bins, (params.n_lambda_bins,)),
        by_pair=summary(pair, n_classes * n_classes, (n_classes, n_classes)),
        lambda_edges=edges, params=params)


def teacher_violations(mixed: TeacherOnMixed, params: ViolationParams | None = None) -> OrderViolations:
    """`order_violations` of a teacher's logits on its mixed samples, with the parents and λ of the mix record."""
    mix = mixed.mix
    return order_violations(mixed.logits, mix.label_a, mix.label_b, mix.lam, params,
                            n_classes=len(mix.class_names) or None)


def kendall_tau_bins(n_classes: int) -> int:
    """Bins on [−1, 1] that give each value of per-sample Kendall τ its own bar: τ lives on the lattice k·2/m − 1
    (m = 2C − 3 known pairs), m + 1 values; same-class and λ = ½ samples, with fewer pairs, fall into the nearest."""
    return 2 * n_classes - 2


def summary_dict(summary: ViolationSummary) -> dict[str, Any]:
    """A 0-d (overall) summary as a JSON-friendly dict with stable snake_case keys."""
    out: dict[str, Any] = {}
    for f in fields(summary):
        v = getattr(summary, f.name)
        out[f.name] = int(v) if f.name == "count" else float(v)
    return out


def summary_row(teacher: str, temperature: float, stats: OrderViolations) -> dict[str, object]:
    """One teacher's overall statistics as a table row with the column names a reader sees."""
    o = stats.overall
    return {"teacher": teacher, "T": temperature, "samples": int(o.count),
            "any violation": float(o.violation_rate), "violated known pairs": float(o.pair_violation_rate),
            "mean Kendall τ": float(o.kendall_tau), "a or b in top-2": float(o.parent_in_top2),
            "{a, b} = top-2": float(o.parents_are_top2), "KL(p ‖ p′) of the fix": float(o.correction_kl)}


def worst_violations(stats: OrderViolations, k: int = 12) -> np.ndarray:
    """Indices of up to k violating samples, worst first: lowest Kendall τ, then largest correction KL."""
    s = stats.per_sample
    idx = np.flatnonzero(s.any_violation)
    order = np.lexsort((-s.correction_kl[idx], s.kendall_tau[idx]))
    return idx[order[:k]]


# ---------------------------------------------------------------------------------------------
# Gallery items


@dataclass(frozen=True, eq=False)
class GalleryItem:
    """One mixed sample for display: its input and both parents' inputs, labels, λ, and the teacher's
    soft label at T before and after the tree isotonic fix."""

    index: int
    x: np.ndarray
    x_a: np.ndarray
    x_b: np.ndarray
    label_a: int
    label_b: int
    lam: float
    before: np.ndarray
    after: np.ndarray
    kendall_tau: float
    class_names: tuple[str, ...]
    input_kind: str
    temperature: float


def gallery_items(mix: MixedSamples, parents_x: np.ndarray, teacher_logits: np.ndarray,
                  indices: np.ndarray, stats: OrderViolations,
                  class_names: tuple[str, ...] | None = None) -> list[GalleryItem]:
    """Gallery items for the given mixed-sample indices; `parents_x` is the split's inputs that
    `mix.index_a` / `mix.index_b` point into."""
    p = stats.params
    idx = np.asarray(indices, dtype=np.int64)
    z = np.asarray(teacher_logits, dtype=np.float64)[idx]
    a, b = orient_parents(z, mix.label_a[idx], mix.label_b[idx], mix.lam[idx])
    before = torch.softmax(torch.from_numpy(z / p.temperature), dim=1).numpy()
    after = corrected_soft_labels(z, a, b, p.temperature, p.space)
    names = tuple(class_names or (str(i) for i in range(z.shape[1])))
    return [GalleryItem(index=int(i), x=mix.x[i], x_a=parents_x[mix.index_a[i]],
                        x_b=parents_x[mix.index_b[i]], label_a=int(mix.label_a[i]),
                        label_b=int(mix.label_b[i]), lam=float(mix.lam[i]), before=before[r],
                        after=np.asarray(after[r]), kendall_tau=float(stats.per_sample.kendall_tau[i]),
                        class_names=names, input_kind=mix.input_kind, temperature=p.temperature)
            for r, i in enumerate(idx)]


def worst_gallery(mixed: TeacherOnMixed, parents_x: np.ndarray, stats: OrderViolations, k: int) -> list[GalleryItem]:
    """Gallery items of a teacher's k worst violations (`worst_violations`); `parents_x` is the mixed split's inputs."""
    return gallery_items(mixed.mix, parents_x, mixed.logits, worst_violations(stats, k), stats, mixed.mix.class_names)

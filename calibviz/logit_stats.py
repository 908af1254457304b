"""Logit statistics: per-example confidence statistics and their per-model distributions.

Models trained on distilled data have concentrated maximum logits (Zhu et al., ICCV 2023); these
functions give the numbers and distributions that show it. Masked-input variants are simply
`Predictions` computed with `backend.predict(..., mask_ratio=r)` and passed through the same code.
Everything here is plain numpy data; `calibviz.plots.logits` draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from calibviz.predictions import Predictions

STATISTICS: dict[str, str] = {
    "max_logit": "max logit",
    "margin": "top-1 − top-2 logit margin",
    "logit_norm": "logit L2 norm",
    "entropy": "predictive entropy (nats)",
    "max_prob": "max probability",
}
SUBSETS = ("all", "correct", "wrong")
BANDWIDTH_RULES = ("scott", "silverman")


@dataclass(frozen=True, eq=False)
class LogitStats:
    """Per-example statistics of one model's outputs, all (N,) float64, plus correctness (N,) bool.

    For probability-only predictions the "logits" are log of clipped probabilities (see
    `Predictions.scores`), so max logit is log max-probability and the norm is of log-probabilities.
    """

    max_logit: np.ndarray
    margin: np.ndarray
    logit_norm: np.ndarray
    entropy: np.ndarray
    max_prob: np.ndarray
    correct: np.ndarray

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.correct.shape[0])

    def get(self, statistic: str) -> np.ndarray:
        """The (N,) array of one statistic, by name (one of STATISTICS)."""
        if statistic not in STATISTICS:
            raise ValueError(f"statistic {statistic!r} is unknown; known: {list(STATISTICS)}")
        return getattr(self, statistic)

    def subset_mask(self, subset: str) -> np.ndarray:
        """Boolean mask of the examples in 'all', 'correct' or 'wrong'."""
        if subset == "all":
            return np.ones(self.n, dtype=bool)
        if subset == "correct":
            return self.correct.copy()
        if subset == "wrong":
            return ~self.correct
        raise ValueError(f"subset {subset!r} is unknown; known: {list(SUBSETS)}")


def logit_stats_from_arrays(logits: np.ndarray, labels: np.ndarray) -> LogitStats:
    """Per-example statistics from (N, C) logits and (N,) labels, computed in float64.

    The margin is top-1 minus top-2 logit (0 on ties); entropy uses the natural log."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, C) with C >= 2, got shape {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must be ({z.shape[0]},), got shape {y.shape}")
    top2 = np.partition(z, -2, axis=1)[:, -2:]
    max_logit = top2[:, 1]
    shifted = z - max_logit[:, None]
    e = np.exp(shifted)
    s = e.sum(axis=1)
    p = e / s[:, None]
    log_p = shifted - np.log(s)[:, None]
    entropy = -(p * log_p).sum(axis=1)
    return LogitStats(
        max_logit=max_logit,
        margin=top2[:, 1] - top2[:, 0],
        logit_norm=np.linalg.norm(z, axis=1),
        entropy=entropy,
        max_prob=1.0 / s,  # softmax at the argmax is exp(0) / sum
        correct=z.argmax(axis=1) == y,
    )


def compute_logit_stats(preds: Predictions) -> LogitStats:
    """Per-example statistics of a Predictions object (its logits, or log of clipped probabilities)."""
    return logit_stats_from_arrays(preds.scores(), preds.labels)


@dataclass(frozen=True)
class KdeParams:
    """Histogram and KDE settings: bin count, KDE grid size, bandwidth rule, and the fraction of
    the pooled range to pad on each side of the shared grid."""

    bins: int = 40
    grid_size: int = 256
    bandwidth: str = "scott"
    pad: float = 0.05


def kde_bandwidth(x: np.ndarray, rule: str = "scott") -> float:
    """Gaussian KDE bandwidth of a 1-D sample: Scott (σ·n^(-1/5), σ with ddof=1, as scipy's
    gaussian_kde) or Silverman's rule of thumb (0.9·min(σ, IQR/1.34)·n^(-1/5))."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n < 2:
        return 0.0
    sigma = float(x.std(ddof=1))
    if rule == "scott":
        return sigma * n ** (-0.2)
    if rule == "silverman":
        q75, q25 = np.percentile(x, [75, 25])
        spread = min(sigma, (q75 - q25) / 1.34) if q75 > q25 else sigma
        return 0.9 * spread * n ** (-0.2)
    raise ValueError(f"bandwidth rule {rule!r} is unknown; known: {list(BANDWIDTH_RULES)}")


def gaussian_kde(x: np.ndarray, grid: np.ndarray, bandwidth: float, chunk: int = 4096) -> np.ndarray:
    """Density of a Gaussian KDE of sample `x` evaluated on `grid`, vectorised in chunks of the
    sample (memory grid·chunk). A zero bandwidth (constant sample) returns all zeros."""
    x = np.asarray(x, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    out = np.zeros_like(grid)
    if x.size == 0 or not bandwidth > 0:
        return out
    for start in range(0, x.size, chunk):
        u = (grid[:, None] - x[None, start:start + chunk]) / bandwidth
        out += np.exp(-0.5 * u * u).sum(axis=1)
    return out / (x.size * bandwidth * np.sqrt(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class Distribution:
    """One model's distribution of one statistic on one subset of examples: histogram counts and
    density on the shared edges, KDE on the shared grid, and concentration numbers (nan if empty)."""

    n: int
    counts: np.ndarray    # (bins,) int
    density: np.ndarray   # (bins,) histogram normalised to integrate to 1 over the edges
    kde: np.ndarray       # (grid_size,)
    bandwidth: float
    mean: float
    median: float
    std: float            # ddof=0
    iqr: float            # 75th minus 25th percentile (numpy's linear interpolation)


@dataclass(frozen=True, eq=False)
class StatisticDistributions:
    """Distributions of one statistic for several models, on histogram edges and a KDE grid shared
    by all models so they can be overlaid. `by_model[name][subset]` is a Distribution."""

    statistic: str
    edges: np.ndarray
    grid: np.ndarray
    by_model: dict[str, dict[str, Distribution]]
    params: KdeParams

    @property
    def label(self) -> str:
        """Human-readable name of the statistic."""
        return STATISTICS[self.statistic]


def _distribution(x: np.ndarray, edges: np.ndarray, grid: np.ndarray, params: KdeParams) -> Distribution:
    counts, _ = np.histogram(x, bins=edges)
    widths = np.diff(edges)
    nan = float("nan")
    if x.size == 0:
        return Distribution(0, counts, np.zeros_like(widths), np.zeros_like(grid), 0.0, nan, nan, nan, nan)
    density = counts / (x.size * widths)
    bw = kde_bandwidth(x, params.bandwidth)
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return Distribution(
        n=int(x.size), counts=counts, density=density, kde=gaussian_kde(x, grid, bw), bandwidth=bw,
        mean=float(x.mean()), median=float(q50), std=float(x.std()), iqr=float(q75 - q25))


def summarize_statistic(stats: Mapping[str, LogitStats], statistic: str,
                        params: KdeParams = KdeParams()) -> StatisticDistributions:
    """Distributions of one statistic for each named model, on all / correct / wrong examples,
    with histogram edges and KDE grid shared across models (the pooled range, padded)."""
    if not stats:
        raise ValueError("summarize_statistic needs at least one model")
    values = {name: s.get(statistic) for name, s in stats.items()}
    finite = [v[np.isfinite(v)] for v in values.values()]
    pooled = np.concatenate(finite) if finite else np.zeros(0)
    lo, hi = (float(pooled.min()), float(pooled.max())) if pooled.size else (0.0, 1.0)
    span = hi - lo if hi > lo else max(abs(lo), 1.0)
    lo, hi = lo - params.pad * span, hi + params.pad * span
    edges = np.linspace(lo, hi, params.bins + 1)
    grid = np.linspace(lo, hi, params.grid_size)
    by_model: dict[str, dict[str, Distribution]] = {}
    for name, s in stats.items():
        v = values[name]
        by_model[name] = {sub: _distribution(v[s.subset_mask(sub) & np.isfinite(v)], edges, grid, params)
                          for sub in SUBSETS}
    return StatisticDistributions(statistic=statistic, edges=edges, grid=grid, by_model=by_model,
                                  params=params)


def statistic_distributions(preds: Mapping[str, Predictions], statistic: str,
                            params: KdeParams = KdeParams()) -> StatisticDistributions:
    """`summarize_statistic` of each named model's predictions: the distributions one overlay draws."""
    return summarize_statistic({name: compute_logit_stats(p) for name, p in preds.items()}, statistic, params)


def masked_name(name: str, ratio: float) -> str:
    """The display name of a model's masked-input variant, e.g. 'CE teacher · 30% masked'."""
    return f"{name} · {ratio:.0%} masked"


def concentration_rows(dists: StatisticDistributions) -> list[dict[str, float | int | str]]:
    """Table rows (one per model and subset) of n, mean, median, std and IQR: the concentration
    numbers a page shows next to the overlay."""
    rows: list[dict[str, float | int | str]] = []
    for name, subs in dists.by_model.items():
        for sub, d in subs.items():
            rows.append({"model": name, "subset": sub, "n": d.n, "mean": d.mean, "median": d.median,
                         "std": d.std, "iqr": d.iqr})
    return rows


def concentration_table(dists: StatisticDistributions, overlays: Mapping[str, str] | None = None,
                        mask_ratio: float = 0.0) -> list[dict[str, float | int | str]]:
    """The concentration rows as a page shows them: model, inputs, examples, n, mean, median, std, IQR, subset-major
    in the models' order. An overlay (masked-input variant) row names its base model and `r% masked` inputs."""
    overlays = overlays or {}
    order = {s: i for i, s in enumerate(SUBSETS)}
    names = list(dists.by_model)
    rows = sorted(concentration_rows(dists), key=lambda r: (order[str(r["subset"])], names.index(str(r["model"]))))
    return [{"model": overlays.get(str(r["model"]), r["model"]),
             "inputs": f"{mask_ratio:.0%} masked" if r["model"] in overlays else "clean",
             "examples": r["subset"], "n": r["n"], "mean": r["mean"], "median": r["median"], "std": r["std"],
             "IQR": r["iqr"]} for r in rows]


SPREAD_VERDICTS = ("more concentrated", "about the same", "more spread out", "mixed")


@dataclass(frozen=True)
class SpreadChange:
    """How one model's spread of a statistic compares with a reference model's, on one subset.

    std_change and iqr_change are relative: other / reference − 1 (−0.27 means 27 % smaller).
    The verdict is 'more concentrated' when both shrink by at least the threshold, 'more spread out'
    when both grow by at least it, 'about the same' when both stay within it, else 'mixed'."""

    model: str
    reference: str
    std_change: float
    iqr_change: float
    accuracy: float            # share of the model's examples it classifies correctly
    reference_accuracy: float
    verdict: str


def _accuracy(subs: Mapping[str, Distribution]) -> float:
    n = subs["all"].n
    return subs["correct"].n / n if n else float("nan")


def spread_changes(dists: StatisticDistributions, reference: str, subset: str = "all",
                   threshold: float = 0.1) -> list[SpreadChange]:
    """Compare every other model's std and IQR of the statistic with the reference model's, on one
    subset (see SpreadChange for the verdict rule)."""
    if reference not in dists.by_model:
        raise ValueError(f"reference {reference!r} is not among the models {list(dists.by_model)}")
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r} is unknown; known: {list(SUBSETS)}")
    ref = dists.by_model[reference]
    out: list[SpreadChange] = []
    for name, subs in dists.by_model.items():
        if name == reference:
            continue
        d, r = subs[subset], ref[subset]
        std_c = d.std / r.std - 1.0 if r.std > 0 else float("nan")
        iqr_c = d.iqr / r.iqr - 1.0 if r.iqr > 0 else float("nan")
        if not (np.isfinite(std_c) and np.isfinite(iqr_c)):
            verdict = "mixed"
        elif std_c <= -threshold and iqr_c <= -threshold:
            verdict = "more concentrated"
        elif std_c >= threshold and iqr_c >= threshold:
            verdict = "more spread out"
        elif abs(std_c) < threshold and abs(iqr_c) < threshold:
            verdict = "about the same"
        else:
            verdict = "mixed"
        out.append(SpreadChange(model=name, reference=reference, std_change=float(std_c), iqr_change=float(iqr_c),
                                accuracy=_accuracy(subs), reference_accuracy=_accuracy(ref), verdict=verdict))
    return out


def _pct(x: float) -> str:
    return f"{x:+.0%}".replace("-", "−").replace("%", "\u00a0%")


def distilled_data_evidence(where: str, changes: Sequence[SpreadChange], titles: Mapping[str, str],
                            conclusion: str) -> str:
    """The markdown summary of the distilled-data claim on `where` (e.g. 'digits · test'): each distilled-data
    model's max-logit spread against the full-data reference (`changes[0].reference`), then 'So ' + `conclusion`
    (the verdict sentence of `findings.distilled_data_finding`)."""
    ref = changes[0]
    lines = [f"**Does this zoo show the distilled-data effect?** Max logit, all examples of {where}, computed now. "
             f"Spread of each distilled-data model against the full-data **{titles[ref.reference]}** (accuracy "
             f"{ref.reference_accuracy:.2f}):", ""]
    nb = "\u00a0"  # keep each number with its name and unit on one line
    lines += [f"- **{titles[c.model]}**: std{nb}{_pct(c.std_change)}, IQR{nb}{_pct(c.iqr_change)} "
              f"→{nb}*{c.verdict}* (accuracy {c.accuracy:.2f})" for c in changes]
    return "\n".join([*lines, "", f"So {conclusion}"])

"""Calibration metrics. Each is a function of probabilities and labels returning plain numbers or
dataclasses. Binning is one device-agnostic torch kernel (bucketize + scatter_add).

Default convention (DESIGN 3): top-label, 15 equal-width bins closed on the right, (lo, hi].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CONVENTION = "top-label, equal-width bins closed on the right (lo, hi]"


def _t(a: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t if dtype is None else t.to(dtype)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin accuracy, mean confidence, count and gap (confidence - accuracy) of a binning."""

    edges: np.ndarray       # (B+1,)
    accuracy: np.ndarray    # (B,) nan where empty
    confidence: np.ndarray  # (B,) nan where empty
    count: np.ndarray       # (B,) int
    convention: str = CONVENTION

    @property
    def gap(self) -> np.ndarray:
        """Confidence minus accuracy per bin (positive: over-confident)."""
        return self.confidence - self.accuracy


def reliability_bins(confidence: np.ndarray | torch.Tensor, correct: np.ndarray | torch.Tensor,
                     n_bins: int = 15) -> ReliabilityBins:
    """Equal-width bins closed on the right: bin b holds confidences in (b/B, (b+1)/B]; 0 goes in
    the first bin."""
    conf = _t(confidence, torch.float64)
    corr = _t(correct, torch.float64)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=conf.device)
    idx = torch.bucketize(conf, edges[1:-1], right=False).clamp_(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).scatter_add_(
        0, idx, torch.ones_like(conf))
    s_conf = torch.zeros_like(count).scatter_add_(0, idx, conf)
    s_acc = torch.zeros_like(count).scatter_add_(0, idx, corr)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = count.cpu().numpy()
        return ReliabilityBins(edges=edges.cpu().numpy(), accuracy=s_acc.cpu().numpy() / c,
                               confidence=s_conf.cpu().numpy() / c, count=c.astype(np.int64))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error, equal-width bins closed on the right."""
    p = _t(probs)
    conf, pred = p.max(dim=1)
    bins = reliability_bins(conf, pred == _t(labels), n_bins)
    w = bins.count / max(int(bins.count.sum()), 1)
    return float(np.nansum(w * np.abs(bins.gap)))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of examples whose argmax is the label."""
    return float((_t(probs).argmax(1) == _t(labels)).double().mean())


def nll(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at eps)."""
    p = _t(probs, torch.float64)
    pt = p.gather(1, _t(labels).long()[:, None]).squeeze(1)
    return float(-torch.log(pt.clamp_min(eps)).mean())


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: squared error against the one-hot label, summed over classes."""
    p = _t(probs, torch.float64).clone()
    idx = torch.arange(p.shape[0])
    p[idx, _t(labels).long()] -= 1.0
    return float((p * p).sum(1).mean())


def basic_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL, Brier and ECE (default convention) in one dict with stable keys."""
    return {"accuracy": accuracy(probs, labels), "nll": nll(probs, labels),
            "brier": brier(probs, labels), "ece": ece(probs, labels, n_bins)}

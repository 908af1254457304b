"""The metrics report behind `calibviz report`: every calibration metric with bootstrap intervals,
as a JSON-ready dict with stable snake_case keys; and readers for the published-prediction fixtures.

Keys: accuracy, nll, brier, ece (top-label, equal-width bins closed on the right, (lo, hi], as in
Guo et al.), ece_mass, rmsce, rmsce_mass, mce, mce_mass, classwise_ece_mean, classwise_ece_sum,
debiased_l2_ce (equal-mass bins), smooth_ece, auroc, aurc; plus convention, n_bins, n, n_boot,
seed, interval_level and intervals {key: [lo, hi]}. Undefined values are null.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from calibviz.metrics import METRIC_KEYS, Binning, Bootstrap, calibration_metrics
from calibviz.predictions import Predictions

# Number of classes of the published fixtures, by a token in the file or folder name.
_CLASS_TOKENS = (("c100", 100), ("c10", 10), ("birds", 200), ("cub", 200), ("imagenet", 1000))


def _plain(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def metrics_report(preds: Predictions, n_bins: int = 15, n_boot: int = 200, seed: int = 0,
                   device: str | None = None) -> dict[str, Any]:
    """Every calibration metric of `preds` (all rows) with seeded percentile-bootstrap intervals.

    Plain floats only (None where undefined, e.g. AUROC when every prediction is correct), so the
    dict dumps to JSON as is. n_boot = 0 skips the intervals. Runs on `device` (default: CUDA when
    present, else CPU).
    """
    import torch

    from calibviz.backend import pick_device

    dev = pick_device(device)
    probs = torch.from_numpy(np.ascontiguousarray(preds.probabilities())).to(dev)
    labels = torch.from_numpy(np.ascontiguousarray(preds.labels)).to(dev)
    boot = Bootstrap(n_boot=n_boot, seed=seed) if n_boot > 0 else None
    ms = calibration_metrics(probs, labels, n_bins=n_bins, bootstrap=boot)
    out: dict[str, Any] = {k: _plain(ms.values[k]) for k in METRIC_KEYS}
    out.update(convention=f"top-label, {ms.convention}", n_bins=int(n_bins), n=ms.n,
               n_boot=int(n_boot), seed=int(seed),
               interval_level=boot.level if boot else None,
               mass_convention=Binning(n_bins, "mass").convention,
               intervals={k: [_plain(lo), _plain(hi)] for k, (lo, hi) in ms.intervals.items()})
    return out


def _n_classes(path: Path, max_label: int) -> int:
    name = f"{path.parent.name}/{path.stem}".lower()
    for token, c in _CLASS_TOKENS:
        if re.search(rf"(^|[^a-z0-9]){token}([^a-z0-9]|$)", name) or (token == "imagenet" and token in name):
            return max(c, max_label + 1)
    return max_label + 1


def _csv_predictions(path: Path) -> Predictions:
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if data.shape[1] != 3:
        raise ValueError(f"{path.name}: expected columns true_label,pred_label,confidence; "
                         f"got {data.shape[1]} columns")
    true = data[:, 0].astype(np.int64)
    pred = data[:, 1].astype(np.int64)
    conf = data[:, 2].astype(np.float32)
    c = _n_classes(path, int(max(true.max(), pred.max())))
    rest = ((1.0 - conf.astype(np.float64)) / (c - 1)).astype(np.float32)
    if (rest >= conf).any():
        r = int(np.argmax(rest >= conf))
        raise ValueError(f"{path.name}: row {r} has confidence {conf[r]} <= 1/{c}; the top label "
                         "would not be the predicted one")
    probs = np.repeat(rest[:, None], c, axis=1)
    probs[np.arange(len(conf)), pred] = conf
    meta = {"name": path.stem, "dataset": path.parent.name, "source": path.name,
            "notes": "top-label CSV (true_label,pred_label,confidence) made into probabilities: the "
                     "predicted class has the given confidence, the rest share 1 - confidence evenly"}
    return Predictions(labels=true, probs=probs, meta=meta)


def _npz_predictions(path: Path) -> Predictions:
    from calibviz.formats import FormatError, validate_predictions

    with np.load(path, allow_pickle=False) as z:
        if not {"predictions", "ground_truth"} <= set(z.files):
            raise FormatError(f"{path.name}: expected arrays 'predictions' and 'ground_truth', "
                              f"found {sorted(z.files)}")
        arrays = {"probs": z["predictions"], "labels": z["ground_truth"].astype(np.int64).reshape(-1)}
    meta = {"name": path.stem, "dataset": path.parent.name, "source": path.name}
    return validate_predictions(arrays, meta, source=path.name)


def fixture_to_predictions(path: str | Path) -> Predictions:
    """Predictions from a published fixture: a markus93/ImageNet CSV (true_label,pred_label,
    confidence) or a netcal .npz (predictions, ground_truth) of softmax probabilities.

    CSV rows become probability rows with the same top label and confidence (the other classes
    share the rest evenly), which leaves every top-label metric unchanged. The class count comes
    from the name (c10, c100, birds -> 200, imagenet -> 1000), else from the largest label.
    """
    path = Path(path)
    if path.suffix == ".csv":
        return _csv_predictions(path)
    if path.suffix == ".npz":
        return _npz_predictions(path)
    raise ValueError(f"{path.name}: a fixture is a .csv (true_label,pred_label,confidence) or a "
                     "netcal .npz (predictions, ground_truth)")

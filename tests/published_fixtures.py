"""Readers for the published-prediction fixtures (../shared/fixtures/real): a markus93/ImageNet CSV of
(true_label, pred_label, confidence) or a netcal .npz of softmax probabilities, made into Predictions.

Only the tests use them (the command line and the app read checkpoints and bundles), so they live here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from calibviz.formats import FormatError, validate_predictions
from calibviz.predictions import Predictions

# Number of classes of the published fixtures, by a token in the file or folder name.
_CLASS_TOKENS = (("c100", 100), ("c10", 10), ("birds", 200), ("cub", 200), ("imagenet", 1000))


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

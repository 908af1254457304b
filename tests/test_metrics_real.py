"""Calibration metrics on real published predictions (../shared/fixtures/real).

The markus93 CIFAR/CUB files are the test-set predictions of Kängsepp's retrained Guo et al. models.
Their author published the uncalibrated test-set ECE and MCE (15 bins) of exactly these models in
github.com/markus93/NN_calibration, notebook scripts/calibration/"Calibration - (Temp, Iso, Beta,
Hist).ipynb" (the "ECE:" / "MCE:" lines printed by cal_methods.evaluate(..., bins=15) before
calibration). Their convention: top label, bins (k/15 - 1/15, k/15], i.e. closed on the right,
which is calibviz's default. hollance/reliability-diagrams, which redistributes the CSVs, publishes
its ECE only inside figures, so the numbers below are the markus93 ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from calibviz import metrics as M
from calibviz.formats import save_bundle
from calibviz.report import metrics_report
from tests.published_fixtures import fixture_to_predictions

REPO = Path(__file__).resolve().parents[1]

# file -> (ECE, MCE, accuracy in %) as printed by the authors (15 bins, test set, uncalibrated)
PUBLISHED = {
    "probs_resnet110_c10_logits.csv": (0.047503518641, 0.295798957348, 93.56),
    "probs_resnet110_c100_logits.csv": (0.184804543945, 0.398817125148, 71.48),
    "probs_densenet40_c10_logits.csv": (0.055002704373, 0.333955179269, 92.42),
    "probs_densenet40_c100_logits.csv": (0.211562852757, 0.45400331452, 70.0),
    "probs_resnet50_birds_logits.csv": (0.0235349822251, 0.27288242057, 73.1446323783),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """One intra-op thread (see tests/test_metrics.py): the shared 2-core machine is oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.loadtxt(path, delimiter=",", skiprows=1)
    return d[:, 0].astype(np.int64), d[:, 1].astype(np.int64), d[:, 2]


def straightforward_ece_mce(true: np.ndarray, pred: np.ndarray, conf: np.ndarray, n_bins: int = 15
                            ) -> tuple[float, float]:
    """The authors' convention written as plainly as possible: loop over bins (lo, hi]."""
    ece, gaps = 0.0, []
    for b in range(n_bins):
        m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)
        if m.any():
            gap = abs((true[m] == pred[m]).mean() - conf[m].mean())
            ece += gap * m.sum() / len(conf)
            gaps.append(gap)
    return ece, max(gaps)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_markus93_ece_and_mce_match_the_published_figures(real_fixtures: Path, name: str) -> None:
    path = real_fixtures / "markus93" / name
    ece_pub, mce_pub, acc_pub = PUBLISHED[name]
    rep = metrics_report(fixture_to_predictions(path), n_bins=15, n_boot=0, device="cpu")
    assert rep["ece"] == pytest.approx(ece_pub, abs=1e-6)
    assert rep["mce"] == pytest.approx(mce_pub, abs=1e-6)
    assert 100 * rep["accuracy"] == pytest.approx(acc_pub, abs=1e-8)
    # and the same convention written out in numpy on the raw CSV columns agrees to rounding
    ece_np, mce_np = straightforward_ece_mce(*read_csv(path))
    assert rep["ece"] == pytest.approx(ece_np, abs=1e-12)
    assert rep["mce"] == pytest.approx(mce_np, abs=1e-12)


def test_cli_report_json_on_a_markus93_bundle(real_fixtures: Path, tmp_path: Path) -> None:
    """`python -m calibviz report BUNDLE --json` on the CSV made into a probabilities bundle."""
    name = "probs_densenet40_c10_logits.csv"
    bundle = tmp_path / "densenet40_c10.npz"
    save_bundle(fixture_to_predictions(real_fixtures / "markus93" / name), bundle)
    out = subprocess.run([sys.executable, "-m", "calibviz", "--device", "cpu", "report", str(bundle),
                          "--json", "--boot", "20"], capture_output=True, text=True, cwd=REPO, timeout=300,
                         check=True)
    rep = json.loads(out.stdout)
    assert rep["ece"] == pytest.approx(PUBLISHED[name][0], abs=1e-6)
    assert rep["mce"] == pytest.approx(PUBLISHED[name][1], abs=1e-6)
    assert rep["intervals"]["ece"][0] <= rep["ece"] <= rep["intervals"]["ece"][1]


@pytest.mark.parametrize("name", ["lenet-5-cifar-10.npz", "wideresnet-16-4-cifar-10.npz",
                                  "densenet-bc-100-cifar-100.npz"])
def test_netcal_records_match_netcal(real_fixtures: Path, name: str) -> None:
    """netcal bins [lo, hi) with the last bin closed; no float32 confidence of these files sits on an
    inner edge, so on them the conventions give the same bins."""
    import warnings

    from netcal.metrics import ECE, MCE

    preds = fixture_to_predictions(real_fixtures / "netcal" / name)
    p, y = preds.probabilities(), preds.labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_ece, ref_mce = ECE(bins=15).measure(p, y), MCE(bins=15).measure(p, y)
    assert M.ece(p, y) == pytest.approx(ref_ece, abs=1e-6)
    assert M.mce(p, y) == pytest.approx(ref_mce, abs=1e-6)


def test_classwise_on_real_cifar100(real_fixtures: Path) -> None:
    preds = fixture_to_predictions(real_fixtures / "netcal" / "wideresnet-16-4-cifar-100.npz")
    p, y = preds.probabilities().astype(np.float64), preds.labels
    per = []
    for k in range(p.shape[1]):
        pk, yk = p[:, k], (y == k)
        idx = np.clip(np.ceil(pk * 15).astype(np.int64) - 1, 0, 14)
        per.append(np.abs(np.bincount(idx, pk, 15) - np.bincount(idx, yk, 15)).sum() / len(y))
    assert M.classwise_ece(preds.probabilities(), y, 15, "mean") == pytest.approx(np.mean(per), abs=1e-9)
    assert M.classwise_ece(preds.probabilities(), y, 15, "sum") == pytest.approx(np.sum(per), abs=1e-7)


def test_smooth_ece_on_real_predictions_matches_the_definition(real_fixtures: Path) -> None:
    """Exact reflected-Gaussian smECE, evaluated directly, on 1,500 real CIFAR-100 rows (15% of them
    at confidence exactly 1.0)."""
    preds = fixture_to_predictions(real_fixtures / "markus93" / "probs_densenet40_c100_logits.csv")
    conf, correct = (x.numpy() for x in M.top_label(preds.probabilities(), preds.labels))
    rows = np.random.default_rng(0).choice(len(conf), 1500, replace=False)
    f, y = conf[rows].astype(np.float64), correct[rows].astype(np.float64)
    sigma = 0.05
    t = np.linspace(0, 1, 4001)[:, None]
    k = sum(norm.pdf((t - f - 2 * j) / sigma) + norm.pdf((t + f - 2 * j) / sigma) for j in range(-2, 3))
    ref = np.trapezoid(np.abs(k @ (y - f)) / sigma, t[:, 0]) / len(f)
    assert M.smooth_ece_at(f, y, sigma) == pytest.approx(ref, rel=5e-5)


def test_imagenet_report(real_fixtures: Path) -> None:
    path = real_fixtures / "imagenet" / "resnet101.csv"
    preds = fixture_to_predictions(path)
    assert preds.n_classes == 1000 and preds.n == 50000
    rep = metrics_report(preds, n_bins=15, n_boot=30, seed=0, device="cpu")
    json.dumps(rep, allow_nan=False)
    true, pred, conf = read_csv(path)
    ece_np, mce_np = straightforward_ece_mce(true, pred, conf)
    assert rep["ece"] == pytest.approx(ece_np, abs=1e-12)
    assert rep["mce"] == pytest.approx(mce_np, abs=1e-12)
    assert rep["accuracy"] == pytest.approx((true == pred).mean(), abs=0)
    for key in ("ece", "accuracy", "nll", "brier", "auroc", "aurc", "smooth_ece"):
        lo, hi = rep["intervals"][key]
        assert lo <= rep[key] <= hi, key

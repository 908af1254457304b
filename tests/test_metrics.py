"""Calibration metrics against independent references: hand-worked cases, straightforward numpy
implementations of each definition, scikit-learn (calibration_curve, roc_auc_score), torchmetrics
and netcal (dev-only oracles, random inputs, matched conventions, within 1e-6), relplot, and an
exact brute-force reflected-Gaussian smooth ECE. Fast: small synthetic data only."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm

from calibviz import metrics as M
from calibviz.predictions import Predictions
from calibviz.report import metrics_report
from tests.published_fixtures import fixture_to_predictions


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """One intra-op thread here: on the shared, oversubscribed 2-core build machine, OpenMP barriers
    make the many small vectorised steps of the bootstrap 10-20x slower with 2 threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------- test data


def miscalibrated(n: int, c: int, seed: int, temperature: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident float64 probabilities: labels drawn from softmax(z), reported softmax(z/T)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 1.5
    true_p = np.exp(z - z.max(1, keepdims=True))
    true_p /= true_p.sum(1, keepdims=True)
    labels = (true_p.cumsum(1) > rng.random((n, 1))).argmax(1)
    zt = z / temperature
    p = np.exp(zt - zt.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


# ------------------------------------------------------------------------------ references


def ref_bins(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins closed on the right, written directly: bin b holds b/B < c <= (b+1)/B."""
    c = np.asarray(conf, dtype=np.float64)
    cnt, s_conf, s_acc = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (c > lo) & (c <= hi) if b else (c <= hi)
        cnt[b], s_conf[b], s_acc[b] = m.sum(), c[m].sum(), np.asarray(correct)[m].sum()
    return cnt, s_conf, s_acc


def ref_errors(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> dict[str, float]:
    cnt, s_conf, s_acc = ref_bins(conf, correct, n_bins)
    ne = cnt > 0
    gap = np.abs(s_conf[ne] - s_acc[ne]) / cnt[ne]
    w = cnt[ne] / cnt.sum()
    return {"ece": float((w * gap).sum()), "rmsce": float(np.sqrt((w * gap**2).sum())), "mce": float(gap.max())}


def ref_mass_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each row for equal-mass bins: a value with r values strictly below it goes to
    floor(r * B / N) (the bin of its lowest rank; without ties, rank r goes to floor(r * B / N))."""
    below = np.searchsorted(np.sort(conf), conf, side="left")
    return (below * n_bins) // len(conf)


def ref_kumar_mass_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Kumar et al.'s calibration library (get_equal_bins + get_bin): split the sorted values into B
    parts, put an edge halfway between neighbouring parts, drop repeated edges, and bin by
    bisect_left, so ties stay together. Bins are numbered after the repeats go (no empty bins)."""
    s = np.sort(conf)
    parts = np.array_split(s, n_bins)
    edges = sorted({(a[-1] + b[0]) / 2.0 for a, b in itertools.pairwise(parts)} | {1.0})
    return np.searchsorted(np.array(edges), conf, side="left")


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two bin labellings group the rows alike (bin numbers may differ)."""
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == len(np.unique(a)) == len(np.unique(b))


def ref_debiased(conf: np.ndarray, correct: np.ndarray, idx: np.ndarray, n_bins: int) -> float:
    """Kumar et al. 2019: sqrt(sum_b w_b [(conf_b - acc_b)^2 - acc_b (1 - acc_b) / (n_b - 1)])."""
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        nb = m.sum()
        if nb == 0:
            continue
        acc, cf = correct[m].mean(), conf[m].mean()
        term = (cf - acc) ** 2 - (acc * (1 - acc) / (nb - 1) if nb > 1 else 0.0)
        total += nb / len(conf) * term
    return math.sqrt(max(total, 0.0))


def ref_classwise(p: np.ndarray, y: np.ndarray, n_bins: int) -> np.ndarray:
    per = []
    for k in range(p.shape[1]):
        _, s_p, s_y = ref_bins(p[:, k], (y == k).astype(float), n_bins)
        per.append(np.abs(s_p - s_y).sum() / len(y))
    return np.array(per)


def ref_aurc(conf: np.ndarray, correct: np.ndarray) -> float:
    """Mean over k of (expected) errors among the k most confident / k; within a group of tied
    confidences the cumulative error count grows linearly (its expectation over tie orders)."""
    n = len(conf)
    order = np.argsort(-conf, kind="stable")
    c, err = conf[order], 1.0 - correct[order]
    cum = np.zeros(n)
    i, done = 0, 0.0
    while i < n:
        j = i
        while j + 1 < n and c[j + 1] == c[i]:
            j += 1
        s, e = j - i + 1, err[i:j + 1].sum()
        cum[i:j + 1] = done + e * np.arange(1, s + 1) / s
        done += e
        i = j + 1
    return float(np.mean(cum / np.arange(1, n + 1)))


def brute_smooth_ece(f: np.ndarray, y: np.ndarray, sigma: float, grid: int = 4001) -> float:
    """(1/N) * integral_0^1 |sum_i K(t, f_i) (y_i - f_i)| dt with K the Gaussian reflected at 0 and 1
    (images at +-2k +- f, k up to 3), evaluated directly on a fine grid."""
    t = np.linspace(0, 1, grid)[:, None]
    k = np.zeros((grid, len(f)))
    for j in range(-3, 4):
        k += norm.pdf((t - f - 2 * j) / sigma) + norm.pdf((t + f - 2 * j) / sigma)
    vals = np.abs(k @ (y - f)) / sigma
    return float(np.trapezoid(vals, t[:, 0]) / len(f))


# ------------------------------------------------------------------------------ hand-worked


def test_hand_worked_five_bins() -> None:
    # 5 bins of width 0.2. Bin 0: {0.0, 0.2} (0 in the first bin; 0.2 closes bin 0), acc 1/2,
    # conf 0.1. Bin 2: {0.5} wrong. Bin 4: {0.9, 1.0} both right.
    conf = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    correct = np.array([1, 0, 0, 1, 1])
    b = M.reliability_bins(conf, correct, 5)
    np.testing.assert_array_equal(b.count, [2, 0, 1, 0, 2])
    np.testing.assert_allclose(b.accuracy[[0, 2, 4]], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(b.confidence[[0, 2, 4]], [0.1, 0.5, 0.95])
    e = M.calibration_errors(conf, correct, 5)
    # gaps 0.4, 0.5, 0.05 with weights 2/5, 1/5, 2/5
    assert e["ece"] == pytest.approx(0.4 * 0.4 + 0.2 * 0.5 + 0.4 * 0.05, abs=1e-15)
    assert e["rmsce"] == pytest.approx(math.sqrt(0.4 * 0.16 + 0.2 * 0.25 + 0.4 * 0.0025), abs=1e-15)
    assert e["mce"] == pytest.approx(0.5, abs=1e-15)
    # debiased: bin 0 acc 1/2 over n=2 -> subtract 0.25; bins of 1 keep their plug-in term
    plug = 0.4 * 0.16 + 0.2 * 0.25 + 0.4 * 0.0025
    assert e["debiased_l2_ce"] == pytest.approx(math.sqrt(plug - 0.4 * 0.25), abs=1e-15)
    assert b.ece == pytest.approx(e["ece"]) and b.mce == pytest.approx(e["mce"])


def test_multiclass_hand_worked() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    y = np.array([0, 1, 1, 2])
    # top-label: confidences 0.7 (right) 0.6 (wrong) 0.5 (right) 0.8 (right); 10 bins, all separate
    assert M.ece(p, y, 10) == pytest.approx((0.3 + 0.6 + 0.5 + 0.2) / 4, abs=1e-15)
    assert M.accuracy(p, y) == 0.75
    assert M.nll(p, y) == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.5, 0.8])), abs=1e-15)
    brier = np.mean([(0.3**2 + 0.04 + 0.01), (0.36 + 0.49 + 0.01), (0.04 + 0.25 + 0.09), (0.01 + 0.01 + 0.04)])
    assert M.brier(p, y) == pytest.approx(brier, abs=1e-12)
    # classwise, 10 bins: class 0 has p = .7(y) .6 .2 .1 -> |.7-1| + .6 + .2 + .1 over 4 rows
    cw = M.classwise_calibration(p, y, 10)
    assert cw.ece_per_class[0] == pytest.approx((0.3 + 0.6 + 0.2 + 0.1) / 4, abs=1e-15)
    assert M.classwise_ece(p, y, 10, "sum") == pytest.approx(cw.ece_per_class.sum(), abs=1e-15)
    # AUROC: correct {0.7, 0.5, 0.8} vs wrong {0.6}: 2 of 3 pairs ranked right
    assert M.confidence_auroc(p, y) == pytest.approx(2 / 3, abs=1e-15)
    # AURC: order 0.8 r, 0.7 r, 0.6 w, 0.5 r -> risks 0, 0, 1/3, 1/4
    assert M.aurc(p, y) == pytest.approx((0 + 0 + 1 / 3 + 1 / 4) / 4, abs=1e-15)


def test_ties_in_auroc_and_aurc() -> None:
    conf = np.array([0.9, 0.9, 0.9, 0.6])
    correct = np.array([1, 0, 1, 0])
    # AURC: the three tied rows hold 1 error; expected cumulative errors 1/3, 2/3, 1, then 2
    rc = M.risk_coverage(conf, correct)
    assert rc.aurc == pytest.approx((1 / 3 / 1 + 2 / 3 / 2 + 1 / 3 + 2 / 4) / 4, abs=1e-15)
    np.testing.assert_allclose(rc.coverage, [0.75, 1.0])
    np.testing.assert_allclose(rc.risk, [1 / 3, 0.5])
    probs = np.stack([conf, 1 - conf], 1)
    labels = np.where(correct == 1, 0, 1)
    # AUROC: pairs (correct, wrong): (.9,.9) x2 ties -> 1/2 each, (.9,.6) x2 -> 1 each
    assert M.confidence_auroc(probs, labels) == pytest.approx((0.5 + 0.5 + 1 + 1) / 4, abs=1e-15)


def test_float32_inputs_follow_the_float64_edges() -> None:
    """A float32 confidence just above k/B (in float64) must not be put in bin k-1, and one equal to
    the float32 rounding of k/B lands by its exact value."""
    n_bins = 15
    vals = []
    for k in range(1, n_bins):
        e32 = np.float32(k / n_bins)
        vals += [np.nextafter(e32, np.float32(0)), e32, np.nextafter(e32, np.float32(1))]
    v32 = np.array(vals, dtype=np.float32)
    idx32 = M.bin_index(torch.from_numpy(v32), M.Binning(n_bins)).numpy()
    idx64 = M.bin_index(torch.from_numpy(v32.astype(np.float64)), M.Binning(n_bins)).numpy()
    direct = np.array([int(np.ceil(float(v) * n_bins)) - 1 for v in v32.astype(np.float64)])
    np.testing.assert_array_equal(idx32, idx64)
    np.testing.assert_array_equal(idx64, np.clip(direct, 0, n_bins - 1))


def test_hand_worked_equal_mass_ties_share_a_bin() -> None:
    # 2 equal-mass bins of 4 rows: rank split would give {0.2, 0.2} and {0.2, 0.9}, depending on row
    # order; ties share the bin of their lowest rank (0 -> bin 0), and 0.9 (3 rows below) goes to
    # floor(3 * 2 / 4) = 1. Bin 0: three 0.2's, one correct (acc 1/3); bin 1: 0.9, correct.
    conf = np.array([0.2, 0.9, 0.2, 0.2])
    correct = np.array([0, 1, 1, 0])
    mass = M.Binning(2, "mass")
    np.testing.assert_array_equal(M.bin_index(torch.from_numpy(conf), mass).numpy(), [0, 1, 0, 0])
    b = M.reliability_bins(conf, correct, mass)
    np.testing.assert_array_equal(b.count, [3, 1])
    np.testing.assert_allclose(b.accuracy, [1 / 3, 1.0])
    np.testing.assert_allclose(b.confidence, [0.2, 0.9])
    np.testing.assert_allclose(b.edges, [0.2, 0.9, 0.9])
    e = M.calibration_errors(conf, correct, mass)
    # gaps |0.2 - 1/3| = 2/15 (weight 3/4) and |0.9 - 1| = 0.1 (weight 1/4)
    assert e["ece"] == pytest.approx(3 / 4 * 2 / 15 + 1 / 4 * 0.1, abs=1e-15)            # 0.125
    assert e["rmsce"] == pytest.approx(math.sqrt(3 / 4 * (2 / 15) ** 2 + 1 / 4 * 0.01), abs=1e-15)
    assert e["mce"] == pytest.approx(2 / 15, abs=1e-15)
    # debiased: bin 0 subtracts (1/3)(2/3)/2 = 1/9 > (2/15)^2, so the sum is negative and clips to 0
    assert 3 / 4 * ((2 / 15) ** 2 - 1 / 9) + 1 / 4 * 0.01 < 0
    assert e["debiased_l2_ce"] == 0.0
    # 3 bins: 0.9 has 3 rows below -> floor(9 / 4) = 2; bin 1 is empty (count 0, edge nan, no nan metric)
    b3 = M.reliability_bins(conf, correct, M.Binning(3, "mass"))
    np.testing.assert_array_equal(b3.count, [3, 0, 1])
    np.testing.assert_array_equal(b3.edges, [0.2, np.nan, 0.9, 0.9])
    e3 = M.calibration_errors(conf, correct, M.Binning(3, "mass"))
    assert e3 == pytest.approx(e, abs=1e-15)
    assert b3.ece == pytest.approx(e["ece"], abs=1e-15) and b3.mce == pytest.approx(e["mce"], abs=1e-15)
    # with resample weights, the bin follows the weight strictly below: (0, 2, 1, 1) puts 0.9 above
    # weight 3 of 4 -> bin 1; (0, 3, 1, 0) puts it above weight 1 of 4 -> bin 0, with the ties
    w = torch.tensor([[0.0, 1.0, 2.0, 1.0], [0.0, 3.0, 1.0, 0.0]], dtype=torch.float64)
    np.testing.assert_array_equal(M.bin_index(torch.from_numpy(conf), mass, w).numpy(),
                                  [[0, 1, 0, 0], [0, 0, 0, 0]])
    # classwise: column 0 is the same tied confidences; column 1 (0.1 once, 0.8 three times) puts the
    # tied 0.8's, with 1 row below, in floor(1 * 2 / 4) = 0 with the 0.1: bin 1 is empty.
    # Class 1 then has |(0.1 + 3 * 0.8) - 2| / 4 = 0.125 (the two wrong rows have label 1).
    p = np.stack([conf, 1 - conf], 1)
    y = np.where(correct == 1, 0, 1)
    cw = M.classwise_calibration(p, y, mass)
    np.testing.assert_array_equal(cw.count, [[3, 1], [4, 0]])
    np.testing.assert_allclose(cw.ece_per_class, [0.125, 0.125], atol=1e-15)
    np.testing.assert_allclose(cw.edges, [[0.2, 0.9, 0.9], [0.1, np.nan, 0.8]])


def test_binning_parameters_are_validated_and_named() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        M.Binning(0)
    with pytest.raises(ValueError, match="scheme"):
        M.Binning(10, "quantile")  # type: ignore[arg-type]
    assert "closed on the right" in M.Binning(15).convention
    assert "equal-mass" in M.Binning(15, "mass").convention
    b = M.reliability_bins(np.array([0.3, 0.7]), np.array([1, 0]), M.Binning(4, "mass"))
    assert b.scheme == "mass" and "equal-mass" in b.convention


# ------------------------------------------------------------------------------ references, random


@pytest.mark.parametrize("n_bins", [1, 10, 15, 30])
def test_top_label_errors_match_direct_numpy(n_bins: int) -> None:
    p, y = miscalibrated(3000, 6, seed=n_bins)
    conf, pred = p.max(1), p.argmax(1)
    ref = ref_errors(conf, (pred == y).astype(float), n_bins)
    assert M.ece(p, y, n_bins) == pytest.approx(ref["ece"], abs=1e-12)
    assert M.rmsce(p, y, n_bins) == pytest.approx(ref["rmsce"], abs=1e-12)
    assert M.mce(p, y, n_bins) == pytest.approx(ref["mce"], abs=1e-12)


def test_reliability_bins_match_sklearn_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    p, y = miscalibrated(4000, 5, seed=1)
    conf, correct = M.top_label(p, y)
    b = M.reliability_bins(conf, correct, 15)
    prob_true, prob_pred = calibration_curve(correct.numpy(), conf.numpy(), n_bins=15, strategy="uniform")
    ne = b.count > 0
    np.testing.assert_allclose(b.accuracy[ne], prob_true, atol=1e-12)
    np.testing.assert_allclose(b.confidence[ne], prob_pred, atol=1e-12)


@pytest.mark.parametrize("norm_name,fn", [("l1", M.ece), ("l2", M.rmsce), ("max", M.mce)])
def test_matches_torchmetrics_on_random_inputs(norm_name: str, fn: object) -> None:
    """torchmetrics bins [lo, hi) with 1.0 in a bin of its own; on continuous random probabilities no
    confidence is an edge or 1.0, so the conventions coincide."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    p, y = miscalibrated(5000, 8, seed=2)
    ref = float(multiclass_calibration_error(torch.from_numpy(p), torch.from_numpy(y), num_classes=8,
                                             n_bins=15, norm=norm_name))
    assert fn(p, y, 15) == pytest.approx(ref, abs=1e-6)  # type: ignore[operator]


def test_debiased_l2_matches_torchmetrics_and_kumar_formula() -> None:
    p, y = miscalibrated(3000, 5, seed=3)
    conf, correct = p.max(1), (p.argmax(1) == y).astype(float)
    idx = ref_mass_bins(conf, 15)
    ref = ref_debiased(conf, correct, idx, 15)
    assert M.debiased_l2_ce(p, y) == pytest.approx(ref, abs=1e-12)
    ce_compute = pytest.importorskip("torchmetrics.functional.classification.calibration_error")._ce_compute
    s = np.sort(conf)
    cuts = [(s[(b * len(s)) // 15 - 1] + s[(b * len(s)) // 15]) / 2 for b in range(1, 15)]
    bounds = torch.tensor([0.0, *cuts, 1.0], dtype=torch.float64)
    tm = float(ce_compute(torch.from_numpy(conf), torch.from_numpy(correct), bounds, norm="l2", debias=True))
    assert M.debiased_l2_ce(p, y) == pytest.approx(tm, abs=1e-6)


def test_matches_netcal_on_random_inputs() -> None:
    from netcal.metrics import ECE, MCE

    p, y = miscalibrated(4000, 10, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_ece, ref_mce = ECE(bins=15).measure(p, y), MCE(bins=15).measure(p, y)
    assert M.ece(p, y) == pytest.approx(ref_ece, abs=1e-6)
    assert M.mce(p, y) == pytest.approx(ref_mce, abs=1e-6)


def test_equal_mass_bins_keep_ties_together() -> None:
    rng = np.random.default_rng(5)
    conf = np.concatenate([np.ones(400), rng.random(603)])          # 40% exactly 1.0
    correct = rng.random(1003) < conf
    b = M.reliability_bins(conf, correct, M.Binning(10, "mass"))
    # ranks 0..602 are the distinct values; the 400 ones all have 603 rows below -> bin 6, which also
    # holds rank 602 (floor(602 * 10 / 1003) = 6); bins 7-9 are empty
    np.testing.assert_array_equal(b.count, [101, 100, 100, 101, 100, 100, 401, 0, 0, 0])
    assert np.isnan(b.edges[7:10]).all() and b.edges[10] == 1.0 and np.isnan(b.accuracy[7:]).all()
    idx = M.bin_index(torch.from_numpy(conf), M.Binning(10, "mass")).numpy()
    np.testing.assert_array_equal(idx, ref_mass_bins(conf, 10))
    assert (idx[:400] == 6).all()
    cnt, s_conf, s_acc = (np.bincount(idx, w, 10) for w in (None, conf, correct.astype(float)))
    ne = cnt > 0
    np.testing.assert_allclose(b.accuracy[ne], s_acc[ne] / cnt[ne])
    e = M.calibration_errors(conf, correct, M.Binning(10, "mass"))
    assert all(math.isfinite(v) for v in e.values())
    assert e["ece"] == pytest.approx(np.abs(s_conf - s_acc).sum() / 1003, abs=1e-12)
    assert e["debiased_l2_ce"] == pytest.approx(ref_debiased(conf, correct.astype(float), idx, 10), abs=1e-12)
    assert b.mce == pytest.approx(e["mce"], abs=1e-15)


def test_equal_mass_ties_match_kumar_et_al_edges() -> None:
    """On heavily tied data (2 decimals; N a multiple of B, where np.array_split's parts are the
    floor(r B / N) ones), the bins group rows as Kumar et al.'s midpoint edges do."""
    p, y = miscalibrated(1500, 4, seed=21)
    p = np.round(p, 2)
    conf, correct = (x.numpy().astype(np.float64) for x in M.top_label(p, y))
    for n_bins in (10, 15):
        idx = M.bin_index(torch.from_numpy(conf), M.Binning(n_bins, "mass")).numpy()
        np.testing.assert_array_equal(idx, ref_mass_bins(conf, n_bins))
        kumar = ref_kumar_mass_bins(conf, n_bins)
        assert same_partition(idx, kumar)
        assert M.debiased_l2_ce(p, y, M.Binning(n_bins, "mass")) == pytest.approx(
            ref_debiased(conf, correct, kumar, int(kumar.max()) + 1), abs=1e-12)
    # classwise, each column tied
    cw = M.classwise_calibration(p, y, M.Binning(15, "mass"))
    for k in range(4):
        idx = ref_mass_bins(p[:, k], 15)
        assert same_partition(idx, ref_kumar_mass_bins(p[:, k], 15))
        np.testing.assert_array_equal(cw.count[k], np.bincount(idx, None, 15))
        s_p, s_y = np.bincount(idx, p[:, k], 15), np.bincount(idx, (y == k).astype(float), 15)
        assert cw.ece_per_class[k] == pytest.approx(np.abs(s_p - s_y).sum() / 1500, abs=1e-12)
        lo = np.array([p[idx == b, k].min() if (idx == b).any() else np.nan for b in range(15)])
        np.testing.assert_array_equal(cw.edges[k], np.append(lo, p[:, k].max()))


def _tie_data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose confidences are all tied, heavily tied (2 decimals) or continuous."""
    if kind == "all ties":
        rng = np.random.default_rng(22)
        return np.tile([0.6, 0.3, 0.1], (301, 1)), rng.choice(3, 301, p=[0.6, 0.3, 0.1])
    p, y = miscalibrated(601, 4, seed=22)
    return (np.round(p, 2) if kind == "heavy ties" else p), y


@pytest.mark.parametrize("kind", ["all ties", "heavy ties", "continuous"])
def test_equal_mass_results_do_not_depend_on_row_order(kind: str) -> None:
    """Shuffling rows changes no equal-mass bin, metric or bootstrap evaluation (up to summation order).

    `calibration_metrics` draws resample counts per row position, so its intervals on shuffled rows
    come from other resamples; with the counts permuted along with the rows every resample agrees.
    The debiased L2 is compared squared: where the bias correction nearly cancels the plug-in term
    (all ties), the square root turns 1e-16 of summation order into 1e-9."""
    p, y = _tie_data(kind)
    n = len(y)
    mass = M.Binning(15, "mass")
    conf, correct = M.top_label(p, y)
    w = next(M._resample_weights(n, M.Bootstrap(40, seed=3), torch.device("cpu")))

    def results(p: np.ndarray, y: np.ndarray) -> dict[str, object]:
        return {"ece_mass": M.ece(p, y, mass), "rmsce_mass": M.rmsce(p, y, mass), "mce_mass": M.mce(p, y, mass),
                "debiased_l2_ce": M.debiased_l2_ce(p, y),
                "classwise": M.classwise_calibration(p, y, mass).ece_per_class,
                "classwise_mean": M.classwise_ece(p, y, mass),
                "point": M.calibration_metrics(p, y, n_bins=15, bootstrap=None).values}

    ref = results(p, y)
    bins0 = M.reliability_bins(conf, correct, mass)
    ref_idx = M.bin_index(conf, mass)
    ref_widx = M.bin_index(conf, mass, w)
    st = M._MetricState(torch.from_numpy(p), torch.from_numpy(y), 15)
    st.evaluate()
    ref_boot = st.evaluate(w)
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(n)
        tp = torch.from_numpy(perm)
        got = results(p[perm], y[perm])
        for key in ("ece_mass", "rmsce_mass", "mce_mass", "classwise_mean"):
            assert got[key] == pytest.approx(ref[key], abs=1e-12), (key, seed)
        assert got["debiased_l2_ce"] ** 2 == pytest.approx(ref["debiased_l2_ce"] ** 2, abs=1e-12)  # type: ignore[operator]
        np.testing.assert_allclose(got["classwise"], ref["classwise"], rtol=0, atol=1e-12)
        sq = {"debiased_l2_ce": 2}
        for key, v in ref["point"].items():   # type: ignore[union-attr]
            g = got["point"][key]  # type: ignore[index]
            assert g ** sq.get(key, 1) == pytest.approx(v ** sq.get(key, 1), abs=1e-10, nan_ok=True), (key, seed)
        b = M.reliability_bins(conf[tp], correct[tp], mass)
        np.testing.assert_array_equal(b.count, bins0.count)
        np.testing.assert_array_equal(b.edges, bins0.edges)
        np.testing.assert_allclose(b.accuracy, bins0.accuracy, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.confidence, bins0.confidence, rtol=0, atol=1e-12)
        assert torch.equal(M.bin_index(conf[tp], mass), ref_idx[tp])
        assert torch.equal(M.bin_index(conf[tp], mass, w[:, tp]), ref_widx[:, tp])
        st_p = M._MetricState(torch.from_numpy(p[perm]), torch.from_numpy(y[perm]), 15)
        st_p.evaluate()
        for key, v in st_p.evaluate(w[:, tp]).items():
            k = sq.get(key, 1)
            torch.testing.assert_close(v ** k, ref_boot[key] ** k, rtol=0, atol=1e-10, equal_nan=True, msg=key)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classwise_matches_direct_numpy(dtype: type) -> None:
    p, y = miscalibrated(2000, 12, seed=6)
    p = p.astype(dtype)
    ref = ref_classwise(p.astype(np.float64), y, 15)
    cw = M.classwise_calibration(p, y, 15)
    np.testing.assert_allclose(cw.ece_per_class, ref, atol=1e-12)
    assert M.classwise_ece(p, y, 15, "mean") == pytest.approx(ref.mean(), abs=1e-12)
    assert M.classwise_ece(p, y, 15, "sum") == pytest.approx(ref.sum(), abs=1e-12)
    # one class's bins = the binary reliability bins of (p_k, y == k)
    b3 = M.reliability_bins(p[:, 3], y == 3, 15)
    np.testing.assert_array_equal(cw.for_class(3).count, b3.count)
    np.testing.assert_allclose(cw.for_class(3).accuracy, b3.accuracy, equal_nan=True)
    assert cw.count.sum() == 2000 * 12


def test_classwise_equal_mass() -> None:
    p, y = miscalibrated(999, 4, seed=7)
    cw = M.classwise_calibration(p, y, M.Binning(10, "mass"))
    for k in range(4):
        idx = ref_mass_bins(p[:, k], 10)
        s_p = np.bincount(idx, p[:, k], 10)
        s_y = np.bincount(idx, (y == k).astype(float), 10)
        assert cw.ece_per_class[k] == pytest.approx(np.abs(s_p - s_y).sum() / 999, abs=1e-12)
        assert cw.count[k].max() - cw.count[k].min() <= 1


def test_auroc_and_aurc_match_references() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    conf = np.round(rng.random(2000), 2)             # many ties
    correct = (rng.random(2000) < conf).astype(float)
    probs = np.stack([conf, 1 - conf], 1)
    labels = np.where(correct == 1, 0, 1)
    keep = conf > 0.5                                  # top label must be column 0 (no tie)
    assert M.confidence_auroc(probs[keep], labels[keep]) == pytest.approx(
        roc_auc_score(correct[keep], conf[keep]), abs=1e-12)
    assert M.risk_coverage(conf, correct).aurc == pytest.approx(ref_aurc(conf, correct), abs=1e-12)
    c2 = rng.random(1500)
    k2 = (rng.random(1500) < c2).astype(float)
    assert M.risk_coverage(c2, k2).aurc == pytest.approx(ref_aurc(c2, k2), abs=1e-12)


def test_a_tie_at_the_top_counts_as_correct() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.7, 0.2, 0.1]])
    y = np.array([1, 1, 1])
    correct = M.top_label(p, y)[1]
    np.testing.assert_array_equal(correct.numpy(), [True, True, False])
    assert M.accuracy(p, y) == pytest.approx(2 / 3)


def test_accuracy_nll_brier_match_numpy() -> None:
    p, y = miscalibrated(1500, 7, seed=9)
    onehot = np.eye(7)[y]
    assert M.accuracy(p, y) == pytest.approx((p.argmax(1) == y).mean(), abs=0)
    assert M.nll(p, y) == pytest.approx(-np.log(p[np.arange(1500), y]).mean(), abs=1e-12)
    assert M.brier(p, y) == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=1e-12)
    assert set(M.basic_metrics(p, y)) == {"accuracy", "nll", "brier", "ece"}


# ------------------------------------------------------------------------------ smooth ECE


def test_smooth_ece_at_fixed_width_matches_brute_force() -> None:
    rng = np.random.default_rng(10)
    f = rng.beta(5, 2, 300)
    f[:20] = 1.0                                       # mass on the boundary
    y = (rng.random(300) < f**1.5).astype(float)
    for sigma in (0.01, 0.05):
        # linear binning onto a grid of spacing <= sigma/32 costs about 2e-5 relative
        assert M.smooth_ece_at(f, y, sigma) == pytest.approx(brute_smooth_ece(f, y, sigma), rel=5e-5)


def test_smooth_ece_is_the_fixed_point_and_constant_sign_case() -> None:
    rng = np.random.default_rng(11)
    f = rng.uniform(0.3, 1.0, 2000)
    y = (rng.random(2000) < f - 0.15).astype(float)
    sc = M.smooth_calibration(f, y, bootstrap=None)
    assert sc.sigma == pytest.approx(sc.smooth_ece, abs=1e-8)
    assert M.smooth_ece_at(f, y, sc.sigma) == pytest.approx(sc.smooth_ece, abs=1e-10)
    # every residual positive: the smoothed residual never changes sign, so smECE = |mean(y - f)|
    g = rng.uniform(0.1, 0.6, 500)
    ones = np.ones(500)
    for sigma in (0.02, 0.2):
        assert M.smooth_ece_at(g, ones, sigma) == pytest.approx(np.mean(1 - g), rel=1e-10)


def test_smooth_ece_agrees_with_relplot_away_from_the_boundaries() -> None:
    """relplot integrates on a 200-point mesh that weights both ends fully, and keeps only half of
    any mass on its last grid point (confidence > 0.999); near 0 and 1 it therefore drifts from the
    definition (see docs/metrics.md and the brute-force test above). Inside (0.2, 0.8) it agrees."""
    relplot = pytest.importorskip("relplot")
    rng = np.random.default_rng(12)
    f = rng.uniform(0.2, 0.8, 4000)
    y = (rng.random(4000) < f**2).astype(float)
    for sigma in (0.02, 0.05):
        assert M.smooth_ece_at(f, y, sigma) == pytest.approx(relplot.smECE_sigma(f, y, sigma), rel=1e-5)
    top = f >= 0.5                                     # two-class rows whose top label is column 0
    probs = np.stack([f[top], 1 - f[top]], 1)
    labels = (y[top] == 0).astype(np.int64)
    # relplot stops its width search at a 2^-10 bracket; calibviz solves to 2^-40
    assert M.smooth_ece(probs, labels) == pytest.approx(relplot.smECE(f[top], y[top]), rel=5e-4)


def test_smooth_curve_is_the_kernel_regression_and_band_covers_it() -> None:
    rng = np.random.default_rng(13)
    f = rng.uniform(0.2, 1.0, 5000)
    y = (rng.random(5000) < f**2).astype(float)
    sc = M.smooth_calibration(f, y, M.Bootstrap(n_boot=100, seed=0))
    # reference: Nadaraya-Watson with the reflected Gaussian at the same width, written directly
    t = sc.t[(sc.t > 0.3) & (sc.t < 0.95)][::8][:, None]
    k = sum(norm.pdf((t - f - 2 * j) / sc.sigma) + norm.pdf((t + f - 2 * j) / sc.sigma) for j in range(-2, 3))
    ref = (k @ y) / k.sum(1)
    got = sc.accuracy[(sc.t > 0.3) & (sc.t < 0.95)][::8]
    np.testing.assert_allclose(got, ref, atol=2e-4)
    inside = np.isfinite(sc.accuracy)
    assert np.all(sc.low[inside] <= sc.accuracy[inside]) and np.all(sc.accuracy[inside] <= sc.high[inside])
    assert np.trapezoid(sc.density, sc.t) == pytest.approx(1.0, abs=0.01)
    # a calibrated model: smooth ECE near 0, the curve near the diagonal, none where no data lie
    g = rng.uniform(0.6, 1.0, 5000)
    cal = M.smooth_calibration(g, (rng.random(5000) < g).astype(float), bootstrap=None)
    mid = (cal.t > 0.65) & (cal.t < 0.95)
    assert cal.smooth_ece < 0.02
    assert np.nanmax(np.abs(cal.accuracy[mid] - cal.t[mid])) < 0.05
    assert np.all(np.isnan(cal.accuracy[cal.t < 0.4]))


# ------------------------------------------------------------------------------ bootstrap


def test_weighted_kernel_equals_explicit_resample() -> None:
    """A resample given as multinomial counts must give what the materialised resample gives."""
    p, y = miscalibrated(800, 6, seed=14)
    rng = np.random.default_rng(0)
    draw = rng.integers(0, 800, 800)
    w = torch.from_numpy(np.bincount(draw, minlength=800).astype(np.float64))[None, :]
    st = M._MetricState(torch.from_numpy(p), torch.from_numpy(y), 15)
    st.evaluate()
    got = {k: float(v[0]) for k, v in st.evaluate(w).items()}
    ps, ys = p[draw], y[draw]
    mass = M.Binning(15, "mass")   # the copies of a row are ties in ps, so they share a bin there too
    ref = {"accuracy": M.accuracy(ps, ys), "nll": M.nll(ps, ys), "brier": M.brier(ps, ys), "ece": M.ece(ps, ys),
           "rmsce": M.rmsce(ps, ys), "mce": M.mce(ps, ys), "classwise_ece_mean": M.classwise_ece(ps, ys),
           "ece_mass": M.ece(ps, ys, mass), "rmsce_mass": M.rmsce(ps, ys, mass), "mce_mass": M.mce(ps, ys, mass),
           "debiased_l2_ce": M.debiased_l2_ce(ps, ys, mass),
           "auroc": M.confidence_auroc(ps, ys), "aurc": M.aurc(ps, ys), "smooth_ece": M.smooth_ece(ps, ys)}
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, abs=1e-6 if k == "smooth_ece" else 1e-10), k


def test_bootstrap_classwise_ece_of_float32_probabilities_is_float64_exact() -> None:
    """Resampled bin-0 sums come from a weights @ probabilities product; in float32 it lost ~1e-7.
    Against the float64 numpy definition on the materialised resample: 1e-10."""
    p, y = miscalibrated(4000, 10, seed=23)
    p32 = p.astype(np.float32)
    rng = np.random.default_rng(1)
    draws = [rng.integers(0, 4000, 4000) for _ in range(3)]
    w = torch.from_numpy(np.stack([np.bincount(d, minlength=4000) for d in draws]).astype(np.float64))
    st = M._MetricState(torch.from_numpy(p32), torch.from_numpy(y), 15)
    st.evaluate()
    got = st.evaluate(w)
    for r, d in enumerate(draws):
        ref = ref_classwise(p32.astype(np.float64)[d], y[d], 15)
        assert float(got["classwise_ece_mean"][r]) == pytest.approx(ref.mean(), abs=1e-10)
        assert float(got["classwise_ece_sum"][r]) == pytest.approx(ref.sum(), abs=1e-10)


def test_bootstrap_intervals_contain_estimate_narrow_with_n_and_are_seeded() -> None:
    small = M.calibration_metrics(*miscalibrated(400, 5, seed=15), bootstrap=M.Bootstrap(100, seed=1))
    big = M.calibration_metrics(*miscalibrated(6400, 5, seed=15), bootstrap=M.Bootstrap(100, seed=1))
    for key in ("accuracy", "nll", "brier", "ece", "rmsce", "debiased_l2_ce", "smooth_ece", "auroc", "aurc"):
        lo, hi = big.intervals[key]
        assert lo <= big.values[key] <= hi, key
        w_small = small.intervals[key][1] - small.intervals[key][0]
        assert hi - lo < 0.6 * w_small, key            # 16x the data: about 4x narrower
    again = M.calibration_metrics(*miscalibrated(400, 5, seed=15), bootstrap=M.Bootstrap(100, seed=1))
    other = M.calibration_metrics(*miscalibrated(400, 5, seed=15), bootstrap=M.Bootstrap(100, seed=2))
    assert again.intervals == small.intervals
    assert other.intervals["ece"] != small.intervals["ece"]


def test_calibration_metrics_point_values_equal_single_functions() -> None:
    p, y = miscalibrated(1200, 9, seed=16)
    ms = M.calibration_metrics(p, y, n_bins=12, bootstrap=None)
    mass = M.Binning(12, "mass")
    expect = {"accuracy": M.accuracy(p, y), "nll": M.nll(p, y), "brier": M.brier(p, y),
              "ece": M.ece(p, y, 12), "rmsce": M.rmsce(p, y, 12), "mce": M.mce(p, y, 12),
              "ece_mass": M.ece(p, y, mass), "rmsce_mass": M.rmsce(p, y, mass), "mce_mass": M.mce(p, y, mass),
              "debiased_l2_ce": M.debiased_l2_ce(p, y, mass),
              "classwise_ece_mean": M.classwise_ece(p, y, 12), "classwise_ece_sum": M.classwise_ece(p, y, 12, "sum"),
              "smooth_ece": M.smooth_ece(p, y), "auroc": M.confidence_auroc(p, y), "aurc": M.aurc(p, y)}
    assert set(ms.values) == set(M.METRIC_KEYS) == set(expect)
    for k, v in expect.items():
        assert ms.values[k] == pytest.approx(v, abs=1e-12), k
    assert ms.intervals == {}


# ------------------------------------------------------------------------------ report


def _bundle(n: int = 600, c: int = 4, seed: int = 17) -> Predictions:
    p, y = miscalibrated(n, c, seed)
    return Predictions(labels=y, probs=p.astype(np.float32), meta={"name": "synthetic"})


def test_metrics_report_is_plain_json_with_stable_keys() -> None:
    preds = _bundle()
    rep = metrics_report(preds, n_bins=15, n_boot=50, seed=0, device="cpu")
    text = json.dumps(rep, allow_nan=False)
    back = json.loads(text)
    for k in M.METRIC_KEYS:
        assert isinstance(back[k], float), k
        lo, hi = back["intervals"][k]
        assert lo <= hi
    assert back["n"] == 600 and back["n_bins"] == 15
    assert "closed on the right" in back["convention"]
    assert back["ece"] == pytest.approx(M.ece(preds.probabilities(), preds.labels), abs=1e-12)
    assert metrics_report(preds, n_boot=50, device="cpu") == rep          # seeded
    assert metrics_report(preds, n_boot=0, device="cpu")["intervals"] == {}


def test_report_gives_null_for_undefined_auroc() -> None:
    p = np.tile(np.array([[0.9, 0.1]], dtype=np.float32), (10, 1))
    rep = metrics_report(Predictions(labels=np.zeros(10, dtype=np.int64), probs=p), n_boot=20, device="cpu")
    assert rep["auroc"] is None and rep["aurc"] == 0.0
    json.dumps(rep, allow_nan=False)


def test_fixture_csv_and_npz_become_probabilities(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path)) / "markus93"
    d.mkdir()
    csv = d / "probs_tiny_c10_logits.csv"
    csv.write_text("true_label,pred_label,confidence\n3,3,0.9\n1,2,0.55\n0,0,1.0\n")
    preds = fixture_to_predictions(csv)
    p = preds.probabilities()
    assert p.shape == (3, 10) and p.dtype == np.float32
    np.testing.assert_array_equal(p.argmax(1), [3, 2, 0])
    np.testing.assert_array_equal(p.max(1), np.float32([0.9, 0.55, 1.0]))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert p[1, 5] == pytest.approx(0.45 / 9)
    other = Path(str(tmp_path)) / "x.csv"
    other.write_text("true_label,pred_label,confidence\n6,6,0.9\n1,2,0.55\n")
    assert fixture_to_predictions(other).n_classes == 7               # no token: largest label + 1
    npz = Path(str(tmp_path)) / "n.npz"
    probs = np.array([[0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    np.savez(npz, predictions=probs, ground_truth=np.array([1, 0]))
    q = fixture_to_predictions(npz)
    np.testing.assert_array_equal(q.probabilities(), probs)
    np.testing.assert_array_equal(q.labels, [1, 0])


# ------------------------------------------------------------------------------ the metric registry


def test_the_registry_gives_the_keys_the_evaluation_and_the_table() -> None:
    from calibviz.report import metrics_table

    keys = [m.key for m in M.METRICS]
    assert tuple(keys) == M.METRIC_KEYS and len(set(keys)) == len(keys)
    assert len({m.label for m in M.METRICS}) == len(keys)
    p, y = miscalibrated(300, 4, seed=20)
    st = M._MetricState(torch.from_numpy(p), torch.from_numpy(y), 10)
    assert tuple(st.evaluate()) == M.METRIC_KEYS
    w = torch.ones(2, 300, dtype=torch.float64)
    assert all(v.shape == (2,) for v in st.evaluate(w).values())   # one value per resample
    rep = {k: 0.5 for k in keys} | {"intervals": {k: [0.25, 0.75] for k in keys}}
    table = metrics_table({"a": rep, "b": rep | {"ece": None}}, 10)
    assert list(table.index) == [m.label for m in M.METRICS]
    assert list(table.columns) == ["a", "b", "what it measures"]
    assert table.loc["ECE", "a"] == "0.5000\u00a0[0.2500,\u00a00.7500]" and table.loc["ECE", "b"] == "—"
    assert table.loc["ECE", "what it measures"].endswith("10 equal-width bins")
    assert table.loc["Debiased L2 CE", "what it measures"].endswith("10 equal-mass bins")
    assert all("{" not in w for w in table["what it measures"])


def test_report_texts() -> None:
    from calibviz.data import DataSpec
    from calibviz.report import conventions_note, interval_text, report_command, table_note

    assert interval_text(None, [0.1, 0.2]) == "—"
    assert interval_text(0.5, None) == interval_text(0.5, [0.1, None]) == "0.5000"
    assert interval_text(0.5, (0.25, 0.75)) == "0.5000\u00a0[0.2500,\u00a00.7500]"
    assert report_command(DataSpec.parse("digits:test"), 10, 100) == (
        "python -m calibviz report MODEL --split digits:test --bins 10 --boot 100 --json")
    assert report_command(DataSpec.parse("run:all", bundle=True), 15, 200) == (
        "python -m calibviz report MODEL --bins 15 --boot 200 --json")
    assert "--split val " in report_command(DataSpec.parse("run:val", bundle=True), 15, 200)
    assert "except Accuracy and AUROC" in table_note(DataSpec.parse("digits:test"), 15, 100)
    rep = metrics_report(_bundle(), n_bins=12, n_boot=20, device="cpu")
    top = conventions_note(rep, "top", "mass")
    assert "12 equal-mass bins" in top and "20 resamples of the 600 rows" in top and "Wilson" in top
    assert "classwise: the predicted probability p_k" in conventions_note(rep, "classwise", "width")
    smooth = conventions_note(rep, "smooth", "width")
    assert "reflected Gaussian kernel" in smooth and "Wilson" not in smooth


def test_docs_metrics_table_is_generated_from_the_registry() -> None:
    """docs/metrics.md carries the registry's table between the markers; rerun `python -m calibviz.report` if not."""
    from pathlib import Path

    from calibviz.report import DOCS_BEGIN, DOCS_END, metrics_doc_table, regenerate_metrics_doc

    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert regenerate_metrics_doc(text) == text, "docs/metrics.md is out of date: run python -m calibviz.report"
    table = metrics_doc_table()
    assert all(f"| `{k}` |" in table for k in M.METRIC_KEYS)
    section = text[text.index(DOCS_BEGIN):text.index(DOCS_END)]
    assert table in section
    with pytest.raises(ValueError, match="no generated section"):
        regenerate_metrics_doc("# no markers here\n")
    stale = text.replace("| `ece` | ECE |", "| `ece` | ECE (old) |")
    assert regenerate_metrics_doc(stale) == text


# ------------------------------------------------------------------------------ figures


def test_figures_show_outputs_gaps_counts_and_bands() -> None:
    from calibviz.plots.reliability import (
        classwise_figure,
        metric_note,
        reliability_figure,
        risk_coverage_figure,
        smooth_figure,
    )

    p, y = miscalibrated(2000, 5, seed=18)
    conf, correct = M.top_label(p, y)
    b = M.reliability_bins(conf, correct, 10)
    fig = reliability_figure(b, title="m", note="ECE 0.1")
    names = [t.name for t in fig.data]
    assert any("Output" in n for n in names) and any("Gap" in n for n in names)
    bars = {t.name: t for t in fig.data}
    out = next(t for n, t in bars.items() if n.startswith("Output"))
    gap = next(t for n, t in bars.items() if n.startswith("Gap"))
    np.testing.assert_allclose(np.asarray(out.y, dtype=float), b.accuracy, equal_nan=True)
    np.testing.assert_allclose(np.asarray(gap.base, dtype=float) + np.asarray(gap.y, dtype=float),
                               b.confidence, equal_nan=True)
    assert list(bars["Predictions per bin"].y) == list(b.count)
    assert fig.layout.xaxis2.title.text and fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text
    mass = reliability_figure(M.reliability_bins(conf, correct, M.Binning(10, "mass")))
    assert len(mass.data) == 4
    cw = classwise_figure(M.classwise_calibration(p, y, 10), 2, "two")
    assert "two" in cw.layout.xaxis2.title.text
    sf = smooth_figure(M.smooth_calibration(conf, correct, M.Bootstrap(20)))
    assert any("band" in t.name for t in sf.data)
    rf = risk_coverage_figure(M.risk_coverage(conf, correct))
    assert len(rf.data[0].x) <= 2000
    assert metric_note({"ece": 0.1}, {"ece": [0.05, 0.2]}, {"ece": "ECE"}) == "ECE 0.1000 [0.0500, 0.2000]"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; the CPU tests cover the code")
def test_cuda_matches_cpu() -> None:
    p, y = miscalibrated(3000, 10, seed=19)
    cpu = M.calibration_metrics(torch.from_numpy(p), torch.from_numpy(y), bootstrap=None).values
    gpu = M.calibration_metrics(torch.from_numpy(p).cuda(), torch.from_numpy(y).cuda(), bootstrap=None).values
    for k, v in cpu.items():
        assert gpu[k] == pytest.approx(v, abs=1e-9), k


def test_bootstrap_classwise_ece_with_far_more_classes_than_rows() -> None:
    """3 rows of 200,000 classes: the resampled classwise ECE scatters only the touched cells, and still
    equals the float64 definition on each materialised resample."""
    rng = np.random.default_rng(24)
    logits = rng.normal(size=(3, 200_000)) * 4
    logits[:, :3] += 12                                    # a few large entries, above 1/B
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([0, 1, 7])
    w = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 2.0, 1.0]], dtype=torch.float64)

    def ref(p: np.ndarray, y: np.ndarray) -> np.ndarray:   # ref_classwise, vectorised over the classes
        n, c = p.shape
        cell = (np.arange(c) * 15 + np.searchsorted(np.arange(1, 15) / 15, p, side="left")).ravel()
        s_p = np.bincount(cell, p.ravel(), c * 15)
        s_y = np.bincount(cell, (y[:, None] == np.arange(c)).ravel().astype(float), c * 15)
        return np.abs(s_p - s_y).reshape(c, 15).sum(1) / n

    np.testing.assert_allclose(ref(p[:, :50], y), ref_classwise(p[:, :50], y, 15), rtol=0, atol=1e-15)
    st = M._MetricState(torch.from_numpy(p), torch.from_numpy(y), 15)
    point = st.evaluate()
    assert float(point["classwise_ece_mean"]) == pytest.approx(ref(p, y).mean(), abs=1e-12)
    got = st.evaluate(w)
    for r, row in enumerate(w.numpy().astype(int)):
        d = np.repeat(np.arange(3), row)
        assert float(got["classwise_ece_sum"][r]) == pytest.approx(ref(p[d], y[d]).sum(), abs=1e-10)

"""calibviz.shift and calibviz.plots.shift: curves against corruption severity, before and after temperature scaling
fitted on the clean val split. Numbers are checked against independent computations from the logits (ECE and NLL
worked in numpy, T by scipy's minimize_scalar), the verdict on Ovadia et al.'s finding on numbers made by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax

from calibviz.data import CORRUPTIONS, IMAGE_CORRUPTIONS, SEVERITIES, DataSpec
from calibviz.findings import shift_finding, shift_reading
from calibviz.metrics import Bootstrap
from calibviz.predictions import Predictions
from calibviz.shift import (
    MetricEstimate,
    ShiftCurves,
    ShiftMetrics,
    ShiftParams,
    ShiftPoint,
    ece_markdown_table,
    shift_curves,
    shift_reliability,
    shift_specs,
    shift_table,
    shift_text_table,
)
from tests.conftest import plotly_array

N, C = 400, 5
PARAMS = ShiftParams(15, Bootstrap(n_boot=30, seed=0))


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> object:
    """One intra-op thread, as the dashboard runs: on 2 shared cores a bootstrap of a few hundred rows loses more to
    torch's thread pool than it gains (bench/results_ui.md)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ece_numpy(p: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE worked by hand: bin b holds confidences in (b/B, (b+1)/B] (0 in the first bin)."""
    conf = p.max(1).astype(np.float64)
    correct = (p.argmax(1) == y).astype(np.float64)
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    gaps = [abs(conf[b == k].sum() - correct[b == k].sum()) for k in range(n_bins)]
    return float(sum(gaps) / len(y))


def _nll_numpy(z: np.ndarray, y: np.ndarray, t: float = 1.0) -> float:
    """Mean NLL of softmax(z / t) from the logits, by logsumexp in float64."""
    z = z.astype(np.float64) / t
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def _nll_of_probs(p: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p_label with probabilities clipped at 1e-12 (the report's convention: float32 probabilities of a
    very confident wrong row underflow to 0)."""
    return float(np.mean(-np.log(np.clip(p[np.arange(len(y)), y].astype(np.float64), 1e-12, None))))


def _predictions(logits: np.ndarray, labels: np.ndarray, spec: str) -> Predictions:
    return Predictions(labels=labels, logits=logits.astype(np.float32),
                       meta={"name": "synthetic", "data_spec": spec, "dataset": "digits"})


@pytest.fixture(scope="module")
def study() -> dict:
    """An over-confident synthetic model (logits scaled by 3) on val, test, and test with growing logit noise under
    two 'corruptions'; the shifted sets keep the test labels, as corrupted copies of the same rows do."""
    rng = np.random.default_rng(7)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, C, n)
        z = rng.normal(size=(n, C))
        z[np.arange(n), y] += 1.5
        return 3.0 * z, y

    zv, yv = rows(N)
    zt, yt = rows(N)
    shifted = {}
    for j, corr in enumerate(("noise", "blur")):
        for s in SEVERITIES:
            z = zt + (1.0 + j) * s * rng.normal(size=zt.shape)
            shifted[(corr, s)] = _predictions(z, yt, f"digits-{corr}-{s}:test")
    fit, clean = _predictions(zv, yv, "digits:val"), _predictions(zt, yt, "digits:test")
    return {"fit": fit, "clean": clean, "shifted": shifted, "curves": shift_curves(fit, clean, shifted, PARAMS)}


def test_the_temperature_is_the_nll_optimum_found_by_scipy(study: dict) -> None:
    fit = study["fit"]
    res = minimize_scalar(lambda lt: _nll_numpy(fit.logits, fit.labels, float(np.exp(lt))), bounds=(-5, 5),
                          method="bounded", options={"xatol": 1e-10})
    c = study["curves"]
    assert c.temperature == pytest.approx(float(np.exp(res.x)), rel=1e-5)
    assert c.temperature > 1  # the model is over-confident
    assert c.fit_nll_after == pytest.approx(_nll_numpy(fit.logits, fit.labels, c.temperature), abs=1e-6)
    assert c.fit_nll_after < c.fit_nll_before and c.fit_data == "digits:val" and c.fit_n == N


def test_every_point_matches_numbers_worked_by_hand(study: dict) -> None:
    c = study["curves"]
    sets = {(corr, 0): study["clean"] for corr in c.corruptions} | study["shifted"]
    assert len(c.points) == 2 * 6 and c.corruptions == ("noise", "blur") and c.severities == (0, 1, 2, 3, 4, 5)
    for (corr, s), p in sets.items():
        pt = c.point(corr, s)
        z, y = p.logits, p.labels
        z64 = z.astype(np.float64)
        before, after = softmax(z64, axis=1).astype(np.float32), softmax(z64 / c.temperature, axis=1)
        assert pt.before.ece.value == pytest.approx(_ece_numpy(before, y), abs=1e-6)
        assert pt.after.ece.value == pytest.approx(_ece_numpy(after, y), abs=1e-9)
        assert pt.before.nll.value == pytest.approx(_nll_of_probs(before, y), abs=1e-9)
        assert pt.after.nll.value == pytest.approx(_nll_of_probs(after, y), abs=1e-9)
        if s <= 2:  # no probability underflows yet: the same as the logsumexp NLL of the logits
            assert pt.after.nll.value == pytest.approx(_nll_numpy(z, y, c.temperature), abs=1e-9)
        acc = float((z.argmax(1) == y).mean())
        assert pt.before.accuracy.value == pt.after.accuracy.value == pytest.approx(acc, abs=1e-12)  # TS keeps argmax
        assert pt.argmax_changed_share == 0.0 and pt.n == N
        for m in (pt.before, pt.after):
            for key in ("accuracy", "nll"):
                e = m.get(key)
                assert e.low <= e.value <= e.high
            assert m.ece.low <= m.ece.high
    assert c.point("noise", 0).before == c.point("blur", 0).before  # severity 0 is the clean test split for both
    ece = c.curve("noise", "ece", "before").value
    assert ece[-1] > ece[0]  # more logit noise, worse calibration


def test_the_bootstrap_is_seeded_and_paired(study: dict) -> None:
    again = shift_curves(study["fit"], study["clean"], study["shifted"], PARAMS)
    assert again == study["curves"]
    other = shift_curves(study["fit"], study["clean"], study["shifted"], ShiftParams(15, Bootstrap(n_boot=30, seed=1)))
    assert other.clean.before.ece.low != study["curves"].clean.before.ece.low
    none = shift_curves(study["fit"], study["clean"], {("noise", 1): study["shifted"][("noise", 1)]},
                        ShiftParams(15, None))
    assert none.clean.before.ece.low is None and none.to_json()["interval_level"] is None


def test_json_keys_are_stable_snake_case(study: dict) -> None:
    d = json.loads(json.dumps(study["curves"].to_json()))
    assert set(d) == {"name", "dataset", "fit_data", "fit_n", "temperature", "temperature_at_limit",
                      "fit_nll_before", "fit_nll_after", "n_bins", "convention", "n_boot", "seed", "interval_level",
                      "metrics", "corruptions", "severities", "points"}
    assert d["convention"] == "top-label, 15 equal-width bins closed on the right (lo, hi]"
    assert d["metrics"] == ["accuracy", "ece", "nll"] and d["dataset"] == "digits"
    p = d["points"][7]
    assert set(p) == {"corruption", "severity", "data", "n", "before", "after", "argmax_changed_share"}
    assert set(p["before"]) == {"accuracy", "ece", "nll", "intervals"}
    assert set(p["before"]["intervals"]) == {"accuracy", "ece", "nll"}
    pt = study["curves"].point(p["corruption"], p["severity"])
    assert p["after"]["ece"] == pt.after.ece.value and p["after"]["intervals"]["ece"] == [pt.after.ece.low,
                                                                                          pt.after.ece.high]
    assert p["data"] == f"digits-{p['corruption']}-{p['severity']}:test"


def test_mismatched_rows_are_refused(study: dict) -> None:
    bad = _predictions(study["clean"].logits, np.roll(study["clean"].labels, 1), "digits-noise-1:test")
    with pytest.raises(ValueError, match="other rows than the clean test split"):
        shift_curves(study["fit"], study["clean"], {("noise", 1): bad})
    with pytest.raises(ValueError, match="at least one corruption"):
        shift_curves(study["fit"], study["clean"], {})


def test_shift_specs_of_built_in_data_image_files_and_bundles(tmp_path: object) -> None:
    s = shift_specs("mnist1d-blur-2:test")
    assert s.fit == DataSpec("mnist1d", "val") and s.clean == DataSpec("mnist1d", "test")
    assert s.corruptions == CORRUPTIONS and len(s.shifted) == 15 and len(s.all) == 17
    assert shift_specs("digits:train", ["shift"]).shifted == tuple(DataSpec("digits", "test", "shift", k)
                                                                   for k in SEVERITIES)
    with pytest.raises(ValueError, match="not offered"):
        shift_specs("digits:test", ["jpeg"])
    with pytest.raises(ValueError, match="needs image or signal inputs"):
        shift_specs(DataSpec.parse("cifar10:test", bundle=True))
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 4
    np.savez(tmp_path / "t.npz", x=x, y=y, split=np.repeat([0, 1, 2, 2], 10))
    img = shift_specs(f"tensors:{tmp_path / 't.npz'}")
    assert img.corruptions == IMAGE_CORRUPTIONS and all(s.split == "test" for s in img.shifted)
    assert img.fit.split == "val" and img.clean.split == "test" and img.clean.source == "tensors"
    np.savez(tmp_path / "noval.npz", x=x, y=y, split=np.repeat([0, 0, 2, 2], 10))
    with pytest.raises(ValueError, match="no val split"):
        shift_specs(f"tensors:{tmp_path / 'noval.npz'}")


def test_reliability_bins_agree_with_the_curves(study: dict) -> None:
    c = study["curves"]
    rel = shift_reliability(study["clean"], study["shifted"][("blur", 4)], c.temperature, 15)
    assert (rel.corruption, rel.severity) == ("blur", 4)
    assert rel.bins(False, "before").ece == pytest.approx(c.clean.before.ece.value, abs=1e-9)
    assert rel.bins(True, "before").ece == pytest.approx(c.point("blur", 4).before.ece.value, abs=1e-9)
    assert rel.bins(True, "after").ece == pytest.approx(c.point("blur", 4).after.ece.value, abs=1e-9)
    assert rel.shifted_after.count.sum() == N


# ---------------------------------------------------------------------------------------------
# The verdict, on numbers made by hand


def _metrics(ece: float, half: float = 0.01) -> ShiftMetrics:
    return ShiftMetrics(MetricEstimate(0.8, 0.79, 0.81), MetricEstimate(ece, ece - half, ece + half),
                        MetricEstimate(1.0, 0.9, 1.1))


def _curves(name: str, eces: dict[str, tuple[tuple[float, float], tuple[float, float]]]) -> ShiftCurves:
    """Curves whose ECE at severity 0 and 5 (before, after TS) are given per corruption, ±0.01 intervals."""
    points = []
    for corr, ((b0, a0), (b5, a5)) in eces.items():
        points.append(ShiftPoint(corr, 0, "digits:test", 100, _metrics(b0), _metrics(a0), 0.0))
        points.append(ShiftPoint(corr, 5, f"digits-{corr}-5:test", 100, _metrics(b5), _metrics(a5), 0.0))
    return ShiftCurves(name, "digits", "digits:val", 100, 2.0, None, 1.0, 0.8, ShiftParams(), "conv",
                       tuple(eces), tuple(points))


def test_the_finding_holds_does_not_show_or_holds_in_part() -> None:
    rising = _curves("a", {"noise": ((0.10, 0.02), (0.30, 0.20)), "blur": ((0.10, 0.02), (0.25, 0.10))})
    f = shift_finding({"A": rising})
    assert f.verdict == "holds" and "2 of 2" in f.text and "Ovadia" in f.text
    flat = _curves("b", {"noise": ((0.10, 0.02), (0.11, 0.03))})  # within the ±0.01 intervals: no clear rise
    assert shift_finding({"B": flat}).verdict == "does not show"
    falling = _curves("c", {"noise": ((0.30, 0.05), (0.10, 0.02))})
    assert shift_finding({"C": falling}).verdict == "does not show"
    mixed = shift_finding({"A": rising, "B": flat})
    assert mixed.verdict == "holds in part" and "B (noise, before TS, after TS)" in mixed.text
    ts_only = shift_finding({"D": _curves("d", {"shift": ((0.10, 0.02), (0.30, 0.025))})})
    assert ts_only.verdict == "holds in part" and "D (shift, after TS)" in ts_only.text
    assert shift_finding({"A": rising}, ["blur"]).text.count("1 of 1") == 2
    with pytest.raises(ValueError):
        shift_finding({})


def test_the_reading_says_what_the_numbers_do() -> None:
    c = _curves("a", {"noise": ((0.10, 0.02), (0.30, 0.40))})
    text = shift_reading(c, "noise", "CE")
    assert text.startswith("ECE of **CE** rises from 0.100 at severity 0 to 0.300 at severity 5 under noise")
    assert "lowers it to 0.020 at severity 0 but 0.400 at severity 5, more than without TS." in text
    flat = shift_reading(_curves("b", {"blur": ((0.10, 0.02), (0.105, 0.01))}), "blur")
    assert "stays within its intervals, from 0.100" in flat and "0.010 at severity 5." in flat


def test_tables(study: dict) -> None:
    c = study["curves"]
    df = shift_table({"S": c}, ["blur"])
    assert list(df.index.get_level_values("corruption")) == ["clean"] + ["blur"] * 5
    assert list(df.columns) == ["accuracy", "ECE before TS", "ECE after TS", "NLL before TS", "NLL after TS"]
    e = c.point("blur", 3).after.ece
    assert df.loc[("S", "blur", 3), "ECE after TS"] == f"{e.value:.3f}\u00a0[{e.low:.3f},\u00a0{e.high:.3f}]"
    text = shift_text_table([c])
    assert f"T = {c.temperature:.4g}" in text and len(text.strip().splitlines()) == 2 + 11
    md = ece_markdown_table([c.to_json()])
    row = next(line for line in md.splitlines() if "| noise |" in line)
    p5 = c.point("noise", 5)
    assert f"{p5.before.ece.value:.3f} → {p5.after.ece.value:.3f} |" in row


# ---------------------------------------------------------------------------------------------
# Figures


def test_curves_figure_lines_panels_and_intervals(study: dict) -> None:
    from calibviz.plots.shift import shift_curves_figure

    c = study["curves"]
    fig = shift_curves_figure({"A": c, "B": c}).to_plotly_json()
    # 2 models x 2 corruptions x (accuracy once, ECE and NLL before and after)
    assert len(fig["data"]) == 2 * 2 * 5
    assert {t["line"]["dash"] for t in fig["data"]} == {"solid", "dash"}
    assert len({t["line"]["color"] for t in fig["data"]}) == 2
    assert sum(t["showlegend"] for t in fig["data"]) == 4
    assert "xaxis6" in fig["layout"] and "xaxis7" not in fig["layout"]  # 3 metrics x 2 corruptions
    ece_after = next(t for t in fig["data"] if t["xaxis"] == "x3" and t["line"]["dash"] == "dash"
                     and t["name"].startswith("A"))
    cv = c.curve("noise", "ece", "after")
    assert np.allclose(plotly_array(ece_after["y"]), cv.value)
    assert np.allclose(plotly_array(ece_after["error_y"]["array"]), cv.high - cv.value)
    x = plotly_array(ece_after["x"])
    assert np.allclose(np.round(x), np.arange(6)) and not np.allclose(x, np.arange(6))  # set a little apart
    one = shift_curves_figure({"A": c}, ["nll"], ["blur"], ["after"]).to_plotly_json()
    assert len(one["data"]) == 1 and one["data"][0]["line"]["dash"] == "dash"
    with pytest.raises(ValueError, match="unknown"):
        shift_curves_figure({"A": c}, ["brier"])


def test_reliability_figure_has_clean_and_shifted_panels(study: dict) -> None:
    from calibviz.plots.shift import shift_reliability_figure

    c = study["curves"]
    rel = shift_reliability(study["clean"], study["shifted"][("noise", 3)], c.temperature)
    fig = shift_reliability_figure(rel, c, title="A").to_plotly_json()
    titles = [a["text"] for a in fig["layout"]["annotations"] if a.get("yanchor") == "bottom"]
    assert titles[:2] == ["clean · before TS", "noise 3 · before TS"] and len(titles) == 4
    notes = [a["text"] for a in fig["layout"]["annotations"] if a["text"].startswith("ECE")]
    assert notes[1].startswith(f"ECE {c.point('noise', 3).before.ece.value:.4f}")
    before_only = shift_reliability_figure(rel, c, ["before"]).to_plotly_json()
    assert sum(t.get("name") == "Perfect calibration" for t in before_only["data"]) == 2


def test_shift_metrics_are_those_of_calibration_metrics(study: dict) -> None:
    """The three metrics, point estimates and intervals, equal the full report's (same kernels, same resamples)."""
    from calibviz.metrics import Bootstrap, calibration_metrics
    from calibviz.shift import shift_metrics

    for p in (study["clean"], study["shifted"][("blur", 5)]):
        probs = p.probabilities()
        full = calibration_metrics(probs, p.labels, 15, Bootstrap(n_boot=30, seed=0))
        mine = shift_metrics(probs, p.labels, PARAMS)
        for k in ("accuracy", "ece", "nll"):
            e = mine.get(k)
            assert e.value == pytest.approx(full.values[k], abs=1e-12)
            assert (e.low, e.high) == pytest.approx(full.intervals[k], abs=1e-12)

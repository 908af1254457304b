"""Re-calibration reports, the temperature curve, the MTS curve and their figures, checked against
independent computations (scipy's minimiser, direct forward passes of the model)."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from calibviz.calibrators import MTSPoint, fit_temperature, mts_curve
from calibviz.data import DataSpec
from calibviz.formats import load_bundle, save_bundle
from calibviz.predictions import Predictions
from calibviz.recalibration import fit_and_report, recalibration_report, temperature_curve

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"


def netcal_bundle(name: str, tmp_path: Path) -> Predictions:
    """A netcal fixture written as a calibviz bundle with a split array (first half val, second
    half test) and read back, as the command line would."""
    path = REAL / "netcal" / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"real netcal fixture not found: {path}")
    with np.load(path) as d:
        p, y = d["predictions"], d["ground_truth"].astype(np.int64)
    split = np.where(np.arange(len(y)) < len(y) // 2, 1, 2).astype(np.int64)
    out = tmp_path / f"{name}.npz"
    save_bundle(Predictions(labels=y, probs=p, split=split, meta={"name": name}), out)
    return load_bundle(out)


def ref_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    s = np.asarray(z, dtype=np.float64) / t
    return float((logsumexp(s, axis=1) - s[np.arange(len(y)), y]).mean())


def ref_temperature(z: np.ndarray, y: np.ndarray) -> float:
    res = minimize_scalar(lambda s: ref_nll(z, y, math.exp(s)), bounds=(-5.0, 5.0), method="bounded",
                          options={"xatol": 1e-11})
    return math.exp(res.x)


def keys_of(d: object) -> list[str]:
    if isinstance(d, dict):
        return [k for k, v in d.items() for k in (k, *keys_of(v))]
    if isinstance(d, list):
        return [k for v in d for k in keys_of(v)]
    return []


def test_ts_report_on_a_bundle_matches_an_independent_minimiser(tmp_path: Path) -> None:
    bundle = netcal_bundle("wideresnet-16-4-cifar-10", tmp_path)
    fit, ev = bundle.select_split("val"), bundle.select_split("test")
    rep = recalibration_report(fit, ev, "ts", n_bins=15, n_boot=20)
    text = json.dumps(rep)  # JSON-serialisable as is
    assert json.loads(text)["method"] == "ts"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in keys_of(rep))
    zf, ze = fit.scores().astype(np.float64), ev.scores().astype(np.float64)
    t_ref = ref_temperature(zf, fit.labels)
    assert abs(rep["parameters"]["temperature"] - t_ref) < 1e-5
    assert abs(rep["after"]["nll"] - ref_nll(ze, ev.labels, t_ref)) < 1e-5
    p_ev = ev.probabilities().astype(np.float64)
    assert rep["before"]["nll"] == pytest.approx(-np.log(p_ev[np.arange(ev.n), ev.labels]).mean(), abs=1e-6)
    assert rep["after"]["accuracy"] == rep["before"]["accuracy"]
    assert rep["change"]["nll"] == pytest.approx(rep["after"]["nll"] - rep["before"]["nll"])
    assert rep["after"]["ece"] < rep["before"]["ece"]
    flags = rep["flags"]
    assert not flags["argmax_changed"] and not flags["accuracy_moved"]
    assert not flags["fits_fit_split_much_better"] and not flags["nll_worse"]
    assert rep["fit"]["n"] == 5000 and rep["eval"]["n"] == 5000
    assert "intervals" in rep["after"]


def test_overfitting_and_argmax_changes_are_flagged(tmp_path: Path) -> None:
    bundle = netcal_bundle("densenet-bc-100-cifar-100", tmp_path)
    fit = bundle.select_split("val").subset(np.arange(400))
    ev = bundle.select_split("test")
    rep, cal = fit_and_report(fit, ev, "ms", params={"reg_lambda": 0.0, "reg_mu": 0.0, "device": "cpu"},
                              n_boot=0)
    assert cal.weight_.shape == (100, 100)
    flags = rep["flags"]
    assert flags["fit_nll_gain"] > flags["eval_nll_gain"] + 0.02
    assert flags["fits_fit_split_much_better"]
    assert flags["argmax_changed"] and flags["argmax_changed_share"] > 0
    assert flags["accuracy_change"] == pytest.approx(rep["after"]["accuracy"] - rep["before"]["accuracy"])
    assert any("fit split much better" in w for w in rep["warnings"])
    ts = recalibration_report(fit, ev, "ts", n_boot=0)
    assert not ts["flags"]["fits_fit_split_much_better"]


def test_unknown_method_and_mts_without_masked_inputs_are_refused(tmp_path: Path) -> None:
    bundle = netcal_bundle("lenet-5-cifar-10", tmp_path)
    fit, ev = bundle.select_split("val"), bundle.select_split("test")
    with pytest.raises(ValueError, match="unknown"):
        recalibration_report(fit, ev, "platt")
    with pytest.raises(ValueError, match="masked inputs"):
        recalibration_report(fit, ev, "mts")


def test_temperature_curve_has_its_minimum_at_the_exact_optimum(tmp_path: Path) -> None:
    bundle = netcal_bundle("lenet-5-cifar-10", tmp_path)
    fit = bundle.select_split("val")
    z = fit.scores().astype(np.float64)
    curve = temperature_curve(z, fit.labels)
    assert curve.optimal_temperature == pytest.approx(ref_temperature(z, fit.labels), abs=1e-5)
    assert curve.nll.min() >= curve.optimal_nll - 1e-12
    i = len(curve.temperatures) // 3
    assert curve.nll[i] == pytest.approx(ref_nll(z, fit.labels, curve.temperatures[i]), abs=1e-9)
    assert curve.temperatures.min() < 1.0 < curve.temperatures.max()


def test_figures_show_the_data_they_are_given(tmp_path: Path) -> None:
    from calibviz.plots.recalibration import (
        method_comparison_figure,
        mts_curve_figure,
        temperature_curve_figure,
    )

    bundle = netcal_bundle("lenet-5-cifar-10", tmp_path)
    fit, ev = bundle.select_split("val"), bundle.select_split("test")
    curve = temperature_curve(fit.scores(), fit.labels)
    fig = temperature_curve_figure(curve, current=2.0)
    star = next(t for t in fig.data if t.mode == "markers+text")
    assert star.x[0] == pytest.approx(curve.optimal_temperature)
    assert np.allclose(fig.data[0].y, curve.nll)

    curves = {"a": [MTSPoint(0.0, 1.5, 0.05, 0.9), MTSPoint(0.2, 2.0, 0.02, 0.8)],
              "b": [MTSPoint(0.2, 1.1, 0.03, 0.7), MTSPoint(0.0, 1.0, 0.08, 0.95)]}
    fig = mts_curve_figure(curves, metric="ece")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].x) == [0.0, 0.2] and list(fig.data[1].y) == [0.08, 0.03]

    reports = {m: recalibration_report(fit, ev, m, n_boot=0) for m in ("ts", "histogram")}
    fig = method_comparison_figure(reports, metrics=("ece", "nll"))
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == ["uncalibrated", "ts", "histogram"]
    assert fig.data[1].y[1] == pytest.approx(reports["ts"]["after"]["nll"])
    assert fig.data[1].y[0] == pytest.approx(reports["ts"]["before"]["nll"])


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn_small trained briefly (seeded, full batch) on digits:train, saved as a checkpoint."""
    from calibviz.data import load_dataset
    from calibviz.formats import save_checkpoint
    from calibviz.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn_small")
    ds = load_dataset("digits:train")
    x, y = torch.from_numpy(np.array(ds.x)), torch.from_numpy(np.array(ds.y))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    path = tmp_path_factory.mktemp("mts") / "digits-cnn.safetensors"
    save_checkpoint(path, model.eval(), {"name": "digits/test-cnn", "arch": "cnn_small", "arch_kwargs": {},
                                         "num_classes": 10, "dataset": "digits"})
    return path


def test_mts_curve_fits_t_on_masked_fit_inputs_and_scores_clean_eval_inputs(trained_checkpoint: Path) -> None:
    from calibviz.backend import masked_predictions, predict, run_model
    from calibviz.data import load_dataset
    from calibviz.formats import load_checkpoint

    fits = masked_predictions(trained_checkpoint, "digits:val", [0.0, 0.3], device="cpu")
    assert [f.meta["mask_ratio"] for f in fits] == [0.0, 0.3]
    points = mts_curve(fits, predict(trained_checkpoint, "digits:test", device="cpu"), device="cpu")
    assert [p.ratio for p in points] == [0.0, 0.3]
    model, _ = load_checkpoint(trained_checkpoint)
    val, test = load_dataset("digits:val"), load_dataset("digits:test")
    dev = torch.device("cpu")
    z_test, _ = run_model(model, test.x, dev)
    for pt in points:
        z_fit, _ = run_model(model, val.x, dev, mask_ratio=pt.ratio, mask_seed=0)
        t = ref_temperature(z_fit.astype(np.float64), val.y)
        assert pt.temperature == pytest.approx(t, abs=1e-5)
        assert pt.nll == pytest.approx(ref_nll(z_test, test.y, t), abs=1e-5)
    assert points[0].temperature != pytest.approx(points[1].temperature, abs=1e-3)


def test_mts_report_uses_masked_fit_predictions(trained_checkpoint: Path) -> None:
    from calibviz.backend import predict

    fit = predict(trained_checkpoint, "digits:val", device="cpu", mask_ratio=0.3)
    ev = predict(trained_checkpoint, "digits:test", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = recalibration_report(fit, ev, "mts", n_boot=0)
    assert rep["parameters"]["mask_ratio"] == 0.3
    assert rep["parameters"]["temperature"] == pytest.approx(fit_temperature(fit.scores(), fit.labels),
                                                             abs=1e-9)
    assert rep["fit"]["mask_ratio"] == 0.3 and rep["eval"]["mask_ratio"] == 0.0
    assert not rep["flags"]["fits_fit_split_much_better"]


def test_the_page_pieces_split_choices_lineup_table_and_notes(tmp_path: Path) -> None:
    from calibviz.data import spec_choices
    from calibviz.plots.recalibration import methods_grid_figure, mts_curve_figure
    from calibviz.recalibration import (
        MTS_CAVEAT,
        comparison_columns,
        comparison_note,
        default_evaluation,
        fit_method,
        mts_explanation,
        mts_lineup,
        mts_summary,
        split_choices,
        top_label_bins,
    )
    from calibviz.sources import ModelEntry

    fit_opts, eval_opts = split_choices("digits")
    assert fit_opts == ["digits:val", "digits:train", "digits:test"]
    assert eval_opts == [str(s) for s in spec_choices("digits")] and "digits-noise-3:test" in eval_opts
    rows = Predictions(labels=np.zeros(6, dtype=np.int64), logits=np.zeros((6, 2), dtype=np.float32),
                       split=np.array([2, 2, 1, 1, 2, 1]), meta={"split_names": ["train", "val", "test"]})
    assert split_choices("up", rows) == (["up:val", "up:test", "up:all"], ["up:val", "up:test", "up:all"])
    assert default_evaluation("digits:test", "digits:val", eval_opts) == "digits:test"
    assert default_evaluation("digits:val", "digits:val", eval_opts) == "digits:test"  # never the fit rows
    assert default_evaluation("up:all", "up:val", ["up:val", "up:test", "up:all"]) == "up:test"

    def entry(name: str, recipe: str, kind: str = "checkpoint") -> ModelEntry:
        return ModelEntry(name=name, title=name.upper(), dataset="digits", recipe=recipe, kind=kind,
                          path=tmp_path / f"{recipe}.safetensors")

    zoo = [entry("digits/ce", "ce"), entry("digits/ls", "ls"), entry("digits/dm", "dm")]
    line = mts_lineup(zoo[0], zoo)
    assert [(m.entry.name, m.label, m.key) for m in line] == [
        ("digits/ce", "DIGITS/CE (full data)", "ce"), ("digits/dm", "DIGITS/DM", "dm")]
    assert [m.key for m in mts_lineup(zoo[1], zoo)] == ["ls", "ce", "dm"]  # a zoo checkpoint off the curve
    mine = entry("upload/mine", "upload", kind="bundle")
    assert [m.key for m in mts_lineup(mine, zoo)] == ["ce", "dm"]  # a bundle cannot be run on masked inputs

    bundle = netcal_bundle("lenet-5-cifar-10", tmp_path)
    fit, ev = bundle.select_split("val"), bundle.select_split("test")
    results = {m: fit_method(fit, ev, m, n_boot=20) for m in ("ts", "histogram")}
    columns = comparison_columns(results)
    assert list(columns) == ["Uncalibrated", "Temperature scaling", "Histogram binning"]
    ts = columns["Temperature scaling"]
    assert ts["fitted parameters"].startswith("T = ") and ts["Δ Accuracy"] == "+0.0000"
    assert float(ts["ECE"].split()[0]) == pytest.approx(results["ts"].report["after"]["ece"], abs=1e-4)
    note = comparison_note(results)
    assert note.endswith("Bars below: TS = Temperature scaling, Hist. = Histogram binning.")
    assert f"all {ev.n:,} evaluation rows" in note and "(20 resamples, seed 0)" in note
    grid = methods_grid_figure(top_label_bins(ev.probabilities(), ev.labels), results).to_plotly_json()
    titles = [a["text"] for a in grid["layout"]["annotations"] if a.get("yanchor") == "bottom" and a["text"]]
    assert titles == ["Uncalibrated", "Temperature scaling", "Histogram binning"]

    steep = {"a": [MTSPoint(0.0, 1.0, 0.01, 1.0), MTSPoint(0.1, 1.2, 0.02, 1.0)],
             "b": [MTSPoint(0.0, 8.0, 0.4, 2.0), MTSPoint(0.1, 9.0, 0.3, 2.0)]}
    assert mts_curve_figure(steep, height=430, title="").layout.yaxis.type == "log"  # 0.4 / 0.01 > 8
    flat = mts_curve_figure(steep, metric="nll")
    assert flat.layout.yaxis.type != "log" and flat.layout.title.text.startswith("Masked temperature scaling")
    assert mts_curve_figure(steep, log_y=False).layout.yaxis.type != "log"
    summaries = {"ce": mts_summary("CE", steep["a"], 0.2), "dm": mts_summary("DM", steep["b"], 0.5)}
    text = mts_explanation(DataSpec.of("digits:val"), DataSpec.of("digits-noise-3:test"), summaries)
    assert "Fitted on **val**" in text and "**test — noise, severity 3**" in text
    assert "- **CE**: plain TS" in text and "- **DM**: plain TS" in text and "After plain TS" in text
    assert "more than 0.005 and 10% of its ECE" in MTS_CAVEAT


def test_fitted_methods_are_cached_on_disk_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second fit_method call (a new server process, say) reads the fit back from disk, equal to the fresh one;
    other data or parameters fit again; a damaged entry is refitted and overwritten."""
    from calibviz import recalibration as R

    monkeypatch.setenv("CALIBVIZ_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    z = rng.normal(size=(400, 4)) * 3
    y = rng.integers(0, 4, 400)
    fit, ev = (Predictions(labels=y[s], logits=z[s].astype(np.float32), meta={"name": "m"})
               for s in (slice(0, 200), slice(200, 400)))

    def as_text(r: R.MethodResult) -> str:
        return json.dumps({"r": r.report, "c": r.calibrator, "b": vars(r.bins)}, default=R._to_json, sort_keys=True)

    calls: list[str] = []
    real = R.fit_and_report
    monkeypatch.setattr(R, "fit_and_report", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    fresh = R.fit_method(fit, ev, "vs", 10, n_boot=20)
    again = R.fit_method(fit, ev, "vs", 10, n_boot=20)
    assert calls == ["vs"] and as_text(again) == as_text(fresh)
    assert isinstance(again.bins.count, np.ndarray) and again.bins.count.dtype == fresh.bins.count.dtype
    R.fit_method(fit, ev, "vs", 12, n_boot=20)
    R.fit_method(ev, fit, "vs", 10, n_boot=20)
    assert calls == ["vs"] * 3
    (entry,) = [p for p in (tmp_path / "cache" / "fits").iterdir()
                if p.name == R._fit_cache_path(fit, ev, "vs", 10, None, 20, 0).name]
    entry.write_text('{"report": ')
    assert as_text(R.fit_method(fit, ev, "vs", 10, n_boot=20)) == as_text(fresh) and len(calls) == 4
    assert json.loads(entry.read_text())["calibrator"] == fresh.calibrator

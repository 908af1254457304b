"""AppTest tests of the Re-calibration page (views/recalibration.py) on the shipped zoo (digits) and on an uploaded
predictions bundle with a split array."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import streamlit
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from streamlit.testing.v1 import AppTest

from calibviz.recalibration import manual_temperature_grid
from tests.conftest import ZOO, open_page, plotly_array, plotly_figures

PAGE = "views/recalibration.py"
T_KEY = "recalibration_temperature"
DEFAULT_LABELS = ["Temperature scaling", "Ensemble temperature scaling", "Vector scaling", "Dirichlet calibration"]
CELL = re.compile(r"^(-?\d+\.\d+)\s\[(-?\d+\.\d+),\s(-?\d+\.\d+)\]$")  # \s: the cells use no-break spaces


def _open() -> AppTest:
    """The app on the Re-calibration page with digits selected (CE and LS in the sidebar, CE picked)."""
    at = open_page()
    at.sidebar.radio(key="dataset").set_value("digits").run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _figure(at: AppTest, title_start: str) -> dict:
    figs = [f for f in plotly_figures(at)
            if str((f["layout"].get("title") or {}).get("text") or "").startswith(title_start)]
    assert len(figs) == 1, [(f["layout"].get("title") or {}).get("text") for f in plotly_figures(at)]
    return figs[0]


def _grid(at: AppTest) -> dict:
    """The side-by-side reliability diagrams: the figure whose panel titles name the uncalibrated model."""
    figs = [f for f in plotly_figures(at)
            if any(a.get("text") == "Uncalibrated" for a in f["layout"].get("annotations", []))]
    assert len(figs) == 1
    return figs[0]


def _panels(fig: dict) -> list[str]:
    """Panel titles of the grid, in order (the annotations that are subplot titles, not the metric notes)."""
    return [a["text"] for a in fig["layout"]["annotations"] if a.get("yanchor") == "bottom" and a["text"]]


def _manual_bars(at: AppTest) -> np.ndarray:
    fig = _figure(at, "Evaluation split at T =")
    bar = next(t for t in fig["data"] if t["type"] == "bar" and t["name"].startswith("Output"))
    return plotly_array(bar["y"])


def _metric(at: AppTest, label_start: str) -> float:
    (m,) = [m for m in at.metric if m.label.startswith(label_start)]
    return float(m.value)


def _column(table: object, method: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in table[method].items()}


def _value(cell: str) -> float:
    return float(cell.split()[0])


def _independent_ts(fit_logits: np.ndarray, fit_labels: np.ndarray) -> float:
    """The NLL-optimal temperature by a generic scalar minimiser over log T (numpy/scipy only)."""
    z, y = fit_logits.astype(np.float64), fit_labels

    def f(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(y)), y]))

    res = minimize_scalar(f, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(res.x))


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    s = logits.astype(np.float64) / t
    return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(labels)), labels]))


@pytest.fixture(scope="module")
def app() -> AppTest:
    return _open()


def test_one_diagram_per_method_plus_uncalibrated_and_a_table_with_intervals(app: AppTest) -> None:
    assert app.selectbox(key="recalibration_model_digits").value == "digits/ce"  # the sidebar's first model
    assert app.selectbox(key="recalibration_fit_digits").value == "digits:val"
    assert app.selectbox(key="recalibration_eval_digits").value == "digits:test"  # the sidebar's split
    grid = _grid(app)
    assert _panels(grid) == ["Uncalibrated", *DEFAULT_LABELS]
    outputs = [t for t in grid["data"] if t["name"].startswith("Output")]
    assert len(outputs) == 5  # one diagram (its per-bin accuracy bars) per panel
    assert len({tuple(np.round(plotly_array(t["y"]), 6)) for t in outputs}) == 5  # ... and each its own data

    table = app.table[0].value
    assert list(table.columns) == ["Uncalibrated", *DEFAULT_LABELS]
    for method in table.columns:
        col = _column(table, method)
        for metric in ("ECE", "NLL", "Brier", "Accuracy", "AUROC"):
            m = CELL.match(col[metric])
            assert m, (method, metric, col[metric])
            v, lo, hi = (float(x) for x in m.groups())
            assert lo <= hi and lo >= 0.0, (method, metric, col[metric])
            if method != "Uncalibrated":
                before = _value(_column(table, "Uncalibrated")[metric])
                assert abs(float(col[f"Δ {metric}"]) - (v - before)) <= 2e-4, (method, metric)
    ts = _column(table, "Temperature scaling")
    assert ts["Δ Accuracy"] == "+0.0000"  # TS never changes the argmax
    assert ts["fitted parameters"].startswith("T = ")

    # fewer methods, fewer diagrams; histogram binning brings the zero-probability note
    app.multiselect(key="recalibration_methods").set_value(["ts", "histogram"]).run()
    assert not app.exception, app.exception
    assert _panels(_grid(app)) == ["Uncalibrated", "Temperature scaling", "Histogram binning"]
    assert any("can make NLL worse" in md.value for md in app.markdown)
    app.multiselect(key="recalibration_methods").set_value(["ts", "ets", "vs", "dirichlet"]).run()

    # the evaluation split follows the sidebar's, shifted test sets included; the fit split stays val
    clean = _column(app.table[0].value, "Uncalibrated")["ECE"]
    app.sidebar.selectbox(key="spec_digits").set_value("digits-noise-3:test").run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert app.selectbox(key="recalibration_eval_digits").value == "digits-noise-3:test"
    assert app.selectbox(key="recalibration_fit_digits").value == "digits:val"
    assert _column(app.table[0].value, "Uncalibrated")["ECE"] != clean
    app.sidebar.selectbox(key="spec_digits").set_value("digits:test").run()
    assert app.selectbox(key="recalibration_eval_digits").value == "digits:test"


def test_temperature_slider_redraws_and_meets_the_ts_optimum(app: AppTest) -> None:
    from calibviz.backend import predict

    assert app.select_slider(key=T_KEY).value == 1.0
    bars_1, nll_1, ece_1 = _manual_bars(app), _metric(app, "NLL (evaluation)"), _metric(app, "ECE (evaluation")
    grid = manual_temperature_grid()
    app.select_slider(key=T_KEY).set_value(grid[-1]).run()  # T = 10: far too soft for this model
    assert not app.exception, app.exception
    assert _metric(app, "Temperature T") == 10.0
    assert not np.array_equal(np.nan_to_num(_manual_bars(app), nan=-1), np.nan_to_num(bars_1, nan=-1))
    assert _metric(app, "NLL (evaluation)") > nll_1 and _metric(app, "ECE (evaluation") != ece_1

    # independent recomputation on the same predictions: the optimum of the val split, the NLL on test there
    fit = predict(ZOO / "digits" / "ce.safetensors", "digits:val")
    ev = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    t_ref = _independent_ts(fit.logits, fit.labels)
    nll_ref = _nll(ev.logits, ev.labels, t_ref)
    ts = _column(app.table[0].value, "Temperature scaling")
    assert abs(_value(ts["NLL"]) - nll_ref) <= 1e-4
    assert abs(float(ts["fitted parameters"].split("=")[1].split(",")[0]) / t_ref - 1) < 1e-3

    nearest = min(grid, key=lambda t: abs(np.log(t) - np.log(t_ref)))
    app.select_slider(key=T_KEY).set_value(nearest).run()
    assert _metric(app, "Temperature T") == pytest.approx(nearest)
    shown = _metric(app, "NLL (evaluation)")
    assert abs(shown - _nll(ev.logits, ev.labels, nearest)) <= 1e-4
    assert abs(shown - _value(ts["NLL"])) <= 2e-3  # the grid is 2.3% apart; NLL is flat at its optimum

    # the "fitted" button snaps the slider to the same grid value
    app.select_slider(key=T_KEY).set_value(1.0).run()
    app.button(key="recalibration_btn_snap").click().run()
    assert not app.exception, app.exception
    assert app.select_slider(key=T_KEY).value == pytest.approx(nearest)


def test_every_registered_calibrator_is_offered_labelled_and_tabulated() -> None:
    from calibviz.calibrators import REGISTRY

    at = _open()
    methods = at.multiselect(key="recalibration_methods")
    assert methods.options == [info.label for info in REGISTRY.values()]  # a checkpoint: MTS too
    methods.set_value(list(REGISTRY)).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    labels = [info.label for info in REGISTRY.values()]
    assert list(at.table[0].value.columns) == ["Uncalibrated", *labels]
    assert _panels(_grid(at)) == ["Uncalibrated", *labels]
    bars = _figure(at, "Evaluation split: uncalibrated and each method")
    assert list(bars["data"][0]["x"]) == ["uncalibrated", *(info.short for info in REGISTRY.values())]
    assert any(all(f"{i.short} = {i.label}" in c.value for i in REGISTRY.values()) for c in at.caption)
    assert at.selectbox(key="recalibration_export").options == labels


def test_json_download_holds_the_fitted_temperature(monkeypatch: pytest.MonkeyPatch) -> None:
    from calibviz.backend import predict
    from calibviz.calibrators import Calibrator

    captured: dict[str, object] = {}
    original = streamlit.download_button

    def spy(label: str, data: object, *args: object, **kwargs: object) -> object:
        captured.update(label=label, data=data, file_name=kwargs.get("file_name"))
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", spy)
    at = _open()
    assert at.selectbox(key="recalibration_export").value == "ts"
    assert captured["file_name"] == "digits_ce_ts.json"
    saved = json.loads(str(captured["data"]))
    assert saved["method"] == "ts"
    fit = predict(ZOO / "digits" / "ce.safetensors", "digits:val")
    assert saved["fitted"]["temperature_"] == pytest.approx(_independent_ts(fit.logits, fit.labels), rel=1e-6)
    cal = Calibrator.from_json(saved)  # it loads back into a working calibrator
    assert cal.transform(fit.logits[:3]).shape == (3, 10)

    at.selectbox(key="recalibration_export").set_value("vs").run()
    assert json.loads(str(captured["data"]))["method"] == "vs"


def test_uploaded_bundle_with_a_split_array(tmp_path: Path) -> None:
    from calibviz.backend import cache_dir, predict
    from calibviz.formats import save_bundle
    from calibviz.predictions import Predictions
    from calibviz.uploads import accept_upload

    # the mnist1d-free way to get real logits: the digits CE teacher's val and test rows in one bundle, no dataset
    val = predict(ZOO / "digits" / "ce.safetensors", "digits:val")
    test = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    preds = Predictions(labels=np.concatenate([val.labels, test.labels]),
                        logits=np.concatenate([val.logits, test.logits]),
                        split=np.concatenate([np.full(val.n, 1), np.full(test.n, 2)]),
                        meta={"name": "my-model", "split_names": ["train", "val", "test"]})
    path = tmp_path / "mine.npz"
    save_bundle(preds, path)
    model = accept_upload("mine.npz", path.read_bytes(), cache_dir() / "uploads")

    at = open_page()
    at.session_state["uploads"] = {model.name: model}
    at.switch_page(PAGE).run()
    at.sidebar.radio(key="dataset").set_value("uploaded").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="recalibration_fit_uploaded").value == "uploaded:val"
    assert at.selectbox(key="recalibration_eval_uploaded").value == "uploaded:test"
    assert "mts" not in at.multiselect(key="recalibration_methods").options
    assert "Masked temperature scaling" not in at.multiselect(key="recalibration_methods").options  # by its label
    assert any("needs the model" in i.value or "needs checkpoints" in i.value for i in at.info)
    table = at.table[0].value
    assert list(table.columns) == ["Uncalibrated", *DEFAULT_LABELS]
    # the same rows as the zoo model, so the same fitted temperature as there
    ts = _column(table, "Temperature scaling")
    assert float(ts["fitted parameters"].split("=")[1].split(",")[0]) == pytest.approx(
        _independent_ts(val.logits, val.labels), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# The small library pieces the page is built from


def test_manual_grid_and_at_temperature_match_a_direct_computation() -> None:
    from calibviz.recalibration import at_temperature, nearest_temperature

    grid = manual_temperature_grid()
    assert grid[0] == 0.1 and grid[-1] == 10.0 and 1.0 in grid and len(grid) == 101
    assert all(b > a for a, b in pairwise(grid))
    assert nearest_temperature(grid, 4.41) == 4.365 and nearest_temperature(grid, 1e-3) == 0.1

    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 5)) * 3
    y = rng.integers(0, 5, 400)
    r = at_temperature(z, y, 2.5, n_bins=10)
    p = np.exp(z / 2.5 - logsumexp(z / 2.5, axis=1, keepdims=True))
    assert r.nll == pytest.approx(_nll(z, y, 2.5), abs=1e-9)
    assert r.accuracy == pytest.approx(np.mean(p.argmax(1) == y))
    conf, right = p.max(1), p.argmax(1) == y
    idx = np.clip(np.ceil(conf * 10).astype(int) - 1, 0, 9)
    ece_ref = sum(abs(conf[idx == b].mean() - right[idx == b].mean()) * (idx == b).mean()
                  for b in range(10) if (idx == b).any())
    assert r.ece == pytest.approx(ece_ref, abs=1e-6)
    assert r.bins.count.sum() == 400


def test_mts_summary_verdicts_and_the_distilled_comparison() -> None:
    from calibviz.calibrators import MTSPoint
    from calibviz.recalibration import distilled_vs_full, mts_summary

    def pts(*eces: float) -> list[MTSPoint]:
        return [MTSPoint(ratio=r, temperature=1.0 + r, ece=e, nll=1.0) for r, e in zip((0.0, 0.1, 0.2), eces,
                                                                                      strict=True)]

    assert mts_summary("a", pts(0.05, 0.03, 0.04), 0.3).verdict == "helps"
    assert mts_summary("b", pts(0.05, 0.048, 0.052), 0.3).verdict == "no real difference"
    hurt = mts_summary("c", pts(0.02, 0.05, 0.09), 0.1)
    assert hurt.verdict == "hurts" and hurt.best_ratio == 0.1 and "MTS hurts" in hurt.sentence
    full = mts_summary("CE", pts(0.02, 0.05, 0.09), 0.13)
    assert "TS is not defeated" in distilled_vs_full(full, [mts_summary("DM", pts(0.03, 0.03, 0.03), 0.5)])
    worse = distilled_vs_full(full, [mts_summary("DM", pts(0.09, 0.05, 0.06), 0.5)])
    assert "remain worse calibrated" in worse and "MTS helps on DM" in worse
    with pytest.raises(ValueError, match="r = 0"):
        mts_summary("x", [MTSPoint(0.1, 1.0, 0.1, 1.0)], 0.2)


def test_parameter_summary_and_figures() -> None:
    from calibviz.plots.recalibration import reliability_grid_figure, temperature_teaching_figure
    from calibviz.recalibration import parameter_summary, temperature_curve, top_label_bins

    assert parameter_summary({"temperature": 4.4096, "at_limit": None}) == "T = 4.41"
    assert parameter_summary({"n_parameters": 20, "diagonal_min": 0.5, "diagonal_max": 2.0, "bias_norm": 1.0,
                              "reg_mu": 0.0}) == "20 parameters, diagonal 0.5 to 2, ‖b‖ = 1, μ = 0"
    assert parameter_summary({}) == "—"

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 4)) * 4
    p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    soft = np.exp(z / 2 - logsumexp(z / 2, axis=1, keepdims=True))  # labels drawn at T = 2: over-confident
    y = (rng.random(300)[:, None] > soft.cumsum(1)).sum(1)
    panels = {name: top_label_bins(p, y, 10) for name in ("Uncalibrated", "A", "B", "C", "D")}
    fig = reliability_grid_figure(panels, {"A": "ECE 0.1"}, cols=3).to_plotly_json()
    titles = [a["text"] for a in fig["layout"]["annotations"] if a.get("yanchor") == "bottom" and a["text"]]
    assert titles == list(panels)
    assert sum(t["name"].startswith("Output") for t in fig["data"]) == 5
    assert sum(bool(t.get("showlegend")) for t in fig["data"]) == 4  # one legend entry per trace kind

    grid = list(manual_temperature_grid())
    curve = temperature_curve(z, y, grid)
    tfig = temperature_teaching_figure(curve, curve, 2.0).to_plotly_json()
    star = next(t for t in tfig["data"] if str(t["name"]).startswith("fitted T*"))
    assert star["x"][0] == pytest.approx(_independent_ts(z, y), rel=1e-4)
    chosen = next(t for t in tfig["data"] if t["name"] == "chosen T: NLL (eval)")
    assert chosen["x"][0] == 2.0 and chosen["y"][0] == pytest.approx(_nll(z, y, 2.0), rel=1e-3)

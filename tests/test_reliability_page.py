"""AppTest tests of the Reliability page (views/reliability.py) on the shipped digits zoo and an uploaded bundle of
real published CIFAR-10 predictions. The table is checked against an independent `metrics_report` run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ZOO, open_page, plotly_figures, plotly_list

PAGE = "views/reliability.py"
CELL = re.compile(r"^(-?\d+\.\d+)\s\[(-?\d+\.\d+),\s(-?\d+\.\d+)\]$")
# the table's rows in order, as report keys (the page's row labels are for people)
METRIC_KEYS_ORDER = ("accuracy", "nll", "brier", "ece", "rmsce", "mce", "ece_mass", "rmsce_mass", "mce_mass",
                     "debiased_l2_ce", "classwise_ece_mean", "classwise_ece_sum", "smooth_ece", "auroc", "aurc")
FIVE = ["digits/ce", "digits/ls", "digits/mixup", "digits/focal", "digits/dm"]


@pytest.fixture
def app() -> AppTest:
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value("digits").run()
    assert not at.exception, at.exception
    return at


def _output_trace(fig: dict) -> dict:
    """The trace of per-bin outputs (accuracy or share per bin) of a reliability figure."""
    return next(t for t in fig["data"] if t.get("name", "").startswith("Output"))


def _cells(at: AppTest) -> dict[str, dict[str, tuple[float, float, float] | None]]:
    """The metrics table as {model column: {metric: (value, low, high) or None}}."""
    df = at.table[0].value
    out: dict[str, dict[str, tuple[float, float, float] | None]] = {}
    for col in df.columns:
        if col == "what it measures":
            continue
        out[col] = {}
        for metric, text in df[col].items():
            m = CELL.match(str(text))
            out[col][str(metric)] = tuple(float(g) for g in m.groups()) if m else None
    return out


def _check_against_report(at: AppTest, column: str, report: dict, n_bins: int) -> None:
    """Every metric cell of `column` shows `report`'s value and interval (to the table's 4 decimals)."""
    from calibviz.metrics import METRIC_KEYS

    cells = _cells(at)[column]
    labels = dict(zip(at.table[0].value.index, METRIC_KEYS_ORDER, strict=True))
    assert set(labels.values()) == set(METRIC_KEYS)
    assert report["n_bins"] == n_bins
    for label, key in labels.items():
        expected = report[key]
        lo, hi = report["intervals"][key]
        assert cells[label] is not None, (label, at.table[0].value.loc[label, column])
        value, low, high = cells[label]
        assert abs(value - expected) <= 5.01e-5, (key, value, expected)
        assert abs(low - lo) <= 5.01e-5 and abs(high - hi) <= 5.01e-5, (key, (low, high), (lo, hi))
        assert low <= high



def test_one_diagram_per_model_up_to_four(app: AppTest) -> None:
    assert not app.error, [e.value for e in app.error]
    figs = plotly_figures(app)
    assert len(figs) == len(app.sidebar.multiselect(key="models_digits").value) == 2
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert titles == ["CE teacher", "LS α=0.1"]
    for fig in figs:  # gap bars, the diagonal, the histogram beneath, interval whiskers
        names = [t.get("name", "") for t in fig["data"]]
        assert "Perfect calibration" in names and "Predictions per bin" in names
        assert any(n.startswith("Gap") for n in names)
        assert len(plotly_list(_output_trace(fig)["error_y"]["array"])) == 15
        assert fig["layout"]["yaxis2"]["title"]["text"].startswith("Count")

    # a shifted split redraws the diagrams
    app.sidebar.selectbox(key="spec_digits").set_value("digits-noise-5:test").run()
    assert not app.exception, app.exception
    shifted = plotly_figures(app)
    assert len(shifted) == 2
    assert plotly_list(_output_trace(shifted[0])["y"]) != plotly_list(_output_trace(figs[0])["y"])
    assert any("test — noise, severity 5" in c.value for c in app.caption)

    app.sidebar.multiselect(key="models_digits").set_value(FIVE).run()
    assert not app.exception, app.exception
    figs = plotly_figures(app)
    assert len(figs) == 4
    assert [f["layout"]["title"]["text"] for f in figs] == ["CE teacher", "LS α=0.1", "Mixup α=0.4", "Focal γ=3"]
    assert any("5 models are selected" in i.value and "first 4" in i.value for i in app.info)
    assert len(_cells(app)) == 4  # the table follows the diagrams


def test_bins_slider_changes_the_number_of_bars(app: AppTest) -> None:
    assert app.slider(key="reliability_bins").value == 15
    before = plotly_figures(app)
    assert [len(plotly_list(_output_trace(f)["x"])) for f in before] == [15, 15]
    app.slider(key="reliability_bins").set_value(30).run()
    assert not app.exception, app.exception
    after = plotly_figures(app)
    assert [len(plotly_list(_output_trace(f)["x"])) for f in after] == [30, 30]
    app.slider(key="reliability_bins").set_value(5).run()
    assert [len(plotly_list(_output_trace(f)["x"])) for f in plotly_figures(app)] == [5, 5]
    assert any("5 equal-width bins closed on the right (lo, hi]" in c.value for c in app.caption)


def test_equal_mass_classwise_and_smooth_views(app: AppTest) -> None:
    width = plotly_figures(app)
    assert _output_trace(width[0])["type"] == "bar"

    app.radio(key="reliability_scheme").set_value("mass").run()
    assert not app.exception, app.exception
    mass = plotly_figures(app)
    out = _output_trace(mass[0])
    assert out["type"] == "scatter" and len(plotly_list(out["x"])) == 15  # points at each bin's mean confidence
    assert plotly_list(out["x"]) != plotly_list(_output_trace(width[0])["x"])
    assert any("15 equal-mass bins" in c.value for c in app.caption)

    app.radio(key="reliability_view").set_value("classwise").run()
    assert not app.exception, app.exception
    app.selectbox(key="reliability_class").set_value(3).run()
    assert not app.exception, app.exception
    cw = plotly_figures(app)
    assert [f["layout"]["title"]["text"] for f in cw] == ["CE teacher · class '3'", "LS α=0.1 · class '3'"]
    assert "class '3'" in cw[0]["layout"]["xaxis2"]["title"]["text"]
    assert plotly_list(_output_trace(cw[0])["x"]) != plotly_list(_output_trace(mass[0])["x"])
    app.selectbox(key="reliability_class").set_value(7).run()
    assert plotly_list(_output_trace(plotly_figures(app)[0])["y"]) != plotly_list(_output_trace(cw[0])["y"])

    app.radio(key="reliability_view").set_value("smooth").run()
    assert not app.exception, app.exception
    assert app.radio(key="reliability_scheme").disabled  # no bins in the smooth view
    smooth = plotly_figures(app)
    assert len(smooth) == 2
    for fig in smooth:
        names = [t.get("name", "") for t in fig["data"]]
        assert "95% bootstrap band" in names and "Density of confidences" in names
        curve = next(t for t in fig["data"] if t.get("name", "").startswith("Smoothed accuracy"))
        assert len(plotly_list(curve["x"])) > 100
    assert smooth[0]["data"] != smooth[1]["data"]
    assert not app.error, [e.value for e in app.error]


def test_table_has_intervals_equal_to_metrics_report(app: AppTest) -> None:
    from calibviz.backend import predict
    from calibviz.report import metrics_report

    app.slider(key="reliability_bins").set_value(10).run()
    assert not app.exception, app.exception
    cells = _cells(app)
    assert list(cells) == ["CE teacher", "LS α=0.1"]
    for column in cells.values():  # every metric has an interval here (no undefined AUROC on digits)
        assert all(c is not None for c in column.values()), column
    n_boot = app.select_slider(key="reliability_boot").value
    for column, recipe in (("CE teacher", "ce"), ("LS α=0.1", "ls")):
        preds = predict(ZOO / "digits" / f"{recipe}.safetensors", "digits:test", device="cpu")
        report = metrics_report(preds, n_bins=10, n_boot=n_boot)
        _check_against_report(app, column, report, 10)
    # the equal-width ECE of 10 bins is not the 15-bin one: the table follows the slider
    app.slider(key="reliability_bins").set_value(15).run()
    assert _cells(app)["LS α=0.1"]["ECE"] != cells["LS α=0.1"]["ECE"]


def test_uploaded_predictions_bundle(real_fixtures: Path, tmp_path: Path) -> None:
    from calibviz.formats import save_bundle
    from calibviz.report import metrics_report
    from calibviz.uploads import accept_upload
    from tests.published_fixtures import fixture_to_predictions

    preds = fixture_to_predictions(real_fixtures / "markus93" / "probs_resnet110_c10_logits.csv")
    bundle = tmp_path / "resnet110_c10.npz"
    save_bundle(preds, bundle)
    model = accept_upload(bundle.name, bundle.read_bytes(), tmp_path / "uploads")
    at = open_page(PAGE)
    at.session_state["uploads"] = {model.name: model}
    at.run()
    at.sidebar.radio(key="dataset").set_value("uploaded").run()
    assert not at.exception, at.exception
    assert at.sidebar.multiselect(key="models_uploaded").value == [model.name]
    assert at.sidebar.selectbox(key="spec_uploaded").value.endswith(":all")
    assert not at.error, [e.value for e in at.error]
    figs = plotly_figures(at)
    assert len(figs) == 1 and len(plotly_list(_output_trace(figs[0])["x"])) == 15
    report = metrics_report(preds, n_bins=15, n_boot=at.select_slider(key="reliability_boot").value)
    assert abs(report["ece"] - 0.047503519) < 1e-5  # the published ECE of this model (docs/metrics.md)
    _check_against_report(at, model.title, report, 15)


def test_side_by_side_lines_up_columns_and_shares_the_count_range() -> None:
    import numpy as np

    from calibviz.metrics import Binning, reliability_bins
    from calibviz.plots.reliability import reliability_figure, side_by_side

    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.3, 0.9, 60), np.full(3000, 0.99)])  # a few bins of tens, one of thousands
    correct = rng.uniform(size=conf.size) < conf
    other = rng.uniform(0.1, 1.0, conf.size)
    figs = [reliability_figure(reliability_bins(c, correct, 15), title=t) for c, t in ((conf, "a"), (other, "b"))]
    figs = side_by_side(figs, log_counts=True)
    assert [f.layout.yaxis2.type for f in figs] == ["log", "log"]
    assert figs[0].layout.yaxis2.range == figs[1].layout.yaxis2.range
    assert 10 ** figs[0].layout.yaxis2.range[1] > 3000  # the tallest bin of either fits
    assert figs[0].layout.height == figs[1].layout.height and figs[0].layout.margin == figs[1].layout.margin
    assert all(f.layout.showlegend for f in figs)  # two columns: each keeps its legend

    mass = [reliability_figure(reliability_bins(c, correct, Binning(10, "mass"))) for c in (conf, other)]
    mass = side_by_side(mass, log_counts=True)
    assert mass[0].layout.yaxis2.type != "log"  # equal-mass counts are all alike

    four = [reliability_figure(reliability_bins(other, correct, 15), title=str(i)) for i in range(4)]
    four = side_by_side(four)
    assert [f.layout.showlegend for f in four] == [True, False, False, False]
    note = four[0].layout.annotations[0].text
    assert all(len(line) <= 28 for line in note.split("<br>")), note

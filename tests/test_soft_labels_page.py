"""AppTest tests of the Soft-labels page (views/soft_labels.py) on the shipped zoo, with small sample counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ZOO, open_page, plotly_array, plotly_figures

PAGE = "views/soft_labels.py"
N_SAMPLES = 250


def _open(n: int = N_SAMPLES) -> AppTest:
    """The app on the Soft-labels page, digits selected, with `n` mixed samples per teacher."""
    at = open_page()
    at.session_state["soft_labels_n"] = n
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    at.sidebar.radio(key="dataset").set_value("digits").run()
    assert not at.exception, at.exception
    return at


def _lambda_curves(at: AppTest) -> dict[str, list[float]]:
    """The violation-against-λ chart (the page's first chart): teacher -> y values (nan: empty λ bin)."""
    fig = plotly_figures(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("λ")
    return {t["name"]: plotly_array(t["y"]).tolist() for t in fig["data"]}


def _summary(at: AppTest) -> object:
    return at.table[0].value


@pytest.fixture
def app() -> AppTest:
    return _open()


def test_page_draws_one_violation_curve_per_teacher(app: AppTest) -> None:
    assert not app.error, [e.value for e in app.error]
    assert set(_lambda_curves(app)) == {"CE teacher", "LS α=0.1"}  # the sidebar's default models
    figs = plotly_figures(app)
    heatmaps = [f for f in figs if f["data"][0]["type"] == "heatmap" and len(f["data"]) == 1]
    assert [h["layout"]["title"]["text"] for h in heatmaps] == ["CE teacher", "LS α=0.1"]
    assert all(plotly_array(h["data"][0]["z"]).shape == (10, 10) for h in heatmaps)  # class pairs [a, b]
    gallery = [f for f in figs if any(t.get("name") == "isotonic fix" for t in f["data"])]
    assert len(gallery) == 4
    table = _summary(app)
    assert list(table["teacher"]) == ["CE teacher", "LS α=0.1"]
    assert (table["samples"].astype(int) == N_SAMPLES).all()
    for col in ("any violation", "violated known pairs", "a or b in top-2"):
        v = table[col].astype(float)
        assert ((v >= 0) & (v <= 1)).all(), col
    assert (table["violated known pairs"].astype(float) <= table["any violation"].astype(float)).all()

    # the teachers follow the sidebar's model selection: three models, three curves and three table rows
    app.sidebar.multiselect(key="models_digits").set_value(["digits/ce", "digits/ls", "digits/mixup"]).run()
    assert not app.exception, app.exception
    assert set(_lambda_curves(app)) == {"CE teacher", "LS α=0.1", "Mixup α=0.4"}
    assert len(_summary(app)) == 3
    # and the page-level picker narrows it down
    app.multiselect(key="soft_labels_teachers_digits").set_value(["digits/mixup"]).run()
    assert set(_lambda_curves(app)) == {"Mixup α=0.4"}
    app.multiselect(key="soft_labels_teachers_digits").set_value([]).run()
    assert any("at least one teacher" in w.value for w in app.warning)


def test_augmentation_and_alpha_change_the_data(app: AppTest) -> None:
    mixup = _lambda_curves(app)
    mixup_rates = _summary(app)["any violation"].astype(float).tolist()
    app.radio(key="soft_labels_aug").set_value("cutmix").run()
    assert not app.exception, app.exception
    cutmix = _lambda_curves(app)
    assert set(cutmix) == set(mixup) and cutmix != mixup
    assert _summary(app)["any violation"].astype(float).tolist() != mixup_rates
    app.select_slider(key="soft_labels_alpha").set_value(0.2).run()
    assert not app.exception, app.exception
    assert _lambda_curves(app) != cutmix
    # the statistic picker switches both the λ chart and the heatmaps to Kendall τ in [-1, 1]
    app.selectbox(key="soft_labels_metric").set_value("kendall_tau").run()
    fig = plotly_figures(app)[0]
    assert fig["layout"]["yaxis"]["range"] == [-1.0, 1.0]
    y = np.concatenate([plotly_array(t["y"]) for t in fig["data"]])
    assert np.all((y[np.isfinite(y)] >= -1.0) & (y[np.isfinite(y)] <= 1.0)) and np.isfinite(y).any()


def test_temperature_moves_the_fix_but_not_the_order_counts(app: AppTest) -> None:
    before = _summary(app)
    assert before["T"].astype(float).tolist() == [1.0, 1.0]
    app.radio(key="soft_labels_temp").set_value("ts").run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    after = _summary(app)
    t = after["T"].astype(float)
    assert (t > 0).all() and (t != 1.0).all()  # one fitted temperature per teacher
    for col in ("any violation", "violated known pairs", "mean Kendall τ", "a or b in top-2"):
        assert after[col].astype(float).tolist() == before[col].astype(float).tolist(), col
    kl = "KL(p ‖ p′) of the fix"
    assert after[kl].astype(float).tolist() != before[kl].astype(float).tolist()


def test_mnist1d_gallery_shows_signals() -> None:
    at = _open()
    at.sidebar.radio(key="dataset").set_value("mnist1d").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert set(_lambda_curves(at)) == {"CE teacher", "LS α=0.1"}
    gallery = [f for f in plotly_figures(at) if any(t.get("name") == "isotonic fix" for t in f["data"])]
    assert gallery
    lines = [t for t in gallery[0]["data"] if t["type"] == "scatter"]
    assert len(lines) == 3 and len(plotly_array(lines[0]["y"])) == 40  # the mixed signal and its two parents


def test_a_broken_teacher_is_an_error_in_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calibviz.formats import read_card, save_checkpoint
    from calibviz.models import build_model

    (tmp_path / "digits").mkdir()
    shutil.copy(ZOO / "digits" / "ce.safetensors", tmp_path / "digits" / "ce.safetensors")
    # a valid LS card over the tensors of another architecture: listed by the sidebar, fails when run
    save_checkpoint(tmp_path / "digits" / "ls.safetensors", build_model("cnn_small"),
                    read_card(ZOO / "digits" / "ls.safetensors"))
    monkeypatch.setenv("CALIBVIZ_ZOO", str(tmp_path))
    at = _open()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("LS α=0.1: FormatError") and "ls.safetensors" in errors[0], errors
    assert set(_lambda_curves(at)) == {"CE teacher"}  # the working teacher is still shown


def test_page_settings_survive_a_visit_to_another_page(app: AppTest) -> None:
    app.radio(key="soft_labels_aug").set_value("cutmix").run()
    app.multiselect(key="soft_labels_teachers_digits").set_value(["digits/ls"]).run()
    curves = _lambda_curves(app)
    app.switch_page("views/overview.py").run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.radio(key="soft_labels_aug").value == "cutmix"
    assert app.multiselect(key="soft_labels_teachers_digits").value == ["digits/ls"]
    assert _lambda_curves(app) == curves

"""AppTest tests of the Shift page (views/shift.py) on the shipped digits zoo (the sidebar's default CE and LS models):
the curves figure has one line per model, metric, corruption and calibration; the widgets redraw it; the table shows
the library's numbers; a predictions bundle is left out with a note, and rows of a bundle get a warning."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ZOO, open_page, plotly_figures, plotly_list

PAGE = "views/shift.py"


@pytest.fixture(scope="module")
def app() -> AppTest:
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value("digits").run()
    assert not at.exception, at.exception
    return at


def _curves_figure(at: AppTest) -> dict:
    return next(f for f in plotly_figures(at) if any("severity" in (t.get("hovertemplate") or "") for t in f["data"]))


def _diagrams(at: AppTest) -> list[dict]:
    return [f for f in plotly_figures(at) if any(t.get("name") == "Perfect calibration" for t in f["data"])]


def test_the_page_draws_every_curve_and_the_diagrams(app: AppTest) -> None:
    assert not app.error, [e.value for e in app.error]
    fig = _curves_figure(app)
    names = {t["name"] for t in fig["data"]}
    assert names == {"CE teacher · before TS", "LS α=0.1 · before TS"} | {
        n for n in names if "after TS (T = " in n} and len(names) == 4
    # 2 models x 3 corruptions x (accuracy once: TS keeps it; ECE and NLL before and after)
    assert len(fig["data"]) == 2 * 3 * (1 + 2 + 2)
    dashed = [t for t in fig["data"] if t["line"]["dash"] == "dash"]
    assert len(dashed) == 2 * 3 * 2
    assert all(len(plotly_list(t["y"])) == 6 for t in fig["data"])  # severity 0 (clean) to 5
    assert all(len(plotly_list(t["error_y"]["array"])) == 6 for t in fig["data"])
    assert len(_diagrams(app)) == 2  # one row of four diagrams per model
    texts = " ".join(m.value for m in app.markdown)
    assert "Ovadia et al. (2019)" in texts and "ECE of **CE teacher**" in texts


def test_widgets_redraw_the_figures(app: AppTest) -> None:
    before = _curves_figure(app)
    app.button_group(key="shift_ts").set_value("before").run()
    assert not app.exception, app.exception
    fig = _curves_figure(app)
    assert len(fig["data"]) == 2 * 3 * 3 and all(t["line"]["dash"] == "solid" for t in fig["data"])

    app.button_group(key="shift_corruptions").set_value(["blur"]).run()
    app.button_group(key="shift_metrics").set_value(["ece"]).run()
    assert not app.exception, app.exception
    fig = _curves_figure(app)
    assert len(fig["data"]) == 2 and "xaxis2" not in fig["layout"]
    ece_blur = [plotly_list(t["y"]) for t in fig["data"]]
    # the same lines as in the full grid's ECE row, blur column (cell 5: row 2, column 2), before TS
    full = [plotly_list(t["y"]) for t in before["data"] if t["xaxis"] == "x5" and t["line"]["dash"] == "solid"]
    assert ece_blur == full and len(full) == 2

    diagrams = _diagrams(app)
    app.select_slider(key="shift_severity").set_value(2).run()
    assert not app.exception, app.exception
    moved = _diagrams(app)
    assert [a["annotations"][1]["text"] for a in (f["layout"] for f in moved)] != [
        a["annotations"][1]["text"] for a in (f["layout"] for f in diagrams)]
    assert "noise 2" in moved[0]["layout"]["annotations"][1]["text"]
    app.button_group(key="shift_ts").set_value("both").run()
    app.button_group(key="shift_corruptions").set_value(["noise", "blur", "shift"]).run()
    app.button_group(key="shift_metrics").set_value(["accuracy", "ece", "nll"]).run()


def test_the_table_shows_the_librarys_numbers(app: AppTest) -> None:
    from calibviz.backend import predict
    from calibviz.shift import ShiftParams, shift_curves, shift_specs

    specs = shift_specs("digits:test", ["shift"])
    ckpt = ZOO / "digits" / "ls.safetensors"
    p = {str(s): predict(ckpt, str(s), device="cpu") for s in specs.all}
    c = shift_curves(p[str(specs.fit)], p[str(specs.clean)], {(s.corruption, s.severity): p[str(s)]
                                                              for s in specs.shifted}, ShiftParams())
    df = app.dataframe[1].value  # the second tab: LS
    cell = df.loc[("shift", 4), "ECE after TS"]
    want = c.point("shift", 4).after.ece
    assert cell == f"{want.value:.3f}\u00a0[{want.low:.3f},\u00a0{want.high:.3f}]"
    assert df.loc[("clean", 0), "accuracy"].startswith(f"{c.clean.before.accuracy.value:.3f}")
    assert any(f"T = {c.temperature:.4g}" in cap.value for cap in app.caption)


def test_a_bundle_is_left_out_and_bundle_rows_get_a_warning(tmp_path: object) -> None:
    from calibviz.formats import save_bundle
    from calibviz.predictions import Predictions
    from calibviz.uploads import accept_upload

    rng = np.random.default_rng(0)
    mine = tmp_path / "mine.npz"
    save_bundle(Predictions(labels=np.arange(60) % 3, logits=rng.normal(size=(60, 3)).astype(np.float32),
                            meta={"name": "mine", "dataset": "mine"}), mine)
    digits = tmp_path / "digits_bundle.npz"
    save_bundle(Predictions(labels=np.arange(60) % 10, logits=rng.normal(size=(60, 10)).astype(np.float32),
                            meta={"name": "on digits", "dataset": "digits"}), digits)
    models = [accept_upload(f.name, f.read_bytes(), tmp_path / "uploads") for f in (mine, digits)]
    at = open_page(PAGE)
    at.session_state["uploads"] = {m.name: m for m in models}
    at.run()
    at.sidebar.radio(key="dataset").set_value("uploaded").run()
    assert not at.exception, at.exception
    assert any("needs image or signal inputs" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not plotly_figures(at)

    at.sidebar.radio(key="dataset").set_value("digits").run()
    bundle = next(m.name for m in models if m.dataset == "digits")
    at.sidebar.multiselect(key="models_digits").set_value(["digits/ce", bundle]).run()
    assert not at.exception, at.exception
    assert any("no shifted copies" in i.value for i in at.info), [i.value for i in at.info]
    fig = _curves_figure(at)
    assert {t["name"].split(" · ")[0] for t in fig["data"]} == {"CE teacher"}


def test_the_users_own_image_model(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped example config (a TinyResNet on an ImageFolder of PNGs): the image corruptions, jpeg and contrast
    included, are offered and drawn."""
    from tests.conftest import build_example_config

    monkeypatch.setenv("CALIBVIZ_CONFIG", str(build_example_config(tmp_path, images_per_class=4, steps=10)))
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value("digits_png").run()
    at.sidebar.multiselect(key="models_digits_png").set_value(["config/tiny_resnet"]).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.button_group(key="shift_corruptions").options == ["noise", "blur", "shift", "jpeg", "contrast"]
    fig = _curves_figure(at)
    assert len(fig["data"]) == 5 * (1 + 2 + 2) and "xaxis15" in fig["layout"]
    assert len(_diagrams(at)) == 1

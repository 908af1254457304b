"""AppTest tests of the app shell and the Overview page (views/overview.py), on the shipped zoo."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO, open_page, plotly_figures


@pytest.fixture
def app() -> AppTest:
    return open_page("views/overview.py")


def test_sidebar_offers_both_datasets_models_splits_and_device(app: AppTest) -> None:
    assert set(app.sidebar.radio(key="dataset").options) == {"digits", "mnist1d"}
    ms = app.sidebar.multiselect(key="models_" + app.sidebar.radio(key="dataset").value)
    assert len(ms.options) >= 10 and len(ms.value) == 2
    spec = app.sidebar.selectbox(key="spec_" + app.sidebar.radio(key="dataset").value)
    assert spec.value.endswith(":test")
    assert any("noise, severity 3" in o for o in spec.options) and any("blur" in o for o in spec.options)
    assert any("Device:" in c.value for c in app.sidebar.caption)


def test_overview_table_and_chart_follow_the_selection(app: AppTest) -> None:
    app.sidebar.radio(key="dataset").set_value("digits").run()
    key = "models_digits"
    assert "CE teacher" in app.sidebar.multiselect(key=key).options  # options show titles
    app.sidebar.multiselect(key=key).set_value(["digits/ce", "digits/mixup", "digits/dm"]).run()
    assert not app.exception, app.exception
    table = app.table[0].value
    assert len(table) == 3
    assert set(table["recipe"]) == {"ce", "mixup", "dm"}
    acc = table["accuracy"].astype(float)
    assert ((acc > 0.1) & (acc <= 1.0)).all()
    figs = plotly_figures(app)
    assert figs and len(figs[0]["data"][0]["x"]) == 3

    # the shifted split changes the numbers
    before = table["ece"].astype(float).tolist()
    app.sidebar.selectbox(key="spec_digits").set_value("digits-noise-5:test").run()
    after = app.table[0].value["ece"].astype(float).tolist()
    assert after != before


def test_empty_selection_warns_instead_of_failing(app: AppTest) -> None:
    ds = app.sidebar.radio(key="dataset").value
    app.sidebar.multiselect(key=f"models_{ds}").set_value([]).run()
    assert not app.exception
    assert any("Select at least one model" in w.value for w in app.warning)


def test_every_page_runs_without_exception(app: AppTest) -> None:
    from app import PAGES

    for path, _title, _icon in PAGES:
        if (REPO / path).is_file():
            app.switch_page(path).run()
            assert not app.exception, (path, app.exception)
            assert not app.error, (path, [e.value for e in app.error])


def test_page_settings_survive_a_visit_to_another_page(app: AppTest) -> None:
    app.switch_page("views/reliability.py").run()
    app.slider(key="reliability_bins").set_value(30).run()
    app.switch_page("views/overview.py").run()
    assert not app.exception
    app.switch_page("views/reliability.py").run()
    assert app.slider(key="reliability_bins").value == 30


def test_an_upload_in_the_url_comes_back_after_a_reload(tmp_path: object) -> None:
    """A reload starts a new session with only the URL: its `upload` keys bring the uploads back, validated again;
    a session whose URL does not name them does not see them."""
    import numpy as np

    from calibviz.diskcache import cache_dir
    from calibviz.formats import save_bundle
    from calibviz.predictions import Predictions
    from calibviz.uploads import accept_upload, upload_key

    rng = np.random.default_rng(0)
    save_bundle(Predictions(labels=np.arange(40) % 4, logits=rng.normal(size=(40, 4)).astype(np.float32),
                            meta={"name": "reloaded", "dataset": "mine"}), tmp_path / "b.npz")
    m = accept_upload("b.npz", (tmp_path / "b.npz").read_bytes(), cache_dir() / "uploads")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params["upload"] = [upload_key(m), "0123456789abcdef-gone.npz"]
    at.run()
    assert not at.exception, at.exception
    assert "uploaded" in at.sidebar.radio(key="dataset").options
    assert any("gone.npz is no longer on this server" in w.value for w in at.sidebar.warning)  # said once
    at.sidebar.radio(key="dataset").set_value("uploaded").run()
    assert "reloaded (uploaded bundle)" in at.sidebar.multiselect(key="models_uploaded").options
    fresh = open_page("views/overview.py")  # another browser session, without the link
    assert "uploaded" not in fresh.sidebar.radio(key="dataset").options

"""AppTest tests of the Logits page (views/logits.py) on the shipped zoo, plus the small pure helpers it added
(`logit_stats.spread_changes`, `plots.logits.spread_figure`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from calibviz.logit_stats import logit_stats_from_arrays, spread_changes, summarize_statistic
from calibviz.plots.logits import spread_figure
from tests.conftest import ZOO, open_page, plotly_array, plotly_figures

PAGE = "views/logits.py"
MASK = 0.3


def _open(dataset: str = "digits") -> AppTest:
    """The app on the Logits page with `dataset` chosen in the sidebar."""
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value(dataset).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _curves(at: AppTest) -> dict[str, dict]:
    """The density chart (the page's first chart): legend name -> its KDE line trace."""
    fig = plotly_figures(at)[0]
    return {t["name"]: t for t in fig["data"] if t["type"] == "scatter"}


def _x_title(at: AppTest) -> str:
    return plotly_figures(at)[0]["layout"]["xaxis"]["title"]["text"]


def _table(at: AppTest) -> object:
    return at.dataframe[0].value


@pytest.fixture
def app() -> AppTest:
    return _open()


def test_one_curve_per_model_and_quick_compare(app: AppTest) -> None:
    assert set(_curves(app)) == {"CE teacher (n=500)", "LS α=0.1 (n=500)"}  # the sidebar's default models
    assert all(t["line"]["dash"] == "solid" for t in _curves(app).values())
    spread = plotly_figures(app)[1]
    assert [list(t["y"]) for t in spread["data"]] == [["CE teacher", "LS α=0.1"]] * 2  # std and IQR bars
    assert any("Does this zoo show the distilled-data effect?" in m.value for m in app.markdown)  # the live caption

    # the page follows the sidebar: three models, three curves
    app.sidebar.multiselect(key="models_digits").set_value(["digits/ce", "digits/mixup", "digits/focal"]).run()
    assert not app.exception, app.exception
    assert len(_curves(app)) == 3
    assert app.radio(key="logits_quick").value == "sidebar"
    # quick compare sets the page's picker: full-data CE against the distilled-data models, then CE against LS
    app.radio(key="logits_quick").set_value("distilled").run()
    assert app.multiselect(key="logits_models_digits").value == ["digits/ce", "digits/dm", "digits/mdt"]
    assert [n.split(" (n=")[0] for n in _curves(app)] == [
        "CE teacher", "Distilled data (DM, 10/class)", "Distilled data (DM + MDT mask 0.25)"]
    app.radio(key="logits_quick").set_value("ls").run()
    assert [n.split(" (n=")[0] for n in _curves(app)] == ["CE teacher", "LS α=0.1"]
    # editing the picker by hand makes it a custom choice; the sidebar keeps its own selection
    app.multiselect(key="logits_models_digits").set_value(["digits/ls"]).run()
    assert app.radio(key="logits_quick").value == "custom"
    assert [n.split(" (n=")[0] for n in _curves(app)] == ["LS α=0.1"]
    assert app.sidebar.multiselect(key="models_digits").value == ["digits/ce", "digits/mixup", "digits/focal"]
    app.multiselect(key="logits_models_digits").set_value([]).run()
    assert not app.exception, app.exception
    assert any("Select at least one model" in w.value for w in app.warning)


def test_statistic_subset_and_style_change_the_figure(app: AppTest) -> None:
    before = {k: plotly_array(t["x"]) for k, t in _curves(app).items()}
    assert _x_title(app) == "max logit"
    app.selectbox(key="logits_stat").set_value("margin").run()
    assert not app.exception, app.exception
    after = {k: plotly_array(t["x"]) for k, t in _curves(app).items()}
    assert set(after) == set(before)
    assert _x_title(app).startswith("top-1")
    assert not np.allclose(after["CE teacher (n=500)"], before["CE teacher (n=500)"])
    app.selectbox(key="logits_stat").set_value("max_prob").run()
    x = plotly_array(next(iter(_curves(app).values()))["x"])
    assert x.min() > -0.2 and x.max() < 1.2  # the shared grid spans probabilities, padded 5 %
    # wrong examples only: a handful per model
    app.radio(key="logits_subset").set_value("wrong").run()
    assert not app.exception, app.exception
    ns = [int(k.split("n=")[1].rstrip(")")) for k in _curves(app)]
    assert all(0 < n < 50 for n in ns), ns
    app.radio(key="logits_style").set_value("hist").run()
    fig = plotly_figures(app)[0]
    assert {t["type"] for t in fig["data"]} == {"bar"}


def test_mask_slider_adds_dashed_overlays_in_the_base_colour(app: AppTest) -> None:
    assert app.slider(key="logits_mask").value == 0.0
    app.slider(key="logits_mask").set_value(MASK).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    curves = _curves(app)
    assert len(curves) == 4
    for base in ("CE teacher", "LS α=0.1"):
        solid, dashed = curves[f"{base} (n=500)"], curves[f"{base} · 30% masked (n=500)"]
        assert solid["line"]["dash"] == "solid" and dashed["line"]["dash"] == "dash"
        assert solid["line"]["color"] == dashed["line"]["color"]
        assert not np.allclose(plotly_array(solid["y"]), plotly_array(dashed["y"]))
    table = _table(app)
    assert sorted(set(table["inputs"])) == ["30% masked", "clean"]
    assert len(table) == 2 * 2 * 3  # models × (clean, masked) × (all, correct, wrong)


def _expected(logits: np.ndarray, labels: np.ndarray, statistic: str) -> dict[str, dict[str, float]]:
    """Per subset: n, mean, median, std, IQR of a statistic, straight from numpy."""
    z = np.sort(logits.astype(np.float64), axis=1)
    values = {"max_logit": z[:, -1], "margin": z[:, -1] - z[:, -2]}[statistic]
    correct = logits.argmax(axis=1) == labels
    out = {}
    for subset, mask in (("all", np.ones_like(correct)), ("correct", correct), ("wrong", ~correct)):
        v = values[mask]
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        out[subset] = {"n": v.size, "mean": v.mean(), "median": q50, "std": np.std(v), "IQR": q75 - q25}
    return out


@pytest.mark.parametrize("statistic", ["max_logit", "margin"])
def test_table_numbers_equal_numpy_on_the_same_predictions(app: AppTest, statistic: str) -> None:
    from calibviz.backend import predict

    app.radio(key="logits_quick").set_value("distilled").run()
    app.selectbox(key="logits_stat").set_value(statistic).run()
    app.slider(key="logits_mask").set_value(MASK).run()
    assert not app.exception, app.exception
    table = _table(app)
    titles = {"ce": "CE teacher", "dm": "Distilled data (DM, 10/class)", "mdt": "Distilled data (DM + MDT mask 0.25)"}
    checked = 0
    for recipe, title in titles.items():
        for inputs, r in (("clean", 0.0), ("30% masked", MASK)):
            p = predict(ZOO / "digits" / f"{recipe}.safetensors", "digits:test", mask_ratio=r)
            for subset, want in _expected(p.logits, p.labels, statistic).items():
                row = table[(table["model"] == title) & (table["inputs"] == inputs) & (table["examples"] == subset)]
                assert len(row) == 1, (title, inputs, subset)
                got = row.iloc[0]
                assert int(got["n"]) == want["n"]
                for col in ("mean", "median", "std", "IQR"):
                    assert float(got[col]) == pytest.approx(want[col], rel=1e-9, abs=1e-9), (title, inputs, subset, col)
                checked += 1
    assert checked == 18


def test_uploaded_bundle_gets_a_note_instead_of_a_masked_overlay(app: AppTest, tmp_path: Path) -> None:
    from calibviz.backend import predict
    from calibviz.formats import save_bundle
    from calibviz.uploads import accept_upload

    p = predict(ZOO / "digits" / "ls.safetensors", "digits:test")
    probs = p.probabilities()
    bundle = dataclasses.replace(p, logits=None, probs=probs, features=None, head_weight=None, head_bias=None,
                                 meta={**p.meta, "name": "my-run"})
    save_bundle(bundle, tmp_path / "my-run.npz")
    m = accept_upload("my-run.npz", (tmp_path / "my-run.npz").read_bytes(), tmp_path / "uploads")
    assert m.kind == "bundle" and m.dataset == "digits"
    app.session_state["uploads"] = {m.name: m}  # as the sidebar's uploader stores an accepted file
    app.run()
    app.sidebar.multiselect(key="models_digits").set_value(["digits/ce", m.name]).run()
    assert not app.exception, app.exception
    assert {k.split(" (n=")[0] for k in _curves(app)} == {"CE teacher", m.title}
    app.slider(key="logits_mask").set_value(MASK).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    notes = [i.value for i in app.info if "No masked overlay" in i.value]
    assert len(notes) == 1 and m.title in notes[0] and "bundle" in notes[0]
    assert {k.split(" (n=")[0] for k in _curves(app)} == {"CE teacher", m.title, "CE teacher · 30% masked"}
    # the bundle's own numbers are those of its probabilities (max logit = log max-probability)
    table = _table(app)
    row = table[(table["model"] == m.title) & (table["examples"] == "all")].iloc[0]
    assert float(row["median"]) == pytest.approx(float(np.median(np.log(probs.max(axis=1)))), rel=1e-5)


def test_page_settings_survive_a_visit_to_another_page(app: AppTest) -> None:
    app.radio(key="logits_quick").set_value("distilled").run()
    app.selectbox(key="logits_stat").set_value("entropy").run()
    curves = {k: plotly_array(t["y"]).tolist() for k, t in _curves(app).items()}
    app.switch_page("views/overview.py").run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="logits_stat").value == "entropy"
    assert app.radio(key="logits_quick").value == "distilled"
    assert {k: plotly_array(t["y"]).tolist() for k, t in _curves(app).items()} == curves


def test_spread_changes_verdicts_and_spread_figure() -> None:
    rng = np.random.default_rng(0)
    n, c = 4000, 5

    def model(scale: float) -> object:
        z = rng.normal(0, 1, (n, c))
        z[:, 0] += scale * rng.normal(0, 1, n) + 5  # the max logit's spread grows with scale
        return logit_stats_from_arrays(z, np.zeros(n, dtype=int))

    stats = {"ref": model(2.0), "narrow": model(0.5), "same": model(2.0), "wide": model(6.0)}
    d = summarize_statistic(stats, "max_logit")
    changes = {ch.model: ch for ch in spread_changes(d, "ref")}
    assert set(changes) == {"narrow", "same", "wide"}
    assert changes["narrow"].verdict == "more concentrated" and changes["narrow"].std_change < -0.3
    assert changes["same"].verdict == "about the same"
    assert changes["wide"].verdict == "more spread out"
    ref = d.by_model["ref"]["all"]
    assert changes["narrow"].std_change == pytest.approx(d.by_model["narrow"]["all"].std / ref.std - 1)
    assert changes["narrow"].accuracy == pytest.approx(d.by_model["narrow"]["correct"].n / n)
    with pytest.raises(ValueError, match="reference"):
        spread_changes(d, "nope")

    fig = spread_figure(d, "all", overlays={"same": "ref"})
    std_bars, iqr_bars = fig.data
    assert list(std_bars.y) == list(d.by_model)
    np.testing.assert_allclose(std_bars.x, [d.by_model[k]["all"].std for k in d.by_model])
    np.testing.assert_allclose(iqr_bars.x, [d.by_model[k]["all"].iqr for k in d.by_model])
    colors = list(std_bars.marker.color)
    assert colors[0] == colors[2]  # an overlay takes its base model's colour
    assert list(std_bars.marker.pattern.shape) == ["", "", "/", ""]

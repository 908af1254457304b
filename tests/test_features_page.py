"""AppTest tests of the Features page (views/features.py) on the shipped digits zoo. PCA only, except one test that
runs the UMAP branch with a stand-in for umap-learn (no numba) and then reads the embedding back from the disk cache.
Also the small library helpers the page added to calibviz.features."""

from __future__ import annotations

import dataclasses
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from calibviz import features as F
from calibviz.backend import predict
from calibviz.predictions import Predictions
from tests.conftest import ZOO, open_page, plotly_array, plotly_figures

PAGE = "views/features.py"
CE, LS = "CE teacher", "LS α=0.1"


def _open() -> AppTest:
    """The app on the Features page with digits selected (the sidebar's default models: CE and LS)."""
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value("digits").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture
def app() -> AppTest:
    return _open()


def _title(fig: dict) -> str:
    t = fig["layout"].get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


def _embeddings(at: AppTest) -> dict[str, dict]:
    """Embedding scatters by model title."""
    return {_title(f): f for f in plotly_figures(at)
            if f["data"] and all(t["type"] == "scattergl" for t in f["data"])
            and f["layout"]["xaxis"]["title"]["text"].startswith(("PC1", "UMAP"))}


def _projection(at: AppTest) -> dict:
    figs = [f for f in plotly_figures(at) if any(t.get("name") == "templates" for t in f["data"])]
    assert len(figs) == 1
    return figs[0]


def _cka(at: AppTest) -> dict:
    figs = [f for f in plotly_figures(at) if len(f["data"]) == 1 and f["data"][0]["type"] == "heatmap"]
    assert len(figs) == 1
    return figs[0]


def _table(at: AppTest, first_col: str) -> object:
    """The st.table whose columns include `first_col`."""
    tables = [t.value for t in at.table if first_col in t.value.columns]
    assert len(tables) == 1, [list(t.value.columns) for t in at.table]
    return tables[0]


def _points(fig: dict) -> tuple[np.ndarray, np.ndarray]:
    """All (x, y) and customdata rows of an embedding figure, over its traces."""
    xy = np.concatenate([np.stack([plotly_array(t["x"]), plotly_array(t["y"])], axis=1) for t in fig["data"]])
    cd = np.concatenate([plotly_array(t["customdata"]).reshape(-1, 4) for t in fig["data"]])
    return xy, cd


# ---------------------------------------------------------------------------------------------------- the page


def test_pca_projection_r2_and_cka_on_the_zoo(app: AppTest) -> None:
    emb = _embeddings(app)
    assert set(emb) == {CE, LS}
    for title, fig in emb.items():
        assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC1 (")
        assert all(t["x"]["dtype"] == "f4" for t in fig["data"]), title  # WebGL with float32 arrays
        xy, cd = _points(fig)
        assert xy.shape == (500, 2)  # digits:test has 500 examples, fewer than the 5,000 sample: all shown
        p = predict(ZOO / "digits" / f"{'ce' if title == CE else 'ls'}.safetensors", "digits:test")
        ids = cd[:, 0].astype(np.int64)
        assert sorted(ids.tolist()) == sorted(p.sample_id.tolist())
        # the hover data are the model's own label, prediction and confidence of that sample
        row = {int(s): i for i, s in enumerate(p.sample_id)}
        rows = np.array([row[int(s)] for s in ids])
        probs = p.probabilities()[rows]
        np.testing.assert_array_equal(cd[:, 1], p.labels[rows])
        np.testing.assert_array_equal(cd[:, 2], probs.argmax(1))
        np.testing.assert_allclose(cd[:, 3], probs.max(1), rtol=1e-6)
        # and each point sits at its own PCA coordinates (PCA fitted on all rows of the split)
        np.testing.assert_allclose(xy, F.pca(p.features, q=2)[0][rows], rtol=1e-5, atol=1e-4)

    proj = _projection(app)
    titles = [a["text"] for a in proj["layout"]["annotations"]]
    assert titles == [f"{CE} · train", f"{LS} · train", f"{CE} · test", f"{LS} · test"]
    classes = {t["name"] for t in proj["data"] if t["type"] == "scattergl"}
    assert classes == {"0", "1", "2"}

    # R² equals calibviz.class_separation recomputed on the same predictions (train and test)
    import calibviz

    r2 = _table(app, "R² train")
    assert list(r2["model"]) == [CE, LS]
    for title, recipe in ((CE, "ce"), (LS, "ls")):
        got = r2[r2["model"] == title].iloc[0]
        for split, col in (("train", "R² train"), ("test", "R² test")):
            p = predict(ZOO / "digits" / f"{recipe}.safetensors", f"digits:{split}")
            want = calibviz.class_separation(p.features, p.labels)
            assert float(got[col]) == pytest.approx(want, rel=1e-12), (title, split)
    # the live story quotes those numbers and says whether they agree with Müller et al.
    story = [m.value for m in app.markdown if "CE → LS" in m.value]
    assert len(story) == 1
    assert f"{float(r2.iloc[0]['R² train']):.3f} → {float(r2.iloc[1]['R² train']):.3f}" in story[0]
    ce_r2, ls_r2 = r2.iloc[0][["R² train", "R² test"]].astype(float), r2.iloc[1][["R² train", "R² test"]].astype(float)
    expected = "this agrees" if (ls_r2.values > ce_r2.values).all() else "not"
    assert expected in story[0]

    # CKA: ones on the diagonal, symmetric, off-diagonal = linear_cka of the two models' test features
    cka = _cka(app)
    z = plotly_array(cka["data"][0]["z"]).reshape(2, 2)
    np.testing.assert_allclose(np.diag(z), 1.0, rtol=1e-9)
    assert z[0, 1] == pytest.approx(z[1, 0])
    a = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    b = predict(ZOO / "digits" / "ls.safetensors", "digits:test")
    assert z[0, 1] == pytest.approx(calibviz.linear_cka(a.features, b.features), rel=1e-9)
    assert 0.0 < z[0, 1] < 1.0


def test_colouring_switches_marker_colours(app: AppTest) -> None:
    by_class = _embeddings(app)[CE]
    assert [t["name"] for t in by_class["data"]] == [str(k) for k in range(10)]
    assert len({t["marker"]["color"] for t in by_class["data"]}) == 10  # one colour per class

    app.radio(key="features_color").set_value("correctness").run()
    assert not app.exception, app.exception
    fig = _embeddings(app)[CE]
    names = [t["name"] for t in fig["data"]]
    assert len(names) == 2 and names[0].startswith("correct (") and names[1].startswith("wrong (")
    assert fig["data"][0]["marker"]["color"] != fig["data"][1]["marker"]["color"]
    p = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    n_wrong = int((p.probabilities().argmax(1) != p.labels).sum())
    assert names[1] == f"wrong ({n_wrong})" and len(plotly_array(fig["data"][1]["x"])) == n_wrong

    app.radio(key="features_color").set_value("confidence").run()
    fig = _embeddings(app)[CE]
    assert len(fig["data"]) == 1
    colors = plotly_array(fig["data"][0]["marker"]["color"])
    _, cd = _points(fig)
    np.testing.assert_allclose(colors, cd[:, 3])  # each point coloured by its own confidence
    assert fig["data"][0]["marker"]["colorscale"] and colors.min() < 0.9 <= colors.max() <= 1.0


def test_class_triple_changes_the_projection(app: AppTest) -> None:
    before = _projection(app)
    spread_before = _table(app, "spread, train")
    app.selectbox(key="features_class_digits_2").set_value(7).run()
    assert not app.exception, app.exception
    after = _projection(app)
    assert {t["name"] for t in after["data"] if t["type"] == "scattergl"} == {"0", "1", "7"}
    tri = [t for t in after["data"] if t["name"] == "templates"]
    tri_before = [t for t in before["data"] if t["name"] == "templates"]
    assert len(tri) == 4  # one triangle per panel: 2 models x (train, test)
    assert not np.allclose(plotly_array(tri[0]["x"]), plotly_array(tri_before[0]["x"]))
    # the projected points are those of the new triple: recompute one panel with the library
    p = predict(ZOO / "digits" / "ce.safetensors", "digits:train")
    want = F.template_projection_for(p, (0, 1, 7))
    got = next(t for t in after["data"] if t["type"] == "scattergl" and t["name"] == "7")  # first panel: CE · train
    np.testing.assert_allclose(plotly_array(got["x"]), want.coords[want.labels == 7, 0], rtol=1e-5)
    spread_after = _table(app, "spread, train")
    assert not np.allclose(spread_after["spread, train"].astype(float), spread_before["spread, train"].astype(float))

    # two equal classes: a warning instead of a projection; the rest of the page still draws
    app.selectbox(key="features_class_digits_2").set_value(1).run()
    assert not app.exception, app.exception
    assert any("three different classes" in w.value for w in app.warning)
    assert not [f for f in plotly_figures(app) if any(t.get("name") == "templates" for t in f["data"])]
    assert set(_embeddings(app)) == {CE, LS}


def test_quick_compare_ls_teacher_and_students(app: AppTest) -> None:
    app.selectbox(key="features_compare").set_value("ls_students").run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    titles = ["LS α=0.1", "KD student of LS, T=1", "KD student of LS, T=4"]
    emb = _embeddings(app)
    assert set(emb) == set(titles), set(emb)
    r2 = _table(app, "R² train")
    assert list(r2["model"]) == titles
    story = [m.value for m in app.markdown if "T=1 → T=4" in m.value]
    assert len(story) == 1
    t1, t4 = r2.iloc[1], r2.iloc[2]
    assert f"{float(t1['R² train']):.3f} → {float(t4['R² train']):.3f} on train" in story[0]
    drops = [float(t4[c]) < float(t1[c]) for c in ("R² train", "R² test")]
    assert ("this agrees" in story[0]) == all(drops)  # the verdict follows the numbers, whichever way they go
    z = plotly_array(_cka(app)["data"][0]["z"]).reshape(3, 3)
    np.testing.assert_allclose(np.diag(z), 1.0, rtol=1e-9)
    np.testing.assert_allclose(z, z.T)
    cka_caption = [c.value for c in app.caption if "CKA to it" in c.value]
    assert len(cka_caption) == 1
    assert f"**{z[0, 1]:.3f}** at T=1, **{z[0, 2]:.3f}** at T=4" in cka_caption[0]


def test_sample_size_and_settings_survive_another_page() -> None:
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value("mnist1d").run()
    assert not at.exception, at.exception
    fig = _embeddings(at)[CE]
    xy, cd = _points(fig)
    assert xy.shape == (5000, 2)  # the default stratified sample of mnist1d:test's 10,000 rows
    labels = cd[:, 1].astype(int)
    p = predict(ZOO / "mnist1d" / "ce.safetensors", "mnist1d:test")
    want = np.bincount(p.labels, minlength=10) / p.n
    np.testing.assert_allclose(np.bincount(labels, minlength=10) / 5000, want, atol=1e-3)  # class shares kept
    at.select_slider(key="features_n").set_value(1000).run()
    assert _points(_embeddings(at)[CE])[0].shape == (1000, 2)
    at.radio(key="features_color").set_value("confidence").run()
    at.switch_page("views/overview.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.select_slider(key="features_n").value == 1000
    assert at.radio(key="features_color").value == "confidence"
    assert _points(_embeddings(at)[CE])[0].shape == (1000, 2)


class _FakeUMAP:
    """Stands in for umap.UMAP: the first two feature columns, so no numba compile happens in tests."""

    fits = 0

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        type(self).fits += 1
        return np.asarray(x[:, :2], dtype=np.float32) * 2.0 + 1.0


def test_umap_is_fitted_in_the_background_then_read_from_the_disk_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALIBVIZ_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    _FakeUMAP.fits = 0
    at = _open()
    assert _FakeUMAP.fits == 0  # PCA alone never touches UMAP
    at.radio(key="features_method").set_value("UMAP").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    for _ in range(100):  # the fits run in background threads; PCA stands in (with a progress bar) until done
        if all(f["layout"]["xaxis"]["title"]["text"] == "UMAP 1" for f in _embeddings(at).values()):
            break
        assert all(f["layout"]["xaxis"]["title"]["text"].startswith(("PC1", "UMAP")) for f in _embeddings(at).values())
        time.sleep(0.1)
        at.run()
    assert _FakeUMAP.fits == 2  # one fit per model
    emb = _embeddings(at)
    assert set(emb) == {CE, LS}
    p = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    xy, cd = _points(emb[CE])
    assert emb[CE]["layout"]["xaxis"]["title"]["text"] == "UMAP 1"
    rows = F.rows_for_sample_ids(p.sample_id, cd[:, 0])
    np.testing.assert_allclose(xy, p.features[rows, :2] * 2.0 + 1.0, rtol=1e-6)
    assert len(list((tmp_path / "umap").glob("*.npz"))) == 2

    # a new session (as after a restart): straight from the disk cache, no fit
    at2 = _open()
    at2.radio(key="features_method").set_value("UMAP").run()
    assert not at2.exception, at2.exception
    assert _FakeUMAP.fits == 2
    np.testing.assert_array_equal(_points(_embeddings(at2)[CE])[0], xy)
    # other UMAP settings are another embedding: fitted once more
    at2.select_slider(key="features_neighbors").set_value(5).run()
    assert not at2.exception, at2.exception
    for _ in range(100):
        if _FakeUMAP.fits == 4:
            break
        time.sleep(0.1)
    assert _FakeUMAP.fits == 4


class _FlakyUMAP(_FakeUMAP):
    """Fails its first fit, then works: the retry path of the background jobs."""

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        if type(self).fits == 0:
            type(self).fits += 1
            raise RuntimeError("numba fell over")
        return super().fit_transform(x)


def _random_features(seed: int) -> Predictions:
    """60 rows of 3 classes with random logits and 5-D features: enough for a (fake) UMAP fit."""
    rng = np.random.default_rng(seed)
    return Predictions(labels=np.repeat(np.arange(3), 20), logits=rng.normal(size=(60, 3)).astype(np.float32),
                       features=rng.normal(size=(60, 5)).astype(np.float32), meta={"data_spec": "x:test"})


def test_umap_jobs_run_in_the_background_fail_visibly_and_retry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import streamlit as st

    from calibviz.app import UmapJob, forget_failed_umap_jobs, umap_embedding_or_job

    st.cache_resource.clear()
    monkeypatch.setenv("CALIBVIZ_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FlakyUMAP))
    _FlakyUMAP.fits = 0
    p = _random_features(2)
    params = F.UmapParams(sample_size=30)
    job = umap_embedding_or_job(p, params, "flaky")
    assert isinstance(job, UmapJob) and job.label == "flaky"
    assert job.done.wait(30) and job.failed and job.error == "RuntimeError: numba fell over"
    assert umap_embedding_or_job(p, params, "flaky") is job  # a failed fit stays failed until forgotten
    forget_failed_umap_jobs()
    again = umap_embedding_or_job(p, params, "flaky")  # a new fit (it may end before the call returns)
    if isinstance(again, UmapJob):
        assert again is not job and again.done.wait(30) and not again.failed and again.fraction == 1.0
        again = again.result
    assert isinstance(again, F.UmapEmbedding) and not again.from_cache
    got = umap_embedding_or_job(p, params, "flaky")  # now from the disk cache
    assert isinstance(got, F.UmapEmbedding) and got.from_cache
    np.testing.assert_array_equal(got.coords, again.coords)
    forget_failed_umap_jobs()  # a finished fit is kept
    assert umap_embedding_or_job(p, params, "flaky").from_cache and _FlakyUMAP.fits == 2


def test_bundles_without_features_or_head_get_notes(app: AppTest, tmp_path: Path) -> None:
    from calibviz.formats import save_bundle
    from calibviz.uploads import accept_upload

    p = predict(ZOO / "digits" / "ls.safetensors", "digits:test")
    plain = dataclasses.replace(p, features=None, head_weight=None, head_bias=None, meta={**p.meta, "name": "plain"})
    headless = dataclasses.replace(p, head_weight=None, head_bias=None, meta={**p.meta, "name": "headless"})
    ups = {}
    for b in (plain, headless):
        save_bundle(b, tmp_path / f"{b.name}.npz")
        m = accept_upload(f"{b.name}.npz", (tmp_path / f"{b.name}.npz").read_bytes(), tmp_path / "uploads")
        ups[m.name] = m
    app.session_state["uploads"] = ups  # as the sidebar's uploader stores accepted files
    app.run()
    app.sidebar.multiselect(key="models_digits").set_value(["digits/ce", *ups]).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    infos = [i.value for i in app.info]
    plain_t, headless_t = (m.title for m in ups.values())
    assert any(plain_t in i and "no penultimate features" in i for i in infos), infos
    assert any(headless_t in i and "no final-layer weights" in i for i in infos), infos
    assert any(headless_t in i and "train" in i for i in infos), infos  # the bundle holds test rows only
    assert set(_embeddings(app)) == {CE, headless_t}
    r2 = _table(app, "R² train")
    row = r2[r2["model"] == headless_t].iloc[0]
    assert np.isnan(float(row["R² train"]))
    assert float(row["R² test"]) == pytest.approx(F.class_separation(p.features, p.labels), rel=1e-12)
    assert plotly_array(_cka(app)["data"][0]["z"]).size == 4  # CE and the bundle with features


# ------------------------------------------------------------------------- library helpers used by the page


def test_rows_for_sample_ids() -> None:
    ids = np.array([40, 3, 17, 8])
    np.testing.assert_array_equal(F.rows_for_sample_ids(ids, [8, 40, 99, 3.0]), [3, 0, 1])
    assert F.rows_for_sample_ids(ids, []).size == 0
    assert F.rows_for_sample_ids(np.array([], dtype=np.int64), [1]).size == 0


def test_projection_spread_is_scale_free_and_orders_tightness() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat([0, 1, 2], 200)

    def proj(noise: float, scale: float = 1.0) -> F.TemplateProjection:
        coords = (centres[labels] + rng.normal(0, noise, (600, 2))) * scale
        return F.TemplateProjection((0, 1, 2), coords.astype(np.float32), labels, np.arange(600), np.arange(600),
                                    centres, np.eye(3, 2))

    tight, loose = F.projection_spread(proj(0.5)), F.projection_spread(proj(3.0))
    assert 0 < tight < loose
    # RMS radius of a 2-D isotropic Gaussian is noise * sqrt(2); mean centroid gap is (10 + 10 + 10√2) / 3
    assert tight == pytest.approx(0.5 * np.sqrt(2) / ((20 + 10 * np.sqrt(2)) / 3), rel=0.1)
    assert F.projection_spread(proj(0.5, scale=7.0)) == pytest.approx(tight, rel=0.1)
    empty = F.TemplateProjection((0, 1, 5), np.zeros((2, 2), np.float32), np.array([0, 1]), np.arange(2),
                                 np.arange(2), centres, np.eye(3, 2))
    assert np.isnan(F.projection_spread(empty))


def test_gallery_rows_put_mistakes_then_low_confidence_first() -> None:
    logits = np.array([[5.0, 0.0], [0.2, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 0.1]], dtype=np.float32)
    p = Predictions(labels=np.array([0, 0, 0, 1, 1]), logits=logits)
    # wrong: rows 2 (conf high) and 3; right: 1 (0.55), 4 (0.52), 0 (0.99)
    np.testing.assert_array_equal(F.gallery_rows(p, [0, 1, 2, 3, 4]), [3, 2, 4, 1, 0])
    np.testing.assert_array_equal(F.gallery_rows(p, [0, 1, 4], k=2), [4, 1])
    assert F.gallery_rows(p, []).size == 0


def test_cached_umap_lookup_never_fits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALIBVIZ_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    _FakeUMAP.fits = 0
    p = _random_features(1)
    params = F.UmapParams(sample_size=30)
    assert F.cached_umap_for_predictions(p, params) is None and _FakeUMAP.fits == 0
    fitted = F.umap_for_predictions(p, params)
    hit = F.cached_umap_for_predictions(p, params)
    assert hit is not None and hit.from_cache and _FakeUMAP.fits == 1
    np.testing.assert_array_equal(hit.indices, fitted.indices)
    np.testing.assert_array_equal(hit.coords, fitted.coords)
    assert F.cached_umap_for_predictions(p, F.UmapParams(sample_size=30, n_neighbors=5)) is None
    assert F.cached_umap_for_predictions(dataclasses.replace(p, features=None), params) is None

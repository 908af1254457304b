"""Feature analyses against independent references: brute-force pairwise R², HSIC Gram-form CKA,
numpy SVD, a least-squares plane projection; UMAP caching and locking (fake UMAP, fast) and one real
UMAP fit (slow)."""

from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest
import torch

import calibviz
from calibviz import features as F
from calibviz.plots.features import (
    cka_heatmap_figure,
    embedding_figure,
    gallery_figure,
    selected_sample_ids,
    separation_bar_figure,
    template_projection_figure,
)
from calibviz.predictions import Predictions

# ------------------------------------------------------------------------------------ references


def _cos_dist(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 1.0 - u @ u.T


def brute_r2_class_weighted(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2021 as written: per-class-pair mean distances, each class weighted 1/K."""
    d = _cos_dist(x)
    cls = np.unique(y)
    blocks = {(a, b): d[np.ix_(y == a, y == b)].mean() for a in cls for b in cls}
    within = np.mean([blocks[(a, a)] for a in cls])
    total = np.mean(list(blocks.values()))
    return 1.0 - within / total


def brute_r2_pooled(x: np.ndarray, y: np.ndarray) -> float:
    """The other reading: every pair of examples weighted equally."""
    d = _cos_dist(x)
    same = y[:, None] == y[None, :]
    return 1.0 - d[same].mean() / d.mean()


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from N x N linear Gram matrices and the centring matrix H (Gretton's biased HSIC)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, lg = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hsic(k, lg) / np.sqrt(hsic(k, k) * hsic(lg, lg))


def _clustered(rng: np.random.Generator, sizes: list[int], d: int = 12, spread: float = 0.8):
    centres = rng.normal(0, 1, (len(sizes), d))
    x = np.concatenate([c + spread * rng.normal(0, 1, (s, d)) for c, s in zip(centres, sizes, strict=True)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    return x, y


# ------------------------------------------------------------------------------------------- R²


def test_r2_matches_brute_force_with_unequal_classes():
    rng = np.random.default_rng(0)
    x, y = _clustered(rng, [10, 35, 60, 7])
    r2 = F.class_separation(x, y)
    assert r2 == pytest.approx(brute_r2_class_weighted(x, y), rel=1e-10)
    # with unequal sizes the pooled-pairs reading is a different number; the formula is class-weighted
    assert abs(r2 - brute_r2_pooled(x, y)) > 1e-4
    # torch input, float32, shuffled rows and relabelled classes give the same value
    perm = rng.permutation(len(y))
    r2_t = calibviz.class_separation(torch.tensor(x[perm], dtype=torch.float32), torch.tensor(y[perm] + 5))
    assert r2_t == pytest.approx(r2, rel=1e-5)


def test_r2_equal_classes_agrees_with_pooled_pairs():
    rng = np.random.default_rng(1)
    x, y = _clustered(rng, [25, 25, 25], spread=2.0)
    r2 = F.class_separation(x, y)
    assert r2 == pytest.approx(brute_r2_pooled(x, y), rel=1e-10)
    assert r2 == pytest.approx(brute_r2_class_weighted(x, y), rel=1e-10)


def test_r2_scale_invariant_and_one_for_orthogonal_directions():
    rng = np.random.default_rng(2)
    x, y = _clustered(rng, [20, 30, 40])
    scales = rng.uniform(0.1, 10, (len(y), 1))
    assert F.class_separation(x * scales, y) == pytest.approx(F.class_separation(x, y), rel=1e-10)
    # each class a positive multiple of its own basis vector: within distance 0, so R² = 1
    e = np.eye(3)[y] * rng.uniform(0.5, 2, (len(y), 1))
    assert F.class_separation(e, y) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two classes"):
        F.class_separation(x, np.zeros(len(y), dtype=int))


# ------------------------------------------------------------------------------------------ CKA


def test_cka_self_and_invariances_and_hsic_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (60, 8)) @ rng.normal(0, 1, (8, 8))
    y = np.tanh(x @ rng.normal(0, 1, (8, 5))) + 0.3 * rng.normal(0, 1, (60, 5))
    assert F.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    ref = hsic_cka(x, y)
    assert F.linear_cka(x, y) == pytest.approx(ref, rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(0, 1, (8, 8)))
    assert F.linear_cka(x @ q * 7.5 + 3.0, y) == pytest.approx(ref, rel=1e-10)
    assert F.linear_cka(y, x) == pytest.approx(ref, rel=1e-10)
    assert calibviz.linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(
        ref, rel=1e-5)
    # an unrelated matrix scores well below 1
    assert F.linear_cka(x, rng.normal(0, 1, (60, 8))) < 0.5 * ref + 0.5
    m = F.cka_matrix([x, y, x @ q])
    assert m.shape == (3, 3) and m[0, 2] == pytest.approx(1.0) and m[1, 0] == pytest.approx(ref)
    with pytest.raises(ValueError, match="N"):
        F.linear_cka(x, y[:10])


# ------------------------------------------------------------------------------------------ PCA


def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (500, 30)) * np.linspace(5, 0.2, 30) + 10.0
    coords, ratio = F.pca(x, q=3)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    ref_ratio = s**2 / (s**2).sum()
    np.testing.assert_allclose(ratio, ref_ratio[:3], rtol=1e-6)
    ref_coords = xc @ vt[:3].T
    for k in range(3):  # components are defined up to sign
        sign = np.sign(coords[:, k] @ ref_coords[:, k])
        np.testing.assert_allclose(sign * coords[:, k], ref_coords[:, k], rtol=1e-4, atol=1e-3)
    assert coords.dtype == np.float32
    c2, _ = F.pca(torch.from_numpy(x), q=3)
    np.testing.assert_array_equal(c2, coords)  # seeded: identical on repeat
    with pytest.raises(ValueError, match="q must"):
        F.pca(x, q=31)


# ---------------------------------------------------------------------------- template projection


def _head(rng: np.random.Generator, c: int = 5, d: int = 16):
    return rng.normal(0, 1, (c, d)), rng.normal(0, 1, c)


def test_templates_map_to_triangle_vertices():
    rng = np.random.default_rng(5)
    w, b = _head(rng)
    classes = (3, 0, 4)
    t = np.concatenate([w, b[:, None]], axis=1)[list(classes)]
    # feed the templates themselves (without the appended bias coordinate) as activations
    proj = F.template_projection(t[:, :-1], np.array(classes), w, b, classes)
    # the appended 1 differs from the bias, so compare through the plane geometry instead: vertices
    # form a triangle congruent to the templates'
    v = proj.vertices
    assert v[0] == pytest.approx([0.0, 0.0], abs=1e-12) and v[1][1] == pytest.approx(0.0, abs=1e-12)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert np.linalg.norm(v[i] - v[j]) == pytest.approx(np.linalg.norm(t[i] - t[j]), rel=1e-10)
    np.testing.assert_allclose(proj.basis.T @ proj.basis, np.eye(2), atol=1e-12)
    assert proj.labels.tolist() == list(classes)


def test_template_activations_land_on_vertices():
    # when the activations equal the templates with the bias column equal to 1, coords are vertices
    rng = np.random.default_rng(6)
    w, _ = _head(rng)
    b = np.ones(w.shape[0])
    classes = (1, 2, 4)
    proj = F.template_projection(w[list(classes)], np.array(classes), w, b, classes)
    np.testing.assert_allclose(proj.coords, proj.vertices, atol=1e-5)


def test_projection_matches_least_squares_and_ignores_normal_shift():
    rng = np.random.default_rng(7)
    w, b = _head(rng, c=6, d=20)
    classes = (0, 2, 5)
    x = rng.normal(0, 2, (90, 20))
    y = rng.integers(0, 6, 90)
    proj = F.template_projection(x, y, w, b, classes)
    sel = np.isin(y, classes)
    assert proj.coords.shape == (int(sel.sum()), 2)
    # independent reference: orthogonal projection of [x, 1] onto the affine plane by least squares
    t = np.concatenate([w, b[:, None]], axis=1)[list(classes)]
    a = np.stack([t[1] - t[0], t[2] - t[0]], axis=1)
    xa = np.concatenate([x[sel], np.ones((sel.sum(), 1))], axis=1)
    coef, *_ = np.linalg.lstsq(a, (xa - t[0]).T, rcond=None)
    p = (a @ coef).T  # in-plane offsets from w1
    np.testing.assert_allclose(np.linalg.norm(proj.coords, axis=1), np.linalg.norm(p, axis=1), rtol=1e-5)
    i, j = 0, 7
    assert np.linalg.norm(proj.coords[i] - proj.coords[j]) == pytest.approx(np.linalg.norm(p[i] - p[j]),
                                                                            rel=1e-5)
    # a global shift of the activations along a normal of the plane (last coordinate untouched)
    u = proj.basis[:-1]  # the activation part of the basis vectors
    r = rng.normal(0, 1, 20)
    normal = r - u @ np.linalg.lstsq(u, r, rcond=None)[0]
    assert np.abs(u.T @ normal).max() < 1e-10 and np.linalg.norm(normal) > 1
    shifted = F.template_projection(x + 5.0 * normal, y, w, b, classes)
    np.testing.assert_allclose(shifted.coords, proj.coords, atol=1e-4)
    # a shift inside the plane does move the points
    moved = F.template_projection(x + 5.0 * u[:, 0], y, w, b, classes)
    assert np.abs(moved.coords - proj.coords).max() > 1


def test_template_projection_rejects_bad_triples():
    rng = np.random.default_rng(8)
    w, b = _head(rng)
    with pytest.raises(ValueError, match="distinct"):
        F.template_projection(np.zeros((2, 16)), np.array([0, 1]), w, b, (0, 0, 1))
    w2 = w.copy()
    w2[2] = 2 * w2[1] - w2[0]
    with pytest.raises(ValueError, match="collinear"):
        F.template_plane(w2, np.zeros(5), (0, 1, 2))


# --------------------------------------------------------------------------------------- sampling


def test_stratified_sample_keeps_class_shares():
    rng = np.random.default_rng(9)
    y = rng.choice(4, size=3000, p=[0.5, 0.3, 0.15, 0.05])
    idx = F.stratified_sample(y, 500, seed=1)
    assert idx.size == 500 and np.all(np.diff(idx) > 0)
    share = np.bincount(y, minlength=4) / y.size
    got = np.bincount(y[idx], minlength=4) / 500
    np.testing.assert_allclose(got, share, atol=1 / 500 + 1e-12)
    np.testing.assert_array_equal(F.stratified_sample(y, 500, seed=1), idx)
    assert not np.array_equal(F.stratified_sample(y, 500, seed=2), idx)
    np.testing.assert_array_equal(F.stratified_sample(y, None), np.arange(3000))
    # a tiny class keeps one row even when its share rounds to zero
    y2 = np.array([0] * 995 + [1] * 5)
    assert set(y2[F.stratified_sample(y2, 50)]) == {0, 1}


# ------------------------------------------------------------------ UMAP plumbing (fake UMAP, fast)


class _FakeUMAP:
    """Stands in for umap.UMAP: records concurrency and returns the first two input columns."""

    active = 0
    max_active = 0
    fits = 0
    last_kwargs: dict = {}  # noqa: RUF012
    guard = threading.Lock()

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        type(self).last_kwargs = kwargs

    def fit_transform(self, x):
        cls = type(self)
        with cls.guard:
            cls.active += 1
            cls.fits += 1
            cls.max_active = max(cls.max_active, cls.active)
        sink = self.kwargs["tqdm_kwds"]["file"]
        for n in range(0, 11, 5):
            sink.write(f"\r{n}/10")
        time.sleep(0.02)
        with cls.guard:
            cls.active -= 1
        return np.asarray(x)[:, :2] * 1.0


@pytest.fixture
def fake_umap(monkeypatch, tmp_path):
    _FakeUMAP.active = _FakeUMAP.max_active = _FakeUMAP.fits = 0
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    monkeypatch.setenv("CALIBVIZ_CACHE", str(tmp_path))
    was_warm = F._JIT_WARM.is_set()
    F._JIT_WARM.clear()
    yield _FakeUMAP
    if not was_warm:
        F._JIT_WARM.clear()


def test_warm_up_compiles_the_exact_neighbours_path_once(fake_umap):
    assert F.warm_umap_jit() > 0
    kw = fake_umap.last_kwargs
    assert fake_umap.fits == 1 and kw["force_approximation_algorithm"] is False
    assert kw["precomputed_knn"][0].shape == (200, 10)          # the path real fits take: neighbours handed over
    assert F.warm_umap_jit() == 0.0 and fake_umap.fits == 1
    F.fit_umap(np.random.default_rng(1).normal(size=(30, 3)), F.UmapParams(metric="manhattan"))
    assert fake_umap.last_kwargs["precomputed_knn"] == (None, None, None)   # other metrics: umap-learn's own search


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_neighbors_match_brute_force(metric):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(700, 12)).astype(np.float32)
    x[5] = x[4]                                                   # a duplicate: each row is still its own first
    idx, dist = F.exact_neighbors(x, 8, metric)
    x64 = x.astype(np.float64)
    if metric == "cosine":
        u = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        d = 1 - u @ u.T
    else:
        d = np.sqrt(((x64[:, None, :] - x64[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, -1)
    ref = np.argsort(d, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(idx[:, 0], np.arange(700))
    ref_d = np.clip(np.take_along_axis(d, ref, 1), 0, None)
    np.testing.assert_allclose(dist, ref_d, atol=2e-3)           # float32 matrix products
    assert (np.take_along_axis(d, idx, 1)[:, 1:] <= ref_d[:, -1:] + 1e-4).all()  # the same neighbours up to ties
    assert idx[4, 1] == 5 and idx[5, 1] == 4 and dist[4, 1] < 1e-3


def test_umap_fits_are_serialised(fake_umap):
    x = np.random.default_rng(10).normal(0, 1, (50, 4))
    threads = [threading.Thread(target=F.fit_umap, args=(x,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_umap.fits == 4 and fake_umap.max_active == 1


def test_umap_disk_cache_and_progress(fake_umap, tmp_path):
    rng = np.random.default_rng(11)
    x, y = rng.normal(0, 1, (400, 6)), rng.integers(0, 4, 400)
    seen: list[float] = []
    params = F.UmapParams(sample_size=100)
    first = F.umap_embedding(x, y, source_digest="abc", data_spec="digits:test", params=params,
                             progress=lambda f, _m: seen.append(f))
    assert not first.from_cache and first.indices.size == 100 and fake_umap.fits == 1
    np.testing.assert_allclose(first.coords, x[first.indices, :2], rtol=1e-6)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 5
    assert list((tmp_path / "umap").glob("*.npz"))
    again = F.umap_embedding(x, y, source_digest="abc", data_spec="digits:test", params=params)
    assert again.from_cache and fake_umap.fits == 1
    np.testing.assert_array_equal(again.coords, first.coords)
    # any change of key part refits
    F.umap_embedding(x, y, source_digest="abd", data_spec="digits:test", params=params)
    F.umap_embedding(x, y, source_digest="abc", data_spec="digits:train", params=params)
    F.umap_embedding(x, y, source_digest="abc", data_spec="digits:test", params=F.UmapParams(sample_size=100,
                                                                                             min_dist=0.3))
    assert fake_umap.fits == 4


def test_umap_for_predictions_keys_on_checkpoint_digest(fake_umap):
    rng = np.random.default_rng(12)
    feats = rng.normal(0, 1, (120, 5)).astype(np.float32)
    meta = {"checkpoint_sha256": "f" * 64, "data_spec": "digits:test", "mask_ratio": 0.0}
    p1 = Predictions(labels=rng.integers(0, 3, 120), logits=rng.normal(0, 1, (120, 3)), features=feats,
                     meta=meta)
    p2 = Predictions(labels=p1.labels, logits=p1.logits + 1.0, features=feats, meta=dict(meta))
    F.umap_for_predictions(p1, F.UmapParams(sample_size=None))
    assert F.umap_for_predictions(p2, F.UmapParams(sample_size=None)).from_cache
    assert fake_umap.fits == 1


# ---------------------------------------------------------------------------------------- figures


def _preds(rng: np.random.Generator, n: int = 80, c: int = 4, d: int = 6) -> Predictions:
    return Predictions(labels=rng.integers(0, c, n), logits=rng.normal(0, 2, (n, c)).astype(np.float32),
                       features=rng.normal(0, 1, (n, d)).astype(np.float32),
                       head_weight=rng.normal(0, 1, (c, d)), head_bias=rng.normal(0, 1, c),
                       sample_id=np.arange(1000, 1000 + n), meta={"class_names": list("abcd")})


def test_embedding_figure_is_webgl_float32_with_hover():
    rng = np.random.default_rng(13)
    p = _preds(rng)
    coords, _ = F.pca(p.features, q=2)
    by_class = embedding_figure(coords, p, "class")
    assert {t.type for t in by_class.data} == {"scattergl"}
    assert sum(len(t.x) for t in by_class.data) == p.n
    assert all(np.asarray(t.x).dtype == np.float32 for t in by_class.data)
    first = by_class.data[0]
    row = np.asarray(first.customdata)[0]
    k = np.flatnonzero(p.labels == int(row[1]))[0]
    assert row[0] == p.sample_id[k] and row[2] == p.probabilities()[k].argmax()
    assert row[3] == pytest.approx(p.probabilities()[k].max())
    corr = embedding_figure(coords, p, "correctness")
    n_correct = int((p.probabilities().argmax(1) == p.labels).sum())
    assert len(corr.data[0].x) == n_correct and len(corr.data[1].x) == p.n - n_correct
    conf = embedding_figure(coords, p, "confidence")
    assert len(conf.data) == 1 and conf.data[0].marker.cmax == 1.0
    with pytest.raises(ValueError, match="color_by"):
        embedding_figure(coords, p, "size")


def test_template_projection_figure_draws_triangles_per_panel():
    rng = np.random.default_rng(14)
    pa, pb = _preds(rng), _preds(rng)
    panels = {m: {split: F.template_projection_for(p, (0, 1, 2)) for split in ("train", "test")}
              for m, p in (("ce", pa), ("ls", pb))}
    fig = template_projection_figure(panels, class_names=list("abcd"))
    tris = [t for t in fig.data if t.type == "scatter"]
    assert len(tris) == 4
    np.testing.assert_allclose(np.asarray(tris[0].x)[:3], panels["ce"]["train"].vertices[:, 0], rtol=1e-6)
    assert tris[0].x[0] == tris[0].x[3]  # closed triangle
    pts = [t for t in fig.data if t.type == "scattergl"]
    assert sum(len(t.x) for t in pts) == 2 * (int(np.isin(pa.labels, [0, 1, 2]).sum())
                                              + int(np.isin(pb.labels, [0, 1, 2]).sum()))


def test_bar_heatmap_and_gallery_figures():
    fig = separation_bar_figure({"ce": {"train": 0.4, "test": 0.35}, "ls": {"train": 0.7, "test": 0.6}})
    assert [t.name for t in fig.data] == ["train", "test"] and list(fig.data[1].y) == [0.35, 0.6]
    m = np.array([[1.0, 0.8], [0.8, 1.0]])
    hm = cka_heatmap_figure(m, ["a", "b"])
    np.testing.assert_array_equal(np.asarray(hm.data[0].z), m)
    g = gallery_figure(np.zeros((3, 1, 8, 8)), ["x", "y", "z"])
    assert [t.type for t in g.data] == ["heatmap"] * 3
    s = gallery_figure(np.zeros((2, 40)), ["x", "y"])
    assert [t.type for t in s.data] == ["scatter"] * 2


def test_figure_layout_arguments_replace_page_patches():
    rng = np.random.default_rng(16)
    p = _preds(rng)
    coords, _ = F.pca(p.features, q=2)
    plain = embedding_figure(coords, p, title="CE")
    assert plain.layout.height is None and plain.layout.title.text == "CE" and plain.layout.title.font.size is None
    sized = embedding_figure(coords, p, title="CE", height=430, title_size=15)
    assert sized.layout.height == 430 and sized.layout.title.text == "CE" and sized.layout.title.font.size == 15
    panels = {"ce": {"train": F.template_projection_for(p, (0, 1, 2))}}
    proj = template_projection_figure(panels, subplot_title_size=13, margin_top=30)
    assert proj.layout.margin.t == 30 and proj.layout.margin.l == 40
    assert [a.font.size for a in proj.layout.annotations] == [13]
    assert template_projection_figure(panels).layout.margin.t == 70
    bars = separation_bar_figure({"ce": {"train": 0.4}}, title="", height=320, margin_top=20, legend_on_top=True)
    assert bars.layout.height == 320 and bars.layout.margin.t == 20 and bars.layout.margin.l == 50
    assert bars.layout.legend.orientation == "h" and bars.layout.legend.y == 1.12
    assert separation_bar_figure({"ce": {"train": 0.4}}).layout.legend.orientation is None
    hm = cka_heatmap_figure(np.eye(3), list("abc"), title="", height=330, margin_top=20)
    assert hm.layout.height == 330 and hm.layout.margin.t == 20 and hm.layout.margin.b == 60
    assert cka_heatmap_figure(np.eye(3), list("abc")).layout.height is None


def test_selected_sample_ids_reads_lists_and_typed_arrays():
    event = {"selection": {"points": [{"customdata": [7, 1, 1, 0.9]}, {"customdata": {"0": 12.0, "1": 3}},
                                      {"customdata": []}, {"customdata": {"1": 3}}, {"x": 0.5}]}}
    assert selected_sample_ids(event) == [7, 12.0]
    assert selected_sample_ids({"selection": {"points": []}}) == []
    assert selected_sample_ids(None) == []


# ---------------------------------------------------------------------------------- page-sized helpers


def test_pca_embedding_is_the_stratified_rows_at_their_pca_coordinates():
    rng = np.random.default_rng(17)
    p = _preds(rng, n=200)
    emb = F.pca_embedding(p, 40)
    np.testing.assert_array_equal(emb.rows, F.stratified_sample(p.labels, 40, seed=0))
    coords, ratio = F.pca(p.features, q=2)
    np.testing.assert_array_equal(emb.coords, coords[emb.rows])
    assert emb.axes == (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%})") and emb.method == "PCA"
    assert F.pca_embedding(p, None).rows.size == 200
    with pytest.raises(ValueError, match="features"):
        F.pca_embedding(Predictions(labels=p.labels, logits=p.logits), 40)
    umap = F.UmapEmbedding(np.array([3, 1]), np.zeros((2, 2), np.float32), True, 0.0)
    u = F.Embedding2D.from_umap(umap)
    assert u.rows is umap.indices and u.coords is umap.coords and u.axes == ("UMAP 1", "UMAP 2")
    assert u.method == "UMAP"


def test_same_rows_and_cka_matrix_for():
    rng = np.random.default_rng(18)
    a, b = _preds(rng), _preds(rng)
    assert F.same_rows([a, b]) and F.same_rows([]) and F.same_rows([a])
    shuffled = Predictions(labels=b.labels, logits=b.logits, features=b.features, sample_id=b.sample_id[::-1])
    assert not F.same_rows([a, shuffled])
    assert not F.same_rows([a, b.subset(np.arange(40))])  # fewer rows
    no_ids = [Predictions(labels=q.labels, logits=q.logits, features=q.features) for q in (a, b)]
    assert F.same_rows(no_ids) and not F.same_rows([a, no_ids[1]])  # all or none carry ids
    mat = F.cka_matrix_for((a, b))
    np.testing.assert_allclose(mat, F.cka_matrix([a.features, b.features]))
    with pytest.raises(ValueError, match="same examples"):
        F.cka_matrix_for([a, shuffled])
    with pytest.raises(ValueError, match="features"):
        F.cka_matrix_for([a, Predictions(labels=b.labels, logits=b.logits, sample_id=b.sample_id)])


def test_class_separation_for_and_template_inputs():
    rng = np.random.default_rng(19)
    p = _preds(rng)
    assert F.class_separation_for(p) == F.class_separation(p.features, p.labels)
    assert np.isnan(F.class_separation_for(None))
    bare = Predictions(labels=p.labels, logits=p.logits)
    assert np.isnan(F.class_separation_for(bare))
    assert F.has_template_inputs(p) and not F.has_template_inputs(bare)
    headless = Predictions(labels=p.labels, logits=p.logits, features=p.features)
    assert not F.has_template_inputs(headless)
    with pytest.raises(ValueError, match="head_weight"):
        F.template_projection_for(headless, (0, 1, 2))


def test_selected_inputs_are_the_picked_points_mistakes_first():
    from calibviz.backend import predict
    from calibviz.data import load_dataset
    from tests.conftest import ZOO

    p = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    ds = load_dataset("digits:test")
    ids = [float(i) for i in p.sample_id[:30]] + [10**9]  # an id not in the split is ignored
    got = F.selected_inputs(p, "digits:test", ids, k=8)
    assert got is not None and len(got.captions) == 8 and got.x.shape[0] == 8
    rows = F.gallery_rows(p, np.arange(30), 8)
    np.testing.assert_array_equal(got.x, ds.x[F.rows_for_sample_ids(ds.sample_id, p.sample_id[rows])])
    probs, names = p.probabilities()[rows], p.class_names
    assert got.captions[0] == f"{names[p.labels[rows[0]]]}→{names[probs[0].argmax()]} {probs[0].max():.2f}"
    assert F.selected_inputs(p, "digits:test", [10**9]) is None
    with pytest.raises(ValueError, match="sample ids"):
        F.selected_inputs(Predictions(labels=p.labels, logits=p.logits), "digits:test", ids)


# ------------------------------------------------------------------------------- real UMAP (slow)


@pytest.mark.slow
def test_real_umap_separates_blobs_and_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("CALIBVIZ_CACHE", str(tmp_path))
    rng = np.random.default_rng(15)
    x, y = _clustered(rng, [150, 150, 150], d=10, spread=0.3)
    x = x * 5
    params = F.UmapParams(sample_size=300, n_neighbors=10)
    messages: list[str] = []
    emb = F.umap_embedding(x, y, source_digest="blobs", params=params, progress=lambda _f, m: messages.append(m))
    assert emb.coords.shape == (300, 2) and not emb.from_cache
    assert any(m.startswith("UMAP epoch") for m in messages) and messages[-1] == "UMAP done"
    # nearest neighbour in the embedding shares the class for nearly every point
    c, lab = emb.coords, y[emb.indices]
    d = ((c[:, None] - c[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95
    again = F.umap_embedding(x, y, source_digest="blobs", params=params)
    assert again.from_cache
    np.testing.assert_array_equal(again.coords, emb.coords)

"""Tree isotonic regression, order-violation statistics, the penalty, training hooks and figures.

The exact fix is checked against two independent solutions of the quadratic program min ||y - t||² over
the order cone: an exhaustive search over every active set (which others pool with b, and whether a
joins them; each candidate's level is its block mean, the best feasible candidate is the projection),
and scipy's SLSQP with tight tolerances.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from calibviz.soft_labels import (
    _FEW_ROWS,
    _NETWORK_MAX_C,
    _NETWORK_MIN_ROWS,
    GalleryItem,
    ViolationParams,
    _merge_exchange,
    _network_sorted,
    _tree_isotonic_torch,
    corrected_soft_labels,
    correction_kl,
    gallery_items,
    order_penalty,
    order_violations,
    orient_parents,
    summary_dict,
    tree_isotonic,
    tree_isotonic_reference,
    worst_violations,
)


def order_matrix(c: int, a: int, b: int) -> np.ndarray:
    """Rows of A for the constraints A y <= 0 of the tree order a -> b -> others (a == b: a -> others)."""
    rows = []
    for o in range(c):
        if o in (a, b):
            continue
        r = np.zeros(c)
        r[o], r[b] = 1.0, -1.0
        rows.append(r)
    if a != b:
        r = np.zeros(c)
        r[b], r[a] = 1.0, -1.0
        rows.append(r)
    return np.array(rows)


def qp_projection(t: np.ndarray, a: int, b: int) -> np.ndarray:
    """Exact L2 projection onto the order cone by exhaustive search: the optimum's only non-singleton
    block contains b, some subset S of the others and maybe a, each at the block mean."""
    c = len(t)
    others = [o for o in range(c) if o not in (a, b)]
    A = order_matrix(c, a, b)
    best, best_cost = None, np.inf
    for r in range(len(others) + 1):
        for subset in itertools.combinations(others, r):
            for join_a in ([False, True] if a != b else [False]):
                block = [b, *subset, *([a] if join_a else [])]
                y = t.astype(float).copy()
                y[block] = t[block].mean()
                if np.all(A @ y <= 1e-12) and (cost := np.sum((y - t) ** 2)) < best_cost:
                    best, best_cost = y, cost
    return best


def random_cases(rng: np.random.Generator, n: int, c: int, same_share: float = 0.2):
    scale = rng.uniform(0.1, 5.0, size=(n, 1))
    v = rng.normal(size=(n, c)) * scale
    a = rng.integers(0, c, size=n)
    b = (a + rng.integers(1, c, size=n)) % c
    same = rng.random(n) < same_share
    b[same] = a[same]
    return v, a, b


# ---------------------------------------------------------------------------------------------
# tree_isotonic


def test_worked_examples_from_design():
    v = np.array([[2, 1, 3, 0.5, 2.5], [5, 1, 3, 0.5, 2]], dtype=float)
    a, b = np.array([0, 0]), np.array([1, 1])
    expected = np.array([[2.125, 2.125, 2.125, 0.5, 2.125], [5, 2, 2, 0.5, 2]])
    np.testing.assert_allclose(tree_isotonic(v, a, b), expected, atol=1e-12)
    np.testing.assert_allclose(tree_isotonic_reference(v, a, b), expected, atol=1e-12)
    out = tree_isotonic(torch.tensor(v), torch.tensor(a), torch.tensor(b))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("c", [2, 3, 4, 6, 9])
def test_matches_independent_qp_solution(c):
    rng = np.random.default_rng(100 + c)
    v, a, b = random_cases(rng, 60, c)
    got = tree_isotonic(v, a, b)
    want = np.stack([qp_projection(v[i], int(a[i]), int(b[i])) for i in range(len(v))])
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_matches_slsqp_on_small_cases():
    rng = np.random.default_rng(7)
    v, a, b = random_cases(rng, 8, 5, same_share=0.25)
    got = tree_isotonic(v, a, b)
    for i in range(len(v)):
        A = order_matrix(5, int(a[i]), int(b[i]))
        res = minimize(lambda y, t=v[i]: 0.5 * np.sum((y - t) ** 2), v[i], jac=lambda y, t=v[i]: y - t,
                       constraints=[{"type": "ineq", "fun": lambda y, A=A: -A @ y, "jac": lambda y, A=A: -A}],
                       method="SLSQP", options={"ftol": 1e-13, "maxiter": 500})
        assert res.success, res.message
        np.testing.assert_allclose(got[i], res.x, atol=1e-6)


@pytest.mark.parametrize("c", [2, 3, 10, 40, 300, 1000])
def test_batched_equals_per_row_reference(c):
    rng = np.random.default_rng(c)
    v, a, b = random_cases(rng, 400, c)
    # Rows whose parents sit far below the others pool many classes (past the partial sort's first k).
    low = rng.random(len(v)) < 0.3
    v[low, b[low]] -= rng.uniform(0, 50, size=low.sum())
    v[low, a[low]] -= rng.uniform(0, 50, size=low.sum())
    want = tree_isotonic_reference(v, a, b)
    np.testing.assert_allclose(tree_isotonic(v, a, b), want, atol=1e-9)
    got_torch = _tree_isotonic_torch(torch.from_numpy(v), torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(got_torch.numpy(), want, atol=1e-9)


def test_merge_exchange_network_sorts():
    # 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input (all of them for c <= 12).
    for c in range(1, 13):
        bits = ((np.arange(1 << c)[None, :] >> np.arange(c)[:, None]) & 1).astype(np.float32)
        np.testing.assert_array_equal(np.stack(_network_sorted(bits.copy())), np.sort(bits, axis=0))
    rng = np.random.default_rng(0)
    for c in range(2, _NETWORK_MAX_C + 1):
        x = rng.integers(-3, 4, size=(c, 500)).astype(np.float64)  # many ties
        x[rng.random(x.shape) < 0.1] = -np.inf  # the parents' marker
        np.testing.assert_array_equal(np.stack(_network_sorted(x.copy())), np.sort(x, axis=0))
        assert all(i < j for i, j in _merge_exchange(c))


@pytest.mark.parametrize("c", [2, 3, 5, 10, 16, _NETWORK_MAX_C - 1, _NETWORK_MAX_C, _NETWORK_MAX_C + 1, 64])
@pytest.mark.parametrize("n", [_FEW_ROWS // 4, _NETWORK_MIN_ROWS + 100])
def test_small_class_counts_match_reference_on_ties_and_same_class_rows(c, n):
    """The sorting-network path (C <= _NETWORK_MAX_C on blocks of _NETWORK_MIN_ROWS rows or more), with and
    without redone rows (C > 17 pools only the 16 largest others first), the full-sort path beside and
    above it, and both ways of summing (few and many rows)."""
    rng = np.random.default_rng(1000 * c + n)
    ties = rng.integers(-2, 3, size=(n, c)).astype(np.float64)
    v, a, b = random_cases(rng, n, c, same_share=0.3)
    low = rng.random(n) < 0.3  # parents far below: every other joins, past the first 16 candidates
    v[low, b[low]] -= 40.0
    v[low, a[low]] -= rng.uniform(0, 40, size=low.sum())
    for values in (ties, v):
        want = tree_isotonic_reference(values, a, b)
        for dtype, tol in ((np.float64, 1e-9), (np.float32, 1e-4)):
            x = values.astype(dtype)
            x.flags.writeable = False  # also: the input is never written to
            got = tree_isotonic(x, a, b)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, atol=tol)
            np.testing.assert_array_equal(tree_isotonic(np.asfortranarray(x), a, b), got)
            x_t = torch.from_numpy(x.copy())  # writable: the kernels' scratch space is never the input
            got_t = tree_isotonic(x_t, torch.from_numpy(a), torch.from_numpy(b))
            assert isinstance(got_t, torch.Tensor) and got_t.dtype == x_t.dtype
            np.testing.assert_array_equal(got_t.numpy(), got)
            np.testing.assert_array_equal(x_t.numpy(), x)


def test_ties_and_integer_inputs():
    rng = np.random.default_rng(3)
    v = rng.integers(0, 3, size=(300, 6))  # many ties
    a = rng.integers(0, 6, size=300)
    b = rng.integers(0, 6, size=300)
    got = tree_isotonic(v, a, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, tree_isotonic_reference(v, a, b), atol=1e-12)
    want = np.stack([qp_projection(v[i].astype(float), int(a[i]), int(b[i])) for i in range(300)])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_output_satisfies_order_and_keeps_sum():
    rng = np.random.default_rng(11)
    v, a, b = random_cases(rng, 2000, 12)
    y = tree_isotonic(v.astype(np.float32), a, b)
    assert y.dtype == np.float32
    rows = np.arange(len(v))
    ya, yb = y[rows, a], y[rows, b]
    others = y.copy()
    others[rows, a] = -np.inf
    others[rows, b] = -np.inf
    assert np.all(ya >= yb)
    assert np.all(yb >= others.max(1))
    # Every pooled block is replaced by its mean, so row sums are unchanged.
    np.testing.assert_allclose(y.sum(1), v.astype(np.float32).sum(1), atol=1e-4)


def test_identity_when_already_ordered():
    rng = np.random.default_rng(5)
    v, a, b = random_cases(rng, 500, 7)
    rows = np.arange(len(v))
    top = np.abs(v).max(1) + 1.0
    v[rows, b] = top
    v[rows, a] = np.where(a == b, top, top + rng.uniform(0, 1, len(v)))
    np.testing.assert_array_equal(tree_isotonic(v, a, b), v)


def test_same_class_rows_use_star_order():
    v = np.array([[1.0, 3.0, 2.0, 0.0]])
    got = tree_isotonic(v, np.array([0]), np.array([0]))
    # a = 0 pools with 3 (mean 2), then 2 is not above 2: [2, 2, 2, 0]
    np.testing.assert_allclose(got, [[2.0, 2.0, 2.0, 0.0]])
    np.testing.assert_allclose(got[0], qp_projection(v[0], 0, 0), atol=1e-9)


def test_torch_input_keeps_kind_and_dtype():
    rng = np.random.default_rng(2)
    v, a, b = random_cases(rng, 50, 5)
    t = torch.tensor(v, dtype=torch.float32)
    out = tree_isotonic(t, torch.tensor(a), torch.tensor(b))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == t.device
    np.testing.assert_allclose(out.numpy(), tree_isotonic_reference(v.astype(np.float32), a, b), atol=1e-5)


def test_tree_isotonic_rejects_bad_inputs():
    v = np.zeros((3, 4))
    with pytest.raises(ValueError, match="shape"):
        tree_isotonic(v, np.array([0, 1]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tree_isotonic(v, np.array([0, 1, 4]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="integer"):
        tree_isotonic(v, np.array([0.0, 1.0, 2.0]), np.array([1, 2, 3]))
    v[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tree_isotonic(v, np.array([0, 1, 2]), np.array([1, 2, 3]))


def test_orient_parents_at_equal_weights():
    z = np.array([[0.0, 1.0, -1.0], [0.0, 1.0, -1.0], [2.0, 1.0, 0.0]])
    a, b = np.array([0, 0, 0]), np.array([1, 1, 1])
    lam = np.array([0.5, 0.7, 0.5])
    oa, ob = orient_parents(z, a, b, lam)
    np.testing.assert_array_equal(oa, [1, 0, 0])
    np.testing.assert_array_equal(ob, [0, 1, 1])


# ---------------------------------------------------------------------------------------------
# Statistics on hand-built cases


def hand_built():
    z = np.array([
        [3.0, 2.0, 1.0, 0.0],   # a=0 b=1: ordered; 5 known pairs, tau 1
        [1.0, 2.0, 3.0, 0.0],   # a=0 b=1: (a,b) (a,2) (b,2) violated -> 3 of 5, tau (2-3)/5
        [0.0, 5.0, 1.0, 0.5],   # a=b=2: (2,1) violated -> 1 of 3, tau (2-1)/3
        [1.0, 2.0, 0.0, 0.0],   # a=0 b=1 at lambda 1/2: (a,b) unknown; 0 of 4, tau 1
        [2.0, 2.0, 2.0, 0.0],   # a=0 b=1: ties count as neither; 0 of 5, tau 2/5
    ])
    a = np.array([0, 0, 2, 0, 0])
    b = np.array([1, 1, 2, 1, 1])
    lam = np.array([0.95, 0.6, 0.8, 0.5, 0.72])
    return z, a, b, lam


def test_per_sample_statistics_on_hand_built_cases():
    z, a, b, lam = hand_built()
    res = order_violations(z, a, b, lam, ViolationParams(n_lambda_bins=5))
    s = res.per_sample
    np.testing.assert_array_equal(s.n_known, [5, 5, 3, 4, 5])
    np.testing.assert_array_equal(s.n_violated, [0, 3, 1, 0, 0])
    np.testing.assert_array_equal(s.any_violation, [False, True, True, False, False])
    np.testing.assert_allclose(s.kendall_tau, [1.0, -0.2, 1 / 3, 1.0, 0.4])
    np.testing.assert_array_equal(s.parent_in_top2[:4], [True, True, True, True])
    np.testing.assert_array_equal(s.parents_are_top2[:4], [True, False, True, True])
    # The fix moves only the violating rows' targets.
    assert np.all(s.correction_kl[[0, 3, 4]] < 1e-12)
    assert np.all(s.correction_kl[[1, 2]] > 1e-3)


def test_group_statistics_on_hand_built_cases():
    z, a, b, lam = hand_built()
    res = order_violations(z, a, b, lam, ViolationParams(n_lambda_bins=5))
    assert summary_dict(res.overall)["count"] == 5
    assert float(res.overall.violation_rate) == pytest.approx(2 / 5)
    assert float(res.overall.pair_violation_rate) == pytest.approx(4 / 22)
    assert float(res.overall.kendall_tau) == pytest.approx(np.mean([1.0, -0.2, 1 / 3, 1.0, 0.4]))
    # bins of width 0.1 closed on the right: 0.5 -> 0, 0.6 -> 0, 0.72 -> 2, 0.8 -> 2, 0.95 -> 4
    np.testing.assert_array_equal(res.by_lambda.count, [2, 0, 2, 0, 1])
    np.testing.assert_allclose(res.by_lambda.violation_rate, [0.5, np.nan, 0.5, np.nan, 0.0])
    np.testing.assert_allclose(res.by_lambda.pair_violation_rate[0], 3 / 9)
    assert res.by_pair.count.shape == (4, 4)
    assert res.by_pair.count[0, 1] == 4 and res.by_pair.count[2, 2] == 1 and res.by_pair.count.sum() == 5
    assert res.by_pair.violation_rate[0, 1] == pytest.approx(0.25)
    assert res.by_pair.violation_rate[2, 2] == pytest.approx(1.0)
    assert np.isnan(res.by_pair.violation_rate[1, 0])


def test_order_statistics_do_not_depend_on_temperature_but_kl_does():
    rng = np.random.default_rng(4)
    z, a, b = random_cases(rng, 300, 6)
    lam = rng.uniform(0.5, 1.0, 300)
    r1 = order_violations(z, a, b, lam, ViolationParams(temperature=1.0))
    r4 = order_violations(z, a, b, lam, ViolationParams(temperature=4.0))
    np.testing.assert_array_equal(r1.per_sample.n_violated, r4.per_sample.n_violated)
    np.testing.assert_array_equal(r1.per_sample.kendall_tau, r4.per_sample.kendall_tau)
    assert not np.allclose(r1.per_sample.correction_kl, r4.per_sample.correction_kl)


@pytest.mark.parametrize("space", ["logits", "probs"])
def test_corrected_soft_labels_and_kl_against_qp(space):
    rng = np.random.default_rng(9)
    z, a, b = random_cases(rng, 40, 5)
    t = 3.0
    q = corrected_soft_labels(z, a, b, temperature=t, space=space)
    p = np.exp(z / t) / np.exp(z / t).sum(1, keepdims=True)
    if space == "logits":
        want = np.stack([qp_projection(z[i] / t, int(a[i]), int(b[i])) for i in range(40)])
        want = np.exp(want) / np.exp(want).sum(1, keepdims=True)
    else:
        want = np.stack([qp_projection(p[i], int(a[i]), int(b[i])) for i in range(40)])
    np.testing.assert_allclose(q, want, atol=1e-7)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-9)
    kl = correction_kl(z, a, b, temperature=t, space=space)
    np.testing.assert_allclose(kl, np.sum(p * np.log(p / want), axis=1), atol=1e-7)


def test_worst_violations_rank_by_tau():
    z, a, b, lam = hand_built()
    res = order_violations(z, a, b, lam)
    np.testing.assert_array_equal(worst_violations(res, k=5), [1, 2])


# ---------------------------------------------------------------------------------------------
# Penalty and training hooks


def test_order_penalty_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.3, 0.2, 0.5], [0.2, 0.5, 0.3]]))
    a = torch.tensor([0, 0, 0, 2])
    b = torch.tensor([1, 1, 1, 2])
    pen = order_penalty(logits, a, b)
    # row 0: ordered -> 0; row 1: relu(0.5 - 0.2) + relu(0.3 - 0.2); row 2: relu(0.5 - 0.2) + 0;
    # row 3 (same class 2): relu(0.5 - 0.3)
    np.testing.assert_allclose(pen.numpy(), [0.0, 0.4, 0.3, 0.2], atol=1e-6)
    x = logits.clone().requires_grad_(True)
    order_penalty(x, a, b).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_soft_labels_does_not_import_training():
    """The statistics are pure: importing them pulls in no training loop (training imports them instead)."""
    import subprocess
    import sys

    code = "import sys, calibviz.soft_labels; sys.exit('calibviz.training' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("hooks_module", [None, "calibviz.soft_labels"])  # the shipped cards name the old module
def test_training_hooks_are_registered(hooks_module):
    from calibviz.training import Batch, LossInputs, Recipe, resolve_hooks

    recipe = Recipe(name="kd_mixup_iso", title="t", loss="kd", mixup_alpha=1.0, kd_teacher="ce",
                    hooks_module=hooks_module, target_transform="tree_isotonic",
                    extra_losses=(("order_penalty", 1.0),))
    _, transform, extras = resolve_hooks(recipe)
    rng = np.random.default_rng(0)
    z, a, b = random_cases(rng, 16, 10)
    batch = Batch(x=torch.zeros(16, 1), y=torch.from_numpy(a), y_b=torch.from_numpy(b),
                  lam=torch.full((16,), 0.7))
    out = transform(torch.from_numpy(z), batch)
    np.testing.assert_allclose(out.numpy(), tree_isotonic_reference(z, a, b), atol=1e-9)
    fn, w = extras[0]
    student = torch.from_numpy(z).float()
    inp = LossInputs(student_logits=student, teacher_logits=None, batch=batch, recipe=recipe)
    assert w == 1.0
    assert float(fn(inp)) == pytest.approx(float(order_penalty(student, batch.y, batch.y_b).mean()))


# ---------------------------------------------------------------------------------------------
# Gallery and figures


def _fake_mix(kind: str):
    from calibviz.augment import AugmentParams, MixedSamples

    rng = np.random.default_rng(1)
    shape = (1, 8, 8) if kind == "image" else (40,)
    parents = rng.random((6, *shape)).astype(np.float32)
    ia, ib = np.array([0, 1, 2, 3]), np.array([4, 5, 0, 1])
    lam = np.array([0.6, 0.9, 0.5, 0.75])
    w = lam.reshape((-1,) + (1,) * len(shape))
    x = (w * parents[ia] + (1 - w) * parents[ib]).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 3, 2])
    return parents, MixedSamples(x=x, lam=lam, index_a=ia, index_b=ib, sample_id_a=ia, sample_id_b=ib,
                                 label_a=labels[ia], label_b=labels[ib], spec="x:test",
                                 params=AugmentParams(), input_kind=kind, class_names=("0", "1", "2", "3"))


@pytest.mark.parametrize("kind", ["image", "signal"])
def test_gallery_items_and_figures(kind):
    from calibviz.plots.soft_labels import (
        class_pair_heatmap,
        gallery_item_figure,
        kendall_tau_distributions,
        violations_vs_lambda,
    )

    parents, mix = _fake_mix(kind)
    z = np.array([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 1.0, 0.0], [0.0, 0.0, 4.0, 0.0], [1.0, 2.0, 0.0, 0.0]])
    params = ViolationParams(n_lambda_bins=5, temperature=2.0)
    res = order_violations(z, mix.label_a, mix.label_b, mix.lam, params)
    idx = worst_violations(res, k=3)
    items = gallery_items(mix, parents, z, idx, res, class_names=mix.class_names)
    assert [it.index for it in items] == list(idx)
    it: GalleryItem = items[0]
    np.testing.assert_array_equal(it.x_a, parents[mix.index_a[it.index]])
    np.testing.assert_allclose(it.after, corrected_soft_labels(z[[it.index]], mix.label_a[[it.index]],
                                                               mix.label_b[[it.index]], 2.0)[0])
    fig = gallery_item_figure(it)
    bars = [tr for tr in fig.data if tr.type == "bar"]
    np.testing.assert_allclose(bars[1].y, it.after)
    assert len([tr for tr in fig.data if tr.type in ("heatmap", "scatter")]) == 3  # mixed + 2 parents

    line = violations_vs_lambda({"t1": res, "t2": res})
    assert len(line.data) == 2
    np.testing.assert_allclose(np.asarray(line.data[0].y, dtype=float), res.by_lambda.violation_rate)
    heat = class_pair_heatmap(res, mix.class_names)
    np.testing.assert_allclose(np.asarray(heat.data[0].z, dtype=float), res.by_pair.violation_rate)
    hist = kendall_tau_distributions({"t1": res})
    assert float(np.sum(hist.data[0].y)) == pytest.approx(1.0)


def test_teacher_helpers_of_the_page():
    from calibviz.augment import TeacherOnMixed
    from calibviz.soft_labels import kendall_tau_bins, summary_row, teacher_violations, worst_gallery

    parents, mix = _fake_mix("image")
    z = np.array([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 1.0, 0.0], [0.0, 0.0, 4.0, 0.0], [1.0, 2.0, 0.0, 0.0]])
    mixed = TeacherOnMixed(logits=z, mix=mix, checkpoint_sha256="x", card={})
    params = ViolationParams(n_lambda_bins=5, temperature=2.0)
    res = teacher_violations(mixed, params)
    want = order_violations(z, mix.label_a, mix.label_b, mix.lam, params, n_classes=4)
    np.testing.assert_array_equal(res.per_sample.kendall_tau, want.per_sample.kendall_tau)
    assert res.by_pair.count.shape == (4, 4) and res.params == params
    items = worst_gallery(mixed, parents, res, 2)
    assert [it.index for it in items] == list(worst_violations(res, 2))
    assert items[0].class_names == mix.class_names and items[0].temperature == 2.0
    row = summary_row("CE", 2.0, res)
    assert row["teacher"] == "CE" and row["T"] == 2.0 and row["samples"] == 4
    assert row["any violation"] == pytest.approx(float(res.overall.violation_rate))
    assert row["KL(p ‖ p′) of the fix"] == pytest.approx(float(res.overall.correction_kl))
    # one bin per value of τ on the lattice of the 2C − 3 known pairs: 2C − 2 values
    c = 10
    lattice = np.array([2 * k / (2 * c - 3) - 1 for k in range(2 * c - 2)])
    edges = np.linspace(-1, 1, kendall_tau_bins(c) + 1)
    assert len(set(np.clip(np.searchsorted(edges, lattice, side="right") - 1, 0, kendall_tau_bins(c) - 1))) == 2 * c - 2

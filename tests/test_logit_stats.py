"""Logit statistics against hand-worked cases and scipy's KDE; distribution summaries and figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from calibviz.logit_stats import (
    KdeParams,
    SpreadChange,
    compute_logit_stats,
    concentration_rows,
    concentration_table,
    distilled_data_evidence,
    gaussian_kde,
    kde_bandwidth,
    logit_stats_from_arrays,
    masked_name,
    statistic_distributions,
    summarize_statistic,
)
from calibviz.plots.logits import distribution_figure
from calibviz.predictions import Predictions


def test_per_example_statistics_hand_worked():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 3.0, 3.5]])
    labels = np.array([0, 1, 2])
    s = logit_stats_from_arrays(logits, labels)
    z = math.exp(2) + math.exp(1) + 1
    p0 = [math.exp(2) / z, math.exp(1) / z, 1 / z]
    assert s.max_logit == pytest.approx([2.0, 0.0, 3.5])
    assert s.margin == pytest.approx([1.0, 0.0, 0.5])
    assert s.logit_norm == pytest.approx([math.sqrt(5), 0.0, math.sqrt(1 + 9 + 12.25)])
    assert s.max_prob[0] == pytest.approx(p0[0])
    assert s.max_prob[1] == pytest.approx(1 / 3)
    assert s.entropy[0] == pytest.approx(-sum(p * math.log(p) for p in p0))
    assert s.entropy[1] == pytest.approx(math.log(3))
    # argmax of a tie is the first index (0), so example 1 (label 1) is wrong
    assert s.correct.tolist() == [True, False, True]


def test_probability_only_predictions_use_log_probs():
    probs = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], dtype=np.float32)
    s = compute_logit_stats(Predictions(labels=np.array([0, 0]), probs=probs))
    assert s.max_logit == pytest.approx(np.log([0.7, 0.5]), rel=1e-6)
    assert s.max_prob == pytest.approx([0.7, 0.5], rel=1e-6)
    assert s.margin == pytest.approx([math.log(0.7 / 0.2), math.log(0.5 / 0.25)], rel=1e-6)
    assert s.correct.tolist() == [True, False]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="labels"):
        logit_stats_from_arrays(np.zeros((3, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="statistic"):
        logit_stats_from_arrays(np.zeros((3, 4)), np.zeros(3, dtype=int)).get("nope")


def test_kde_matches_scipy_and_bandwidth_rules():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(4, 0.5, 200)])
    grid = np.linspace(-4, 7, 101)
    bw = kde_bandwidth(x, "scott")
    ref = sps.gaussian_kde(x)  # scipy's default is Scott's factor times the sample std (ddof=1)
    assert bw == pytest.approx(float(np.sqrt(ref.covariance[0, 0])), rel=1e-10)
    assert gaussian_kde(x, grid, bw, chunk=64) == pytest.approx(ref(grid), rel=1e-9, abs=1e-12)
    # Silverman on 0..8: std (ddof=1) sqrt(7.5) is below IQR/1.34 = 4/1.34, so it is used
    assert kde_bandwidth(np.arange(9.0), "silverman") == pytest.approx(0.9 * math.sqrt(7.5) * 9 ** -0.2)
    # a heavy-tailed sample: IQR/1.34 is the smaller spread
    y = np.array([0.0, 1.0, 2.0, 3.0, 100.0])
    assert kde_bandwidth(y, "silverman") == pytest.approx(0.9 * (3.0 - 1.0) / 1.34 * 5 ** -0.2)


def test_summaries_share_edges_and_split_subsets():
    rng = np.random.default_rng(2)
    a = logit_stats_from_arrays(rng.normal(0, 3, (400, 5)), rng.integers(0, 5, 400))
    b = logit_stats_from_arrays(rng.normal(0, 1, (300, 5)), rng.integers(0, 5, 300))
    d = summarize_statistic({"a": a, "b": b}, "max_logit", KdeParams(bins=30, grid_size=400))
    assert d.edges.shape == (31,) and d.grid.shape == (400,)
    pooled = np.concatenate([a.max_logit, b.max_logit])
    assert d.edges[0] < pooled.min() and d.edges[-1] > pooled.max()
    for name, s in (("a", a), ("b", b)):
        subs = d.by_model[name]
        assert subs["all"].n == s.n
        assert subs["correct"].n + subs["wrong"].n == s.n
        assert subs["correct"].n == int(s.correct.sum())
        np.testing.assert_array_equal(subs["correct"].counts + subs["wrong"].counts, subs["all"].counts)
        assert float((subs["all"].density * np.diff(d.edges)).sum()) == pytest.approx(1.0)
        assert float(np.trapezoid(subs["all"].kde, d.grid)) == pytest.approx(1.0, abs=0.02)
        q = np.percentile(s.max_logit, [25, 75])
        assert subs["all"].iqr == pytest.approx(q[1] - q[0])
        assert subs["all"].std == pytest.approx(float(np.std(s.max_logit)))
        assert subs["wrong"].median == pytest.approx(float(np.median(s.max_logit[~s.correct])))
    # the wider model is less concentrated
    assert d.by_model["a"]["all"].std > d.by_model["b"]["all"].std
    rows = concentration_rows(d)
    assert len(rows) == 6 and {r["subset"] for r in rows} == {"all", "correct", "wrong"}


def test_empty_subset_gives_nan_numbers():
    s = logit_stats_from_arrays(np.array([[3.0, 0.0], [0.0, 2.0]]), np.array([0, 1]))
    d = summarize_statistic({"m": s}, "margin")
    wrong = d.by_model["m"]["wrong"]
    assert wrong.n == 0 and math.isnan(wrong.std) and wrong.counts.sum() == 0


def test_distribution_figure_overlays_dashed_in_base_colour():
    rng = np.random.default_rng(3)
    base = logit_stats_from_arrays(rng.normal(0, 2, (200, 4)), rng.integers(0, 4, 200))
    masked = logit_stats_from_arrays(rng.normal(0, 1, (200, 4)), rng.integers(0, 4, 200))
    d = summarize_statistic({"ce": base, "ce · mask 0.3": masked}, "entropy")
    fig = distribution_figure(d, "all", "both", overlays={"ce · mask 0.3": "ce"})
    lines = [t for t in fig.data if t.type == "scatter"]
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(lines) == 2 and len(bars) == 2
    assert lines[0].line.dash == "solid" and lines[1].line.dash == "dash"
    assert lines[0].line.color == lines[1].line.color
    np.testing.assert_allclose(np.asarray(lines[1].y), d.by_model["ce · mask 0.3"]["all"].kde, rtol=1e-6)
    with pytest.raises(ValueError, match="style"):
        distribution_figure(d, style="violin")


def test_statistic_distributions_of_named_predictions_and_the_page_table():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 300)
    preds = {"ce": Predictions(labels=labels, logits=rng.normal(0, 2, (300, 4))),
             masked_name("ce", 0.3): Predictions(labels=labels, logits=rng.normal(0, 1, (300, 4))),
             "ls": Predictions(labels=labels, logits=rng.normal(0, 3, (300, 4)))}
    assert list(preds)[1] == "ce · 30% masked"
    params = KdeParams(bins=20, bandwidth="silverman")
    d = statistic_distributions(preds, "max_logit", params)
    want = summarize_statistic({k: compute_logit_stats(p) for k, p in preds.items()}, "max_logit", params)
    assert list(d.by_model) == list(preds) and d.params == params
    np.testing.assert_array_equal(d.edges, want.edges)
    for k in preds:
        np.testing.assert_array_equal(d.by_model[k]["all"].kde, want.by_model[k]["all"].kde)

    rows = concentration_table(d, overlays={"ce · 30% masked": "ce"}, mask_ratio=0.3)
    assert list(rows[0]) == ["model", "inputs", "examples", "n", "mean", "median", "std", "IQR"]
    # subset-major, then the models' order; the overlay row names its base model and its inputs
    assert [(r["examples"], r["model"], r["inputs"]) for r in rows[:3]] == [
        ("all", "ce", "clean"), ("all", "ce", "30% masked"), ("all", "ls", "clean")]
    assert [r["examples"] for r in rows] == ["all"] * 3 + ["correct"] * 3 + ["wrong"] * 3
    masked_all = d.by_model["ce · 30% masked"]["all"]
    assert rows[1]["std"] == masked_all.std and rows[1]["IQR"] == masked_all.iqr and rows[1]["n"] == 300
    assert {r["inputs"] for r in concentration_table(d)} == {"clean"}


def test_distilled_data_evidence_text():
    changes = [SpreadChange("dm", "ce", -0.27, -0.3, 0.81, 0.97, "more concentrated"),
               SpreadChange("mdt", "ce", 0.05, -0.12, 0.79, 0.97, "mixed")]
    text = distilled_data_evidence("digits · test", changes, {"ce": "CE", "dm": "DM", "mdt": "MDT"}, "it holds.")
    nb = "\u00a0"
    assert text.split("\n") == [
        "**Does this zoo show the distilled-data effect?** Max logit, all examples of digits · test, computed now. "
        "Spread of each distilled-data model against the full-data **CE** (accuracy 0.97):",
        "",
        f"- **DM**: std{nb}−27{nb}%, IQR{nb}−30{nb}% →{nb}*more concentrated* (accuracy 0.81)",
        f"- **MDT**: std{nb}+5{nb}%, IQR{nb}−12{nb}% →{nb}*mixed* (accuracy 0.79)",
        "",
        "So it holds.",
    ]

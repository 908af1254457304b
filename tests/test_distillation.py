"""calibviz.distillation against independent computations: KL and entropy from scipy, agreement and ECE worked
with numpy, the paired bootstrap against a per-row mean bootstrap, and the cards' links on hand-made cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from calibviz.distillation import (
    fidelity,
    fidelity_rows,
    mean_intervals,
    soft_label_entropy,
    students_of,
    sweep_links,
    teacher_of,
    teachers,
)
from calibviz.findings import distillation_claims
from calibviz.metrics import Bootstrap, paired_difference
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry


def _preds(logits: np.ndarray, labels: np.ndarray, name: str = "m") -> Predictions:
    return Predictions(labels=labels, logits=logits.astype(np.float32), meta={"name": name})


def _numpy_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Equal-width ECE with bins closed on the right, by hand."""
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return total


@pytest.fixture
def pair() -> tuple[Predictions, Predictions]:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    zt = rng.normal(size=(400, 5)) + 3.0 * np.eye(5)[labels]
    zs = zt * 0.6 + rng.normal(scale=0.8, size=(400, 5))
    return _preds(zt, labels, "teacher"), _preds(zs, labels, "student")


def test_fidelity_rows_match_scipy(pair: tuple[Predictions, Predictions]) -> None:
    t, s = pair
    agree, kl = fidelity_rows(t, s)
    pt, ps = softmax(t.logits.astype(np.float64), 1), softmax(s.logits.astype(np.float64), 1)
    np.testing.assert_array_equal(agree, (pt.argmax(1) == ps.argmax(1)).astype(float))
    np.testing.assert_allclose(kl, entropy(pt, ps, axis=1), rtol=1e-9, atol=1e-12)
    # a model agrees with itself everywhere at zero divergence
    same_agree, same_kl = fidelity_rows(t, t)
    assert same_agree.all() and np.allclose(same_kl, 0.0)


def test_kl_worked_by_hand() -> None:
    """One row: p_t = (0.5, 0.5), p_s = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3)."""
    t = _preds(np.log(np.array([[0.5, 0.5]])), np.array([0]))
    s = _preds(np.log(np.array([[0.25, 0.75]])), np.array([0]))
    agree, kl = fidelity_rows(t, s)
    assert agree[0] == 0.0 or agree[0] == 1.0
    assert kl[0] == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3), rel=1e-6)


def test_fidelity_values_and_intervals(pair: tuple[Predictions, Predictions]) -> None:
    t, s = pair
    f = fidelity(t, s, n_bins=15, bootstrap=Bootstrap(n_boot=100, seed=1))
    pt, ps = softmax(t.logits.astype(np.float64), 1), softmax(s.logits.astype(np.float64), 1)
    assert f.n == 400
    assert f.agreement.value == pytest.approx(float((pt.argmax(1) == ps.argmax(1)).mean()))
    assert f.kl.value == pytest.approx(float(entropy(pt, ps, axis=1).mean()), rel=1e-9)
    assert f.accuracy.value == pytest.approx(float((ps.argmax(1) == s.labels).mean()))
    assert f.teacher_accuracy.value == pytest.approx(float((pt.argmax(1) == t.labels).mean()))
    assert f.ece.value == pytest.approx(_numpy_ece(ps, s.labels), abs=1e-6)
    assert f.nll.value == pytest.approx(float(-np.log(ps[np.arange(400), s.labels]).mean()), rel=1e-5)
    for e in (f.agreement, f.kl, f.accuracy, f.ece, f.nll, f.teacher_ece):
        assert e.low <= e.value <= e.high and e.low < e.high
    js = f.to_json()
    assert set(js) >= {"n", "agreement", "kl", "accuracy", "ece", "nll", "teacher_accuracy", "ece_convention"}
    assert js["kl"]["value"] == f.kl.value


def test_fidelity_refuses_different_rows(pair: tuple[Predictions, Predictions]) -> None:
    t, s = pair
    with pytest.raises(ValueError, match="different labels"):
        fidelity_rows(t, Predictions(labels=np.roll(s.labels, 1), logits=s.logits))
    with pytest.raises(ValueError, match="same data"):
        fidelity_rows(t, s.subset(np.arange(10)))


def test_paired_difference_of_accuracy_is_the_mean_of_row_differences(pair: tuple[Predictions, Predictions]) -> None:
    """The metric kernel's paired bootstrap of accuracy equals a plain bootstrap of the per-row differences of
    correctness on the same seeded resamples; a model against itself differs by exactly 0."""
    t, s = pair
    boot = Bootstrap(n_boot=150, seed=7)
    pt, ps = t.probabilities(), s.probabilities()
    d = paired_difference(ps, pt, s.labels, "accuracy", bootstrap=boot)
    rows = (ps.argmax(1) == s.labels).astype(float) - (pt.argmax(1) == t.labels).astype(float)
    (m,) = mean_intervals(rows, boot)
    assert d.value == pytest.approx(m.value)
    assert (d.low, d.high) == pytest.approx((m.low, m.high))
    assert d.sign == (1 if d.low > 0 else -1 if d.high < 0 else 0)
    same = paired_difference(pt, pt, t.labels, "ece", bootstrap=boot)
    assert (same.value, same.low, same.high, same.sign) == (0.0, 0.0, 0.0, 0)
    with pytest.raises(ValueError, match="unknown"):
        paired_difference(pt, ps, t.labels, "accurracy")


def test_soft_label_entropy_against_scipy() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(scale=4.0, size=(200, 10))
    curve = soft_label_entropy(z, (1.0, 4.0, 1000.0))
    assert curve.mean[0] == pytest.approx(entropy(softmax(z, 1), axis=1).mean())
    assert curve.mean[1] == pytest.approx(entropy(softmax(z / 4, 1), axis=1).mean())
    assert np.all(np.diff(curve.mean) > 0)  # softer labels at higher T
    assert curve.mean[-1] == pytest.approx(np.log(10), abs=1e-3) and curve.max_entropy == pytest.approx(np.log(10))
    assert np.all(curve.q25 <= curve.q75)
    with pytest.raises(ValueError):
        soft_label_entropy(z, (0.0,))


def _entry(name: str, recipe: dict | None = None, teacher: dict | None = None, arch: str = "mlp") -> ModelEntry:
    card = {"recipe": recipe or {"loss": "ce"}}
    if teacher:
        card["teacher"] = teacher
    return ModelEntry(name=f"d/{name}", title=name, dataset="d", recipe=name, kind="checkpoint", path=Path(name),
                      arch=arch, card=card)


def test_students_of_follow_the_cards() -> None:
    kd = {"loss": "kd", "kd_teacher": "ce", "kd_alpha": 1.0}
    entries = [
        _entry("ce"),
        _entry("kd_t1", {**kd, "kd_temperature": 1.0}, {"name": "d/ce"}, "small"),
        _entry("kd_t4", {**kd, "kd_temperature": 4.0}, {"name": "d/ce"}, "small"),
        _entry("kd_mix", {**kd, "kd_temperature": 4.0, "mixup_alpha": 0.4}, {"name": "d/ce"}, "small"),
        _entry("ta", {**kd, "kd_temperature": 4.0}, {"name": "d/ce"}, "mid"),
        _entry("takd", {**kd, "kd_teacher": "ta", "kd_temperature": 4.0}, {"name": "d/ta"}, "small"),
        _entry("peer"),
        _entry("online", {"loss": "bdkd"}, {"name": "d/peer", "mode": "online"}, "small"),
        _entry("ls"),
    ]
    assert [e.name for e in teachers(entries)] == ["d/ce", "d/ta", "d/peer"]
    links = students_of(entries[0], entries)
    assert [lk.student.name for lk in links] == ["d/kd_t1", "d/kd_t4", "d/kd_mix", "d/ta", "d/takd"]
    assert links[3].assistant and links[3].relation == "offline KD, T = 4 (assistant)"
    takd = links[-1]
    assert takd.via == ("d/ta",) and "via d/ta" in takd.relation and takd.temperature == 4.0
    assert [lk.student.name for lk in sweep_links(links)] == ["d/kd_t1", "d/kd_t4"]  # plain KD, one arch, 2 T
    (online,) = students_of(entries[6], entries)
    assert online.mode == "online" and online.temperature is None and "online" in online.relation
    assert students_of(entries[-1], entries) == [] and teacher_of(entries[-1]) is None


def _family(n: int = 2000, gap: float = 0.0, seed: int = 0) -> dict[str, Predictions]:
    """Zoo-named predictions on the same rows: each model is right with its own probability; the LS teachers'
    students are `gap` less accurate at every T."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    u = rng.random(n)

    def model(acc: float) -> Predictions:
        pred = np.where(u < acc, labels, (labels + 1) % 4)
        return _preds(np.eye(4)[pred] * 3.0, labels)

    out = {"ce": model(0.9), "ls": model(0.9)}
    for t in (1, 2, 4, 8):
        out[f"kd_ce_t{t}"] = model(0.85)
        out[f"kd_ls_t{t}"] = model(0.85 - gap)
    return out


def test_claims_follow_the_differences() -> None:
    worse = {c.key: c for c in distillation_claims(_family(gap=0.1), bootstrap=Bootstrap(n_boot=100))}
    assert worse["ls_teachers_distil_worse"].verdict == "agrees"
    assert "T = 8" in worse["ls_teachers_distil_worse"].measured
    assert worse["ls_fine_at_t1_diffuse_at_high_t"].verdict == "does not agree"  # worse at T = 1 too
    assert worse["assistants_help_small_students"].verdict == "not measurable"
    assert "takd_ce" in worse["assistants_help_small_students"].measured
    better = {c.key: c for c in distillation_claims(_family(gap=-0.1), bootstrap=Bootstrap(n_boot=100))}
    assert better["ls_teachers_distil_worse"].verdict == "does not agree"
    same = {c.key: c for c in distillation_claims(_family(gap=0.0), bootstrap=Bootstrap(n_boot=100))}
    assert same["ls_teachers_distil_worse"].verdict == "not shown"
    d = same["ls_teachers_distil_worse"].differences[0]
    assert d.value == 0.0 and d.low == 0.0 and d.high == 0.0
    assert set(same["ls_teachers_distil_worse"].to_json()) == {"key", "source", "claim", "measured", "verdict",
                                                                "differences"}


def test_the_verdict_rule_of_several_differences() -> None:
    from calibviz.findings import _expected

    rule = _expected([1, -1])
    assert rule([1, -1]) == "agrees"
    assert rule([1, 1]) == "in part" and rule([1, 0]) == "in part"
    assert rule([-1, 1]) == "does not agree" and rule([-1, 0]) == "does not agree"
    assert rule([0, 0]) == "not shown"

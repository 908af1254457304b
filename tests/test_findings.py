"""The verdicts on published claims in calibviz.findings, each branch on numbers worked by hand: how a model's
confidence reads (Overview), whether distilled-data models have more concentrated max logits (Logits), which model
is tightest, whether an R² change agrees with a claim, and which models are most alike (Features)."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz.findings import (
    CALIBRATED_BAND,
    AlikePairs,
    Finding,
    Tightest,
    agreement,
    alike_pairs,
    ce_student_separation,
    confidence_reading,
    distilled_data_finding,
    label_smoothing_separation,
    ls_student_diffusion,
    separation_findings,
    teacher_student_cka,
    tightest_spread,
)
from calibviz.logit_stats import SpreadChange

NAN = float("nan")

# ------------------------------------------------------------------------------------- confidence reading


def test_confidence_reading_uses_a_band_of_one_point_around_accuracy() -> None:
    assert CALIBRATED_BAND == 0.01
    assert confidence_reading(0.95, 0.90) == "over-confident"      # +0.05
    assert confidence_reading(0.85, 0.90) == "under-confident"     # −0.05
    assert confidence_reading(0.905, 0.90) == "calibrated"         # +0.005, inside the band
    assert confidence_reading(0.895, 0.90) == "calibrated"
    assert confidence_reading(0.92, 0.90, band=0.05) == "calibrated"


# ------------------------------------------------------------------------------------- distilled-data claim


def _change(model: str, verdict: str) -> SpreadChange:
    return SpreadChange(model=model, reference="ce", std_change=-0.2, iqr_change=-0.2, accuracy=0.8,
                        reference_accuracy=0.9, verdict=verdict)


def test_distilled_data_finding_each_branch() -> None:
    held = distilled_data_finding([_change("dm", "more concentrated"), _change("mdt", "more concentrated")])
    assert held.verdict == "holds" and "**holds**" in held.text
    none = distilled_data_finding([_change("dm", "about the same"), _change("mdt", "more spread out")])
    assert none.verdict == "does not show" and "not more concentrated" in none.text
    part = distilled_data_finding([_change("dm", "more concentrated"), _change("mdt", "mixed")])
    assert part.verdict == "holds in part" and "only in part" in part.text
    with pytest.raises(ValueError, match="at least one"):
        distilled_data_finding([])

# ------------------------------------------------------------------------------------- tightest spread


def test_tightest_spread_takes_the_smallest_finite_spread_per_split() -> None:
    got = tightest_spread({"train": {"CE": 0.5, "LS": 0.2}, "test": {"CE": 0.3, "LS": NAN}})
    assert got == Tightest((("train", "LS", 0.2), ("test", "CE", 0.3)),
                           "Tightest here — train: **LS** (0.200); test: **CE** (0.300).")


def test_tightest_spread_skips_splits_without_numbers_and_breaks_ties_by_order() -> None:
    got = tightest_spread({"train": {"A": 0.25, "B": 0.25, "C": 0.4}, "test": {"A": NAN, "B": NAN, "C": NAN}})
    assert got is not None and got.per_split == (("train", "A", 0.25),)
    assert got.text == "Tightest here — train: **A** (0.250)."


def test_tightest_spread_says_nothing_for_one_model_or_no_numbers() -> None:
    assert tightest_spread({"train": {"CE": 0.5}, "test": {"CE": 0.3}}) is None
    assert tightest_spread({"train": {"CE": NAN, "LS": NAN}}) is None
    assert tightest_spread({}) is None


# ------------------------------------------------------------------------------------- agreement rule


def test_agreement_with_a_claimed_rise() -> None:
    assert agreement([True, True], want_rise=True) == "agrees"
    assert agreement([False, False], want_rise=True) == "does not agree"
    assert agreement([True, False], want_rise=True) == "agrees on one split only"
    assert agreement([False, True], want_rise=True) == "agrees on one split only"


def test_agreement_with_a_claimed_fall_and_nan() -> None:
    assert agreement([False, False], want_rise=False) == "agrees"
    assert agreement([True, True], want_rise=False) == "does not agree"
    assert agreement([False, True], want_rise=False) == "agrees on one split only"
    assert agreement([NAN > 0.3, NAN > 0.3], want_rise=False) == "agrees"  # a NaN never rises


# ------------------------------------------------------------------------------- class separation claims


def test_label_smoothing_separation_each_branch() -> None:
    up = label_smoothing_separation((0.30, 0.25), (0.45, 0.40), "test")
    assert up == Finding("agrees", "**CE → LS.** Müller et al. (2019) and Kornblith et al. (2021): label smoothing "
                                   "increases class separation, so LS should score higher. Here R² goes 0.300 → "
                                   "0.450 on train and 0.250 → 0.400 on test: this agrees.")
    down = label_smoothing_separation((0.45, 0.40), (0.30, 0.25), "val")
    assert down.verdict == "does not agree"
    assert down.text.endswith("Here R² goes 0.450 → 0.300 on train and 0.400 → 0.250 on val: this does **not** "
                              "agree.")
    mixed = label_smoothing_separation((0.30, 0.40), (0.45, 0.25), "test")
    assert mixed.verdict == "agrees on one split only" and mixed.text.endswith(": this agrees on one split only.")
    same = label_smoothing_separation((0.3, 0.3), (0.3, 0.3), "test")  # equal is not higher
    assert same.verdict == "does not agree"


def test_ls_student_diffusion_each_branch() -> None:
    drop = ls_student_diffusion((0.50, 0.45), (0.40, 0.35), "test")
    assert drop == Finding("agrees", "**LS teacher's students, T=1 → T=4.** Chandrasegaran et al. (2022): at a "
                                     "higher temperature an LS teacher's student diffuses toward similar classes, so "
                                     "its separation should drop. Here R² goes 0.500 → 0.400 on train and 0.450 → "
                                     "0.350 on test: this agrees.")
    rise = ls_student_diffusion((0.40, 0.35), (0.50, 0.45), "test")
    assert rise.verdict == "does not agree"
    assert rise.text.endswith(": this does **not** agree (the predicted diffusion does not show in this zoo).")
    mixed = ls_student_diffusion((0.40, 0.45), (0.50, 0.35), "test")
    assert mixed.verdict == "agrees on one split only" and mixed.text.endswith("agrees on one split only.")


def test_ce_student_separation_states_no_claim() -> None:
    got = ce_student_separation((0.5, 0.4), (0.6, 0.3), "test")
    assert got == Finding("no claim", "**CE teacher's students, T=1 → T=4.** No diffusion is predicted for a CE "
                                      "teacher. Here R² goes 0.500 → 0.600 on train and 0.400 → 0.300 on test.")


def test_separation_findings_cover_the_pairs_present_in_order() -> None:
    r2 = {"kd_ce_t4": (0.6, 0.3), "ls": (0.45, 0.40), "ce": (0.30, 0.25), "kd_ce_t1": (0.5, 0.4), "kd_ls_t1": (1, 1)}
    got = separation_findings(r2, "test")
    assert [f.verdict for f in got] == ["agrees", "no claim"]  # no kd_ls_t4: that pair is skipped
    assert got[0] == label_smoothing_separation((0.30, 0.25), (0.45, 0.40), "test")
    assert got[1] == ce_student_separation((0.5, 0.4), (0.6, 0.3), "test")
    assert separation_findings({"ce": (0.3, 0.3)}, "test") == []


# ------------------------------------------------------------------------------------------ CKA claims


def test_alike_pairs_name_the_most_and_least_alike() -> None:
    cka = np.array([[1.0, 0.9, 0.4], [0.9, 1.0, 0.6], [0.4, 0.6, 1.0]])
    got = alike_pairs(cka, ["A", "B", "C"])
    assert got == AlikePairs((0.9, "A", "B"), (0.4, "A", "C"), "Here the most alike pair is **A** and **B** "
                                                               "(0.900), the least alike **A** and **C** (0.400).")
    two = alike_pairs(np.array([[1.0, 0.8], [0.8, 1.0]]), ["CE", "LS"])
    assert two == AlikePairs((0.8, "CE", "LS"), None, "Here the most alike pair is **CE** and **LS** (0.800).")
    tie = alike_pairs(np.array([[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]]), ["a", "b", "c"])
    assert tie.most == (0.5, "b", "c") and tie.least == (0.5, "a", "b")  # ties broken by the names
    with pytest.raises(ValueError, match="two models"):
        alike_pairs(np.eye(1), ["A"])


def test_teacher_student_cka_each_verdict() -> None:
    # rows: ce, kd_ce_t1, kd_ce_t4, ls, kd_ls_t1, kd_ls_t4
    cka = np.eye(6)
    cka[0, 1], cka[0, 2] = 0.8, 0.6
    cka[3, 4], cka[3, 5] = 0.55, 0.7
    recipes = ["ce", "kd_ce_t1", "kd_ce_t4", "ls", "kd_ls_t1", "kd_ls_t4"]
    got = teacher_student_cka(cka, recipes)
    assert got == [Finding("T=1 closer", "Students of the CE teacher, CKA to it: **0.800** at T=1, **0.600** at T=4."),
                   Finding("T=4 closer", "Students of the LS teacher, CKA to it: **0.550** at T=1, **0.700** at T=4.")]
    cka[0, 2] = 0.8
    assert teacher_student_cka(cka[:3, :3], recipes[:3])[0].verdict == "equally close"
    assert teacher_student_cka(cka[:2, :2], ["ce", "kd_ce_t1"]) == []  # the T=4 student is not compared
    assert teacher_student_cka(np.eye(2), ["ce", "ls"]) == []

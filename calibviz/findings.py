"""Verdicts on the research's claims, read off our own numbers: what a page says in words about what it shows.

Each function is pure: numbers in, a verdict word and a sentence out, with the rule it applies in its docstring,
so the words a student reads are tested like any metric. Pages only print them. A claim that does not show on a
model is said not to show; no threshold here is tuned to make one appear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from calibviz.logit_stats import SpreadChange

CALIBRATED_BAND = 0.01  # |mean confidence − accuracy| within this reads as calibrated on average


@dataclass(frozen=True)
class Finding:
    """A verdict on one claim: a short word for tables (`holds`, `does not show`, …) and the sentence to print."""

    verdict: str
    text: str


def confidence_reading(mean_confidence: float, accuracy: float, band: float = CALIBRATED_BAND) -> str:
    """How a model's average confidence reads against its accuracy: over-confident when confidence exceeds accuracy
    by more than `band`, under-confident when it falls short by more, else calibrated (on average only)."""
    gap = mean_confidence - accuracy
    return "over-confident" if gap > band else "under-confident" if gap < -band else "calibrated"


def distilled_data_finding(changes: Sequence[SpreadChange]) -> Finding:
    """Whether the distilled-data models' max logits are more concentrated than the full-data model's (the
    distilled-data claim): holds when every model's spread verdict is 'more concentrated', does not show when none
    is, else holds only in part."""
    if not changes:
        raise ValueError("no spread changes to judge: the comparison needs at least one distilled-data model")
    concentrated = [c.verdict == "more concentrated" for c in changes]
    if all(concentrated):
        return Finding("holds", "the claim **holds** on this dataset: the distilled-data models' max logits are "
                                "more concentrated.")
    if not any(concentrated):
        return Finding("does not show", "the claim **does not show** on this dataset: the distilled-data models' "
                                        "max logits are not more concentrated than CE's.")
    return Finding("holds in part", "the claim **holds only in part** on this dataset (see each model's verdict).")


# ------------------------------------------------------------------------------ penultimate features (Features page)


@dataclass(frozen=True)
class Tightest:
    """The model whose classes sit tightest in the template plane, per split: (split, model, spread) rows, and the
    sentence to print."""

    per_split: tuple[tuple[str, str, float], ...]
    text: str


def tightest_spread(spreads: Mapping[str, Mapping[str, float]]) -> Tightest | None:
    """Which compared model has the smallest template-projection spread (tightest clusters, Müller et al. 2019) on
    each split, given spreads[split][model]: the minimum over the finite spreads; a split with none is skipped.
    None when fewer than two models are compared or no split has a finite spread."""
    models = {m for by_model in spreads.values() for m in by_model}
    if len(models) < 2:
        return None
    rows = []
    for split, by_model in spreads.items():
        finite = {m: v for m, v in by_model.items() if np.isfinite(v)}
        if finite:
            best = min(finite, key=finite.__getitem__)
            rows.append((split, best, float(finite[best])))
    if not rows:
        return None
    return Tightest(tuple(rows), "Tightest here — " + "; ".join(f"{s}: **{m}** ({v:.3f})" for s, m, v in rows) + ".")


def agreement(rises: Sequence[bool], want_rise: bool) -> str:
    """Whether a change measured on several splits agrees with a claim that it rises (`want_rise`) or falls:
    'agrees' when every split moves the claimed way, 'does not agree' when none does, else 'agrees on one split
    only' (the pages measure two splits). A NaN never rises, so against a claimed fall it counts as agreeing."""
    agree = [bool(r) == want_rise for r in rises]
    if all(agree):
        return "agrees"
    if not any(agree):
        return "does not agree"
    return "agrees on one split only"


def _r2_moves(before: tuple[float, float], after: tuple[float, float], held: str) -> str:
    return (f"R² goes {before[0]:.3f} → {after[0]:.3f} on train and {before[1]:.3f} → {after[1]:.3f} on {held}")


def _this(verdict: str) -> str:
    return "this does **not** agree" if verdict == "does not agree" else f"this {verdict}"


def label_smoothing_separation(ce: tuple[float, float], ls: tuple[float, float], held: str) -> Finding:
    """Müller et al. (2019) and Kornblith et al. (2021): label smoothing increases class separation, so the LS
    teacher's R² (train, held-out) should exceed the CE teacher's; the verdict is `agreement` of LS > CE on the two
    splits with a claimed rise."""
    v = agreement([ls[0] > ce[0], ls[1] > ce[1]], want_rise=True)
    return Finding(v, "**CE → LS.** Müller et al. (2019) and Kornblith et al. (2021): label smoothing increases "
                      f"class separation, so LS should score higher. Here {_r2_moves(ce, ls, held)}: {_this(v)}.")


def ls_student_diffusion(t1: tuple[float, float], t4: tuple[float, float], held: str) -> Finding:
    """Chandrasegaran et al. (2022): an LS teacher's student distilled at T=4 diffuses toward similar classes, so its
    R² (train, held-out) should be below the T=1 student's; the verdict is `agreement` of T=4 > T=1 with a claimed
    fall, and when it does not agree the sentence says the diffusion does not show."""
    v = agreement([t4[0] > t1[0], t4[1] > t1[1]], want_rise=False)
    return Finding(v, "**LS teacher's students, T=1 → T=4.** Chandrasegaran et al. (2022): at a higher temperature "
                      "an LS teacher's student diffuses toward similar classes, so its separation should drop. Here "
                      f"{_r2_moves(t1, t4, held)}: {_this(v)}"
                      + (" (the predicted diffusion does not show in this zoo)." if v == "does not agree" else "."))


def ce_student_separation(t1: tuple[float, float], t4: tuple[float, float], held: str) -> Finding:
    """A CE teacher's students at T=1 and T=4: no diffusion is predicted, so there is no verdict ('no claim'), only
    the numbers."""
    return Finding("no claim", "**CE teacher's students, T=1 → T=4.** No diffusion is predicted for a CE teacher. "
                               f"Here {_r2_moves(t1, t4, held)}.")


def separation_findings(r2: Mapping[str, tuple[float, float]], held: str) -> list[Finding]:
    """The separation findings for the zoo pairs present in r2[recipe] = (R² train, R² held-out): CE → LS teacher,
    then the LS teacher's and the CE teacher's students T=1 → T=4; a pair with a recipe missing is skipped."""
    out = []
    for a, b, finding in (("ce", "ls", label_smoothing_separation), ("kd_ls_t1", "kd_ls_t4", ls_student_diffusion),
                          ("kd_ce_t1", "kd_ce_t4", ce_student_separation)):
        if a in r2 and b in r2:
            out.append(finding(r2[a], r2[b], held))
    return out


@dataclass(frozen=True)
class AlikePairs:
    """The most and the least alike pair of models by CKA, as (CKA, name, name); `least` is None with one pair."""

    most: tuple[float, str, str]
    least: tuple[float, str, str] | None
    text: str


def alike_pairs(cka: np.ndarray, names: Sequence[str]) -> AlikePairs:
    """The pairs i < j of an (M, M) CKA matrix with the highest and the lowest CKA (ties broken by the names, in
    order), and the sentence naming them; M must be at least 2."""
    off = [(float(cka[i, j]), names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    if not off:
        raise ValueError("alike_pairs needs at least two models")
    hi, lo = max(off), min(off)
    text = f"Here the most alike pair is **{hi[1]}** and **{hi[2]}** ({hi[0]:.3f})"
    if len(off) == 1:
        return AlikePairs(hi, None, text + ".")
    return AlikePairs(hi, lo, text + f", the least alike **{lo[1]}** and **{lo[2]}** ({lo[0]:.3f}).")


def teacher_student_cka(cka: np.ndarray, recipes: Sequence[str]) -> list[Finding]:
    """For each zoo teacher (CE, then LS) compared together with its students at T=1 and T=4 (recipes[i] is the
    recipe of row i): the students' CKA to the teacher. Verdict: which student is closer to its teacher (higher CKA
    means it copied more of the representation), 'T=1 closer', 'T=4 closer' or 'equally close'."""
    at = {r: i for i, r in enumerate(recipes)}
    out = []
    for t in ("ce", "ls"):
        if all(r in at for r in (t, f"kd_{t}_t1", f"kd_{t}_t4")):
            c1, c4 = float(cka[at[t], at[f"kd_{t}_t1"]]), float(cka[at[t], at[f"kd_{t}_t4"]])
            v = "T=1 closer" if c1 > c4 else "T=4 closer" if c4 > c1 else "equally close"
            out.append(Finding(v, f"Students of the {t.upper()} teacher, CKA to it: **{c1:.3f}** at T=1, "
                                  f"**{c4:.3f}** at T=4."))
    return out

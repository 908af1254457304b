"""Verdicts on the research's claims, read off our own numbers: what a page says in words about what it shows.

Each function is pure: numbers in, a verdict word and a sentence out, with the rule it applies in its docstring,
so the words a student reads are tested like any metric. Pages only print them. A claim that does not show on a
model is said not to show; no threshold here is tuned to make one appear.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from calibviz.distillation import check_same_rows
from calibviz.logit_stats import SpreadChange
from calibviz.metrics import DEFAULT_BOOTSTRAP, Bootstrap, MetricEstimate, PairedDifference, paired_difference
from calibviz.predictions import Predictions
from calibviz.shift import CLEAN, ShiftCurves

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


# ------------------------------------------------------------------------ distillation claims (Distillation page)


Verdict = Literal["agrees", "in part", "does not agree", "not shown", "not measurable"]


@dataclass(frozen=True)
class Claim:
    """One published claim, the measurement that tests it here, and whether the measurement agrees."""

    key: str
    source: str
    claim: str
    measured: str
    verdict: Verdict
    differences: tuple[PairedDifference, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "source": self.source, "claim": self.claim, "measured": self.measured,
                "verdict": self.verdict,
                "differences": [{"metric": d.key, "value": d.value, "low": d.low, "high": d.high}
                                for d in self.differences]}


def _diff_text(label: str, d: PairedDifference, digits: int = 3) -> str:
    text = f"{label} {d.value:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"
    return f"{text})" if label.startswith("(") else text


def _expected(want: Sequence[int]) -> Callable[[Sequence[int]], Verdict]:
    """The usual rule, for differences expected to be +1 / −1: 'agrees' when every one has its expected sign with
    its interval clear of 0; 'does not agree' when none has it and one is clear of 0 on the other side; 'in part'
    when some have it and others do not; else 'not shown' (the intervals contain 0)."""
    def rule(got: Sequence[int]) -> Verdict:
        hits = [g == w for w, g in zip(want, got, strict=True)]
        against = any(g == -w for w, g in zip(want, got, strict=True) if g)
        if all(hits):
            return "agrees"
        if any(hits):
            return "in part"
        return "does not agree" if against else "not shown"
    return rule


def _worse_at_some_t(got: Sequence[int]) -> Verdict:
    """'Worse' at some temperature and better at none agrees; better at some and worse at none does not."""
    if -1 in got and 1 not in got:
        return "agrees"
    return "does not agree" if 1 in got and -1 not in got else "not shown"


def _fine_at_1_worse_at_high(got: Sequence[int]) -> Verdict:
    """No worse at T = 1 and worse at the highest T agrees; worse at T = 1, or better at the highest T, does not."""
    at_1, high = got
    if at_1 >= 0 and high == -1:
        return "agrees"
    return "does not agree" if at_1 == -1 or high == 1 else "not shown"


def distillation_claims(by_recipe: Mapping[str, Predictions], n_bins: int = 15,
                        bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> list[Claim]:
    """Each seed claim about distillation tested on the zoo's checkpoints of one dataset (`by_recipe`: the zoo recipe
    name → its predictions on the same test rows). Each rests on paired-bootstrap differences (95%) of a metric
    between two checkpoints; where a checkpoint it needs is absent it is 'not measurable'. Nothing is tuned: the
    differences are what the checkpoints give."""
    claims: list[Claim] = []

    def diff(a: str, b: str, key: str) -> PairedDifference:
        pa, pb = by_recipe[a], by_recipe[b]
        check_same_rows(pa, pb)
        return paired_difference(pa.probabilities(), pb.probabilities(), pa.labels, key, n_bins, bootstrap)

    def claim(key: str, source: str, text: str, tests: Sequence[tuple[str, str, str, str]],
              rule: Callable[[Sequence[int]], Verdict], context: Sequence[tuple[str, str, str, str]] = ()) -> None:
        """`tests`: (model a, model b, metric, label) for each difference a − b the claim rests on; `context`:
        differences shown beside them that the verdict does not use (the teachers' own gap, say)."""
        miss = sorted({m for a, b, _, _ in [*tests, *context] for m in (a, b) if m not in by_recipe})
        if miss:
            claims.append(Claim(key, source, text, f"needs the zoo checkpoints {', '.join(miss)} on this dataset",
                                "not measurable"))
            return
        ds = [diff(a, b, m) for a, b, m, _ in tests]
        cs = [diff(a, b, m) for a, b, m, _ in context]
        measured = "; ".join(_diff_text(label, d) for d, (*_, label) in zip([*ds, *cs], [*tests, *context],
                                                                            strict=True))
        claims.append(Claim(key, source, text, measured, rule([d.sign for d in ds]), tuple(ds)))

    temps = sorted(t for t in (_recipe_temperature(k) for k in by_recipe if k.startswith("kd_ce_t"))
                   if t is not None and f"kd_ls_t{t}" in by_recipe)
    high = temps[-1] if temps else 4
    claim("ls_teachers_distil_worse", "Müller, Kornblith & Hinton, NeurIPS 2019",
          "A label-smoothed teacher distils a worse student than a cross-entropy teacher.",
          [(f"kd_ls_t{t}", f"kd_ce_t{t}", "accuracy", f"student accuracy, LS − CE teacher, T = {t}:")
           for t in (temps or [4])], _worse_at_some_t,
          context=[("ls", "ce", "accuracy", "(the teachers themselves, LS − CE:")])
    claim("ls_fine_at_t1_diffuse_at_high_t", "Chandrasegaran et al., ICML 2022",
          "LS teachers are fine at T = 1; at higher T the student's classes diffuse and it falls behind.",
          [("kd_ls_t1", "kd_ce_t1", "accuracy", "student accuracy, LS − CE teacher, T = 1:"),
           (f"kd_ls_t{high}", f"kd_ce_t{high}", "accuracy", f"T = {high}:")], _fine_at_1_worse_at_high,
          context=[("ls", "ce", "accuracy", "(the teachers themselves, LS − CE:")])
    claim("kd_impedes_ldl_improves", "Hong et al., 2023",
          "Knowledge distillation impedes calibration; label-distribution learning with augmentation improves it.",
          [("kd_ce_t4", "ce", "ece", "ECE, KD student (T = 4) − CE teacher:"), ("ldl", "ce", "ece", "ECE, LDL − CE:")],
          _expected([1, -1]))
    claim("bdkd_better_calibrated", "Amara et al., 2022 (BD-KD)",
          "Online distillation with balanced forward and reverse KL gives better-calibrated students.",
          [("bdkd", "kd_ce_t1", "ece", "ECE, BD-KD student − offline KD student, T = 1:"),
           ("bdkd", "kd_ce_t4", "ece", "T = 4:")], _expected([-1, -1]))
    claim("assistants_help_small_students", "Mirzadeh et al., AAAI 2020",
          "A teacher assistant between a large teacher and a small student gives a better student.",
          [("takd_ce", "kd_ce_t4", "accuracy", "student accuracy, via assistant − direct (T = 4):")], _expected([1]))
    return claims


def _recipe_temperature(recipe: str) -> int | None:
    """The T of a zoo KD recipe name such as 'kd_ce_t4' (None for other names)."""
    tail = recipe.rsplit("_t", 1)[-1]
    return int(tail) if tail.isdigit() else None


# ------------------------------------------------------------------------------ calibration under shift (Shift page)


def _direction(first: MetricEstimate, last: MetricEstimate) -> str:
    """'rises' when the last interval lies wholly above the first, 'falls' when wholly below, else 'stays'
    (without intervals: any change counts)."""
    lo1, hi1 = (first.low, first.high) if first.low is not None else (first.value, first.value)
    lo2, hi2 = (last.low, last.high) if last.low is not None else (last.value, last.value)
    if lo2 > hi1:
        return "rises"
    if hi2 < lo1:
        return "falls"
    return "stays"


def shift_reading(curves: ShiftCurves, corruption: str, title: str | None = None) -> str:
    """One sentence on one model under one corruption, e.g. 'ECE of CE rises from 0.131 at severity 0 to 0.352 at
    severity 5 under noise; TS fitted on clean val lowers it to 0.021 at severity 0 but 0.204 at severity 5.'
    'rises' / 'falls' need the two bootstrap intervals apart, else it 'stays within its intervals'."""
    top = max(curves.severities)
    c0, c5 = curves.point(corruption, CLEAN), curves.point(corruption, top)
    b0, b5, a0, a5 = c0.before.ece, c5.before.ece, c0.after.ece, c5.after.ece
    move = _direction(b0, b5)
    verb = {"rises": "rises", "falls": "falls", "stays": "stays within its intervals,"}[move]
    who = title or curves.name
    head = (f"ECE of **{who}** {verb} from {b0.value:.3f} at severity 0 to {b5.value:.3f} at severity {top} under "
            f"{corruption}")
    ts0 = "lowers it" if a0.value < b0.value else "raises it"
    link = "but" if a5.value > a0.value else "and"
    worse = ", more than without TS" if a5.value > b5.value else ""
    return (f"{head} (accuracy {c0.before.accuracy.value:.3f} → {c5.before.accuracy.value:.3f}); TS fitted on clean "
            f"val (T = {curves.temperature:.3g}) {ts0} to {a0.value:.3f} at severity 0 {link} {a5.value:.3f} at "
            f"severity {top}{worse}.")


def shift_finding(curves: Mapping[str, ShiftCurves], corruptions: Sequence[str] | None = None) -> Finding:
    """Ovadia et al. (2019): calibration worsens as the shift grows, and temperature scaling fitted on clean
    validation data does not prevent it. Per (model, corruption) pair, ECE 'rises' when its bootstrap interval at
    the highest severity lies wholly above the one at severity 0 (`_direction`), before TS and after TS.
    `holds` when ECE rises both before and after TS for every pair, `does not show` when it rises for none (neither
    before nor after), else `holds in part`, naming the pairs where it does not. No threshold beyond the intervals."""
    if not curves:
        raise ValueError("no shift curves to judge")
    rows = []
    for label, c in curves.items():
        top = max(c.severities)
        for corr in corruptions if corruptions is not None else c.corruptions:
            if corr not in c.corruptions:
                continue
            p0, p5 = c.point(corr, CLEAN), c.point(corr, top)
            rows.append((label, corr, _direction(p0.before.ece, p5.before.ece) == "rises",
                         _direction(p0.after.ece, p5.after.ece) == "rises"))
    if not rows:
        raise ValueError("none of the chosen corruptions was measured")
    n = len(rows)
    before = sum(r[2] for r in rows)
    after = sum(r[3] for r in rows)
    counts = (f"ECE rises with severity (intervals apart) in {before} of {n} (model, corruption) pairs before TS "
              f"and in {after} of {n} after TS fitted on clean val.")
    claim = ("Ovadia et al. (2019) found that calibration worsens as the shift grows, and that temperature scaling "
             "fitted on clean validation data does not stop it.")
    if before == n and after == n:
        return Finding("holds", f"{claim} Here the finding **holds**: {counts}")
    if before == 0 and after == 0:
        return Finding("does not show", f"{claim} Here it **does not show**: {counts}")
    misses = [f"{label} ({corr}{'' if b else ', before TS'}{'' if a else ', after TS'})"
              for label, corr, b, a in rows if not (b and a)]
    return Finding("holds in part", f"{claim} Here it **holds only in part**: {counts} Not for: "
                                    + "; ".join(misses) + ".")

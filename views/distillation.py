"""Distillation: how closely each student follows its teacher, against the distillation temperature, example by
example, and what the zoo shows of the published claims."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from calibviz.app import cached, explain, guarded, predictions, selection
from calibviz.distillation import (
    EntropyCurve,
    Fidelity,
    fidelity,
    fidelity_rows,
    soft_label_entropy,
    students_of,
    sweep_links,
    teachers,
)
from calibviz.features import class_separation_for
from calibviz.findings import Claim, distillation_claims
from calibviz.metrics import Binning, MetricEstimate, ReliabilityBins, reliability_bins, top_label
from calibviz.plots.distillation import (
    confidence_scatter,
    students_figure,
    teacher_student_reliability,
    temperature_figure,
)
from calibviz.predictions import Predictions
from calibviz.sources import ModelEntry

KEY = "distillation"
SPLITS = ("train", "test")
DEFAULTS: dict[str, Any] = {f"{KEY}_bins": 15}


st.title("Distillation")
explain(
    "In **knowledge distillation** (Hinton et al. 2015) a small *student* is trained to copy a large *teacher*'s "
    "soft labels, softened by a temperature T: softmax(z/T) spreads probability over the classes the teacher finds "
    "similar, and that is what the student learns from. Stanton et al. (2021) asked whether students really copy "
    "their teachers: **fidelity** is the share of examples where the student's top class is the teacher's "
    "(agreement) and how far its probabilities are from the teacher's (KL divergence, 0 when they are equal). "
    "A student can be accurate without being faithful, and it inherits, improves or worsens the teacher's "
    "calibration. Pick a teacher: its students come from the checkpoints' cards (offline KD at several T, through "
    "a teacher assistant, or trained together online). Every number is measured here, with 95% bootstrap "
    "intervals, and the last table sets each published claim beside what these checkpoints show."
)


@cached
def _fidelity(teacher: Predictions, student: Predictions, n_bins: int) -> Fidelity:
    return fidelity(teacher, student, n_bins)


@cached
def _entropy(teacher: Predictions) -> EntropyCurve:
    return soft_label_entropy(teacher.scores())


@cached
def _separation(preds: Predictions) -> float:
    return class_separation_for(preds)


@cached
def _bins(preds: Predictions, n_bins: int) -> ReliabilityBins:
    conf, correct = top_label(preds.probabilities(), preds.labels)
    return reliability_bins(conf, correct, Binning(n_bins))


@cached
def _claims(by_recipe: tuple[tuple[str, Predictions], ...], n_bins: int) -> list[Claim]:
    return distillation_claims(dict(by_recipe), n_bins)


def _est(e: MetricEstimate) -> str:
    return e.text(space=" ")


def _table(names: list[str], relations: list[str], by_split: dict[str, list[Fidelity]]) -> pd.DataFrame:
    rows = []
    for i, name in enumerate(names):
        row = {"student": name, "how": relations[i]}
        for split, fids in by_split.items():
            f = fids[i]
            row |= {f"agreement ({split})": _est(f.agreement), f"KL ({split})": _est(f.kl)}
        f = by_split["test"][i]
        row |= {"accuracy (test)": _est(f.accuracy), "ECE (test)": _est(f.ece), "NLL (test)": _est(f.nll)}
        rows.append(row)
    return pd.DataFrame(rows)


def _sweeps(pool: list[ModelEntry], spec: Any, n_bins: int) -> None:
    """The temperature sweep of every teacher with plain-KD students at two or more T, side by side."""
    st.subheader("Against the distillation temperature T")
    sweeps: dict[str, list[tuple[float, Fidelity]]] = {}
    separation: dict[str, list[tuple[float, float]]] = {}
    entropy: dict[str, EntropyCurve] = {}
    test = spec.with_split("test")
    for t in teachers(pool):
        links = sweep_links(students_of(t, pool))
        if not links:
            continue
        tp = predictions(t, test)
        students = [(float(lk.temperature or 1.0), predictions(lk.student, test)) for lk in links]
        sweeps[t.title] = [(temp, _fidelity(tp, sp, n_bins)) for temp, sp in students]
        separation[t.title] = [(temp, _separation(sp)) for temp, sp in students]
        entropy[t.title] = _entropy(predictions(t, spec.with_split("train")))
    if not sweeps:
        st.info("No teacher here has plain KD students at two or more temperatures (the zoo's CE and LS teachers "
                "do: pick digits or mnist1d).")
        return
    st.plotly_chart(temperature_figure(sweeps, entropy, separation), width="stretch", key=f"{KEY}_sweep")
    st.caption("Each point is one student distilled at that T (soft labels only, no label loss), measured on the "
               "test split with its 95% interval. Müller et al. (2019) found label-smoothed teachers distil worse; "
               "Chandrasegaran et al. (2022) found them fine at T = 1 and worse at higher T, where the student's "
               "penultimate classes diffuse (lower class separation R², Kornblith et al. 2021, cosine distance, on "
               "the test split). The last panel is the teacher's soft-label entropy on the training inputs (mean and "
               "quartile band; the dashed line is log C, a uniform label): how much a higher T spreads the labels "
               "the student learns from.")


def _pair(teacher: ModelEntry, tp: Predictions, student: ModelEntry, sp: Predictions, n_bins: int) -> None:
    """The teacher's and one student's reliability overlaid, and their confidences example by example."""
    agree, _ = fidelity_rows(tp, sp)
    left, right = st.columns(2)
    left.plotly_chart(teacher_student_reliability({f"teacher: {teacher.title}": _bins(tp, n_bins),
                                                   f"student: {student.title}": _bins(sp, n_bins)}),
                      width="stretch", key=f"{KEY}_reliability")
    right.plotly_chart(confidence_scatter(tp.probabilities().max(1), sp.probabilities().max(1), agree,
                                          teacher.title, student.title), width="stretch", key=f"{KEY}_scatter")
    st.caption(f"Test split, {n_bins} equal-width bins. Left: a curve below the diagonal is over-confident. Right: "
               "points above the diagonal are examples where the student is more confident than its teacher; red "
               "ones are where it picks another class.")


def _claims_section(pool: list[ModelEntry], spec: Any, n_bins: int) -> None:
    st.subheader("What these checkpoints show of the published claims")
    zoo = [e for e in pool if e.origin == "zoo"]
    if not zoo:
        st.info("The claims are tested on the shipped zoo's checkpoints; pick digits or mnist1d.")
        return
    by_recipe = tuple((e.recipe, predictions(e, spec.with_split("test"))) for e in zoo)
    claims = _claims(by_recipe, n_bins)
    df = pd.DataFrame([{"claim": c.claim, "source": c.source, "measured here (paired difference, 95% interval)":
                        c.measured, "verdict": c.verdict} for c in claims])
    st.table(df.set_index("claim"))
    counts = ", ".join(f"{sum(c.verdict == v for c in claims)} {v}" for v in dict.fromkeys(c.verdict for c in claims))
    st.caption(f"Of {len(claims)} claims on {spec.name}, test split, computed now: {counts}. A claim agrees only "
               "when every difference it rests on has the claimed sign with its 95% paired-bootstrap interval clear "
               "of zero ('in part': some do); 'not shown' means the intervals contain zero. These are small models "
               "on small data, one seed each: a claim not shown here is not refuted in general, and one shown is "
               "one seed.")


def body() -> None:
    sel = selection()
    if sel is None:
        return
    pool = list(sel.available)
    if len(pool) < 2:
        st.info("Distillation compares two or more models on the same rows: pick a dataset that has them.")
        return
    spec = sel.data
    heads = teachers(pool) or pool
    by_name = {e.name: e for e in pool}
    c1, c2, c3 = st.columns([2, 4, 1])
    tname = c1.selectbox("Teacher", [e.name for e in heads], key=f"{KEY}_teacher",
                         format_func=lambda n: by_name[n].title,
                         help="The models some other model's card names as its teacher; without any, every model.")
    teacher = by_name[tname]
    links = {lk.student.name: lk for lk in students_of(teacher, pool)}
    others = [e.name for e in pool if e.name != tname]
    skey = f"{KEY}_students_{tname}"
    if skey not in st.session_state:
        st.session_state[skey] = list(links)
    chosen = c2.multiselect("Students", others, key=skey, format_func=lambda n: by_name[n].title,
                            help="From the cards: every model distilled from this teacher, directly, through an "
                                 "assistant or online. Add any other model of the same data to compare it too.")
    n_bins = int(c3.number_input("ECE bins", 5, 50, key=f"{KEY}_bins"))
    if not chosen:
        st.info(f"{teacher.title} has no students in the cards: add models under Students to compare them with it."
                if not links else "No students selected: pick some under Students.")
    else:
        st.subheader(f"Students of {teacher.title}")
        preds = {s: {split: predictions(by_name[s], spec.with_split(split)) for split in SPLITS} for s in chosen}
        tp = {split: predictions(teacher, spec.with_split(split)) for split in SPLITS}
        by_split = {split: [_fidelity(tp[split], preds[s][split], n_bins) for s in chosen] for split in SPLITS}
        titles = [by_name[s].title for s in chosen]
        relations = [links[s].relation if s in links else "not from the cards" for s in chosen]
        st.dataframe(_table(titles, relations, by_split), hide_index=True, width="stretch", key=f"{KEY}_table")
        f0 = by_split["test"][0]
        st.caption(f"Agreement: share of examples whose top class is the teacher's; KL: mean KL(p_teacher ‖ "
                   f"p_student) at T = 1, in nats. The teacher on test: accuracy {_est(f0.teacher_accuracy)}, ECE "
                   f"{_est(f0.teacher_ece)}, NLL {_est(f0.teacher_nll)}. ECE: {f0.convention}. Intervals: 95% "
                   "percentile bootstrap, 200 seeded resamples of the rows.")
        st.plotly_chart(students_figure(titles, by_split), width="stretch", key=f"{KEY}_students_chart")
        if st.session_state.get(f"{KEY}_pair") not in chosen:
            st.session_state[f"{KEY}_pair"] = chosen[0]
        pick = st.selectbox("Student to compare example by example", chosen, key=f"{KEY}_pair",
                            format_func=lambda n: by_name[n].title)
        _pair(teacher, tp["test"], by_name[pick], preds[pick]["test"], n_bins)
    _sweeps(pool, spec, n_bins)
    _claims_section(pool, spec, n_bins)


guarded(body, state=KEY, defaults=DEFAULTS)

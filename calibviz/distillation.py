"""Distillation: how closely a student follows its teacher, how calibrated it is, and what the zoo shows of the
published claims about both.

- `fidelity`: top-1 agreement and mean KL(p_t ‖ p_s) at T = 1 (Stanton et al. 2021), with the student's and the
  teacher's accuracy, ECE and NLL, each with a seeded percentile-bootstrap interval;
- `soft_label_entropy`: the entropy of the teacher's softened labels softmax(z/T) against T;
- `students_of` / `teachers`: the distillation links the checkpoint cards record (offline KD, a teacher-assistant
  chain, online pairs);
Pure functions of `Predictions` and cards; the Distillation page and `distill-report` draw and print them. The
verdicts on the published claims are in `calibviz.findings` (`distillation_claims`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import log_softmax

from calibviz.metrics import (
    DEFAULT_BOOTSTRAP,
    Binning,
    Bootstrap,
    MetricEstimate,
    _resample_weights,
    calibration_metrics,
)
from calibviz.predictions import PROB_EPS, Predictions
from calibviz.sources import ModelEntry

DEFAULT_TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0)


@dataclass(frozen=True)
class Fidelity:
    """How a student follows its teacher on one split, and how both fare against the labels."""

    n: int
    agreement: MetricEstimate
    kl: MetricEstimate
    accuracy: MetricEstimate
    ece: MetricEstimate
    nll: MetricEstimate
    teacher_accuracy: MetricEstimate
    teacher_ece: MetricEstimate
    teacher_nll: MetricEstimate
    convention: str

    def to_json(self) -> dict[str, Any]:
        """Stable snake_case keys, each metric as {value, low, high}."""
        keys = ("agreement", "kl", "accuracy", "ece", "nll", "teacher_accuracy", "teacher_ece", "teacher_nll")
        return {"n": self.n, **{k: getattr(self, k).to_json() for k in keys}, "ece_convention": self.convention}


def log_probabilities(preds: Predictions) -> np.ndarray:
    """(N, C) float64 log-probabilities: log_softmax of the logits, or the log of the clipped probabilities."""
    if preds.logits is not None:
        return log_softmax(preds.logits.astype(np.float64), axis=1)
    return np.log(np.clip(preds.probs.astype(np.float64), PROB_EPS, 1.0))


def check_same_rows(teacher: Predictions, student: Predictions) -> None:
    """The two must be on the same rows: same count, classes and labels, and the same sample ids if both have them."""
    if teacher.n != student.n or teacher.n_classes != student.n_classes:
        raise ValueError(f"teacher {teacher.name!r} has {teacher.n} rows × {teacher.n_classes} classes and student "
                         f"{student.name!r} {student.n} × {student.n_classes}: they must be on the same data")
    if not np.array_equal(teacher.labels, student.labels):
        raise ValueError(f"teacher {teacher.name!r} and student {student.name!r} have different labels: they must "
                         "be on the same rows in the same order")
    if (teacher.sample_id is not None and student.sample_id is not None
            and not np.array_equal(teacher.sample_id, student.sample_id)):
        raise ValueError(f"teacher {teacher.name!r} and student {student.name!r} are on different sample ids")


def fidelity_rows(teacher: Predictions, student: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether the top-1 classes agree (float 0/1) and KL(p_t ‖ p_s) at T = 1, in nats."""
    check_same_rows(teacher, student)
    lt, ls = log_probabilities(teacher), log_probabilities(student)
    agree = (lt.argmax(1) == ls.argmax(1)).astype(np.float64)
    kl = np.einsum("ij,ij->i", np.exp(lt), lt - ls)
    return agree, np.maximum(kl, 0.0)


def mean_intervals(rows: np.ndarray, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> list[MetricEstimate]:
    """The mean of each row of `rows` (K, N) with its percentile-bootstrap interval, all K on the same resamples."""
    x = torch.as_tensor(np.atleast_2d(rows), dtype=torch.float64)
    reps = torch.cat([(w @ x.T) / w.sum(1, keepdim=True) for w in _resample_weights(x.shape[1], bootstrap,
                                                                                      x.device)]).numpy()
    q = (1 - bootstrap.level) / 2
    lo, hi = np.quantile(reps, q, axis=0), np.quantile(reps, 1 - q, axis=0)
    return [MetricEstimate(float(m), float(a), float(b)) for m, a, b in zip(x.mean(1).numpy(), lo, hi, strict=True)]


FIDELITY_METRICS = ("accuracy", "ece", "nll")


def _metric_estimates(preds: Predictions, n_bins: int, bootstrap: Bootstrap) -> dict[str, MetricEstimate]:
    ms = calibration_metrics(preds.probabilities(), preds.labels, n_bins, bootstrap, keys=FIDELITY_METRICS)
    return {k: ms.estimate(k) for k in FIDELITY_METRICS}


def fidelity(teacher: Predictions, student: Predictions, n_bins: int = 15,
             bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> Fidelity:
    """Agreement and KL(p_t ‖ p_s) at T = 1 of a student with its teacher on the same rows, and both models'
    accuracy, ECE (`n_bins` equal-width bins) and NLL, each with a seeded bootstrap interval."""
    agree, kl = fidelity_rows(teacher, student)
    a, k = mean_intervals(np.stack([agree, kl]), bootstrap)
    s, t = _metric_estimates(student, n_bins, bootstrap), _metric_estimates(teacher, n_bins, bootstrap)
    return Fidelity(n=student.n, agreement=a, kl=k, accuracy=s["accuracy"], ece=s["ece"], nll=s["nll"],
                    teacher_accuracy=t["accuracy"], teacher_ece=t["ece"], teacher_nll=t["nll"],
                    convention=Binning(n_bins).convention)


@dataclass(frozen=True)
class EntropyCurve:
    """The teacher's soft-label entropy H(softmax(z/T)) over rows, against T, in nats (log C is uniform)."""

    temperatures: np.ndarray
    mean: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    max_entropy: float


def soft_label_entropy(logits: np.ndarray, temperatures: Sequence[float] = DEFAULT_TEMPERATURES) -> EntropyCurve:
    """Mean and quartiles over rows of the entropy of softmax(z/T) for each T: how much the softened labels say
    beyond the top class (0 for one-hot, log C for uniform)."""
    z = np.asarray(logits, dtype=np.float64)
    ts = np.asarray(sorted(float(t) for t in temperatures), dtype=np.float64)
    if z.ndim != 2 or not len(ts) or (ts <= 0).any():
        raise ValueError("soft_label_entropy needs (N, C) logits and positive temperatures")
    mean, q25, q75 = [], [], []
    for t in ts:
        lp = log_softmax(z / t, axis=1)
        h = -(np.exp(lp) * lp).sum(1)
        mean.append(h.mean())
        q25.append(np.quantile(h, 0.25))
        q75.append(np.quantile(h, 0.75))
    return EntropyCurve(temperatures=ts, mean=np.array(mean), q25=np.array(q25), q75=np.array(q75),
                        max_entropy=float(np.log(z.shape[1])))


# ---------------------------------------------------------------------------------------------
# Who distils from whom: the cards' `teacher` field


Mode = Literal["offline", "online"]


@dataclass(frozen=True)
class DistillationLink:
    """One student of a teacher, as its card records it: the mode, the temperature, and the chain of assistants in
    between (empty for a direct student)."""

    student: ModelEntry
    teacher: str
    mode: Mode
    temperature: float | None
    via: tuple[str, ...] = ()
    assistant: bool = False  # the student is itself the teacher of others (a teacher assistant)

    @property
    def plain_kd(self) -> bool:
        """Offline KD on the teacher's soft labels alone (no mixup, target transform or extra loss): the students a
        temperature sweep compares."""
        r = self.student.card.get("recipe", {})
        return (self.mode == "offline" and not self.via and r.get("loss") == "kd"
                and not r.get("mixup_alpha") and not r.get("target_transform") and not r.get("extra_losses")
                and float(r.get("kd_alpha", 1.0)) == 1.0)

    @property
    def relation(self) -> str:
        """How the student was made, in words: 'KD, T = 4', 'KD, T = 4, via digits/ta_ce', 'online'."""
        if self.mode == "online":
            return "online (trained together)"
        loss = self.student.card.get("recipe", {}).get("loss", "kd")
        t = f", T = {self.temperature:g}" if self.temperature is not None else ""
        how = f"offline KD{t}" if loss == "kd" else f"{loss} on the teacher's outputs"
        via = f", via {' → '.join(self.via)}" if self.via else ""
        return f"{how}{via}{' (assistant)' if self.assistant else ''}"


def teacher_of(entry: ModelEntry) -> str | None:
    """The name of the model `entry` was distilled from, from its card (None for a model trained on labels)."""
    t = entry.card.get("teacher")
    if isinstance(t, dict) and isinstance(t.get("name"), str):
        return t["name"]
    kd = entry.card.get("recipe", {}).get("kd_teacher")
    return f"{entry.dataset}/{kd}" if isinstance(kd, str) and kd else None


def _mode(entry: ModelEntry) -> Mode:
    t = entry.card.get("teacher")
    return "online" if isinstance(t, dict) and t.get("mode") == "online" else "offline"


def _temperature(entry: ModelEntry) -> float | None:
    """The distillation temperature of an offline KD student's recipe, None for other models."""
    r = entry.card.get("recipe", {})
    t = r.get("kd_temperature")
    return float(t) if r.get("loss") == "kd" and isinstance(t, int | float) else None


def students_of(teacher: ModelEntry, entries: Sequence[ModelEntry]) -> list[DistillationLink]:
    """Every model distilled from `teacher`, directly or through assistants (the students of its students), in the
    order of `entries`; each once, with the chain it came through."""
    children: dict[str, list[ModelEntry]] = {}
    for e in entries:
        t = teacher_of(e)
        if t is not None and e.name != teacher.name:
            children.setdefault(t, []).append(e)
    out: list[DistillationLink] = []
    seen = {teacher.name}
    frontier: list[tuple[str, tuple[str, ...]]] = [(teacher.name, ())]
    while frontier:
        name, via = frontier.pop(0)
        for e in children.get(name, []):
            if e.name in seen:
                continue
            seen.add(e.name)
            out.append(DistillationLink(student=e, teacher=teacher.name, mode=_mode(e),
                                        temperature=_temperature(e), via=via, assistant=e.name in children))
            frontier.append((e.name, (*via, e.name)))
    order = {e.name: i for i, e in enumerate(entries)}
    return sorted(out, key=lambda link: (len(link.via), order.get(link.student.name, 0)))


def teachers(entries: Sequence[ModelEntry]) -> list[ModelEntry]:
    """The models some other model of `entries` names as its teacher, in the order of `entries`."""
    named = {teacher_of(e) for e in entries}
    return [e for e in entries if e.name in named]


def sweep_links(links: Sequence[DistillationLink]) -> list[DistillationLink]:
    """The plain-KD students of one architecture at two or more temperatures, by T: the temperature sweep."""
    plain = [link for link in links if link.plain_kd and link.temperature is not None]
    by_arch: dict[str, list[DistillationLink]] = {}
    for link in plain:
        by_arch.setdefault(link.student.arch, []).append(link)
    best = max(by_arch.values(), key=len, default=[])
    return sorted(best, key=lambda link: link.temperature or 0.0) if len({lk.temperature for lk in best}) > 1 else []


def distill_report(teacher: Predictions, students: Sequence[Predictions], n_bins: int = 15,
                   bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> dict[str, Any]:
    """The JSON of `distill-report`: the teacher's name, the rows, the conventions, and each student's `fidelity`
    (agreement, KL at T = 1, accuracy, ECE, NLL, each {value, low, high}), in the order given."""
    return {"teacher": teacher.name, "n": teacher.n, "ece_convention": Binning(n_bins).convention,
            "interval": f"{bootstrap.level:.0%} percentile bootstrap, {bootstrap.n_boot} resamples, seed "
                        f"{bootstrap.seed}",
            "students": [{"name": s.name, **fidelity(teacher, s, n_bins, bootstrap).to_json()} for s in students]}

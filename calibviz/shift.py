"""Calibration under distribution shift (Ovadia et al., NeurIPS 2019): accuracy, ECE and NLL against corruption
severity, before and after temperature scaling fitted once on the clean calibration split.

Inputs are Predictions: a model's on the clean `val` split (T is fitted there, by NLL), on the clean `test` split
(severity 0) and on the test split under each corruption at severities 1-5. `shift_curves` measures every one of
them with the kernels and seeded bootstrap resamples of `calibviz.metrics.calibration_metrics` (`shift_metrics`:
the numbers equal those of `calibviz report --split SPEC`), the same resampled rows before and after TS, and returns
a `ShiftCurves`: small frozen dataclasses, `to_json()` with stable snake_case keys. `shift_specs` names the data a
source offers for it (built-in data: noise, blur, shift; the user's image folders and tensor files: also jpeg and
contrast). `shift_table` and `shift_text_table` are the page's and the command line's tables; the verdict on the
published claim is `calibviz.findings.shift_finding`. Nothing here runs a model or imports Streamlit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from calibviz.calibrators import TemperatureScaling
from calibviz.data import CORRUPTIONS, SEVERITIES, DataSpec
from calibviz.metrics import (
    DEFAULT_BOOTSTRAP,
    Binning,
    Bootstrap,
    MetricEstimate,
    ReliabilityBins,
    calibration_metrics,
    nll,
)
from calibviz.predictions import Predictions
from calibviz.recalibration import top_label_bins

if TYPE_CHECKING:
    import pandas as pd

SHIFT_METRICS = ("accuracy", "ece", "nll")
"""The metrics measured at every severity, by their `calibviz report` keys."""
METRIC_LABELS = {"accuracy": "Accuracy", "ece": "ECE", "nll": "NLL"}
CALIBRATIONS = ("before", "after")
"""Before temperature scaling (the model as it is) and after it (T fitted on the clean val split)."""
CLEAN = 0
"""The severity of the clean test split, the start of every curve."""


# ---------------------------------------------------------------------------------------------
# Which data


@dataclass(frozen=True)
class ShiftParams:
    """How the curves are measured: ECE bins (equal-width, closed on the right) and the seeded percentile bootstrap
    of the intervals (None: no intervals)."""

    n_bins: int = 15
    bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP  # 200 resamples, seed 0, 95%

    def __post_init__(self) -> None:
        Binning(self.n_bins)  # validates the bin count

    @property
    def n_boot(self) -> int:
        """Bootstrap resamples (0 without intervals)."""
        return self.bootstrap.n_boot if self.bootstrap else 0


@dataclass(frozen=True)
class ShiftSpecs:
    """The data of a shift study: the clean split T is fitted on, the clean test split (severity 0) and the test
    split under each corruption and severity, in order."""

    fit: DataSpec
    clean: DataSpec
    shifted: tuple[DataSpec, ...]

    @property
    def corruptions(self) -> tuple[str, ...]:
        """The corruptions, in order."""
        return tuple(dict.fromkeys(s.corruption for s in self.shifted if s.corruption))

    @property
    def all(self) -> tuple[DataSpec, ...]:
        """Every spec whose predictions `shift_curves` needs: fit, clean, then the shifted ones."""
        return (self.fit, self.clean, *self.shifted)


def shift_specs(data: str | DataSpec, corruptions: Sequence[str] | None = None) -> ShiftSpecs:
    """The specs of a shift study on the dataset `data` names (its split is ignored): built-in data offers
    CORRUPTIONS, an image folder or tensor file its image corruptions (`calibviz.data_sources.spec_choices_for`),
    each at severities 1-5 of the test split; T is fitted on the clean val split. `corruptions` picks some of them.
    Raises ValueError (saying why) for a predictions bundle's rows, which have no inputs to corrupt, and for a
    source without a val or a test split."""
    base = DataSpec.of(data)
    if not base.has_inputs:
        raise ValueError(f"{base.name}: a predictions bundle holds only outputs; shift needs image or signal inputs "
                         "(a built-in dataset, folder:PATH or tensors:PATH) to corrupt")
    if base.builtin:
        offered = [DataSpec(base.name, "test", c, k) for c in CORRUPTIONS for k in SEVERITIES]
        clean_splits = {"val", "test"}
    else:
        from calibviz.data_sources import spec_choices_for

        choices = spec_choices_for(base)
        clean_splits = {s.split for s in choices if not s.shifted}
        offered = [s for s in choices if s.shifted and s.split == "test"]
    missing = [s for s in ("val", "test") if s not in clean_splits]
    if missing:
        raise ValueError(f"{base.name} has no {' and no '.join(missing)} split: shift fits T on the clean val split "
                         "and measures the test split, clean and corrupted")
    known = tuple(dict.fromkeys(s.corruption for s in offered))
    wanted = known if corruptions is None else tuple(corruptions)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ValueError(f"corruption {unknown[0]!r} is not offered for {base.name}; known: {list(known)}")
    shifted = tuple(s for c in wanted for s in offered if s.corruption == c)
    return ShiftSpecs(fit=base.with_split("val"), clean=base.with_split("test"), shifted=shifted)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ShiftMetrics:
    """Accuracy, ECE and NLL of one prediction set, with intervals."""

    accuracy: MetricEstimate
    ece: MetricEstimate
    nll: MetricEstimate

    def get(self, metric: str) -> MetricEstimate:
        """One metric by its key (`accuracy`, `ece`, `nll`)."""
        if metric not in SHIFT_METRICS:
            raise ValueError(f"metric {metric!r} is not measured under shift; known: {list(SHIFT_METRICS)}")
        return getattr(self, metric)

    def to_json(self) -> dict[str, Any]:
        """{accuracy, ece, nll, intervals: {key: [low, high]}}: the shape of `calibviz report --json`."""
        out: dict[str, Any] = {k: self.get(k).value for k in SHIFT_METRICS}
        out["intervals"] = {k: [self.get(k).low, self.get(k).high] for k in SHIFT_METRICS
                            if self.get(k).low is not None}
        return out


@dataclass(frozen=True)
class ShiftPoint:
    """One model on one prediction set: a corruption at a severity (0: the clean test split), before and after TS.
    `argmax_changed_share` is the share of rows whose predicted class TS changed: 0, since T > 0 keeps the order of
    the logits (a tie broken differently by rounding is the only way it can be more)."""

    corruption: str
    severity: int
    data: str
    n: int
    before: ShiftMetrics
    after: ShiftMetrics
    argmax_changed_share: float

    def metrics(self, calibration: str) -> ShiftMetrics:
        """`before` or `after` TS."""
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {calibration!r}")
        return self.before if calibration == "before" else self.after

    def to_json(self) -> dict[str, Any]:
        """The point with stable snake_case keys."""
        return {"corruption": self.corruption, "severity": self.severity, "data": self.data, "n": self.n,
                "before": self.before.to_json(), "after": self.after.to_json(),
                "argmax_changed_share": self.argmax_changed_share}


@dataclass(frozen=True)
class ShiftCurve:
    """One metric of one model against severity under one corruption: severities (0 = clean) and values with their
    interval limits (nan where there is none)."""

    severities: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class ShiftCurves:
    """A model's accuracy, ECE and NLL at every corruption and severity, before and after TS fitted on `fit_data`.

    `points` hold, for each corruption in order, severities 0 (the clean test split: the same numbers for every
    corruption) to 5."""

    name: str
    dataset: str
    fit_data: str
    fit_n: int
    temperature: float
    temperature_at_limit: str | None
    fit_nll_before: float
    fit_nll_after: float
    params: ShiftParams
    convention: str
    corruptions: tuple[str, ...]
    points: tuple[ShiftPoint, ...]

    @property
    def severities(self) -> tuple[int, ...]:
        """The severities of every curve, 0 (clean) first."""
        return tuple(sorted({p.severity for p in self.points}))

    def point(self, corruption: str, severity: int) -> ShiftPoint:
        """The point of a corruption at a severity (0: the clean test split)."""
        for p in self.points:
            if p.corruption == corruption and p.severity == severity:
                return p
        raise KeyError(f"{self.name}: no point for {corruption!r} at severity {severity}")

    @property
    def clean(self) -> ShiftPoint:
        """The clean test split (severity 0)."""
        return self.points[0]

    def curve(self, corruption: str, metric: str, calibration: str = "before") -> ShiftCurve:
        """One metric against severity under one corruption, before or after TS."""
        pts = sorted((p for p in self.points if p.corruption == corruption), key=lambda p: p.severity)
        if not pts:
            raise KeyError(f"{self.name}: corruption {corruption!r} was not measured; measured: "
                           f"{list(self.corruptions)}")
        est = [p.metrics(calibration).get(metric) for p in pts]
        nan = float("nan")
        return ShiftCurve(severities=np.array([p.severity for p in pts]),
                     value=np.array([e.value for e in est], dtype=np.float64),
                     low=np.array([nan if e.low is None else e.low for e in est], dtype=np.float64),
                     high=np.array([nan if e.high is None else e.high for e in est], dtype=np.float64))

    def to_json(self) -> dict[str, Any]:
        """Stable snake_case keys: name, dataset, fit_data, fit_n, temperature, temperature_at_limit, fit_nll_before,
        fit_nll_after, n_bins, convention, n_boot, seed, interval_level, metrics, corruptions, severities, points
        (each: corruption, severity, data, n, before / after {accuracy, ece, nll, intervals}, argmax_changed_share).
        Without a bootstrap, n_boot is 0, seed and interval_level null and the intervals empty."""
        boot = self.params.bootstrap
        return {"name": self.name, "dataset": self.dataset, "fit_data": self.fit_data, "fit_n": self.fit_n,
                "temperature": self.temperature, "temperature_at_limit": self.temperature_at_limit,
                "fit_nll_before": self.fit_nll_before, "fit_nll_after": self.fit_nll_after,
                "n_bins": self.params.n_bins, "convention": self.convention, "n_boot": self.params.n_boot,
                "seed": boot.seed if boot else None, "interval_level": boot.level if boot else None,
                "metrics": list(SHIFT_METRICS), "corruptions": list(self.corruptions),
                "severities": list(self.severities), "points": [p.to_json() for p in self.points]}


# ---------------------------------------------------------------------------------------------
# Measuring


def _check_rows(clean: Predictions, other: Predictions, where: str) -> None:
    if other.n_classes != clean.n_classes:
        raise ValueError(f"{where} has {other.n_classes} classes, the clean test split {clean.n_classes}")
    if other.n != clean.n or not np.array_equal(other.labels, clean.labels):
        raise ValueError(f"{where} holds other rows than the clean test split (a shifted split is the same rows, "
                         "corrupted)")


def fit_shift_temperature(fit: Predictions) -> TemperatureScaling:
    """Temperature scaling fitted by NLL on the clean calibration split (a cap at a bracket limit is recorded in
    `at_limit_`, not warned about)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return TemperatureScaling().fit(fit.scores(), fit.labels)


def shift_metrics(probs: np.ndarray, labels: np.ndarray, params: ShiftParams = ShiftParams()) -> ShiftMetrics:
    """Accuracy, ECE and NLL of probabilities with their percentile-bootstrap intervals, as `calibration_metrics`
    computes them: the same kernels (`top_label`, `bin_index` + `bin_sums`, NLL rows clipped at 1e-12), the same
    seeded resamples (drawn in the same chunks) and quantiles, on the device `metrics_report` picks, so the numbers
    are those of `calibviz report` for these keys. Only these three are computed: the full report's smooth ECE
    alone takes seconds per set when the confidences bunch together (a model near chance on a strong shift)."""
    import torch

    from calibviz.devices import pick_device

    p = torch.from_numpy(np.ascontiguousarray(probs)).to(pick_device(None))
    ms = calibration_metrics(p, labels, params.n_bins, params.bootstrap, keys=SHIFT_METRICS)
    return ShiftMetrics(**{k: ms.estimate(k) for k in SHIFT_METRICS})


def _measure(preds: Predictions, ts: TemperatureScaling, corruption: str, severity: int, params: ShiftParams
             ) -> ShiftPoint:
    scores = preds.scores()
    after = ts.transform(scores)
    changed = float((np.asarray(scores).argmax(1) != after.argmax(1)).mean())
    return ShiftPoint(corruption=corruption, severity=severity, data=str(preds.meta.get("data_spec", "")),
                      n=preds.n, before=shift_metrics(preds.probabilities(), preds.labels, params),
                      after=shift_metrics(after, preds.labels, params), argmax_changed_share=changed)


def shift_curves(fit: Predictions, clean: Predictions, shifted: Mapping[tuple[str, int], Predictions],
                 params: ShiftParams = ShiftParams(), name: str | None = None,
                 progress: Callable[[float, str], None] | None = None) -> ShiftCurves:
    """Accuracy, ECE and NLL (with seeded percentile-bootstrap intervals) of a model on the clean test split and on
    each `shifted[(corruption, severity)]`, before and after one temperature fitted by NLL on `fit` (the clean val
    split). Every set is measured by `shift_metrics`, so its numbers are those of `calibviz report`; the same seed
    gives the same resampled rows before and after TS. `progress(fraction, message)` is called before each set."""
    if not shifted:
        raise ValueError("no shifted predictions: shift curves need at least one corruption")
    if fit.n_classes != clean.n_classes:
        raise ValueError(f"the fit split has {fit.n_classes} classes, the clean test split {clean.n_classes}")
    for (c, s), p in shifted.items():
        if s not in SEVERITIES:
            raise ValueError(f"severity {s} of {c!r} must be one of {list(SEVERITIES)}")
        _check_rows(clean, p, f"the {c} split at severity {s}")
    total = len(shifted) + 1
    step = iter(range(total))

    def measure(p: Predictions, c: str, s: int) -> ShiftPoint:
        i = next(step)
        if progress:
            progress(i / total, f"{'clean test split' if s == CLEAN else f'{c}, severity {s}'} ({i + 1} of {total})")
        return _measure(p, ts, c, s, params)

    ts = fit_shift_temperature(fit)
    corruptions = tuple(dict.fromkeys(c for c, _ in shifted))
    base = measure(clean, "", CLEAN)
    points: list[ShiftPoint] = []
    for c in corruptions:
        points.append(ShiftPoint(c, CLEAN, base.data, base.n, base.before, base.after, base.argmax_changed_share))
        points += [measure(shifted[(c, s)], c, s) for s in sorted(s for cc, s in shifted if cc == c)]
    if progress:
        progress(1.0, "done")
    fit_after = ts.transform(fit.scores())
    spec = DataSpec.of(str(clean.meta["data_spec"])) if clean.meta.get("data_spec") else None
    return ShiftCurves(
        name=name or clean.name, dataset=spec.name if spec else str(clean.meta.get("dataset", "")),
        fit_data=str(fit.meta.get("data_spec", "")), fit_n=fit.n, temperature=float(ts.temperature_),
        temperature_at_limit=ts.at_limit_, fit_nll_before=nll(fit.probabilities(), fit.labels),
        fit_nll_after=nll(fit_after, fit.labels), params=params,
        convention=f"top-label, {Binning(params.n_bins).convention}", corruptions=corruptions, points=tuple(points))


@dataclass(frozen=True)
class ShiftReliability:
    """Top-label reliability bins of the clean test split and of one shifted split, before and after TS."""

    corruption: str
    severity: int
    temperature: float
    clean_before: ReliabilityBins
    clean_after: ReliabilityBins
    shifted_before: ReliabilityBins
    shifted_after: ReliabilityBins

    def bins(self, shifted: bool, calibration: str) -> ReliabilityBins:
        """The bins of the clean (`shifted` False) or shifted split, `before` or `after` TS."""
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {calibration!r}")
        return getattr(self, f"{'shifted' if shifted else 'clean'}_{calibration}")


def shift_reliability(clean: Predictions, shifted: Predictions, temperature: float, n_bins: int = 15
                      ) -> ShiftReliability:
    """Reliability bins (equal-width, closed on the right) of the clean test split beside a shifted one, before TS
    and after softmax(z / `temperature`) (the T of `ShiftCurves`, fitted on the clean val split)."""
    from calibviz.calibrators import softmax_temperature

    spec = DataSpec.of(str(shifted.meta.get("data_spec", "")))
    _check_rows(clean, shifted, str(spec))

    def pair(p: Predictions) -> tuple[ReliabilityBins, ReliabilityBins]:
        return (top_label_bins(p.probabilities(), p.labels, n_bins),
                top_label_bins(softmax_temperature(p.scores(), temperature), p.labels, n_bins))

    (cb, ca), (sb, sa) = pair(clean), pair(shifted)
    return ShiftReliability(corruption=spec.corruption or "", severity=spec.severity, temperature=float(temperature),
                            clean_before=cb, clean_after=ca, shifted_before=sb, shifted_after=sa)


# ---------------------------------------------------------------------------------------------
# What the numbers say


# ---------------------------------------------------------------------------------------------
# Tables


def shift_table(curves: Mapping[str, ShiftCurves], corruptions: Sequence[str] | None = None, digits: int = 3
                ) -> pd.DataFrame:
    """The numbers behind the curves, one row per (model, corruption, severity): accuracy (TS leaves it as it is),
    ECE and NLL before and after TS, each 'value [low, high]' to `digits` decimals. Severity 0 (clean) is shown once
    per model."""
    import pandas as pd

    rows = []
    for label, c in curves.items():
        shown = [x for x in (corruptions if corruptions is not None else c.corruptions) if x in c.corruptions]
        for p in [c.clean, *(p for p in c.points if p.severity != CLEAN and p.corruption in shown)]:
            rows.append({"model": label, "corruption": p.corruption if p.severity else "clean",
                         "severity": p.severity, "accuracy": p.before.accuracy.text(digits),
                         "ECE before TS": p.before.ece.text(digits), "ECE after TS": p.after.ece.text(digits),
                         "NLL before TS": p.before.nll.text(digits), "NLL after TS": p.after.nll.text(digits)})
    return pd.DataFrame(rows).set_index(["model", "corruption", "severity"])


def shift_text_table(curves: Sequence[ShiftCurves]) -> str:
    """The plain-text table of `calibviz shift-report` (without --json): per model a header line (T, the fit
    split, the ECE convention) and one row per corruption and severity."""
    lines = []
    head = (f"{'corruption':<11}{'sev':>4}  {'accuracy':<24}{'ECE before TS':<24}{'ECE after TS':<24}"
            f"{'NLL before TS':<24}{'NLL after TS':<24}")
    for c in curves:
        at_limit = f", capped at {c.temperature_at_limit}" if c.temperature_at_limit else ""
        lines += [f"{c.name}: T = {c.temperature:.4g}{at_limit}, fitted on {c.fit_data} ({c.fit_n:,} rows); "
                  f"ECE {c.convention}; " + (f"{b.level:.0%} bootstrap intervals, {b.n_boot} resamples, seed "
                                               f"{b.seed}" if (b := c.params.bootstrap) else "no intervals"),
                  head.rstrip()]
        for p in [c.clean, *(p for p in c.points if p.severity != CLEAN)]:
            cells = [p.before.accuracy, p.before.ece, p.after.ece, p.before.nll, p.after.nll]
            text = "".join(f"{e.text().replace(chr(160), ' '):<24}" for e in cells)
            lines.append(f"{p.corruption if p.severity else 'clean':<11}{p.severity:>4}  {text}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def ece_markdown_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """The ECE-against-severity table of docs/shift.md from `ShiftCurves.to_json()` dicts (the `models` of
    `calibviz shift-report --json`): one row per model and corruption, a column per severity with 'before → after'
    TS."""
    sev = sorted({p["severity"] for r in reports for p in r["points"]})
    lines = ["| model | T | corruption | " + " | ".join(f"sev {s}" for s in sev) + " |",
             "|---|---|---|" + "---|" * len(sev)]
    for r in reports:
        for corr in r["corruptions"]:
            pts = {p["severity"]: p for p in r["points"] if p["corruption"] == corr}
            cells = [f"{pts[s]['before']['ece']:.3f} → {pts[s]['after']['ece']:.3f}" if s in pts else "—" for s in sev]
            lines.append(f"| {r['name']} | {r['temperature']:.3g} | {corr} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

"""Re-calibration reports: fit a calibrator on one split, measure before and after on another.

`recalibration_report` is what `calibviz recalibrate ... --json` prints and what the page tabulates:
plain JSON-ready data with stable snake_case keys. `temperature_curve` gives the NLL / ECE of every
temperature on a grid, for the teaching view of temperature scaling.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibviz.calibrators import (
    REGISTRY,
    Calibrator,
    MTSPoint,
    calibrator_info,
    make_calibrator,
    softmax_temperature,
    solve_temperature,
)
from calibviz.data import DataSpec, spec_choices
from calibviz.diskcache import atomic_write, cache_dir
from calibviz.metrics import (
    CONVENTION,
    Binning,
    ReliabilityBins,
    accuracy,
    brier,
    ece,
    nll,
    reliability_bins,
    top_label,
)
from calibviz.predictions import Predictions
from calibviz.report import interval_text
from calibviz.sources import ModelEntry

OVERFIT_MIN_GAP = 0.02
"""Nats: the fit split's NLL gain must exceed the evaluation split's by at least this much ..."""
OVERFIT_RATIO = 0.5
"""... and the evaluation gain must be below this share of the fit gain, to flag overfitting."""


def _metrics(preds: Predictions, n_bins: int, n_boot: int, seed: int) -> dict[str, Any]:
    """The metric library's full report (with intervals) where it exists, else the basic four."""
    try:
        from calibviz.report import metrics_report
    except ImportError:  # pragma: no cover - only before the metrics report existed
        from calibviz.metrics import basic_metrics

        return basic_metrics(preds.probabilities(), preds.labels, n_bins)
    return metrics_report(preds, n_bins=n_bins, n_boot=n_boot, seed=seed)


def _with_probs(preds: Predictions, probs: np.ndarray) -> Predictions:
    return Predictions(labels=preds.labels, probs=probs, meta=dict(preds.meta))


def _describe(preds: Predictions) -> dict[str, Any]:
    return {"name": preds.name, "n": preds.n, "n_classes": preds.n_classes,
            "data": preds.meta.get("data_spec"), "mask_ratio": float(preds.meta.get("mask_ratio", 0.0))}


def _calibrator_for(method: str, fit: Predictions, params: dict[str, Any] | None) -> Calibrator:
    params = dict(params or {})
    if calibrator_info(method).needs_model:  # fitted on predictions of masked inputs
        ratio = float(fit.meta.get("mask_ratio", 0.0))
        if ratio <= 0:
            raise ValueError(f"method {method!r} needs fit predictions computed from masked inputs "
                             "(calibviz.backend.masked_predictions, or predict(..., mask_ratio=r), on the fit "
                             "split)")
        params.setdefault("mask_ratio", ratio)
        params.setdefault("mask_seed", int(fit.meta.get("mask_seed", 0)))
    return make_calibrator(method, **params)


def fit_and_report(fit: Predictions, eval: Predictions, method: str, n_bins: int = 15, *,
                   params: dict[str, Any] | None = None, n_boot: int = 200, seed: int = 0
                   ) -> tuple[dict[str, Any], Calibrator]:
    """`recalibration_report`, and the fitted calibrator itself (to save or to apply elsewhere)."""
    if fit.n_classes != eval.n_classes:
        raise ValueError(f"fit split has {fit.n_classes} classes, evaluation split {eval.n_classes}")
    cal = _calibrator_for(method, fit, params)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", RuntimeWarning)
        cal.fit(fit.scores(), fit.labels)
        caught = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]

    p_eval_before = eval.probabilities().astype(np.float64)
    p_eval_after = cal.transform(eval.scores())
    p_fit_before = fit.probabilities().astype(np.float64)
    p_fit_after = cal.transform(fit.scores())

    before = _metrics(eval, n_bins, n_boot, seed)
    after = _metrics(_with_probs(eval, p_eval_after), n_bins, n_boot, seed)
    change = {k: after[k] - before[k] for k, v in before.items()
              if k in after and isinstance(v, float) and isinstance(after[k], float)}

    arg_before, arg_after = p_eval_before.argmax(1), p_eval_after.argmax(1)
    changed_share = float((arg_before != arg_after).mean())
    acc_change = float((arg_after == eval.labels).mean() - (arg_before == eval.labels).mean())
    fit_nll = {"before": nll(p_fit_before, fit.labels), "after": nll(p_fit_after, fit.labels)}
    eval_nll = {"before": nll(p_eval_before, eval.labels), "after": nll(p_eval_after, eval.labels)}
    fit_gain = fit_nll["before"] - fit_nll["after"]
    eval_gain = eval_nll["before"] - eval_nll["after"]
    masked_fit = float(fit.meta.get("mask_ratio", 0.0)) > 0
    overfit = (not masked_fit and fit_gain - eval_gain > OVERFIT_MIN_GAP
               and eval_gain < OVERFIT_RATIO * fit_gain)
    parameters = cal.fitted_parameters()
    at_limit = parameters.get("at_limit") if isinstance(parameters, dict) else None

    flags = {
        "argmax_changed": changed_share > 0,
        "argmax_changed_share": changed_share,
        "accuracy_moved": abs(acc_change) > 0,
        "accuracy_change": acc_change,
        "fits_fit_split_much_better": bool(overfit),
        "fit_nll_gain": fit_gain,
        "eval_nll_gain": eval_gain,
        "nll_worse": eval_gain < 0,
        "ece_worse": bool(change.get("ece", 0.0) > 0),
        "temperature_at_limit": at_limit,
    }
    notes = list(caught)
    if flags["argmax_changed"]:
        notes.append(f"{cal.label} changed the predicted class of {changed_share:.2%} of the evaluation "
                     f"examples; accuracy moved by {acc_change:+.2%}")
    if overfit:
        notes.append(f"{cal.label} lowered NLL by {fit_gain:.4f} on the fit split but only by "
                     f"{eval_gain:.4f} on the evaluation split: it fits the fit split much better "
                     "(overfitting, or a shift between the splits)")
    if flags["nll_worse"]:
        notes.append(f"{cal.label} made evaluation NLL worse ({eval_nll['before']:.4f} -> "
                     f"{eval_nll['after']:.4f})")
    if flags["ece_worse"]:
        notes.append(f"{cal.label} made evaluation ECE worse ({before['ece']:.4f} -> {after['ece']:.4f})")

    report = {
        "method": cal.key,
        "method_label": cal.label,
        "n_bins": int(n_bins),
        "convention": CONVENTION,
        "fit": _describe(fit),
        "eval": _describe(eval),
        "parameters": parameters,
        "before": before,
        "after": after,
        "change": change,
        "fit_split": {"nll_before": fit_nll["before"], "nll_after": fit_nll["after"],
                      "ece_before": ece(p_fit_before, fit.labels, n_bins),
                      "ece_after": ece(p_fit_after, fit.labels, n_bins)},
        "flags": flags,
        "warnings": notes,
    }
    return report, cal


def recalibration_report(fit: Predictions, eval: Predictions, method: str, n_bins: int = 15, *,
                         params: dict[str, Any] | None = None, n_boot: int = 200, seed: int = 0
                         ) -> dict[str, Any]:
    """Fit `method` on `fit`, report metrics before and after on `eval` (JSON-ready dict).

    Keys: method, method_label, n_bins, convention, fit / eval (name, n, n_classes, data,
    mask_ratio), parameters (fitted values, e.g. temperature), before / after (the metric report
    with intervals), change (after - before), fit_split (NLL and ECE before/after on the fit split),
    flags (argmax_changed, argmax_changed_share, accuracy_moved, accuracy_change,
    fits_fit_split_much_better, fit_nll_gain, eval_nll_gain, nll_worse, ece_worse,
    temperature_at_limit) and warnings (plain sentences). Method "mts" needs `fit` computed from
    masked inputs (its meta carries mask_ratio > 0)."""
    return fit_and_report(fit, eval, method, n_bins, params=params, n_boot=n_boot, seed=seed)[0]


@dataclass(frozen=True)
class TemperatureCurve:
    """NLL and ECE of softmax(z / T) over a grid of temperatures, with the exact optimum."""

    temperatures: np.ndarray
    nll: np.ndarray
    ece: np.ndarray
    optimal_temperature: float
    optimal_nll: float
    optimal_ece: float
    n_bins: int


def temperature_curve(logits: np.ndarray, labels: np.ndarray, temperatures: np.ndarray | None = None,
                      n_bins: int = 15) -> TemperatureCurve:
    """NLL and ECE at each temperature (default: 61 log-spaced values spanning T = 1 and the
    optimum by a factor 3 each side) plus the exact NLL optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sol = solve_temperature(logits, labels)
    t_opt = sol.temperature
    if temperatures is None:
        lo, hi = min(1.0, t_opt) / 3.0, max(1.0, t_opt) * 3.0
        temperatures = np.geomspace(lo, hi, 61)
    ts = np.unique(np.asarray(temperatures, dtype=np.float64))
    if not (ts > 0).all():
        raise ValueError("temperatures must all be > 0")
    nlls, eces = np.empty(len(ts)), np.empty(len(ts))
    for i, t in enumerate(ts):
        p = softmax_temperature(logits, t)
        nlls[i], eces[i] = nll(p, labels), ece(p, labels, n_bins)
    p_opt = softmax_temperature(logits, t_opt)
    return TemperatureCurve(temperatures=ts, nll=nlls, ece=eces, optimal_temperature=t_opt,
                            optimal_nll=nll(p_opt, labels), optimal_ece=ece(p_opt, labels, n_bins),
                            n_bins=n_bins)


# ---------------------------------------------------------------------------------------------
# Small pieces for the Re-calibration page: the manual-temperature view, parameters in words, and
# what the MTS curve says


MANUAL_T_MIN = 0.1
MANUAL_T_MAX = 10.0


def manual_temperature_grid(per_decade: int = 50, t_min: float = MANUAL_T_MIN,
                            t_max: float = MANUAL_T_MAX) -> tuple[float, ...]:
    """Log-spaced temperatures for a slider: `per_decade` steps per factor of 10, T = 1 exactly on
    the grid, each value rounded to 4 significant digits (so the slider can show it as is)."""
    lo, hi = math.log10(t_min), math.log10(t_max)
    ks = range(math.ceil(lo * per_decade - 1e-9), math.floor(hi * per_decade + 1e-9) + 1)
    return tuple(float(f"{10 ** (k / per_decade):.4g}") for k in ks)


def nearest_temperature(grid: tuple[float, ...] | list[float], temperature: float) -> float:
    """The grid value nearest `temperature` on a log scale."""
    g = np.asarray(grid, dtype=np.float64)
    return float(g[np.argmin(np.abs(np.log(g) - math.log(temperature)))])


@dataclass(frozen=True)
class AtTemperature:
    """Metrics and the top-label reliability bins of softmax(z / T) on one split."""

    temperature: float
    nll: float
    ece: float
    accuracy: float
    brier: float
    bins: ReliabilityBins


def at_temperature(logits: np.ndarray, labels: np.ndarray, temperature: float, n_bins: int = 15
                   ) -> AtTemperature:
    """NLL, ECE (top-label, equal-width bins closed on the right), accuracy, Brier and the
    reliability bins of softmax(logits / T): what the manual temperature slider shows."""
    p = softmax_temperature(logits, temperature)
    return AtTemperature(temperature=float(temperature), nll=nll(p, labels), ece=ece(p, labels, n_bins),
                         accuracy=accuracy(p, labels), brier=brier(p, labels),
                         bins=top_label_bins(p, labels, n_bins))


def top_label_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Top-label reliability bins (equal-width, closed on the right) of probabilities."""
    conf, correct = top_label(probs, labels)
    return reliability_bins(conf, correct, Binning(int(n_bins)))


_PARAM_WORDS = (
    ("temperature", "T = {:.4g}"),
    ("mask_ratio", "mask r = {:.2g}"),
    ("weight_ts", "w(TS) = {:.3f}"),
    ("weight_uncalibrated", "w(uncal.) = {:.3f}"),
    ("weight_uniform", "w(uniform) = {:.3f}"),
    ("n_parameters", "{:d} parameters"),
    ("diagonal_min", "diagonal {:.3g}"),
    ("diagonal_max", "to {:.3g}"),
    ("offdiagonal_norm", "‖off-diagonal‖ = {:.3g}"),
    ("bias_norm", "‖b‖ = {:.3g}"),
    ("reg_lambda", "λ = {:g}"),
    ("reg_mu", "μ = {:g}"),
    ("n_bins", "{:d} bins"),
    ("empty_bins", "{:d} empty class-bins"),
    ("n_thresholds", "{:d} breakpoints"),
)


def parameter_summary(params: dict[str, Any]) -> str:
    """A calibrator's fitted parameters (`fitted_parameters()`) as one short line of text."""
    parts = []
    for key, fmt in _PARAM_WORDS:
        v = params.get(key)
        if v is None:
            continue
        parts.append(fmt.format(int(v) if "{:d}" in fmt else float(v)))
    if params.get("at_limit"):
        parts.append(f"capped at {params['at_limit']}")
    text = ", ".join(parts).replace(", to ", " to ")
    return text or "—"


MTS_HELP_ABS = 0.005
"""ECE points: MTS counts as helping (or hurting) when its best (worst) ratio beats (loses to)
plain TS by more than this ..."""
MTS_HELP_REL = 0.10
"""... and by more than this share of plain TS's ECE."""


@dataclass(frozen=True)
class MTSSummary:
    """What one model's MTS curve says: uncalibrated, plain-TS (r = 0) and best-ratio ECE."""

    name: str
    uncalibrated_ece: float
    ts_ece: float
    ts_temperature: float
    best_ratio: float
    best_ece: float
    best_temperature: float
    worst_ece: float
    verdict: str  # "helps", "no real difference", "hurts"

    @property
    def sentence(self) -> str:
        """The summary in one plain sentence."""
        ts = (f"**{self.name}**: plain TS takes ECE from {self.uncalibrated_ece:.4f} to {self.ts_ece:.4f} "
              f"(T = {self.ts_temperature:.3g}")
        if 0 < self.ts_ece <= self.uncalibrated_ece:
            ts += f", {1.0 - self.ts_ece / self.uncalibrated_ece:.0%} of the error removed)"
        else:
            ts += ")"
        best = (f"the best mask ratio, r = {self.best_ratio:g}, gives {self.best_ece:.4f} "
                f"(T = {self.best_temperature:.3g})")
        if self.verdict == "helps":
            return f"{ts}; {best}: MTS helps."
        if self.verdict == "hurts":
            return (f"{ts}; every mask ratio r > 0 does worse (best {self.best_ece:.4f} at r = {self.best_ratio:g}): "
                    "MTS hurts here.")
        return f"{ts}; {best}: no real difference from plain TS."


def mts_summary(name: str, points: list[MTSPoint] | tuple[MTSPoint, ...], uncalibrated_ece: float) -> MTSSummary:
    """Summarise an MTS curve that includes r = 0 (plain TS). The best ratio is picked on the
    evaluation split itself, which flatters MTS; "helps" needs a gain over TS larger than both
    MTS_HELP_ABS and MTS_HELP_REL x TS's ECE, "hurts" a loss that large at every r > 0."""
    pts = sorted(points, key=lambda p: p.ratio)
    base = [p for p in pts if p.ratio == 0]
    masked = [p for p in pts if p.ratio > 0]
    if not base or not masked:
        raise ValueError("an MTS summary needs the r = 0 point (plain TS) and at least one r > 0")
    ts = base[0]
    best = min(masked, key=lambda p: p.ece)
    margin = max(MTS_HELP_ABS, MTS_HELP_REL * ts.ece)
    if best.ece < ts.ece - margin:
        verdict = "helps"
    elif best.ece > ts.ece + margin:
        verdict = "hurts"
    else:
        verdict = "no real difference"
    return MTSSummary(name=name, uncalibrated_ece=float(uncalibrated_ece), ts_ece=ts.ece,
                      ts_temperature=ts.temperature, best_ratio=best.ratio, best_ece=best.ece,
                      best_temperature=best.temperature, worst_ece=max(p.ece for p in masked), verdict=verdict)


@dataclass(frozen=True)
class MethodResult:
    """One fitted method, ready to show: the report, the calibrator's JSON (`to_json()`) and the
    top-label reliability bins of its probabilities on the evaluation split."""

    report: dict[str, Any]
    calibrator: dict[str, Any]
    bins: ReliabilityBins


# Bump when a calibrator's fit or the report changes what it returns: older cached fits are then not read.
FITS_VERSION = 1


def _fit_cache_path(fit: Predictions, eval: Predictions, method: str, n_bins: int, params: dict[str, Any] | None,
                    n_boot: int, seed: int) -> Path:
    key = json.dumps({"v": FITS_VERSION, "fit": fit.digest(), "eval": eval.digest(), "method": method,
                      "n_bins": n_bins, "params": params or {}, "n_boot": n_boot, "seed": seed}, sort_keys=True)
    return cache_dir() / "fits" / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"


def _to_json(v: Any) -> Any:
    """JSON encoding of numpy values for the fit cache (arrays keep their dtype)."""
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _from_json(d: dict[str, Any]) -> Any:
    return np.asarray(d["__ndarray__"], dtype=d["dtype"]) if "__ndarray__" in d else d


def _decode_fit(text: str) -> MethodResult:
    """A MethodResult from the fit cache's JSON (our own file: arrays and plain values only)."""
    d = json.loads(text, object_hook=_from_json)
    return MethodResult(report=d["report"], calibrator=d["calibrator"], bins=ReliabilityBins(**d["bins"]))


def _read_cached_fit(path: Path) -> MethodResult | None:
    """A fit from the cache, or None when absent or unreadable (it is then fitted again and overwritten)."""
    try:
        return _decode_fit(path.read_text())
    except (OSError, KeyError, TypeError, ValueError):
        return None


def fit_method(fit: Predictions, eval: Predictions, method: str, n_bins: int = 15, *,
               params: dict[str, Any] | None = None, n_boot: int = 200, seed: int = 0,
               use_cache: bool = True) -> MethodResult:
    """`fit_and_report`, plus the calibrator as JSON and the reliability bins after calibration.

    Cached on disk by the content digests of both splits and every parameter (a Dirichlet fit with its
    regularisation search takes seconds), so a new server process, or another session, reads it back."""
    path = _fit_cache_path(fit, eval, method, n_bins, params, n_boot, seed)
    if use_cache and (hit := _read_cached_fit(path)) is not None:
        return hit
    report, cal = fit_and_report(fit, eval, method, n_bins, params=params, n_boot=n_boot, seed=seed)
    bins = top_label_bins(cal.transform(eval.scores()), eval.labels, n_bins)
    text = json.dumps({"report": report, "calibrator": cal.to_json(), "bins": asdict(bins)}, default=_to_json)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return _decode_fit(text)   # decoded as a cache hit would be, so cached and fresh results are alike


def distilled_vs_full(full: MTSSummary, distilled: list[MTSSummary]) -> str:
    """One plain sentence comparing plain TS (and MTS) on models trained on distilled data with a
    model trained on the full data, from their MTS summaries."""
    if not distilled:
        return ""
    ratios = ", ".join(f"{d.name} {d.ts_ece:.4f}" for d in distilled)
    worst = max(d.ts_ece for d in distilled)
    if full.ts_ece > 0 and worst > 2 * full.ts_ece and worst - full.ts_ece > 0.02:
        ts = (f"After plain TS the distilled-data models remain worse calibrated ({ratios}) than "
              f"{full.name} ({full.ts_ece:.4f}): TS leaves more of their error in place.")
    else:
        ts = (f"After plain TS the distilled-data models ({ratios}) are calibrated about as well as "
              f"{full.name} ({full.ts_ece:.4f}): at this scale TS is not defeated by distilled data.")
    helped = [d.name for d in distilled if d.verdict == "helps"]
    mts = (f"MTS helps on {', '.join(helped)}." if helped
           else "MTS does not beat plain TS by a clear margin on any of them.")
    return f"{ts} {mts}"


def mts_comparison(summaries: Mapping[str, MTSSummary]) -> str:
    """`distilled_vs_full` for MTS summaries keyed by zoo recipe: the full-data (ce) model against the
    distilled-data ones (dm, mdt); empty without a ce summary."""
    if "ce" not in summaries:
        return ""
    return distilled_vs_full(summaries["ce"], [summaries[r] for r in ("dm", "mdt") if r in summaries])


def mts_explanation(fit: DataSpec, eval: DataSpec, summaries: Mapping[str, MTSSummary]) -> str:
    """What the MTS curve shows, as markdown: where T was fitted and measured, one sentence per model, and the
    full-data against distilled-data comparison."""
    return (f"Fitted on **{fit.label}** with masked inputs, measured on **{eval.label}** with clean inputs; r = 0 "
            "(the square) is plain temperature scaling. Computed now, on these checkpoints:\n\n"
            + "\n".join(f"- {s.sentence}" for s in summaries.values()) + "\n\n" + mts_comparison(summaries))


MTS_CAVEAT = (f"Zhu et al. (ICCV 2023) found that TS cannot fix models trained on distilled data, and that MTS does. "
              "The best r above is picked on the evaluation split itself, which flatters MTS; 'helps' needs a gain "
              f"over plain TS of more than {MTS_HELP_ABS:g} and {MTS_HELP_REL:.0%} of its ECE.")
"""The caveat under the MTS verdicts, with the thresholds `mts_summary` applies."""


MTS_RECIPES = ("ce", "dm", "mdt")
"""The zoo recipes on the MTS curve: full data (CE), then the two distilled-data ones."""


@dataclass(frozen=True)
class MTSModel:
    """One model on the MTS curve: the entry, its legend label, and the key of its summary (the zoo recipe)."""

    entry: ModelEntry
    label: str
    key: str


def mts_lineup(chosen: ModelEntry, zoo: Sequence[ModelEntry]) -> list[MTSModel]:
    """The zoo's CE, DM and MDT checkpoints of a dataset, after the chosen model when it is a checkpoint that is
    not one of them (a predictions bundle cannot be run on masked inputs)."""
    by_recipe = {e.recipe: e for e in zoo}
    zoo_names = {e.name for e in by_recipe.values()}
    models = [by_recipe[r] for r in MTS_RECIPES if r in by_recipe]
    if chosen.runnable and chosen.name not in {e.name for e in models}:
        models.insert(0, chosen)
    return [MTSModel(e, f"{e.title} (full data)" if e.recipe == "ce" and e.name in zoo_names else e.title,
                     e.recipe if e.name in zoo_names else e.name) for e in models]


# ---------------------------------------------------------------------------------------------
# The page's split pickers and comparison table


def split_choices(dataset: str, bundle_rows: Predictions | None = None) -> tuple[list[str], list[str]]:
    """Fit-split and evaluation-split specs. A checkpoint on a built-in dataset: val, train, test to fit on and
    every spec (shifted test sets included) to evaluate on. A predictions bundle (`bundle_rows`: all its rows):
    the splits its rows carry, val and test first, then all rows, for both."""
    if bundle_rows is None:
        return [str(DataSpec(dataset, s)) for s in ("val", "train", "test")], [str(s) for s in spec_choices(dataset)]
    present = []
    if bundle_rows.split is not None:
        present = [n for i, n in enumerate(bundle_rows.split_names) if (bundle_rows.split == i).any()]
    order = sorted(present, key=lambda n: (n != "val", n != "test", n))
    specs = [str(DataSpec(dataset, s, source="bundle")) for s in [*order, "all"]]
    return specs, specs


def source_split_choices(data: str) -> tuple[list[str], list[str]]:
    """Fit-split and evaluation-split specs of the user's own model on its folder or tensor file: its clean splits
    (val first) to fit on, and every spec the sidebar offers (shifted ones included) to evaluate on."""
    from calibviz.data_sources import spec_choices_for

    offered = spec_choices_for(data)
    order = {"val": 0, "train": 1, "test": 2}
    clean = sorted((s for s in offered if not s.shifted and s.split != "all"), key=lambda s: order[s.split])
    return [str(s) for s in clean], [str(s) for s in offered]


def default_evaluation(wanted: str, fit: str, options: Sequence[str]) -> str:
    """The evaluation split to preselect: `wanted` (the sidebar's), unless it is the fit split or all rows (which
    overlap the fit split); then the first offered split that is neither."""
    if wanted == fit or DataSpec.of(wanted).split == "all":
        return next((s for s in options if s != fit and DataSpec.of(s).split != "all"), wanted)
    return wanted


TABLE_METRICS = (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier"), ("accuracy", "Accuracy"), ("auroc", "AUROC"))


def comparison_columns(results: Mapping[str, MethodResult]) -> dict[str, dict[str, str]]:
    """The comparison table as text columns: the uncalibrated model, then one per method (by its label); rows:
    each metric with its 95% interval and its change from uncalibrated, the fit split's NLL before → after, and
    the fitted parameters."""
    first = next(iter(results.values())).report
    before = first["before"]
    uncal = {}
    for k, label in TABLE_METRICS:
        uncal[label], uncal[f"Δ {label}"] = interval_text(before[k], before["intervals"].get(k)), ""
    uncal["NLL on the fit split"] = f"{first['fit_split']['nll_before']:.4f}"
    uncal["fitted parameters"] = "—"
    columns = {"Uncalibrated": uncal}
    for res in results.values():
        rep, col = res.report, {}
        for k, label in TABLE_METRICS:
            change = rep["change"].get(k)
            col[label] = interval_text(rep["after"][k], rep["after"]["intervals"].get(k))
            col[f"Δ {label}"] = "" if change is None else f"{change:+.4f}"
        col["NLL on the fit split"] = f"{rep['fit_split']['nll_before']:.4f} → {rep['fit_split']['nll_after']:.4f}"
        col["fitted parameters"] = parameter_summary(rep["parameters"])
        columns[rep["method_label"]] = col
    return columns


def comparison_note(results: Mapping[str, MethodResult]) -> str:
    """How to read the comparison table and the bars: the bootstrap behind the intervals, the sign of Δ, and the
    bars' short labels (from the calibrator registry)."""
    first = next(iter(results.values())).report
    before = first["before"]
    return (f"Each value: the estimate on all {first['eval']['n']:,} evaluation rows, then [low, high] of a 95% "
            f"percentile bootstrap ({before['n_boot']} resamples, seed {before['seed']}). Δ = method − uncalibrated: "
            "negative is better for ECE, NLL and Brier, positive for accuracy and AUROC. Temperature scaling and "
            "ensemble TS never change the predicted class, so their accuracy Δ is 0. A method whose fit-split NLL "
            "falls much further than its evaluation NLL is fitting noise. Bars below: "
            + ", ".join(f"{REGISTRY[k].short} = {REGISTRY[k].label}" for k in results) + ".")

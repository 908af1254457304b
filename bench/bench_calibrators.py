"""Benchmark: temperature-scaling fit time and final NLL, calibviz against its peers on the same data
in one run, plus Dirichlet calibration against dirichletcal where it is installed.

Peers:
- scikit-learn's CalibratedClassifierCV(method="temperature") on a frozen identity classifier whose
  decision_function returns the logits (the public API a user would call);
- netcal's TemperatureScaling (method "mle", fed softmax probabilities as netcal expects);
- the widely copied recipe, written here independently: T = 1.5, torch LBFGS(lr=0.01, max_iter=50),
  one `step` on the float32 NLL of z / T.

Only the fit is timed. NLL is then recomputed by one float64 function from each method's T
(netcal: T = 1 / its fitted weight), so the numbers are comparable. Times are the median of
`--repeats` runs.

    .venv/bin/python bench/bench_calibrators.py [--repeats 3] [--out bench/results_calibrators.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL = REPO.parent / "shared" / "fixtures" / "real" / "netcal"
NETCAL = ("lenet-5-cifar-10", "wideresnet-16-4-cifar-10", "densenet-bc-100-cifar-100",
          "wideresnet-16-4-cifar-100")
SYNTHETIC = ((10_000, 10), (50_000, 100), (10_000, 1000))


@dataclass(frozen=True)
class Case:
    """One data set: fit logits and labels."""

    name: str
    z: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Row:
    """One method on one case: median fit time, the temperature it found and the NLL there."""

    case: str
    method: str
    seconds: float
    temperature: float
    nll: float


def nll_at(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean NLL of softmax(z / t) in float64."""
    s = z / t
    return float((logsumexp(s, axis=1) - s[np.arange(len(y)), y]).mean())


def load_cases() -> list[Case]:
    """Fit halves of the real netcal fixtures (log-probabilities), then synthetic over-confident
    logits: calibrated logits with labels drawn from them, scaled up 4x."""
    cases = []
    for name in NETCAL:
        path = REAL / f"{name}.npz"
        if not path.is_file():
            print(f"skipping {name}: fixture not found at {path}")
            continue
        with np.load(path) as d:
            p, y = d["predictions"].astype(np.float64), d["ground_truth"].astype(np.int64)
        n = len(y) // 2
        cases.append(Case(name, np.log(np.clip(p[:n], 1e-12, 1.0)), y[:n]))
    rng = np.random.default_rng(0)
    for n, c in SYNTHETIC:
        base = rng.normal(0.0, 2.0, (n, c))
        p = np.exp(log_softmax(base, axis=1))
        u = rng.random((n, 1))
        y = np.minimum((p.cumsum(1) < u).sum(1), c - 1)
        cases.append(Case(f"synthetic {n}x{c}", 4.0 * base, y.astype(np.int64)))
    return cases


# ---------------------------------------------------------------------------------------------
# The temperature-scaling contenders: each fits and returns its T


def calibviz_ts(z: np.ndarray, y: np.ndarray) -> float:
    from calibviz.calibrators import TemperatureScaling

    return TemperatureScaling(device="cpu").fit(z, y).temperature_


def sklearn_ts(z: np.ndarray, y: np.ndarray) -> float:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    class LogitsAsInput(ClassifierMixin, BaseEstimator):
        """A fitted 'classifier' whose decision_function is its input: lets sklearn calibrate
        precomputed logits."""

        def fit(self, x: np.ndarray, y: np.ndarray) -> LogitsAsInput:
            self.classes_ = np.arange(x.shape[1])
            return self

        def decision_function(self, x: np.ndarray) -> np.ndarray:
            return x

        def predict(self, x: np.ndarray) -> np.ndarray:
            return x.argmax(1)

    est = LogitsAsInput().fit(z, y)
    cal = CalibratedClassifierCV(FrozenEstimator(est), method="temperature").fit(z, y)
    return 1.0 / float(cal.calibrated_classifiers_[0].calibrators[0].beta_)


def netcal_ts(z: np.ndarray, y: np.ndarray) -> float:
    from netcal.scaling import TemperatureScaling as NetcalTS

    p = np.exp(log_softmax(z, axis=1))  # netcal takes probabilities and takes their log itself
    ts = NetcalTS()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts.fit(p, y, tensorboard=False)
    return 1.0 / float(np.asarray(ts.weights).ravel()[0])


def lbfgs_from_1_5(z: np.ndarray, y: np.ndarray) -> float:
    """The widely copied recipe, written here independently: T = 1.5, torch LBFGS(lr=0.01,
    max_iter=50), one step on the NLL of z / T; returns the T it stops at (tests/test_calibrators.py
    checks that it stalls short of the optimum)."""
    zt, yt = torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(y)
    t = torch.nn.Parameter(torch.ones(1) * 1.5)
    opt = torch.optim.LBFGS([t], lr=0.01, max_iter=50)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt / t, yt)
        loss.backward()
        return loss

    opt.step(closure)
    return float(t.detach())


CONTENDERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "calibviz": calibviz_ts,
    "sklearn temperature": sklearn_ts,
    "netcal": netcal_ts,
    "LBFGS from 1.5": lbfgs_from_1_5,
}


def timed(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(median seconds, the T of the last run)."""
    times, t = [], float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        t = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), t


def bench_ts(cases: list[Case], repeats: int) -> list[Row]:
    rows = []
    for case in cases:
        for method, fn in CONTENDERS.items():
            try:
                sec, t = timed(lambda fn=fn, case=case: fn(case.z, case.y), repeats)
                nll = nll_at(case.z, case.y, t) if t > 0 else float("nan")
            except Exception as e:  # a peer that fails is reported, not hidden
                print(f"{case.name} / {method}: failed: {type(e).__name__}: {e}")
                sec, t, nll = float("nan"), float("nan"), float("nan")
            rows.append(Row(case.name, method, sec, t, nll))
            print(f"{case.name:<28} {method:<20} {sec:8.4f}s  T={t:<12.6g} NLL={nll:.10f}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Dirichlet calibration against dirichletcal


def odir_objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, lam: float,
                   mu: float) -> float:
    """Mean NLL of softmax(x W^T + b) plus Kull et al.'s normalised ODIR penalty, in numpy (an independent
    check of the fitted weights, shared with tests/test_calibrators.py)."""
    c = x.shape[1]
    out = x @ w.T + b
    off = w - np.diag(np.diag(w))
    return (float((logsumexp(out, axis=1) - out[np.arange(len(y)), y]).mean())
            + lam / (c * (c - 1)) * float((off**2).sum()) + mu / c * float((b**2).sum()))


def bench_dirichlet(cases: list[Case]) -> list[tuple[str, str, float, float]]:
    """(case, method, seconds, regularised objective) for fixed lambda = mu = 1 on 10-class cases."""
    try:
        from dirichletcal.calib.fulldirichlet import FullDirichletCalibrator
    except ImportError as e:
        print(f"dirichletcal not importable ({e}); Dirichlet comparison skipped")
        return []
    from calibviz.calibrators import DirichletCalibration

    lam = mu = 1.0
    out = []
    for case in cases:
        if case.z.shape[1] != 10 or case.name.startswith("synthetic"):
            continue
        x = log_softmax(case.z, axis=1)
        t0 = time.perf_counter()
        ours = DirichletCalibration(reg_lambda=lam, reg_mu=mu, device="cpu").fit(case.z, case.y)
        t_ours = time.perf_counter() - t0
        theirs = FullDirichletCalibrator(reg_lambda=lam, reg_mu=mu, reg_norm=True, ref_row=False)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs.fit(np.exp(x), case.y)
        t_theirs = time.perf_counter() - t0
        wt = np.asarray(theirs.weights)
        obj_ours = odir_objective(x, case.y, ours.weight_, ours.bias_, lam, mu)
        obj_theirs = odir_objective(x, case.y, wt[:, :-1], wt[:, -1], lam, mu)
        out += [(case.name, "calibviz", t_ours, obj_ours), (case.name, "dirichletcal", t_theirs, obj_theirs)]
        for r in out[-2:]:
            print(f"dirichlet {r[0]:<24} {r[1]:<14} {r[2]:8.3f}s objective={r[3]:.10f}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# Every method, before/after on an evaluation split


METHOD_FIXTURES = ("lenet-5-cifar-10", "densenet-bc-100-cifar-100")
ZOO_MODELS = ("mnist1d/ce", "mnist1d/dm", "digits/ce", "digits/dm")
MTS_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def method_sources() -> list[tuple[str, object, object, str | None]]:
    """(name, fit Predictions, eval Predictions, checkpoint path or None): two real fixtures split
    in halves, and the zoo's CE and distilled-data (dm) models, fitted on val, evaluated on test."""
    from calibviz.backend import predict
    from calibviz.formats import read_card
    from calibviz.predictions import Predictions

    out: list[tuple[str, object, object, str | None]] = []
    for name in METHOD_FIXTURES:
        path = REAL / f"{name}.npz"
        if not path.is_file():
            continue
        with np.load(path) as d:
            p, y = d["predictions"], d["ground_truth"].astype(np.int64)
        n = len(y) // 2
        out.append((f"{name} (halves)", Predictions(labels=y[:n], probs=p[:n], meta={"name": name}),
                    Predictions(labels=y[n:], probs=p[n:], meta={"name": name}), None))
    for model in ZOO_MODELS:
        ckpt = REPO / "checkpoints" / f"{model}.safetensors"
        if not ckpt.is_file():
            print(f"skipping zoo model {model}: {ckpt} not found")
            continue
        ds = read_card(ckpt)["dataset"]
        out.append((f"zoo {model} (val -> test)", predict(ckpt, f"{ds}:val"), predict(ckpt, f"{ds}:test"),
                    str(ckpt)))
    return out


def bench_methods() -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the methods table and of the MTS table (markdown cells)."""
    from calibviz.backend import masked_predictions
    from calibviz.calibrators import CALIBRATORS, mts_curve
    from calibviz.data import DataSpec
    from calibviz.recalibration import recalibration_report

    rows, mts_rows = [], []
    for name, fit, ev, ckpt in method_sources():
        for method in CALIBRATORS:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = recalibration_report(fit, ev, method, n_boot=0)
            sec = time.perf_counter() - t0
            b, a, f = rep["before"], rep["after"], rep["flags"]
            par = rep["parameters"]
            note = (f"T={par['temperature']:.3f}" if "temperature" in par else
                    f"λ={par['reg_lambda']:g}" if "reg_lambda" in par else "")
            rows.append([name, method, f"{b['ece']:.4f}", f"{a['ece']:.4f}", f"{b['nll']:.4f}",
                         f"{a['nll']:.4f}", f"{a['accuracy'] - b['accuracy']:+.4f}",
                         "yes" if f["nll_worse"] else "", note, f"{sec:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
        if ckpt:
            fits = masked_predictions(ckpt, str(DataSpec.of(ev.meta["data_spec"]).with_split("val")), MTS_RATIOS)
            for pt in mts_curve(fits, ev):
                mts_rows.append([name, f"{pt.ratio:.2f}", f"{pt.temperature:.3f}", f"{pt.ece:.4f}",
                                 f"{pt.nll:.4f}"])
                print(" | ".join(mts_rows[-1]), flush=True)
    return rows, mts_rows


# ---------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import netcal
    import sklearn

    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} (threads "
            f"{torch.get_num_threads()}), scikit-learn {sklearn.__version__}, netcal {netcal.__version__}, "
            f"Python {platform.python_version()}")


def write_markdown(path: Path, rows: list[Row], drows: list[tuple[str, str, float, float]], repeats: int,
                   command: str, method_rows: list[list[str]], mts_rows: list[list[str]]) -> None:
    lines = ["# Temperature scaling: calibviz against its peers", "",
             f"Machine: {machine()}.", "",
             f"Command: `{command}` (median of {repeats} runs per cell; the machine is shared, so "
             "absolute times are noisy; ratios within one run are the comparison).", "",
             "Only the fit is timed. NLL is recomputed in float64 from each method's T (netcal: T = 1 / "
             "its fitted weight). "
             "ΔNLL = method − calibviz (positive: the method stopped short of the optimum). "
             "Time ratio = method time / calibviz time.", "",
             "| data (fit split) | method | fit time (s) | time ratio | T | NLL | ΔNLL |",
             "|---|---|---:|---:|---:|---:|---:|"]
    by_case: dict[str, dict[str, Row]] = {}
    for r in rows:
        by_case.setdefault(r.case, {})[r.method] = r
    for case, ms in by_case.items():
        ref = ms["calibviz"]
        for m, r in ms.items():
            ratio = r.seconds / ref.seconds if ref.seconds > 0 else float("nan")
            lines.append(f"| {case} | {m} | {r.seconds:.4f} | {ratio:.1f} | {r.temperature:.6g} | "
                         f"{r.nll:.8f} | {r.nll - ref.nll:+.2e} |")
    if drows:
        lines += ["", "## Dirichlet calibration (ODIR, λ = μ = 1, Kull et al.'s normalisation) against "
                  "dirichletcal", "",
                  "dirichletcal 0.5.3 declares Python ≥ 3.12; it was installed here with "
                  "`--ignore-requires-python` (its code runs on 3.11) together with jax. Objective = mean "
                  "NLL + ODIR penalty, recomputed in numpy for both fitted weight sets.", "",
                  "| data (fit split) | method | fit time (s) | objective |", "|---|---|---:|---:|"]
        lines += [f"| {c} | {m} | {s:.3f} | {o:.10f} |" for c, m, s, o in drows]
    if method_rows:
        lines += ["", "## Every method: evaluation split before and after", "",
                  "Fixtures: fitted on the first half, evaluated on the second. Zoo models: fitted on val, "
                  "evaluated on test. ECE: top-label, 15 equal-width bins closed on the right. Default "
                  "parameters (ODIR strengths for ms / dirichlet chosen on a held-out quarter of the fit "
                  "split).",
                  "", "| data | method | ECE before | ECE after | NLL before | NLL after | Δ accuracy | "
                  "NLL worse | fitted | seconds |", "|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
        lines += ["| " + " | ".join(r) + " |" for r in method_rows]
    if mts_rows:
        lines += ["", "## MTS: mask ratio r on the fit (val) split, clean test split", "",
                  "r = 0 is plain temperature scaling.", "",
                  "| model | r | T | test ECE | test NLL |", "|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(r) + " |" for r in mts_rows]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results_calibrators.md"))
    ap.add_argument("--no-dirichlet", action="store_true")
    ap.add_argument("--methods", action="store_true",
                    help="also tabulate every method before/after on two fixtures and the zoo's ce/dm models")
    args = ap.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    cases = load_cases()
    rows = bench_ts(cases, args.repeats)
    drows = [] if args.no_dirichlet else bench_dirichlet(cases)
    method_rows, mts_rows = bench_methods() if args.methods else ([], [])
    command = "python bench/bench_calibrators.py " + " ".join(sys.argv[1:])
    write_markdown(Path(args.out), rows, drows, args.repeats, command.strip(), method_rows, mts_rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

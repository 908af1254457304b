"""Post-hoc calibrators: fit on one split's logits and labels, map logits to calibrated probabilities.

Every calibrator follows the scikit-learn contract: `__init__` stores parameters only, `fit(logits,
labels)` returns self, `transform(logits)` returns probabilities, fitted attributes end in `_`. All
of them save to and load from plain JSON (`save_calibrator` / `load_calibrator`), never pickle.
Numerics run in float64 torch on any device; numpy goes in and comes out.

Methods (DESIGN 3): temperature scaling (exact optimum by a bracketing solver), vector and matrix
scaling, Dirichlet calibration with ODIR (Kull et al. 2019), histogram binning and isotonic
regression (one-vs-rest, renormalised), ensemble temperature scaling (Zhang et al. 2020) and masked
temperature scaling (Zhu et al. 2023), which is fitted on predictions of masked inputs.

`REGISTRY` holds each calibrator's metadata (label, short label, plain-language description, whether
it needs the model): adding a calibrator means writing its class and one `CalibratorInfo` entry.
Nothing here runs a model: MTS takes predictions the backend computed on masked inputs.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from scipy.special import softmax

from calibviz.devices import pick_device

if TYPE_CHECKING:
    from calibviz.predictions import Predictions

JSON_FORMAT = "calibviz-calibrator"
JSON_VERSION = 1
T_MIN = 1e-4
T_MAX = 1e4


# ---------------------------------------------------------------------------------------------
# Shared plumbing


def _device(device: str | torch.device | None) -> torch.device:
    return device if isinstance(device, torch.device) else pick_device(device)


def _check_logits(logits: np.ndarray, name: str = "logits") -> np.ndarray:
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"{name}: expected a non-empty (N, C) array with C >= 2, got shape {z.shape}")
    if z.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {z.dtype}")
    if not np.isfinite(z).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return z


def _check_labels(labels: np.ndarray, n: int, c: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match the logits, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels: expected integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels: values must lie in [0, {c}), found [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _tensor(a: np.ndarray, dev: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a)).to(device=dev, dtype=dtype)


def _softmax_np(z: np.ndarray) -> np.ndarray:
    return softmax(np.asarray(z, dtype=np.float64), axis=1)


def softmax_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float64: the probabilities temperature scaling gives for a chosen T."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return _softmax_np(np.asarray(logits, dtype=np.float64) / float(temperature))


def _as_json_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list | tuple):
        return [_as_json_value(x) for x in v]
    return v


class NotFittedError(RuntimeError):
    """A calibrator was used before `fit`."""


class Calibrator:
    """Base class: parameter introspection, JSON round trip and the not-fitted check.

    Subclasses set `key` and `_fitted_names` (fitted attributes saved to JSON) and implement `fit`
    and `transform`; logit-space ones also `transform_logits`. Label and description live in `REGISTRY`.
    """

    key: ClassVar[str] = ""
    _fitted_names: ClassVar[tuple[str, ...]] = ()

    @property
    def label(self) -> str:
        """The registered display name, e.g. "Temperature scaling"."""
        return calibrator_info(self.key).label

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters and their current values (scikit-learn style)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def _check_fitted(self) -> None:
        if not all(hasattr(self, n) for n in self._fitted_names):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(logits, labels)")

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> Calibrator:
        """Fit on one split's logits (N, C) and integer labels (N,); returns self."""
        raise NotImplementedError

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, C), float64, for logits (N, C)."""
        raise NotImplementedError

    def fit_transform(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """fit, then transform the same logits."""
        return self.fit(logits, labels).transform(logits)

    def fitted_parameters(self) -> dict[str, Any]:
        """The fitted values a person reads (small, JSON-ready): e.g. {"temperature": 1.8}."""
        self._check_fitted()
        return {n.rstrip("_"): _as_json_value(getattr(self, n)) for n in self._fitted_names}

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON description: method key, constructor parameters and fitted attributes."""
        self._check_fitted()
        params = {k: _as_json_value(v) for k, v in self.get_params().items() if k != "device"}
        fitted = {n: _as_json_value(getattr(self, n)) for n in self._fitted_names}
        return {"format": JSON_FORMAT, "version": JSON_VERSION, "method": self.key,
                "params": params, "fitted": fitted}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibrator:
        """Rebuild a fitted calibrator from `to_json()` output; transforms are identical."""
        if d.get("format") != JSON_FORMAT:
            raise ValueError(f"not a calibviz calibrator (field 'format' is {d.get('format')!r})")
        if int(d.get("version", 0)) > JSON_VERSION:
            raise ValueError(f"calibrator JSON version {d.get('version')} is newer than this "
                             f"calibviz understands ({JSON_VERSION})")
        method = d.get("method")
        target = cls if cls.key == method else _class_of(str(method))
        obj = target(**d.get("params", {}))
        fitted = d.get("fitted", {})
        missing = [n for n in target._fitted_names if n not in fitted]
        if missing:
            raise ValueError(f"calibrator JSON for {method!r} lacks fitted fields {missing}")
        for n in target._fitted_names:
            setattr(obj, n, target._fitted_from_json(n, fitted[n]))
        return obj

    @classmethod
    def _fitted_from_json(cls, name: str, value: Any) -> Any:
        return np.asarray(value, dtype=np.float64) if isinstance(value, list) else value

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------------------------
# Temperature scaling


@dataclass(frozen=True)
class TemperatureSolution:
    """Result of the exact temperature solve: T, the NLL there, derivative, iterations, and which
    bracket limit (if any) the optimum was capped at."""

    temperature: float
    nll: float
    gradient: float
    n_evals: int
    at_limit: str | None


def _ts_terms(dd: torch.Tensor, d: torch.Tensor, dmax: torch.Tensor, beta: float
              ) -> tuple[float, float, float]:
    """Mean NLL of softmax(beta * z), its first and second derivatives in beta.

    Works on the logit differences d = z - z_label (huge margins do not cancel to zero in float64),
    dmax = row max of d (>= 0) and dd = d - dmax, so the shifted exponent beta * dd needs no max
    pass: one exp and a few fused row reductions per call."""
    e = torch.exp(dd * beta)
    total = e.sum(1)
    ed = torch.einsum("ij,ij->i", e, d) / total  # E_p[d]
    ed2 = torch.einsum("ij,ij->i", e.mul_(d), d) / total  # E_p[d^2]
    f = (dmax * beta + torch.log(total)).mean()
    g = ed.mean()
    h = (ed2 - ed * ed).clamp_min(0.0).mean()
    return float(f), float(g), float(h)


def solve_temperature(logits: np.ndarray, labels: np.ndarray, *, t_min: float = T_MIN,
                      t_max: float = T_MAX, device: str | torch.device | None = None
                      ) -> TemperatureSolution:
    """The exact NLL-optimal temperature, float64.

    The NLL of softmax(beta * z) is convex in beta = 1/T, so its derivative g is monotone. From
    beta = 1, Newton steps (each at most a factor 16) move towards the sign change of g; once g has
    been seen on both sides, the root is bracketed and Newton steps that leave the bracket are
    replaced by bisection (geometric while the bracket spans more than a factor 4). It stops when
    the step or the bracket is at float64 resolution. If g keeps one sign up to a limit of
    [1/t_max, 1/t_min], T is capped there and `at_limit` says which ("t_min": NLL keeps falling as
    T -> 0; "t_max": as T -> infinity).
    """
    z_np = _check_logits(logits)
    y_np = _check_labels(labels, *z_np.shape)
    if not 0 < t_min < 1 < t_max:
        raise ValueError(f"need 0 < t_min < 1 < t_max, got t_min={t_min}, t_max={t_max}")
    dev = _device(device)
    z = _tensor(z_np, dev)
    y = torch.as_tensor(y_np, device=dev)
    d = z - z.gather(1, y[:, None])
    del z
    dmax = d.amax(dim=1)
    dd = d - dmax[:, None]
    b_lo_lim, b_hi_lim = 1.0 / t_max, 1.0 / t_min
    n_evals = 0

    def terms(beta: float) -> tuple[float, float, float]:
        nonlocal n_evals
        n_evals += 1
        return _ts_terms(dd, d, dmax, beta)

    lo, hi = b_lo_lim, b_hi_lim
    have_lo = have_hi = False
    streak = 0
    beta = 1.0
    f, g, h = terms(beta)
    for _ in range(200):
        # g == 0 exactly happens at the root, or by underflow when all mass sits on the labels
        # (then NLL is still falling as beta grows): treat the latter as g < 0.
        rising = g < 0 or (g == 0 and f == 0.0)  # the root lies at a larger beta
        if rising:
            lo, have_lo = beta, True
        elif g > 0:
            hi, have_hi = beta, True
        else:
            break
        if not have_hi and beta >= b_hi_lim:
            return TemperatureSolution(1.0 / beta, f, -g * beta * beta, n_evals, "t_min")
        if not have_lo and beta <= b_lo_lim:
            return TemperatureSolution(1.0 / beta, f, -g * beta * beta, n_evals, "t_max")
        step = g / h if h > 0 else math.inf
        if abs(step) <= 1e-15 * beta or (have_lo and have_hi and hi - lo <= 1e-15 * hi):
            break
        nxt = beta - step
        if have_lo and have_hi:
            if not lo < nxt < hi:
                nxt = math.sqrt(lo * hi) if hi > 4 * lo else 0.5 * (lo + hi)
        else:  # no bracket yet: Newton limited to a factor 16; after two such steps, expand by 16
            streak += 1
            if streak > 2 or not math.isfinite(nxt):
                nxt = beta * 16.0 if rising else beta / 16.0
            nxt = min(max(nxt, beta / 16.0, b_lo_lim), beta * 16.0, b_hi_lim)
        beta = nxt
        f, g, h = terms(beta)
    # dNLL/dT = -g / T^2 = -g * beta^2
    return TemperatureSolution(1.0 / beta, f, -g * beta * beta, n_evals, None)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, t_min: float = T_MIN,
                    t_max: float = T_MAX) -> float:
    """The NLL-optimal temperature T > 0 for these logits and labels (exact, float64)."""
    return solve_temperature(logits, labels, t_min=t_min, t_max=t_max).temperature


class TemperatureScaling(Calibrator):
    """softmax(z / T) with the single T > 0 that minimises NLL on the fit split (Guo et al. 2017)."""

    key = "ts"
    _fitted_names = ("temperature_",)

    def __init__(self, t_min: float = T_MIN, t_max: float = T_MAX, device: str | None = None) -> None:
        self.t_min = t_min
        self.t_max = t_max
        self.device = device

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> TemperatureScaling:
        """Solve for the exact optimal T; `at_limit_` says if it was capped at t_min or t_max."""
        sol = solve_temperature(logits, labels, t_min=self.t_min, t_max=self.t_max, device=self.device)
        self.temperature_ = sol.temperature
        self.fit_nll_ = sol.nll
        self.n_evals_ = sol.n_evals
        self.at_limit_ = sol.at_limit
        if sol.at_limit:
            warnings.warn(f"temperature scaling: the NLL optimum lies beyond {sol.at_limit}; T was capped "
                          f"at {sol.temperature:g}", RuntimeWarning, stacklevel=2)
        return self

    def transform_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits z / T."""
        self._check_fitted()
        return np.asarray(_check_logits(logits), dtype=np.float64) / self.temperature_

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """softmax(z / T), float64."""
        return _softmax_np(self.transform_logits(logits))

    def fitted_parameters(self) -> dict[str, Any]:
        """{"temperature": T, "at_limit": None | "t_min" | "t_max"}."""
        self._check_fitted()
        return {"temperature": float(self.temperature_), "at_limit": getattr(self, "at_limit_", None)}


class MaskedTemperatureScaling(TemperatureScaling):
    """Temperature scaling fitted on logits of masked calibration inputs (Zhu et al., ICCV 2023).

    Each input element of the calibration split is zeroed independently with probability
    `mask_ratio` before the forward pass; T is fitted by NLL on those logits. Test inputs are never
    masked: `transform` takes clean logits. `fit(logits, labels)` expects logits that were already
    computed from masked inputs (`calibviz.backend.masked_predictions`); nothing here runs the model.
    """

    key = "mts"

    def __init__(self, mask_ratio: float = 0.1, mask_seed: int = 0, t_min: float = T_MIN,
                 t_max: float = T_MAX, device: str | None = None) -> None:
        super().__init__(t_min=t_min, t_max=t_max, device=device)
        self.mask_ratio = mask_ratio
        self.mask_seed = mask_seed

    def fitted_parameters(self) -> dict[str, Any]:
        """{"temperature": T, "at_limit": ..., "mask_ratio": r}."""
        return {**super().fitted_parameters(), "mask_ratio": float(self.mask_ratio)}


# ---------------------------------------------------------------------------------------------
# Affine maps of logits (vector / matrix scaling) and of log-probabilities (Dirichlet)


@dataclass(frozen=True)
class LBFGSOptions:
    """Full-batch LBFGS settings for the convex affine calibrators."""

    max_iter: int = 500
    tolerance_grad: float = 1e-8
    tolerance_change: float = 1e-12
    history_size: int = 20


SELECTION_LBFGS = LBFGSOptions(max_iter=100, tolerance_change=1e-9)
"""Cheaper, warm-started fits along the regularisation path; the final fit uses the defaults."""
ODIR_GRID = (1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
"""Values of the ODIR strengths (lambda = mu) tried when they are left to be chosen on held-out data."""
HOLDOUT_SHARE = 0.25


def _fit_affine(x: torch.Tensor, y: torch.Tensor, kind: str, reg_lambda: float, reg_mu: float,
                opts: LBFGSOptions, init: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Minimise mean NLL of softmax(A(x)) + ODIR penalty with LBFGS (strong Wolfe) in float64.

    kind "vector": A(x) = w * x + b. kind "matrix": A(x) = x @ W.T + b. ODIR (Kull et al. 2019):
    reg_lambda / (C (C-1)) * sum of squared off-diagonal W entries + reg_mu / C * sum b^2.
    Starts from the identity map, or from `init`. Returns (weight, bias, final objective, iterations)."""
    c = x.shape[1]
    if init is not None:
        w = init[0].clone().requires_grad_(True)
        b = init[1].clone().requires_grad_(True)
    else:
        w = (torch.ones(c, dtype=x.dtype, device=x.device) if kind == "vector"
             else torch.eye(c, dtype=x.dtype, device=x.device)).requires_grad_(True)
        b = torch.zeros(c, dtype=x.dtype, device=x.device, requires_grad=True)
    offdiag = None if kind == "vector" else ~torch.eye(c, dtype=torch.bool, device=x.device)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=opts.max_iter, max_eval=opts.max_iter * 2,
                            tolerance_grad=opts.tolerance_grad, tolerance_change=opts.tolerance_change,
                            history_size=opts.history_size, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        out = x * w + b if kind == "vector" else x @ w.T + b
        loss = torch.nn.functional.cross_entropy(out, y)
        if reg_lambda and offdiag is not None and c > 1:
            loss = loss + reg_lambda / (c * (c - 1)) * w[offdiag].square().sum()
        if reg_mu:
            loss = loss + reg_mu / c * b.square().sum()
        return loss

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        final = float(objective())
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    return w.detach(), b.detach(), final, n_iter


def _heldout_nll(x: torch.Tensor, y: torch.Tensor, kind: str, w: torch.Tensor, b: torch.Tensor) -> float:
    with torch.no_grad():
        out = x * w + b if kind == "vector" else x @ w.T + b
        return float(torch.nn.functional.cross_entropy(out, y))


class _AffineCalibrator(Calibrator):
    """Shared fit/transform for vector scaling, matrix scaling and Dirichlet calibration.

    A regularisation strength left as None is chosen on a held-out quarter of the fit split: the
    grid `ODIR_GRID` (lambda = mu when both are None) is walked from the strongest penalty down with
    warm-started, capped fits (`SELECTION_LBFGS`), stopping once held-out NLL rises; the best value
    is then refitted on the whole fit split, starting from its held-out solution."""

    _kind: ClassVar[str] = "matrix"
    _on_log_probs: ClassVar[bool] = False
    _fitted_names = ("weight_", "bias_", "reg_lambda_", "reg_mu_")

    reg_lambda: float | None
    reg_mu: float | None

    def __init__(self, reg_lambda: float | None = None, reg_mu: float | None = None, random_state: int = 0,
                 device: str | None = None) -> None:
        """Strengths None: chosen on held-out fit data (see the class docstring)."""
        self.reg_lambda = reg_lambda
        self.reg_mu = reg_mu
        self.random_state = random_state
        self.device = device

    def _inputs(self, logits: np.ndarray, dev: torch.device) -> torch.Tensor:
        z = _tensor(_check_logits(logits), dev)
        return torch.log_softmax(z, dim=1) if self._on_log_probs else z

    def _select(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, list[dict[str, float]]]:
        """(lambda, mu) with the lowest held-out NLL along the grid, and the path walked."""
        n = x.shape[0]
        perm = torch.as_tensor(np.random.default_rng(self.random_state).permutation(n), device=x.device)
        n_hold = max(1, round(HOLDOUT_SHARE * n))
        hold, train = perm[:n_hold], perm[n_hold:]
        path: list[dict[str, float]] = []
        init = None
        starts: dict[tuple[float, float], tuple[torch.Tensor, torch.Tensor]] = {}
        best, rises = math.inf, 0
        for v in sorted(ODIR_GRID, reverse=True):
            lam = v if self.reg_lambda is None else float(self.reg_lambda)
            mu = v if self.reg_mu is None else float(self.reg_mu)
            w, b, _, _ = _fit_affine(x[train], y[train], self._kind, lam, mu, SELECTION_LBFGS, init)
            init = (w, b)
            score = _heldout_nll(x[hold], y[hold], self._kind, w, b)
            path.append({"reg_lambda": lam, "reg_mu": mu, "heldout_nll": score})
            starts[(lam, mu)] = (w, b)
            if score < best:
                best, rises = score, 0
            else:
                rises += 1
                if rises >= 1:
                    break
        top = min(path, key=lambda r: r["heldout_nll"])
        self._warm_start = starts[(top["reg_lambda"], top["reg_mu"])]
        return top["reg_lambda"], top["reg_mu"], path

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> _AffineCalibrator:
        """Full-batch LBFGS in float64 on the (convex) regularised NLL."""
        z = _check_logits(logits)
        y_np = _check_labels(labels, *z.shape)
        dev = _device(self.device)
        x = self._inputs(z, dev)
        y = torch.as_tensor(y_np, device=dev)
        self.selection_path_: list[dict[str, float]] = []
        self._warm_start: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.reg_lambda is None or self.reg_mu is None:
            lam, mu, self.selection_path_ = self._select(x, y)
        else:
            lam, mu = float(self.reg_lambda), float(self.reg_mu)
        w, b, loss, n_iter = _fit_affine(x, y, self._kind, lam, mu, LBFGSOptions(), self._warm_start)
        del self._warm_start
        self.weight_ = w.cpu().numpy()
        self.bias_ = b.cpu().numpy()
        self.reg_lambda_ = lam
        self.reg_mu_ = mu
        self.fit_objective_ = loss
        self.n_iter_ = n_iter
        return self

    def transform_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits: the fitted affine map of the logits (or of the log-probabilities)."""
        self._check_fitted()
        x = self._inputs(logits, torch.device("cpu")).numpy()
        w = np.asarray(self.weight_, dtype=np.float64)
        b = np.asarray(self.bias_, dtype=np.float64)
        return (x * w if w.ndim == 1 else x @ w.T) + b

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """softmax of the calibrated logits, float64."""
        return _softmax_np(self.transform_logits(logits))

    def fitted_parameters(self) -> dict[str, Any]:
        """Summary of the fitted map: size, diagonal range, bias and off-diagonal norms, ODIR strengths."""
        self._check_fitted()
        w = np.asarray(self.weight_)
        diag = w if w.ndim == 1 else np.diag(w)
        out = {"n_parameters": int(w.size + np.asarray(self.bias_).size),
               "diagonal_min": float(diag.min()), "diagonal_max": float(diag.max()),
               "bias_norm": float(np.linalg.norm(self.bias_))}
        if w.ndim == 2:
            out["offdiagonal_norm"] = float(np.linalg.norm(w - np.diag(diag)))
            out["reg_lambda"] = float(self.reg_lambda_)
        out["reg_mu"] = float(self.reg_mu_)
        return out


class VectorScaling(_AffineCalibrator):
    """softmax(w * z + b): one scale and one offset per class (Guo et al. 2017)."""

    key = "vs"
    _kind = "vector"

    def __init__(self, reg_mu: float | None = 0.0, random_state: int = 0, device: str | None = None) -> None:
        self.reg_mu = reg_mu
        self.random_state = random_state
        self.device = device

    @property
    def reg_lambda(self) -> float:
        """Vector scaling has no off-diagonal entries to penalise."""
        return 0.0


class MatrixScaling(_AffineCalibrator):
    """softmax(W z + b) with ODIR regularisation (Guo et al. 2017; Kull et al. 2019's MS-ODIR).

    By default the ODIR strengths are chosen on held-out fit data; reg_lambda = reg_mu = 0 gives
    Guo et al.'s unregularised matrix scaling, which overfits with many classes."""

    key = "ms"
    _kind = "matrix"


class DirichletCalibration(_AffineCalibrator):
    """softmax(W log p + b) with ODIR regularisation, p = softmax(z) (Kull et al., NeurIPS 2019).

    ODIR penalty: reg_lambda / (C(C-1)) * sum of squared off-diagonal W entries + reg_mu / C *
    sum of squared intercepts, added to the mean NLL (the paper's normalisation). Strengths left as
    None are chosen on a held-out quarter of the fit split, as the paper chooses them by validation."""

    key = "dirichlet"
    _kind = "matrix"
    _on_log_probs = True


# ---------------------------------------------------------------------------------------------
# Ensemble temperature scaling


class EnsembleTemperatureScaling(Calibrator):
    """w1 softmax(z/T) + w2 softmax(z) + w3 / C with simplex weights (Zhang et al., ICML 2020).

    T is the exact temperature-scaling optimum; the weights then minimise NLL over the simplex
    (a convex problem in three numbers, solved with SLSQP)."""

    key = "ets"
    _fitted_names = ("temperature_", "weights_")

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def _components(self, logits: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(_check_logits(logits), dtype=np.float64)
        return _softmax_np(z / temperature), _softmax_np(z)

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> EnsembleTemperatureScaling:
        """Exact TS temperature, then NLL-optimal simplex weights."""
        from scipy.optimize import minimize

        z = _check_logits(logits)
        y = _check_labels(labels, *z.shape)
        t = solve_temperature(z, y, device=self.device).temperature
        p_ts, p_raw = self._components(z, t)
        idx = np.arange(len(y))
        comp = np.stack([p_ts[idx, y], p_raw[idx, y], np.full(len(y), 1.0 / z.shape[1])], axis=1)

        def f(w: np.ndarray) -> tuple[float, np.ndarray]:
            mix = np.maximum(comp @ w, 1e-300)
            return float(-np.log(mix).mean()), -(comp / mix[:, None]).mean(0)

        res = minimize(f, np.array([0.98, 0.01, 0.01]), jac=True, method="SLSQP",
                       bounds=[(0.0, 1.0)] * 3,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                     "jac": lambda w: np.ones(3)}],
                       options={"ftol": 1e-14, "maxiter": 500})
        w = np.clip(res.x, 0.0, None)
        w = w / w.sum()
        # never worse than plain TS, which is the feasible point (1, 0, 0)
        if f(w)[0] > f(np.array([1.0, 0.0, 0.0]))[0]:
            w = np.array([1.0, 0.0, 0.0])
        self.temperature_ = float(t)
        self.weights_ = w
        self.fit_nll_ = f(w)[0]
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """The weighted mix of the three probability vectors."""
        self._check_fitted()
        p_ts, p_raw = self._components(logits, self.temperature_)
        w = np.asarray(self.weights_, dtype=np.float64)
        return w[0] * p_ts + w[1] * p_raw + w[2] / p_ts.shape[1]

    def fitted_parameters(self) -> dict[str, Any]:
        """{"temperature", "weight_ts", "weight_uncalibrated", "weight_uniform"}."""
        self._check_fitted()
        w = np.asarray(self.weights_)
        return {"temperature": float(self.temperature_), "weight_ts": float(w[0]),
                "weight_uncalibrated": float(w[1]), "weight_uniform": float(w[2])}


# ---------------------------------------------------------------------------------------------
# Non-parametric one-vs-rest calibrators on probabilities


def _renormalise(q: np.ndarray) -> np.ndarray:
    s = q.sum(axis=1, keepdims=True)
    uniform = np.full_like(q, 1.0 / q.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = q / s
    return np.where(s > 0, out, uniform)


class HistogramBinning(Calibrator):
    """One-vs-rest histogram binning (Zadrozny & Elkan 2001; Guo et al. 2017), renormalised.

    For each class k the probability p_k is put into one of `n_bins` equal-width bins closed on
    the right and replaced by the share of fit examples in that bin whose label is k (an empty bin
    keeps its midpoint). Rows are then divided by their sum."""

    key = "histogram"
    _fitted_names = ("values_", "counts_")

    def __init__(self, n_bins: int = 15) -> None:
        self.n_bins = n_bins

    def _bin_index(self, p: np.ndarray) -> np.ndarray:
        inner = np.linspace(0.0, 1.0, self.n_bins + 1)[1:-1]
        return np.searchsorted(inner, p, side="left")  # (lo, hi]: a value on an edge goes left

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> HistogramBinning:
        """Per-class, per-bin positive frequency on the fit split."""
        z = _check_logits(logits)
        y = _check_labels(labels, *z.shape)
        p = _softmax_np(z)
        c, nb = z.shape[1], self.n_bins
        idx = self._bin_index(p)  # (N, C)
        onehot = np.eye(c)[y]
        flat = idx + nb * np.arange(c)[None, :]
        count = np.bincount(flat.ravel(), minlength=c * nb).reshape(c, nb)
        pos = np.bincount(flat.ravel(), weights=onehot.ravel(), minlength=c * nb).reshape(c, nb)
        mid = (np.arange(nb) + 0.5) / nb
        with np.errstate(invalid="ignore", divide="ignore"):
            self.values_ = np.where(count > 0, pos / count, mid[None, :])
        self.counts_ = count
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Bin values per class, renormalised per row (uniform where every class maps to 0)."""
        self._check_fitted()
        p = _softmax_np(_check_logits(logits))
        idx = self._bin_index(p)
        values = np.asarray(self.values_, dtype=np.float64)
        q = np.take_along_axis(values, idx.T, axis=1).T
        return _renormalise(q)

    def fitted_parameters(self) -> dict[str, Any]:
        """{"n_bins", "empty_bins"}."""
        self._check_fitted()
        return {"n_bins": int(self.n_bins), "empty_bins": int((np.asarray(self.counts_) == 0).sum())}


class IsotonicCalibration(Calibrator):
    """One-vs-rest isotonic regression of 1[y = k] on p_k (Zadrozny & Elkan 2002), renormalised.

    Fitted with scikit-learn's IsotonicRegression; stored as its thresholds and applied by linear
    interpolation with clipping at the ends (what scikit-learn's predict does), so a JSON-loaded
    calibrator needs no scikit-learn object."""

    key = "isotonic"
    _fitted_names = ("x_thresholds_", "y_thresholds_")

    def __init__(self) -> None:
        pass

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> IsotonicCalibration:
        """One IsotonicRegression(0 <= y <= 1, increasing, clip) per class."""
        from sklearn.isotonic import IsotonicRegression

        z = _check_logits(logits)
        y = _check_labels(labels, *z.shape)
        p = _softmax_np(z)
        xs, ys = [], []
        for k in range(z.shape[1]):
            ir = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            ir.fit(p[:, k], (y == k).astype(np.float64))
            xs.append(np.asarray(ir.X_thresholds_, dtype=np.float64))
            ys.append(np.asarray(ir.y_thresholds_, dtype=np.float64))
        self.x_thresholds_ = xs
        self.y_thresholds_ = ys
        return self

    @classmethod
    def _fitted_from_json(cls, name: str, value: Any) -> Any:
        return [np.asarray(v, dtype=np.float64) for v in value]

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Interpolated per-class values, renormalised per row."""
        self._check_fitted()
        p = _softmax_np(_check_logits(logits))
        q = np.empty_like(p)
        for k, (xt, yt) in enumerate(zip(self.x_thresholds_, self.y_thresholds_, strict=True)):
            q[:, k] = np.interp(p[:, k], xt, yt)
        return _renormalise(q)

    def fitted_parameters(self) -> dict[str, Any]:
        """{"n_thresholds": total breakpoints over all classes}."""
        self._check_fitted()
        return {"n_thresholds": int(sum(len(x) for x in self.x_thresholds_))}


# ---------------------------------------------------------------------------------------------
# Registry, persistence and model surgery


@dataclass(frozen=True)
class CalibratorInfo:
    """One registered calibrator: its class and what the page, the command line and the docs show of it.

    `short` labels the bars of the comparison chart, `fits` says in symbols what is fitted (the docs' table),
    `description` in words (the page); `needs_model` marks a method fitted on predictions of
    masked inputs, so it is offered only for models the backend can run (`model_use` says why);
    `zero_probabilities` one that can give a class probability exactly 0 (`ZERO_PROBABILITY_NOTE`)."""

    cls: type[Calibrator]
    label: str
    short: str
    fits: str
    description: str
    needs_model: bool = False
    model_use: str = ""
    zero_probabilities: bool = False

    @property
    def key(self) -> str:
        """The method's short key (`ts`, `mts`, ...), as in the calibrator JSON."""
        return self.cls.key


REGISTRY: dict[str, CalibratorInfo] = {info.key: info for info in (
    CalibratorInfo(
        TemperatureScaling, "Temperature scaling", "TS",
        fits="one T > 0: softmax(z / T)",
        description=(
            "Divides every logit by one number, the temperature T, chosen to make the fit split's "
            "log-loss as small as possible. T > 1 softens over-confident predictions, T < 1 sharpens "
            "under-confident ones. Because every logit is scaled alike, the predicted class never "
            "changes, so accuracy is untouched. calibviz finds the exact optimal T with a bracketing "
            "solver rather than stopping wherever a gradient optimiser happens to stop."),
    ),
    CalibratorInfo(
        EnsembleTemperatureScaling, "Ensemble temperature scaling", "ETS",
        fits="w₁·TS + w₂·uncalibrated + w₃·uniform, weights on the simplex (Zhang et al. 2020)",
        description=(
            "Mixes three predictions: the temperature-scaled one, the original one and a uniform guess "
            "over all classes, with weights that add up to one, fitted by log-loss. The mix can be "
            "better calibrated than temperature scaling alone, for example when a few examples are "
            "confidently wrong. The predicted class never changes."),
    ),
    CalibratorInfo(
        VectorScaling, "Vector scaling", "VS",
        fits="softmax(w ⊙ z + b)",
        description=(
            "Like temperature scaling, but each class gets its own scale and its own offset, fitted "
            "by log-loss on the fit split. It can correct a model that is over-confident about some "
            "classes and not others. Because classes are scaled differently, the predicted class can "
            "change, so accuracy may move a little."),
    ),
    CalibratorInfo(
        MatrixScaling, "Matrix scaling", "MS",
        fits=("softmax(W z + b) with ODIR (MS-ODIR, Kull et al. 2019); `reg_lambda=reg_mu=0` gives Guo et al.'s "
              "plain MS"),
        description=(
            "A full linear map of the logits, W z + b, fitted by log-loss: C x C + C numbers for C "
            "classes. It is the most flexible logit-space method. Unpenalised, it overfits badly when "
            "there are many classes and few fit examples, so by default an ODIR penalty shrinks the "
            "off-diagonal entries and the offsets, with its strength picked on a held-out quarter of "
            "the fit split. The predicted class can change."),
    ),
    CalibratorInfo(
        DirichletCalibration, "Dirichlet calibration", "Dir.",
        fits="softmax(W log p + b) with ODIR (Kull et al. 2019)",
        description=(
            "Fits a linear map to the log of the predicted probabilities, W log p + b, which amounts "
            "to modelling each class's probability vectors with a Dirichlet distribution. An ODIR "
            "penalty shrinks the off-diagonal entries and the intercepts so it does not overfit with "
            "many classes; its strength is picked on a held-out quarter of the fit split. It works "
            "from probabilities alone, so it suits models whose logits were not saved. The predicted "
            "class can change."),
    ),
    CalibratorInfo(
        HistogramBinning, "Histogram binning", "Hist.",
        fits="one-vs-rest, equal-width bins closed on the right, renormalised",
        zero_probabilities=True,
        description=(
            "For each class separately, sorts the predicted probabilities into equal-width bins and "
            "replaces each by how often that class was actually right in its bin on the fit split; "
            "then rescales each row to sum to one. It is simple and fixes any miscalibration shape, "
            "but it throws away ranking inside a bin, can change the predicted class, and a bin where "
            "the class never occurred gives probability zero, which log-loss punishes hard."),
    ),
    CalibratorInfo(
        IsotonicCalibration, "Isotonic regression", "Iso.",
        fits="one-vs-rest isotonic regression (scikit-learn), renormalised",
        zero_probabilities=True,
        description=(
            "For each class separately, fits the best non-decreasing curve from predicted probability "
            "to observed frequency on the fit split, then rescales each row to sum to one. It is more "
            "flexible than binning and keeps the order of the probabilities within a class, but it "
            "needs a fair amount of fit data, can change the predicted class, and can give probability "
            "zero, which log-loss punishes hard."),
    ),
    CalibratorInfo(
        MaskedTemperatureScaling, "Masked temperature scaling", "MTS",
        fits="TS fitted on logits of masked calibration inputs (Zhu et al. 2023)",
        needs_model=True, model_use="masks the model's inputs and runs it again",
        description=(
            "Temperature scaling fitted on a harder version of the calibration data: each input value "
            "is blanked out with probability r before the model sees it, and T is fitted on those "
            "predictions. Models trained on distilled data are confident on everything, so plain "
            "temperature scaling sees too few mistakes to soften them enough; masking the inputs "
            "reveals that over-confidence. Test inputs are never masked. It needs the model itself, "
            "not only its saved predictions. The curve of r against ECE shows how the choice of r matters."),
    ),
)}
"""Every calibrator by key, in the order the page offers them: the one place a calibrator is registered."""

CALIBRATORS: dict[str, type[Calibrator]] = {k: i.cls for k, i in REGISTRY.items() if not i.needs_model}
"""Calibrators that need only logits and labels, by short key (MTS, which needs the model, is not among them)."""

METHOD_DESCRIPTIONS: dict[str, str] = {k: i.description for k, i in REGISTRY.items()}
"""One plain-language paragraph per method key, MTS included, for the page."""

ZERO_PROBABILITY_NOTE = (
    "**Histogram binning and isotonic regression can make NLL worse** even when they lower ECE: where a class "
    "never occurred in a bin (or a stretch of the isotonic curve) of the fit split, they give it probability "
    "exactly zero, and log-loss charges log(1e12) ≈ 27.6 nats for every evaluation example that then turns out to "
    "be that class.")
"""Why the registry's `zero_probabilities` methods can make NLL worse, for the page."""


def registry_table() -> str:
    """The registry as the markdown table in docs/calibrators.md (`python -m calibviz.calibrators` prints it; a
    test fails when the docs differ)."""
    rows = ["| key | class | label | short | what it fits | needs the model |", "|---|---|---|---|---|---|"]
    for k, i in REGISTRY.items():
        model = f"yes: it {i.model_use}" if i.needs_model else ""
        rows.append(f"| `{k}` | `{i.cls.__name__}` | {i.label} | {i.short} | {i.fits} | {model} |")
    return "\n".join(rows)


def calibrator_info(method: str) -> CalibratorInfo:
    """The registry entry of a method key; ValueError naming the known keys for any other."""
    if method not in REGISTRY:
        raise ValueError(f"calibration method {method!r} is unknown; known: {list(REGISTRY)}")
    return REGISTRY[method]


def _class_of(method: str) -> type[Calibrator]:
    return calibrator_info(method).cls


def make_calibrator(method: str, **params: Any) -> Calibrator:
    """An unfitted calibrator from its key in `REGISTRY` (ts, ets, vs, ms, dirichlet, histogram, isotonic, mts)."""
    return _class_of(method)(**params)


def save_calibrator(calibrator: Calibrator, path: str | Path) -> None:
    """Write a fitted calibrator as a plain JSON file (floats written exactly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibrator.to_json(), indent=1))


def load_calibrator(path: str | Path) -> Calibrator:
    """Read a calibrator written by `save_calibrator`."""
    try:
        d = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{Path(path).name}: not valid JSON ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{Path(path).name}: expected a JSON object")
    return Calibrator.from_json(d)


def calibrate_model(model: torch.nn.Module, calibrator: Calibrator) -> torch.nn.Module:
    """A copy of `model` whose linear head already applies a logit-space calibrator.

    Temperature scaling divides the head's weight and bias by T; vector and matrix scaling, being
    affine in the logits, are composed into the head (W' = A W, b' = A b + c). The result is the
    same registered architecture, so `calibviz.formats.save_checkpoint` can write it. Dirichlet
    calibration (log-softmax in between), ETS, binning and isotonic regression are not affine in
    the logits and raise ValueError."""
    calibrator._check_fitted()
    head = getattr(model, "head", None)
    if not isinstance(head, torch.nn.Linear):
        raise ValueError("calibrate_model needs a model whose final layer `head` is a torch.nn.Linear")
    c = head.out_features
    if isinstance(calibrator, TemperatureScaling):
        a = np.eye(c) / calibrator.temperature_
        shift = np.zeros(c)
    elif isinstance(calibrator, VectorScaling | MatrixScaling):
        w = np.asarray(calibrator.weight_, dtype=np.float64)
        a = np.diag(w) if w.ndim == 1 else w
        shift = np.asarray(calibrator.bias_, dtype=np.float64)
    else:
        raise ValueError(f"{type(calibrator).__name__} is not an affine map of the logits, so it cannot "
                         "be folded into the linear head; apply it to the model's logits instead")
    if a.shape != (c, c):
        raise ValueError(f"calibrator is fitted for {a.shape[0]} classes, the head has {c} outputs")
    out = copy.deepcopy(model)
    with torch.no_grad():
        w0 = out.head.weight.detach().to(torch.float64)
        a_t = torch.as_tensor(a, dtype=torch.float64, device=w0.device)
        new_w = a_t @ w0
        new_b = shift_t = torch.as_tensor(shift, dtype=torch.float64, device=w0.device)
        if out.head.bias is not None:
            new_b = a_t @ out.head.bias.detach().to(torch.float64) + shift_t
        elif np.any(shift):
            raise ValueError("the head has no bias, but the calibrator has an offset")
        out.head.weight.copy_(new_w.to(out.head.weight.dtype))
        if out.head.bias is not None:
            out.head.bias.copy_(new_b.to(out.head.bias.dtype))
    return out


# ---------------------------------------------------------------------------------------------
# The MTS mask-ratio curve


@dataclass(frozen=True)
class MTSPoint:
    """One point of the MTS curve: mask ratio r, the T fitted on masked fit inputs, and ECE / NLL
    on the clean evaluation split at that T."""

    ratio: float
    temperature: float
    ece: float
    nll: float


def mts_curve(fits: Sequence[Predictions], eval: Predictions, *, n_bins: int = 15,
              device: str | None = None) -> list[MTSPoint]:
    """ECE and NLL on the (never masked) evaluation split of MTS fitted on each of `fits`: the fit split's
    predictions with inputs masked at one ratio r each (their meta's mask_ratio and mask_seed; r = 0 is plain
    temperature scaling), e.g. from `calibviz.backend.masked_predictions`. The whole curve avoids picking r on
    the test split."""
    from calibviz.metrics import ece, nll

    z_eval = eval.scores()
    out = []
    for fit in fits:
        r = float(fit.meta.get("mask_ratio", 0.0))
        cal = MaskedTemperatureScaling(mask_ratio=r, mask_seed=int(fit.meta.get("mask_seed", 0)), device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cal.fit(fit.scores(), fit.labels)
        p = cal.transform(z_eval)
        out.append(MTSPoint(ratio=r, temperature=float(cal.temperature_), ece=ece(p, eval.labels, n_bins),
                            nll=nll(p, eval.labels)))
    return out


if __name__ == "__main__":
    print(registry_table())

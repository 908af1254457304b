"""Training recipes for the shipped model zoo: losses, mixup, distillation and dataset distillation.

A `Recipe` is plain data (it goes into the checkpoint card as JSON). Losses, teacher-target transforms
and extra loss terms are looked up by name in small registries, so new recipes plug in without touching
the training loop. The mixup order hooks (isotonic-corrected teacher targets, the order penalty) are
registered here, from the pure functions of `calibviz.soft_labels`, which knows nothing of training.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calibviz.augment import _box_masks
from calibviz.backend import mask_inputs
from calibviz.models import build_model
from calibviz.soft_labels import order_penalty, tree_isotonic

Log = Callable[[str], None]
ARCH_ROLES = ("teacher", "assistant", "student")


def arch_role_of(recipe_card: dict[str, Any]) -> str:
    """The architecture role a card's recipe dict names: `arch_role`, or for cards written before that field
    existed, "student" when `student` is true and "teacher" otherwise."""
    role = recipe_card.get("arch_role")
    if role:
        return str(role)
    return "student" if recipe_card.get("student") else "teacher"


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained. Every field is JSON-friendly; `None` settings come from the dataset.

    `loss`, `target_transform`, `epoch_hook` and the names in `extra_losses` are keys of LOSSES,
    TARGET_TRANSFORMS, EPOCH_HOOKS and EXTRA_LOSSES; `hooks_module` (a plug-in outside calibviz) is imported
    first so that it can register more. The built-in hooks, the mixup order ones included, need no hooks module.

    `arch_role` says which of the dataset's architectures is trained: "teacher" (the full one, also used by
    every non-KD recipe), "assistant" (the middle-sized one of teacher-assistant KD) or "student" (the small
    one). `student` is the older boolean form of the same thing, kept so that old cards (which have only
    `student`) and old code keep their meaning: `student=True` is `arch_role="student"`, and the two are
    always kept consistent. Settings of one method default to 0 / None, meaning "not used".
    """

    name: str
    title: str
    loss: str = "ce"
    student: bool = False
    arch_role: str = "teacher"
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0  # CutMix λ0 ~ Beta(α, α), the box from calibviz.augment (λ = share kept)
    kd_teacher: str | None = None
    kd_temperature: float = 1.0
    kd_alpha: float = 1.0  # weight of the T²·KL term; (1 - kd_alpha) weights CE on the labels
    online_peer: str | None = None  # online KD: the recipe trained together with this one (BD-KD teacher)
    bdkd_delta: float = 0.0  # BD-KD: weight of the emphasised divergence (the other one has weight 1)
    margin: float = 0.0  # MbLS / CALS: the margin m on logit distances max_j z_j - z_k
    margin_weight: float = 0.0  # MbLS: λ of the margin penalty
    alm_rho: float = 0.0  # CALS (augmented Lagrangian): initial penalty parameter ρ
    alm_rho_max: float = 0.0
    alm_gamma: float = 0.0  # ρ <- min(ρ_max, γ·ρ) when the val penalty did not fall below τ × the previous one
    alm_tau: float = 0.0
    alm_rho_step: int = 0  # ρ is reconsidered every this many epochs
    alm_lambda_min: float = 0.0  # the multipliers start at, and are clamped to, [λ_min, λ_max]
    alm_lambda_max: float = 0.0
    ldl_teacher_weight: float = 0.0  # LDL: β, the target is (1 - β)·(mixed) labels + β·teacher distribution
    epoch_hook: str | None = None  # EPOCH_HOOKS: called after every epoch (CALS multipliers, self-teacher)
    distill: str | None = None  # "dm": train on a distribution-matching distilled set
    distilled_per_class: int = 0
    distill_iterations: int = 0
    distill_real_batch: int = 0
    distill_lr: float = 0.0
    mask_ratio: float = 0.0  # MDT: element masking of the synthetic inputs during distillation
    target_transform: str | None = None
    extra_losses: tuple[tuple[str, float], ...] = ()
    hooks_module: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch_role not in ARCH_ROLES:
            raise ValueError(f"recipe {self.name!r}: arch_role {self.arch_role!r} is unknown; "
                             f"known: {list(ARCH_ROLES)}")
        if self.student and self.arch_role == "teacher":
            object.__setattr__(self, "arch_role", "student")  # the legacy spelling
        elif self.student != (self.arch_role == "student"):
            if self.student:
                raise ValueError(f"recipe {self.name!r}: student=True contradicts arch_role={self.arch_role!r}")
            object.__setattr__(self, "student", True)

    def to_card(self) -> dict[str, Any]:
        """The recipe as the card's JSON dict (extra losses as {name: weight})."""
        d = dataclasses.asdict(self)
        d["extra_losses"] = {k: float(w) for k, w in self.extra_losses}
        return d


@dataclass(frozen=True)
class Batch:
    """One training batch as the loss sees it. With mixup, x = lam·x_y + (1 - lam)·x_{y_b} and
    lam >= 0.5 per row, so `y` is always the dominant label; without mixup y_b and lam are None."""

    x: torch.Tensor
    y: torch.Tensor
    y_b: torch.Tensor | None = None
    lam: torch.Tensor | None = None


@dataclass(frozen=True)
class LossInputs:
    """What a loss function receives: student logits, (transformed) teacher logits or None, the batch,
    the recipe, and the training run's mutable `state` (what epoch hooks keep between epochs, e.g. the CALS
    multipliers; empty for most recipes)."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    batch: Batch
    recipe: Recipe
    state: dict[str, Any] = field(default_factory=dict)


LossFn = Callable[[LossInputs], torch.Tensor]
TargetTransform = Callable[[torch.Tensor, Batch], torch.Tensor]

LOSSES: dict[str, LossFn] = {}
TARGET_TRANSFORMS: dict[str, TargetTransform] = {}
EXTRA_LOSSES: dict[str, LossFn] = {}


@dataclass(frozen=True)
class EpochContext:
    """What an epoch hook receives after each epoch: the model being trained, its recipe, the epoch just
    finished (0-based) of `epochs`, the run's mutable state (shared with LossInputs.state; a hook may put a
    JSON-friendly dict under state["record"], which ends up in the card) and the val split as (x, y) tensors
    when the hook asked for it (else None)."""

    model: nn.Module
    recipe: Recipe
    epoch: int
    epochs: int
    state: dict[str, Any]
    val: tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class EpochHook:
    """A registered epoch hook and whether it reads the val split (the card then says so)."""

    fn: Callable[[EpochContext], None]
    uses_val: bool = False


EPOCH_HOOKS: dict[str, EpochHook] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: register a main loss `fn(LossInputs) -> scalar` under `name` (Recipe.loss)."""
    def deco(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn
    return deco


def register_target_transform(name: str) -> Callable[[TargetTransform], TargetTransform]:
    """Decorator: register `fn(teacher_logits, batch) -> logits`, applied to the teacher's logits
    before temperature softening (Recipe.target_transform)."""
    def deco(fn: TargetTransform) -> TargetTransform:
        TARGET_TRANSFORMS[name] = fn
        return fn
    return deco


def register_extra_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: register an extra loss term `fn(LossInputs) -> scalar` (Recipe.extra_losses)."""
    def deco(fn: LossFn) -> LossFn:
        EXTRA_LOSSES[name] = fn
        return fn
    return deco


def register_epoch_hook(name: str, uses_val: bool = False) -> Callable[[Callable[[EpochContext], None]],
                                                                       Callable[[EpochContext], None]]:
    """Decorator: register `fn(EpochContext) -> None` under `name` (Recipe.epoch_hook), called after every
    epoch. `uses_val`: the hook needs the val split (training then depends on val, and the card says so)."""
    def deco(fn: Callable[[EpochContext], None]) -> Callable[[EpochContext], None]:
        EPOCH_HOOKS[name] = EpochHook(fn, uses_val)
        return fn
    return deco


def _per_row_mixed(per_row: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> torch.Tensor:
    """Mean over rows of lam·f(y) + (1 - lam)·f(y_b), or of f(y) without mixup."""
    if batch.y_b is None or batch.lam is None:
        return per_row(batch.y).mean()
    return (batch.lam * per_row(batch.y) + (1 - batch.lam) * per_row(batch.y_b)).mean()


def label_loss(logits: torch.Tensor, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against the (mixup-weighted) labels, with optional label smoothing."""
    return _per_row_mixed(
        lambda y: F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing), batch)


@register_loss("ce")
def cross_entropy_loss(inp: LossInputs) -> torch.Tensor:
    """Cross-entropy on labels; label smoothing α = recipe.label_smoothing (Szegedy et al.)."""
    return label_loss(inp.student_logits, inp.batch, inp.recipe.label_smoothing)


@register_loss("focal")
def focal_loss(inp: LossInputs) -> torch.Tensor:
    """Focal loss -(1 - p_y)^γ log p_y with γ = recipe.focal_gamma (Lin et al. 2017)."""
    logp = F.log_softmax(inp.student_logits, dim=1)
    gamma = inp.recipe.focal_gamma

    def per_row(y: torch.Tensor) -> torch.Tensor:
        lp = logp.gather(1, y[:, None]).squeeze(1)
        return -((1 - lp.exp()).clamp_min(0) ** gamma) * lp

    return _per_row_mixed(per_row, inp.batch)


def kd_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(z_t/T) || softmax(z_s/T)), mean over the batch (Hinton et al. 2015)."""
    t = temperature
    log_ps = F.log_softmax(student_logits / t, dim=1)
    log_pt = F.log_softmax(teacher_logits / t, dim=1)
    return t * t * F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)


@register_loss("kd")
def distillation_loss(inp: LossInputs) -> torch.Tensor:
    """kd_alpha·T²·KL(teacher || student at T) + (1 - kd_alpha)·CE(labels)."""
    if inp.teacher_logits is None:
        raise ValueError(f"recipe {inp.recipe.name!r}: loss 'kd' needs a teacher (kd_teacher)")
    r = inp.recipe
    loss = r.kd_alpha * kd_term(inp.student_logits, inp.teacher_logits, r.kd_temperature)
    if r.kd_alpha < 1.0:
        loss = loss + (1 - r.kd_alpha) * label_loss(inp.student_logits, inp.batch, r.label_smoothing)
    return loss


def _row_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of each row, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    return -(log_p.exp() * log_p).sum(1)


def bdkd_weights(student_logits: torch.Tensor, teacher_logits: torch.Tensor, delta: float,
                 temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """BD-KD's per-sample (forward, reverse) KL weights from the entropy gap at temperature T: where the
    student is more confident than the teacher (H(p_s) < H(p_t)) the reverse KL(p_s || p_t) gets weight
    `delta` and the forward KL(p_t || p_s) weight 1; elsewhere (ties included) the forward one gets `delta`.
    Constants: no gradient flows through them."""
    with torch.no_grad():
        h_s = _entropy(F.log_softmax(student_logits / temperature, dim=1))
        h_t = _entropy(F.log_softmax(teacher_logits / temperature, dim=1))
        confident = h_s < h_t
        one = torch.ones_like(h_s)
        return torch.where(confident, one, one * delta), torch.where(confident, one * delta, one)


@register_loss("bdkd")
def balanced_divergence_loss(inp: LossInputs) -> torch.Tensor:
    """BD-KD student loss (our reading of Amara et al. 2022): kd_alpha·T²·mean_i[w_f·KL(p_t||p_s) +
    w_r·KL(p_s||p_t)] + (1 - kd_alpha)·CE, with (w_f, w_r) per sample from `bdkd_weights`."""
    if inp.teacher_logits is None:
        raise ValueError(f"recipe {inp.recipe.name!r}: loss 'bdkd' needs a teacher (an online peer)")
    r = inp.recipe
    t = r.kd_temperature
    log_ps = F.log_softmax(inp.student_logits / t, dim=1)
    log_pt = F.log_softmax(inp.teacher_logits / t, dim=1)
    w_f, w_r = bdkd_weights(inp.student_logits, inp.teacher_logits, r.bdkd_delta, t)
    div = (w_f * _row_kl(log_pt, log_ps) + w_r * _row_kl(log_ps, log_pt)).mean()
    loss = r.kd_alpha * t * t * div
    if r.kd_alpha < 1.0:
        loss = loss + (1 - r.kd_alpha) * label_loss(inp.student_logits, inp.batch, r.label_smoothing)
    return loss


def logit_distances(logits: torch.Tensor) -> torch.Tensor:
    """max_j z_j - z_k for every row and class k (0 at the arg-max)."""
    return logits.max(dim=1, keepdim=True).values - logits


def margin_penalty(logits: torch.Tensor, margin: float) -> torch.Tensor:
    """MbLS's penalty: mean over rows AND classes of relu(max_j z_j - z_k - m), as the authors' code computes
    it (`F.relu(diff - margin).mean()` in by-liu/MbLS calibrate/losses/logit_margin_l1.py)."""
    return F.relu(logit_distances(logits) - margin).mean()


@register_loss("mbls")
def margin_label_smoothing_loss(inp: LossInputs) -> torch.Tensor:
    """MbLS (Liu et al., CVPR 2022): CE + margin_weight·margin_penalty(z, margin)."""
    r = inp.recipe
    return (label_loss(inp.student_logits, inp.batch, r.label_smoothing)
            + r.margin_weight * margin_penalty(inp.student_logits, r.margin))


def margin_constraints(logits: torch.Tensor, margin: float) -> torch.Tensor:
    """CALS's constraints h_k = (max_j z_j - z_k - m) / m (the authors' `normalize=True`); h <= 0 is satisfied."""
    return (logit_distances(logits) - margin) / margin


def phr_penalty(h: torch.Tensor, lambd: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The PHR penalty-Lagrangian of CALS's augmented Lagrangian (by-liu/CALS calibrate/lagrangian/penalty.py,
    the `phr` their class-wise config uses) and its derivative in h, elementwise with λ broadcast over rows:
    P = ((λ + ρh)² - λ²) / (2ρ) and P' = λ + ρh where λ + ρh >= 0; P = -λ² / (2ρ) and P' = 0 elsewhere."""
    x = lambd + rho * h
    active = x >= 0
    p = torch.where(active, (x * x - lambd * lambd) / (2 * rho), -(lambd * lambd) / (2 * rho) * torch.ones_like(h))
    return p, torch.where(active, x, torch.zeros_like(h))


def _alm_state(state: dict[str, Any], recipe: Recipe, n_classes: int) -> dict[str, Any]:
    """The CALS multipliers (one per class, starting at λ_min), ρ and the previous val penalty, kept in state."""
    if "alm" not in state:
        state["alm"] = {"lambd": torch.full((n_classes,), recipe.alm_lambda_min), "rho": recipe.alm_rho,
                        "prev_penalty": None, "lambda_mean_by_epoch": [], "rho_by_epoch": []}
    return state["alm"]


@register_loss("cals")
def class_adaptive_ls_loss(inp: LossInputs) -> torch.Tensor:
    """CALS (Liu et al., CVPR 2023): CE + mean over rows of sum over classes of P(h_k; λ_k, ρ), with the
    current per-class multipliers λ (updated after each epoch by the `alm_multipliers` hook)."""
    r = inp.recipe
    alm = _alm_state(inp.state, r, inp.student_logits.shape[1])
    p, _ = phr_penalty(margin_constraints(inp.student_logits, r.margin), alm["lambd"], alm["rho"])
    return label_loss(inp.student_logits, inp.batch, r.label_smoothing) + p.sum(1).mean()


def alm_update(h: torch.Tensor, lambd: torch.Tensor, rho: float, prev_penalty: float | None, epoch: int,
               recipe: Recipe) -> tuple[torch.Tensor, float, float]:
    """One CALS multiplier step from the val constraints `h` (n, C), as in the authors' AugLagrangianClass:
    λ_k <- clamp(mean_i clamp(P'(h_ik; λ_k, ρ), λ_min, λ_max), λ_min, λ_max); the val penalty
    mean_i sum_k P(h_ik; λ_k, ρ) is taken with the old λ. Every `alm_rho_step` epochs (epoch + 1 divisible),
    ρ <- min(ρ_max, γ·ρ) when both that penalty and the previous epoch's are > 0 and it exceeds τ × the
    previous one. Returns (new λ, new ρ, val penalty)."""
    r = recipe
    p, dp = phr_penalty(h, lambd, rho)
    penalty = float(p.sum(1).mean())
    new_lambd = dp.clamp(r.alm_lambda_min, r.alm_lambda_max).mean(0).clamp(r.alm_lambda_min, r.alm_lambda_max)
    if (r.alm_rho_step > 0 and (epoch + 1) % r.alm_rho_step == 0 and prev_penalty is not None
            and prev_penalty > 0 and penalty > 0 and penalty > r.alm_tau * prev_penalty):
        rho = min(r.alm_rho_max, rho * r.alm_gamma)
    return new_lambd, rho, penalty


@register_epoch_hook("alm_multipliers", uses_val=True)
def update_alm_multipliers(ctx: EpochContext) -> None:
    """After each epoch: the model's val logits (eval mode) give the constraint violations that set the
    per-class multipliers and ρ (`alm_update`); the card records the final ones."""
    if ctx.val is None:
        raise ValueError(f"recipe {ctx.recipe.name!r}: the CALS multipliers need the val split")
    ctx.model.eval()
    with torch.no_grad():
        logits = ctx.model(ctx.val[0])
    alm = _alm_state(ctx.state, ctx.recipe, logits.shape[1])
    h = margin_constraints(logits, ctx.recipe.margin)
    alm["lambd"], alm["rho"], penalty = alm_update(h, alm["lambd"], alm["rho"], alm["prev_penalty"], ctx.epoch,
                                                   ctx.recipe)
    alm["prev_penalty"] = penalty
    alm["lambda_mean_by_epoch"].append(round(float(alm["lambd"].mean()), 6))
    alm["rho_by_epoch"].append(round(float(alm["rho"]), 6))
    ctx.state.setdefault("record", {})["alm"] = {
        "penalty": "phr", "lambda": [float(v) for v in alm["lambd"]], "rho": float(alm["rho"]),
        "val_penalty": penalty, "val_constraint_mean": float(h.mean()),
        "val_violated_share": float((h > 0).double().mean()),
        "lambda_mean_by_epoch": list(alm["lambda_mean_by_epoch"]), "rho_by_epoch": list(alm["rho_by_epoch"])}


@register_loss("ldl")
def label_distribution_loss(inp: LossInputs) -> torch.Tensor:
    """Label-distribution learning: cross-entropy against q = (1 - β)·(mixed) one-hot labels + β·softmax(z_t/T),
    β = state["teacher_weight"] when an epoch hook set it, else recipe.ldl_teacher_weight. Without a teacher
    (the first epoch of a self-distilled run) q is the labels alone."""
    r = inp.recipe
    beta = float(inp.state.get("teacher_weight", r.ldl_teacher_weight))
    hard = label_loss(inp.student_logits, inp.batch, r.label_smoothing)
    if inp.teacher_logits is None or beta == 0.0:
        return hard
    target = F.softmax(inp.teacher_logits / r.kd_temperature, dim=1)
    soft = -(target * F.log_softmax(inp.student_logits, dim=1)).sum(1).mean()
    return (1 - beta) * hard + beta * soft


@register_epoch_hook("previous_epoch_teacher")
def previous_epoch_teacher(ctx: EpochContext) -> None:
    """Self-distillation: after epoch e the model's frozen copy becomes the teacher of epoch e + 1, and the
    teacher's weight ramps up linearly, β_{e+1} = ldl_teacher_weight·(e + 1)/epochs (as PS-KD, Kim et al. 2021)."""
    used = float(ctx.state.get("teacher_weight", 0.0)) if "teacher" in ctx.state else 0.0
    teacher = copy.deepcopy(ctx.model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ctx.state["teacher"] = teacher
    ctx.state["teacher_weight"] = ctx.recipe.ldl_teacher_weight * (ctx.epoch + 1) / ctx.epochs
    ctx.state.setdefault("record", {})["self_teacher"] = {
        "kind": "previous_epoch_snapshot", "teacher_weight_in_last_epoch": used}


# Mixup order hooks (Cui & Yan, IJCAI 2021): with mixup, Batch.y is the larger-weight label a and Batch.y_b the
# other parent's label b.


def _parents(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    b = batch.y_b if batch.y_b is not None else batch.y
    return batch.y, b


@register_target_transform("tree_isotonic")
def isotonic_teacher_logits(teacher_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Target transform: the teacher's logits projected onto the mixup order a ≥ b ≥ others (IDA)."""
    a, b = _parents(batch)
    return tree_isotonic(teacher_logits.detach(), a, b)


@register_extra_loss("order_penalty")
def order_penalty_loss(inp: LossInputs) -> torch.Tensor:
    """Extra loss: batch mean of `soft_labels.order_penalty` on the student's logits."""
    a, b = _parents(inp.batch)
    return order_penalty(inp.student_logits, a, b).mean()


def resolve_hooks(recipe: Recipe) -> tuple[LossFn, TargetTransform | None, list[tuple[LossFn, float]]]:
    """Look up the recipe's loss, target transform and extra losses, importing its hooks module
    first; raise ValueError naming anything unknown."""
    if recipe.hooks_module:
        importlib.import_module(recipe.hooks_module)
    if recipe.loss not in LOSSES:
        raise ValueError(f"recipe {recipe.name!r}: loss {recipe.loss!r} is not registered; "
                         f"known: {sorted(LOSSES)}")
    transform = None
    if recipe.target_transform is not None:
        if recipe.target_transform not in TARGET_TRANSFORMS:
            raise ValueError(f"recipe {recipe.name!r}: target transform {recipe.target_transform!r} "
                             f"is not registered; known: {sorted(TARGET_TRANSFORMS)}")
        transform = TARGET_TRANSFORMS[recipe.target_transform]
    extras = []
    for name, weight in recipe.extra_losses:
        if name not in EXTRA_LOSSES:
            raise ValueError(f"recipe {recipe.name!r}: extra loss {name!r} is not registered; "
                             f"known: {sorted(EXTRA_LOSSES)}")
        extras.append((EXTRA_LOSSES[name], float(weight)))
    return LOSSES[recipe.loss], transform, extras


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator) -> Batch:
    """Mixup with a partner from a permutation of the batch and one λ ~ Beta(α, α) per row, ordered so
    that λ >= 0.5 weights the row's own label."""
    n = x.shape[0]
    perm = torch.from_numpy(rng.permutation(n))
    lam_np = rng.beta(alpha, alpha, size=n)
    lam_np = np.maximum(lam_np, 1.0 - lam_np)
    lam = torch.from_numpy(lam_np.astype(np.float32))
    shape = (n,) + (1,) * (x.dim() - 1)
    xm = lam.view(shape) * x + (1 - lam.view(shape)) * x[perm]
    return Batch(x=xm, y=y, y_b=y[perm], lam=lam)


def cutmix_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator) -> Batch:
    """CutMix with a partner from a permutation of the batch: λ0 ~ Beta(α, α) per row, the partner pasted into
    one box (images) or interval (signals) drawn as in `calibviz.augment` (`_box_masks`), λ the share of input
    elements kept from the row. Parents are then ordered so that λ >= 0.5 weights `y` (as in `mixup_batch`)."""
    n = x.shape[0]
    perm = torch.from_numpy(rng.permutation(n))
    lam0 = rng.beta(alpha, alpha, size=n)
    inside = torch.from_numpy(_box_masks(tuple(x.shape[1:]), lam0, rng))
    xm = torch.where(inside, x[perm], x)
    lam_own = 1.0 - inside.reshape(n, -1).double().mean(1)
    swap = lam_own < 0.5
    y_a = torch.where(swap, y[perm], y)
    y_b = torch.where(swap, y, y[perm])
    lam = torch.where(swap, 1.0 - lam_own, lam_own).float()
    return Batch(x=xm, y=y_a, y_b=y_b, lam=lam)


def _batches(recipe: Recipe, xt: torch.Tensor, yt: torch.Tensor, batch_size: int,
             rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch's batches: a fresh permutation, then each batch mixed as the recipe says (mixup, CutMix or
    none), all drawn from `rng` in this order."""
    perm = torch.from_numpy(rng.permutation(len(xt)))
    for s in range(0, len(xt), batch_size):
        idx = perm[s:s + batch_size]
        xb, yb = xt[idx], yt[idx]
        if recipe.mixup_alpha > 0:
            yield mixup_batch(xb, yb, recipe.mixup_alpha, rng)
        elif recipe.cutmix_alpha > 0:
            yield cutmix_batch(xb, yb, recipe.cutmix_alpha, rng)
        else:
            yield Batch(xb, yb)


@dataclass(frozen=True)
class TrainResult:
    """A trained model and a short log of how training went; `record` is what the epoch hooks left for the
    card (JSON-friendly; empty for most recipes)."""

    model: nn.Module
    seconds: float
    final_loss: float
    train_accuracy: float
    record: dict[str, Any] = field(default_factory=dict)


def _optimizer(recipe: Recipe, params: Any, lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise ValueError(f"recipe {recipe.name!r}: optimizer {recipe.optimizer!r} is unknown (adam, sgd)")


def resolve_epoch_hook(recipe: Recipe) -> EpochHook | None:
    """The recipe's epoch hook, or None; ValueError naming the registered ones when unknown (after
    `resolve_hooks` has imported the recipe's hooks module)."""
    if recipe.epoch_hook is None:
        return None
    if recipe.epoch_hook not in EPOCH_HOOKS:
        raise ValueError(f"recipe {recipe.name!r}: epoch hook {recipe.epoch_hook!r} is not registered; "
                         f"known: {sorted(EPOCH_HOOKS)}")
    return EPOCH_HOOKS[recipe.epoch_hook]


@dataclass
class _Run:
    """One network being trained by the shared loop: its fresh seeded model, optimizer and hooks."""

    recipe: Recipe
    model: nn.Module
    opt: torch.optim.Optimizer
    loss_fn: LossFn
    transform: TargetTransform | None
    extras: list[tuple[LossFn, float]]
    hook: EpochHook | None
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fresh(cls, recipe: Recipe, arch: str, arch_kwargs: dict[str, Any], lr: float) -> _Run:
        loss_fn, transform, extras = resolve_hooks(recipe)
        hook = resolve_epoch_hook(recipe)
        torch.manual_seed(recipe.seed)  # every model of one arch and seed starts from the same weights
        model = build_model(arch, **arch_kwargs)
        return cls(recipe, model, _optimizer(recipe, model.parameters(), lr), loss_fn, transform, extras, hook)

    def step(self, batch: Batch, teacher_logits: torch.Tensor | None, logits: torch.Tensor | None = None) -> float:
        """One optimizer step on `batch` against (untransformed) teacher logits; returns the loss."""
        if teacher_logits is not None and self.transform is not None:
            teacher_logits = self.transform(teacher_logits, batch)
        logits = self.model(batch.x) if logits is None else logits
        inp = LossInputs(student_logits=logits, teacher_logits=teacher_logits, batch=batch, recipe=self.recipe,
                         state=self.state)
        loss = self.loss_fn(inp)
        for fn, w in self.extras:
            loss = loss + w * fn(inp)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def end_epoch(self, epoch: int, epochs: int, val: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        if self.hook is not None:
            self.hook.fn(EpochContext(self.model, self.recipe, epoch, epochs, self.state,
                                      val if self.hook.uses_val else None))

    def result(self, start: float, final_loss: float, xt: torch.Tensor, yt: torch.Tensor) -> TrainResult:
        self.model.eval()
        with torch.no_grad():
            acc = float((self.model(xt).argmax(1) == yt).double().mean())
        return TrainResult(model=self.model, seconds=time.perf_counter() - start, final_loss=final_loss,
                           train_accuracy=acc, record=dict(self.state.get("record", {})))


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=np.int64))


def _fit(runs: list[_Run], xt: torch.Tensor, yt: torch.Tensor, *, epochs: int, batch_size: int,
         step: Callable[[Batch], list[float]], val: tuple[np.ndarray, np.ndarray] | None,
         log: Log | None) -> list[float]:
    """The training loop shared by one network (train_classifier) and an online pair: per epoch, every model
    in train mode, the first run's recipe draws the batches (rng seeded by its seed), `step` trains on each and
    returns one loss per run; then each run's epoch hook. Returns each run's mean loss over the last epoch."""
    rng = np.random.default_rng(runs[0].recipe.seed)
    val_t = _tensors(*val) if val is not None else None
    last = [0.0] * len(runs)
    for epoch in range(epochs):
        for run in runs:
            run.model.train()
        totals, seen = [0.0] * len(runs), 0
        for batch in _batches(runs[0].recipe, xt, yt, batch_size, rng):
            n = len(batch.y)
            totals = [t + v * n for t, v in zip(totals, step(batch), strict=True)]
            seen += n
        last = [t / max(seen, 1) for t in totals]
        for run in runs:
            run.end_epoch(epoch, epochs, val_t)
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            log(f"  {' + '.join(r.recipe.name for r in runs)}: epoch {epoch + 1}/{epochs} loss "
                + " / ".join(f"{v:.4f}" for v in last))
    return last


def train_classifier(recipe: Recipe, arch: str, arch_kwargs: dict[str, Any], x: np.ndarray,
                     y: np.ndarray, *, epochs: int, batch_size: int, lr: float,
                     teacher: nn.Module | None = None, log: Log | None = None,
                     val: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Train a fresh `arch` on (x, y) with the recipe's loss on CPU, seeded by recipe.seed (same seed
    -> same weights on the same machine and thread count). `teacher` is a fixed (offline) teacher; without
    one, an epoch hook may put a teacher of its own in the run's state["teacher"] (self-distillation). `val`
    (x, y) reaches only an epoch hook that asked for it (CALS)."""
    start = time.perf_counter()
    run = _Run.fresh(recipe, arch, arch_kwargs, lr)
    xt, yt = _tensors(x, y)
    fixed = teacher.eval() if teacher is not None else None

    def step(batch: Batch) -> list[float]:
        t = fixed if fixed is not None else run.state.get("teacher")
        t_logits = None
        if t is not None:
            with torch.no_grad():
                t_logits = t(batch.x)
        return [run.step(batch, t_logits)]

    (last,) = _fit([run], xt, yt, epochs=epochs, batch_size=batch_size, step=step, val=val, log=log)
    return run.result(start, last, xt, yt)


def train_online_pair(teacher_recipe: Recipe, student_recipe: Recipe, teacher_arch: str, student_arch: str,
                      x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float,
                      log: Log | None = None) -> tuple[TrainResult, TrainResult]:
    """Online KD: a teacher-sized peer and a student trained together from scratch on the same batches (drawn
    by the student recipe's augmentation and seed). Each batch, both forward the same inputs; each takes one
    step on its own loss, with the other's logits of that batch (detached, before either step) as its
    "teacher" logits. Returns (teacher result, student result); both `seconds` are the joint time."""
    if (teacher_recipe.mixup_alpha, teacher_recipe.cutmix_alpha) != (student_recipe.mixup_alpha,
                                                                     student_recipe.cutmix_alpha):
        raise ValueError(f"online pair {teacher_recipe.name!r} + {student_recipe.name!r}: both must use the "
                         "same augmentation (they see the same batches)")
    start = time.perf_counter()
    peer = _Run.fresh(teacher_recipe, teacher_arch, {}, lr)
    student = _Run.fresh(student_recipe, student_arch, {}, lr)
    xt, yt = _tensors(x, y)

    def step(batch: Batch) -> list[float]:
        z_s, z_t = student.model(batch.x), peer.model(batch.x)
        from_peer, from_student = z_t.detach(), z_s.detach()
        return [student.step(batch, from_peer, logits=z_s), peer.step(batch, from_student, logits=z_t)]

    last_s, last_t = _fit([student, peer], xt, yt, epochs=epochs, batch_size=batch_size, step=step, val=None,
                          log=log)
    return peer.result(start, last_t, xt, yt), student.result(start, last_s, xt, yt)


@dataclass(frozen=True)
class DistillResult:
    """A distilled (synthetic) training set and how the matching loss went."""

    x: np.ndarray
    y: np.ndarray
    initial_loss: float  # matching loss on fixed held-out random networks, before and after
    final_loss: float
    seconds: float


def _matching_loss(syn: torch.Tensor, real_means: list[torch.Tensor], nets: list[nn.Module],
                   per_class: int) -> float:
    """Mean over `nets` of sum_c ||mean emb(real_c) - mean emb(syn_c)||² (no masking)."""
    total = 0.0
    with torch.no_grad():
        for net, mr in zip(nets, real_means, strict=True):
            ms = net.features(syn).view(mr.shape[0], per_class, -1).mean(1)
            total += float(((mr - ms) ** 2).sum())
    return total / len(nets)


def distill_distribution_matching(x: np.ndarray, y: np.ndarray, n_classes: int, arch: str,
                                  arch_kwargs: dict[str, Any], *, per_class: int, iterations: int,
                                  real_batch: int, lr: float, mask_ratio: float = 0.0, seed: int = 0,
                                  log: Log | None = None) -> DistillResult:
    """Dataset distillation by distribution matching (Zhao & Bilen, WACV 2023).

    `per_class` synthetic inputs per class start as random real examples of that class. Each iteration
    draws a freshly initialised `arch`, embeds a random real batch of each class and the synthetic set
    with its `features`, and takes an SGD step (momentum 0.5) on the synthetic inputs to reduce
    sum_c ||mean emb(real_c) - mean emb(syn_c)||². With `mask_ratio` > 0 (our MDT variant) each element
    of the synthetic inputs is zeroed with that probability, independently at every iteration, before
    embedding, so the set must match the real class means even with parts of it missing.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mask_gen = torch.Generator().manual_seed(seed + 1)
    xt = torch.from_numpy(np.array(x, dtype=np.float32))
    by_class = [np.flatnonzero(y == c) for c in range(n_classes)]
    init = np.concatenate([rng.choice(ix, size=per_class, replace=len(ix) < per_class) for ix in by_class])
    syn = xt[torch.from_numpy(init)].clone().requires_grad_(True)
    syn_y = np.repeat(np.arange(n_classes), per_class)
    opt = torch.optim.SGD([syn], lr=lr, momentum=0.5)
    with torch.random.fork_rng():  # fixed probe networks to report how well the matching went
        torch.manual_seed(seed + 2)
        probes = [build_model(arch, **arch_kwargs).eval() for _ in range(4)]
    with torch.no_grad():
        probe_means = [torch.stack([net.features(xt[torch.from_numpy(ix)]).mean(0) for ix in by_class])
                       for net in probes]
    first = _matching_loss(syn, probe_means, probes, per_class)
    for it in range(iterations):
        net = build_model(arch, **arch_kwargs).train()
        for p in net.parameters():
            p.requires_grad_(False)
        real_idx = np.concatenate([rng.choice(ix, size=min(real_batch, len(ix)), replace=False)
                                   for ix in by_class])
        xr = xt[torch.from_numpy(real_idx)]
        xs = syn
        if mask_ratio > 0:
            xr = mask_inputs(xr, mask_ratio, mask_gen)
            xs = mask_inputs(syn, mask_ratio, mask_gen)
        with torch.no_grad():
            er = net.features(xr)
        es = net.features(xs)
        sizes_r = [min(real_batch, len(ix)) for ix in by_class]
        mr = torch.stack([m.mean(0) for m in torch.split(er, sizes_r)])
        ms = es.view(n_classes, per_class, -1).mean(1)
        loss = ((mr - ms) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (it + 1) % max(1, iterations // 5) == 0:
            log(f"  distribution matching: iteration {it + 1}/{iterations} loss {float(loss.detach()):.5f}")
    last = _matching_loss(syn.detach(), probe_means, probes, per_class)
    return DistillResult(x=syn.detach().numpy().copy(), y=syn_y.astype(np.int64), initial_loss=first,
                         final_loss=last, seconds=time.perf_counter() - start)

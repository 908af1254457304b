"""Training recipes for the shipped model zoo: losses, mixup, distillation and dataset distillation.

A `Recipe` is plain data (it goes into the checkpoint card as JSON). Losses, teacher-target transforms
and extra loss terms are looked up by name in small registries, so new recipes plug in without touching
the training loop. The mixup order hooks (isotonic-corrected teacher targets, the order penalty) are
registered here, from the pure functions of `calibviz.soft_labels`, which knows nothing of training.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calibviz.backend import mask_inputs
from calibviz.models import build_model
from calibviz.soft_labels import order_penalty, tree_isotonic

Log = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained. Every field is JSON-friendly; `None` settings come from the dataset.

    `loss`, `target_transform` and the names in `extra_losses` are keys of LOSSES, TARGET_TRANSFORMS
    and EXTRA_LOSSES; `hooks_module` (a plug-in outside calibviz) is imported first so that it can
    register more. The built-in hooks, the mixup order ones included, need no hooks module.
    """

    name: str
    title: str
    loss: str = "ce"
    student: bool = False
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0
    mixup_alpha: float = 0.0
    kd_teacher: str | None = None
    kd_temperature: float = 1.0
    kd_alpha: float = 1.0  # weight of the T²·KL term; (1 - kd_alpha) weights CE on the labels
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
    and the recipe."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    batch: Batch
    recipe: Recipe


LossFn = Callable[[LossInputs], torch.Tensor]
TargetTransform = Callable[[torch.Tensor, Batch], torch.Tensor]

LOSSES: dict[str, LossFn] = {}
TARGET_TRANSFORMS: dict[str, TargetTransform] = {}
EXTRA_LOSSES: dict[str, LossFn] = {}


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


@dataclass(frozen=True)
class TrainResult:
    """A trained model and a short log of how training went."""

    model: nn.Module
    seconds: float
    final_loss: float
    train_accuracy: float


def _optimizer(recipe: Recipe, params: Any, lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise ValueError(f"recipe {recipe.name!r}: optimizer {recipe.optimizer!r} is unknown (adam, sgd)")


def train_classifier(recipe: Recipe, arch: str, arch_kwargs: dict[str, Any], x: np.ndarray,
                     y: np.ndarray, *, epochs: int, batch_size: int, lr: float,
                     teacher: nn.Module | None = None, log: Log | None = None) -> TrainResult:
    """Train a fresh `arch` on (x, y) with the recipe's loss on CPU, seeded by recipe.seed (same seed
    -> same weights on the same machine and thread count)."""
    start = time.perf_counter()
    loss_fn, transform, extras = resolve_hooks(recipe)
    torch.manual_seed(recipe.seed)
    model = build_model(arch, **arch_kwargs)
    rng = np.random.default_rng(recipe.seed)
    opt = _optimizer(recipe, model.parameters(), lr)
    xt = torch.from_numpy(np.array(x, dtype=np.float32))
    yt = torch.from_numpy(np.array(y, dtype=np.int64))
    if teacher is not None:
        teacher = teacher.eval()
    n = len(xt)
    last = 0.0
    for epoch in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        total, seen = 0.0, 0
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            xb, yb = xt[idx], yt[idx]
            batch = mixup_batch(xb, yb, recipe.mixup_alpha, rng) if recipe.mixup_alpha > 0 else Batch(xb, yb)
            t_logits = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(batch.x)
                    if transform is not None:
                        t_logits = transform(t_logits, batch)
            logits = model(batch.x)
            inp = LossInputs(student_logits=logits, teacher_logits=t_logits, batch=batch, recipe=recipe)
            loss = loss_fn(inp)
            for fn, w in extras:
                loss = loss + w * fn(inp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        last = total / max(seen, 1)
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            log(f"  {recipe.name}: epoch {epoch + 1}/{epochs} loss {last:.4f}")
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).double().mean())
    return TrainResult(model=model, seconds=time.perf_counter() - start, final_loss=last,
                       train_accuracy=acc)


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

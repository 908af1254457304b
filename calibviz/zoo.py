"""The shipped model zoo: one checkpoint per training recipe and dataset, built reproducibly on CPU.

`build_zoo` trains every recipe of `RECIPES` on each dataset's `train` split and writes
`<root>/<dataset>/<recipe>.safetensors` with a JSON card (recipe, metrics on val and test measured on
the stored weights, timings). `list_zoo` reads only the cards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calibviz.sources import ModelEntry
from calibviz.training import (
    Recipe,
    TrainResult,
    distill_distribution_matching,
    resolve_epoch_hook,
    resolve_hooks,
    train_classifier,
    train_online_pair,
)

ZOO_ENV = "CALIBVIZ_ZOO"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ZooDataset:
    """Per-dataset training settings shared by all recipes (a recipe may override epochs/batch/lr)."""

    name: str
    arch: str
    student_arch: str
    epochs: int
    batch_size: int
    lr: float
    distill_real_batch: int
    assistant_arch: str = ""  # the middle-sized teacher assistant of TAKD

    def arch_for(self, role: str) -> str:
        """The architecture a recipe's `arch_role` ("teacher", "assistant", "student") trains on this dataset."""
        archs = {"teacher": self.arch, "assistant": self.assistant_arch, "student": self.student_arch}
        if not archs.get(role):
            raise ValueError(f"dataset {self.name!r} has no {role!r} architecture")
        return archs[role]


DATASETS: tuple[ZooDataset, ...] = (
    ZooDataset("digits", arch="cnn", student_arch="cnn_small", epochs=100, batch_size=64, lr=1e-3,
               distill_real_batch=64, assistant_arch="cnn_mid"),
    ZooDataset("mnist1d", arch="mlp", student_arch="mlp_small", epochs=100, batch_size=128, lr=1e-3,
               distill_real_batch=256, assistant_arch="mlp_mid"),
)

MIXUP_ALPHA = 0.4
DISTILL = {"distilled_per_class": 10, "distill_iterations": 500, "distill_lr": 10.0,
           "epochs": 300, "batch_size": 256}
MDT_MASK_RATIO = 0.25
MARGIN = 10.0  # MbLS and CALS: the margin m on logit distances (both papers' default)
MBLS_WEIGHT = 0.1  # MbLS: λ (the authors' default)
# CALS's augmented Lagrangian, the authors' class-wise defaults (by-liu/CALS configs/lag/aug_lagrangian_class.yaml,
# AugLagrangianClass): PHR penalty, ρ from 1 up to at most 10 by ×1.2, reconsidered every 10 epochs with τ = 0.9,
# multipliers in [1e-6, 1e6] starting at 1e-6.
CALS = {"alm_rho": 1.0, "alm_rho_max": 10.0, "alm_gamma": 1.2, "alm_tau": 0.9, "alm_rho_step": 10,
        "alm_lambda_min": 1e-6, "alm_lambda_max": 1e6}
CUTMIX_ALPHA = 1.0  # LDL's augmentation: CutMix with λ0 ~ Beta(1, 1), as in the CutMix paper
LDL_TEACHER_WEIGHT = 0.5  # ldl: β, the CE teacher's share of the target distribution
LDL_ONLINE_WEIGHT = 0.8  # ldl_online: the self-teacher's final share, ramped up linearly as PS-KD's α_T = 0.8
BDKD_DELTA = 2.0  # BD-KD: weight of the emphasised divergence (our choice)

# The recipe table, in display order. Add a recipe by appending a Recipe (see docs/zoo.md). A recipe's KD teacher
# (kd_teacher) and online peer (online_peer) must come before it.
RECIPES: tuple[Recipe, ...] = (
    Recipe("ce", "CE teacher", loss="ce"),
    Recipe("ls", "LS α=0.1", loss="ce", label_smoothing=0.1),
    Recipe("mixup", f"Mixup α={MIXUP_ALPHA}", loss="ce", mixup_alpha=MIXUP_ALPHA),
    Recipe("focal", "Focal γ=3", loss="focal", focal_gamma=3.0),
    Recipe("mbls", f"MbLS m={MARGIN:g}, λ={MBLS_WEIGHT:g}", loss="mbls", margin=MARGIN, margin_weight=MBLS_WEIGHT),
    Recipe("cals", f"CALS m={MARGIN:g} (class-wise ALM)", loss="cals", margin=MARGIN, epoch_hook="alm_multipliers",
           **CALS),
    *(Recipe(f"kd_{t}_t{temp:g}", f"KD student of {t.upper()}, T={temp:g}", loss="kd", student=True, kd_teacher=t,
             kd_temperature=temp)
      for t in ("ce", "ls") for temp in (1.0, 2.0, 4.0, 8.0)),
    Recipe("kd_ce_mixup", "Mixup-KD student of CE, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0, mixup_alpha=MIXUP_ALPHA),
    Recipe("kd_ce_mixup_iso", "Mixup-KD of CE, isotonic targets, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0, mixup_alpha=MIXUP_ALPHA, target_transform="tree_isotonic"),
    Recipe("kd_ce_mixup_pen", "Mixup-KD of CE, order penalty, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0, mixup_alpha=MIXUP_ALPHA, extra_losses=(("order_penalty", 1.0),)),
    Recipe("ta_ce", "Teacher assistant: KD of CE, T=4", loss="kd", arch_role="assistant", kd_teacher="ce",
           kd_temperature=4.0),
    Recipe("takd_ce", "TAKD student: KD of the TA, T=4", loss="kd", arch_role="student", kd_teacher="ta_ce",
           kd_temperature=4.0),
    Recipe("ldl", f"LDL: CutMix, CE-teacher distributions β={LDL_TEACHER_WEIGHT:g}", loss="ldl", kd_teacher="ce",
           cutmix_alpha=CUTMIX_ALPHA, ldl_teacher_weight=LDL_TEACHER_WEIGHT),
    Recipe("ldl_online", f"LDL online: CutMix, self-distilled β→{LDL_ONLINE_WEIGHT:g}", loss="ldl",
           cutmix_alpha=CUTMIX_ALPHA, ldl_teacher_weight=LDL_ONLINE_WEIGHT, epoch_hook="previous_epoch_teacher"),
    Recipe("bdkd_teacher", "BD-KD online teacher peer", loss="kd", kd_alpha=0.5, kd_temperature=1.0,
           online_peer="bdkd"),
    Recipe("bdkd", "BD-KD online student", loss="bdkd", arch_role="student", kd_teacher="bdkd_teacher", kd_alpha=0.5,
           kd_temperature=1.0, bdkd_delta=BDKD_DELTA),
    Recipe("dm", "Distilled data (DM, 10/class)", loss="ce", distill="dm", **DISTILL),
    Recipe("mdt", f"Distilled data (DM + MDT mask {MDT_MASK_RATIO})", loss="ce", distill="dm",
           mask_ratio=MDT_MASK_RATIO, **DISTILL),
)

RECIPE_NOTES = {
    "ce": "Cross-entropy, no regularisation, fixed epoch count (no early stopping).",
    "ls": "Cross-entropy with label smoothing α=0.1 (Müller et al. 2019).",
    "mixup": "Mixup with one λ ~ Beta(α, α) per example, partner from a batch permutation; "
             "loss λ·CE(a) + (1-λ)·CE(b).",
    "focal": "Focal loss -(1-p_y)^γ log p_y with γ=3 (Mukhoti et al. 2020).",
    "kd": "Student trained only on T²·KL(softmax(z_t/T) || softmax(z_s/T)) (kd_alpha=1: no CE on labels) "
          "against the shipped teacher checkpoint, on the same training inputs.",
    "kd_ce_mixup": "Student trained only on T²·KL(softmax(z_t/T) || softmax(z_s/T)) at T=4 (kd_alpha=1) against "
                   "the shipped CE teacher, on mixup inputs (λ ~ Beta(α, α), partner from a batch permutation; "
                   "the teacher labels the same mixed input).",
    "kd_ce_mixup_iso": "As kd_ce_mixup, but the teacher's logits on each mixed input are first projected onto the "
                       "order a ≥ b ≥ others (a the larger-weight parent's class) by exact L2 isotonic regression "
                       "on that tree (Cui & Yan, IJCAI 2021), then softened at T=4.",
    "kd_ce_mixup_pen": "As kd_ce_mixup, plus 1.0 × the linear-time order penalty on the student's probabilities at "
                       "T=1: relu(max_o q_o − min(q_a, q_b)) + relu(q_b − q_a) (weight not tuned).",
    "dm": "Dataset distillation by distribution matching (Zhao & Bilen 2023): 10 synthetic inputs per "
          "class, initialised from random real training examples, optimised by SGD (lr 10, momentum 0.5) "
          "so that their class-mean embedding under a freshly initialised network of the same "
          "architecture (features(), new random init every iteration) matches the class mean of a "
          "random real batch. No differentiable augmentation. Then the full architecture is trained "
          "from scratch with CE on only those synthetic inputs.",
    "mbls": "MbLS (Liu et al., The Devil is in the Margins, CVPR 2022): the full architecture trained with "
            "CE + λ·mean over rows and classes of relu(max_j z_j − z_k − m), m=10, λ=0.1. Follows the authors' code "
            "(by-liu/MbLS calibrate/losses/logit_margin_l1.py: F.relu(diff - margin).mean(), i.e. averaged over "
            "classes as well as rows, the arg-max class contributing 0; their defaults m=10, λ=0.1, no λ schedule). "
            "Our settings, not theirs: the zoo's Adam lr 1e-3, fixed epochs, no augmentation.",
    "cals": "CALS (Liu et al., Class Adaptive Network Calibration, CVPR 2023): the full architecture trained with "
            "CE + mean over rows of Σ_k P(h_k; λ_k, ρ), h_k = (max_j z_j − z_k − m)/m, m=10, P the PHR "
            "penalty-Lagrangian (P = ((λ+ρh)² − λ²)/(2ρ) where λ+ρh ≥ 0, else −λ²/(2ρ)), one multiplier λ_k per "
            "class. After every epoch the model's val logits (eval mode) give λ_k ← clamp(mean_i clamp(P'(h_ik), "
            "λ_min, λ_max)) with P' = max(λ+ρh, 0), and every 10 epochs ρ ← min(10, 1.2ρ) when the val penalty "
            "(taken with the old λ) exceeds 0.9 × the previous epoch's. Follows the authors' code (by-liu/CALS "
            "AugLagrangianClass, penalty.py phr, configs/lag/aug_lagrangian_class.yaml; m=10 as in their README "
            "commands). Ours: the val penalty is the mean over all val rows in one pass (theirs averages per-batch "
            "values), no gradient clipping, the zoo's Adam lr 1e-3 and fixed epochs. The card's `alm` block "
            "records the final multipliers, ρ and their history.",
    "ta_ce": "Teacher assistant of TAKD (Mirzadeh et al., Improved Knowledge Distillation via Teacher Assistant, "
             "AAAI 2020): the middle-sized architecture (cnn_mid / mlp_mid) trained only on "
             "T²·KL(softmax(z_t/T) || softmax(z_s/T)) at T=4 (kd_alpha=1) against the shipped CE teacher, the same "
             "settings as kd_ce_t4. The authors' code (imirzadeh/Teacher-Assistant-Knowledge-Distillation train.py) "
             "mixes (1−λ)·CE + λ·T²·KL with T and λ found by a hyper-parameter search and keeps the best epoch; we "
             "keep the zoo's KD settings so that teacher → TA → student compares cleanly with kd_ce_t4.",
    "takd_ce": "TAKD student (Mirzadeh et al., AAAI 2020): the small student architecture trained only on "
               "T²·KL(softmax(z_ta/T) || softmax(z_s/T)) at T=4 (kd_alpha=1) against the shipped teacher assistant "
               "ta_ce (itself distilled from ce); compare with kd_ce_t4, the same student distilled from ce directly.",
    "ldl": "Label-distribution learning with augmentation (after Hong et al., Rethinking Soft Label in Label "
           "Distribution Learning Perspective, 2023; our reading, their code was not available here): the full "
           "architecture trained with cross-entropy against per-sample distributions q = (1−β)·(λ·e_a + (1−λ)·e_b) "
           "+ β·softmax(z_ce(x̃)), β=0.5, on CutMix inputs x̃ (λ0 ~ Beta(1, 1), partner from a batch permutation, "
           "the box / interval drawn as in calibviz.augment; λ the share kept from a) where z_ce is the shipped CE "
           "teacher's logits on the same CutMix input, at T=1.",
    "ldl_online": "Label-distribution learning, online (our reading of Hong et al. 2023, no pretrained teacher): as "
                  "ldl (CutMix, cross-entropy against q = (1−β_e)·mixed one-hot + β_e·p), but p is the model's own "
                  "prediction on the same CutMix input by its frozen snapshot from the end of the previous epoch "
                  "(self-distillation), and β_e ramps linearly, β_e = 0.8·e/E for epoch e of E (0 in the first "
                  "epoch, which trains on labels alone), as in PS-KD (Kim et al., ICCV 2021), whose α_T = 0.8 we use.",
    "bdkd_teacher": "BD-KD online teacher peer (Amara et al., BD-KD: Balancing the Divergences for Online Knowledge "
                    "Distillation, 2022; our reading, their code was not available here): the full architecture "
                    "trained from scratch together with the bdkd student on the same batches, with "
                    "0.5·(CE + KL(p_s || p_t)) at T=1 (Deep Mutual Learning's online loss, halved; p_s the "
                    "student's prediction on the same batch, detached; the paper's summary says the teacher uses the "
                    "reverse KL as a regulariser). Its card's `peer` names the student; the joint training time is "
                    "counted in this card's build_seconds.",
    "bdkd": "BD-KD online student (our reading of Amara et al. 2022): the small student architecture trained from "
            "scratch together with bdkd_teacher on 0.5·CE + 0.5·mean_i[w_f·KL(p_t || p_s) + w_r·KL(p_s || p_t)] at "
            "T=1 (p_t the peer's prediction on the same batch, detached); per sample, where the student is more "
            "confident than the teacher (entropy H(p_s) < H(p_t)) w_r = 2 and w_f = 1, else w_f = 2 and w_r = 1 "
            "(the factor 2 is our choice). Its teacher is the bdkd_teacher checkpoint (mode online).",
    "mdt": "As dm, plus MDT-style masking (our reading of Zhu et al., ICCV 2023): at every matching "
           "iteration each element of the real batch and of the synthetic set is zeroed independently "
           "with probability mask_ratio (the same masking as MTS; no rescaling) before embedding, so the "
           "synthetic set is matched to the real class means under random masking and must keep "
           "information that survives it. Training on the distilled set is unmasked, as in dm.",
}

for _t in ("ce", "ls"):
    for _temp in (1, 2, 4, 8):
        RECIPE_NOTES[f"kd_{_t}_t{_temp}"] = (
            f"KD student (Hinton et al. 2015) of the shipped {_t.upper()} teacher at T={_temp}: the small student "
            f"architecture trained only on T²·KL(softmax(z_t/T) || softmax(z_s/T)) (kd_alpha=1: no CE on labels) on "
            f"the same training inputs; one point of the sweep T ∈ {{1, 2, 4, 8}} with otherwise equal settings "
            f"(Chandrasegaran et al., ICML 2022, study LS teachers across T).")


def default_zoo_dir() -> Path:
    """Where the shipped checkpoints live: $CALIBVIZ_ZOO, else `checkpoints/` of this repository."""
    env = os.environ.get(ZOO_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "checkpoints"


def recipe_order() -> list[str]:
    """Recipe names in display order."""
    return [r.name for r in RECIPES]


def list_zoo(root: Path | None = None) -> list[ModelEntry]:
    """Every checkpoint under `root/<dataset>/*.safetensors` (default: the shipped zoo), sorted by
    dataset then recipe order (unknown recipes last, by name). Reads only the cards."""
    from calibviz.formats import FormatError, read_card

    root = Path(root) if root is not None else default_zoo_dir()
    order = {name: i for i, name in enumerate(recipe_order())}
    out = []
    for path in sorted(root.glob("*/*.safetensors")):
        try:
            card = read_card(path)
        except FormatError:
            continue
        recipe = card.get("recipe", {}).get("name", path.stem)
        dataset = card.get("dataset", path.parent.name)
        out.append(ModelEntry(path=path, dataset=dataset, recipe=recipe, kind="checkpoint", origin="zoo",
                              name=card.get("name", f"{dataset}/{recipe}"),
                              title=card.get("title", recipe), arch=card["arch"], card=card))
    out.sort(key=lambda e: (e.dataset, order.get(e.recipe, len(order)), e.recipe))
    return out


# ---------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class QuickSettings:
    """The tiny build used by tests: few epochs, a training subset and a short distillation."""

    train_size: int = 200
    epochs: int = 2
    distill_iterations: int = 5
    distill_real_batch: int = 16


def _requested(only: Sequence[str] | None) -> set[tuple[str, str]]:
    """The (dataset, recipe) name pairs asked for, without the KD teachers they need."""
    known = {r.name: r for r in RECIPES}
    ds_names = [d.name for d in DATASETS]
    wanted: set[tuple[str, str]] = set()
    for item in only if only is not None else ds_names:
        if "/" in item:
            ds, rec = item.split("/", 1)
        elif item in ds_names:
            ds, rec = item, ""
        else:
            ds, rec = "", item
        if ds and ds not in ds_names:
            raise ValueError(f"zoo item {item!r}: dataset {ds!r} is unknown; known: {ds_names}")
        if rec and rec not in known:
            raise ValueError(f"zoo item {item!r}: recipe {rec!r} is unknown; known: {list(known)}")
        for d in [ds] if ds else ds_names:
            for r in [rec] if rec else list(known):
                wanted.add((d, r))
    return wanted


def _needs(recipe: Recipe) -> list[str]:
    """The recipes this one cannot be built without: its KD teacher and its online peer."""
    return [n for n in (recipe.kd_teacher, recipe.online_peer) if n]


def _select(only: Sequence[str] | None) -> list[tuple[ZooDataset, Recipe]]:
    """The (dataset, recipe) pairs asked for, plus (transitively) the KD teachers and online peers they need,
    in build order."""
    known = {r.name: r for r in RECIPES}
    wanted = _requested(only)
    todo = list(wanted)
    while todo:
        d, r = todo.pop()
        for need in _needs(known[r]):
            if (d, need) not in wanted:
                wanted.add((d, need))
                todo.append((d, need))
    return [(d, r) for d in DATASETS for r in RECIPES if (d.name, r.name) in wanted]


def online_pair(recipe: Recipe) -> tuple[Recipe, Recipe] | None:
    """(teacher peer, student) when `recipe` is either side of an online-KD pair (trained together), else None."""
    known = {r.name: r for r in RECIPES}
    if recipe.online_peer:
        return recipe, known[recipe.online_peer]
    teacher = known.get(recipe.kd_teacher or "")
    if teacher is not None and teacher.online_peer == recipe.name:
        return teacher, recipe
    return None


def distillation_mode(recipe: Recipe) -> str:
    """"online" for a student trained together with its teacher, "offline" for one distilled from a trained,
    fixed teacher (cards written before this field existed are all offline)."""
    pair = online_pair(recipe)
    return "online" if pair is not None and pair[1] is recipe else "offline"


def _uses_val(recipe: Recipe) -> bool:
    """Whether training reads the val split (an epoch hook that asked for it, e.g. CALS's multipliers)."""
    resolve_hooks(recipe)  # imports the recipe's hooks module, so that its epoch hook is registered
    hook = resolve_epoch_hook(recipe)
    return hook is not None and hook.uses_val


def _round_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Round the weights to float16 and back: exactly what is stored and what a reload computes with."""
    return model.half().float().eval()


def _measure(model: torch.nn.Module, dataset: str) -> dict[str, dict[str, float]]:
    """Val and test metrics on the path a user's `report` takes: backend.run_model on CPU, float32
    logits, Predictions.probabilities(), basic_metrics."""
    from calibviz.backend import run_model
    from calibviz.data import load_dataset
    from calibviz.metrics import basic_metrics
    from calibviz.predictions import Predictions

    out = {}
    for split in ("val", "test"):
        ds = load_dataset(f"{dataset}:{split}")
        logits, _ = run_model(model, ds.x, torch.device("cpu"))
        preds = Predictions(labels=np.array(ds.y), logits=logits)
        out[split] = basic_metrics(preds.probabilities(), preds.labels)
    return out


def _card(zd: ZooDataset, recipe: Recipe, arch: str, resolved: dict[str, Any],
          class_names: Sequence[str], quick: bool) -> dict[str, Any]:
    from calibviz.backend import FORMAT_VERSION
    from calibviz.models import ARCHITECTURES

    _, defaults = ARCHITECTURES[arch]
    arch_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    rec = {**recipe.to_card(), **resolved}
    note = RECIPE_NOTES.get(recipe.name) or RECIPE_NOTES.get(recipe.loss, "")
    trained_on = (f"Trained on {zd.name}:train; {zd.name}:val steered training (epoch hook {recipe.epoch_hook!r}), "
                  "so this model's val metrics are not held out; nothing selected on test."
                  if _uses_val(recipe) else f"Trained on {zd.name}:train only; nothing selected on val or test.")
    return {
        "name": f"{zd.name}/{recipe.name}",
        "title": recipe.title,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "num_classes": int(arch_kwargs.get("n_classes", 10)),
        "class_names": list(class_names),
        "dataset": zd.name,
        "recipe": rec,
        "quick": quick,
        "torch_version": torch.__version__,
        "calibviz_format": FORMAT_VERSION,
        "notes": (f"{note} {trained_on} "
                  "Weights stored as float16; metrics measured on the stored weights."
                  + (" QUICK BUILD (tests only): tiny subset and few epochs." if quick else "")),
    }


def _existing_teacher(path: Path, quick: bool) -> torch.nn.Module | None:
    """A teacher checkpoint already written at `path` by a build of the same kind (quick or full), loaded
    as float32 from its float16 weights (exactly the model a fresh build trains its students with)."""
    from calibviz.formats import FormatError, load_checkpoint

    if not path.is_file():
        return None
    try:
        model, card = load_checkpoint(path)
    except FormatError:
        return None
    return model.float().eval() if bool(card.get("quick")) == quick else None


def _resolved(zd: ZooDataset, recipe: Recipe, quick: bool, train_size: int, n_threads: int) -> dict[str, Any]:
    """The settings a recipe leaves to its dataset (or to the quick build), as the card records them."""
    return {
        "epochs": QuickSettings().epochs if quick else (recipe.epochs or zd.epochs),
        "batch_size": recipe.batch_size or zd.batch_size,
        "lr": recipe.lr or zd.lr,
        "train_size": train_size,
        "torch_threads": n_threads,
    }


def _train_split(zd: ZooDataset, quick: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from calibviz.data import load_dataset

    train = load_dataset(f"{zd.name}:train")
    x, y = np.array(train.x), np.array(train.y)
    if quick:
        q = QuickSettings()
        x, y = x[:q.train_size], y[:q.train_size]
    return x, y, list(train.class_names)


def _write(path: Path, zd: ZooDataset, recipe: Recipe, arch: str, result: TrainResult, resolved: dict[str, Any],
           extra: dict[str, Any], class_names: Sequence[str], quick: bool, start: float,
           log: Progress) -> torch.nn.Module:
    """Round the trained model to its stored float16 weights, measure them, write the checkpoint with its card
    (build_seconds counted from `start`) and return the float32 model of the stored weights."""
    from calibviz.formats import save_checkpoint

    model = _round_weights(result.model)
    card = _card(zd, recipe, arch, resolved, class_names, quick)
    card.update(extra)
    card.update(result.record)
    card["training"] = {"final_loss": result.final_loss, "train_accuracy": result.train_accuracy,
                        "seconds": round(result.seconds, 2), **card.get("training", {})}
    card["metrics"] = _measure(model, zd.name)
    card["build_seconds"] = round(time.perf_counter() - start, 2)
    save_checkpoint(path, model.half(), card)
    model.float()
    m = card["metrics"]["test"]
    log(f"{zd.name}/{recipe.name}: test acc {m['accuracy']:.4f} nll {m['nll']:.4f} "
        f"ece {m['ece']:.4f} ({card['build_seconds']:.1f} s)")
    return model


def _teacher_block(name: str, path: Path, mode: str) -> dict[str, Any]:
    from calibviz.backend import file_digest

    return {"name": name, "sha256": file_digest(path), "mode": mode}


def build_zoo(out_dir: Path | None = None, quick: bool = False, only: list[str] | None = None,
              progress: Progress | None = None, threads: int | None = None,
              reuse_teachers: bool = False) -> list[Path]:
    """Train the zoo on CPU and write `<out_dir>/<dataset>/<recipe>.safetensors`; return the paths.

    `only` takes recipe names ("ls"), datasets ("digits") or "dataset/recipe"; KD teachers a student
    needs (transitively: the TAKD student needs the assistant, which needs the CE teacher) are built (and
    written) too, unless `reuse_teachers` is set and a teacher that was not asked for is already in `out_dir`
    (same quick/full kind): then that file is loaded and left untouched, so adding a student never rewrites
    its teacher. The two sides of an online-KD pair (bdkd_teacher, bdkd) are always trained and written
    together, whichever was asked for. `quick` is the tiny test build. Seeded and deterministic: the same
    call on the same machine and thread count writes the same weights. `threads` is torch's intra-op thread
    count during the build (default 1: on a small shared CPU more threads oversubscribe the cores and made
    training >10x slower here).
    """
    from calibviz.data import load_dataset

    out_dir = Path(out_dir) if out_dir is not None else default_zoo_dir()
    log = progress or (lambda _msg: None)
    plan = _select(only)
    asked = _requested(only)
    q = QuickSettings()
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    n_threads = threads or 1
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True)
    written: list[Path] = []
    teachers: dict[tuple[str, str], tuple[torch.nn.Module, Path]] = {}
    total_start = time.perf_counter()

    def path_of(zd: ZooDataset, recipe: Recipe) -> Path:
        return out_dir / zd.name / f"{recipe.name}.safetensors"

    try:
        for zd, recipe in plan:
            if (zd.name, recipe.name) in teachers:
                continue  # written with its online peer
            path = path_of(zd, recipe)
            pair = online_pair(recipe)
            if reuse_teachers and pair is None and (zd.name, recipe.name) not in asked:
                existing = _existing_teacher(path, quick)
                if existing is not None:
                    log(f"{zd.name}/{recipe.name}: reusing the teacher already in {out_dir.name}/")
                    teachers[(zd.name, recipe.name)] = (existing, path)
                    continue
            start = time.perf_counter()
            x, y, class_names = _train_split(zd, quick)
            resolved = _resolved(zd, recipe, quick, len(x), n_threads)
            if pair is not None:
                peer, student = pair
                t_arch, s_arch = zd.arch_for(peer.arch_role), zd.arch_for(student.arch_role)
                log(f"{zd.name}/{peer.name} + {student.name}: training {t_arch} and {s_arch} together (online)")
                t_res, s_res = train_online_pair(peer, student, t_arch, s_arch, x, y, epochs=resolved["epochs"],
                                                 batch_size=resolved["batch_size"], lr=resolved["lr"], log=log)
                joint = {"online_with": f"{zd.name}/{student.name}", "joint_seconds": round(t_res.seconds, 2),
                         "build_seconds_of_the_pair_counted_on": f"{zd.name}/{peer.name}"}
                t_path, s_path = path_of(zd, peer), path_of(zd, student)
                t_model = _write(t_path, zd, peer, t_arch, t_res, resolved,
                                 {"peer": f"{zd.name}/{student.name}", "training": joint}, class_names, quick,
                                 start, log)
                s_start = time.perf_counter()
                s_extra = {"teacher": _teacher_block(f"{zd.name}/{peer.name}", t_path, "online"),
                           "training": {**joint, "online_with": f"{zd.name}/{peer.name}"}}
                s_model = _write(s_path, zd, student, s_arch, s_res, resolved, s_extra, class_names, quick,
                                 s_start, log)
                teachers[(zd.name, peer.name)] = (t_model, t_path)
                teachers[(zd.name, student.name)] = (s_model, s_path)
                written += [t_path, s_path]
                continue
            arch = zd.arch_for(recipe.arch_role)
            log(f"{zd.name}/{recipe.name}: training {arch} ({recipe.title})")
            extra: dict[str, Any] = {}
            if recipe.distill == "dm":
                iters = q.distill_iterations if quick else recipe.distill_iterations
                real_batch = q.distill_real_batch if quick else (recipe.distill_real_batch
                                                                 or zd.distill_real_batch)
                dist = distill_distribution_matching(
                    x, y, len(class_names), arch, {}, per_class=recipe.distilled_per_class,
                    iterations=iters, real_batch=real_batch, lr=recipe.distill_lr,
                    mask_ratio=recipe.mask_ratio, seed=recipe.seed, log=log)
                resolved.update(distill_iterations=iters, distill_real_batch=real_batch)
                extra["distillation"] = {
                    "n_synthetic": len(dist.y),
                    "matching_loss_before": dist.initial_loss,
                    "matching_loss_after": dist.final_loss,
                    "matching_loss_probe": "mean over 4 fixed random networks of sum_c ||mean emb real_c "
                                           "- mean emb syn_c||², unmasked, all real training examples",
                    "seconds": round(dist.seconds, 2),
                }
                x, y = dist.x, dist.y
                resolved["train_size"] = len(x)
            elif recipe.distill is not None:
                raise ValueError(f"recipe {recipe.name!r}: distill {recipe.distill!r} is unknown (dm)")
            teacher = None
            if recipe.kd_teacher:
                teacher, teacher_path = teachers[(zd.name, recipe.kd_teacher)]
                extra["teacher"] = _teacher_block(f"{zd.name}/{recipe.kd_teacher}", teacher_path, "offline")
            val = None
            if _uses_val(recipe):
                val_split = load_dataset(f"{zd.name}:val")
                val = (np.array(val_split.x), np.array(val_split.y))
                extra["training"] = {"uses_val": True}
            result = train_classifier(recipe, arch, {}, x, y, epochs=resolved["epochs"],
                                      batch_size=resolved["batch_size"], lr=resolved["lr"],
                                      teacher=teacher, log=log, val=val)
            model = _write(path, zd, recipe, arch, result, resolved, extra, class_names, quick, start, log)
            teachers[(zd.name, recipe.name)] = (model, path)
            written.append(path)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
    log(f"zoo: {len(written)} checkpoints in {time.perf_counter() - total_start:.1f} s")
    return written


def recipe_by_name(name: str) -> Recipe:
    """The Recipe of the table with this name; ValueError listing the known ones otherwise."""
    for r in RECIPES:
        if r.name == name:
            return r
    raise ValueError(f"recipe {name!r} is unknown; known: {recipe_order()}")


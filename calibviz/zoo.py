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
from calibviz.training import Recipe, distill_distribution_matching, train_classifier

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


DATASETS: tuple[ZooDataset, ...] = (
    ZooDataset("digits", arch="cnn", student_arch="cnn_small", epochs=100, batch_size=64, lr=1e-3,
               distill_real_batch=64),
    ZooDataset("mnist1d", arch="mlp", student_arch="mlp_small", epochs=100, batch_size=128, lr=1e-3,
               distill_real_batch=256),
)

MIXUP_ALPHA = 0.4
DISTILL = {"distilled_per_class": 10, "distill_iterations": 500, "distill_lr": 10.0,
           "epochs": 300, "batch_size": 256}
MDT_MASK_RATIO = 0.25

# The recipe table, in display order. Add a recipe by appending a Recipe (see docs/zoo.md).
RECIPES: tuple[Recipe, ...] = (
    Recipe("ce", "CE teacher", loss="ce"),
    Recipe("ls", "LS α=0.1", loss="ce", label_smoothing=0.1),
    Recipe("mixup", f"Mixup α={MIXUP_ALPHA}", loss="ce", mixup_alpha=MIXUP_ALPHA),
    Recipe("focal", "Focal γ=3", loss="focal", focal_gamma=3.0),
    Recipe("kd_ce_t1", "KD student of CE, T=1", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=1.0),
    Recipe("kd_ce_t4", "KD student of CE, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0),
    Recipe("kd_ls_t1", "KD student of LS, T=1", loss="kd", student=True, kd_teacher="ls",
           kd_temperature=1.0),
    Recipe("kd_ls_t4", "KD student of LS, T=4", loss="kd", student=True, kd_teacher="ls",
           kd_temperature=4.0),
    Recipe("kd_ce_mixup", "Mixup-KD student of CE, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0, mixup_alpha=MIXUP_ALPHA),
    Recipe("kd_ce_mixup_iso", "Mixup-KD of CE, isotonic targets, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0, mixup_alpha=MIXUP_ALPHA, target_transform="tree_isotonic"),
    Recipe("kd_ce_mixup_pen", "Mixup-KD of CE, order penalty, T=4", loss="kd", student=True, kd_teacher="ce",
           kd_temperature=4.0, mixup_alpha=MIXUP_ALPHA, extra_losses=(("order_penalty", 1.0),)),
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
    "mdt": "As dm, plus MDT-style masking (our reading of Zhu et al., ICCV 2023): at every matching "
           "iteration each element of the real batch and of the synthetic set is zeroed independently "
           "with probability mask_ratio (the same masking as MTS; no rescaling) before embedding, so the "
           "synthetic set is matched to the real class means under random masking and must keep "
           "information that survives it. Training on the distilled set is unmasked, as in dm.",
}


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


def _select(only: Sequence[str] | None) -> list[tuple[ZooDataset, Recipe]]:
    """The (dataset, recipe) pairs asked for, plus the KD teachers they need, in build order."""
    known = {r.name: r for r in RECIPES}
    wanted = _requested(only)
    for d, r in list(wanted):
        if known[r].kd_teacher:
            wanted.add((d, known[r].kd_teacher))
    return [(d, r) for d in DATASETS for r in RECIPES if (d.name, r.name) in wanted]


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
        "notes": (f"{note} Trained on {zd.name}:train only; nothing selected on val or test. "
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


def build_zoo(out_dir: Path | None = None, quick: bool = False, only: list[str] | None = None,
              progress: Progress | None = None, threads: int | None = None,
              reuse_teachers: bool = False) -> list[Path]:
    """Train the zoo on CPU and write `<out_dir>/<dataset>/<recipe>.safetensors`; return the paths.

    `only` takes recipe names ("ls"), datasets ("digits") or "dataset/recipe"; KD teachers a student
    needs are built (and written) too, unless `reuse_teachers` is set and a teacher that was not asked
    for is already in `out_dir` (same quick/full kind): then that file is loaded and left untouched, so
    adding a student never rewrites its teacher. `quick` is the tiny test build. Seeded and
    deterministic: the same call on the same machine and thread count writes the same weights.
    `threads` is torch's intra-op thread count during the build (default 1: on a small shared CPU more
    threads oversubscribe the cores and made training >10x slower here).
    """
    from calibviz.backend import file_digest
    from calibviz.data import load_dataset
    from calibviz.formats import save_checkpoint

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
    try:
        for zd, recipe in plan:
            path = out_dir / zd.name / f"{recipe.name}.safetensors"
            if reuse_teachers and (zd.name, recipe.name) not in asked:
                existing = _existing_teacher(path, quick)
                if existing is not None:
                    log(f"{zd.name}/{recipe.name}: reusing the teacher already in {out_dir.name}/")
                    teachers[(zd.name, recipe.name)] = (existing, path)
                    continue
            start = time.perf_counter()
            train = load_dataset(f"{zd.name}:train")
            x, y = np.array(train.x), np.array(train.y)
            if quick:
                x, y = x[:q.train_size], y[:q.train_size]
            arch = zd.student_arch if recipe.student else zd.arch
            epochs = recipe.epochs or zd.epochs
            resolved: dict[str, Any] = {
                "epochs": q.epochs if quick else epochs,
                "batch_size": recipe.batch_size or zd.batch_size,
                "lr": recipe.lr or zd.lr,
                "train_size": len(x),
                "torch_threads": n_threads,
            }
            log(f"{zd.name}/{recipe.name}: training {arch} ({recipe.title})")
            extra: dict[str, Any] = {}
            if recipe.distill == "dm":
                iters = q.distill_iterations if quick else recipe.distill_iterations
                real_batch = q.distill_real_batch if quick else (recipe.distill_real_batch
                                                                 or zd.distill_real_batch)
                dist = distill_distribution_matching(
                    x, y, len(train.class_names), arch, {}, per_class=recipe.distilled_per_class,
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
                extra["teacher"] = {"name": f"{zd.name}/{recipe.kd_teacher}",
                                    "sha256": file_digest(teacher_path)}
            result = train_classifier(recipe, arch, {}, x, y, epochs=resolved["epochs"],
                                      batch_size=resolved["batch_size"], lr=resolved["lr"],
                                      teacher=teacher, log=log)
            model = _round_weights(result.model)
            card = _card(zd, recipe, arch, resolved, train.class_names, quick)
            card.update(extra)
            card["training"] = {"final_loss": result.final_loss,
                                "train_accuracy": result.train_accuracy,
                                "seconds": round(result.seconds, 2)}
            card["metrics"] = _measure(model, zd.name)
            card["build_seconds"] = round(time.perf_counter() - start, 2)
            save_checkpoint(path, model.half(), card)
            model.float()
            teachers[(zd.name, recipe.name)] = (model, path)
            written.append(path)
            m = card["metrics"]["test"]
            log(f"{zd.name}/{recipe.name}: test acc {m['accuracy']:.4f} nll {m['nll']:.4f} "
                f"ece {m['ece']:.4f} ({card['build_seconds']:.1f} s)")
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


"""The model zoo: recipes, the quick build (complete cards, determinism), and the shipped checkpoints'
recorded metrics recomputed through the backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from calibviz import training, zoo
from calibviz.backend import file_digest, predict
from calibviz.formats import load_checkpoint, read_card
from calibviz.metrics import basic_metrics

CARD_KEYS = {"name", "title", "arch", "arch_kwargs", "num_classes", "class_names", "dataset", "recipe",
             "metrics", "build_seconds", "torch_version", "calibviz_format", "notes", "training"}
RECIPE_KEYS = {"name", "loss", "label_smoothing", "focal_gamma", "mixup_alpha", "kd_temperature",
               "kd_teacher", "kd_alpha", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "seed",
               "distilled_per_class", "mask_ratio", "target_transform", "extra_losses", "student", "arch_role"}
METRIC_KEYS = {"accuracy", "nll", "brier", "ece"}
QUICK_ITEMS = ["digits/kd_ls_t4", "digits/mdt"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Losses against independent numpy references


def test_kd_term_matches_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3
    for t in (1.0, 4.0):
        pt, ps = _softmax(zt / t), _softmax(zs / t)
        ref = t * t * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
        got = training.kd_term(torch.tensor(zs), torch.tensor(zt), t)
        assert float(got) == pytest.approx(ref, rel=1e-10)


def test_focal_and_smoothed_ce_match_numpy_reference() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 4)) * 2
    y = rng.integers(0, 4, size=8)
    p = _softmax(z)
    py = p[np.arange(8), y]
    batch = training.Batch(torch.tensor(z), torch.tensor(y))
    focal = training.Recipe("f", "f", loss="focal", focal_gamma=3.0)
    got = training.focal_loss(training.LossInputs(torch.tensor(z), None, batch, focal))
    assert float(got) == pytest.approx(np.mean(-((1 - py) ** 3) * np.log(py)), rel=1e-10)
    ls = training.Recipe("l", "l", label_smoothing=0.1)
    target = np.full((8, 4), 0.1 / 4)
    target[np.arange(8), y] += 0.9
    got = training.cross_entropy_loss(training.LossInputs(torch.tensor(z), None, batch, ls))
    assert float(got) == pytest.approx(np.mean(-(target * np.log(p)).sum(1)), rel=1e-10)


def test_mixup_orders_lambda_and_mixes_inputs() -> None:
    x = torch.arange(20, dtype=torch.float64).view(10, 2)
    y = torch.arange(10)
    b = training.mixup_batch(x, y, 0.4, np.random.default_rng(3))
    assert (b.lam >= 0.5).all() and (b.lam <= 1).all()
    lam = b.lam.double()[:, None]
    partner = x[b.y_b]  # labels equal row indices here, so y_b names the partner row
    assert torch.allclose(b.x.double(), lam * x + (1 - lam) * partner, atol=1e-6)


def test_plugged_in_target_transform_and_extra_loss_are_used() -> None:
    calls = {"transform": 0, "extra": 0}

    @training.register_target_transform("test_flip")
    def flip(t_logits: torch.Tensor, batch: training.Batch) -> torch.Tensor:
        calls["transform"] += 1
        assert batch.lam is not None and batch.y_b is not None  # mixup info reaches the hook
        return -t_logits

    @training.register_extra_loss("test_zero")
    def zero(inp: training.LossInputs) -> torch.Tensor:
        calls["extra"] += 1
        return inp.student_logits.sum() * 0.0

    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 40)).astype(np.float32)
        y = rng.integers(0, 10, size=32)
        teacher = torch.nn.Linear(40, 10)
        r = training.Recipe("t", "t", loss="kd", kd_teacher="x", kd_temperature=2.0, mixup_alpha=0.4,
                            target_transform="test_flip", extra_losses=(("test_zero", 0.5),))
        training.train_classifier(r, "mlp_small", {}, x, y, epochs=1, batch_size=16, lr=1e-3, teacher=teacher)
        assert calls == {"transform": 2, "extra": 2}
        assert r.to_card()["extra_losses"] == {"test_zero": 0.5}
        with pytest.raises(ValueError, match="not registered"):
            training.resolve_hooks(training.Recipe("u", "u", target_transform="nope"))
    finally:
        training.TARGET_TRANSFORMS.pop("test_flip", None)
        training.EXTRA_LOSSES.pop("test_zero", None)


def test_different_seed_gives_different_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 40)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    w = [training.train_classifier(training.Recipe("c", "c", seed=s), "mlp_small", {}, x, y, epochs=1,
                                   batch_size=16, lr=1e-3).model.head.weight for s in (0, 0, 1)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


# ---------------------------------------------------------------------------------------------
# Quick build


@pytest.fixture(scope="module")
def quick_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    a = zoo.build_zoo(tmp_path_factory.mktemp("zoo_a"), quick=True, only=QUICK_ITEMS)
    b = zoo.build_zoo(tmp_path_factory.mktemp("zoo_b"), quick=True, only=QUICK_ITEMS)
    return a, b


def test_quick_build_writes_loadable_checkpoints_with_complete_cards(quick_builds) -> None:
    paths, _ = quick_builds
    # the KD student's teacher is built too, before it
    assert [p.relative_to(p.parents[1]).as_posix() for p in paths] == [
        "digits/ls.safetensors", "digits/kd_ls_t4.safetensors", "digits/mdt.safetensors"]
    for p in paths:
        model, card = load_checkpoint(p)
        assert model.head.weight.dtype == torch.float32  # stored as float16, loaded as float32
        assert set(card) >= CARD_KEYS, CARD_KEYS - set(card)
        assert set(card["recipe"]) >= RECIPE_KEYS, RECIPE_KEYS - set(card["recipe"])
        assert card["quick"] is True
        assert card["name"] == f"digits/{p.stem}" and card["recipe"]["name"] == p.stem
        for split in ("val", "test"):
            assert set(card["metrics"][split]) == METRIC_KEYS
        # recorded metrics are those of the stored weights, on the user's path
        for split in ("val", "test"):
            preds = predict(p, f"digits:{split}", device="cpu", use_cache=False)
            got = basic_metrics(preds.probabilities(), preds.labels)
            for k in METRIC_KEYS:
                assert got[k] == pytest.approx(card["metrics"][split][k], abs=1e-4), (p.name, split, k)
    student = read_card(paths[1])
    assert student["arch"] == "cnn_small" and student["recipe"]["kd_temperature"] == 4.0
    assert student["teacher"] == {"name": "digits/ls", "sha256": file_digest(paths[0]), "mode": "offline"}
    mdt = read_card(paths[2])
    assert mdt["recipe"]["mask_ratio"] == zoo.MDT_MASK_RATIO
    assert mdt["distillation"]["n_synthetic"] == 10 * 10
    assert mdt["recipe"]["train_size"] == 100


def test_quick_build_is_deterministic(quick_builds) -> None:
    a, b = quick_builds
    for pa, pb in zip(a, b, strict=True):
        ta, tb = load_file(str(pa)), load_file(str(pb))
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (pa.name, k)


def test_reused_teacher_is_left_untouched_and_gives_the_same_student(tmp_path: Path) -> None:
    fresh = zoo.build_zoo(tmp_path, quick=True, only=["digits/kd_ce_mixup_iso"])
    assert [p.stem for p in fresh] == ["ce", "kd_ce_mixup_iso"]
    teacher, student = fresh
    teacher_bytes, student_weights = teacher.read_bytes(), load_file(str(student))
    again = zoo.build_zoo(tmp_path, quick=True, only=["digits/kd_ce_mixup_iso"], reuse_teachers=True)
    assert again == [student]  # the teacher was loaded, not rebuilt or rewritten
    assert teacher.read_bytes() == teacher_bytes
    assert read_card(student)["teacher"] == {"name": "digits/ce", "sha256": file_digest(teacher), "mode": "offline"}
    for k, v in load_file(str(student)).items():  # the teacher from its file is the one trained in memory
        assert torch.equal(v, student_weights[k]), k
    # a quick-build teacher is never reused for a full build (nor a full one for a quick build)
    assert zoo._existing_teacher(teacher, quick=True) is not None
    assert zoo._existing_teacher(teacher, quick=False) is None


def test_unknown_zoo_item_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        zoo.build_zoo(tmp_path, quick=True, only=["digits/nope"])
    with pytest.raises(ValueError, match="unknown"):
        zoo.build_zoo(tmp_path, quick=True, only=["cifar/ce"])


# ---------------------------------------------------------------------------------------------
# The shipped zoo


def test_default_zoo_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(zoo.ZOO_ENV, raising=False)
    assert zoo.default_zoo_dir() == Path(zoo.__file__).resolve().parent.parent / "checkpoints"
    monkeypatch.setenv(zoo.ZOO_ENV, str(tmp_path))
    assert zoo.default_zoo_dir() == tmp_path
    assert zoo.list_zoo() == []


def test_list_zoo_lists_every_recipe_for_both_datasets() -> None:
    entries = zoo.list_zoo(zoo.default_zoo_dir())
    expected = [(d.name, r.name) for d in zoo.DATASETS for r in zoo.RECIPES]
    assert [(e.dataset, e.recipe) for e in entries] == expected
    datasets = {d.name: d for d in zoo.DATASETS}
    for e in entries:
        assert e.name == f"{e.dataset}/{e.recipe}" and e.title == zoo.recipe_by_name(e.recipe).title
        # old cards say `student`, newer ones `arch_role` too; both name the architecture the recipe trains
        role = training.arch_role_of(e.card["recipe"])
        assert role == zoo.recipe_by_name(e.recipe).arch_role
        assert e.arch == datasets[e.dataset].arch_for(role)
        teacher = zoo.recipe_by_name(e.recipe).kd_teacher
        if teacher:  # a student's card names the shipped teacher file it was distilled from
            assert e.card["teacher"]["name"] == f"{e.dataset}/{teacher}"
            shipped = zoo.default_zoo_dir() / e.dataset / f"{teacher}.safetensors"
            assert e.card["teacher"]["sha256"] == file_digest(shipped), e.name
        else:
            assert "teacher" not in e.card
        assert e.card["quick"] is False
        assert e.path == zoo.default_zoo_dir() / e.dataset / f"{e.recipe}.safetensors"


@pytest.mark.parametrize("split", ["val", "test"])
def test_shipped_metrics_recompute_through_the_backend(split: str) -> None:
    entries = zoo.list_zoo(zoo.default_zoo_dir())
    assert entries, "no shipped checkpoints found"
    for e in entries:
        preds = predict(e.path, f"{e.dataset}:{split}", device="cpu", use_cache=False)
        got = basic_metrics(preds.probabilities(), preds.labels)
        for k in METRIC_KEYS:
            assert got[k] == pytest.approx(e.card["metrics"][split][k], abs=1e-4), (e.name, split, k)

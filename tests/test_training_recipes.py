"""The recipes added for issue 12: KD temperature sweep, teacher assistants, MbLS, CALS, label-distribution learning
(offline and online) and BD-KD. Losses against hand computations on tiny tensors, then a quick build of every new
recipe checking the cards (teacher, mode, peer, recipe parameters) and that it is deterministic."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from calibviz import training, zoo
from calibviz.backend import file_digest
from calibviz.formats import read_card

NEW = ["kd_ce_t2", "kd_ce_t8", "kd_ls_t2", "kd_ls_t8", "ta_ce", "takd_ce", "mbls", "cals", "ldl", "ldl_online",
       "bdkd_teacher", "bdkd"]


def _inputs(logits, recipe, teacher=None, y=None, state=None, batch=None) -> training.LossInputs:
    z = torch.tensor(logits, dtype=torch.float64)
    labels = torch.tensor(y if y is not None else [0] * len(logits))
    t = None if teacher is None else torch.tensor(teacher, dtype=torch.float64)
    return training.LossInputs(z, t, batch or training.Batch(z, labels), recipe, state if state is not None else {})


# ---------------------------------------------------------------------------------------------
# MbLS


def test_mbls_margin_penalty_worked_example() -> None:
    # row 1: max 16, distances (16, 11, 0) -> relu(d - 10) = (6, 1, 0); row 2: all distances 0 -> (0, 0, 0).
    # The mean over rows AND classes (the authors' code) is 7 / 6; a sum over classes would give 3.5 per row.
    z = [[0.0, 5.0, 16.0], [3.0, 3.0, 3.0]]
    assert float(training.margin_penalty(torch.tensor(z), 10.0)) == pytest.approx(7 / 6)
    r = zoo.recipe_by_name("mbls")
    assert (r.loss, r.margin, r.margin_weight) == ("mbls", 10.0, 0.1)
    got = training.LOSSES["mbls"](_inputs(z, r, y=[2, 1]))
    p1 = np.exp(z[0]) / np.exp(z[0]).sum()
    ce = (-math.log(p1[2]) + math.log(3)) / 2  # row 2 is uniform: -log(1/3)
    assert float(got) == pytest.approx(ce + 0.1 * 7 / 6, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# BD-KD


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _softmax(z) -> np.ndarray:
    e = np.exp(np.asarray(z, dtype=np.float64) - np.max(z))
    return e / e.sum()


def test_bdkd_weights_follow_the_entropy_gap() -> None:
    # row 1: a confident student (4, 0, 0) and a softer teacher (1, 0, 0): H(p_s) < H(p_t) -> reverse KL weighted.
    # row 2: a uniform student and a confident teacher: H(p_s) > H(p_t) -> forward KL weighted.
    zs = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    zt = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    w_f, w_r = training.bdkd_weights(zs, zt, delta=2.0)
    assert w_f.tolist() == [1.0, 2.0] and w_r.tolist() == [2.0, 1.0]
    # at a higher temperature both soften, the order of the entropies stays
    w_f4, w_r4 = training.bdkd_weights(zs, zt, delta=3.0, temperature=4.0)
    assert w_f4.tolist() == [1.0, 3.0] and w_r4.tolist() == [3.0, 1.0]


def test_bdkd_loss_against_hand_computation() -> None:
    zs, zt, y = [[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], [0, 1]
    r = zoo.recipe_by_name("bdkd")
    assert (r.loss, r.kd_alpha, r.kd_temperature, r.bdkd_delta, r.kd_teacher) == ("bdkd", 0.5, 1.0, 2.0,
                                                                                   "bdkd_teacher")
    got = float(training.LOSSES["bdkd"](_inputs(zs, r, teacher=zt, y=y)))
    ps, pt = [_softmax(z) for z in zs], [_softmax(z) for z in zt]
    div = ((1 * _kl(pt[0], ps[0]) + 2 * _kl(ps[0], pt[0])) + (2 * _kl(pt[1], ps[1]) + 1 * _kl(ps[1], pt[1]))) / 2
    ce = (-math.log(ps[0][0]) - math.log(ps[1][1])) / 2
    assert got == pytest.approx(0.5 * div + 0.5 * ce, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# CALS


def test_phr_penalty_worked_example() -> None:
    # λ = 0.5, ρ = 2: h = 0.25 -> x = λ + ρh = 1.0 >= 0: P = (1 - 0.25) / 4 = 0.1875, P' = 1.0;
    # h = -1 -> x = -1.5 < 0: P = -λ² / (2ρ) = -0.0625, P' = 0.
    p, dp = training.phr_penalty(torch.tensor([[0.25, -1.0]]), torch.tensor([0.5, 0.5]), 2.0)
    assert p.tolist() == [[0.1875, -0.0625]] and dp.tolist() == [[1.0, 0.0]]


def test_cals_constraints_and_loss() -> None:
    r = zoo.recipe_by_name("cals")
    assert (r.loss, r.margin, r.epoch_hook, r.alm_rho, r.alm_rho_max, r.alm_gamma, r.alm_tau, r.alm_rho_step) == (
        "cals", 10.0, "alm_multipliers", 1.0, 10.0, 1.2, 0.9, 10)
    z = [[0.0, 5.0, 16.0]]
    h = training.margin_constraints(torch.tensor(z), 10.0)  # (d - m) / m with d = (16, 11, 0)
    assert h[0].tolist() == pytest.approx([0.6, 0.1, -1.0])
    state = {"alm": {"lambd": torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64), "rho": 1.0,
                     "prev_penalty": None, "lambda_mean_by_epoch": [], "rho_by_epoch": []}}
    got = float(training.LOSSES["cals"](_inputs(z, r, y=[2], state=state)))
    # x = λ + ρh = (1.1, 0.1, 1.0): all >= 0, P = (x² - λ²) / 2 = (0.48, 0.005, -1.5)
    ce = -math.log(_softmax(z[0])[2])
    assert got == pytest.approx(ce + 0.48 + 0.005 - 1.5, rel=1e-12)


def test_cals_multiplier_update_by_hand() -> None:
    r = zoo.recipe_by_name("cals")
    h = torch.tensor([[0.5, -1.0], [-0.5, 0.2]], dtype=torch.float64)
    lambd = torch.tensor([0.2, 1.0], dtype=torch.float64)
    # P' = max(λ + ρh, 0), ρ = 1: class 0: (0.7, 0) -> clamped to (0.7, 1e-6) -> mean 0.3500005;
    # class 1: (0, 1.2) -> (1e-6, 1.2) -> 0.6000005.
    new, rho, penalty = training.alm_update(h, lambd, 1.0, None, epoch=0, recipe=r)
    assert new.tolist() == pytest.approx([0.3500005, 0.6000005], rel=1e-12)
    # P: class 0 (0.7² - 0.04)/2 = 0.225 and -0.02; class 1 -0.5 and (1.44 - 1)/2 = 0.22 -> mean of row sums
    assert penalty == pytest.approx(((0.225 - 0.5) + (-0.02 + 0.22)) / 2, rel=1e-12)
    assert rho == 1.0  # ρ is reconsidered only every alm_rho_step = 10 epochs
    positive = torch.tensor([[0.5, 0.5]], dtype=torch.float64)  # P = 0.225 + 0.625 = 0.85 > 0
    _, rho10, pen = training.alm_update(positive, lambd, 1.0, 0.1, epoch=9, recipe=r)
    assert pen > 0.9 * 0.1 and rho10 == pytest.approx(1.2)  # no improvement below τ × previous: ρ grows
    _, rho_kept, _ = training.alm_update(positive, lambd, 1.0, 100.0, epoch=9, recipe=r)
    assert rho_kept == 1.0  # the penalty fell below τ × previous: ρ stays
    _, rho_cap, _ = training.alm_update(positive, lambd, 9.5, 0.1, epoch=19, recipe=r)
    assert rho_cap == 10.0  # at most ρ_max


def test_cals_hook_raises_the_violated_multipliers() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 40)).astype(np.float32)
    y = rng.integers(0, 10, size=64)
    r = training.Recipe("c", "c", loss="cals", margin=0.5, epoch_hook="alm_multipliers",
                        **{**zoo.CALS, "alm_rho_step": 1})
    res = training.train_classifier(r, "mlp_small", {}, x, y, epochs=3, batch_size=16, lr=1e-2, val=(x, y))
    alm = res.record["alm"]
    assert len(alm["lambda"]) == 10 and len(alm["lambda_mean_by_epoch"]) == 3
    assert max(alm["lambda"]) > 1e-3 and alm["val_violated_share"] > 0  # a 0.5 margin is violated: λ rises
    with pytest.raises(ValueError, match="val split"):
        training.train_classifier(r, "mlp_small", {}, x, y, epochs=1, batch_size=16, lr=1e-2)


# ---------------------------------------------------------------------------------------------
# Label-distribution learning


def test_ldl_target_mixes_labels_and_teacher() -> None:
    z, t = [[1.0, 0.0, -1.0]], [[0.0, 2.0, 0.0]]
    lam = torch.tensor([0.7])
    zt = torch.tensor(z, dtype=torch.float64)
    batch = training.Batch(zt, torch.tensor([0]), torch.tensor([2]), lam)
    r = zoo.recipe_by_name("ldl")
    assert (r.loss, r.kd_teacher, r.cutmix_alpha, r.ldl_teacher_weight) == ("ldl", "ce", 1.0, 0.5)
    got = float(training.LOSSES["ldl"](_inputs(z, r, teacher=t, batch=batch)))
    q = 0.5 * np.array([0.7, 0.0, 0.3]) + 0.5 * _softmax(t[0])
    assert got == pytest.approx(-(q * np.log(_softmax(z[0]))).sum(), rel=1e-6)
    # the online recipe's ramped weight, as an epoch hook sets it, overrides the recipe's
    got0 = float(training.LOSSES["ldl"](_inputs(z, r, teacher=t, batch=batch, state={"teacher_weight": 0.0})))
    assert got0 == pytest.approx(-(np.array([0.7, 0.0, 0.3]) * np.log(_softmax(z[0]))).sum(), rel=1e-6)


@pytest.mark.parametrize("shape", [(6, 1, 8, 8), (6, 40)])
def test_cutmix_batch_keeps_the_larger_share_as_label_a(shape: tuple[int, ...]) -> None:
    x = torch.arange(6, dtype=torch.float32).view(6, *([1] * (len(shape) - 1))).expand(shape).clone()
    y = torch.arange(6)
    b = training.cutmix_batch(x, y, 1.0, np.random.default_rng(5))
    assert (b.lam >= 0.5).all() and (b.lam <= 1).all()
    mixed = 0
    for i in range(6):  # row values name the parent each element came from
        vals = b.x[i].flatten()
        if b.y[i] == b.y_b[i]:
            continue  # its permutation partner was itself
        mixed += 1
        share_a = float((vals == float(b.y[i])).double().mean())
        assert share_a == pytest.approx(float(b.lam[i]), abs=1e-6)
        assert set(vals.tolist()) <= {float(b.y[i]), float(b.y_b[i])}
    assert mixed >= 3


def test_previous_epoch_teacher_ramps_its_weight() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 40)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    r = training.Recipe("o", "o", loss="ldl", ldl_teacher_weight=0.8, epoch_hook="previous_epoch_teacher")
    res = training.train_classifier(r, "mlp_small", {}, x, y, epochs=4, batch_size=16, lr=1e-3)
    assert res.record["self_teacher"]["teacher_weight_in_last_epoch"] == pytest.approx(0.8 * 3 / 4)
    plain = training.train_classifier(training.Recipe("o", "o", loss="ldl"), "mlp_small", {}, x, y, epochs=4,
                                      batch_size=16, lr=1e-3)
    assert not torch.equal(res.model.head.weight, plain.model.head.weight)  # the self-teacher changed training


# ---------------------------------------------------------------------------------------------
# Recipes, roles, the plan


def test_arch_role_and_the_legacy_student_flag_agree() -> None:
    assert training.Recipe("a", "a", student=True).arch_role == "student"
    assert training.Recipe("a", "a", arch_role="student").student is True
    assert training.Recipe("a", "a", arch_role="assistant").student is False
    with pytest.raises(ValueError, match="contradicts"):
        training.Recipe("a", "a", student=True, arch_role="assistant")
    with pytest.raises(ValueError, match="unknown"):
        training.Recipe("a", "a", arch_role="mentor")
    # cards written before arch_role existed
    assert training.arch_role_of({"student": True}) == "student"
    assert training.arch_role_of({"student": False}) == "teacher"
    assert training.arch_role_of({"arch_role": "assistant", "student": False}) == "assistant"
    assert {d.name: d.arch_for("assistant") for d in zoo.DATASETS} == {"digits": "cnn_mid", "mnist1d": "mlp_mid"}


def test_the_plan_pulls_in_teacher_chains_and_online_peers() -> None:
    def plan(item: str) -> list[str]:
        return [r.name for _, r in zoo._select([item])]

    assert plan("digits/takd_ce") == ["ce", "ta_ce", "takd_ce"]
    assert plan("digits/bdkd") == ["bdkd_teacher", "bdkd"] == plan("digits/bdkd_teacher")
    assert plan("digits/ldl") == ["ce", "ldl"]
    assert zoo.distillation_mode(zoo.recipe_by_name("bdkd")) == "online"
    assert zoo.distillation_mode(zoo.recipe_by_name("kd_ce_t2")) == "offline"
    sweep = [zoo.recipe_by_name(f"kd_{t}_t{k}") for t in ("ce", "ls") for k in (1, 2, 4, 8)]
    assert {(r.loss, r.kd_alpha, r.student, r.mixup_alpha) for r in sweep} == {("kd", 1.0, True, 0.0)}


def test_online_pair_trains_both_from_their_seeded_inits() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 40)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    peer, student = zoo.recipe_by_name("bdkd_teacher"), zoo.recipe_by_name("bdkd")
    t_res, s_res = training.train_online_pair(peer, student, "mlp_mid", "mlp_small", x, y, epochs=2,
                                              batch_size=16, lr=1e-3)
    again = training.train_online_pair(peer, student, "mlp_mid", "mlp_small", x, y, epochs=2, batch_size=16,
                                       lr=1e-3)
    assert torch.equal(t_res.model.head.weight, again[0].model.head.weight)
    assert torch.equal(s_res.model.head.weight, again[1].model.head.weight)
    assert t_res.model.head.in_features == 256 and s_res.model.head.in_features == 64
    # the peer's logits reach the student: without the divergence term (kd_alpha 0) it trains differently
    _, ce_only = training.train_online_pair(peer, dataclasses.replace(student, kd_alpha=0.0), "mlp_mid",
                                            "mlp_small", x, y, epochs=2, batch_size=16, lr=1e-3)
    assert not torch.equal(s_res.model.head.weight, ce_only.model.head.weight)
    with pytest.raises(ValueError, match="same augmentation"):
        training.train_online_pair(peer, training.Recipe("s", "s", loss="bdkd", mixup_alpha=0.4), "mlp_small",
                                   "mlp_small", x, y, epochs=1, batch_size=16, lr=1e-3)


# ---------------------------------------------------------------------------------------------
# Quick build of every new recipe


@pytest.fixture(scope="module")
def quick_new(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("zoo_new")
    items = [f"digits/{n}" for n in NEW]
    a = zoo.build_zoo(root, quick=True, only=items)
    b = zoo.build_zoo(tmp_path_factory.mktemp("zoo_new_again"), quick=True, only=items)
    return root, a, b


def test_quick_build_of_the_new_recipes_writes_their_cards(quick_new) -> None:
    root, paths, _ = quick_new
    assert {p.stem for p in paths} == {*NEW, "ce", "ls"}
    cards = {p.stem: read_card(p) for p in paths}

    def teacher(name: str, mode: str = "offline") -> dict:
        return {"name": f"digits/{name}", "sha256": file_digest(root / "digits" / f"{name}.safetensors"),
                "mode": mode}

    for t in ("ce", "ls"):
        for k in (2, 8):
            c = cards[f"kd_{t}_t{k}"]
            assert c["teacher"] == teacher(t) and c["arch"] == "cnn_small"
            assert c["recipe"]["kd_temperature"] == float(k) and c["recipe"]["kd_teacher"] == t
            assert c["recipe"]["arch_role"] == "student" and c["recipe"]["student"] is True
    assert cards["ta_ce"]["teacher"] == teacher("ce") and cards["ta_ce"]["arch"] == "cnn_mid"
    assert cards["ta_ce"]["recipe"]["arch_role"] == "assistant" and cards["ta_ce"]["recipe"]["student"] is False
    assert cards["takd_ce"]["teacher"] == teacher("ta_ce") and cards["takd_ce"]["arch"] == "cnn_small"
    assert cards["takd_ce"]["recipe"]["kd_temperature"] == 4.0
    assert cards["mbls"]["recipe"]["margin"] == 10.0 and cards["mbls"]["recipe"]["margin_weight"] == 0.1
    cals = cards["cals"]
    assert len(cals["alm"]["lambda"]) == 10 and cals["alm"]["penalty"] == "phr"
    assert len(cals["alm"]["lambda_mean_by_epoch"]) == cals["recipe"]["epochs"] == 2
    assert cals["training"]["uses_val"] is True and "val metrics are not held out" in cals["notes"]
    assert "nothing selected on val or test" in cards["mbls"]["notes"]
    assert cards["ldl"]["teacher"] == teacher("ce") and cards["ldl"]["arch"] == "cnn"
    assert cards["ldl"]["recipe"]["cutmix_alpha"] == 1.0 and cards["ldl"]["recipe"]["ldl_teacher_weight"] == 0.5
    online = cards["ldl_online"]
    assert "teacher" not in online and online["recipe"]["epoch_hook"] == "previous_epoch_teacher"
    assert online["self_teacher"]["teacher_weight_in_last_epoch"] == pytest.approx(0.8 * 1 / 2)
    bt, bs = cards["bdkd_teacher"], cards["bdkd"]
    assert bt["peer"] == "digits/bdkd" and "teacher" not in bt and bt["arch"] == "cnn"
    assert bs["teacher"] == teacher("bdkd_teacher", "online") and bs["arch"] == "cnn_small"
    assert bs["recipe"]["bdkd_delta"] == 2.0 and bs["recipe"]["kd_teacher"] == "bdkd_teacher"
    assert bt["training"]["online_with"] == "digits/bdkd" and bs["training"]["online_with"] == "digits/bdkd_teacher"
    for c in cards.values():
        assert zoo.RECIPE_NOTES[c["recipe"]["name"]] in c["notes"]


def test_quick_build_of_the_new_recipes_is_deterministic(quick_new) -> None:
    _, a, b = quick_new
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        ta, tb = load_file(str(pa)), load_file(str(pb))
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (pa.name, k)


def test_an_online_pair_is_never_reused_from_disk(quick_new, tmp_path: Path) -> None:
    root, _, _ = quick_new
    for name in ("bdkd_teacher", "bdkd"):
        (tmp_path / "digits").mkdir(exist_ok=True)
        (tmp_path / "digits" / f"{name}.safetensors").write_bytes((root / "digits" / f"{name}.safetensors")
                                                                  .read_bytes())
    again = zoo.build_zoo(tmp_path, quick=True, only=["digits/bdkd"], reuse_teachers=True)
    assert [p.stem for p in again] == ["bdkd_teacher", "bdkd"]  # trained together again, both written
    assert read_card(again[1])["teacher"]["sha256"] == file_digest(again[0])


def test_mode_of_old_cards_defaults_to_offline() -> None:
    shipped = {e.recipe: e.card for e in zoo.list_zoo() if e.dataset == "digits"}
    old = shipped.get("kd_ce_t4")
    if old is None:
        pytest.skip("no shipped digits/kd_ce_t4")
    assert "mode" not in old["teacher"] and training.arch_role_of(old["recipe"]) == "student"

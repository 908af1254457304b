"""Checkpoint and bundle formats: round trips, and a clear error naming the field for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calibviz.formats import (
    FormatError,
    is_checkpoint,
    load_bundle,
    load_checkpoint,
    read_card,
    save_bundle,
    save_checkpoint,
)
from calibviz.models import ARCHITECTURES, build_model
from calibviz.predictions import Predictions


def _preds(n: int = 50, c: int = 4, probs: bool = False, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)).astype(np.float32)
    y = np.arange(n) % c
    split = (np.arange(n) % 3).astype(np.int64)
    if probs:
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return Predictions(labels=y, probs=p.astype(np.float32), split=split, meta={"name": "m"})
    return Predictions(labels=y, logits=z, features=rng.normal(size=(n, 3)).astype(np.float32),
                       head_weight=np.ones((c, 3), np.float32), head_bias=np.zeros(c, np.float32),
                       split=split, sample_id=np.arange(n), meta={"name": "m", "class_names": list("abcd")})


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("probs", [False, True])
def test_bundle_round_trip(tmp_path: Path, suffix: str, probs: bool) -> None:
    p = _preds(probs=probs)
    save_bundle(p, tmp_path / f"b{suffix}")
    q = load_bundle(tmp_path / f"b{suffix}")
    for k in ("labels", "logits", "probs", "features", "split", "sample_id"):
        a, b = getattr(p, k), getattr(q, k)
        assert (a is None) == (b is None), k
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert q.meta["name"] == "m"
    assert q.digest() == load_bundle(tmp_path / f"b{suffix}").digest()


def _write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _good(n: int = 20, c: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"logits": rng.normal(size=(n, c)).astype(np.float32), "labels": np.arange(n) % c}


@pytest.mark.parametrize("change,field,words", [
    ({"logits": None}, "logits/probs", "neither"),
    ({"probs": np.full((20, 3), 1 / 3, np.float32)}, "logits/probs", "both"),
    ({"logits": np.zeros((20,), np.float32)}, "logits", "2-D"),
    ({"logits": np.zeros((20, 3), np.int32)}, "logits", "float"),
    ({"logits": np.full((20, 3), np.nan, np.float32)}, "logits", "NaN"),
    ({"logits": np.full((20, 3), np.inf, np.float32)}, "logits", "NaN/inf"),
    ({"labels": np.arange(19)}, "labels", "shape"),
    ({"labels": np.arange(20) % 3 + 1}, "labels", "range"),
    ({"labels": -np.ones(20, np.int64)}, "labels", "range"),
    ({"labels": np.zeros(20, np.float32)}, "labels", "integer"),
    ({"labels": np.zeros(20, np.int64)}, "labels", "one class"),
    ({"logits": np.zeros((0, 3), np.float32), "labels": np.zeros(0, np.int64)}, "logits", "empty"),
    ({"features": np.zeros((5, 2), np.float32)}, "features", "shape"),
    ({"split": np.zeros(20, np.int64) + 7}, "split", "codes"),
])
def test_bad_bundles_name_the_field(tmp_path: Path, change: dict, field: str, words: str) -> None:
    arrays = _good()
    for k, v in change.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    with pytest.raises(FormatError) as e:
        load_bundle(_write_npz(tmp_path / "bad.npz", **arrays))
    assert f"'{field}'" in str(e.value) and words in str(e.value)


def test_one_class_split_is_rejected(tmp_path: Path) -> None:
    a = _good()
    a["split"] = np.where(np.arange(20) % 3 == 0, 1, 0)  # val split holds only class 0
    a["labels"] = np.arange(20) % 3
    with pytest.raises(FormatError, match="only one class"):
        load_bundle(_write_npz(tmp_path / "b.npz", **a))


def test_empty_split_is_named_when_selected(tmp_path: Path) -> None:
    a = _good()
    a["split"] = np.where(np.arange(20) < 10, 0, 2)  # train and test only: val is empty
    b = load_bundle(_write_npz(tmp_path / "b.npz", **a))
    assert b.select_split("test").n == 10
    with pytest.raises(ValueError, match="split 'val' is empty"):
        b.select_split("val")
    with pytest.raises(ValueError, match="unknown"):
        b.select_split("holdout")


def test_probability_rows_must_sum_to_one(tmp_path: Path) -> None:
    p = np.full((20, 3), 0.3, np.float32)
    with pytest.raises(FormatError, match="'probs'.*sum to 1"):
        load_bundle(_write_npz(tmp_path / "b.npz", probs=p, labels=np.arange(20) % 3))


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    arrays = _good()
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays, extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FormatError, match="unpickling"):
        load_bundle(path)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_truncated_bundle(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"b{suffix}"
    save_bundle(_preds(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated|corrupt"):
        load_bundle(path)


def test_checkpoint_round_trip_keeps_outputs(tmp_path: Path) -> None:
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        m = build_model(arch).eval()
        card = {"arch": arch, "num_classes": 10, "dataset": "digits"}
        save_checkpoint(tmp_path / f"{arch}.safetensors", m, card)
        m2, card2 = load_checkpoint(tmp_path / f"{arch}.safetensors")
        x = torch.rand(4, 1, 8, 8) if arch.startswith("cnn") else torch.randn(4, 40)
        torch.testing.assert_close(m(x), m2(x))
        torch.testing.assert_close(m2.head(m2.features(x)), m2(x))
        assert card2 == card and is_checkpoint(tmp_path / f"{arch}.safetensors")


def test_card_that_does_not_match_tensors(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_checkpoint))
    card = read_card(tiny_checkpoint)
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong), metadata={"calibviz_card": json.dumps({**card, "arch": "cnn"})})
    with pytest.raises(FormatError, match="shape"):
        load_checkpoint(wrong)
    save_file(state, str(wrong), metadata={"calibviz_card": json.dumps({**card, "arch": "mlp"})})
    with pytest.raises(FormatError, match="do not match"):
        load_checkpoint(wrong)
    save_file(state, str(wrong), metadata={"calibviz_card": json.dumps({**card, "arch": "resnet"})})
    with pytest.raises(FormatError, match="'arch'"):
        load_checkpoint(wrong)
    save_file(state, str(wrong), metadata={"calibviz_card": json.dumps({**card, "num_classes": 7})})
    with pytest.raises(FormatError, match="num_classes"):
        load_checkpoint(wrong)
    save_file(state, str(wrong))
    with pytest.raises(FormatError, match="card"):
        load_checkpoint(wrong)


def test_truncated_and_garbage_checkpoints(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-100])
    with pytest.raises(FormatError, match="truncated"):
        load_checkpoint(tmp_path / "t.safetensors")
    (tmp_path / "g.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(FormatError, match="truncated"):
        load_checkpoint(tmp_path / "g.safetensors")
    (tmp_path / "j.safetensors").write_bytes((20).to_bytes(8, "little") + b"{not json at all....}")
    with pytest.raises(FormatError, match="JSON"):
        load_checkpoint(tmp_path / "j.safetensors")


def test_digest_is_memoised_per_object_and_not_inherited_by_subsets() -> None:
    p = _preds()
    d = p.digest()
    assert p.digest() == d == _preds().digest()
    sub = p.subset(np.arange(10))
    assert sub.digest() != d and sub.digest() == _preds().subset(np.arange(10)).digest()

"""The inference backend on CPU: device choice, batched inference, the disk cache, progress, extract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calibviz import backend
from calibviz.data import load_dataset
from calibviz.devices import DEVICE_ENV, pick_device
from calibviz.diskcache import CACHE_ENV
from calibviz.formats import load_bundle, load_checkpoint


def test_pick_device_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == want
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device().type == "cpu"
    with pytest.raises(ValueError, match="not a valid"):
        pick_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_predict_matches_a_direct_forward_pass(tiny_checkpoint: Path) -> None:
    seen: list[float] = []
    p = backend.predict(tiny_checkpoint, "digits:val", batch_size=64, use_cache=False,
                        progress=lambda f, _: seen.append(f))
    model, _ = load_checkpoint(tiny_checkpoint)
    ds = load_dataset("digits:val")
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(ds.x))
        direct = model(x).numpy()
        feats = model.features(x).numpy()
    np.testing.assert_allclose(p.logits, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.features, feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(p.labels, ds.y)
    np.testing.assert_array_equal(p.sample_id, ds.sample_id)
    assert p.head_weight.shape == (10, feats.shape[1]) and p.head_bias.shape == (10,)
    assert (p.split == 1).all() and p.split_names[1] == "val"
    assert seen[0] == 0.0 and len(seen) == 1 + -(-len(ds) // 64)  # start, then one per batch
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_second_call_is_a_cache_hit(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = backend.predict(tiny_checkpoint, "digits:test")
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the model was loaded although the cache holds these predictions")

    monkeypatch.setattr(backend, "load_checkpoint", boom)
    again = backend.predict(tiny_checkpoint, "digits:test")
    assert again.digest() == first.digest()
    with pytest.raises(AssertionError, match="cache"):  # a different spec is not a hit
        backend.predict(tiny_checkpoint, "digits-noise-1:test")
    with pytest.raises(AssertionError, match="cache"):  # nor a different input mask
        backend.predict(tiny_checkpoint, "digits:test", mask_ratio=0.2)


def test_cache_key_follows_checkpoint_content(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from calibviz.formats import read_card, save_checkpoint

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    a = backend.predict(tiny_checkpoint, "digits:val")
    model, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        model.head.bias += 1.0
    save_checkpoint(tiny_checkpoint, model, read_card(tiny_checkpoint))  # same path, new bytes
    b = backend.predict(tiny_checkpoint, "digits:val")
    np.testing.assert_allclose(b.logits, a.logits + 1.0, atol=1e-5)


def test_damaged_cache_entry_is_recomputed(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    a = backend.predict(tiny_checkpoint, "digits:val")
    entry = next((tmp_path / "cache").glob("*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:100])
    b = backend.predict(tiny_checkpoint, "digits:val")
    assert a.digest() == b.digest()


def test_masked_inputs_change_logits_deterministically(tiny_checkpoint: Path) -> None:
    a = backend.predict(tiny_checkpoint, "digits:val", mask_ratio=0.5, use_cache=False)
    b = backend.predict(tiny_checkpoint, "digits:val", mask_ratio=0.5, use_cache=False)
    c = backend.predict(tiny_checkpoint, "digits:val", use_cache=False)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert not np.allclose(a.logits, c.logits)
    with pytest.raises(ValueError, match="mask_ratio"):
        backend.predict(tiny_checkpoint, "digits:val", mask_ratio=1.0)


def test_mask_ratio_is_the_share_of_zeroed_elements() -> None:
    x = torch.ones(200, 1, 8, 8)
    m = backend.mask_inputs(x, 0.3, torch.Generator().manual_seed(0))
    assert abs(float((m == 0).float().mean()) - 0.3) < 0.01


def test_extract_writes_a_bundle(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from calibviz.cli import main

    out = tmp_path / "b.npz"
    assert main(["extract", str(tiny_checkpoint), "--data", "digits:test", "--out", str(out)]) == 0
    b = load_bundle(out)
    assert b.n == len(load_dataset("digits:test")) and b.features is not None
    assert "wrote" in capsys.readouterr().out
    assert main(["extract", str(tiny_checkpoint), "--data", "digits:nope", "--out", str(out)]) == 2
    assert "split 'nope'" in capsys.readouterr().err

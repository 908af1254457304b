"""Seeded mixup / CutMix over a split, and a teacher run over the mixed inputs with its disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from calibviz.augment import AugmentParams, mix_split, teacher_on_mixed
from calibviz.data import Dataset, DataSpec, load_dataset


def constant_rows(shape: tuple[int, ...], n: int = 30) -> Dataset:
    """A synthetic split whose row i is the constant i + 1, so every mixed element names its parent."""
    x = (np.arange(n, dtype=np.float32) + 1.0).reshape((n,) + (1,) * len(shape)) * np.ones(shape, np.float32)
    return Dataset(spec=DataSpec("digits", "train"), x=x, y=np.arange(n) % 10,
                   sample_id=np.arange(n) * 7 + 3, class_names=tuple(str(i) for i in range(10)),
                   input_kind="image" if len(shape) == 3 else "signal")


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_same_seed_same_samples_other_seed_differs(kind):
    data = load_dataset("digits:val")
    p = AugmentParams(kind=kind, alpha=0.7, n_samples=300, seed=5)
    m1, m2 = mix_split(data, p), mix_split(data, p)
    for f in ("x", "lam", "index_a", "index_b", "label_a", "label_b"):
        np.testing.assert_array_equal(getattr(m1, f), getattr(m2, f))
    m3 = mix_split(data, AugmentParams(kind=kind, alpha=0.7, n_samples=300, seed=6))
    assert not np.array_equal(m1.index_a, m3.index_a)


def test_mixup_record_matches_inputs():
    data = load_dataset("digits:val")
    m = mix_split(data, AugmentParams(kind="mixup", alpha=0.4, n_samples=500, seed=1))
    assert m.x.shape == (500, 1, 8, 8) and m.x.dtype == np.float32
    assert np.all(m.lam >= 0.5) and np.all(m.lam <= 1.0)
    assert np.all(m.index_a != m.index_b)
    w = m.lam[:, None, None, None]
    want = w * data.x[m.index_a] + (1 - w) * data.x[m.index_b]
    np.testing.assert_allclose(m.x, want, atol=1e-5)
    np.testing.assert_array_equal(m.label_a, data.y[m.index_a])
    np.testing.assert_array_equal(m.sample_id_b, data.sample_id[m.index_b])


def test_mixup_lambda_follows_folded_beta():
    alpha = 0.4
    m = mix_split(constant_rows((40,)), AugmentParams(kind="mixup", alpha=alpha, n_samples=4000, seed=2))
    beta = stats.beta(alpha, alpha)
    res = stats.kstest(m.lam, lambda x: beta.cdf(x) - beta.cdf(1 - x))
    assert res.pvalue > 1e-3


@pytest.mark.parametrize("shape", [(1, 8, 8), (40,)])
def test_cutmix_lambda_is_the_share_taken_from_parent_a(shape):
    data = constant_rows(shape)
    m = mix_split(data, AugmentParams(kind="cutmix", alpha=1.0, n_samples=400, seed=3))
    va = (m.index_a + 1).astype(np.float32).reshape((-1,) + (1,) * len(shape))
    vb = (m.index_b + 1).astype(np.float32).reshape((-1,) + (1,) * len(shape))
    from_a, from_b = m.x == va, m.x == vb
    assert np.all(from_a | from_b)
    np.testing.assert_allclose(m.lam, from_a.reshape(len(m), -1).mean(1))
    assert np.all(m.lam >= 0.5)
    assert np.any(m.lam < 0.9) and np.any(m.lam > 0.9)
    # The pasted region (from either parent, depending on the swap) is one box, or one interval.
    def is_box(region: np.ndarray) -> bool:
        idx = np.argwhere(region)
        return len(idx) == 0 or region.sum() == np.prod(idx.max(0) + 1 - idx.min(0))

    grid = shape[-2:] if len(shape) == 3 else shape
    for i in range(len(m)):
        assert is_box(from_a[i].reshape(grid)) or is_box(from_b[i].reshape(grid))


def test_params_are_validated():
    with pytest.raises(ValueError, match="kind"):
        AugmentParams(kind="cutout")
    with pytest.raises(ValueError, match="alpha"):
        AugmentParams(alpha=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        AugmentParams(n_samples=0)


def test_teacher_on_mixed_runs_model_and_caches(tiny_checkpoint):
    from calibviz.formats import load_checkpoint

    p = AugmentParams(kind="cutmix", alpha=1.0, n_samples=64, seed=0)
    out = teacher_on_mixed(tiny_checkpoint, "digits:test", p, device="cpu", batch_size=20)
    model, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        want = model(torch.from_numpy(out.mix.x)).numpy()
    np.testing.assert_allclose(out.logits, want, atol=1e-5)
    assert out.logits.shape == (64, 10) and out.name == "digits/tiny"
    seen = []
    again = teacher_on_mixed(tiny_checkpoint, "digits:test", p, progress=lambda f, msg: seen.append(msg))
    assert seen == ["loaded from cache"]
    np.testing.assert_array_equal(again.logits, out.logits)
    seen.clear()  # a parsed spec reads the same cache entry
    parsed = teacher_on_mixed(tiny_checkpoint, DataSpec.parse("digits:test"), p,
                              progress=lambda f, msg: seen.append(msg))
    assert seen == ["loaded from cache"]
    np.testing.assert_array_equal(parsed.logits, out.logits)
    other = teacher_on_mixed(tiny_checkpoint, "digits:test", AugmentParams(kind="mixup", n_samples=64))
    assert not np.allclose(other.logits, out.logits)


def test_mixing_needs_no_backend():
    """Mixing and cached teacher logits import neither the backend nor torch; only a run on the model does."""
    import subprocess
    import sys

    code = "import sys, calibviz.augment; sys.exit('calibviz.backend' in sys.modules or 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

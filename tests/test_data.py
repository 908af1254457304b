"""Dataset specs, fixed splits and corruptions."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz.data import DataSpec, list_specs, load_dataset, split_indices


def test_spec_round_trip() -> None:
    for s in ("digits:test", "mnist1d:val", "digits-noise-3:test", "mnist1d-blur-5:test"):
        assert str(DataSpec.parse(s)) == s


@pytest.mark.parametrize("bad,word", [
    ("digits", "form"), ("cifar:test", "unknown"), ("digits:dev", "split"),
    ("digits-fog-2:test", "corruption"), ("digits-noise-9:test", "severity"),
])
def test_bad_specs_say_what_is_wrong(bad: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        DataSpec.parse(bad)


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_splits_are_disjoint_fixed_and_large_enough(name: str) -> None:
    a = split_indices(name)
    b = split_indices(name)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a[s], b[s])
    all_idx = np.concatenate([a["train"], a["val"], a["test"]])
    assert len(np.unique(all_idx)) == len(all_idx)
    if name == "mnist1d":
        assert len(a["test"]) >= 5000


def test_split_is_deterministic_across_processes() -> None:
    import subprocess
    import sys

    code = ("from calibviz.data import load_dataset; d=load_dataset('digits:val'); "
            "print(int(d.sample_id.sum()), float(d.x.sum()))")
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout for _ in range(2)}
    assert len(out) == 1
    d = load_dataset("digits:val")
    assert out.pop().split()[0] == str(int(d.sample_id.sum()))


@pytest.mark.parametrize("corr", ["noise", "blur", "shift"])
def test_corruption_strength_grows_with_severity(corr: str) -> None:
    clean = load_dataset("digits:test").x
    dist = [float(np.abs(load_dataset(f"digits-{corr}-{k}:test").x - clean).mean()) for k in (1, 3, 5)]
    assert 0 < dist[0] < dist[1] < dist[2]
    same = load_dataset(f"digits-{corr}-3:test")
    np.testing.assert_array_equal(same.y, load_dataset("digits:test").y)


def test_corrupted_images_stay_in_range_and_signals_keep_shape() -> None:
    x = load_dataset("digits-noise-5:test").x
    assert x.min() >= 0 and x.max() <= 1
    s = load_dataset("mnist1d-shift-3:test")
    assert s.x.shape == load_dataset("mnist1d:test").x.shape
    assert len(list_specs("digits")) == 3 + 3 * 5


def test_concurrent_first_loads_give_the_same_data() -> None:
    """mnist1d's generator uses numpy's global RNG; two threads generating at once must not corrupt each other."""
    import threading

    from calibviz import data

    data._raw_once.cache_clear()
    reference = data._raw("mnist1d")[0].copy()
    data._raw_once.cache_clear()
    results: list[np.ndarray] = []

    def load() -> None:
        results.append(data._raw("mnist1d")[0])

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for r in results:
        np.testing.assert_array_equal(r, reference)

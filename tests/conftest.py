"""Shared fixtures: an isolated prediction cache, the real fixtures folder, small checkpoints."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real"
ZOO = REPO / "checkpoints"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session gets its own empty prediction cache, so no test reads a stale one."""
    os.environ["CALIBVIZ_CACHE"] = str(tmp_path_factory.mktemp("calibviz-cache"))
    os.environ["CALIBVIZ_WARM_UMAP"] = "0"  # no 30 s numba compile in every test process
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def real_fixtures() -> Path:
    """The folder of real published predictions; skip when this checkout has no ../shared next to it."""
    if not REAL.is_dir():
        pytest.skip(f"real fixtures not found at ../shared/fixtures/real (looked in {REAL.parent.parent})")
    return REAL


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A freshly initialised (seeded) cnn_small checkpoint for digits: real architecture, real inference."""
    from calibviz.formats import save_checkpoint
    from calibviz.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn_small")
    card = {"name": "digits/tiny", "title": "tiny", "arch": "cnn_small", "arch_kwargs": {},
            "num_classes": 10, "class_names": [str(i) for i in range(10)], "dataset": "digits"}
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, card)
    return path


def zoo_checkpoints() -> list[Path]:
    """Every shipped checkpoint."""
    return sorted(ZOO.glob("*/*.safetensors"))


APPTEST_TIMEOUT = 300


def plotly_figures(at: object) -> list[dict]:
    """The plotly figures an AppTest run produced, read from each chart element's proto `spec` JSON."""
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def plotly_array(v: object) -> np.ndarray:
    """A data array of a figure's JSON as float numpy: a plain (nested) list with None as NaN, or the typed array
    {dtype, bdata, shape} plotly writes for numpy data, reshaped by its shape."""
    if isinstance(v, dict):
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(x) for x in str(shape).split(",")] if isinstance(shape, str) else shape)
        return a.astype(float)
    return np.array([np.nan if x is None else x for x in np.ravel(v)], dtype=float).reshape(np.shape(v))


def plotly_list(v: object) -> list:
    """The same array as a Python list that keeps None (an empty bin) as None, for exact comparisons."""
    return [None if x != x else x for x in plotly_array(v).ravel().tolist()]


def open_page(page: str | None = None) -> object:
    """A fresh AppTest of app.py (caches cleared), switched to `page` (e.g. "views/reliability.py")."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=APPTEST_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def build_example_config(out: Path, images_per_class: int = 8, steps: int = 30) -> Path:
    """The shipped example config (examples/example.toml) beside a small build of the files it names: fewer images
    and training steps than `python examples/make_example.py`. examples/make_example.py is loaded as the script it
    is (its folder on sys.path), not as `examples.make_example`: a test dependency installs a top-level `examples`."""
    import importlib.util
    import shutil
    import sys

    examples = REPO / "examples"
    sys.path.insert(0, str(examples))
    try:
        spec = importlib.util.spec_from_file_location("make_example", examples / "make_example.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(examples))
    module.make_example(out, module.ExampleParams(images_per_class=images_per_class, steps=steps),
                        log=lambda *a, **k: None)
    for name in ("example.toml", "tiny_resnet.py"):
        shutil.copy(examples / name, out / name)
    return out / "example.toml"

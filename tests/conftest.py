"""Shared fixtures: an isolated prediction cache, the real fixtures folder, small checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real"
ZOO = REPO / "checkpoints"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session gets its own empty prediction cache, so no test reads a stale one."""
    os.environ["CALIBVIZ_CACHE"] = str(tmp_path_factory.mktemp("calibviz-cache"))
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

"""The worked examples of docs/architecture.md run against the code as it is: the page under AppTest, the metric
through the bootstrap, the calibrator through fit/transform/JSON, the recipe through the training hooks."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from calibviz import calibrators, metrics, training, zoo
from tests.conftest import REPO, plotly_figures

DOC = REPO / "docs" / "architecture.md"


def _block(first_line: str) -> str:
    """The fenced python block of the doc whose first line is `first_line`."""
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        if code.splitlines()[0].strip() == first_line:
            return code
    raise AssertionError(f"docs/architecture.md has no python block starting with {first_line!r}")


def _fragment(code: str, start: str) -> str:
    """The indented part of `code` from the line starting with `start`, dedented: an entry of a registry literal."""
    lines = code.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith(start))
    return textwrap.dedent("\n".join(lines[i:]))


def test_the_page_example_runs_and_draws_one_diagram_per_model(tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    page = tmp_path / "confidence.py"
    page.write_text(_block("# views/confidence.py"))
    at = AppTest.from_file(str(page), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    models = at.sidebar.multiselect(key=f"models_{at.sidebar.radio(key='dataset').value}").value
    assert models and len(plotly_figures(at)) == len(models)
    at.slider(key="confidence_bins").set_value(5).run()
    assert not at.exception, at.exception
    assert all(len(f["data"][0]["x"]) <= 5 for f in plotly_figures(at))


def test_the_metric_example_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    ns = dict(vars(metrics))
    exec(_block("# calibviz/metrics.py"), ns)
    entry = ns["METRICS"][-1]
    assert isinstance(entry, metrics.MetricInfo) and entry.key == "confidence_gap"
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, entry))
    rng = np.random.default_rng(0)
    probs, labels = rng.dirichlet(np.ones(5), size=2000), rng.integers(0, 5, 2000)
    ms = metrics.calibration_metrics(probs, labels, bootstrap=metrics.Bootstrap(n_boot=50))
    want = probs.max(1).mean() - (probs.argmax(1) == labels).mean()  # by hand
    assert ms.values["confidence_gap"] == pytest.approx(want, abs=1e-9)
    lo, hi = ms.intervals["confidence_gap"]
    assert lo < want < hi


def test_the_calibrator_example_fits_and_round_trips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = _block("# calibviz/calibrators.py")
    ns = dict(vars(calibrators))
    exec(code.split("# in the tuple REGISTRY")[0], ns)
    info = eval(_fragment(code, "CalibratorInfo("), ns)[0]
    assert isinstance(info, calibrators.CalibratorInfo) and info.key == "bias"
    monkeypatch.setitem(calibrators.REGISTRY, info.key, info)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 3000)
    logits = rng.normal(size=(3000, 4)) + 2.0 * np.eye(4)[labels] + np.array([1.5, 0.0, 0.0, -1.5])  # biased
    cal = calibrators.make_calibrator("bias").fit(logits, labels)
    assert cal.label == "Bias scaling"
    before = metrics.nll(calibrators.softmax_temperature(logits, 1.0), labels)
    assert metrics.nll(cal.transform(logits), labels) < before
    path = tmp_path / "bias.json"
    calibrators.save_calibrator(cal, path)
    np.testing.assert_array_equal(calibrators.load_calibrator(path).transform(logits), cal.transform(logits))


def test_the_recipe_example_resolves_its_hooks_and_teacher() -> None:
    code = _block("# calibviz/zoo.py, in RECIPES")
    recipe = eval(_fragment(code, "Recipe("), dict(vars(zoo)))[0]
    assert isinstance(recipe, training.Recipe) and recipe.kd_teacher in zoo.recipe_order()
    assert recipe.name not in zoo.recipe_order()  # an example of a new recipe, not a shipped one
    loss, transform, extras = training.resolve_hooks(recipe)
    assert loss is training.LOSSES["kd"] and transform is None and extras == []
    z = torch.randn(8, 10)
    assert torch.isfinite(loss(training.LossInputs(z, z.flip(0), training.Batch(z, torch.zeros(8).long()), recipe)))

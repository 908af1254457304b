"""The user's own models in the dashboard: the shipped example config (a TinyResNet by architecture + weights and the
same network as a torch.export program, on an ImageFolder of PNGs) appears in the sidebar beside the zoo, and every
page runs on it under AppTest through the same code paths as the zoo's models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibviz.data import DataSpec
from tests.conftest import build_example_config, open_page, plotly_array, plotly_figures

DATASET = "digits_png"


@pytest.fixture(scope="module")
def example_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example config beside a small build of the files it names (fewer images and steps than the real one)."""
    return build_example_config(tmp_path_factory.mktemp("example"))


@pytest.fixture
def configured(example_config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALIBVIZ_CONFIG", str(example_config))
    return example_config


def _open_on_example(page: str) -> object:
    at = open_page(page)
    assert DATASET in at.sidebar.radio(key="dataset").options, at.sidebar.radio(key="dataset").options
    at.sidebar.radio(key="dataset").set_value(DATASET).run()
    assert not at.exception, at.exception
    return at


def test_the_configured_models_sit_beside_the_zoo(configured: Path) -> None:
    at = _open_on_example("views/overview.py")
    models = at.sidebar.multiselect(key=f"models_{DATASET}")
    assert set(models.options) == {"TinyResNet (example, weights)", "TinyResNet (example, torch.export)"}
    assert "digits" in at.sidebar.radio(key="dataset").options  # the zoo is still there
    specs = at.sidebar.selectbox(key=f"spec_{DATASET}").options
    assert specs[:4] == ["test", "val", "train", "all"] and "test — jpeg, severity 5" in specs, specs


def test_overview_measures_both_forms_of_the_model_alike(configured: Path) -> None:
    at = _open_on_example("views/overview.py")
    at.sidebar.multiselect(key=f"models_{DATASET}").set_value(["config/tiny_resnet", "config/tiny_resnet_pt2"]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.table[0].value
    acc = table["accuracy"].astype(float).to_numpy()
    assert len(acc) == 2 and acc[0] == pytest.approx(acc[1], abs=1e-9)  # the weights and the .pt2 are one network


@pytest.mark.parametrize(("page", "charts"), [("views/reliability.py", 1), ("views/recalibration.py", 3),
                                              ("views/logits.py", 1), ("views/features.py", 3)])
def test_every_analysis_page_runs_on_the_users_model(configured: Path, page: str, charts: int) -> None:
    at = _open_on_example(page)
    assert not at.error, [e.value for e in at.error]
    assert len(plotly_figures(at)) >= charts


def test_the_features_page_shows_the_users_features(configured: Path) -> None:
    at = _open_on_example("views/features.py")
    assert not at.error, [e.value for e in at.error]
    assert {"Template projection (Müller et al. 2019)", "Class separation R² (Kornblith et al. 2021)"} <= {
        h.value for h in at.subheader}
    n_test = len(list((configured.parent / DATASET / "test").rglob("*.png")))
    scatter = plotly_figures(at)[0]
    assert sum(len(plotly_array(t["x"])) for t in scatter["data"]) == n_test  # one point per test image


def test_soft_labels_say_they_need_built_in_data(configured: Path) -> None:
    at = _open_on_example("views/soft_labels.py")
    assert any("digits or mnist1d" in w.value for w in at.warning), [w.value for w in at.warning]


def _output_y(fig: dict) -> np.ndarray:
    """Per-bin accuracy of a reliability diagram (its 'Output' trace)."""
    return plotly_array(next(t for t in fig["data"] if t.get("name", "").startswith("Output"))["y"])


def test_a_shifted_split_of_the_users_folder(configured: Path) -> None:
    at = _open_on_example("views/reliability.py")
    clean = _output_y(plotly_figures(at)[0])
    shifted = DataSpec.from_path("folder", str(configured.parent / DATASET), "test", "noise", 5)
    at.sidebar.selectbox(key=f"spec_{DATASET}").set_value(str(shifted)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "noise" in at.caption[0].value or any("noise" in c.value for c in at.caption)
    assert not np.array_equal(_output_y(plotly_figures(at)[0]), clean, equal_nan=True)


def test_selected_points_of_the_users_folder_show_its_images(example_config: Path) -> None:
    from PIL import Image

    from calibviz.backend import predict_entry
    from calibviz.config import load_config
    from calibviz.features import selected_inputs
    from calibviz.plots.features import gallery_figure

    entry = next(e for e in load_config(example_config) if e.name == "config/tiny_resnet")
    spec = DataSpec.of(entry.data).with_split("test")
    preds = predict_entry(entry, spec, device="cpu")
    got = selected_inputs(preds, spec, preds.sample_id[:3], k=3)
    assert got is not None and got.x.shape == (3, 3, 16, 16) and len(got.captions) == 3
    relpaths = dict(zip(preds.sample_id.tolist(), preds.meta["relpaths"], strict=True))
    for x, cap in zip(got.x, got.captions, strict=True):  # each shown image is a PNG of the folder, as read
        label = cap.split("→")[0]
        match = [sid for sid, rel in relpaths.items() if f"/{label}/" in rel and np.allclose(
            np.asarray(Image.open(example_config.parent / DATASET / rel).convert("RGB")).transpose(2, 0, 1) / 255.0,
            x, atol=1e-6)]
        assert match, cap
    fig = gallery_figure(got.x, got.captions).to_plotly_json()
    assert [t["type"] for t in fig["data"]] == ["image"] * 3

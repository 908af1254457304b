"""The user's own model and data on the command line: a residual CNN written in a test file (never registered in
calibviz), saved as a DataParallel-wrapped .pt state dict, as safetensors, as TorchScript and as a .pt2 program, run
over an ImageFolder of PNGs by `extract`, `report` and `recalibrate`; bad inputs exit 2 with a line naming them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from calibviz.cli import main
from calibviz.formats import load_bundle
from tests.user_models import train_on_digits

ARCH_FILE = Path(__file__).resolve().parent / "user_models.py"
KWARGS = '{"num_classes": 10, "width": 8}'
PER_CLASS = 12


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A trained TinyResNet saved four ways, and an ImageFolder of PNGs (train/ and test/ splits, class folders)."""
    root = tmp_path_factory.mktemp("user")
    model, _, x, y = train_on_digits(steps=40)
    imgs = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (N, 16, 16, 3), as PNG pixels
    labels = y.numpy()
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": wrapped, "epoch": 3}, root / "ddp.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "weights.safetensors"))
    torch.jit.script(model).save(str(root / "scripted.pt"))
    torch.export.save(torch.export.export(model, (x[:4],)), str(root / "exported.pt2"))
    data = root / "pngs"
    for split, offset in (("train", 0), ("test", PER_CLASS)):
        for c in range(10):
            (data / split / f"digit_{c}").mkdir(parents=True)
            for i in np.flatnonzero(labels == c)[offset:offset + PER_CLASS]:
                Image.fromarray(imgs[i]).save(data / split / f"digit_{c}" / f"{i:04d}.png")
    return {"root": root, "model": model, "data": data}


def _direct(model: nn.Module, data: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The model called directly on the split's PNGs in ImageFolder order: (logits, features, class names)."""
    classes = sorted(p.name for p in (data / split).iterdir())
    files = [f for c in classes for f in sorted((data / split / c).glob("*.png"))]
    x = torch.stack([torch.as_tensor(np.asarray(Image.open(f).convert("RGB")), dtype=torch.float32).permute(2, 0, 1)
                     for f in files]) / 255.0
    with torch.no_grad():
        return model(x).numpy(), model.embed(x).numpy(), classes


def _extract(tmp_path: Path, *model_args: str, data: str, name: str = "b.npz") -> Path:
    out = tmp_path / name
    assert main(["extract", *model_args, "--data", data, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("model_args", [
    ("--arch", f"{ARCH_FILE}:TinyResNet", "--arch-kwargs", KWARGS, "--weights", "{root}/ddp.pt"),
    ("--arch", "tests.user_models:TinyResNet", "--arch-kwargs", KWARGS, "--weights", "{root}/weights.safetensors",
     "--head", "fc"),
    ("--program", "{root}/exported.pt2"),
], ids=["file-arch-ddp-pt", "import-arch-safetensors", "export-pt2"])
def test_extract_gives_the_models_logits_features_and_head(user: dict, tmp_path: Path, model_args: tuple) -> None:
    args = [a.replace("{root}", str(user["root"])) for a in model_args]
    preds = load_bundle(_extract(tmp_path, *args, data=f"folder:{user['data']}:test"))
    logits, feats, classes = _direct(user["model"], user["data"], "test")
    assert preds.n == 10 * PER_CLASS and preds.class_names == classes
    np.testing.assert_allclose(preds.logits, logits, atol=1e-5)
    np.testing.assert_allclose(preds.features, feats, atol=1e-5)
    np.testing.assert_allclose(preds.head_weight, user["model"].fc.weight.detach().numpy(), atol=0)
    np.testing.assert_array_equal(preds.labels, np.repeat(np.arange(10), PER_CLASS))
    assert preds.meta["relpaths"][0].startswith("test/digit_0/") and preds.split_names[preds.split[0]] == "test"


def test_a_torchscript_program_gives_logits_and_says_it_has_no_features(user: dict, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    preds = load_bundle(_extract(tmp_path, "--program", str(user["root"] / "scripted.pt"),
                                 data=f"folder:{user['data']}:test"))
    np.testing.assert_allclose(preds.logits, _direct(user["model"], user["data"], "test")[0], atol=1e-5)
    assert preds.features is None and "without features" in capsys.readouterr().out


def test_report_and_recalibrate_run_the_users_model(user: dict, capsys: pytest.CaptureFixture) -> None:
    model = ["--arch", "tests.user_models:TinyResNet", "--arch-kwargs", KWARGS,
             "--weights", str(user["root"] / "weights.safetensors"), "--data", f"folder:{user['data']}"]
    capsys.readouterr()
    assert main(["report", *model, "--split", "test", "--boot", "0", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    logits = _direct(user["model"], user["data"], "test")[0]
    want = float((logits.argmax(1) == np.repeat(np.arange(10), PER_CLASS)).mean())
    assert rep["accuracy"] == pytest.approx(want) and rep["n"] == 10 * PER_CLASS
    for method in ("ts", "mts"):  # MTS runs the model on masked inputs of the fit split
        assert main(["recalibrate", *model, "--method", method, "--fit-split", "train", "--eval-split", "test",
                     "--boot", "0", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["parameters"]["temperature"] > 0


def test_the_cache_key_follows_the_preprocessing(user: dict, tmp_path: Path) -> None:
    args = ["--arch", "tests.user_models:TinyResNet", "--arch-kwargs", KWARGS,
            "--weights", str(user["root"] / "weights.safetensors")]
    plain = load_bundle(_extract(tmp_path, *args, data=f"folder:{user['data']}:test", name="a.npz"))
    out = tmp_path / "b.npz"
    assert main(["extract", *args, "--data", f"folder:{user['data']}:test", "--transform",
                 '{"mean": [0.5], "std": [0.25]}', "--out", str(out)]) == 0
    normed = load_bundle(out)
    assert not np.allclose(plain.logits, normed.logits)
    assert json.loads(normed.meta["preprocess"]) != json.loads(plain.meta["preprocess"])


@pytest.mark.parametrize(("extra", "message"), [
    (["--arch", "tests.user_models:TinyResNet"], "--weights"),
    (["--arch", "tests.no_such_module:Net", "--weights", "{root}/weights.safetensors"], "no_such_module"),
    (["--arch", "tests.user_models:TinyResNet", "--arch-kwargs", '{"num_classes": 7}',
      "--weights", "{root}/weights.safetensors"], "fc.weight"),
    (["--arch", "tests.user_models:TinyResNet", "--arch-kwargs", KWARGS, "--weights", "{root}/weights.safetensors",
      "--head", "classifier"], "classifier"),
    (["--program", "{root}/exported.pt2", "--transform", '{"rezise": 16}'], "rezise"),
    (["--program", "{root}/exported.pt2", "--weights", "{root}/weights.safetensors"], "--program"),
])
def test_bad_inputs_exit_2_with_a_line_that_names_them(user: dict, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       extra: list[str], message: str) -> None:
    args = [a.replace("{root}", str(user["root"])) for a in extra]
    rc = main(["extract", *args, "--data", f"folder:{user['data']}:test", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("calibviz: error:") and message in err, err


def test_an_empty_image_folder_is_named(user: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    rc = main(["extract", "--program", str(user["root"] / "exported.pt2"), "--data", f"folder:{tmp_path / 'empty'}",
               "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "empty" in err, err

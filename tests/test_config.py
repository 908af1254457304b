"""The config file of the user's own models (`calibviz/config.py`), `calibviz serve`, `make run CONFIG=...` and the
shipped example (examples/): every field parses, relative paths resolve against the file, every mistake is one
ConfigError naming the file, the model and the field, and nothing of the user's is imported while loading."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibviz import cli
from calibviz.config import (
    CONFIG_ENV,
    ConfigError,
    check_config,
    config_path_from_env,
    load_config,
    load_config_from_env,
)
from calibviz.data import DataSpec
from calibviz.formats import save_bundle
from calibviz.model_sources import ModelSource
from calibviz.predictions import Predictions

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def _bundle(path: Path, dataset: str = "pets", labels: np.ndarray | None = None) -> Path:
    """A small valid predictions bundle whose meta names its dataset."""
    rng = np.random.default_rng(0)
    y = np.arange(20) % 4 if labels is None else labels
    save_bundle(Predictions(labels=y, logits=rng.normal(size=(20, 4)).astype(np.float32),
                            meta={"dataset": dataset, "name": path.stem}), path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with what a config names: model code that must not be imported, weights, a program, bundles, an
    image folder and a tensor file (only their existence is checked at load time)."""
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "models.py").write_text("raise RuntimeError('the config loader imported user code')\n")
    (d / "w.safetensors").write_bytes(b"weights")
    (d / "w.pt").write_bytes(b"weights")
    (d / "prog.pt2").write_bytes(b"program")
    (d / "pngs" / "cat").mkdir(parents=True)
    np.savez(d / "t.npz", x=np.zeros((4, 3, 2, 2), np.float32), y=np.arange(4) % 2)
    _bundle(d / "preds.npz")
    _bundle(d / "preds.safetensors", dataset="cifar10")
    return d


def _write(folder: Path, text: str, name: str = "calibviz.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


FULL = """
[[models]]
name = "resnet"
title = "My ResNet"
arch = "models.py:make_resnet"
arch_kwargs = { num_classes = 4, widths = [8, 16], deep = { blocks = 2 } }
weights = "w.safetensors"
head = "classifier.1"
data = "folder:pngs"
transform = { resize = 32, center_crop = 28, mean = [0.5, 0.5, 0.5], std = 0.25 }

[[models]]
name = "exported"
program = "prog.pt2"
head = "fc"
data = "tensors:t.npz"

[[models]]
name = "pt_weights"
arch = "torchvision.models:resnet18"
weights = "w.pt"
data = "folder:{abs_pngs}"
transform = {}

[[models]]
name = "outputs"
title = "Outputs only"
bundle = "preds.npz"

[[models]]
name = "outputs.st"
bundle = "sub/../preds.safetensors"
"""


def test_every_field_parses_and_relative_paths_resolve_against_the_file(files: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files.parent)  # relative to the config file, not to where calibviz was started
    path = _write(files, FULL.replace("{abs_pngs}", str(files / "pngs")))
    module, program, dotted, bundle, st_bundle = load_config(path)

    assert module.name == "config/resnet" and module.title == "My ResNet"
    assert (module.kind, module.origin, module.recipe) == ("source", "config", "config")
    assert module.path == files / "w.safetensors" and module.path.is_absolute()
    assert module.data == f"folder:{files / 'pngs'}" and module.dataset == "pngs"
    assert DataSpec.of(module.data).split == "all" and DataSpec.of(module.data).path == str(files / "pngs")
    assert module.source == ModelSource.module(files / "w.safetensors", f"{files / 'models.py'}:make_resnet",
                                               {"num_classes": 4, "widths": [8, 16], "deep": {"blocks": 2}},
                                               head="classifier.1")
    assert module.arch == "models.py:make_resnet"  # as written, for the Overview's table; the source has the path
    assert module.preprocess == '{"center_crop":28,"mean":[0.5,0.5,0.5],"resize":32,"std":[0.25]}'

    assert (program.name, program.title, program.kind) == ("config/exported", "exported", "source")
    assert program.source == ModelSource.program(files / "prog.pt2", head="fc") and program.arch == "prog.pt2"
    assert program.data == f"tensors:{files / 't.npz'}" and program.dataset == "t" and program.preprocess == ""

    assert dotted.source is not None and dotted.source.arch == "torchvision.models:resnet18"  # left to the import
    assert dotted.source.kwargs() == {} and dotted.path == files / "w.pt" and dotted.preprocess == ""

    assert (bundle.name, bundle.title, bundle.kind, bundle.origin) == ("config/outputs", "Outputs only", "bundle",
                                                                       "config")
    assert bundle.path == files / "preds.npz" and bundle.dataset == "pets" and bundle.source is None
    assert not bundle.runnable and module.runnable and program.runnable
    assert st_bundle.path == files / "preds.safetensors" and st_bundle.dataset == "cifar10"
    assert "models.py" not in " ".join(sys.modules)  # the user's code was not imported (it raises if it is)
    assert check_config(path) == load_config(path)


def test_the_environment_variable_names_the_config(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(files, '[[models]]\nname = "b"\nbundle = "preds.npz"\n')
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert load_config_from_env() == () and config_path_from_env() is None
    monkeypatch.setenv(CONFIG_ENV, "")
    assert load_config_from_env() == ()
    monkeypatch.chdir(files)
    monkeypatch.setenv(CONFIG_ENV, path.name)
    assert config_path_from_env() == path
    assert [e.name for e in load_config_from_env()] == ["config/b"]


MODULE = 'name = "m"\narch = "models.py:Net"\nweights = "w.safetensors"\ndata = "folder:pngs"\n'


@pytest.mark.parametrize(("body", "expected"), [
    (f"[[models]]\n{MODULE}colour = 'red'\n", ["#1 'm'", "unknown keys ['colour']", "known:"]),
    (f"title = 'x'\n[[models]]\n{MODULE}", ["unknown top-level keys ['title']"]),
    ("", ["expected one or more [[models]] tables"]),
    ("models = 3\n", ["expected one or more [[models]] tables"]),
    ("[[models]]\nbundle = 'preds.npz'\n", ["#1:", "field 'name'", "is missing"]),
    ("[[models]]\nname = 3\nbundle = 'preds.npz'\n", ["field 'name'", "non-empty string"]),
    ("[[models]]\nname = 'a b'\nbundle = 'preds.npz'\n", ["field 'name'", "only letters, digits"]),
    (f"[[models]]\n{MODULE}[[models]]\n{MODULE}", ["#2 'm'", "field 'name'", "already the name of [[models]] #1"]),
    ("[[models]]\nname = 'm'\ndata = 'folder:pngs'\n", ["#1 'm'", "exactly one of arch + weights", "found none"]),
    (f"[[models]]\n{MODULE}program = 'prog.pt2'\n", ["exactly one of", "found ['arch', 'weights', 'program']"]),
    ("[[models]]\nname = 'm'\nprogram = 'prog.pt2'\nbundle = 'preds.npz'\n", ["found ['program', 'bundle']"]),
    ("[[models]]\nname = 'm'\narch = 'models.py:Net'\ndata = 'folder:pngs'\n", ["field 'weights'", "is missing"]),
    ("[[models]]\nname = 'm'\nweights = 'w.pt'\ndata = 'folder:pngs'\n", ["field 'arch'", "is missing"]),
    ("[[models]]\nname = 'm'\nprogram = 'prog.pt2'\n", ["#1 'm'", "field 'data'", "is missing"]),
    (MODULE.replace("w.safetensors", "gone.safetensors").join(["[[models]]\n", ""]),
     ["field 'weights'", "no such weights file", "gone.safetensors"]),
    (MODULE.replace("w.safetensors", "w.txt").join(["[[models]]\n", ""]), ["field 'weights'", "must end in one of"]),
    (MODULE.replace("models.py", "nope.py").join(["[[models]]\n", ""]), ["field 'arch'", "no such Python file"]),
    (MODULE.replace("models.py:Net", "models.py").join(["[[models]]\n", ""]),
     ["field 'arch'", "PKG.MODULE:CALLABLE"]),
    ("[[models]]\nname = 'm'\nprogram = 'gone.pt2'\ndata = 'folder:pngs'\n", ["field 'program'", "no such program"]),
    ("[[models]]\nname = 'm'\nbundle = 'gone.npz'\n", ["field 'bundle'", "no such bundle file"]),
    ("[[models]]\nname = 'm'\nbundle = 'w.pt'\n", ["field 'bundle'", "must end in one of"]),
    ("[[models]]\nname = 'm'\nbundle = 'w.safetensors'\n", ["field 'bundle'", "w.safetensors"]),
    (MODULE.replace("folder:pngs", "folder:nowhere").join(["[[models]]\n", ""]),
     ["field 'data'", "no such image folder"]),
    (MODULE.replace("folder:pngs", "tensors:gone.npz").join(["[[models]]\n", ""]),
     ["field 'data'", "no such tensor file"]),
    (MODULE.replace("folder:pngs", "tensors:w.pt").join(["[[models]]\n", ""]), ["field 'data'", ".npz or"]),
    (MODULE.replace("folder:pngs", "digits:test").join(["[[models]]\n", ""]),
     ["field 'data'", "is not folder:DIR or tensors:FILE"]),
    (MODULE.replace("folder:pngs", "pngs").join(["[[models]]\n", ""]), ["field 'data'", "not folder:DIR"]),
    (MODULE.replace("folder:pngs", "folder:pngs:test").join(["[[models]]\n", ""]),
     ["field 'data'", "names a split or a corruption"]),
    (MODULE.replace("folder:pngs", "folder:pngs:test:noise-3").join(["[[models]]\n", ""]),
     ["field 'data'", "names a split or a corruption"]),
    (f"[[models]]\n{MODULE}transform = {{ size = 3 }}\n", ["field 'transform'", "unknown keys ['size']"]),
    (f"[[models]]\n{MODULE}transform = {{ resize = -1 }}\n", ["field 'transform'", "positive integer"]),
    (f"[[models]]\n{MODULE}transform = 'resize'\n", ["field 'transform'", "expected a table"]),
    (f"[[models]]\n{MODULE}arch_kwargs = 'num_classes=3'\n", ["field 'arch_kwargs'", "expected a table"]),
    (f"[[models]]\n{MODULE}arch_kwargs = {{ when = 1979-05-27 }}\n", ["field 'arch_kwargs'", "only numbers"]),
    ("[[models]]\nname = 'm'\nprogram = 'prog.pt2'\narch_kwargs = { a = 1 }\ndata = 'folder:pngs'\n",
     ["field 'arch_kwargs'", "only an architecture"]),
    ("[[models]]\nname = 'm'\nbundle = 'preds.npz'\ndata = 'folder:pngs'\n",
     ["field 'data'", "carries its own rows"]),
    ("[[models]]\nname = 'm'\nbundle = 'preds.npz'\ntransform = { resize = 3 }\n", ["field 'transform'"]),
    ("[[models]\nname = 'm'\n", ["not valid TOML"]),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_every_mistake_is_one_error_naming_the_file_the_model_and_the_field(files: Path, body: str,
                                                                            expected: list[str]) -> None:
    path = _write(files, body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:") and isinstance(err.value, ValueError)
    for part in expected:
        assert part in message, message


def test_a_missing_config_file_and_a_bundle_that_reads_but_does_not_validate(files: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(files / "absent.toml")
    (files / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"#1 'j'.*field 'bundle'.*junk.npz.*not a readable \.npz"):
        load_config(_write(files, "[[models]]\nname = 'j'\nbundle = 'junk.npz'\n"))
    _bundle(files / "one_class.npz", labels=np.zeros(20, dtype=np.int64))
    path = _write(files, "[[models]]\nname = 'o'\nbundle = 'one_class.npz'\n")
    assert [e.dataset for e in load_config(path)] == ["pets"]  # the meta alone is read at load time
    with pytest.raises(ConfigError, match=r"config/o.*field 'bundle'.*one class"):
        check_config(path)  # what `serve` runs: the arrays are validated too


def test_serve_builds_the_streamlit_command_and_passes_the_config(files: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    command = cli.serve_command(8600)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == REPO / "app.py" and Path(command[4]).is_file()
    assert command[5:] == ["--server.address", "127.0.0.1", "--server.port", "8600"]
    assert cli.serve_environment(None, {"A": "1"}) == {"A": "1"}

    calls: list[tuple[list[str], dict[str, str]]] = []

    class FakeStreamlit:
        """Records the command and environment `serve` would start Streamlit with."""

        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            calls.append((cmd, env))

        def __enter__(self) -> FakeStreamlit:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeStreamlit)
    path = _write(files, "[[models]]\nname = 'b'\nbundle = 'preds.npz'\n")
    monkeypatch.chdir(files)
    assert cli.main(["serve", "--config", path.name, "--port", "8600"]) == 0
    (cmd, env), = calls
    assert cmd == command and env[CONFIG_ENV] == str(path)
    assert "config/b" in capsys.readouterr().out

    monkeypatch.setenv(CONFIG_ENV, str(path))  # without --config, $CALIBVIZ_CONFIG is the default
    assert cli.main(["serve"]) == 0 and calls[-1][1][CONFIG_ENV] == str(path)
    monkeypatch.delenv(CONFIG_ENV)
    assert cli.main(["serve"]) == 0 and CONFIG_ENV not in calls[-1][1]  # the zoo only


def test_serve_with_a_bad_config_exits_2_with_one_line_and_starts_nothing(files: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("streamlit was started"))
    path = _write(files, f"[[models]]\n{MODULE}colour = 'red'\n")
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"calibviz: error: {path}: [[models]] #1 'm'")
    assert "unknown keys ['colour']" in err
    assert cli.main(["serve", "--config", str(files / "absent.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    assert cli.main(["serve", "--port", "0"]) == 2
    assert "not a TCP port" in capsys.readouterr().err


def test_make_run_takes_an_optional_config() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def dry(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("CONFIG", "PORT", "MAKEFLAGS")}
        done = subprocess.run(["make", "-n", "run", *args], cwd=REPO, env=env, capture_output=True, text=True,
                              check=True)
        return done.stdout

    assert "-m calibviz serve --config examples/example.toml --port 8501" in dry("CONFIG=examples/example.toml")
    plain = dry()
    assert "-m streamlit run app.py --server.address 127.0.0.1 --server.port 8501" in plain
    assert "calibviz serve" not in plain


def test_the_example_builds_loads_and_both_models_give_the_same_logits(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import torch

    from calibviz.backend import predict_entry

    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/make_example.py` has it (netcal installs a
    example = importlib.import_module("make_example")  # top-level `examples` package, so not examples.make_example)
    ExampleParams, load_weights, make_example, read_split = (
        example.ExampleParams, example.load_weights, example.make_example, example.read_split)
    params = ExampleParams(images_per_class=8, steps=3)
    made = make_example(tmp_path, params, log=lambda _: None)
    assert [p.name for p in made] == ["digits_png", "tiny_resnet.safetensors", "tiny_resnet.pt2"]
    assert sorted(p.name for p in (tmp_path / "digits_png").iterdir()) == ["test", "train", "val"]
    assert len(list((tmp_path / "digits_png").rglob("*.png"))) == 80
    assert make_example(tmp_path, params, log=lambda _: None) == []  # idempotent: what exists is kept

    for name in ("example.toml", "tiny_resnet.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    module, program = check_config(tmp_path / "example.toml")
    assert module.dataset == program.dataset == "digits_png" and module.data == f"folder:{tmp_path / 'digits_png'}"
    assert module.source is not None and module.source.arch == f"{tmp_path / 'tiny_resnet.py'}:TinyResNet"

    spec = DataSpec.of(module.data).with_split("test")
    by_module, by_program = predict_entry(module, spec), predict_entry(program, spec)
    x, y = read_split(tmp_path / "digits_png", "test")
    model = load_weights(tmp_path / "tiny_resnet.safetensors", params)
    with torch.no_grad():
        direct, feats = model(x).numpy(), model.embed(x).numpy()
    np.testing.assert_array_equal(by_module.labels, y.numpy())
    np.testing.assert_allclose(by_module.logits, direct, atol=1e-5)
    np.testing.assert_allclose(by_program.logits, direct, atol=1e-5)
    np.testing.assert_allclose(by_module.features, feats, atol=1e-5)
    assert by_module.class_names == [str(d) for d in range(10)]

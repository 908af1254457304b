"""The user's own classifiers: every way a training script saves one loads, runs and matches the model itself."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from calibviz.model_sources import (
    ClassifierRunner,
    ModelSource,
    ModelSourceError,
    RunnerOptions,
    build_user_model,
    canonical_kwargs,
    head_module,
    load_program,
    load_source,
    load_state_dict_file,
)
from tests.user_models import DictOutputNet, MlpClassifier, TinyResNet, TinyResNetWithFeatures, train_on_digits

USER_MODELS = Path(__file__).resolve().parent / "user_models.py"
ARCH = "tests.user_models:TinyResNet"
TOL = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TinyResNet trained for a few SGD steps on digits, saved every way users do, and a batch to run."""
    model, opt, x, y = train_on_digits(steps=60)
    out = tmp_path_factory.mktemp("user_models")
    wrapped = nn.DataParallel(model)  # on CPU it only adds the `module.` prefix
    torch.save({"epoch": 3, "model_state_dict": wrapped.state_dict(), "optimizer": opt.state_dict()},
               out / "wrapped.pt")
    torch.save(model.state_dict(), out / "bare.pth")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "weights.safetensors"))
    torch.jit.script(model).save(str(out / "scripted.pt"))
    batch = x[:64]
    torch.export.save(torch.export.export(model, (batch,)), str(out / "exported.pt2"))
    return {"model": model, "x": batch, "y": y[:64], "dir": out, "all_x": x, "all_y": y}


def _sources(d: Path) -> dict[str, ModelSource]:
    """One source per saved format (and per way of naming the architecture)."""
    return {
        "wrapped_pt": ModelSource.module(d / "wrapped.pt", ARCH, {"num_classes": 10, "width": 8}),
        "bare_pth_file_arch": ModelSource.module(d / "bare.pth", f"{USER_MODELS}:TinyResNet"),
        "safetensors_factory": ModelSource.module(d / "weights.safetensors", "tests.user_models:make_tiny_resnet",
                                                  '{"width": 8}'),
        "torchscript": ModelSource.program(d / "scripted.pt"),
        "export_pt2": ModelSource.program(d / "exported.pt2"),
    }


def test_the_model_is_trained(trained: dict) -> None:
    """A few SGD steps are enough to be well above chance, so the logits are a real model's."""
    acc = (trained["model"](trained["all_x"]).argmax(1) == trained["all_y"]).float().mean().item()
    assert acc > 0.5


@pytest.mark.parametrize("fmt", ["wrapped_pt", "bare_pth_file_arch", "safetensors_factory", "torchscript",
                                 "export_pt2"])
def test_every_format_gives_the_models_logits(trained: dict, fmt: str) -> None:
    """Logits from every saved format equal calling the model directly, within 1e-5."""
    source = _sources(trained["dir"])[fmt]
    runner = ClassifierRunner.from_source(source, num_classes=10)
    logits, features = runner(trained["x"])
    with torch.no_grad():
        expected = trained["model"](trained["x"])
        embed = trained["model"].embed(trained["x"])
    assert logits.dtype == torch.float32 and logits.shape == (64, 10)
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)
    if fmt != "torchscript":  # the forward hook on fc (eager, or the unflattened .pt2) captures its input
        assert runner.head_name == "fc"
        assert features is not None and features.dtype == torch.float32
        torch.testing.assert_close(features, embed, atol=TOL, rtol=0)
    else:  # TorchScript runs no Python hooks: a program returning only logits has no features
        assert features is None


@pytest.mark.parametrize("fmt", ["wrapped_pt", "safetensors_factory", "torchscript", "export_pt2"])
def test_head_parameters_are_fc(trained: dict, fmt: str) -> None:
    """The head's weight and bias are model.fc's, as float32 numpy (programs record that fc was a Linear)."""
    runner = ClassifierRunner.from_source(_sources(trained["dir"])[fmt])
    params = runner.head_parameters()
    assert params is not None
    w, b = params
    assert w.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_array_equal(w, trained["model"].fc.weight.detach().numpy())
    np.testing.assert_array_equal(b, trained["model"].fc.bias.detach().numpy())


@pytest.mark.parametrize("n", [10, 64, 100, 128])
def test_a_program_exported_for_a_fixed_batch_runs_any_batch(trained: dict, n: int) -> None:
    """exported.pt2 was exported on 64 rows with a static batch: other sizes run in padded chunks of 64."""
    runner = ClassifierRunner.from_source(_sources(trained["dir"])["export_pt2"], num_classes=10)
    assert runner.fixed_batch == 64
    x = trained["all_x"][:n]
    logits, features = runner(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, trained["model"](x), atol=TOL, rtol=0)
        torch.testing.assert_close(features, trained["model"].embed(x), atol=TOL, rtol=0)


def test_a_program_that_does_not_unflatten_still_runs(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """When torch.export.unflatten fails, the flat program still gives the logits; only the features are lost."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot unflatten")

    monkeypatch.setattr(torch.export, "unflatten", refuse)
    logits, features = ClassifierRunner.from_source(_sources(trained["dir"])["export_pt2"])(trained["x"][:5])
    with torch.no_grad():
        torch.testing.assert_close(logits, trained["model"](trained["x"][:5]), atol=TOL, rtol=0)
    assert features is None


def test_a_program_exported_with_a_dynamic_batch(trained: dict, tmp_path: Path) -> None:
    """With a dynamic batch dimension there is no fixed size and any batch runs as it is."""
    x = trained["x"]
    batch = torch.export.Dim("batch", min=2)
    ep = torch.export.export(trained["model"], (x,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, str(tmp_path / "dyn.pt2"))
    runner = ClassifierRunner(load_program(tmp_path / "dyn.pt2"))
    assert runner.fixed_batch is None
    logits, _ = runner(trained["all_x"][:37])
    with torch.no_grad():
        torch.testing.assert_close(logits, trained["model"](trained["all_x"][:37]), atol=TOL, rtol=0)


@pytest.mark.parametrize("save", ["script", "export"])
@pytest.mark.parametrize("cls", [TinyResNetWithFeatures, DictOutputNet])
def test_a_program_returning_features_supplies_them(trained: dict, tmp_path: Path, cls: type, save: str) -> None:
    """A program that returns (logits, features) or {"logits", "features"} gives both, equal to the model's."""
    model = cls(num_classes=10, width=8)
    model.load_state_dict(trained["model"].state_dict())
    model.eval()
    x = trained["x"]
    if save == "script":
        path = tmp_path / "prog.ts"
        torch.jit.script(model).save(str(path))
    else:
        path = tmp_path / "prog.pt2"
        torch.export.save(torch.export.export(model, (x,)), str(path))
    logits, features = ClassifierRunner(load_program(path), RunnerOptions(num_classes=10))(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, trained["model"](x), atol=TOL, rtol=0)
        assert features is not None
        torch.testing.assert_close(features, trained["model"].embed(x), atol=TOL, rtol=0)


def test_head_by_name(trained: dict, tmp_path: Path) -> None:
    """--head fc, and a nested head classifier.1: features are that module's input, weights are its own."""
    runner = ClassifierRunner.from_source(ModelSource.module(trained["dir"] / "bare.pth", ARCH, head="fc"))
    assert runner.head_name == "fc"

    torch.manual_seed(1)
    mlp = MlpClassifier().eval()
    torch.save({"state_dict": mlp.state_dict()}, tmp_path / "mlp.pt")
    source = ModelSource.module(tmp_path / "mlp.pt", "tests.user_models:MlpClassifier", head="classifier.1")
    runner = ClassifierRunner.from_source(source, num_classes=10)
    x = trained["x"]
    logits, features = runner(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, mlp(x), atol=TOL, rtol=0)
        torch.testing.assert_close(features, mlp.body(x), atol=TOL, rtol=0)
    w, b = runner.head_parameters()
    np.testing.assert_array_equal(w, mlp.classifier[1].weight.detach().numpy())
    np.testing.assert_array_equal(b, mlp.classifier[1].bias.detach().numpy())


def test_close_removes_the_hook(trained: dict) -> None:
    """After close() the model has no hook left from the runner; features stop being captured."""
    model = TinyResNet().eval()
    runner = ClassifierRunner(model)
    assert runner(trained["x"][:2])[1] is not None
    runner.close()
    assert not model.fc._forward_hooks
    assert runner(trained["x"][:2])[1] is None


def test_head_module_default_and_named() -> None:
    """The default head is the last nn.Linear in module order; a named one is found by qualified name."""
    mlp = MlpClassifier()
    assert head_module(mlp)[0] == "classifier.1"
    assert head_module(mlp, "body.1")[1] is mlp.body[1]
    with pytest.raises(ModelSourceError, match="has no nn.Linear"):
        head_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))


def test_a_non_linear_named_head_gives_features_but_no_parameters(trained: dict) -> None:
    """A head that is not nn.Linear (here the pooling) still yields its input as features, but no weights."""
    source = ModelSource.module(trained["dir"] / "bare.pth", ARCH, head="pool")
    runner = ClassifierRunner.from_source(source)
    _, features = runner(trained["x"][:4])
    assert features is not None and features.shape == (4, 16 * 8 * 8)
    assert runner.head_parameters() is None


# ---------------------------------------------------------------------------------------------
# State dicts as training scripts save them


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "model_state_dict", "nested"])
@pytest.mark.parametrize("prefix", ["", "module.", "module.module."])
def test_state_dict_unwrapping(tmp_path: Path, wrap: str, prefix: str) -> None:
    """A bare state dict, one under state_dict / model / model_state_dict, and the DataParallel prefix."""
    sd = {f"{prefix}{k}": v for k, v in MlpClassifier().state_dict().items()}
    obj = {"bare": sd, "nested": {"checkpoint": 1, "state_dict": {"model": sd}}}.get(wrap, {wrap: sd, "epoch": 7})
    torch.save(obj, tmp_path / "w.pt")
    loaded = load_state_dict_file(tmp_path / "w.pt")
    assert list(loaded) == list(MlpClassifier().state_dict())
    for k, v in loaded.items():
        torch.testing.assert_close(v, sd[f"{prefix}{k}"])


def test_a_prefix_on_only_some_keys_is_kept(tmp_path: Path) -> None:
    """`module.` is stripped only when every key has it (a real submodule may be called `module`)."""
    torch.save({"module.w": torch.zeros(1), "b": torch.zeros(1)}, tmp_path / "w.pth")
    assert set(load_state_dict_file(tmp_path / "w.pth")) == {"module.w", "b"}


# ---------------------------------------------------------------------------------------------
# Source records


def test_source_digest_is_a_content_key(trained: dict, tmp_path: Path) -> None:
    """The digest follows the weights' bytes, arch, kwargs and head, and an arch file's bytes; not the path."""
    d = trained["dir"]
    base = ModelSource.module(d / "bare.pth", ARCH, {"width": 8, "num_classes": 10})
    assert base == ModelSource.module(d / "bare.pth", ARCH, '{"num_classes": 10,  "width": 8}')
    assert base.arch_kwargs == canonical_kwargs({"num_classes": 10, "width": 8}) == '{"num_classes":10,"width":8}'
    assert base.digest() == ModelSource.module(d / "bare.pth", ARCH, {"num_classes": 10, "width": 8}).digest()
    copy = tmp_path / "copy.pth"
    shutil.copy(d / "bare.pth", copy)
    assert ModelSource.module(copy, ARCH, {"width": 8, "num_classes": 10}).digest() == base.digest()
    others = [ModelSource.module(d / "bare.pth", ARCH, {"width": 8}),
              ModelSource.module(d / "bare.pth", ARCH, {"width": 8, "num_classes": 10}, head="fc"),
              ModelSource.module(d / "wrapped.pt", ARCH, {"width": 8, "num_classes": 10}),
              ModelSource.module(d / "bare.pth", "tests.user_models:make_tiny_resnet", {"width": 8, "num_classes": 10})]
    assert len({base.digest(), *(s.digest() for s in others)}) == 5

    arch_file = tmp_path / "arch.py"
    arch_file.write_text("from tests.user_models import TinyResNet\n")
    by_file = ModelSource.module(d / "bare.pth", f"{arch_file}:TinyResNet")
    before = by_file.digest()
    arch_file.write_text("from tests.user_models import TinyResNet  # edited\n")
    assert by_file.digest() != before
    assert ModelSource.program(d / "scripted.pt").digest() != ModelSource.program(d / "scripted.pt", "fc").digest()


def test_source_labels_and_fields(trained: dict) -> None:
    """Short display names; the kind and arch rules are checked on construction."""
    d = trained["dir"]
    assert ModelSource.module(d / "bare.pth", ARCH).label == "TinyResNet (bare.pth)"
    assert ModelSource.program(d / "exported.pt2").label == "exported.pt2"
    assert ModelSource.module(d / "bare.pth", ARCH).kwargs() == {}
    with pytest.raises(ModelSourceError, match="kind 'zip' is unknown"):
        ModelSource("zip", d / "bare.pth")
    with pytest.raises(ModelSourceError, match="PKG.MODULE:CALLABLE"):
        ModelSource.module(d / "bare.pth", "tests.user_models.TinyResNet")
    with pytest.raises(ModelSourceError, match="arch must be empty"):
        ModelSource("program", d / "scripted.pt", arch=ARCH)
    with pytest.raises(ModelSourceError, match="not valid JSON"):
        ModelSource.module(d / "bare.pth", ARCH, "{width: 8}")
    with pytest.raises(ModelSourceError, match="JSON object"):
        ModelSource.module(d / "bare.pth", ARCH, "[8]")
    with pytest.raises(ModelSourceError, match="no such file"):
        ModelSource.module(d / "absent.pth", ARCH).digest()


# ---------------------------------------------------------------------------------------------
# Bad input gets a clear error naming the thing


def test_an_import_path_that_does_not_resolve(trained: dict) -> None:
    """A missing module, a missing callable and a missing file each name what was not found."""
    w = trained["dir"] / "bare.pth"
    with pytest.raises(ModelSourceError, match=r"cannot import 'no_such_pkg\.models'.*current directory"):
        build_user_model(ModelSource.module(w, "no_such_pkg.models:Net"))
    with pytest.raises(ModelSourceError, match=r"has no 'ResNet50'; callables there: .*TinyResNet"):
        build_user_model(ModelSource.module(w, "tests.user_models:ResNet50"))
    with pytest.raises(ModelSourceError, match=r"no such file .*nowhere\.py"):
        build_user_model(ModelSource.module(w, "nowhere.py:Net"))


def test_arch_from_the_current_directory_and_a_file_with_a_sibling(trained: dict, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`mypkg.nets:Net` imports from the working directory; `path/nets.py:Net` may import a module beside it."""
    pkg = tmp_path / "project" / "userpkg_cwd"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("from tests.user_models import TinyResNet as Net\n")
    side = tmp_path / "elsewhere"
    side.mkdir()
    (side / "sibling_blocks_mod.py").write_text("from tests.user_models import TinyResNet\n")
    (side / "nets.py").write_text("from sibling_blocks_mod import TinyResNet as Net\n")
    monkeypatch.chdir(tmp_path / "project")
    w = trained["dir"] / "bare.pth"
    try:
        for arch in ("userpkg_cwd.nets:Net", f"{side / 'nets.py'}:Net"):
            logits, _ = ClassifierRunner.from_source(ModelSource.module(w, arch))(trained["x"][:4])
            with torch.no_grad():
                torch.testing.assert_close(logits, trained["model"](trained["x"][:4]), atol=TOL, rtol=0)
    finally:
        for name in ("userpkg_cwd", "userpkg_cwd.nets", "sibling_blocks_mod"):
            sys.modules.pop(name, None)
    assert str(tmp_path / "project") not in sys.path and str(side) not in sys.path  # the paths are put back


def test_an_arch_file_that_fails_to_import(trained: dict, tmp_path: Path) -> None:
    """An exception while importing the user's file is reported with the file's name."""
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelSourceError, match=r"importing .*broken\.py failed \(RuntimeError: boom\)"):
        build_user_model(ModelSource.module(trained["dir"] / "bare.pth", f"{bad}:Net"))


def test_a_callable_that_does_not_return_a_module(trained: dict) -> None:
    """The error names the callable and what it returned; bad kwargs name the kwargs."""
    w = trained["dir"] / "bare.pth"
    with pytest.raises(ModelSourceError, match=r"'tests.user_models:not_a_model' returned dict .*not a torch.nn"):
        build_user_model(ModelSource.module(w, "tests.user_models:not_a_model"))
    with pytest.raises(ModelSourceError, match=r"calling it with \{\"depth\":50\} failed \(TypeError"):
        build_user_model(ModelSource.module(w, ARCH, {"depth": 50}))


def test_weights_that_do_not_fit_list_the_keys(trained: dict, tmp_path: Path) -> None:
    """Wrong widths list the shapes (model vs file); another model's weights list missing and unexpected keys."""
    w = trained["dir"] / "bare.pth"
    with pytest.raises(ModelSourceError, match=r"wrong shapes: stem\.0\.weight: model \(4, 3, 3, 3\) vs file "
                                               r"\(8, 3, 3, 3\)") as err:
        build_user_model(ModelSource.module(w, ARCH, {"width": 4}))
    assert "bare.pth" in str(err.value) and "more" in str(err.value)  # capped, with a count of the rest
    with pytest.raises(ModelSourceError, match=r"wrong shapes: fc\.weight: model \(7, 16\) vs file \(10, 16\)"):
        build_user_model(ModelSource.module(w, ARCH, {"num_classes": 7}))
    torch.save(MlpClassifier().state_dict(), tmp_path / "mlp.pth")
    with pytest.raises(ModelSourceError) as err:
        build_user_model(ModelSource.module(tmp_path / "mlp.pth", ARCH))
    text = str(err.value)
    assert "missing keys: stem.0.weight" in text and "unexpected keys: body.1.weight" in text
    assert "... and" in text


def test_a_head_name_that_does_not_exist(trained: dict) -> None:
    """The error names the head and lists valid module names, close matches and linear layers first."""
    source = ModelSource.module(trained["dir"] / "bare.pth", ARCH, head="fc1")
    with pytest.raises(ModelSourceError, match=r"head 'fc1' is not a module of TinyResNet; modules there: fc"):
        ClassifierRunner.from_source(source)


def test_output_width_is_not_the_number_of_classes(trained: dict) -> None:
    """Logits 10 wide on data with 12 classes: the error says both numbers."""
    runner = ClassifierRunner.from_source(ModelSource.module(trained["dir"] / "bare.pth", ARCH), num_classes=12)
    with pytest.raises(ModelSourceError, match="logits have 10 columns; the data has 12 classes"):
        runner(trained["x"][:4])


class _Returns(nn.Module):
    """A module returning a fixed output, to check the runner's validation."""

    def __init__(self, out: object) -> None:
        super().__init__()
        self.out = out
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> object:
        return self.out


@pytest.mark.parametrize(("out", "message"), [
    (torch.zeros(4), "must be 2-D"),
    (torch.full((4, 3), float("nan")), "NaN or infinite"),
    (torch.zeros(3, 3), "3 rows of logits for a batch of 4"),
    ({"probs": torch.zeros(4, 3)}, "dict without 'logits'"),
    ((torch.zeros(4, 3), torch.zeros(2, 5)), "one row per input"),
    ("logits", "returned str"),
])
def test_bad_outputs_are_named(out: object, message: str) -> None:
    """Outputs that are not (B, C) finite logits, with well-formed features, are refused."""
    with pytest.raises(ModelSourceError, match=message):
        ClassifierRunner(_Returns(out))(torch.zeros(4, 2))


def test_a_model_that_fails_on_the_input_names_the_shape(trained: dict) -> None:
    """Inputs of the wrong shape (here 1 channel for a 3-channel network) give an error with the batch's shape."""
    runner = ClassifierRunner.from_source(_sources(trained["dir"])["export_pt2"])
    with pytest.raises(ModelSourceError, match=r"failed on a batch of shape \(64, 1, 16, 16\)"):
        runner(torch.zeros(64, 1, 16, 16))
    runner = ClassifierRunner.from_source(ModelSource.module(trained["dir"] / "bare.pth", ARCH))
    with pytest.raises(ModelSourceError, match=r"failed on a batch of shape \(2, 1, 16, 16\) \(RuntimeError"):
        runner(torch.zeros(2, 1, 16, 16))


def test_a_pickle_only_checkpoint_is_refused(tmp_path: Path) -> None:
    """torch.save(model) needs a full unpickle; weights_only=True refuses it and so do we, saying why."""
    torch.save(MlpClassifier(), tmp_path / "whole_model.pt")
    with pytest.raises(ModelSourceError, match=r"whole_model\.pt: refused: it holds Python objects") as err:
        load_state_dict_file(tmp_path / "whole_model.pt")
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)
    assert "GLOBAL tests.user_models.MlpClassifier" in str(err.value) and "state_dict()" in str(err.value)
    assert "weights_only` set to `False`" not in str(err.value)  # never advise the unsafe load


def test_a_torchscript_file_given_as_weights(trained: dict) -> None:
    """A program passed where weights are expected is named as a program, not as a broken file."""
    with pytest.raises(ModelSourceError, match=r"scripted\.pt: a TorchScript program, not a state dict"):
        build_user_model(ModelSource.module(trained["dir"] / "scripted.pt", ARCH))


def test_unreadable_and_non_tensor_files(tmp_path: Path) -> None:
    """Garbage bytes, non-tensor content, a missing file and an unknown suffix each get a named error."""
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ModelSourceError, match=r"junk\.pt: not a readable PyTorch weights file \(Unsupported op"):
        load_state_dict_file(tmp_path / "junk.pt")
    with pytest.raises(ModelSourceError, match=r"junk\.safetensors: not a (readable )?safetensors file"):
        load_state_dict_file(tmp_path / "junk.safetensors")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(ModelSourceError, match=r"meta\.pt: expected a state dict of tensors; not tensors: epoch"):
        load_state_dict_file(tmp_path / "meta.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ModelSourceError, match=r"list\.pt: expected a state dict .*got list"):
        load_state_dict_file(tmp_path / "list.pt")
    with pytest.raises(ModelSourceError, match="no such weights file"):
        load_state_dict_file(tmp_path / "absent.pt")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(ModelSourceError, match=r"w\.h5: weights must end in one of"):
        load_state_dict_file(tmp_path / "w.h5")


def test_an_export_archive_named_pt_is_still_a_program(trained: dict, tmp_path: Path) -> None:
    """torch.export.save writes whatever name it is given: a `.pt` export archive loads as an exported program,
    and refuses to load as weights."""
    shutil.copy(trained["dir"] / "exported.pt2", tmp_path / "exported.pt")
    logits, features = ClassifierRunner.from_source(ModelSource.program(tmp_path / "exported.pt"))(trained["x"])
    with torch.no_grad():
        torch.testing.assert_close(logits, trained["model"](trained["x"]), atol=TOL, rtol=0)
    assert features is not None
    with pytest.raises(ModelSourceError, match=r"exported\.pt: a torch\.export program, not a state dict"):
        load_state_dict_file(tmp_path / "exported.pt")


def test_bad_programs(trained: dict, tmp_path: Path) -> None:
    """A state dict given as a program, garbage .pt2, an unknown suffix and a missing file are named."""
    with pytest.raises(ModelSourceError, match=r"bare\.pth: not a TorchScript archive \(a saved state dict\?"):
        load_program(trained["dir"] / "bare.pth")
    (tmp_path / "junk.pt2").write_bytes(b"garbage")
    with pytest.raises(ModelSourceError, match=r"junk\.pt2: not a readable torch\.export program"):
        load_program(tmp_path / "junk.pt2")
    (tmp_path / "junk.ts").write_bytes(b"garbage")
    with pytest.raises(ModelSourceError, match=r"junk\.ts: not a TorchScript archive \(not a zip file\)"):
        load_program(tmp_path / "junk.ts")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ModelSourceError, match=r"m\.onnx: a program must end in one of"):
        load_program(tmp_path / "m.onnx")
    with pytest.raises(ModelSourceError, match="no such program file"):
        load_source(ModelSource.program(tmp_path / "absent.pt2"))
    with pytest.raises(ModelSourceError, match="use load_program"):
        build_user_model(ModelSource.program(trained["dir"] / "scripted.pt"))


def test_errors_are_value_errors() -> None:
    """Callers that catch ValueError (the CLI, the app's guard) catch these."""
    assert issubclass(ModelSourceError, ValueError)
    assert json.loads(canonical_kwargs(None)) == {}

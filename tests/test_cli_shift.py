"""`calibviz shift-report`: zoo names, checkpoint paths and the user's own model on a tensor file; the JSON's keys and
values are those of calibviz.shift; bad models exit 2 with one line naming them."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from calibviz.cli import main
from tests.conftest import ZOO

BOOT = "40"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> object:
    """One intra-op thread: on 2 shared cores the small bootstrap reports run many times faster so."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def digits_ce() -> dict:
    code, out, err = cli("shift-report", "ce", "--dataset", "digits", "--boot", BOOT, "--json")
    assert code == 0, err
    return json.loads(out)


def test_json_keys_and_values_are_the_librarys(digits_ce: dict) -> None:
    from calibviz.backend import predict
    from calibviz.metrics import Bootstrap
    from calibviz.shift import ShiftParams, shift_curves, shift_specs

    assert list(digits_ce) == ["models"] and len(digits_ce["models"]) == 1
    m = digits_ce["models"][0]
    assert m["name"] == "digits/ce" and m["dataset"] == "digits" and m["fit_data"] == "digits:val"
    assert m["corruptions"] == ["noise", "blur", "shift"] and m["severities"] == [0, 1, 2, 3, 4, 5]
    assert len(m["points"]) == 18 and m["n_boot"] == int(BOOT) and m["temperature"] > 0
    assert m["convention"] == "top-label, 15 equal-width bins closed on the right (lo, hi]"
    specs = shift_specs("digits:test")
    ckpt = ZOO / "digits" / "ce.safetensors"
    p = {str(s): predict(ckpt, str(s), device="cpu") for s in specs.all}
    lib = shift_curves(p[str(specs.fit)], p[str(specs.clean)], {(s.corruption, s.severity): p[str(s)]
                                                                for s in specs.shifted},
                       ShiftParams(15, Bootstrap(n_boot=int(BOOT))), name="digits/ce")
    assert m == json.loads(json.dumps(lib.to_json()))
    for pt in m["points"]:  # TS keeps the predicted class
        assert pt["before"]["accuracy"] == pt["after"]["accuracy"] and pt["argmax_changed_share"] == 0.0


def test_the_clean_point_is_what_report_says(digits_ce: dict) -> None:
    code, out, err = cli("report", str(ZOO / "digits" / "ce.safetensors"), "--split", "digits-blur-3:test",
                         "--boot", BOOT, "--json")
    assert code == 0, err
    rep = json.loads(out)
    pt = next(p for p in digits_ce["models"][0]["points"] if p["corruption"] == "blur" and p["severity"] == 3)
    for k in ("accuracy", "ece", "nll"):
        assert pt["before"][k] == rep[k] and pt["before"]["intervals"][k] == rep["intervals"][k]


def test_text_and_markdown_tables() -> None:
    code, out, err = cli("shift-report", str(ZOO / "digits" / "ls.safetensors"), "--corruptions", "blur",
                         "--boot", "0")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("digits/ls: T = ") and "fitted on digits:val" in lines[0]
    assert len(lines) == 2 + 6 and lines[2].split()[:2] == ["clean", "0"] and lines[-1].split()[:2] == ["blur", "5"]
    code, out, err = cli("shift-report", "digits/ls", "--corruptions", "blur", "--boot", "0", "--markdown")
    assert code == 0, err
    assert out.splitlines()[0].startswith("| model | T | corruption | sev 0 |") and "| digits/ls |" in out


def test_the_users_model_on_a_tensor_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from tests.user_models import train_on_digits

    model, _, x, y = train_on_digits(steps=15)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    keep = np.arange(0, len(y), 6)  # 300 rows: 100 each of train, val and test
    split = np.tile([0, 1, 2], len(keep) // 3 + 1)[:len(keep)]
    np.savez(tmp_path / "d.npz", x=x.numpy()[keep], y=y.numpy()[keep], split=split)
    code, out, err = cli("shift-report", "--arch", "tests.user_models:TinyResNet", "--arch-kwargs",
                         '{"num_classes": 10, "width": 8}', "--weights", str(tmp_path / "w.safetensors"),
                         "--data", f"tensors:{tmp_path / 'd.npz'}", "--corruptions", "noise", "contrast",
                         "--boot", "10", "--json")
    assert code == 0, err
    m = json.loads(out)["models"][0]
    assert m["corruptions"] == ["noise", "contrast"] and len(m["points"]) == 12
    assert m["fit_n"] == int((split == 1).sum()) and m["points"][0]["n"] == int((split == 2).sum())
    assert m["points"][7]["data"].endswith(":test:contrast-1")


@pytest.mark.parametrize(("args", "message"), [
    (("nothing/here",), "no zoo model of that name"),
    (("mnist1d/ce", "--dataset", "digits"), "card says dataset 'mnist1d'"),
    (("digits/ce", "--corruptions", "jpeg"), "'jpeg' is not offered"),
    ((), "name at least one model"),
])
def test_bad_models_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    code, _, err = cli("shift-report", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_bundle_has_no_shifted_copies(tmp_path: Path) -> None:
    from calibviz.formats import save_bundle
    from calibviz.predictions import Predictions

    rng = np.random.default_rng(0)
    save_bundle(Predictions(labels=np.arange(30) % 3, logits=rng.normal(size=(30, 3)).astype(np.float32)),
                tmp_path / "b.npz")
    code, _, err = cli("shift-report", str(tmp_path / "b.npz"))
    assert code == 2 and "no shifted copies" in err

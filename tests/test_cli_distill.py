"""`calibviz distill-report`: zoo names and checkpoint paths; the JSON's numbers are those of calibviz.distillation and
of an independent scipy computation on the extracted logits; bad inputs exit 2 with one line naming them."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from calibviz.backend import predict
from calibviz.cli import main
from tests.conftest import ZOO


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_distill_report_json_matches_the_logits() -> None:
    code, out, err = cli("distill-report", "digits/ce", "digits/kd_ce_t4", str(ZOO / "digits" / "kd_ce_t1.safetensors"),
                         "--data", "digits:test", "--boot", "50", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["teacher"] == "digits/ce" and rep["data"] == "digits:test" and rep["n"] == 500
    assert [s["name"] for s in rep["students"]] == ["digits/kd_ce_t4", "digits/kd_ce_t1"]
    t = predict(ZOO / "digits" / "ce.safetensors", "digits:test")
    pt = softmax(t.logits.astype(np.float64), 1)
    for row, recipe in zip(rep["students"], ("kd_ce_t4", "kd_ce_t1"), strict=True):
        assert set(row) >= {"agreement", "kl", "accuracy", "ece", "nll", "teacher_accuracy", "n", "ece_convention"}
        s = predict(ZOO / "digits" / f"{recipe}.safetensors", "digits:test")
        ps = softmax(s.logits.astype(np.float64), 1)
        assert row["agreement"]["value"] == pytest.approx((pt.argmax(1) == ps.argmax(1)).mean())
        assert row["kl"]["value"] == pytest.approx(entropy(pt, ps, axis=1).mean(), rel=1e-6)
        assert row["accuracy"]["value"] == pytest.approx((ps.argmax(1) == s.labels).mean())
        for k in ("agreement", "kl", "accuracy", "ece", "nll"):
            assert row[k]["low"] <= row[k]["value"] <= row[k]["high"]
    code, text, err = cli("distill-report", "digits/ce", "digits/kd_ce_t4", "--data", "digits:test", "--boot", "20")
    assert code == 0 and "digits/kd_ce_t4" in text and "agreement" in text, err


def test_distill_report_bad_inputs_exit_2() -> None:
    code, _, err = cli("distill-report", "digits/ce", "digits/no_such_model", "--data", "digits:test")
    assert code == 2 and "digits/no_such_model: no such file, and no zoo model" in err
    code, _, err = cli("distill-report", "digits/ce", "mnist1d/kd_ce_t4", "--data", "test", "--boot", "10")
    assert code == 2 and "same data" in err, err

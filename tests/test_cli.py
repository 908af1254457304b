"""The command line, run as a user would: `python -m calibviz ...` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibviz.formats import save_bundle
from calibviz.predictions import Predictions
from tests.conftest import REPO, ZOO


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run the command line in-process (fast) and capture what it prints, like a subprocess would."""
    import contextlib
    import io

    from calibviz.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_python_dash_m_entry_point_runs() -> None:
    r = subprocess.run([sys.executable, "-m", "calibviz", "zoo", "list"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "mnist1d/ce" in r.stdout and "CE teacher" in r.stdout


def test_report_on_a_netcal_bundle_gives_the_accuracy_the_file_implies(real_fixtures: Path, tmp_path: Path) -> None:
    src = real_fixtures / "netcal" / "wideresnet-16-4-cifar-10.npz"
    with np.load(src, allow_pickle=False) as z:
        probs, labels = z["predictions"].astype(np.float32), z["ground_truth"].astype(np.int64)
    probs = probs / probs.sum(1, keepdims=True)
    bundle = tmp_path / "wrn.npz"
    save_bundle(Predictions(labels=labels, probs=probs, meta={"name": "wrn-16-4"}), bundle)
    r = cli("report", str(bundle), "--json", "--boot", "0")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    implied = float((probs.argmax(1) == labels).mean())
    assert out["accuracy"] == pytest.approx(implied, abs=1e-12)
    assert out["n"] == len(labels) and out["n_bins"] == 15 and "(lo, hi]" in out["convention"]
    assert 0 < out["ece"] < 1 and out["nll"] > 0


def test_report_on_a_zoo_checkpoint_matches_its_card() -> None:
    ckpt = ZOO / "mnist1d" / "ce.safetensors"
    r = cli("report", str(ckpt), "--split", "test", "--json", "--boot", "50")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    card = json.loads(cli("zoo", "list", "--json").stdout)
    card_test = next(e for e in card if e["name"] == "mnist1d/ce")["metrics"]["test"]
    for k in ("accuracy", "nll", "ece"):
        assert out[k] == pytest.approx(card_test[k], abs=1e-4)
    lo, hi = out["intervals"]["ece"]
    assert lo <= out["ece"] <= hi
    shifted = json.loads(cli("report", str(ckpt), "--split", "mnist1d-noise-5:test", "--json", "--boot", "0").stdout)
    assert shifted["accuracy"] < out["accuracy"]


def test_zoo_list_json_lists_every_recipe_for_both_datasets() -> None:
    r = cli("zoo", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    want = {"ce", "ls", "mixup", "focal", "kd_ce_t1", "kd_ce_t4", "kd_ls_t1", "kd_ls_t4", "dm", "mdt"}
    for ds in ("digits", "mnist1d"):
        have = {row["recipe"] for row in rows if row["dataset"] == ds}
        assert want <= have, (ds, want - have)
    assert all({"accuracy", "nll", "ece"} <= set(row["metrics"]["test"]) for row in rows)


@pytest.mark.parametrize("args,words", [
    (["report", "no/such/file.npz"], "no such file"),
    (["report", "README.md"], "bundle must end in"),
    (["report", str(ZOO / "digits" / "ce.safetensors"), "--split", "dev"], "split 'dev'"),
    (["extract", str(ZOO / "digits" / "ce.safetensors"), "--data", "cifar:test", "--out", "x.npz"], "unknown"),
])
def test_bad_inputs_exit_2_with_one_clear_line(args: list[str], words: str) -> None:
    r = cli(*args)
    assert r.returncode == 2
    assert words in r.stderr and "Traceback" not in r.stderr


def test_bad_bundle_field_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", logits=np.zeros((4, 3), np.float32), labels=np.array([0, 1, 5, 0]))
    r = cli("report", str(tmp_path / "bad.npz"))
    assert r.returncode == 2 and "'labels'" in r.stderr and "out of range" in r.stderr


def test_recalibrate_ts_on_a_netcal_bundle_reaches_the_independent_optimum(real_fixtures: Path,
                                                                           tmp_path: Path) -> None:
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    with np.load(real_fixtures / "netcal" / "densenet-bc-100-cifar-100.npz", allow_pickle=False) as z:
        probs, labels = z["predictions"].astype(np.float64), z["ground_truth"].astype(np.int64)
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    half = len(labels) // 2
    split = np.where(np.arange(len(labels)) < half, 1, 2)  # val, then test
    bundle = tmp_path / "densenet.npz"
    save_bundle(Predictions(labels=labels, probs=probs, split=split, meta={"name": "densenet"}), bundle)
    r = cli("recalibrate", str(bundle), "--method", "ts", "--json", "--boot", "0",
            "--save", str(tmp_path / "ts.json"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)

    z = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))  # logits as the bundle contract derives them

    def nll(log_t: float, rows: slice) -> float:
        lp = log_softmax(z[rows] / np.exp(log_t), axis=1)
        return float(-lp[np.arange(len(lp)), labels[rows]].mean())

    best = minimize_scalar(lambda s: nll(s, slice(0, half)), bounds=(-5, 5), method="bounded",
                           options={"xatol": 1e-10})
    t_ref = float(np.exp(best.x))
    assert out["parameters"]["temperature"] == pytest.approx(t_ref, abs=1e-5)
    assert out["after"]["nll"] == pytest.approx(nll(best.x, slice(half, None)), abs=1e-5)
    assert out["after"]["accuracy"] == out["before"]["accuracy"]
    saved = json.loads((tmp_path / "ts.json").read_text())
    assert json.dumps(saved).count("temperature") >= 1


def test_recalibrate_mts_needs_a_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    save_bundle(Predictions(labels=np.arange(30) % 3, logits=rng.normal(size=(30, 3)).astype(np.float32),
                            split=np.arange(30) // 10), tmp_path / "b.npz")
    r = cli("recalibrate", str(tmp_path / "b.npz"), "--method", "mts")
    assert r.returncode == 2 and "needs a checkpoint" in r.stderr

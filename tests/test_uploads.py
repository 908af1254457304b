"""Uploads: size limit, refused kinds, validation with the user's file name, checkpoints and bundles accepted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from calibviz.formats import FormatError, save_bundle
from calibviz.predictions import Predictions
from calibviz.uploads import STORED_NAME, accept_upload, bundle_rows, restore_upload, upload_key


def _bundle_bytes(tmp_path: Path, **kw: object) -> bytes:
    rng = np.random.default_rng(0)
    p = Predictions(labels=np.arange(30) % 3, logits=rng.normal(size=(30, 3)).astype(np.float32),
                    split=np.arange(30) // 10, meta={"name": "mine", **kw})
    save_bundle(p, tmp_path / "x.npz")
    return (tmp_path / "x.npz").read_bytes()


def test_bundle_is_accepted_and_its_splits_selectable(tmp_path: Path) -> None:
    m = accept_upload("my preds.npz", _bundle_bytes(tmp_path), tmp_path / "up")
    assert m.kind == "bundle" and m.title.startswith("mine") and m.dataset == "uploaded"
    assert m.path.parent == tmp_path / "up" and " " not in m.path.name
    from calibviz.formats import load_bundle

    assert bundle_rows(load_bundle(m.path), "val").n == 10
    assert bundle_rows(load_bundle(m.path), "all").n == 30


def test_checkpoint_is_accepted(tmp_path: Path, tiny_checkpoint: Path) -> None:
    m = accept_upload("tiny.safetensors", tiny_checkpoint.read_bytes(), tmp_path / "up")
    assert m.kind == "checkpoint" and m.arch == "cnn_small" and m.dataset == "digits"


@pytest.mark.parametrize("name", ["model.pt", "model.pkl", "model.pth", "prog.ts"])
def test_pickles_and_torchscript_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(FormatError, match="never loaded"):
        accept_upload(name, b"whatever", tmp_path)


def test_too_large_upload_says_so(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="over the upload limit"):
        accept_upload("big.npz", b"0" * 2048, tmp_path, max_bytes=1024)


def test_bad_bundle_error_names_the_users_file_and_field(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, logits=np.full((4, 3), np.nan, np.float32), labels=np.array([0, 1, 2, 0]))
    with pytest.raises(FormatError) as e:
        accept_upload("broken.npz", buf.getvalue(), tmp_path / "up")
    assert str(e.value).startswith("broken.npz") and "'logits'" in str(e.value) and "NaN" in str(e.value)
    assert not list((tmp_path / "up").iterdir())  # nothing half-accepted is kept


def test_corrupt_checkpoint_is_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(FormatError, match="truncated"):
        accept_upload("tiny.safetensors", tiny_checkpoint.read_bytes()[:-50], tmp_path / "up")


def test_an_upload_comes_back_by_its_key(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    m = accept_upload("my preds.npz", _bundle_bytes(tmp_path), folder)
    key = upload_key(m)
    assert STORED_NAME.match(key) and (folder / key).is_file()
    back = restore_upload(key, folder)
    assert back == m  # the same record: name, title, kind, path, dataset


@pytest.mark.parametrize("key", ["../secret.npz", "0123456789abcdef-../../x.npz", "x.npz", "0123456789abcdef-a.pt",
                                 "/etc/passwd", "0123456789ABCDEF-a.npz"])
def test_a_key_of_any_other_shape_is_refused_before_any_file_is_read(tmp_path: Path, key: str) -> None:
    with pytest.raises(FormatError, match="not the key of an uploaded file"):
        restore_upload(key, tmp_path)


def test_a_key_whose_file_is_gone_says_so(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="mine.npz is no longer on this server"):
        restore_upload("0123456789abcdef-mine.npz", tmp_path)

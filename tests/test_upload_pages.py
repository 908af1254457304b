"""AppTest: an upload that lacks what a page needs (logits, features, splits) gets a message on that page saying
so, never an exception; a bad upload key leaves the good uploads and the selection as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from calibviz.diskcache import cache_dir
from calibviz.formats import save_bundle
from calibviz.predictions import Predictions
from calibviz.uploads import accept_upload, upload_key
from tests.conftest import REPO

PAGES = ("views/overview.py", "views/reliability.py", "views/recalibration.py", "views/logits.py",
         "views/features.py", "views/soft_labels.py")


def _bundle(tmp_path: Path, name: str, **kw: object) -> str:
    rng = np.random.default_rng(1)
    n, c = 120, 4
    logits = rng.normal(size=(n, c)).astype(np.float32) * 3
    labels = np.arange(n) % c
    arrays: dict = {"labels": labels}
    if kw.get("probs"):
        e = np.exp(logits - logits.max(1, keepdims=True))
        arrays["probs"] = (e / e.sum(1, keepdims=True)).astype(np.float32)
    else:
        arrays["logits"] = logits
    if kw.get("split"):
        arrays["split"] = np.arange(n) % 3
    path = tmp_path / f"{name}.npz"
    save_bundle(Predictions(meta={"name": name}, **arrays), path)
    return upload_key(accept_upload(path.name, path.read_bytes(), cache_dir() / "uploads"))


@pytest.mark.parametrize("kind", ["probs_only", "logits_no_split"])
def test_every_page_says_what_a_thin_upload_lacks(tmp_path: Path, kind: str) -> None:
    key = _bundle(tmp_path, kind, probs=kind == "probs_only", split=False)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params["upload"] = [key]
    at.run()
    at.sidebar.radio(key="dataset").set_value("uploaded").run()
    at.sidebar.multiselect(key="models_uploaded").set_value([f"upload/{key.partition('-')[2][:-4]}"]).run()
    said = {}
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        said[page] = " ".join(x.value for x in [*at.warning, *at.info, *at.error])
    assert "feature" in said["views/features.py"].lower(), said["views/features.py"]
    assert "mix" in said["views/soft_labels.py"].lower() or "checkpoint" in said["views/soft_labels.py"].lower()
    if kind == "probs_only":
        assert "logit" in said["views/logits.py"].lower(), said["views/logits.py"]


def test_a_bad_upload_key_leaves_earlier_uploads_and_the_selection(tmp_path: Path) -> None:
    good = _bundle(tmp_path, "good", split=True)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params["upload"] = [good]
    at.run()
    at.sidebar.radio(key="dataset").set_value("uploaded").run()
    chosen = at.sidebar.multiselect(key="models_uploaded").value
    (cache_dir() / "uploads" / "0123456789abcdef-bad.npz").write_bytes(b"not a zip at all")
    at.query_params["upload"] = [good, "0123456789abcdef-bad.npz"]
    at.run()
    assert not at.exception
    assert any("bad.npz" in w.value and "not a valid .npz" in w.value for w in at.sidebar.warning)
    assert at.sidebar.radio(key="dataset").value == "uploaded"
    assert at.sidebar.multiselect(key="models_uploaded").value == chosen

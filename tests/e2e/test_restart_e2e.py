"""End to end in headless Chromium: a dashboard server killed with kill -9 in the middle of an inference's cache
write restarts cleanly on the same cache folder: /_stcore/health answers, the page renders without an exception, the
half-written entry is recomputed (the same numbers as a clean run) and its temporary is never read, then swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import REPO, _free_port, require_browser, shot, wait_for_charts

pytestmark = pytest.mark.e2e

# Runs `streamlit run app.py ARGS` in this process after making the backend's bundle writer write half the bytes of
# its temporary, write the temporary's path to MARKER and block: the server is then mid-write, for as long as needed.
_BLOCKING_SERVER = r'''
import sys, time
from pathlib import Path

import calibviz.backend as backend

marker, real = Path(sys.argv[1]), backend.save_bundle


def half_save(preds, tmp):
    real(preds, tmp)
    data = Path(tmp).read_bytes()
    Path(tmp).write_bytes(data[: len(data) // 2])
    marker.write_text(str(tmp))
    while True:
        time.sleep(1)


backend.save_bundle = half_save
from streamlit.web import cli

sys.argv = ["streamlit", "run", "app.py", *sys.argv[2:]]
sys.exit(cli.main())
'''


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def _serve(cmd: list[str], env: dict[str, str], log: Path, url: str) -> subprocess.Popen:
    """Start a server command and wait (up to 90 s) for its health check."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 90
    while not _health(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_server_killed_mid_inference_write_restarts_cleanly(browser: object, tmp_path: Path) -> None:
    require_browser()
    from calibviz.backend import predict
    from calibviz.formats import FormatError, load_bundle
    from calibviz.zoo import default_zoo_dir

    cache, marker, port = tmp_path / "cache", tmp_path / "writing", _free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true"]
    env = {**os.environ, "CALIBVIZ_CACHE": str(cache), "CALIBVIZ_WARM_UMAP": "0", "PYTHONPATH": str(REPO)}
    (tmp_path / "blocking_server.py").write_text(_BLOCKING_SERVER)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    first = _serve([sys.executable, str(tmp_path / "blocking_server.py"), str(marker), *args], env,
                   tmp_path / "server1.log", url)
    second = None
    try:
        page.goto(url)  # the Overview runs the sidebar's default models on digits: inference, then a cache write
        deadline = time.monotonic() + 120
        while not marker.exists() or not marker.read_text():
            assert first.poll() is None, (tmp_path / "server1.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server never reached its cache write"
            time.sleep(0.05)
        half = Path(marker.read_text())
        assert half.exists() and half.parent == cache
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert not _health(url)
        assert not [p for p in cache.glob("*.safetensors") if ".tmp" not in p.name], "a final entry was written"

        second = _serve([sys.executable, "-m", "streamlit", "run", "app.py", *args], env,
                        tmp_path / "server2.log", url)
        assert _health(url)
        page.goto(url)
        wait_for_charts(page)
        shot(page, "restart_after_kill9")
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stAlertContentError']").count() == 0
        assert page.get_by_role("heading", name="Overview").count() == 1
        assert _health(url)

        entries = sorted(p for p in cache.glob("*.safetensors") if ".tmp" not in p.name)
        assert len(entries) == 2, entries  # CE and LS teachers on digits:test, both stored whole
        assert half.with_name(half.name.split(".")[0] + ".safetensors") in entries
        for entry in entries:  # each the same numbers as a clean run of its checkpoint (card name digits/ce ...)
            stored = load_bundle(entry)
            ckpt = default_zoo_dir() / f"{stored.meta['name']}.safetensors"
            clean = predict(ckpt, "digits:test", device="cpu", use_cache=False)
            np.testing.assert_allclose(stored.logits, clean.logits, rtol=1e-5, atol=1e-5)
        with pytest.raises(FormatError):
            load_bundle(half)  # the temporary was half written, and nothing read it
    finally:
        ctx.close()
        _stop(first)
        if second is not None:
            _stop(second)
    from calibviz.diskcache import sweep_stale_temporaries

    assert sweep_stale_temporaries(cache, min_age_s=0) == [half]

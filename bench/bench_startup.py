"""Dashboard start times: from `streamlit run` to the Overview's first chart in headless Chromium.

cold: a new server process with an empty prediction cache (inference runs); warm: a new server process whose disk
cache already holds the predictions (a second start of the app). Also the redraw time of a widget change.
Usage: .venv/bin/python bench/bench_startup.py   (needs chromium)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CHART = "[data-testid='stPlotlyChart'] .main-svg"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_to_chart(cache: str) -> tuple[float, float]:
    """Seconds from process start to health OK, and to the first rendered chart."""
    port = _port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=REPO, env={**os.environ, "CALIBVIZ_CACHE": cache},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        t_health = time.perf_counter() - t0
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            pg = b.new_page()
            pg.goto(f"http://127.0.0.1:{port}")
            pg.wait_for_selector(CHART, timeout=300_000)
            t_chart = time.perf_counter() - t0
            b.close()
        return t_health, t_chart
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = start_to_chart(cache)
        warm = start_to_chart(cache)
    print(f"machine: {os.cpu_count()} cpus")
    print(f"cold start (empty cache): health {cold[0]:.1f} s, first chart {cold[1]:.1f} s")
    print(f"warm start (disk cache):  health {warm[0]:.1f} s, first chart {warm[1]:.1f} s")


if __name__ == "__main__":
    main()

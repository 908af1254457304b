"""Browser end-to-end fixtures: a real `streamlit run` on a free loopback port, driven by Playwright in the
system's headless Chromium. Skipped, with the reason, when Chromium or Playwright is missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = REPO / "screenshots" / "tmp"

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_browser() -> None:
    """Skip, saying why, when Chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip("browser tests need Chromium: `apt-get update && apt-get install -y chromium` "
                    "(.ci/run does this); it is not installed here")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the playwright Python package (requirements-dev.txt)")


@contextlib.contextmanager
def streamlit_server(workdir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A fresh `streamlit run app.py` on 127.0.0.1 and a free port (with `env` added to its environment); yields its
    URL once /_stcore/health answers."""
    port = _free_port()
    log = workdir / "server.log"
    env = {**os.environ, "CALIBVIZ_CACHE": str(workdir / "cache"), **(env or {})}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One dashboard server for the whole browser test session."""
    require_browser()
    with streamlit_server(tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture(scope="session")
def browser(app_url: str) -> Iterator[object]:
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: object, app_url: str) -> Iterator[object]:
    """A fresh 1400x1000 page; a screenshot of it is kept under screenshots/tmp/ after the test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def wait_for_charts(page: object, n: int = 1, timeout: float = 90_000) -> None:
    """Wait until at least n plotly charts have rendered and Streamlit has stopped running."""
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length >= {n}",
        timeout=timeout)
    wait_idle(page, timeout)


def open_on_dataset(page: object, app_url: str, path: str, charts: int, dataset: str = "digits") -> None:
    """Open the app, then the page at `path` (e.g. "/reliability"), then pick `dataset` in the sidebar, waiting for
    `charts` charts after each step."""
    page.goto(app_url)
    wait_for_charts(page)
    page.goto(f"{app_url}{path}")
    wait_for_charts(page, charts)
    page.locator("[data-testid='stSidebar']").get_by_text(dataset, exact=True).first.click()
    wait_for_charts(page, charts)


def wait_idle(page: object, timeout: float = 90_000) -> None:
    """Wait until the app's status widget says it is no longer running the script."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout)
    page.wait_for_timeout(300)


def shot(page: object, name: str) -> Path:
    """Save a full-page screenshot for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def set_multiselect(page: object, label: str, choices: list[str], sidebar: bool = True) -> None:
    """Replace a multiselect's chosen values by `choices` (their displayed labels), as a user would: remove each
    chip, then type each label and press Enter."""
    root = page.locator("[data-testid='stSidebar']") if sidebar else page
    ms = root.locator("[data-testid='stMultiSelect']").filter(has=page.get_by_label(label, exact=True)).first
    while ms.locator("button[aria-label^='Remove ']").count():
        ms.locator("button[aria-label^='Remove ']").first.click()
        wait_idle(page)
    for choice in choices:
        ms.get_by_role("combobox").click()
        page.keyboard.type(choice)
        page.get_by_role("option", name=choice, exact=True).first.click()
        wait_idle(page)
    page.keyboard.press("Escape")
    wait_idle(page)


def box_select(page: object, index: int = 0, share: float = 0.6) -> None:
    """Drag a box over the top-left `share` of the index-th chart with its Box Select tool, as a user would."""
    chart = page.locator("[data-testid='stPlotlyChart']").nth(index)
    chart.hover()
    chart.locator(".modebar-btn[data-title='Box Select']").click()
    area = chart.locator(".nsewdrag").first.bounding_box()
    x0, y0 = area["x"] + area["width"] * 0.05, area["y"] + area["height"] * 0.05
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + area["width"] * share, y0 + area["height"] * share, steps=12)
    page.mouse.up()


def array_length(v: object) -> int:
    """Length of a live plotly.js data array: a list, or a decoded typed array {"dtype", "bdata", "_inputArray"}."""
    if isinstance(v, dict):
        return len([k for k in v.get("_inputArray", {}) if k.isdigit()])
    return len(v)


def chart_data(page: object, index: int = 0) -> list[dict]:
    """The plotly traces of the index-th chart on the page, read from the live plot's `data`."""
    return page.evaluate(
        "(i) => { const c = document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')[i];"
        " return c ? JSON.parse(JSON.stringify(c.data)) : null; }", index)


def full_shot(page: object, name: str) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main container, so grow the viewport to it."""
    wait_idle(page)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, int(height))})
    page.wait_for_timeout(1500)
    shot(page, name)
    page.set_viewport_size({"width": 1400, "height": 1000})

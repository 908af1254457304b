"""Browser latency of a widget change on every page, beside a bare Streamlit app, in one run (issue 14).

Starts `bench/bare_app.py` (one slider, one plotly chart) and the dashboard (`app.py`, shipped zoo, a fresh cache
folder), each with `streamlit run` on loopback, and drives them in headless Chromium with the keyboard or mouse as a
user would. Latency: from the input event (keydown / pointerdown, timestamped in the page) to the last change of the
page's main area (a MutationObserver over it: charts redrawn, stale markers cleared), once the page has been quiet
for QUIET_MS and Streamlit is no longer running. Each widget is moved back and forth twice to warm the caches, then
`--tries` times; the median is reported, and its ratio to the bare app's median.

With `--first-visits`: instead, each page's first visit on a fresh server process, from opening its URL until it
has settled: once with an empty cache folder (every inference and fit runs) and once with the cache the first pass
left (a server restart; the disk caches answer).

Usage: .venv/bin/python bench/bench_ui.py [--tries 5] [--first-visits] [--out bench/results_ui.md]   (needs chromium)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
QUIET_MS = 700
CHART = "[data-testid='stPlotlyChart'] .main-svg"

ARM = """() => {
  window.__t0 = null; window.__last = 0;
  if (!window.__cvObs) {
    window.__cvObs = new MutationObserver(() => { window.__last = performance.now(); });
    window.__cvObs.observe(document.querySelector('[data-testid="stMain"]'),
                           {subtree: true, childList: true, attributes: true, characterData: true});
    for (const ev of ['keydown', 'pointerdown'])
      document.addEventListener(ev, () => { if (window.__t0 === null) window.__t0 = performance.now(); }, true);
  }
}"""
SETTLED = f"""() => {{
  const s = document.querySelector('[data-testid="stStatusWidget"]');
  const running = s && s.innerText.includes('Running');
  return window.__t0 !== null && window.__last > window.__t0 && !running
         && !document.querySelector('[data-stale="true"]') && performance.now() - window.__last > {QUIET_MS};
}}"""


@contextlib.contextmanager
def server(script: str, cache: str) -> Iterator[str]:
    """`streamlit run script` on a free loopback port; yields the URL once /_stcore/health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true"],
                            cwd=REPO, env={**os.environ, "CALIBVIZ_CACHE": cache},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                break
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def settle(page: Page, timeout_ms: float = 300_000) -> None:
    """Wait until the app has stopped running and nothing on the page is stale."""
    page.wait_for_timeout(300)
    page.wait_for_function("""() => { const s = document.querySelector('[data-testid="stStatusWidget"]');
        return !(s && s.innerText.includes('Running')) && !document.querySelector('[data-stale="true"]'); }""",
                           timeout=timeout_ms, polling=100)
    page.wait_for_timeout(300)


def timed(page: Page, act: Callable[[], None]) -> float:
    """Seconds from the input event of `act` to the last change of the main area."""
    page.evaluate(ARM)
    act()
    page.wait_for_function(SETTLED, timeout=300_000, polling=50)
    return page.evaluate("() => window.__last - window.__t0") / 1000


def slider(label: str, sidebar: bool = False) -> Callable[[Page, int], None]:
    """Move the labelled slider one step right (even tries) or left (odd tries) with the arrow keys."""
    def act(page: Page, i: int) -> None:
        root = page.locator("[data-testid='stSidebar']") if sidebar else page
        thumb = root.locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider").first
        thumb.focus()
        page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
    return act


def radio(label: str, a: str, b: str, sidebar: bool = False) -> Callable[[Page, int], None]:
    """Click option b (even tries) or a (odd tries) of the labelled radio group."""
    def act(page: Page, i: int) -> None:
        root = page.locator("[data-testid='stSidebar']") if sidebar else page
        group = root.locator("[data-testid='stRadio']").filter(has_text=label).first
        group.get_by_text(b if i % 2 == 0 else a, exact=True).first.click()
    return act


def selectbox(label: str, a: str, b: str) -> Callable[[Page, int], None]:
    """Choose option b (even tries) or a (odd tries) of the labelled selectbox."""
    def act(page: Page, i: int) -> None:
        page.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
        page.get_by_role("option", name=b if i % 2 == 0 else a, exact=True).first.click()
    return act


@dataclass(frozen=True)
class Case:
    """One widget to move on one page."""

    page: str
    widget: str
    path: str
    act: Callable[[Page, int], None]
    charts: int = 1


def dataset(page: Page, i: int) -> None:
    """Switch the sidebar's dataset between mnist1d (even tries) and digits."""
    page.locator("[data-testid='stSidebar']").get_by_text("mnist1d" if i % 2 == 0 else "digits",
                                                          exact=True).first.click()


CASES = [
    Case("Overview", "sidebar dataset switch", "", dataset),
    Case("Reliability", "Bins slider", "/reliability", slider("Bins")),
    Case("Reliability", "Binning radio", "/reliability", radio("Binning", "equal-width", "equal-mass")),
    Case("Re-calibration", "temperature slider", "/recalibration", slider("Temperature")),
    Case("Logits", "Statistic selectbox", "/logits", selectbox("Statistic", "max logit", "logit L2 norm")),
    Case("Logits", "Draw as radio", "/logits", radio("Draw as", "KDE", "Histogram")),
    Case("Features", "Colour by radio", "/features", radio("Colour by", "class", "correct / wrong")),
    Case("Soft labels", "Mixup/CutMix radio", "/soft_labels", radio("Augmentation", "Mixup", "CutMix")),
]


def measure(page: Page, url: str, case: Case, tries: int) -> list[float]:
    """Open the page, warm its caches with two moves each way, then time `tries` moves."""
    page.goto(url + case.path)
    page.wait_for_selector(CHART, timeout=600_000)
    settle(page, 600_000)
    for i in range(4):
        case.act(page, i)
        settle(page, 600_000)
    out = []
    for i in range(tries):
        out.append(timed(page, lambda i=i: case.act(page, i)))
    return out


PAGES = {"Overview": "", "Reliability": "/reliability", "Re-calibration": "/recalibration", "Logits": "/logits",
         "Features": "/features", "Soft labels": "/soft_labels"}


def first_visits(browser: object) -> list[str]:
    """Seconds from opening each page on a fresh server to its settling, with an empty and with a warm disk cache."""
    rows = ["| page | empty cache (s) | warm disk cache, new server (s) |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list[float]] = {name: [] for name in PAGES}
        for _ in ("empty", "warm"):
            for name, path in PAGES.items():
                cache = str(Path(tmp) / name)             # one cache folder per page: its first pass starts empty
                with server("app.py", cache) as url:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto(url + path)
                    page.wait_for_selector(CHART, timeout=600_000)
                    settle(page, 600_000)
                    times[name].append(time.perf_counter() - t0 - 0.6)   # settle() waits 2 x 0.3 s itself
                    page.close()
                print(name, times[name], flush=True)
        rows += [f"| {n} | {t[0]:.1f} | {t[1]:.1f} |" for n, t in times.items()]
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated page names to run (all by default)")
    ap.add_argument("--first-visits", action="store_true", help="time each page's first visit instead")
    ap.add_argument("--out", default=str(REPO / "bench" / "results_ui.md"))
    a = ap.parse_args(argv)
    if a.first_visits:
        load0 = os.getloadavg()[0]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            rows = first_visits(browser)
            browser.close()
        text = "\n".join(["## First visits", "", "    .venv/bin/python bench/bench_ui.py --first-visits", "", *rows, "",
                          f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after; "
                          f"{dt.date.today().isoformat()}"])
        print(text)
        return
    cases = [c for c in CASES if not a.only or c.page in a.only.split(",")]
    load0 = os.getloadavg()[0]
    rows: list[tuple[str, str, float, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        with server("bench/bare_app.py", tmp) as url:
            bare = measure(page, url, Case("bare Streamlit", "slider", "", slider("Bins")), a.tries)
        floor = statistics.median(bare)
        rows.append(("bare Streamlit (floor)", "one slider, one chart", floor, bare))
        print(f"bare: {floor:.3f} s {bare}", flush=True)
        with server("app.py", tmp) as url:
            for c in cases:
                ts = measure(page, url, c, a.tries)
                rows.append((c.page, c.widget, statistics.median(ts), ts))
                print(f"{c.page} / {c.widget}: {statistics.median(ts):.3f} s {ts}", flush=True)
        browser.close()
    lines = ["# Benchmark: widget change to redrawn page, in headless Chromium, beside a bare Streamlit app", "",
             "Command (repository root):", "", f"    .venv/bin/python bench/bench_ui.py --tries {a.tries}", "",
             f"Input event to the last change of the page's main area once quiet for {QUIET_MS} ms and not running "
             f"(the quiet wait itself is not counted). Median of {a.tries} moves after 4 warm-up moves; cached data.",
             "", "| page | widget | median (s) | ratio to bare | tries (s) |", "|---|---|---|---|---|"]
    for pg, w, med, ts in rows:
        lines.append(f"| {pg} | {w} | {med:.3f} | {med / floor:.1f}x | {', '.join(f'{t:.2f}' for t in ts)} |")
    lines += ["", f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, Python "
              f"{platform.python_version()}; load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after; "
              f"{dt.date.today().isoformat()}"]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

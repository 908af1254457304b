"""Many browser sessions at once on one dashboard server: 20 Playwright contexts in one headless Chromium, spread over
the six pages, each moving one widget again and again for `--duration` seconds (UMAP and re-calibration fits among
them), against one `streamlit run app.py` on 127.0.0.1 with a fresh cache folder.

    .venv/bin/python bench/bench_sessions.py [--sessions 20] [--duration 180] [--think 1.0] [--out FILE]

Measured: each change's settle time (key press to the end of the last script run it caused, UMAP fits included: the
server's last session-status message says not running, no progress bar, no new run for 0.8 s), exception elements
and error boxes after each change, a `/_stcore/health` poll every second, the server process tree's resident memory
every second, and at the end whether every session still shows the values it chose last (also after a round trip to
another page). Bounded: loopback only, `--sessions` contexts, `--duration` seconds of changes plus the start-up and
the final checks, each wait capped. Written to bench/results_sessions.md (or --out) and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETTLE_TIMEOUT_S = 240.0  # one change may wait this long for its runs (a queue of UMAP fits on 2 CPUs)
LOAD_TIMEOUT_S = 900.0  # a session's first page load, all sessions loading at once
STABLE_S = 0.8  # idle this long with no new run: settled (longer than the UMAP progress fragment's 0.5 s period)

# Counts the app's script runs and remembers when the last one ended, from the server's own messages: the page's
# WebSocket is wrapped, and each binary ForwardMsg's top-level fields are read for session_status_changed (field 9)
# and its script_is_running (field 2). Every message is seen on its own, so a run that starts and ends between two
# renders still counts (the DOM's data-test-script-state can skip it: React batches the two updates). The app root's
# connection state is watched for disconnects.
INIT_JS = """
(() => {
  window.__runs = 0; window.__running = false; window.__idleAt = 0; window.__msgs = 0;
  window.__conn = null; window.__disconnects = 0;
  const varint = (b, i) => {
    let v = 0, k = 1, x;
    do { x = b[i++]; v += (x & 0x7f) * k; k *= 128; } while (x & 0x80 && i < b.length);
    return [v, i];
  };
  const fields = (b, from, to, want) => {
    const out = {};
    let i = from;
    while (i < to) {
      let tag, v;
      [tag, i] = varint(b, i);
      const f = Math.floor(tag / 8), w = tag & 7;
      if (w === 0) { [v, i] = varint(b, i); if (f === want) out[f] = v; }
      else if (w === 2) { [v, i] = varint(b, i); if (f === want) out[f] = [i, i + v]; i += v; }
      else if (w === 1) i += 8;
      else if (w === 5) i += 4;
      else break;
    }
    return out;
  };
  const read = (buf) => {
    const b = new Uint8Array(buf);
    window.__msgs += 1;
    const top = fields(b, 0, b.length, 9);
    if (top[9] === undefined) return;
    const running = fields(b, top[9][0], top[9][1], 2)[2] === 1;
    if (running && !window.__running) window.__runs += 1;
    if (!running) window.__idleAt = performance.now();
    window.__running = running;
  };
  let chain = Promise.resolve();
  const onMessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) read(ev.data);
    else if (ev.data instanceof Blob) { const d = ev.data; chain = chain.then(() => d.arrayBuffer()).then(read); }
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); this.addEventListener('message', onMessage); }
  };
  setInterval(() => {
    const c = document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-connection-state');
    if (c && c !== window.__conn) {
      if (window.__conn === 'CONNECTED') window.__disconnects += 1;
      window.__conn = c;
    }
  }, 250);
})();
"""
IDLE = ("!window.__running"
        " && !document.querySelector('[data-testid=\"stMain\"] [data-testid=\"stProgress\"]')")
IDLE_AFTER_JS = f"(r) => window.__runs > r && {IDLE}"  # idle, after more than r runs
STILL_JS = f"(r) => window.__runs === r && {IDLE}"  # idle, and no run beyond r started
# `streamlit run ...`, with every thread's stack written to the server log on SIGUSR1 (sent at a settle timeout)
SERVE = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
         "from streamlit.web import cli; sys.argv[0] = 'streamlit'; sys.exit(cli.main())")
STATE_JS = ("() => `runs ${window.__runs}, running ${window.__running}, messages ${window.__msgs}, script state `"
            " + document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
            " + `, connection ${window.__conn}, progress bars: `"
            " + Array.from(document.querySelectorAll('[data-testid=\"stProgress\"]'))"
            ".map(e => e.innerText.slice(0, 120)).join(' | ')")


@dataclass(frozen=True)
class Control:
    """The widget a session moves: a slider (range input, by label) or the sidebar's split selectbox (options)."""

    page: str  # url path ("" for the Overview)
    title: str  # navigation title
    kind: str  # "slider" or "select"
    label: str
    options: tuple[str, ...] = ()


CONTROLS = [
    Control("", "Overview", "select", "Data split", ("val", "train", "test — noise, severity 2", "test")),
    Control("reliability", "Reliability", "slider", "Bins"),
    Control("recalibration", "Re-calibration", "slider", "ECE bins"),
    Control("logits", "Logits", "slider", "Mask ratio r (dashed overlays)"),  # masked inference, cached on disk
    Control("features", "Features", "slider", "Neighbours"),
    Control("soft_labels", "Soft labels", "slider", "α of Beta(α, α)"),
]
FEATURES_ALT = Control("features", "Features", "slider", "Min. distance")  # every other Features session


@dataclass
class Session:
    """One browser context's run: its control, its measurements and what it chose last."""

    index: int
    control: Control
    page: Any = None
    load_s: float = float("nan")
    settles: list[float] = field(default_factory=list)
    timeouts: int = 0
    exceptions: int = 0
    errors: int = 0
    error_texts: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    not_applied: int = 0
    timeout_states: list[str] = field(default_factory=list)
    last: str = ""
    extra_state: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    direction: int = 1
    failure: str = ""


# ---------------------------------------------------------------------------------------------- server side


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(url: str, timeout: float = 5.0) -> bool:
    """Whether /_stcore/health answers 200 ok within `timeout`."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat, in clock ticks."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class Monitor(threading.Thread):
    """Polls health and samples the server tree's memory once a second, in a thread of its own."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.stop = url, pid, threading.Event()
        self.polls = self.failures = 0
        self.failed_at: list[float] = []
        self.latency: list[tuple[float, float]] = []  # (when, seconds to answer or fail)
        self.slowest = 0.0
        self.rss: list[tuple[float, float]] = []
        self.cpu: list[tuple[float, float, float]] = []  # (when, server % of one core, machine % busy)

    def run(self) -> None:
        """Until stopped: one health poll, one memory and one CPU sample a second."""
        last = (time.monotonic(), cpu_seconds(self.pid), *machine_busy())
        while not self.stop.is_set():
            t0 = time.monotonic()
            now = (t0, cpu_seconds(self.pid), *machine_busy())
            if now[0] > last[0] and now[3] > last[3]:
                self.cpu.append((t0, 100 * (now[1] - last[1]) / (now[0] - last[0]),
                                 100 * (now[2] - last[2]) / (now[3] - last[3])))
            last = now
            ok = health(self.url)
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self.latency.append((t0, time.monotonic() - t0))
            self.polls += 1
            self.failures += not ok
            if not ok:
                self.failed_at.append(t0)
            self.rss.append((time.monotonic(), tree_rss_mb(self.pid)))
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))


# ---------------------------------------------------------------------------------------------- browser side


async def settle(page: Any, runs0: int, t0: float, timeout: float = SETTLE_TIMEOUT_S) -> float:
    """Seconds from page time `t0` to the end of the last script run started after the first `runs0`, once the app
    is idle, shows no progress bar and starts no new run for STABLE_S (the UMAP fragment reruns while fits run)."""
    deadline = time.monotonic() + timeout
    after = runs0
    while True:
        left_ms = max(1.0, (deadline - time.monotonic()) * 1000)
        await page.wait_for_function(IDLE_AFTER_JS, arg=after, polling=250, timeout=left_ms)
        runs, idle_at = await page.evaluate("[window.__runs, window.__idleAt]")
        await asyncio.sleep(STABLE_S)
        if await page.evaluate(STILL_JS, runs):
            return (idle_at - t0) / 1000
        if time.monotonic() > deadline:
            raise PlaywrightTimeout("the page never settled")
        after = runs  # another run started meanwhile: wait for it to end


def slider(page: Any, label: str) -> Any:
    """The range input of the slider with this label."""
    return page.locator(f"[data-testid='stSlider'] input[type='range'][aria-label='{label}']").first


async def reveal(page: Any, c: Control) -> None:
    """Open what holds the control when it is closed: the Features page's 'UMAP options' popover, the
    Re-calibration page's 'More options' expander."""
    if c.kind != "slider" or await slider(page, c.label).is_visible():
        return
    if c.page == "features":
        await page.locator("[data-testid='stPopover'] button").filter(has_text="UMAP options").first.click()
    elif c.page == "recalibration":
        await page.locator("[data-testid='stExpander'] summary").filter(has_text="More options").first.click()
    await slider(page, c.label).wait_for(state="visible", timeout=120_000)


async def shown(page: Any, c: Control) -> str:
    """The value the control shows now."""
    if c.kind == "select":
        loc = page.locator("[data-testid='stSidebar'] input[role='combobox'][aria-label='Data split']")
        return str(await loc.first.input_value())
    await reveal(page, c)
    return str(await slider(page, c.label).get_attribute("aria-valuetext"))


async def change(s: Session) -> str:
    """Move the session's control one step (a slider bounces between its ends); return the value aimed at: an
    option's label, or a slider's new input value."""
    page, c = s.page, s.control
    if c.kind == "select":
        current = await shown(page, c)
        want = c.options[(c.options.index(current) + 1) % len(c.options)] if current in c.options else c.options[0]
        box = page.locator("[data-testid='stSidebar'] input[role='combobox'][aria-label='Data split']").first
        await box.click()
        await box.fill(want)
        await page.get_by_role("option", name=want, exact=True).first.click()
        return want
    await reveal(page, c)
    inp = slider(page, c.label)
    value, lo, hi, step = [float(await inp.get_attribute(a) or 1) for a in ("value", "min", "max", "step")]
    if (s.direction > 0 and value + step > hi) or (s.direction < 0 and value - step < lo):
        s.direction = -s.direction
    await inp.focus()
    await page.keyboard.press("ArrowRight" if s.direction > 0 else "ArrowLeft")
    return f"{value + s.direction * step:g}"


async def aimed(s: Session, want: str) -> bool:
    """Whether the control now holds the value `change` aimed at."""
    if s.control.kind == "select":
        return await shown(s.page, s.control) == want
    await reveal(s.page, s.control)
    return f"{float(await slider(s.page, s.control.label).input_value()):g}" == want


async def errors_now(s: Session) -> None:
    """Count a check that finds exception elements, and one that finds error boxes, keeping the first few texts."""
    exc = s.page.locator("[data-testid='stException']")
    err = s.page.locator("[data-testid='stAlertContentError']")
    n_exc, n_err = await exc.count(), await err.count()
    s.exceptions += n_exc > 0
    s.errors += n_err > 0
    for loc, n in ((exc, n_exc), (err, n_err)):
        for i in range(min(n, 2)):
            if len(s.error_texts) < 4:
                s.error_texts.append((await loc.nth(i).inner_text())[:200].replace("\n", " "))


async def ready(s: Session) -> None:
    """Wait (up to LOAD_TIMEOUT_S) until the session's control is on the page; a page that settled without it (a
    run cut short) gets more time. Fails with the page's state and a screenshot path when it never comes."""
    page, c = s.page, s.control
    if c.page == "features":  # in the 'UMAP options' popover, drawn once the page shows UMAP
        await reveal(page, c)
        return
    where = "[data-testid='stSidebar'] input[role='combobox']" if c.kind == "select" else "[data-testid='stSlider']"
    sel = f"{where}[aria-label='{c.label}']" if c.kind == "select" else f"{where} input[aria-label='{c.label}']"
    try:
        await page.locator(sel).first.wait_for(state="attached", timeout=LOAD_TIMEOUT_S * 1000)
    except PlaywrightTimeout:
        shot = Path(tempfile.gettempdir()) / f"bench_sessions_{s.index}.png"
        await page.screenshot(path=str(shot), full_page=True)
        raise PlaywrightTimeout(f"no {c.label!r} control: {await page.evaluate(STATE_JS)}; see {shot}") from None


async def open_session(browser: Any, url: str, s: Session) -> None:
    """A fresh context on the session's page, loaded and settled; the Features page is switched to UMAP."""
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await ctx.add_init_script(INIT_JS)
    s.page = page = await ctx.new_page()
    page.set_default_timeout(120_000)
    page.on("pageerror", lambda e: s.page_errors.append(str(e)[:200]))
    t_start = time.monotonic()
    await page.goto(f"{url}/{s.control.page}")
    await settle(page, 0, 0.0, LOAD_TIMEOUT_S)
    if s.control.page == "features":
        runs, t0 = await page.evaluate("window.__runs"), await page.evaluate("performance.now()")
        await page.locator("[data-testid='stRadio']").filter(has_text="Embedding").get_by_text(
            "UMAP", exact=True).first.click()
        await settle(page, runs, t0, LOAD_TIMEOUT_S)
        s.extra_state["Embedding"] = "UMAP"
    await ready(s)
    s.load_s = time.monotonic() - t_start
    s.last = await shown(page, s.control)
    await errors_now(s)


async def drive(s: Session, until: float, think: float) -> None:
    """Change the control, wait for the page to settle, check it; again until `until` (monotonic)."""
    page = s.page
    while time.monotonic() < until:
        runs, t0 = await page.evaluate("window.__runs"), await page.evaluate("performance.now()")
        want = await change(s)
        try:
            s.settles.append(await settle(page, runs, t0))
        except PlaywrightTimeout:
            s.timeouts += 1
            s.timeout_states.append(await page.evaluate(STATE_JS))
            dump_stacks()
        s.not_applied += not await aimed(s, want)
        if len(s.settles) % 5 == 0 and s.settles:
            print(f"  session {s.index} ({s.control.title}): {len(s.settles)} changes, last settle "
                  f"{s.settles[-1]:.1f} s", flush=True)
        s.last = await shown(page, s.control)
        await errors_now(s)
        await asyncio.sleep(think)


DUMPS: dict[str, Any] = {"pid": None, "done": False}


def dump_stacks() -> None:
    """Have the server write every thread's stack to its log, once (at the first settle timeout)."""
    if DUMPS["pid"] and not DUMPS["done"]:
        DUMPS["done"] = True
        os.kill(DUMPS["pid"], signal.SIGUSR1)


async def navigate(page: Any, title: str) -> None:
    """Go to another page by its navigation link and wait for it to settle."""
    runs, t0 = await page.evaluate("window.__runs"), await page.evaluate("performance.now()")
    await page.locator("[data-testid='stSidebarNav'] a").filter(has_text=title).first.click()
    await settle(page, runs, t0)


async def check_kept(s: Session) -> None:
    """Whether the session still shows its last values: now, and after a visit to another page and back."""
    page, c = s.page, s.control
    try:
        await page.wait_for_function(IDLE_AFTER_JS, arg=-1, polling=250, timeout=SETTLE_TIMEOUT_S * 1000)
    except PlaywrightTimeout:
        s.timeout_states.append("final check: " + await page.evaluate(STATE_JS))
        dump_stacks()
        raise
    if (now := await shown(page, c)) != s.last:
        s.lost.append(f"{c.label}: {s.last} -> {now}")
    other = "Reliability" if c.title == "Overview" else "Overview"
    await navigate(page, other)
    await navigate(page, c.title)
    if (back := await shown(page, c)) != s.last:
        s.lost.append(f"{c.label} after a page round trip: {s.last} -> {back}")
    if s.extra_state.get("Embedding"):
        radio = page.locator("[data-testid='stRadio']").filter(has_text="Embedding")
        checked = await radio.locator("input:checked").first.evaluate("e => e.closest('label').innerText")
        if checked.strip() != s.extra_state["Embedding"]:
            s.lost.append(f"Embedding: UMAP -> {checked.strip()}")
    await errors_now(s)


async def warm(browser: Any, url: str) -> float:
    """One session that opens the Features page, switches it to UMAP and waits for the fits: the server's umap-learn
    import and numba JIT compile are then paid before the measured sessions arrive, as on a server that has been up
    a while. Returns its seconds."""
    s = Session(-1, CONTROLS[4])
    t0 = time.monotonic()
    await open_session(browser, url, s)
    await s.page.context.close()
    return time.monotonic() - t0


async def run_sessions(url: str, n: int, duration: float, think: float,
                       warm_first: bool) -> tuple[list[Session], dict[str, float]]:
    """Open n sessions at once, drive them all for `duration` seconds, then check what they kept."""
    from playwright.async_api import async_playwright

    sessions = []
    for i in range(n):
        c = CONTROLS[i % len(CONTROLS)]
        if c.page == "features" and (i // len(CONTROLS)) % 2:
            c = FEATURES_ALT
        sessions.append(Session(i, c))
    marks: dict[str, float] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        marks["warm_start"] = time.monotonic()
        marks["warm_s"] = await warm(browser, url) if warm_first else float("nan")
        marks["setup_start"] = t0 = time.monotonic()
        done = await asyncio.gather(*(open_session(browser, url, s) for s in sessions), return_exceptions=True)
        for s, r in zip(sessions, done, strict=True):
            if isinstance(r, BaseException):
                s.failure = f"start: {type(r).__name__}: {str(r)[:200]}"
        marks["setup_s"] = time.monotonic() - t0
        live = [s for s in sessions if not s.failure]
        t1 = time.monotonic()
        marks["drive_start"] = t1
        done = await asyncio.gather(*(drive(s, t1 + duration, think) for s in live), return_exceptions=True)
        for s, r in zip(live, done, strict=True):
            if isinstance(r, BaseException):
                s.failure = f"drive: {type(r).__name__}: {str(r)[:200]}"
        marks["drive_s"] = time.monotonic() - t1
        marks["drive_end"] = time.monotonic()
        live = [s for s in live if not s.failure]
        done = await asyncio.gather(*(check_kept(s) for s in live), return_exceptions=True)
        for s, r in zip(live, done, strict=True):
            if isinstance(r, BaseException):
                s.failure = f"check: {type(r).__name__}: {str(r)[:200]}"
        marks["check_s"] = time.monotonic() - marks["drive_end"]
        marks["check_end"] = time.monotonic()
        disconnects = await asyncio.gather(*(s.page.evaluate("window.__disconnects") for s in sessions if s.page),
                                           return_exceptions=True)
        marks["disconnects"] = float(sum(d for d in disconnects if isinstance(d, int | float)))
        await browser.close()
    return sessions, marks


# ---------------------------------------------------------------------------------------------- report


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of xs, nan when empty."""
    if not xs:
        return float("nan")
    ys = sorted(xs)
    return ys[min(len(ys) - 1, max(0, round(q * (len(ys) - 1))))]


def machine() -> str:
    """CPU count and model, memory, Python, Streamlit and Chromium versions."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal")) / 2**20
    import streamlit

    try:
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        chromium = "?"
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GB memory, no GPU used; Python {platform.python_version()}, "
            f"Streamlit {streamlit.__version__}, {chromium}")


def report(sessions: list[Session], marks: dict[str, float], mon: Monitor, rss_start: float, rss_end: float,
           args: argparse.Namespace, loads: tuple[tuple[float, ...], tuple[float, ...]], cmd: str) -> str:
    """The results as markdown."""
    settles = [x for s in sessions for x in s.settles]
    drive = [r for t, r in mon.rss if marks["drive_start"] <= t <= marks["drive_end"]]
    rows = []
    for c in [*CONTROLS, FEATURES_ALT]:
        mine = [s for s in sessions if s.control == c]
        if not mine:
            continue
        xs = [x for s in mine for x in s.settles]
        rows.append(f"| {c.title} | {c.label} | {len(mine)} | {len(xs)} | {pct(xs, 0.5):.2f} | {pct(xs, 0.95):.2f} | "
                    f"{max(xs, default=float('nan')):.2f} | {sum(s.timeouts for s in mine)} | "
                    f"{sum(s.exceptions for s in mine)} | {sum(s.errors for s in mine)} | "
                    f"{sum(bool(s.lost) for s in mine)} | {statistics.median([s.load_s for s in mine]):.1f} |")
    phases = (("warm-up", "warm_start", "setup_start"), ("start-up", "setup_start", "drive_start"),
              ("widget changes", "drive_start", "drive_end"), ("final checks", "drive_end", "check_end"))
    health_rows = []
    for name, a, b in phases:
        xs = [d for t, d in mon.latency if marks[a] <= t < marks[b]]
        fails = sum(marks[a] <= t < marks[b] for t in mon.failed_at)
        health_rows.append(f"| {name} | {len(xs)} | {fails} | {pct(xs, 0.5) * 1000:.0f} | {pct(xs, 0.95) * 1000:.0f} | "
                           f"{max(xs, default=float('nan')) * 1000:.0f} |")
    srv = [c for t, c, _ in mon.cpu if marks["drive_start"] <= t <= marks["drive_end"]]
    busy = [m for t, _, m in mon.cpu if marks["drive_start"] <= t <= marks["drive_end"]]
    span = marks["drive_end"] - marks["drive_start"]
    at = [min(mon.rss, key=lambda tr: abs(tr[0] - (marks["drive_start"] + q * span)))[1] for q in (0, .25, .5, .75, 1)]
    timeline = " / ".join(f"{r:.0f}" for r in at)
    lost = [f"session {s.index} ({s.control.title}): " + "; ".join(s.lost) for s in sessions if s.lost]
    failed = [f"session {s.index} ({s.control.title}): {s.failure}" for s in sessions if s.failure]
    texts = [f"session {s.index} ({s.control.title}): {t}" for s in sessions for t in s.error_texts]
    jserr = [f"session {s.index}: {t}" for s in sessions for t in s.page_errors[:2]]
    stuck = [f"session {s.index} ({s.control.title}): {t}" for s in sessions for t in s.timeout_states[:2]]
    warmed = (f"- Warm-up: one session opened the Features page with UMAP and waited for its fits, "
              f"{marks['warm_s']:.0f} s (umap-learn's import and numba JIT compile, then two fits), before the "
              "measured sessions arrived." if marks["warm_s"] == marks["warm_s"] else "- Warm-up: none (--no-warm).")
    lines = [
        "# Concurrent browser sessions",
        "",
        f"Machine: {machine()}. Load average before the run {loads[0][0]:.2f} / {loads[0][1]:.2f} / "
        f"{loads[0][2]:.2f}, after {loads[1][0]:.2f} / {loads[1][1]:.2f} / {loads[1][2]:.2f} (1 / 5 / 15 min). The "
        f"server, the {len(sessions)} Chromium renderers and this driver share the same CPUs, so settle times "
        "measure the whole machine under load, not the server alone.",
        "",
        f"Command: `{cmd}`",
        "",
        f"One `streamlit run app.py` on 127.0.0.1 (fresh cache folder; UMAP JIT warm-up thread on, as `make run`), "
        f"one headless Chromium with {args.sessions} contexts, each on one page moving one widget one step, then "
        f"waiting for the page to settle, then {args.think:g} s of think time, for {args.duration:g} s. Settle: from "
        "the key press (or option click) to the end of the last script run it caused, read from the server's own "
        "`session_status_changed` messages on the page's WebSocket (every message counted, so no short run is "
        "missed), with no progress bar left and no new run for "
        f"{STABLE_S} s; a UMAP change settles only when its fits have finished and the page has redrawn with them. "
        "After every settle (and at start-up and in the final checks) the page is searched for exception elements "
        "(`stException`) and error boxes (`st.error`, which the pages' guard shows for a caught exception); the "
        "counts are of checks that found any.",
        "",
        "| sessions | duration (s) | interactions | settle p50 (s) | p95 (s) | max (s) | settle timeouts "
        f"(> {SETTLE_TIMEOUT_S:.0f} s) | checks with an exception | checks with an error box | health failures / "
        "polls | lost state (sessions) | failed sessions | peak RSS (MB) | RSS start → end (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(sessions)} | {marks['drive_s']:.0f} | {len(settles)} | {pct(settles, 0.5):.2f} | "
        f"{pct(settles, 0.95):.2f} | {max(settles, default=float('nan')):.2f} | {sum(s.timeouts for s in sessions)} | "
        f"{sum(s.exceptions for s in sessions)} | {sum(s.errors for s in sessions)} | {mon.failures} / {mon.polls} | "
        f"{sum(bool(s.lost) for s in sessions)} | {len(failed)} | {max(r for _, r in mon.rss):.0f} | "
        f"{rss_start:.0f} → {rss_end:.0f} |",
        "",
        "Per page:",
        "",
        "| page | widget | sessions | interactions | settle p50 (s) | p95 (s) | max (s) | timeouts | checks with an "
        "exception | checks with an error box | lost state | first load, median (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        warmed,
        f"- Start-up: all {len(sessions)} sessions opened their page at once; the last was ready after "
        f"{marks['setup_s']:.0f} s (cold caches: every model's inference, the re-calibration fits and MTS curves, "
        "the Features sessions' first UMAP fits). The final checks (current value, then a round trip to another "
        "page and back) took "
        f"{marks['check_s']:.0f} s.",
        f"- Server tree RSS: {rss_start:.0f} MB after start-up (before any session), "
        f"{min(drive, default=float('nan')):.0f}–{max(drive, default=float('nan')):.0f} MB while the sessions "
        f"changed widgets, peak {max(r for _, r in mon.rss):.0f} MB, {rss_end:.0f} MB at the end.",
        "",
        "Health polls (one a second, 5 s timeout; a failure is no `ok` within 5 s):",
        "",
        "| phase | polls | failed | p50 (ms) | p95 (ms) | max (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        *health_rows,
        "",
        f"- CPU while the sessions changed widgets: the server process used {pct(srv, 0.5):.0f}% of one core at the "
        f"median second ({pct(srv, 0.95):.0f}% at p95, {max(srv, default=float('nan')):.0f}% at most); the whole "
        f"machine was {pct(busy, 0.5):.0f}% busy at the median second. The server is one Python process: past 100% "
        "only where numpy / torch / numba release the GIL.",
        f"- Server RSS over the widget changes, at 0 / 25 / 50 / 75 / 100% of the time: {timeline} MB.",
        f"- Health: {mon.polls} polls, {mon.failures} failed, slowest answer {mon.slowest:.2f} s. WebSocket "
        f"disconnects seen by the sessions: {marks['disconnects']:.0f}. Widget changes that did not show the value "
        f"aimed at: {sum(s.not_applied for s in sessions)}. Browser-side JS errors: {len(jserr)}.",
    ]
    for title, items in (("Lost state", lost), ("Failed sessions", failed), ("Exception / error texts", texts),
                         ("Settle timeouts, the page's state then", stuck), ("JS errors", jserr)):
        if items:
            lines += ["", f"{title}:", "", *[f"- {x}" for x in items[:20]]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of widget changes")
    ap.add_argument("--think", type=float, default=1.0, help="seconds each session waits between changes")
    ap.add_argument("--no-warm", action="store_true",
                    help="skip the one-session UMAP warm-up (JIT compile) before the measured sessions start")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results_sessions.md")
    args = ap.parse_args()
    if not 1 <= args.sessions <= 40 or not 0 < args.duration <= 1800:
        ap.error("bounded: 1-40 sessions, at most 1800 s")
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    cmd = "CALIBVIZ_CACHE=<fresh tmp> .venv/bin/python bench/bench_sessions.py " + " ".join(sys.argv[1:])
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="calibviz-sessions-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "CALIBVIZ_CACHE": str(Path(tmp) / "cache")}
        log = Path(tmp) / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-c", SERVE, "run", "app.py", "--server.address", "127.0.0.1",
                 "--server.port", str(port), "--server.headless", "true"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not health(url, 2):
                if server.poll() is not None or time.monotonic() > deadline:
                    print(log.read_text()[-3000:], file=sys.stderr)
                    return 1
                time.sleep(0.5)
            rss_start = tree_rss_mb(server.pid)
            DUMPS["pid"] = server.pid
            mon = Monitor(url, server.pid)
            mon.start()
            print(f"server up at {url} ({rss_start:.0f} MB); {args.sessions} sessions for {args.duration:g} s ...",
                  flush=True)
            sessions, marks = asyncio.run(run_sessions(url, args.sessions, args.duration, args.think,
                                                        not args.no_warm))
            mon.stop.set()
            mon.join()
            rss_end = tree_rss_mb(server.pid)
            alive = server.poll() is None
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        tail = log.read_text()
    loads.append(os.getloadavg())
    text = report(sessions, marks, mon, rss_start, rss_end, args, (loads[0], loads[1]), cmd)
    stacks = tail.find("Thread 0x")
    if stacks >= 0:
        tail, dump = tail[:stacks], tail[stacks:]
        print("server threads at the first settle timeout:\n" + dump[:30000])
    crashed = [ln for ln in tail.splitlines() if "Traceback" in ln or "Error" in ln][:10]
    text += (f"- Server process alive at the end: {'yes' if alive else 'NO'}; tracebacks or error lines in its log: "
             f"{len(crashed)}" + "".join(f"\n  - `{ln.strip()[:160]}`" for ln in crashed) + "\n")
    print(text)
    args.out.write_text(text)
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())

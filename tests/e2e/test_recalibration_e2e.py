"""End to end in headless Chromium: the Re-calibration page on mnist1d's CE teacher. Stepping the temperature slider
with the keyboard redraws the reliability diagram with new data and changes the NLL and ECE shown above it; the four
default methods are drawn side by side and the fitted calibrator downloads as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

from calibviz.recalibration import manual_temperature_grid
from tests.e2e.conftest import chart_data, full_shot, wait_for_charts, wait_idle

# charts, found by what they show: the manual-T diagram, the NLL/ECE-vs-T curve, the side-by-side diagrams
PLOTS = "[...document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')]"
MANUAL = "(p => String(p.layout?.title?.text ?? '').includes('Evaluation split at T'))"
CURVE = "(p => String(p.layout?.title?.text ?? '').includes('Log-loss and ECE'))"
GRID = "(p => (p.layout?.annotations ?? []).some(a => a.text === 'Uncalibrated'))"
MANUAL_Y = f"JSON.stringify(({PLOTS}.find({MANUAL})?.data ?? []).map(t => t.y))"


def _chart(page: object, predicate: str) -> int:
    """The index of the one chart on the page that the JS predicate picks."""
    found = page.evaluate(f"() => {PLOTS}.map((p, i) => {predicate}(p) ? i : -1).filter(i => i >= 0)")
    assert len(found) == 1, found
    return int(found[0])


def _layout(page: object, index: int) -> dict:
    return page.evaluate(f"(i) => JSON.parse(JSON.stringify({PLOTS}[i].layout))", index)


def _settled(page: object) -> None:
    """Wait until the script has finished and nothing on the page is stale (faded) any more."""
    wait_for_charts(page, 5, timeout=180_000)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=180_000)
    wait_idle(page)


def _values(v: object) -> list[float | None]:
    """A trace array as a list: plotly.js keeps a decoded typed array as {"dtype", "bdata", "_inputArray": {...}}."""
    if isinstance(v, dict):
        arr = v["_inputArray"]
        return [arr[str(i)] for i in range(len([k for k in arr if k.isdigit()]))]
    return list(v)  # type: ignore[arg-type]


def _manual_bars(page: object) -> list[float | None]:
    """Per-bin accuracy of the manual-temperature diagram (its first bar trace)."""
    traces = chart_data(page, _chart(page, MANUAL))
    assert traces, "no manual-temperature diagram"
    bar = next(t for t in traces if t.get("type") == "bar")
    return _values(bar["y"])


def _metric(page: object, label: str) -> float:
    """The number shown by the st.metric whose label starts with `label`."""
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    text = box.locator("[data-testid='stMetricValue']").inner_text()
    return float(re.sub(r"[^0-9.\-]", "", text))


def test_temperature_slider_redraws_the_diagram_and_the_numbers(page: object, app_url: str) -> None:
    page.goto(app_url)
    wait_for_charts(page)
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Re-calibration").first.click()
    page.get_by_text("Masked temperature scaling: full-data", exact=False).first.wait_for(timeout=180_000)
    wait_for_charts(page, 5, timeout=180_000)
    assert "/recalibration" in page.url
    # then mnist1d, once the digits run has finished (its 10,000-row test split)
    page.locator("[data-testid='stSidebar']").get_by_text("mnist1d", exact=True).first.click()
    page.get_by_text("the estimate on all 10,000 evaluation rows", exact=False).first.wait_for(timeout=180_000)
    page.get_by_text("Masked temperature scaling: full-data", exact=False).first.wait_for(timeout=180_000)
    _settled(page)

    grid = chart_data(page, _chart(page, GRID))
    titles = {a["text"] for a in _layout(page, _chart(page, GRID))["annotations"]}
    for name in ("Uncalibrated", "Temperature scaling", "Ensemble temperature scaling", "Vector scaling",
                 "Dirichlet calibration"):
        assert name in titles, titles
    assert sum(1 for t in grid if t.get("name", "").startswith("Output")) == 5  # one diagram per panel

    bars_before = _manual_bars(page)
    nll_before, ece_before = _metric(page, "NLL (evaluation)"), _metric(page, "ECE (evaluation")
    assert _metric(page, "Temperature T") == 1.0
    full_shot(page, "recalibration_mnist1d_ce")

    thumb = page.locator("[data-testid='stSlider']").filter(has_text="Temperature T").get_by_role("slider").first
    thumb.focus()
    page.evaluate(f"() => {{ window.__manualBefore = {MANUAL_Y}; window.__t0 = performance.now(); }}")
    page.keyboard.press("ArrowRight")  # one step of the log grid: T = 1 -> 1.047
    page.wait_for_function(f"() => {MANUAL_Y} !== window.__manualBefore", timeout=60_000)
    elapsed = page.evaluate("() => performance.now() - window.__t0")
    print(f"\nslider: one key press to a redrawn diagram in {elapsed:.0f} ms")  # a measurement, not a check
    wait_idle(page)
    assert _manual_bars(page) != bars_before

    grid_t = manual_temperature_grid()
    target = grid_t[grid_t.index(1.0) + 25]  # 25 steps of 10^(1/50) from T = 1: about 3.16
    for _ in range(24):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')].some(e => e.innerText.trim() === t)",
        arg=f"{target:g}", timeout=60_000)
    wait_idle(page)
    t_now = _metric(page, "Temperature T")
    assert t_now == target, (t_now, target)
    assert _manual_bars(page) != bars_before
    nll_after, ece_after = _metric(page, "NLL (evaluation)"), _metric(page, "ECE (evaluation")
    # the CE teacher is over-confident (fitted T about 4.4): softening it to T about 3 lowers both
    assert nll_after < nll_before and ece_after < ece_before, (nll_before, nll_after, ece_before, ece_after)
    curve = chart_data(page, _chart(page, CURVE))
    assert any(t.get("name") == "chosen T: NLL (eval)" and abs(_values(t["x"])[0] - t_now) < 1e-9 for t in curve)

    page.keyboard.press("End")  # the far end of the slider: T = 10
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
                           ".some(e => e.innerText.trim() === '10')", timeout=60_000)
    wait_idle(page)
    assert _metric(page, "Temperature T") == 10.0
    assert _metric(page, "NLL (evaluation)") != nll_after

    page.get_by_role("button", name=re.compile(r"^T\* = .* \(fitted\)$")).click()
    wait_idle(page)
    t_snap = _metric(page, "Temperature T")
    assert 3.5 < t_snap < 5.5, t_snap
    page.mouse.move(5, 5)  # no tooltip in the screenshot
    full_shot(page, "recalibration_mnist1d_ce_snapped")

    with page.expect_download() as dl:
        page.get_by_role("button", name=re.compile("Download .* as JSON")).click()
    saved = json.loads(Path(dl.value.path()).read_text())
    assert saved["method"] == "ts" and saved["format"] == "calibviz-calibrator"
    assert abs(saved["fitted"]["temperature_"] - t_snap) / t_snap < 0.03  # the slider snapped to the grid near T*

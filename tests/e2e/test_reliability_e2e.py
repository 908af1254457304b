"""End to end in headless Chromium: the Reliability page shows one diagram per selected model; moving the bins
slider with the keyboard redraws the diagrams with a new number of bars."""

from __future__ import annotations

from tests.e2e.conftest import chart_data, open_on_dataset, shot, wait_for_charts, wait_idle

# per-bin outputs of the index-th chart, as the browser holds them (plotly.js may keep a typed array)
OUTPUT_X = ("(i) => { const c = document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')[i];"
            " const t = c && c.data.find(t => (t.name || '').startsWith('Output'));"
            " return t ? Array.from(t.x._inputArray ?? t.x) : null; }")


def _values(v: object) -> list[float]:
    """A trace array from chart_data: a list, or plotly.js's decoded typed array {"_inputArray": {"0": v0, ...}}."""
    if isinstance(v, dict):
        arr = v.get("_inputArray", v)
        return [arr[str(i)] for i in range(len([k for k in arr if k.isdigit()]))]
    return list(v)  # type: ignore[call-overload]


def _output(page: object, index: int) -> dict:
    traces = chart_data(page, index)
    assert traces is not None, f"no chart {index} on the page"
    return next(t for t in traces if t.get("name", "").startswith("Output"))


def test_bins_slider_redraws_the_diagrams(page: object, app_url: str) -> None:
    open_on_dataset(page, app_url, "/reliability", 2)
    titles = page.eval_on_selector_all("[data-testid='stPlotlyChart'] .gtitle", "ts => ts.map(t => t.textContent)")
    assert titles == ["CE teacher", "LS α=0.1"], titles  # the sidebar's default models, one diagram each
    before = [_values(_output(page, i)["x"]) for i in (0, 1)]
    assert [len(x) for x in before] == [15, 15]
    counts_before = _values(next(t for t in chart_data(page, 0) if t.get("name") == "Predictions per bin")["y"])
    assert sum(counts_before) == 500  # digits test split

    thumb = page.locator("[data-testid='stSlider']").filter(has_text="Bins").get_by_role("slider")
    thumb.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => ({OUTPUT_X})(0)?.length === 16", timeout=60_000)
    wait_idle(page)
    page.keyboard.press("End")
    page.wait_for_function(f"() => ({OUTPUT_X})(0)?.length === 50", timeout=60_000)
    wait_for_charts(page, 2)
    after = [_values(_output(page, i)["x"]) for i in (0, 1)]
    assert [len(x) for x in after] == [50, 50]
    assert after[0] != before[0]
    counts_after = _values(next(t for t in chart_data(page, 0) if t.get("name") == "Predictions per bin")["y"])
    assert sum(counts_after) == 500 and counts_after != counts_before
    assert page.get_by_text("50 equal-width bins closed on the right (lo, hi]").count() >= 1
    shot(page, "reliability_digits_50_bins")

"""End to end in headless Chromium: open the dashboard, go to the Logits page through the sidebar navigation, pick
the full-vs-distilled-data comparison and switch the statistic; the density chart redraws with new data."""

from __future__ import annotations

from tests.e2e.conftest import chart_data, shot, wait_for_charts, wait_idle

CURVES_X = ("JSON.stringify(Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')"
            "[0]?.data ?? []).map(t => t.x))")


def _values(v: object) -> list[float]:
    """A plotly.js data array: a plain list, or a decoded typed array {dtype, bdata, _inputArray: {"0": ...}}."""
    if isinstance(v, dict):
        arr = v["_inputArray"]
        return [float(arr[str(i)]) for i in range(len([k for k in arr if k.isdigit()]))]
    return [float(x) for x in v]


def _curves(page: object) -> dict[str, list[float]]:
    """The density chart (the page's first chart): legend name -> x values of its KDE line."""
    traces = chart_data(page, 0)
    assert traces is not None, "no density chart on the page"
    return {t["name"]: _values(t["x"]) for t in traces if t.get("type") == "scatter"}


def test_logits_statistic_switch_redraws_the_chart(page: object, app_url: str) -> None:
    page.goto(app_url)
    wait_for_charts(page)
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Logits").first.click()
    page.get_by_role("heading", name="Logits").first.wait_for()
    page.locator("[data-testid='stSidebar']").get_by_text("digits", exact=True).first.click()
    page.get_by_text("examples of digits · test").first.wait_for(timeout=90_000)
    wait_for_charts(page, 2)
    page.get_by_text("Full vs distilled data (CE · DM · MDT)", exact=True).first.click()
    page.get_by_text("Distilled data (DM + MDT mask 0.25) (n=500)").first.wait_for(timeout=90_000)
    wait_for_charts(page, 2)
    before = _curves(page)
    assert [k.split(" (n=")[0] for k in before] == [
        "CE teacher", "Distilled data (DM, 10/class)", "Distilled data (DM + MDT mask 0.25)"], before.keys()
    page.get_by_text("Does this zoo show the distilled-data effect?").first.wait_for()
    shot(page, "logits_digits_max_logit")

    page.evaluate(f"() => {{ window.__xBefore = {CURVES_X}; }}")
    page.locator("[data-testid='stSelectbox']").filter(has_text="Statistic").first.click()
    page.get_by_role("option", name="top-1 − top-2 logit margin").first.click()
    page.wait_for_function(f"() => {CURVES_X} !== window.__xBefore", timeout=60_000)
    wait_idle(page)
    after = _curves(page)
    assert list(after) == list(before)  # the same models ...
    assert all(after[k] != before[k] for k in before)  # ... on a new statistic's grid
    assert min(min(x) for x in before.values()) > 1.0 > min(min(x) for x in after.values())  # margins start at 0
    shot(page, "logits_digits_margin")

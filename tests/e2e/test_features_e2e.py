"""End to end in headless Chromium: the Features page (PCA only, no UMAP fit) compares the CE and LS teachers;
switching the colouring and the class triple redraws the charts with new data, and a box selection on a scatter
shows the selected inputs."""

from __future__ import annotations

import json
import time

from tests.e2e.conftest import array_length, box_select, chart_data, full_shot, wait_for_charts, wait_idle

CHARTS = "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')"


def _names(page: object, i: int) -> list[str]:
    traces = chart_data(page, i)
    assert traces is not None, f"no chart {i} on the page"
    return [t.get("name") for t in traces]


def _wait_names_change(page: object, i: int, before: list[str]) -> None:
    """Wait until the i-th chart's trace names differ from `before`, then until the app is idle."""
    page.wait_for_function(
        "([i, before]) => { const c = " + CHARTS + "[i];"
        " return c && JSON.stringify((c.data || []).map(t => t.name)) !== before; }",
        arg=[i, json.dumps(before)], timeout=60_000)
    wait_idle(page)


def _points_soon(page: object, i: int, want: int, timeout_s: float = 60.0) -> int:
    """The i-th chart's number of points, once it is `want` or `timeout_s` has passed: after a dataset switch the
    browser swaps the previous dataset's (stale) charts for the new ones a moment after the script run ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = sum(array_length(t["x"]) for t in chart_data(page, i) or [])
        if n == want or time.monotonic() > deadline:
            return n
        page.wait_for_timeout(250)


def test_features_colouring_class_triple_and_selection(page: object, app_url: str) -> None:
    page.goto(app_url)
    wait_for_charts(page)
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Features").first.click()
    page.get_by_text("Template projection").first.wait_for()
    wait_for_charts(page, 5)  # two scatters, the projection, R² bars, the CKA heatmap
    page.locator("[data-testid='stSidebar']").get_by_text("digits", exact=True).first.click()
    wait_for_charts(page, 5)

    by_class = chart_data(page, 0)
    assert [t["name"] for t in by_class] == [str(k) for k in range(10)]
    assert all(t["type"] == "scattergl" for t in by_class)
    assert len({t["marker"]["color"] for t in by_class}) == 10
    full_shot(page, "features_digits")

    # colouring: class -> correct / wrong, on both scatters
    page.get_by_text("correct / wrong", exact=True).first.click()
    _wait_names_change(page, 0, [t["name"] for t in by_class])
    for i in (0, 1):
        names = _names(page, i)
        assert len(names) == 2 and names[0].startswith("correct (") and names[1].startswith("wrong ("), names
    colours = [t["marker"]["color"] for t in chart_data(page, 0)]
    assert colours[0] != colours[1]

    # class triple: 0, 1, 2 -> 0, 1, 7 changes the projection's data
    proj_before = chart_data(page, 2)
    assert {t["name"] for t in proj_before if t["type"] == "scattergl"} == {"0", "1", "2"}
    box = page.locator("[data-testid='stSelectbox']").filter(has_text="Class c")
    box.locator("input").first.click()
    page.keyboard.type("7")
    page.keyboard.press("Enter")
    _wait_names_change(page, 2, [t["name"] for t in proj_before])
    proj = chart_data(page, 2)
    assert {t["name"] for t in proj if t["type"] == "scattergl"} == {"0", "1", "7"}
    tri = next(t for t in proj if t["name"] == "templates")
    tri_before = next(t for t in proj_before if t["name"] == "templates")
    assert tri["x"] != tri_before["x"]

    # a box selection on the CE scatter shows the selected digits under the scatters
    box_select(page, 0)
    page.get_by_text("points selected").first.wait_for(timeout=60_000)
    wait_idle(page)
    gallery = chart_data(page, 2)  # the gallery sits right under the scatters
    assert gallery and all(t["type"] == "heatmap" for t in gallery) and 1 <= len(gallery) <= 24
    full_shot(page, "features_digits_selection")

    # mnist1d: the same page on 1-D signals, 5,000-point scatters
    page.locator("[data-testid='stSidebar']").get_by_text("mnist1d", exact=True).first.click()
    page.get_by_text("on mnist1d.").first.wait_for(timeout=90_000)
    wait_for_charts(page, 5)
    wait_idle(page)
    assert _points_soon(page, 0, 5000) == 5000
    full_shot(page, "features_mnist1d")

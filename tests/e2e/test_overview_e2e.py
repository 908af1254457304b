"""End to end in headless Chromium: open the dashboard, select two models, check the Overview table and chart."""

from __future__ import annotations

from tests.e2e.conftest import chart_data, set_multiselect, shot, wait_for_charts


def _table_rows(page: object) -> list[list[str]]:
    return page.eval_on_selector_all(
        "[data-testid='stTable'] tbody tr",
        "rows => rows.map(r => Array.from(r.querySelectorAll('td,th')).map(c => c.innerText.trim()))")


def test_overview_selects_two_models_and_shows_their_metrics(page: object, app_url: str) -> None:
    page.goto(app_url)
    wait_for_charts(page)
    page.locator("[data-testid='stSidebar']").get_by_text("digits", exact=True).first.click()
    wait_for_charts(page)
    set_multiselect(page, "Models", ["CE teacher", "Distilled data (DM, 10/class)"])
    wait_for_charts(page)
    rows = _table_rows(page)
    header = page.eval_on_selector_all("[data-testid='stTable'] thead th", "h => h.map(c => c.innerText.trim())")
    header = [h for h in header if h]  # the hidden index column has an empty header
    assert [r[header.index("recipe")] for r in rows] == ["ce", "dm"], rows
    accuracies = [float(r[header.index("accuracy")]) for r in rows]
    assert all(0.0 < a <= 1.0 for a in accuracies)
    bars = chart_data(page)
    assert bars is not None and len(bars[0]["x"]) == 2  # one bar per selected model
    assert abs(bars[0]["y"][0] - accuracies[0]) < 1e-4
    shot(page, "overview")

"""End to end in headless Chromium: the Shift page on digits draws the curves (one line per model, metric, corruption
and calibration) and one row of reliability diagrams per model; choosing "before" (TS) redraws the curves without
the dashed after-TS lines."""

from __future__ import annotations

from tests.e2e.conftest import chart_data, full_shot, open_on_dataset, wait_for_charts, wait_idle

PLOTS = "[...document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')]"
CURVES = "(p => (p.data ?? []).some(t => String(t.hovertemplate ?? '').includes('severity')))"
DASHES = f"(() => {{ const p = {PLOTS}.find({CURVES}); return p ? p.data.map(t => t.line.dash) : null; }})"


def test_before_ts_only_redraws_the_curves(page: object, app_url: str) -> None:
    open_on_dataset(page, app_url, "/shift", 3)
    dashes = page.evaluate(f"{DASHES}()")
    assert dashes is not None and len(dashes) == 2 * 3 * 5, dashes  # CE and LS, 3 corruptions, 5 lines each
    assert dashes.count("dash") == 2 * 3 * 2
    index = page.evaluate(f"() => {PLOTS}.findIndex({CURVES})")
    names = {t["name"] for t in chart_data(page, index)}
    assert "CE teacher · before TS" in names and any(n.startswith("LS α=0.1 · after TS (T = ") for n in names)

    page.locator("[data-testid='stButtonGroup']").filter(has_text="before + after").get_by_text(
        "before", exact=True).click()
    page.wait_for_function(f"() => ({DASHES}())?.length === {2 * 3 * 3}", timeout=60_000)
    wait_for_charts(page, 3)
    wait_idle(page)
    assert set(page.evaluate(f"{DASHES}()")) == {"solid"}
    assert page.get_by_text("Ovadia et al. (2019) found").count() >= 1
    full_shot(page, "shift_digits_before_only")

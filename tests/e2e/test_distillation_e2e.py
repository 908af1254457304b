"""End to end in headless Chromium: the Distillation page lists the CE teacher's students from the cards; picking
the LS teacher redraws the students chart with the LS teacher's students, and the claims table is there."""

from __future__ import annotations

from tests.e2e.conftest import chart_data, full_shot, open_on_dataset, wait_for_charts, wait_idle


def _student_names(page: object) -> list[str]:
    """The y categories of the students chart (the first chart): the students' titles."""
    traces = chart_data(page, 0)
    assert traces, "no students chart on the page"
    return list(traces[0]["y"])


def test_distillation_teacher_switch_changes_the_students(page: object, app_url: str) -> None:
    open_on_dataset(page, app_url, "/distillation", 4, dataset="mnist1d")
    page.get_by_text("What these checkpoints show of the published claims").first.wait_for()
    ce = _student_names(page)
    assert "KD student of CE, T=1" in ce and "KD student of CE, T=4" in ce, ce
    assert not any("of LS" in s for s in ce), ce
    sweep = chart_data(page, 3)
    names = {t.get("name") for t in sweep if t.get("showlegend", True) is not False}
    assert {"CE teacher", "LS α=0.1"} <= names, names  # the CE and LS teachers' sweeps side by side
    full_shot(page, "distillation_mnist1d")

    page.locator("[data-testid='stSelectbox']").filter(has_text="Teacher").first.click()
    page.get_by_role("option", name="LS α=0.1", exact=True).first.click()
    page.wait_for_function("() => { const c = document.querySelectorAll('[data-testid=\"stPlotlyChart\"] "
                           ".js-plotly-plot')[0]; return c && JSON.stringify(c.data[0].y).includes('of LS'); }",
                           timeout=90_000)
    wait_for_charts(page, 4)
    wait_idle(page)
    ls = _student_names(page)
    assert ls != ce and all("of LS" in s for s in ls), ls
    full_shot(page, "distillation_mnist1d_ls")

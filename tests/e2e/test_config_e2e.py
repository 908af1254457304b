"""The user's own models in a real browser: a server started on the example config shows them beside the zoo, and
the Overview and the Features page draw them (screenshots under screenshots/tmp/)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import build_example_config
from tests.e2e.conftest import (
    array_length,
    box_select,
    chart_data,
    full_shot,
    require_browser,
    streamlit_server,
    wait_for_charts,
    wait_idle,
)


def test_the_example_config_in_the_browser(browser: object, tmp_path: Path) -> None:
    require_browser()
    config = build_example_config(tmp_path / "example")
    n_test = len(list((config.parent / "digits_png" / "test").rglob("*.png")))
    with streamlit_server(tmp_path, env={"CALIBVIZ_CONFIG": str(config)}) as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.set_default_timeout(90_000)
        page.goto(url)
        wait_for_charts(page)
        page.locator("[data-testid='stSidebar']").get_by_text("digits_png", exact=True).first.click()
        page.get_by_text("Selected models on digits_png").first.wait_for()
        wait_for_charts(page)
        table = page.locator("[data-testid='stTable']").first.inner_text()
        assert "TinyResNet (example, weights)" in table
        full_shot(page, "config_overview")
        page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Features").first.click()
        page.get_by_text("Template projection").first.wait_for()
        wait_for_charts(page, 3)
        assert sum(array_length(t["x"]) for t in chart_data(page, 0)) == n_test  # a point per test image
        box_select(page, 0, share=0.9)  # the selected points' own PNGs appear under the scatter, in colour
        page.get_by_text("points selected").first.wait_for(timeout=60_000)
        wait_idle(page)
        assert all(t["type"] == "image" for t in chart_data(page, 1))
        full_shot(page, "config_features")
        ctx.close()

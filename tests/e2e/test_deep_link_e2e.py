"""A bookmark to a page on a freshly started server opens that page inside the app (sidebar, navigation), not the
bare page file. The views live in views/, not pages/, so Streamlit's legacy multipage mode never takes over."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import require_browser, streamlit_server, wait_for_charts


def test_first_request_for_a_page_url_runs_it_inside_the_app(browser: object, tmp_path: Path) -> None:
    require_browser()
    with streamlit_server(tmp_path) as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.goto(f"{url}/soft_labels")
        wait_for_charts(page)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Overview" in nav and "Soft labels" in nav and "app" not in nav.split()
        assert page.get_by_role("heading", name="Soft labels on mixed inputs").count() == 1
        assert page.locator("[data-testid='stSidebar']").get_by_text("calibviz", exact=True).count() == 1
        ctx.close()

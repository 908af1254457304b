"""Uploads that last, in a real browser: an uploaded bundle is in the model list at once, is still there after a
page reload (its content key is in the URL), and another browser session does not see it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibviz.formats import save_bundle
from calibviz.predictions import Predictions
from tests.e2e.conftest import shot, wait_for_charts, wait_idle

TITLE = "lasting (uploaded bundle)"


def _models_text(page: object) -> str:
    return page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").first.inner_text()


def test_an_upload_appears_at_once_survives_a_reload_and_stays_private(page: object, app_url: str,
                                                                       browser: object, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bundle = tmp_path / "lasting.npz"
    save_bundle(Predictions(labels=np.arange(60) % 3, logits=rng.normal(size=(60, 3)).astype(np.float32),
                            meta={"name": "lasting", "dataset": "mine"}), bundle)
    page.goto(app_url)
    wait_for_charts(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Add your own model").first.click()
    sidebar.locator("input[type='file']").set_input_files(str(bundle))
    sidebar.get_by_text("uploaded", exact=True).first.wait_for(timeout=60_000)  # its dataset group, at once
    wait_idle(page)
    sidebar.get_by_text("uploaded", exact=True).first.click()
    wait_idle(page)
    assert TITLE in _models_text(page)  # selected by default: the group's only model
    assert "upload=" in page.url
    shot(page, "upload_before_reload")

    page.reload()
    wait_for_charts(page)
    sidebar.get_by_text("uploaded", exact=True).first.click()
    wait_idle(page)
    assert TITLE in _models_text(page)
    shot(page, "upload_after_reload")

    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    other.goto(app_url)
    wait_for_charts(other)
    assert other.locator("[data-testid='stSidebar']").get_by_text("uploaded", exact=True).count() == 0
    other.context.close()

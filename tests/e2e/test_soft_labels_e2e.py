"""End to end in headless Chromium: the Soft-labels page compares the CE and LS teachers; switching the augmentation
to CutMix redraws the violation-rate-by-λ chart with new data."""

from __future__ import annotations

from tests.e2e.conftest import chart_data, full_shot, open_on_dataset, wait_for_charts, wait_idle

LAMBDA_Y = ("JSON.stringify(Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')"
            "[0]?.data ?? []).map(t => t.y))")


def _lambda_chart(page: object) -> dict[str, list[float | None]]:
    """The first chart (violation rate against λ): teacher name -> y values (None: an empty λ bin)."""
    traces = chart_data(page, 0)
    assert traces is not None, "no λ chart on the page"
    out = {}
    for t in traces:
        y = t["y"]  # plotly.js keeps a decoded typed array as {"dtype", "bdata", "_inputArray": {"0": v0, ...}}
        if isinstance(y, dict):
            y = y["_inputArray"]
            y = [y[str(i)] for i in range(len([k for k in y if k.isdigit()]))]
        out[t["name"]] = list(y)
    return out


def test_soft_labels_cutmix_changes_the_lambda_chart(page: object, app_url: str) -> None:
    open_on_dataset(page, app_url, "/soft_labels", 3)
    page.get_by_text("Worst violations").first.wait_for()
    mixup = _lambda_chart(page)
    assert set(mixup) == {"CE teacher", "LS α=0.1"}, mixup.keys()  # the default teachers, one curve each
    assert all(0.0 <= y <= 1.0 for ys in mixup.values() for y in ys if y is not None)
    full_shot(page, "soft_labels_digits")

    page.evaluate(f"() => {{ window.__lambdaBefore = {LAMBDA_Y}; }}")
    page.get_by_text("CutMix", exact=True).first.click()
    page.wait_for_function(f"() => {LAMBDA_Y} !== window.__lambdaBefore", timeout=60_000)
    wait_for_charts(page, 3)
    cutmix = _lambda_chart(page)
    assert set(cutmix) == set(mixup)
    assert cutmix != mixup
    full_shot(page, "soft_labels_digits_cutmix")

    page.get_by_text("Mixup", exact=True).first.click()
    wait_for_charts(page, 3)
    page.locator("[data-testid='stSidebar']").get_by_text("mnist1d", exact=True).first.click()
    page.get_by_text("mnist1d · test", exact=True).first.wait_for(timeout=90_000)
    wait_for_charts(page, 3)
    page.get_by_text("Worst violations").first.wait_for()
    wait_idle(page)
    assert set(_lambda_chart(page)) == {"CE teacher", "LS α=0.1"}
    full_shot(page, "soft_labels_mnist1d")

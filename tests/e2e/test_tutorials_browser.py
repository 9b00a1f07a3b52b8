"""Browser: the Tutorials page in headless Chromium shows tutorial 000's conv1 count, 896 beside the true 320."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, wait_for_app_idle

pytestmark = pytest.mark.e2e


def test_tutorials_page_shows_the_conv1_count(server, page):
    page.goto(f"{server}/tutorials")
    page.get_by_role("heading", name="Tutorial 000: Is it an 8?").wait_for(timeout=120_000)
    heading = page.get_by_role("heading", name="conv1 has 320 parameters, not 896")
    heading.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    metrics = page.locator("[data-testid=stMetric]")
    assert metrics.filter(has_text="The tutorial's count").locator("[data-testid=stMetricValue]").inner_text() == "896"
    assert metrics.filter(has_text="conv1 in the built network").locator(
        "[data-testid=stMetricValue]").inner_text() == "320"
    assert page.get_by_text("Traceback").count() == 0
    heading.scroll_into_view_if_needed()
    screenshot(page, "tutorials-page")

    page.get_by_text("001 · DemoModel").click()
    softmax = page.get_by_role("heading", name="Softmax before CrossEntropyLoss: softmax applied twice")
    softmax.wait_for(timeout=60_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
    wait_for_app_idle(page)
    page.get_by_text("of the training labels become 1 (an 8)").wait_for(state="detached", timeout=30_000)  # 000's
    assert page.locator("[data-testid=stMetric]").filter(has_text="Reported with train=True").count() == 1
    softmax.scroll_into_view_if_needed()
    screenshot(page, "tutorials-001")

    page.get_by_text("003 · LeNet").click()
    imshow = page.get_by_role("heading", name="imshow un-normalizes for Normalize(0.5, 0.5), not (0.1307, 0.3081)")
    imshow.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    grids = page.locator("[data-testid=stImage] img")
    grids.nth(1).wait_for(timeout=30_000)
    expect(grids.first).to_have_js_property("complete", True)  # the picture itself may still be on its way
    assert grids.first.evaluate("img => img.naturalWidth") == 484  # 242 px upscaled 2x
    imshow.scroll_into_view_if_needed()
    screenshot(page, "tutorials-003")

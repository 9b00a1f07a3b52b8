"""Browser: the Dataset page in headless Chromium shows the sample grid; its render time is measured."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import screenshot, wait_for_app_idle

pytestmark = pytest.mark.e2e


def test_dataset_page_shows_the_sample_grid(server, page):
    page.goto(server)  # warms the server: torch import and the dataset cache
    page.get_by_role("heading", name="MNIST dataset").wait_for(timeout=90_000)
    wait_for_app_idle(page)

    started = time.perf_counter()
    page.reload()
    page.locator("[data-testid=stImage] img").nth(63).wait_for(timeout=30_000)
    wait_for_app_idle(page)
    seconds = time.perf_counter() - started
    print(f"\nDataset page render (warm server): {seconds:.2f} s")

    grid = page.locator("[data-testid=stImage] img")
    assert grid.count() >= 64
    first = grid.first
    assert first.evaluate("img => img.complete && img.naturalWidth") == 84  # 28 px upscaled 3x
    assert page.locator(".js-plotly-plot").count() >= 2  # close-up heatmap and class counts drew
    assert page.get_by_text("Traceback").count() == 0
    screenshot(page, "dataset-page")

    page.get_by_role("tab", name="Augmentation").click()
    page.get_by_text("draw 8").wait_for(timeout=10_000)
    screenshot(page, "dataset-augmentation")

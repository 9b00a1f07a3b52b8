"""Browser: the Dataset page in headless Chromium shows the sample grid; its render time is measured."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

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
    expect(grid.first).to_have_js_property("complete", True)  # the picture itself may still be on its way
    assert grid.first.evaluate("img => img.naturalWidth") == 84  # 28 px upscaled 3x
    # close-up heatmap and class counts: plotly draws after the page's script ends, later on a busy machine
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=30_000)
    assert page.get_by_text("Traceback").count() == 0
    screenshot(page, "dataset-page")

    page.get_by_role("tab", name="Augmentation").click()
    page.get_by_text("draw 8").wait_for(timeout=10_000)
    screenshot(page, "dataset-augmentation")


def test_fashion_mnist_class_pills_fit_and_a_first_click_shows_one_class(server, page):
    page.goto(server)
    page.get_by_role("heading", name="MNIST dataset").wait_for(timeout=90_000)
    wait_for_app_idle(page)
    page.get_by_role("combobox", name="Dataset").click()
    page.get_by_role("option", name="Fashion-MNIST").click()
    page.get_by_role("heading", name="Fashion-MNIST dataset").wait_for(timeout=90_000)
    wait_for_app_idle(page)

    pills = page.locator("[data-testid=stButtonGroup]").filter(has_text="Ankle boot")
    for name in ("T-shirt/top", "Pullover", "Ankle boot"):
        pill = pills.get_by_role("button", name=name)
        expect(pill).to_be_visible()
        fits = pill.evaluate(
            "el => { const box = el.getBoundingClientRect(), row = el.closest('[data-testid=stButtonGroup]')"
            ".getBoundingClientRect(); return el.scrollWidth <= el.clientWidth + 1 && box.right <= row.right + 1; }"
        )
        assert fits, f"the {name!r} pill is clipped"
    screenshot(page, "dataset-fashion-pills")

    shown = page.get_by_role("combobox", name="Look at one image up close").input_value()
    assert any(name in shown for name in ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                          "Sneaker", "Bag", "Ankle boot")), f"stale MNIST label: {shown!r}"

    pills.get_by_role("button", name="Shirt", exact=True).click()  # the first click shows only that class
    page.get_by_text("Showing 1 class: Shirt").wait_for(timeout=30_000)
    wait_for_app_idle(page)
    # The grid's 64 images are replaced one element at a time: wait until every caption has changed.
    page.wait_for_function(
        "() => { const c = [...document.querySelectorAll('[data-testid=stImage] [data-testid=stImageCaption]')]"
        ".slice(0, 64).map(e => e.innerText); return c.length === 64 && c.every(t => t === 'Shirt'); }",
        timeout=30_000)
    captions = page.locator("[data-testid=stImage] [data-testid=stImageCaption]").all_inner_texts()[:64]
    assert captions and set(captions) == {"Shirt"}
    page.wait_for_function(  # the new pictures have replaced the old ones, not just their captions
        "[...document.querySelectorAll('[data-testid=stImage] img')].every(img => img.complete && img.naturalWidth)"
    )
    screenshot(page, "dataset-fashion-shirt")

"""Browser: start a short run on the Train page, watch progress and charts update, stop it, find it saved."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import screenshot, wait_for_app_idle

pytestmark = pytest.mark.e2e


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    wait_for_app_idle(page)


def plotted_points(page, title: str) -> int:
    """How many x values the first trace of the chart titled `title` holds right now."""
    return page.evaluate(
        """title => {
            const plot = [...document.querySelectorAll('.js-plotly-plot')]
                .find(el => el.layout && el.layout.title && String(el.layout.title.text).includes(title));
            return plot ? plot.data[0].x.length : 0;
        }""",
        title,
    )


def test_start_watch_stop_and_saved(server, page, runs_dir):
    page.goto(f"{server}/train")
    page.get_by_role("heading", name="Train a network").wait_for(timeout=90_000)
    wait_for_app_idle(page)
    set_number(page, "Train on the first N images (0 = all 60,000)", 30000)
    set_number(page, "Test on the first N images (0 = all 10,000)", 2000)
    set_number(page, "Epochs", 4)
    name = page.get_by_label("Run name (optional)")
    name.fill("browser stop test")
    name.press("Enter")
    wait_for_app_idle(page)

    page.get_by_role("button", name="Start training").click()
    try:
        progress = page.locator("[data-testid=stProgress]")
        progress.get_by_text("step").wait_for(timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].length > 0", timeout=60_000)
        first = plotted_points(page, "Training loss per batch")
        deadline = time.monotonic() + 30
        while plotted_points(page, "Training loss per batch") <= first and time.monotonic() < deadline:
            time.sleep(0.5)
        assert plotted_points(page, "Training loss per batch") > first, "the live chart did not update"
        page.get_by_text("After epoch 1").wait_for(timeout=120_000)  # one epoch saved before we stop
        screenshot(page, "train-running")

        page.get_by_role("button", name="Stop").click()
        page.get_by_text("Resume it below to continue").wait_for(timeout=60_000)
        screenshot(page, "train-stopped")
    finally:  # never leave a run training in the shared server for the next tests
        stop = page.get_by_role("button", name="Stop")
        if stop.is_enabled():
            stop.click()

    (run,) = [folder for folder in runs_dir.iterdir() if folder.name.endswith("browser-stop-test")]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "stopped" and status["epoch"] >= 1
    assert (run / "last.pt").is_file() and (run / "metrics.jsonl").read_text().count("\n") == status["epoch"]

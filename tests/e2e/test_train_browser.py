"""Browser: a run started on the Train page outlives its tab; any new tab follows and stops it; a killed
worker reads "crashed" and resumes to the end. Every wait is on a state on screen or on disk."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from core import jobs, runs
from core.training import preset_config
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


def wait_on_disk(runs_dir: Path, run_id: str, check, timeout: float = 180.0) -> runs.RunRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = runs.find_run(run_id, runs_dir)
        if check(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} stayed {runs.find_run(run_id, runs_dir).status}")


def open_train(page, server: str, query: str = "") -> None:
    page.goto(f"{server}/train{query}")
    page.get_by_role("heading", name="Train a network").wait_for(timeout=90_000)
    wait_for_app_idle(page)


def stop_everything(runs_dir: Path) -> None:
    """Never leave a run training in the shared server's folder for the next tests."""
    for record in runs.list_runs(runs_dir):
        if record.live:
            runs.request_stop(record.run_dir)
    for record in runs.list_runs(runs_dir):
        if not record.damaged:
            wait_on_disk(runs_dir, record.run_id, lambda r: not r.live, timeout=120)


def test_a_run_outlives_its_tab_and_a_new_tab_stops_it(server, browser, runs_dir):
    first = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
    try:
        open_train(first, server)
        set_number(first, "Train on the first N images (0 = all 60,000)", 6000)
        set_number(first, "Test on the first N images (0 = all 10,000)", 1000)
        set_number(first, "Epochs", 100)
        name = first.get_by_label("Run name (optional)")
        name.fill("browser job")
        name.press("Enter")
        wait_for_app_idle(first)
        first.get_by_role("button", name="Start training").click()
        first.wait_for_url("**/train?run=*", timeout=60_000)
        run_id = parse_qs(urlparse(first.url).query)["run"][0]
        first.get_by_text("Training now").wait_for(timeout=60_000)
        wait_on_disk(runs_dir, run_id, lambda r: r.status == "running")
        first.context.close()  # the tab that started it goes away

        second = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
        open_train(second, server)
        second.get_by_text("Training now").wait_for(timeout=60_000)
        second.get_by_text("run browser job · epoch").first.wait_for(timeout=60_000)
        record = wait_on_disk(runs_dir, run_id, lambda r: r.epochs_done >= 1 and r.status == "running")
        assert record.pid is not None and record.pid != os.getpid()
        command = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
        assert b"worker" in command and run_id.encode() in command  # its own process, not the server
        second.get_by_text("After epoch").wait_for(timeout=120_000)  # it follows the run without being told
        first_count = plotted_points(second, "Training loss per batch")
        second.wait_for_function(
            """([title, count]) => [...document.querySelectorAll('.js-plotly-plot')].some(el => el.layout
                && String(el.layout.title.text).includes(title) && el.data[0].x.length > count)""",
            arg=["Training loss per batch", first_count], timeout=60_000,
        )
        screenshot(second, "train-running")

        second.get_by_role("button", name="Stop").first.click()
        stopped = wait_on_disk(runs_dir, run_id, lambda r: not r.live)
        second.get_by_text("Resume it above to continue").wait_for(timeout=60_000)
        screenshot(second, "train-stopped")
        second.context.close()
    finally:
        stop_everything(runs_dir)
    status = json.loads((stopped.run_dir / runs.STATUS_FILE).read_text())
    assert status["status"] == "stopped" and status["epoch"] >= 1
    assert (stopped.run_dir / runs.LAST_CHECKPOINT).is_file()
    assert len(runs.read_metrics(stopped.run_dir).rows) == status["epoch"]


def test_a_killed_worker_reads_crashed_and_resumes_to_the_end(server, page, runs_dir):
    small = dict(train_subset=640, test_subset=300, scheduler="none")
    run_id = jobs.launch(preset_config("fast", epochs=200, **small), name="to be killed", root=runs_dir)
    try:
        running = wait_on_disk(runs_dir, run_id, lambda r: r.status == "running" and r.epochs_done >= 1)
        assert running.pid is not None
        os.kill(running.pid, signal.SIGKILL)
        crashed = wait_on_disk(runs_dir, run_id, lambda r: r.status == "crashed", timeout=30)

        open_train(page, server, f"?run={run_id}")
        page.get_by_text("Crashed").first.wait_for(timeout=60_000)
        screenshot(page, "train-crashed")
        page.get_by_text("Resume a run").click()
        set_number(page, "Train until epoch", crashed.epochs_done + 1)
        page.get_by_role("button", name="Resume", exact=True).click()
        page.get_by_text("Finished").first.wait_for(timeout=180_000)
        done = runs.find_run(run_id, runs_dir)
        assert done.status == "finished" and done.epochs_done == crashed.epochs_done + 1
    finally:
        stop_everything(runs_dir)

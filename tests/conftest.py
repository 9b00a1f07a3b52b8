"""Shared test set-up: real data from ../shared/datasets when it is there (CI), else ./data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import core  # noqa: F401  (before any test module loads torch: it sets GOMP_SPINCOUNT)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "datasets"

if "DIGITS_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DIGITS_DATA_DIR"] = str(SHARED_DATA)
os.chdir(ROOT)  # pages and the CLI resolve data/, checkpoints/ relative to the project


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST dataset in memory, loaded once for the whole session."""
    from core.data import load_dataset

    return load_dataset("mnist")


def stop_live_runs(root: Path, timeout: float = 120.0) -> None:
    """Ask every queued or running run under `root` to stop, and wait until none is live.

    Tests that launch worker processes call it on their way out, so no worker outlives its test.
    """
    import time

    from core import runs

    for record in runs.list_runs(root):
        if record.live:
            runs.request_stop(record.run_dir)
    deadline = time.monotonic() + timeout
    while any(record.live for record in runs.list_runs(root)):
        assert time.monotonic() < deadline, "a run launched by the test never stopped"
        time.sleep(0.1)


@pytest.fixture
def runs_env(tmp_path, monkeypatch):
    """A private runs root, also in $DIGITS_RUNS_DIR for pages and workers; live runs stopped at the end."""
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(tmp_path))
    yield tmp_path
    stop_live_runs(tmp_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test starts or drives a real server: each is also `slow`, so -m "not slow" skips them."""
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture()
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs folder, so the user's own runs do not change what the page lists."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(folder))
    return folder


@pytest.fixture()
def seven(mnist):
    """The first 7 of the test set, as the canvas would send it."""
    from core.preprocess import render_as_canvas

    return render_as_canvas(mnist.test_images[int((mnist.test_labels == 7).nonzero()[0])])

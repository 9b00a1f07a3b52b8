"""Runs for the Compare tests: a few tiny real training runs made once per session, and a way to copy them.

Loaded as a plugin (`pytest_plugins = ["tests.compare_fixtures"]`) by the test modules that need it,
so the core tests and the page tests share one set of runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# (run name, preset overrides): two multiclass networks of different sizes on the same test digits.
TINY_RUNS = [
    ("tiny fastcnn", dict(arch="fastcnn", epochs=2, seed=1)),
    ("tiny lenet", dict(arch="seed003", epochs=1, seed=2)),
]
TINY_DATA = dict(train_subset=1000, test_subset=500, threads=1)  # a second or two per run on 2 CPU cores


def make_tiny_runs(root: Path, dataset, runs: list[tuple[str, dict]] = TINY_RUNS) -> list[str]:
    """Train each tiny run to the end under `root`; return the run ids, oldest first."""
    from core.training import Finished, preset_config, train

    run_ids = []
    for name, overrides in runs:
        events = list(train(preset_config("fast", **TINY_DATA, **overrides), run_name=name, runs_root=root,
                            dataset=dataset))
        assert isinstance(events[-1], Finished), events[-1]
        run_ids.append(events[-1].run_id)
    return run_ids


def copy_runs(source: Path, target: Path) -> Path:
    """A private copy of a runs folder without the weights (the Compare page never reads them)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.pt"), dirs_exist_ok=True)
    return target


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, mnist) -> tuple[Path, list[str]]:
    """A folder holding TINY_RUNS, made once per session, and their ids; copy it before changing it."""
    root = tmp_path_factory.mktemp("tiny-runs")
    return root, make_tiny_runs(root, mnist)


@pytest.fixture
def runs_copy(tiny_runs, tmp_path) -> tuple[Path, list[str]]:
    """This test's own copy of the tiny runs, free to rename, delete and damage."""
    source, run_ids = tiny_runs
    return copy_runs(source, tmp_path / "runs"), run_ids

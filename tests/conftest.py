"""Shared test set-up: real data from ../shared/datasets when it is there (CI), else ./data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import core  # noqa: F401  (before any test module loads torch: it sets OMP_WAIT_POLICY)

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

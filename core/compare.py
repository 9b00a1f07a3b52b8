"""Comparing training runs: their metrics side by side and two runs' test answers against each other.

The run list itself, renaming and deleting live in core.runs (one record type for every page).
Everything is read from each run folder's small JSON files; no weights are loaded.
The Compare page and the tests call the same functions; nothing here imports streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from core import runs
from core.metrics import Evaluation, confusion_matrix
from core.runs import METRIC_COLUMNS, RunRecord


class CompareError(ValueError):
    """Two runs whose test answers cannot be set side by side; the message says why."""


@dataclass(frozen=True)
class FlippedDigit:
    """A test digit that one run answers right and the other wrong."""

    index: int  # position in the test set
    label: int  # true class 0-9
    prediction_a: int  # run A's answer (binary task: 1 = "is the target")
    prediction_b: int
    confidence_a: float  # probability run A gives its own answer
    confidence_b: float


@dataclass(frozen=True)
class EvaluationComparison:
    """Run A's answers on the test set against run B's, on the first `count` test images."""

    count: int  # test images both runs answered (both evaluate the first N of the test set)
    accuracy_a: float  # fraction right on those images
    accuracy_b: float
    confusion_a: list[list[int]]  # counts [true][predicted]
    confusion_b: list[list[int]]
    difference: list[list[int]]  # confusion_a - confusion_b
    right_only_a: list[FlippedDigit]  # A right, B wrong; B's surest mistakes first
    right_only_b: list[FlippedDigit]  # B right, A wrong; A's surest mistakes first

    def largest_changes(self, count: int = 3) -> list[tuple[int, int, int]]:
        """The off-diagonal cells that changed most, as (true, predicted, A minus B)."""
        cells = [
            (true, predicted, delta)
            for true, row in enumerate(self.difference)
            for predicted, delta in enumerate(row)
            if true != predicted and delta != 0
        ]
        return sorted(cells, key=lambda cell: -abs(cell[2]))[:count]


# ---------------------------------------------------------------------------------------------
# The run list


def runs_fingerprint(root: Path | str | None = None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Each run folder's name with the modification time and size of its JSON files.

    It changes whenever a run is added, removed, renamed, writes an epoch or its worker dies: a cache key that lets
    live runs refresh without re-reading every file on every page run.
    """
    base = runs.runs_root(root)
    if not base.is_dir():
        return ()
    stamps = []
    for folder in sorted(path for path in base.iterdir() if runs.is_run_folder(path)):
        stamp: list[int] = []
        for name in runs.RUN_FILES:
            try:
                stat = (folder / name).stat()
                stamp += [stat.st_mtime_ns, stat.st_size]
            except OSError:
                stamp += [0, -1]
        stamp.append(int(runs.is_live(runs.read_status(folder))))  # a worker dies without touching its files
        stamps.append((folder.name, tuple(stamp)))
    return tuple(stamps)


# ---------------------------------------------------------------------------------------------
# Metrics of several runs


def metrics_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every epoch of the given runs in one long table: run_id, name, then METRIC_COLUMNS (NaN if absent)."""
    columns = ["run_id", "name", *METRIC_COLUMNS]
    frames = []
    for record in records:
        rows = runs.read_metrics(record.run_dir, record.live).rows  # a damaged file still gives its good lines
        if rows:
            frame = pd.DataFrame([asdict(row) for row in rows]).reindex(columns=list(METRIC_COLUMNS))
            frame.insert(0, "name", record.name)
            frame.insert(0, "run_id", record.run_id)
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


@dataclass(frozen=True)
class BestPoint:
    """Where one run does best on one metric."""

    run_id: str
    value: float  # the best value (highest accuracy, lowest loss)
    epoch: int  # first epoch that reached it
    elapsed_seconds: float | None  # wall time at the end of that epoch


def best_points(frame: pd.DataFrame, metric: str, higher_is_better: bool = True) -> list[BestPoint]:
    """Each run's best value of `metric` in a `metrics_frame`, the best run first."""
    points = []
    for run_id, rows in frame.dropna(subset=[metric]).groupby("run_id", sort=False):
        best = rows.loc[rows[metric].idxmax() if higher_is_better else rows[metric].idxmin()]  # first of ties
        elapsed = best["elapsed_seconds"]
        points.append(BestPoint(run_id=str(run_id), value=float(best[metric]), epoch=int(best["epoch"]),
                                elapsed_seconds=None if pd.isna(elapsed) else float(elapsed)))
    return sorted(points, key=lambda point: -point.value if higher_is_better else point.value)


def metrics_csv(records: Sequence[RunRecord]) -> str:
    """The runs' per-epoch metrics as CSV text, one line per run and epoch."""
    return metrics_frame(records).to_csv(index=False)


# ---------------------------------------------------------------------------------------------
# Two runs' test answers


def _truth(evaluation: Evaluation) -> list[int]:
    """The right answer for each test image: the class, or for one-vs-rest 1 if it is the target."""
    if evaluation.binary is None:
        return list(evaluation.labels)
    target = evaluation.binary.target_digit
    return [int(label == target) for label in evaluation.labels]


def _check_comparable(a: Evaluation, b: Evaluation) -> int:
    """The number of test images both runs answered; CompareError if they answered different questions."""
    if a.task != b.task:
        raise CompareError(f"one run answers the {a.task} question and the other the {b.task} one")
    if a.binary is not None and b.binary is not None and a.binary.target_digit != b.binary.target_digit:
        raise CompareError(f"the runs look for different digits ({a.binary.target_digit} and {b.binary.target_digit})")
    count = min(len(a.labels), len(b.labels))
    if count == 0:
        raise CompareError("a run has no test answers")
    if a.labels[:count] != b.labels[:count]:
        raise CompareError("the runs were tested on different images (different datasets?)")
    return count


def _flipped(index: int, a: Evaluation, b: Evaluation) -> FlippedDigit:
    return FlippedDigit(index=index, label=a.labels[index], prediction_a=a.predictions[index],
                        prediction_b=b.predictions[index], confidence_a=a.confidences[index],
                        confidence_b=b.confidences[index])


def compare_evaluations(a: Evaluation, b: Evaluation) -> EvaluationComparison:
    """Run A against run B on the test images both answered: confusion difference and flipped digits."""
    count = _check_comparable(a, b)
    truth = torch.tensor(_truth(a)[:count])
    predictions_a, predictions_b = torch.tensor(a.predictions[:count]), torch.tensor(b.predictions[:count])
    right_a, right_b = predictions_a == truth, predictions_b == truth
    confusion_a = confusion_matrix(truth, predictions_a, len(a.confusion))
    confusion_b = confusion_matrix(truth, predictions_b, len(b.confusion))
    only_a = [_flipped(i, a, b) for i in torch.nonzero(right_a & ~right_b).flatten().tolist()]
    only_b = [_flipped(i, a, b) for i in torch.nonzero(right_b & ~right_a).flatten().tolist()]
    return EvaluationComparison(
        count=count,
        accuracy_a=float(right_a.double().mean()),
        accuracy_b=float(right_b.double().mean()),
        confusion_a=confusion_a.tolist(),
        confusion_b=confusion_b.tolist(),
        difference=(confusion_a - confusion_b).tolist(),
        right_only_a=sorted(only_a, key=lambda digit: -digit.confidence_b),  # stable: ties keep test order
        right_only_b=sorted(only_b, key=lambda digit: -digit.confidence_a),
    )

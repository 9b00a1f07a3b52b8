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
from core.i18n import N_, Message, MessageError
from core.metrics import Evaluation, confusion_matrix
from core.runs import METRIC_COLUMNS, RunRecord

# metrics.jsonl column -> (what to call it, shown in percent, higher is better; None: neither, e.g. lr)
METRICS: dict[str, tuple[str, bool, bool | None]] = {
    "test_accuracy": (N_("test accuracy"), True, True),
    "train_accuracy": (N_("train accuracy"), True, True),
    "test_loss": (N_("test loss"), False, False),
    "train_loss": (N_("train loss"), False, False),
    "lr": (N_("learning rate"), False, None),
}


class CompareError(MessageError):
    """Two runs whose test answers cannot be set side by side; `message` says why."""


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
        raise CompareError(Message(N_("one run answers the %(task_a)s question and the other the %(task_b)s one"),
                                   {"task_a": Message(runs.TASK_LABELS.get(a.task, a.task)),
                                    "task_b": Message(runs.TASK_LABELS.get(b.task, b.task))}))
    if a.binary is not None and b.binary is not None and a.binary.target_digit != b.binary.target_digit:
        raise CompareError(Message(N_("the runs look for different classes (%(a)d and %(b)d)"),
                                   {"a": a.binary.target_digit, "b": b.binary.target_digit}))
    count = min(len(a.labels), len(b.labels))
    if count == 0:
        raise CompareError(Message(N_("a run has no test answers")))
    if a.labels[:count] != b.labels[:count]:
        raise CompareError(Message(N_("the runs were tested on different images")))
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


# ---------------------------------------------------------------------------------------------
# The comparisons in words: Message templates the page renders in its language. Numbers are written
# the way every supported language shows them here ('99.12%', '0.0412'), so they travel as text.


def _shown(value: float, in_percent: bool) -> str:
    return f"{100 * value:.2f}%" if in_percent else f"{value:.4f}"


def _when(point: BestPoint) -> Message:
    if point.elapsed_seconds is None:
        return Message(N_("epoch %(epoch)d"), {"epoch": point.epoch})
    return Message(N_("epoch %(epoch)d (%(seconds)s s)"),
                   {"epoch": point.epoch, "seconds": f"{point.elapsed_seconds:.0f}"})


def curves_messages(frame: pd.DataFrame, metric: str, names: dict[str, str],
                    comparable: bool = True) -> list[Message]:
    """The chart of one metric in words: who gets the best value, where, and how far the others are.

    Gaps are given as shown (2 decimals of a percentage point, 4 of a loss); one that shows as zero is
    said to be equal, never '0.00 points above'. Runs that answer different questions (`comparable` False)
    get each its own best, and no gaps.
    """
    label, in_percent, higher = METRICS[metric]
    if higher is None:
        rows = frame.dropna(subset=[metric]).groupby("run_id", sort=False)[metric]
        return [Message(N_("Learning rate at the end of each epoch:")), *(
            Message(N_("**%(name)s** from %(first)s to %(last)s."),
                    {"name": names[str(run_id)], "first": f"{values.iloc[0]:.2g}", "last": f"{values.iloc[-1]:.2g}"})
            for run_id, values in rows)]
    points = best_points(frame, metric, bool(higher))
    if not points:
        return [Message(N_("No finished epoch yet in the chosen runs."))]
    best = points[0]
    template = (N_("**%(name)s** reaches %(value)s %(metric)s at %(when)s.") if higher
                else N_("**%(name)s** gets down to %(value)s %(metric)s at %(when)s."))
    messages = [Message(template, {"name": names[best.run_id], "value": _shown(best.value, in_percent),
                                   "metric": Message(label), "when": _when(best)})]
    if not comparable:
        messages += [Message(template, {"name": names[other.run_id], "value": _shown(other.value, in_percent),
                                        "metric": Message(label), "when": _when(other)}) for other in points[1:]]
        points = points[:1]  # no gaps between answers to different questions
    for other in points[1:]:
        params: dict[str, object] = {"name": names[other.run_id], "value": _shown(other.value, in_percent),
                                     "when": _when(other)}
        gap = abs(best.value - other.value) * (100 if in_percent else 1)
        gap_text = f"{gap:.2f}" if in_percent else f"{gap:.4f}"
        if float(gap_text) == 0:
            messages.append(Message(N_("**%(name)s** is equal: %(value)s at %(when)s."), params))
        elif in_percent:
            messages.append(Message(N_("That is %(gap)s points above **%(name)s** (%(value)s at %(when)s).")
                                    if higher else
                                    N_("That is %(gap)s points below **%(name)s** (%(value)s at %(when)s)."),
                                    {**params, "gap": gap_text}))
        else:
            messages.append(Message(N_("That is %(gap)s above **%(name)s** (%(value)s at %(when)s).") if higher
                                    else N_("That is %(gap)s below **%(name)s** (%(value)s at %(when)s)."),
                                    {**params, "gap": gap_text}))
    if len(messages) > 1:
        messages.append(Message(N_("The numbers are the unsmoothed best epoch of each run.")))
    return messages


def size_messages(points: Sequence[tuple[str, int, float]]) -> list[Message]:
    """Parameters against accuracy in words: the most accurate run (name, parameters, accuracy) and the smallest."""
    best = max(points, key=lambda point: point[2])
    smallest = min(points, key=lambda point: point[1])
    messages = [Message(N_("The most accurate selected run, **%(name)s**, reaches %(accuracy)s with %(params)s "
                           "parameters."), {"name": best[0], "accuracy": _shown(best[2], True),
                                            "params": f"{best[1]:,}"})]
    if smallest[1] >= best[1]:
        return [*messages, Message(N_("No selected run has fewer parameters."))]
    params = {"name": smallest[0], "ratio": f"{best[1] / smallest[1]:.1f}", "params": f"{smallest[1]:,}",
              "accuracy": _shown(smallest[2], True)}
    gap = f"{100 * (best[2] - smallest[2]):.2f}"
    if float(gap) == 0:
        return [*messages, Message(N_("The smallest, **%(name)s**, has %(ratio)s× fewer parameters (%(params)s) and "
                                      "reaches the same %(accuracy)s."), params)]
    return [*messages, Message(N_("The smallest, **%(name)s**, has %(ratio)s× fewer parameters (%(params)s) and "
                                  "reaches %(accuracy)s, %(points)s points less."), {**params, "points": gap})]


def difference_messages(result: EvaluationComparison, names: tuple[str, str]) -> list[Message]:
    """Two runs' answers in words: accuracies, the digits only one gets right, and the net result (or a tie)."""
    gap = len(result.right_only_a) - len(result.right_only_b)
    messages = [
        Message(N_("On the first %(count)s test images (all that both runs answered), **A** (%(name_a)s) gets "
                   "%(accuracy_a)s right and **B** (%(name_b)s) %(accuracy_b)s."),
                {"count": f"{result.count:,}", "name_a": names[0], "accuracy_a": _shown(result.accuracy_a, True),
                 "name_b": names[1], "accuracy_b": _shown(result.accuracy_b, True)}),
        Message(N_("Right for A and wrong for B: %(only_a)d images. Right for B and wrong for A: %(only_b)d."),
                {"only_a": len(result.right_only_a), "only_b": len(result.right_only_b)}),
    ]
    if gap == 0:
        messages.append(Message(N_("They are equal: neither gets more of these images right.")))
    else:
        messages.append(Message(N_("The difference: %(net)d more right for %(winner)s (%(points)s points)."),
                                {"net": abs(gap), "points": f"{100 * abs(gap) / result.count:.2f}",
                                 "winner": "A" if gap > 0 else "B"}))
    return messages


def matrix_messages(result: EvaluationComparison, labels: Sequence[str]) -> list[Message]:
    """What the difference matrix's colors mean, and its largest off-diagonal changes."""
    messages = [Message(N_("Each cell of the matrix is A's count minus B's. On the diagonal, blue means A gets more "
                           "of that class right; off the diagonal, blue means A makes that mistake more often, and red "
                           "that B does."))]
    changes = result.largest_changes()
    if changes:
        messages.append(Message(N_("Largest changes:")))
        messages += [Message(N_("True %(true)s read as %(predicted)s: %(delta)s (%(run)s more often)."),
                             {"true": labels[true], "predicted": labels[predicted], "delta": f"{delta:+d}",
                              "run": "A" if delta > 0 else "B"}) for true, predicted, delta in changes]
    return messages

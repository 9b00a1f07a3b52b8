"""Comparing training runs: the run list (damaged folders included, with the reason), their metrics
side by side, two runs' test answers against each other, and renaming, deleting and exporting runs.

Everything is read from each run folder's small JSON files (see core.runs); no weights are loaded.
The Compare page and the tests call the same functions; nothing here imports streamlit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from core import runs
from core.metrics import Evaluation, confusion_matrix

DAMAGED = "damaged"  # the status shown for a folder that cannot be compared
NAME_MAX = 60  # longest display name, in characters

# Every metrics.jsonl row must carry these numbers; the rest are optional (older or foreign runs).
REQUIRED_METRICS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
METRIC_COLUMNS = (
    "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
    "seconds", "elapsed_seconds", "samples_per_second",
)
RUN_FILES = (runs.CONFIG_FILE, runs.METRICS_FILE, runs.STATUS_FILE, runs.EVALUATION_FILE)


class CompareError(ValueError):
    """Two runs whose test answers cannot be set side by side; the message says why."""


@dataclass(frozen=True)
class RunRecord:
    """One line of the run list, read from a run folder's JSON files (never its weights)."""

    run_id: str
    folder: Path
    name: str  # display name: the name given to the run, else its id
    status: str  # running / finished / stopped / failed / unknown / interrupted, or "damaged"
    message: str  # the status message; for a damaged folder, what is wrong with it
    preset: str = ""
    arch: str = ""
    task: str = ""  # "multiclass" or "binary"
    dataset: str = ""  # "mnist" or "fashion-mnist"
    param_count: int | None = None  # trainable parameters (None if the run did not record them)
    created: str = ""  # ISO time the run started
    epochs_done: int = 0  # whole epochs in metrics.jsonl
    total_epochs: int = 0  # epochs the run was asked for
    final_test_accuracy: float | None = None  # fraction right after the last epoch
    best_test_accuracy: float | None = None  # highest fraction right over the epochs
    best_epoch: int | None = None  # first epoch that reached it
    wall_seconds: float | None = None  # run time up to the end of its last epoch
    samples_per_second: float | None = None  # training images per second of training
    settings: str = ""  # the settings that tell runs apart, in one line
    live: bool = False  # a living process is still writing this folder

    @property
    def damaged(self) -> bool:
        return self.status == DAMAGED


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


def config_problem(folder: Path) -> str:
    """What is wrong with the folder's config.json, or "" if it holds a run config."""
    path = folder / runs.CONFIG_FILE
    if not path.is_file():
        return f"{runs.CONFIG_FILE} is missing"
    try:
        record = json.loads(path.read_text())
    except ValueError as error:  # includes a file that is not UTF-8
        return f"{runs.CONFIG_FILE} is not valid JSON ({error})"
    except OSError as error:
        return f"{runs.CONFIG_FILE} cannot be read ({error.strerror})"
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return f"{runs.CONFIG_FILE} holds no training config"
    return ""


def _metrics_row(line: str) -> dict[str, Any] | None:
    """One parsed metrics line, or None if it is cut short or lacks a required number."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    numbers_ok = all(isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
                     for key in REQUIRED_METRICS)
    return row if numbers_ok else None


def read_metric_rows(folder: Path, live: bool = False) -> tuple[list[dict[str, Any]], str]:
    """The per-epoch rows of metrics.jsonl and what is wrong with the file ("" if nothing).

    Stops at the first bad line. A cut last line of a live run is one being written: it is skipped
    without a complaint. A missing file gives no rows and no complaint (the run may not have
    finished an epoch yet); `read_record` decides whether that is damage.
    """
    try:
        lines = (folder / runs.METRICS_FILE).read_text().splitlines()
    except FileNotFoundError:
        return [], ""
    except (OSError, ValueError) as error:
        return [], f"{runs.METRICS_FILE} cannot be read ({error})"
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _metrics_row(line)
        if row is None:
            if live and number == len(lines):
                break
            return rows, f"{runs.METRICS_FILE} line {number} is cut short or not a metrics row"
        rows.append(row)
    return rows, ""


def describe_settings(config: dict[str, Any]) -> str:
    """The settings that tell runs apart, in one line, e.g. "fastcnn · adam lr 0.003 · onecycle · batch 128"."""
    model, task, data = config.get("model", {}), config.get("task", {}), config.get("data", {})
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler", {})
    parts = [str(model.get("arch", "?"))]
    if task.get("kind") == "binary":
        parts.append(f"is it a {task.get('target_digit')}?")
    name, lr = optimizer.get("name", "?"), optimizer.get("lr")
    parts.append(f"{name} lr {lr:g}" if isinstance(lr, int | float) else str(name))
    if optimizer.get("weight_decay"):
        parts.append(f"wd {optimizer['weight_decay']:g}")
    parts.append(f"{scheduler.get('name', 'none')} schedule")
    parts.append(f"batch {data.get('batch_size', '?')}")
    parts.append(f"{config.get('epochs', '?')} epochs")
    if data.get("augment"):
        parts.append("augmented")
    if task.get("label_smoothing"):
        parts.append(f"label smoothing {task['label_smoothing']:g}")
    if data.get("train_subset"):
        parts.append(f"{data['train_subset']:,} train images")
    return " · ".join(parts)


def _throughput(rows: list[dict[str, Any]]) -> float | None:
    """Training images per second over the whole run: each epoch's rate weighted by its training time."""
    rates = [(row.get("samples_per_second"), row.get("train_seconds", row.get("seconds"))) for row in rows]
    pairs = [(rate, seconds) for rate, seconds in rates if isinstance(rate, int | float) and
             isinstance(seconds, int | float) and seconds > 0]
    if not pairs:
        return None
    return sum(rate * seconds for rate, seconds in pairs) / sum(seconds for _, seconds in pairs)


def _metric_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Epochs done, final and best test accuracy, wall time and throughput from the metrics rows."""
    if not rows:
        return {}
    best = max(rows, key=lambda row: row["test_accuracy"])  # max keeps the first epoch that got there
    last = rows[-1]
    elapsed = last.get("elapsed_seconds")
    return {
        "epochs_done": int(last["epoch"]),
        "final_test_accuracy": float(last["test_accuracy"]),
        "best_test_accuracy": float(best["test_accuracy"]),
        "best_epoch": int(best["epoch"]),
        "wall_seconds": float(elapsed) if isinstance(elapsed, int | float) else None,
        "samples_per_second": _throughput(rows),
    }


def _damaged(folder: Path, problem: str, live: bool) -> RunRecord:
    return RunRecord(run_id=folder.name, folder=folder, name=folder.name, status=DAMAGED, message=problem, live=live)


def _status_of(status: dict[str, Any], live: bool) -> tuple[str, str]:
    """(status, message) as the list shows them; a "running" run whose process is gone is interrupted."""
    state, message = str(status.get("status", "unknown")), str(status.get("message", ""))
    if state == "running" and not live:
        return runs.INTERRUPTED, f"status.json says running, but its process (pid {status.get('pid')}) has ended"
    return state, message


def _missing_metrics_problem(status: dict[str, Any], has_rows: bool, folder: Path) -> str:
    """Damage when metrics.jsonl is absent or empty although the run says it got somewhere."""
    if has_rows:
        return ""
    epochs = status.get("epoch", 0)
    if status.get("status") == "finished" or (isinstance(epochs, int) and epochs > 0):
        return f"{runs.METRICS_FILE} is missing or empty, but status.json reports {epochs} epochs done"
    if not (folder / runs.STATUS_FILE).exists():
        return f"neither {runs.STATUS_FILE} nor {runs.METRICS_FILE} exists: the run never started or lost its files"
    return ""


def read_record(folder: Path) -> RunRecord:
    """The list line of one run folder; a folder whose config or metrics cannot be read comes back damaged."""
    status = runs.read_status(folder)
    live = runs.is_live(status)
    problem = config_problem(folder)
    if problem:
        return _damaged(folder, problem, live)
    rows, problem = read_metric_rows(folder, live)
    problem = problem or _missing_metrics_problem(status, bool(rows), folder)
    if problem:
        return _damaged(folder, problem, live)
    try:
        return _healthy_record(folder, status, live, rows)
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # fields of the wrong type
        return _damaged(folder, f"{runs.CONFIG_FILE} is not a run config ({type(error).__name__}: {error})", live)


def _healthy_record(folder: Path, status: dict[str, Any], live: bool, rows: list[dict[str, Any]]) -> RunRecord:
    info = runs.run_info(folder)
    record = runs.read_config(folder)
    state, message = _status_of(status, live)
    params = record.get("param_count")
    return RunRecord(
        run_id=folder.name, folder=folder, name=info.name.strip() or folder.name, status=state, message=message,
        preset=info.preset, arch=info.arch, task=info.task, dataset=info.dataset,
        param_count=params if isinstance(params, int) and params > 0 else None, created=info.created,
        total_epochs=info.total_epochs, settings=describe_settings(record["config"]), live=live,
        **_metric_summary(rows),
    )


def _is_run_folder(path: Path) -> bool:
    """A folder whose name could be a run id (hidden and oddly named folders are not runs)."""
    try:
        runs.check_run_id(path.name)
    except runs.RunError:
        return False
    return path.is_dir()


def list_run_records(root: Path | str | None = None) -> list[RunRecord]:
    """Every run folder under the runs root, newest first, damaged ones (with the reason) last."""
    base = runs.runs_root(root)
    if not base.is_dir():
        return []
    records = [read_record(folder) for folder in base.iterdir() if _is_run_folder(folder)]
    return sorted(records, key=lambda record: (not record.damaged, record.created, record.run_id), reverse=True)


def runs_fingerprint(root: Path | str | None = None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Each run folder's name with the modification time and size of its JSON files.

    It changes whenever a run is added, removed, renamed or writes an epoch: a cache key that lets
    live runs refresh without re-reading every file on every page run.
    """
    base = runs.runs_root(root)
    if not base.is_dir():
        return ()
    stamps = []
    for folder in sorted(path for path in base.iterdir() if _is_run_folder(path)):
        stamp: list[int] = []
        for name in RUN_FILES:
            try:
                stat = (folder / name).stat()
                stamp += [stat.st_mtime_ns, stat.st_size]
            except OSError:
                stamp += [0, -1]
        stamps.append((folder.name, tuple(stamp)))
    return tuple(stamps)


# ---------------------------------------------------------------------------------------------
# Metrics of several runs


def metrics_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every epoch of the given runs in one long table: run_id, name, then METRIC_COLUMNS (NaN if absent)."""
    columns = ["run_id", "name", *METRIC_COLUMNS]
    frames = []
    for record in records:
        rows, _ = read_metric_rows(record.folder, record.live)  # a damaged file still gives its good lines
        if rows:
            frame = pd.DataFrame(rows).reindex(columns=list(METRIC_COLUMNS))
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


# ---------------------------------------------------------------------------------------------
# Rename and delete


def rename_run(run_id: str, name: str, root: Path | str | None = None) -> str:
    """Store a new display name in the run's config.json (rewritten atomically); the id and folder stay.

    Whitespace runs become one space; an empty name makes the list show the run id again.
    Returns the name stored. RunError for an unknown run, a damaged config or a bad name.
    """
    folder = runs.run_dir(run_id, root)
    clean = " ".join(name.split())
    if len(clean) > NAME_MAX:
        raise runs.RunError(f"a run name can have at most {NAME_MAX} characters, this one has {len(clean)}")
    if not clean.isprintable():
        raise runs.RunError("a run name cannot hold control characters")
    runs.update_record(folder, name=clean)  # atomic: a live run or another page never sees half a config
    return clean


def delete_run(run_id: str, root: Path | str | None = None) -> Path:
    """Remove a run folder with everything in it; return the path removed.

    Refused (RunError) for an id that is not one safe path component, a folder that is a link or
    lies outside the runs root, and a run that is still training.
    """
    base = runs.runs_root(root).resolve()
    folder = runs.run_dir(run_id, root)
    if folder.is_symlink() or folder.resolve().parent != base:
        raise runs.RunError(f"{folder} is not a folder inside the runs root {base}; not deleting it")
    if runs.is_live(runs.read_status(folder)):
        raise runs.RunError(f"run {run_id!r} is still training: stop it on the Train page before deleting it")
    shutil.rmtree(folder)
    return folder

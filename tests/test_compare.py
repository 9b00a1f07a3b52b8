"""core.compare on real tiny runs: the run list (damaged folders too), metrics, two runs' answers, rename, delete."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from core import compare, runs
from core.compare import CompareError
from core.runs import DAMAGED
from core.training import preset_config
from tests.compare_fixtures import TINY_DATA

pytest_plugins = ["tests.compare_fixtures"]


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / runs.METRICS_FILE).read_text().splitlines()]


def record_of(root: Path, run_id: str) -> runs.RunRecord:
    return next(record for record in runs.list_runs(root) if record.run_id == run_id)


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---------------------------------------------------------------------------------------------
# The run list


def test_lists_real_runs_from_their_json_files(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    import torch

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the run list must not load weights"))
    records = runs.list_runs(root)
    assert [record.run_id for record in records] == [lenet_id, fast_id]  # newest first
    fast = record_of(root, fast_id)
    rows = rows_of(root / fast_id)
    assert (fast.name, fast.status, fast.preset, fast.arch, fast.task, fast.dataset) == (
        "tiny fastcnn", "finished", "fast", "fastcnn", "multiclass", "mnist")
    assert (fast.epochs_done, fast.total_epochs) == (2, 2)
    assert fast.best_test_accuracy == max(row["test_accuracy"] for row in rows)
    assert fast.final_test_accuracy == rows[-1]["test_accuracy"]
    assert fast.wall_seconds == rows[-1]["elapsed_seconds"]
    # The whole run's pace: every training image of both epochs over the time spent training them.
    train_seconds = sum(row["train_seconds"] for row in rows)
    assert fast.samples_per_second == pytest.approx(2 * TINY_DATA["train_subset"] / train_seconds, rel=1e-3)
    assert fast.param_count == runs.read_config(root / fast_id)["param_count"] > 0
    assert fast.created.startswith("20") and not fast.live and not fast.damaged
    preset = preset_config("fast")
    optimizer, scheduler = preset.optimizer, preset.scheduler.name
    assert fast.settings.startswith(f"fastcnn · {optimizer.name} lr {optimizer.lr:g}")
    assert f"{scheduler} schedule · batch {preset.data.batch_size} · 2 epochs" in fast.settings


def test_param_count_matches_the_built_network(runs_copy):
    from core import models

    root, run_ids = runs_copy
    for run_id in run_ids:
        arch_config = runs.read_config(root / run_id)["arch_config"]
        network = models.build_model(**arch_config)
        assert record_of(root, run_id).param_count == sum(p.numel() for p in network.parameters())


def test_no_root_or_empty_root_lists_nothing(tmp_path):
    assert runs.list_runs(tmp_path / "absent") == []
    assert runs.list_runs(tmp_path) == []
    assert compare.runs_fingerprint(tmp_path / "absent") == ()


def test_folders_that_cannot_be_runs_are_skipped(runs_copy):
    root, run_ids = runs_copy
    (root / ".hidden-temp").mkdir()
    (root / "has space").mkdir()
    (root / "loose-file.txt").write_text("not a run")
    assert sorted(record.run_id for record in runs.list_runs(root)) == sorted(run_ids)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda folder: (folder / runs.CONFIG_FILE).unlink(), "config.json is missing"),
        (lambda folder: (folder / runs.CONFIG_FILE).write_text('{"run_id": "x", "config": {'),
         "config.json is not valid JSON"),
        (lambda folder: (folder / runs.CONFIG_FILE).write_bytes(b"\xff\xfe garbage"), "config.json is not valid JSON"),
        (lambda folder: (folder / runs.CONFIG_FILE).write_text("[1, 2]"), "config.json holds no training config"),
        (lambda folder: (folder / runs.CONFIG_FILE).write_text('{"config": {"model": [1]}}'),
         "config.json is not a run config"),
        (lambda folder: (folder / runs.METRICS_FILE).unlink(), "metrics.jsonl is missing or empty"),
        (lambda folder: (folder / runs.METRICS_FILE).write_text(""), "metrics.jsonl is missing or empty"),
    ],
    ids=["missing-config", "corrupt-config", "binary-config", "not-a-config", "wrong-types", "missing-metrics",
         "empty-metrics"],
)
def test_damaged_folders_are_listed_with_the_reason(runs_copy, damage, reason):
    root, (fast_id, lenet_id) = runs_copy
    damage(root / fast_id)
    records = runs.list_runs(root)
    assert [record.run_id for record in records] == [lenet_id, fast_id]  # damaged ones last
    broken = records[-1]
    assert broken.status == DAMAGED and broken.damaged and reason in broken.message
    assert broken.name == fast_id  # nothing else is trusted from a damaged folder
    assert not records[0].damaged


def test_torn_last_metrics_line_is_named_unless_the_run_is_writing_it(runs_copy):
    root, (fast_id, _) = runs_copy
    path = root / fast_id / runs.METRICS_FILE
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a crash in the middle of the last line
    torn = record_of(root, fast_id)
    assert not torn.damaged and torn.epochs_done == 1  # the good line is kept
    assert [str(problem) for problem in torn.problems] == [
        "metrics.jsonl line 2 was cut short (the worker stopped mid-write)"]

    runs.write_status(root / fast_id, "running", epoch=1, total_epochs=2)  # this process writes it: live
    live = record_of(root, fast_id)
    assert not live.damaged and live.live and live.status == "running"
    assert live.epochs_done == 1 and live.problems == ()  # the line being written is not counted, nor a problem


def test_bad_line_in_the_middle_is_reported_and_the_rest_kept_even_for_a_live_run(runs_copy):
    root, (fast_id, _) = runs_copy
    lines = (root / fast_id / runs.METRICS_FILE).read_text().splitlines()
    (root / fast_id / runs.METRICS_FILE).write_text("\n".join([lines[0], '{"epoch": 2, "train_loss": "x"}',
                                                               lines[1]]) + "\n")
    runs.write_status(root / fast_id, "running", epoch=2, total_epochs=3)
    record = record_of(root, fast_id)
    assert not record.damaged and record.epochs_done == 2
    assert [str(problem) for problem in record.problems] == ["metrics.jsonl line 2 is not a metrics row"]


def test_a_run_that_has_not_finished_an_epoch_is_not_damaged(runs_copy):
    root, (fast_id, _) = runs_copy
    (root / fast_id / runs.METRICS_FILE).unlink()
    runs.write_status(root / fast_id, "running", message="starting epoch 1 of 2", epoch=0, total_epochs=2)
    record = record_of(root, fast_id)
    assert (record.status, record.epochs_done, record.best_test_accuracy) == ("running", 0, None)
    assert record.live and not record.damaged


def test_folder_with_config_only_is_unknown_not_damaged(runs_copy):
    root, (fast_id, _) = runs_copy
    for name in (runs.METRICS_FILE, runs.STATUS_FILE):
        (root / fast_id / name).unlink()
    record = record_of(root, fast_id)
    assert (record.status, record.message, record.damaged) == ("unknown", "no status.json", False)


def test_running_status_of_a_dead_process_reads_crashed(runs_copy):
    root, (fast_id, _) = runs_copy
    runs.write_status(root / fast_id, "running", epoch=2, total_epochs=4)
    status = json.loads((root / fast_id / runs.STATUS_FILE).read_text())
    status["pid"] = dead_pid()
    (root / fast_id / runs.STATUS_FILE).write_text(json.dumps(status))
    record = record_of(root, fast_id)
    assert record.status == runs.CRASHED and not record.live and "is gone" in record.message


def test_fingerprint_changes_when_a_run_changes(runs_copy):
    root, (fast_id, _) = runs_copy
    before = compare.runs_fingerprint(root)
    assert [name for name, _ in before] == sorted(runs_copy[1])
    runs.append_metrics(root / fast_id, replace(runs.read_metrics(root / fast_id).rows[-1], epoch=3))
    after_epoch = compare.runs_fingerprint(root)
    assert after_epoch != before
    runs.rename_run(fast_id, "renamed", root)
    after_rename = compare.runs_fingerprint(root)
    assert after_rename != after_epoch
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        runs.write_status(root / fast_id, "running", epoch=3, total_epochs=4, pid=worker.pid)
        running = compare.runs_fingerprint(root)
    finally:
        worker.kill()
        worker.wait()
    assert compare.runs_fingerprint(root) != running  # its worker died; none of its files changed


# ---------------------------------------------------------------------------------------------
# Metrics of several runs


def test_metrics_frame_holds_every_epoch_of_every_run(runs_copy):
    root, (fast_id, lenet_id) = runs_copy
    records = [record_of(root, fast_id), record_of(root, lenet_id)]
    frame = compare.metrics_frame(records)
    assert list(frame.columns) == ["run_id", "name", *compare.METRIC_COLUMNS]
    assert frame["run_id"].tolist() == [fast_id, fast_id, lenet_id]
    assert frame["name"].tolist() == ["tiny fastcnn", "tiny fastcnn", "tiny lenet"]
    for run_id in (fast_id, lenet_id):
        part = frame[frame["run_id"] == run_id]
        for column in compare.METRIC_COLUMNS:
            assert part[column].tolist() == [row[column] for row in rows_of(root / run_id)]


def test_metrics_frame_of_nothing_has_the_columns():
    frame = compare.metrics_frame([])
    assert frame.empty and list(frame.columns) == ["run_id", "name", *compare.METRIC_COLUMNS]


def test_best_points_pick_the_best_epoch_and_order_the_runs(runs_copy):
    root, run_ids = runs_copy
    frame = compare.metrics_frame([record_of(root, run_id) for run_id in run_ids])
    by_accuracy = compare.best_points(frame, "test_accuracy", higher_is_better=True)
    assert [point.value for point in by_accuracy] == sorted(
        (max(row["test_accuracy"] for row in rows_of(root / run_id)) for run_id in run_ids), reverse=True)
    by_loss = compare.best_points(frame, "test_loss", higher_is_better=False)
    assert by_loss[0].value == min(frame["test_loss"])
    best = by_accuracy[0]
    best_row = next(row for row in rows_of(root / best.run_id) if row["epoch"] == best.epoch)
    assert best_row["test_accuracy"] == best.value and best_row["elapsed_seconds"] == best.elapsed_seconds


def test_best_points_keep_the_first_epoch_of_a_tie():
    import pandas as pd

    frame = pd.DataFrame({"run_id": ["a", "a", "a"], "epoch": [1, 2, 3], "test_accuracy": [0.5, 0.9, 0.9],
                          "elapsed_seconds": [1.0, 2.0, 3.0]})
    assert compare.best_points(frame, "test_accuracy")[0].epoch == 2


def test_csv_has_a_line_per_run_and_epoch(runs_copy):
    root, run_ids = runs_copy
    records = [record_of(root, run_id) for run_id in run_ids]
    lines = list(csv.DictReader(io.StringIO(compare.metrics_csv(records))))
    assert len(lines) == 3 and list(lines[0]) == ["run_id", "name", *compare.METRIC_COLUMNS]
    first = rows_of(root / run_ids[0])[0]
    assert lines[0]["run_id"] == run_ids[0] and int(lines[0]["epoch"]) == 1
    assert float(lines[0]["test_accuracy"]) == pytest.approx(first["test_accuracy"])
    assert float(lines[0]["train_loss"]) == pytest.approx(first["train_loss"])


# ---------------------------------------------------------------------------------------------
# Two runs' answers on the test set


def test_confusion_difference_and_flipped_digits_against_references(tiny_runs):
    root, (fast_id, lenet_id) = tiny_runs
    a, b = runs.read_evaluation(root / fast_id), runs.read_evaluation(root / lenet_id)
    assert a is not None and b is not None
    result = compare.compare_evaluations(a, b)

    assert result.count == len(a.labels) == 500
    reference_a = sk_confusion_matrix(a.labels, a.predictions, labels=range(10))
    reference_b = sk_confusion_matrix(b.labels, b.predictions, labels=range(10))
    assert result.confusion_a == reference_a.tolist() == a.confusion
    assert result.difference == (reference_a - reference_b).tolist()

    right_a = {i for i, (y, p) in enumerate(zip(a.labels, a.predictions, strict=True)) if y == p}
    right_b = {i for i, (y, p) in enumerate(zip(b.labels, b.predictions, strict=True)) if y == p}
    assert {digit.index for digit in result.right_only_a} == right_a - right_b
    assert {digit.index for digit in result.right_only_b} == right_b - right_a
    assert result.right_only_a and result.right_only_b  # two tiny networks differ on some digits
    for digit in result.right_only_a:
        assert digit.prediction_a == digit.label != digit.prediction_b
        assert (digit.confidence_a, digit.confidence_b) == (a.confidences[digit.index], b.confidences[digit.index])
    confidences = [digit.confidence_b for digit in result.right_only_a]
    assert confidences == sorted(confidences, reverse=True)  # B's surest mistakes first

    # The counts add up: the diagonal gain is the net number of flipped digits, rows keep their totals.
    diagonal_gain = sum(result.difference[c][c] for c in range(10))
    assert diagonal_gain == len(result.right_only_a) - len(result.right_only_b)
    assert all(sum(row) == 0 for row in result.difference)
    assert result.accuracy_a - result.accuracy_b == pytest.approx(diagonal_gain / 500)
    assert result.accuracy_a == pytest.approx(a.accuracy)


def test_largest_changes_are_off_diagonal_and_biggest_first(tiny_runs):
    root, (fast_id, lenet_id) = tiny_runs
    a, b = runs.read_evaluation(root / fast_id), runs.read_evaluation(root / lenet_id)
    assert a is not None and b is not None
    result = compare.compare_evaluations(a, b)
    changes = result.largest_changes(5)
    assert changes and all(true != predicted and delta == result.difference[true][predicted]
                           for true, predicted, delta in changes)
    off_diagonal = [abs(v) for t, row in enumerate(result.difference) for p, v in enumerate(row) if t != p]
    assert abs(changes[0][2]) == max(off_diagonal)


def test_runs_tested_on_more_and_fewer_digits_compare_on_the_shared_ones(tiny_runs):
    root, (fast_id, lenet_id) = tiny_runs
    a, b = runs.read_evaluation(root / fast_id), runs.read_evaluation(root / lenet_id)
    assert a is not None and b is not None
    shorter = replace(b, labels=b.labels[:300], predictions=b.predictions[:300], confidences=b.confidences[:300])
    result = compare.compare_evaluations(a, shorter)
    assert result.count == 300
    assert sum(map(sum, result.confusion_a)) == 300
    assert all(digit.index < 300 for digit in result.right_only_a + result.right_only_b)


def test_different_questions_cannot_be_compared(tiny_runs):
    root, (fast_id, lenet_id) = tiny_runs
    a, b = runs.read_evaluation(root / fast_id), runs.read_evaluation(root / lenet_id)
    assert a is not None and b is not None
    with pytest.raises(CompareError, match="different images"):
        compare.compare_evaluations(a, replace(b, labels=[(y + 1) % 10 for y in b.labels]))
    with pytest.raises(CompareError, match="one vs rest"):
        compare.compare_evaluations(a, replace(b, task="binary"))


def test_binary_runs_count_yes_no_answers():
    from core.metrics import BinaryMetrics, Evaluation

    def binary(predictions: list[int]) -> Evaluation:
        metrics = BinaryMetrics(8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, [], [])
        return Evaluation(task="binary", test_loss=0.0, accuracy=0.0, labels=[8, 3, 8, 1], predictions=predictions,
                          confidences=[0.9, 0.8, 0.7, 0.6], per_class_accuracy=[], confusion=[[0, 0], [0, 0]],
                          binary=metrics)

    result = compare.compare_evaluations(binary([1, 0, 0, 1]), binary([1, 1, 1, 0]))
    assert result.confusion_a == [[1, 1], [1, 1]]  # rows: not 8, 8
    assert result.confusion_b == [[1, 1], [0, 2]]
    assert [digit.index for digit in result.right_only_a] == [1]
    assert [digit.index for digit in result.right_only_b] == [2, 3]  # A's surer mistake (0.7) first
    assert (result.accuracy_a, result.accuracy_b) == (0.5, 0.75)


# ---------------------------------------------------------------------------------------------
# Rename and delete


def test_rename_changes_only_the_display_name(runs_copy):
    root, (fast_id, _) = runs_copy
    before = runs.read_config(root / fast_id)
    assert runs.rename_run(fast_id, "  my   best\trun ", root) == "my best run"
    after = runs.read_config(root / fast_id)
    assert after == {**before, "name": "my best run"}
    assert (root / fast_id).is_dir() and record_of(root, fast_id).name == "my best run"
    assert sorted(path.name for path in (root / fast_id).iterdir() if path.name.startswith(".")) == []  # no temp left
    runs.rename_run(fast_id, "", root)
    assert record_of(root, fast_id).name == fast_id  # an empty name shows the id


def test_rename_refuses_bad_names_and_damaged_or_unknown_runs(runs_copy):
    root, (fast_id, lenet_id) = runs_copy
    with pytest.raises(runs.RunError, match="at most"):
        runs.rename_run(fast_id, "x" * (runs.NAME_MAX + 1), root)
    with pytest.raises(runs.RunError, match="control"):
        runs.rename_run(fast_id, "bell\x07", root)
    with pytest.raises(runs.RunError, match="no run"):
        runs.rename_run("20990101-000000-nothing", "x", root)
    (root / lenet_id / runs.CONFIG_FILE).write_text("{")
    with pytest.raises(runs.RunError):
        runs.rename_run(lenet_id, "x", root)


def test_delete_removes_the_folder(runs_copy):
    root, (fast_id, lenet_id) = runs_copy
    assert runs.delete_run(fast_id, root) == root / fast_id
    assert not (root / fast_id).exists() and [r.run_id for r in runs.list_runs(root)] == [lenet_id]


def test_delete_removes_a_damaged_folder(runs_copy):
    root, (fast_id, _) = runs_copy
    (root / fast_id / runs.CONFIG_FILE).unlink()
    runs.delete_run(fast_id, root)
    assert not (root / fast_id).exists()


@pytest.mark.parametrize("run_id", ["..", "../outside", "/tmp", "a/b", "", "."])
def test_delete_refuses_paths_outside_the_root(runs_copy, run_id):
    root, run_ids = runs_copy
    (root.parent / "outside").mkdir()
    with pytest.raises(runs.RunError):
        runs.delete_run(run_id, root)
    assert (root.parent / "outside").is_dir() and all((root / run_id).is_dir() for run_id in run_ids)


def test_delete_refuses_a_link_to_a_folder_elsewhere(runs_copy, tmp_path):
    root, _ = runs_copy
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    os.symlink(elsewhere, root / "20990101-000000-link")
    with pytest.raises(runs.RunError, match="not a folder inside"):
        runs.delete_run("20990101-000000-link", root)
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_delete_refuses_a_run_still_training(runs_copy):
    root, (fast_id, _) = runs_copy
    runs.write_status(root / fast_id, "running", epoch=1, total_epochs=2)  # written by this living process
    with pytest.raises(runs.RunError, match="still running: stop it first"):
        runs.delete_run(fast_id, root)
    assert (root / fast_id).is_dir()


def test_delete_allows_a_run_whose_process_has_ended(runs_copy):
    root, (fast_id, _) = runs_copy
    runs.write_status(root / fast_id, "running", epoch=1, total_epochs=2)
    status = json.loads((root / fast_id / runs.STATUS_FILE).read_text())
    (root / fast_id / runs.STATUS_FILE).write_text(json.dumps({**status, "pid": dead_pid()}))
    runs.delete_run(fast_id, root)
    assert not (root / fast_id).exists()


# ---------------------------------------------------------------------------------------------
# The comparisons in words


def accuracy_frame(values: dict[str, list[float]]):
    import pandas as pd

    rows = [{"run_id": run_id, "epoch": epoch, "test_accuracy": value, "test_loss": 1 - value,
             "elapsed_seconds": 10.0 * epoch} for run_id, series in values.items()
            for epoch, value in enumerate(series, start=1)]
    return pd.DataFrame(rows)


def english(messages) -> str:
    return " ".join(str(message) for message in messages)


def test_curves_in_words_give_the_gap_to_the_best_run():
    frame = accuracy_frame({"a": [0.90, 0.9812], "b": [0.95, 0.9790]})
    text = english(compare.curves_messages(frame, "test_accuracy", {"a": "A", "b": "B"}))
    assert text.startswith("**A** reaches 98.12% test accuracy at epoch 2 (20 s).")
    assert "That is 0.22 points above **B** (97.90% at epoch 2 (20 s))." in text  # 98.12 - 97.90 by hand
    loss = english(compare.curves_messages(frame, "test_loss", {"a": "A", "b": "B"}))
    assert loss.startswith("**A** gets down to 0.0188 test loss") and "That is 0.0022 below **B**" in loss


def test_a_tie_is_said_to_be_equal_never_zero_points_above():
    frame = accuracy_frame({"a": [0.97, 0.98], "b": [0.98, 0.97], "c": [0.979999, 0.5]})
    text = english(compare.curves_messages(frame, "test_accuracy", {"a": "A", "b": "B", "c": "C"}))
    assert text.startswith("**A** reaches 98.00%")  # a tie keeps the first run of the list
    assert "**B** is equal: 98.00% at epoch 1 (10 s)." in text
    assert "**C** is equal" in text  # 0.0001 points shows as 0.00: equal as shown
    assert "0.00 points" not in text


def test_two_runs_in_words_and_their_tie(tiny_runs):
    root, run_ids = tiny_runs
    evaluation_a, evaluation_b = (runs.read_evaluation(root / run_id) for run_id in run_ids)
    assert evaluation_a is not None and evaluation_b is not None
    result = compare.compare_evaluations(evaluation_a, evaluation_b)
    text = english(compare.difference_messages(result, ("one", "two")))
    net = len(result.right_only_a) - len(result.right_only_b)
    assert f"Right for A and wrong for B: {len(result.right_only_a)} images." in text
    assert f"Right for B and wrong for A: {len(result.right_only_b)}." in text
    assert f"The difference: {abs(net)} more right for {'A' if net > 0 else 'B'} (" in text
    same = compare.compare_evaluations(evaluation_a, evaluation_a)
    tie = english(compare.difference_messages(same, ("one", "one again")))
    assert "They are equal: neither gets more of these images right." in tie and "net 0" not in tie


def test_size_in_words():
    text = english(compare.size_messages([("big", 40000, 0.99), ("small", 10000, 0.97)]))
    assert text == ("The most accurate selected run, **big**, reaches 99.00% with 40,000 parameters. The smallest, "
                    "**small**, has 4.0× fewer parameters (10,000) and reaches 97.00%, 2.00 points less.")
    assert "reaches the same 99.00%" in english(compare.size_messages([("big", 40000, 0.99), ("small", 100, 0.99)]))

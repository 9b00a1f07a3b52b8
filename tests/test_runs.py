"""Run folders: safe ids and names, metadata files, tolerant readers."""

from __future__ import annotations

import json
import os
import time

import pytest

from core import runs
from core.runs import RunError


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("My run #1", "my-run-1"),
        ("  Adam, lr=0.01  ", "adam-lr-0.01"),
        ("", "run"),
        ("éèê", "run"),
        ("a" * 80, "a" * 40),
    ],
)
def test_names_become_safe_slugs(name, slug):
    assert runs.slugify(name) == slug


@pytest.mark.parametrize("name", ["../escape", "..", "a/b", "/etc/passwd", "..\\win", "x/../../y"])
def test_names_that_could_escape_the_root_are_rejected(name):
    with pytest.raises(RunError):
        runs.slugify(name)


@pytest.mark.parametrize("run_id", ["../escape", "..", "a/b", "/abs", ".hidden", "", "a..b", "x" * 200, "ok\n"])
def test_run_ids_that_are_not_one_safe_name_are_rejected(run_id, tmp_path):
    with pytest.raises(RunError, match="invalid run id"):
        runs.run_dir(run_id, tmp_path)


def config(preset="fast", arch="fastcnn"):
    return {"preset": preset, "model": {"arch": arch}, "task": {"kind": "multiclass"}, "data": {"dataset": "mnist"},
            "epochs": 2}


def test_new_runs_get_unique_ids_and_a_config_record(tmp_path):
    first_id, first = runs.new_run(config(), name="Trial A", arch_config={"arch": "fastcnn"}, param_count=7,
                                   root=tmp_path)
    second_id, second = runs.new_run(config(), name="Trial A", root=tmp_path)
    assert first_id != second_id and first.parent == second.parent == tmp_path
    assert first_id.endswith("-trial-a")
    record = runs.read_config(first)
    assert record["run_id"] == first_id and record["name"] == "Trial A" and record["preset"] == "fast"
    assert record["param_count"] == 7 and record["config"]["epochs"] == 2
    assert runs.run_dir(first_id, tmp_path) == first


def test_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "elsewhere"))
    run_id, folder = runs.new_run(config())
    assert folder.parent == tmp_path / "elsewhere" and runs.run_dir(run_id) == folder


def metrics(epoch: int, accuracy: float) -> runs.EpochMetrics:
    return runs.EpochMetrics(epoch=epoch, train_loss=0.5, train_accuracy=0.8, test_loss=0.4, test_accuracy=accuracy)


def test_metrics_reader_tolerates_a_torn_last_line_and_names_bad_ones(tmp_path):
    runs.append_metrics(tmp_path, metrics(1, 0.9))
    with open(tmp_path / runs.METRICS_FILE, "a") as f:
        f.write('{"epoch": "two"}\n')  # a line of the wrong shape
    runs.append_metrics(tmp_path, metrics(2, 0.95))
    with open(tmp_path / runs.METRICS_FILE, "a") as f:
        f.write('{"epoch": 3, "test_acc')  # a worker killed mid-line
    log = runs.read_metrics(tmp_path)
    assert [row.epoch for row in log.rows] == [1, 2] and log.rows[1].test_accuracy == 0.95
    assert [str(problem) for problem in log.problems] == [
        "metrics.jsonl line 2 is not a metrics row",
        "metrics.jsonl line 4 was cut short (the worker stopped mid-write)"]
    assert [str(problem) for problem in runs.read_metrics(tmp_path, live=True).problems] == [
        "metrics.jsonl line 2 is not a metrics row"]
    assert runs.truncate_metrics(tmp_path, 1) == [metrics(1, 0.9)]
    runs.append_metrics(tmp_path, metrics(2, 0.96))
    assert [row.test_accuracy for row in runs.read_metrics(tmp_path).rows] == [0.9, 0.96]
    assert runs.read_metrics(tmp_path).problems == ()
    assert runs.read_metrics(tmp_path / "nothing") == runs.MetricsLog((), ())


def test_batch_series_is_downsampled_for_charts_and_continues_after_truncation(tmp_path):
    log = runs.BatchLog(tmp_path)
    for step in range(1, 9401):  # a long run: 9,400 batches
        log.add(step, loss=1.0 if step % 2 else 3.0, lr=step * 1e-5)
    log.close()
    with open(tmp_path / runs.BATCHES_FILE, "a") as f:
        f.write("9401,0.5")  # torn: skipped
    series = runs.read_batches(tmp_path, max_points=2000)
    assert series.total == 9400 and series.bucket == 5 and len(series.steps) == 1880
    assert series.steps[:2] == (5, 10) and series.losses[0] == pytest.approx((1 + 3 + 1 + 3 + 1) / 5)
    assert series.lrs[-1] == pytest.approx(0.094)
    runs.truncate_batches(tmp_path, 100)
    again = runs.BatchLog(tmp_path)
    again.add(101, 2.0, 1e-3)
    again.close()
    series = runs.read_batches(tmp_path)
    assert series.steps == tuple(range(1, 102)) and series.bucket == 1


def test_status_is_written_whole_and_read_back(tmp_path):
    assert runs.read_status(tmp_path)["status"] == "unknown"
    runs.write_status(tmp_path, "running", message="epoch 1", epoch=1, total_epochs=3, test_accuracy=0.9)
    status = runs.read_status(tmp_path)
    assert status["status"] == "running" and status["epoch"] == 1 and status["test_accuracy"] == 0.9
    assert (status["pid"], status["host"]) == (os.getpid(), runs.HOST) and status["heartbeat"] <= time.time()
    assert [p.name for p in tmp_path.iterdir()] == [runs.STATUS_FILE]  # no temp file left
    with pytest.raises(ValueError):
        runs.write_status(tmp_path, "exploded")
    with pytest.raises(ValueError):
        runs.write_status(tmp_path, "crashed")  # derived by readers, never written


def test_list_runs_reads_metadata_only_and_skips_strangers(tmp_path):
    old_id, _ = runs.new_run(config(preset="seed002", arch="seed002"), root=tmp_path)
    new_id, new = runs.new_run(config(), name="newer", root=tmp_path)
    runs.write_status(new, "finished", epoch=2, total_epochs=2)
    runs.append_metrics(new, metrics(1, 0.98))
    runs.append_metrics(new, metrics(2, 0.97))
    (new / runs.BEST_CHECKPOINT).write_bytes(b"not even a checkpoint")  # never opened by list_runs
    (tmp_path / "junk").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".queue").mkdir()
    infos = runs.list_runs(tmp_path)
    assert [info.run_id for info in infos] == [new_id, old_id, "junk"]
    newest = infos[0]
    assert (newest.status, newest.epochs_done, newest.fraction_done) == ("finished", 2, 1.0)
    assert (newest.final_test_accuracy, newest.best_test_accuracy, newest.best_epoch) == (0.97, 0.98, 1)
    assert (infos[1].status, infos[1].arch, infos[1].preset) == ("unknown", "seed002", "seed002")
    assert infos[2].damaged and "config.json is missing" in infos[2].message
    assert runs.list_runs(tmp_path / "none") == []


def dead(folder, **changes):
    """Rewrite the folder's status as if written by another process (pid, start time, heartbeat)."""
    status = {**runs.read_status(folder), **changes}
    (folder / runs.STATUS_FILE).write_text(json.dumps(status))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(pid=2**22 + 4321), "is gone"),  # above Linux's largest pid: no such process
        (dict(pid_started=1), "is gone"),  # this pid now belongs to another process than the one that wrote it
        (dict(heartbeat=1.0), "no heartbeat"),  # a worker on another machine, or hung, long silent
    ],
    ids=["no-such-pid", "pid-reused", "stale-heartbeat"],
)
def test_an_active_run_whose_worker_is_gone_reads_crashed(tmp_path, change, reason):
    run_id, folder = runs.new_run(config(), root=tmp_path)
    runs.write_status(folder, "running", epoch=0, total_epochs=2)
    assert runs.find_run(run_id, tmp_path).status == "running"
    dead(folder, **change)
    record = runs.find_run(run_id, tmp_path)
    assert record.status == "crashed" and not record.live and record.resumable and reason in record.message


def test_a_corrupt_status_reads_crashed_and_stays_resumable(tmp_path):
    run_id, folder = runs.new_run(config(), root=tmp_path)
    (folder / runs.STATUS_FILE).write_text('{"status": "runn')
    record = runs.find_run(run_id, tmp_path)
    assert record.status == "crashed" and record.resumable and "status.json cannot be read" in record.message


def test_a_live_run_cannot_be_resumed_twice(tmp_path):
    from core.training import config_to_dict, preset_config, train

    run_id, folder = runs.new_run(config_to_dict(preset_config("fast", epochs=1, train_subset=640)), root=tmp_path)
    runs.write_status(folder, "running", epoch=1, total_epochs=1, pid=1)  # pid 1 lives and is not us
    dead(folder, pid_started=None)
    with pytest.raises(runs.RunError, match="still running in another process"):
        next(iter(train(None, resume=run_id, runs_root=tmp_path)))


def test_stop_requests_and_their_refusals(tmp_path):
    run_id, folder = runs.new_run(config(), root=tmp_path)
    runs.write_status(folder, "running", epoch=0, total_epochs=2)
    assert "stops after its current batch" in str(runs.stop_run(run_id, tmp_path))
    assert runs.stop_requested(folder) and runs.StopSignal(folder).is_set()
    assert "already asked to stop" in str(runs.stop_run(run_id, tmp_path))  # twice: no harm, says so
    runs.write_status(folder, "stopped", epoch=0, total_epochs=2)
    with pytest.raises(runs.RunError, match=r"not training \(it is stopped\)"):
        runs.stop_run(run_id, tmp_path)


def test_a_sweep_trial_carries_its_study_and_state(tmp_path):
    run_id, folder = runs.new_run(config(), root=tmp_path)
    runs.update_record(folder, sweep={"study": "lr-search", "trial": 3, "state": "pruned"})
    record = runs.find_run(run_id, tmp_path)
    assert (record.study, record.trial, record.trial_state) == ("lr-search", 3, "pruned")
    assert runs.find_run(runs.new_run(config(), root=tmp_path)[0], tmp_path).study == ""


def test_settings_line_in_english_and_chinese():
    from core.i18n import Translator, render
    from core.training import config_to_dict, preset_config

    config = config_to_dict(preset_config("seed000", epochs=1, train_subset=2000))
    assert runs.describe_settings(config) == ("seed000 · is it class 8? · adam lr 0.001 · no schedule · batch 64 · "
                                              "1 epoch · 2,000 train images")
    chinese = " · ".join(render(part, Translator("zh_CN")) for part in runs.settings_messages(config))
    assert chinese == ("seed000 · 是不是第 8 类？ · adam 学习率 0.001 · 无学习率调度 · 批大小 64 · 1 轮 · "
                       "2,000 张训练图像")


def test_time_left_counts_later_epochs_as_long_as_finished_ones_took_evaluation_included():
    from core.runs import EpochMetrics, _eta

    config = {"data": {"batch_size": 100}}
    status = {"samples_per_second": 1000.0, "steps_per_epoch": 50, "total_epochs": 4, "epoch": 0, "step": 10}
    assert _eta(status, config) == pytest.approx((4 * 50 - 10) * 100 / 1000)  # first epoch: its own pace only
    finished = [EpochMetrics(epoch=1, train_loss=0.5, train_accuracy=0.9, test_loss=0.4, test_accuracy=0.9,
                             seconds=8.0, train_seconds=6.0)]
    status |= {"epoch": 1, "step": 20}
    # the 30 steps left of epoch 2 at its pace (3 s), its evaluation (2 s), then epochs 3 and 4 at 8 s each
    assert _eta(status, config, finished) == pytest.approx(3.0 + 2.0 + 2 * 8.0)
    assert _eta({"steps_per_epoch": 50, "total_epochs": 4}, config, finished) is None  # no pace yet

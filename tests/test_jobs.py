"""The background training job: live snapshots, stop, failure messages, resume continuing the charts."""

from __future__ import annotations

import time

import pytest

from core.jobs import TrainingJob, resume_job
from core.train import preset_config

SMALL = dict(train_subset=2000, test_subset=500, batch_size=100)


def wait_until(job: TrainingJob, predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = job.snapshot()
        if predicate(snapshot):
            return snapshot
        time.sleep(0.02)
    raise AssertionError(f"condition not reached; last status {job.snapshot().status}")


def test_job_runs_to_the_end_and_records_everything(tmp_path, mnist):
    job = TrainingJob(preset_config("fast", epochs=2, **SMALL), runs_root=tmp_path, dataset=mnist).start()
    running = wait_until(job, lambda s: s.last_batch is not None)
    assert running.status == "running" and 0 < running.fraction_done < 1
    job.join(120)
    done = job.snapshot()
    assert done.status == "finished" and done.fraction_done == 1.0 and done.eta_seconds is None
    assert [p.epoch for p in done.epochs] == [1, 2]
    assert len(done.batch_losses) == len(done.batch_steps) == len(done.batch_lrs) == 2 * 20
    assert done.finished is not None and done.finished.evaluation.accuracy == done.epochs[-1].test_accuracy
    assert done.checkpoints >= 2


def test_stop_then_resume_continues_the_same_run(tmp_path, mnist):
    # Many epochs, so the stop always lands before the end however slow the machine is.
    job = TrainingJob(preset_config("fast", scheduler="none", epochs=50, **SMALL), runs_root=tmp_path,
                      dataset=mnist).start()
    wait_until(job, lambda s: len(s.epochs) >= 1)
    job.stop()
    job.join(60)
    stopped = job.snapshot()
    assert stopped.status == "stopped" and stopped.started is not None
    run_id = stopped.started.run_id
    saved_epochs = len(stopped.epochs)

    again = resume_job(run_id, runs_root=tmp_path, dataset=mnist, epochs=saved_epochs + 1).start()
    again.join(120)
    resumed = again.snapshot()
    assert resumed.status == "finished" and resumed.started is not None
    assert resumed.started.run_id == run_id and resumed.started.start_epoch == saved_epochs
    assert [p.epoch for p in resumed.epochs] == list(range(1, saved_epochs + 2))  # earlier ones read back


def test_invalid_settings_fail_with_the_reason(tmp_path, mnist):
    job = TrainingJob(preset_config("fast", epochs=1, **SMALL), resume="../../etc", runs_root=tmp_path,
                      dataset=mnist).start()
    job.join(30)
    snapshot = job.snapshot()
    assert snapshot.status == "failed" and snapshot.message


def test_huge_learning_rate_fails_with_advice(tmp_path, mnist):
    config = preset_config("seed003", lr=1e6, epochs=1, **SMALL)
    job = TrainingJob(config, runs_root=tmp_path, dataset=mnist).start()
    job.join(60)
    snapshot = job.snapshot()
    assert snapshot.status == "failed"
    assert "learning rate" in snapshot.message.lower()


@pytest.mark.parametrize("preset", ["seed000"])
def test_binary_job_reports_binary_metrics(tmp_path, mnist, preset):
    job = TrainingJob(preset_config(preset, epochs=1, **SMALL), runs_root=tmp_path, dataset=mnist).start()
    job.join(120)
    finished = job.snapshot().finished
    assert finished is not None and finished.evaluation.binary is not None
    assert finished.evaluation.binary.baseline_accuracy == pytest.approx(0.9, abs=0.05)

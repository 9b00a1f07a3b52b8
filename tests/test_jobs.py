"""Runs as jobs: real worker processes, the queue, stop and resume from anywhere, crashes and server exits.

Every wait here polls the run folder for a state, never a fixed time: these pass on a busy CPU too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core import jobs, runs
from core.checkpoints import load_checkpoint
from core.training import ConfigError, preset_config
from tests.conftest import stop_live_runs

# A few hundred real images: an epoch takes about a second on 2 cores; many epochs so a stop lands mid-run.
SMALL = dict(train_subset=640, test_subset=300, batch_size=64, scheduler="none")


def wait_for(root: Path, run_id: str, check: Callable[[runs.RunRecord], bool],
             timeout: float = 180.0) -> runs.RunRecord:
    """Poll the run's record until `check` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    record = runs.find_run(run_id, root)
    while time.monotonic() < deadline:
        record = runs.find_run(run_id, root)
        if check(record):
            return record
        time.sleep(0.1)
    log = (record.run_dir / runs.LOG_FILE).read_text() if (record.run_dir / runs.LOG_FILE).exists() else ""
    raise AssertionError(f"run {run_id} never got there: {record.status} {record.message}\n{log}")


def ended(record: runs.RunRecord) -> bool:
    return not record.live


def worker_of(record: runs.RunRecord) -> int:
    """The pid of the run's worker process, checked against /proc before a test signals it."""
    assert record.pid is not None and record.pid != os.getpid()
    command = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    assert b"worker" in command and record.run_id.encode() in command, command  # `python -m core worker RUN_ID`
    return record.pid


@pytest.fixture
def root(tmp_path):
    """A private runs root; every worker still running at the end is stopped and waited for."""
    yield tmp_path
    stop_live_runs(tmp_path)


@pytest.mark.slow
def test_a_launched_run_trains_in_its_own_process_to_the_end(root):
    run_id = jobs.launch(preset_config("fast", epochs=2, **SMALL), name="job", root=root)
    assert runs.find_run(run_id, root).status == "queued"  # the folder is the record from the first moment
    running = wait_for(root, run_id, lambda r: r.status == "running")
    assert worker_of(running) and running.host == runs.HOST  # `python -m core worker RUN_ID`, not this process
    done = wait_for(root, run_id, ended)
    assert done.status == "finished" and done.epochs_done == 2 and done.fraction_done == 1.0
    assert done.final_test_accuracy == runs.read_metrics(done.run_dir).rows[-1].test_accuracy
    series = runs.read_batches(done.run_dir)
    assert series.steps == tuple(range(1, 2 * 10 + 1))  # 640 images / 64 = 10 batches an epoch
    log = (done.run_dir / runs.LOG_FILE).read_text()
    assert "epoch 2/2" in log and "finished" in log
    record = runs.read_config(done.run_dir)
    assert record["param_count"] > 0 and record["arch_config"]["arch"] == "fastcnn"  # filled in by the worker


@pytest.mark.slow
def test_stop_a_running_run_then_resume_the_same_run_to_the_end(root):
    run_id = jobs.launch(preset_config("fast", epochs=200, **SMALL), root=root)
    wait_for(root, run_id, lambda r: r.epochs_done >= 1)
    assert "stops after its current batch" in str(runs.stop_run(run_id, root))
    stopped = wait_for(root, run_id, ended)
    assert stopped.status == "stopped" and stopped.resumable and stopped.epochs_done >= 1
    assert (stopped.run_dir / runs.LAST_CHECKPOINT).is_file()
    with pytest.raises(runs.RunError, match="not training"):
        runs.stop_run(run_id, root)  # stopping a stopped run says so and changes nothing

    saved = stopped.epochs_done
    jobs.launch_resume(run_id, root=root, epochs=saved + 2)
    done = wait_for(root, run_id, lambda r: r.status == "finished")
    assert done.run_dir == stopped.run_dir and done.epochs_done == saved + 2
    assert [row.epoch for row in runs.read_metrics(done.run_dir).rows] == list(range(1, saved + 3))
    steps = runs.read_batches(done.run_dir).steps
    assert steps == tuple(range(1, 10 * (saved + 2) + 1))  # continued from the checkpoint, not restarted


@pytest.mark.slow
def test_a_killed_worker_reads_crashed_everywhere_and_resumes(root, capsys):
    from core.__main__ import main

    run_id = jobs.launch(preset_config("fast", epochs=200, **SMALL), root=root)
    running = wait_for(root, run_id, lambda r: r.epochs_done >= 1 and r.status == "running")
    os.kill(worker_of(running), signal.SIGKILL)
    crashed = wait_for(root, run_id, lambda r: r.status == "crashed", timeout=30)
    assert "is gone" in crashed.message and crashed.resumable and not crashed.live
    assert main(["runs", "list", "--runs-dir", str(root), "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["status"] == "crashed"  # the CLI agrees
    # A torn checkpoint write left behind by the kill is ignored and cleaned up.
    (crashed.run_dir / ".last.pt.torn.tmp").write_bytes(b"half a checkpoint")

    jobs.launch_resume(run_id, root=root, epochs=crashed.epochs_done + 1)
    done = wait_for(root, run_id, lambda r: r.status == "finished")
    assert done.epochs_done == crashed.epochs_done + 1
    assert not (crashed.run_dir / ".last.pt.torn.tmp").exists()


@pytest.mark.slow
def test_the_queue_runs_one_at_a_time_and_a_queued_run_can_leave_it(root):
    jobs.set_max_parallel(1, root)
    first = jobs.launch(preset_config("fast", epochs=200, **SMALL), name="first", root=root)
    wait_for(root, first, lambda r: r.status == "running")
    second = jobs.launch(preset_config("fast", epochs=1, **SMALL), name="second", root=root)
    third = jobs.launch(preset_config("fast", epochs=1, **SMALL), name="third", root=root)
    waiting = wait_for(root, third, lambda r: r.status == "queued" and r.queue_position == 1)
    assert "1 run ahead" in waiting.message
    assert wait_for(root, second, lambda r: r.queue_position == 0).status == "queued"
    assert str(runs.stop_run(third, root)) == f"run {third} leaves the queue without training"
    left = wait_for(root, third, ended)
    assert left.status == "stopped" and "before it started" in left.message and left.epochs_done == 0

    runs.stop_run(first, root)
    wait_for(root, first, ended)
    done = wait_for(root, second, ended)
    assert done.status == "finished"
    first_end = runs.read_status(runs.run_dir(first, root))["heartbeat"]
    second_started = runs.read_status(runs.run_dir(second, root))["started"]
    assert first_end <= time.mktime(time.strptime(second_started, "%Y-%m-%dT%H:%M:%S%z")) + 1


@pytest.mark.slow
def test_runs_keep_training_when_the_process_that_launched_them_exits(root):
    # A Streamlit server stopped with Ctrl-C: its workers are in their own sessions and go on.
    script = (
        "import sys; from core import jobs; from core.training import preset_config; "
        f"print(jobs.launch(preset_config('fast', epochs=200, **{SMALL!r}), root={str(root)!r}))"
    )
    launcher = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              cwd=jobs.PROJECT_ROOT, timeout=120)
    run_id = launcher.stdout.strip()
    assert runs.find_run(run_id, root).live  # the launcher has exited; its worker has not
    trained = wait_for(root, run_id, lambda r: r.epochs_done >= 2)  # and it goes on training epochs
    assert trained.live and trained.status == "running"
    runs.request_stop(trained.run_dir)
    assert wait_for(root, run_id, ended).status == "stopped"


@pytest.mark.slow
def test_sigterm_stops_a_worker_cleanly_at_a_saved_epoch(root):
    run_id = jobs.launch(preset_config("fast", epochs=200, **SMALL), root=root)
    running = wait_for(root, run_id, lambda r: r.epochs_done >= 1 and r.status == "running")
    os.kill(worker_of(running), signal.SIGTERM)
    stopped = wait_for(root, run_id, ended)
    assert stopped.status == "stopped" and stopped.epochs_done >= 1 and stopped.resumable
    assert len(runs.read_metrics(stopped.run_dir).rows) == stopped.epochs_done  # never a half-written folder
    # The saved epoch: the checkpoint it resumes from holds exactly the epochs the metrics report.
    saved = load_checkpoint(stopped.run_dir / runs.LAST_CHECKPOINT)
    assert saved.epoch == stopped.epochs_done


@pytest.mark.slow
def test_deleting_a_live_run_is_refused_and_a_vanished_folder_ends_its_worker(root):
    run_id = jobs.launch(preset_config("fast", epochs=200, **SMALL), root=root)
    running = wait_for(root, run_id, lambda r: r.status == "running")
    with pytest.raises(runs.RunError, match="stop it first"):
        runs.delete_run(run_id, root)
    import shutil

    pid = worker_of(running)
    shutil.rmtree(running.run_dir)  # deleted behind the registry's back
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and runs._pid_runs(pid, None):
        time.sleep(0.1)
    assert not runs._pid_runs(pid, None), "the worker kept running without its folder"
    assert not running.run_dir.exists()


def test_launch_refuses_bad_settings_before_making_a_folder(root):
    with pytest.raises(ConfigError, match="one-cycle schedule has only 4 steps"):  # found without loading data
        jobs.launch(preset_config("fast", train_subset=256), root=root)
    with pytest.raises(runs.RunError, match="must not contain"):
        jobs.launch(preset_config("fast", **SMALL), name="../escape", root=root)
    assert list(root.iterdir()) == []


def test_resume_refusals_name_the_reason(root):
    from core.training import config_to_dict

    run_id, folder = runs.new_run(config_to_dict(preset_config("fast", epochs=1, **SMALL)), root=root)
    runs.append_metrics(folder, runs.EpochMetrics(epoch=1, train_loss=1, train_accuracy=0.5, test_loss=1,
                                                  test_accuracy=0.5))
    runs.write_status(folder, "finished", epoch=1, total_epochs=1)
    with pytest.raises(ConfigError, match="already has 1 of 1 epochs; ask for more epochs"):
        jobs.launch_resume(run_id, root=root)
    runs.write_status(folder, "diverged", epoch=1, total_epochs=2)
    with pytest.raises(runs.RunError, match="lower learning rate"):
        jobs.launch_resume(run_id, root=root)
    runs.write_status(folder, "stopped", epoch=1, total_epochs=2)
    with pytest.raises(ConfigError, match="only epochs, device and threads change"):
        jobs.prepare_resume(run_id, root, lr=0.1)


def test_queue_size_is_a_setting_with_a_default_for_the_machine(root, monkeypatch):
    monkeypatch.delenv(jobs.MAX_PARALLEL_ENV, raising=False)
    assert jobs.max_parallel(root) == max(1, jobs.cpu_count() // 2)
    jobs.set_max_parallel(3, root)
    assert jobs.max_parallel(root) == 3 and jobs.worker_threads(root) == max(1, jobs.cpu_count() // 3)
    with pytest.raises(runs.RunError, match="whole number from 1 to 64"):
        jobs.set_max_parallel(0, root)
    monkeypatch.setenv(jobs.MAX_PARALLEL_ENV, "2")
    assert jobs.max_parallel(root) == 2

"""The same engine under torchrun: two local gloo processes make one run, and checkpoints move between
world sizes. Each test starts real processes; they take a few seconds on 2 cores."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import distributed, jobs, runs
from core.training import preset_config

ROOT = Path(__file__).resolve().parents[1]
# LeNet (no BatchNorm, no dropout), 20 global batches of 64: one process and two see the same gradients.
SMALL = ["--preset", "seed003", "--train-subset", "1280", "--test-subset", "300", "--quiet", "--json"]
LOSS_TOLERANCE = 1e-4  # relative: only the order of floating-point sums differs


def train(runs_dir: Path, *args: str, processes: int = 1) -> dict:
    """`python -m core train ...`, under torchrun with `processes` > 1; its JSON outcome."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    options = ["--quiet", "--json"] if "--resume" in args else SMALL  # a resumed run keeps its settings
    done = subprocess.run([*launcher, "-m", "core", "train", *options, "--runs-dir", str(runs_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("{")]  # rank 0 alone prints
    return json.loads(line)


def first_epoch(run_dir: str) -> runs.EpochMetrics:
    return runs.read_metrics(Path(run_dir)).rows[0]


@pytest.mark.slow
def test_two_processes_make_one_run_with_the_loss_of_one_process(tmp_path):
    two = train(tmp_path / "two", "--epochs", "1", processes=2)
    one = train(tmp_path / "one", "--epochs", "1")
    assert (two["status"], two["world_size"], one["world_size"]) == ("finished", 2, 1)
    assert len(runs.list_runs(tmp_path / "two")) == 1  # one run folder, written by rank 0 alone
    record = runs.read_config(Path(two["run_dir"]))
    assert (record["world_size"], record["global_batch_size"], record["per_process_batch_size"]) == (2, 64, 32)
    assert first_epoch(two["run_dir"]).train_loss == pytest.approx(first_epoch(one["run_dir"]).train_loss,
                                                                   rel=LOSS_TOLERANCE)
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1 / 300)
    assert runs.read_batches(Path(two["run_dir"])).steps == tuple(range(1, 21))  # global steps, once


@pytest.mark.slow
def test_a_ddp_checkpoint_resumes_in_one_process_and_the_reverse(tmp_path):
    two = train(tmp_path, "--epochs", "1", processes=2)
    resumed = train(tmp_path, "--resume", two["run_id"], "--epochs", "2")
    assert (resumed["status"], resumed["epochs"], resumed["run_id"]) == ("finished", 2, two["run_id"])
    back = train(tmp_path, "--resume", two["run_id"], "--epochs", "3", processes=2)
    assert (back["status"], back["epochs"], back["world_size"]) == ("finished", 3, 2)
    assert [row.epoch for row in runs.read_metrics(Path(two["run_dir"])).rows] == [1, 2, 3]


@pytest.mark.slow
def test_the_launcher_starts_a_data_parallel_run(tmp_path):
    config = preset_config("seed003", epochs=1, train_subset=1280, test_subset=300)
    run_id = jobs.launch(config, name="two processes", root=tmp_path, processes=2)
    deadline = time.monotonic() + 300
    while runs.find_run(run_id, tmp_path).live or runs.find_run(run_id, tmp_path).status == "unknown":
        assert time.monotonic() < deadline, (tmp_path / run_id / runs.LOG_FILE).read_text()
        time.sleep(0.1)
    record = runs.find_run(run_id, tmp_path)
    assert record.status == "finished", (tmp_path / run_id / runs.LOG_FILE).read_text()
    assert runs.read_config(record.run_dir)["world_size"] == 2


def test_an_uneven_split_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(jobs.ConfigError, match="must split the batch of 64 evenly"):
        jobs.launch(preset_config("seed003"), root=tmp_path, processes=3)
    assert list(tmp_path.iterdir()) == []


def test_without_torchrun_the_world_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world = distributed.from_environment()
    assert (world.rank, world.size, world.main, world.distributed) == (0, 1, True, False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.from_environment() == distributed.World(rank=3, size=4, local_rank=1)
    assert distributed.device_type("cpu") == "cpu"

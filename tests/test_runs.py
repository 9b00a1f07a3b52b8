"""Run folders: safe ids and names, metadata files, tolerant readers."""

from __future__ import annotations

import json

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


def test_metrics_reader_skips_a_line_cut_short(tmp_path):
    runs.append_metrics(tmp_path, {"epoch": 1, "test_accuracy": 0.9})
    runs.append_metrics(tmp_path, {"epoch": 2, "test_accuracy": 0.95})
    with open(tmp_path / runs.METRICS_FILE, "a") as f:
        f.write('{"epoch": 3, "test_acc')  # a crash mid-line
    assert [row["epoch"] for row in runs.read_metrics(tmp_path)] == [1, 2]
    assert runs.truncate_metrics(tmp_path, 1) == [{"epoch": 1, "test_accuracy": 0.9}]
    runs.append_metrics(tmp_path, {"epoch": 2, "test_accuracy": 0.96})
    assert [row["epoch"] for row in runs.read_metrics(tmp_path)] == [1, 2]
    assert runs.read_metrics(tmp_path / "nothing") == []


def test_status_is_written_whole_and_read_back(tmp_path):
    assert runs.read_status(tmp_path)["status"] == "unknown"
    runs.write_status(tmp_path, "running", message="epoch 1", epoch=1, total_epochs=3, test_accuracy=0.9)
    status = runs.read_status(tmp_path)
    assert status["status"] == "running" and status["epoch"] == 1 and status["test_accuracy"] == 0.9
    assert [p.name for p in tmp_path.iterdir()] == [runs.STATUS_FILE]  # no temp file left
    with pytest.raises(ValueError):
        runs.write_status(tmp_path, "exploded")


def test_list_runs_reads_metadata_only_and_skips_strangers(tmp_path):
    old_id, _ = runs.new_run(config(preset="seed002", arch="seed002"), root=tmp_path)
    new_id, new = runs.new_run(config(), name="newer", root=tmp_path)
    runs.write_status(new, "finished", epoch=2, total_epochs=2, test_accuracy=0.99, best_test_accuracy=0.991)
    (new / runs.BEST_CHECKPOINT).write_bytes(b"not even a checkpoint")  # never opened by list_runs
    (tmp_path / "junk").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / runs.CONFIG_FILE).write_text(json.dumps({"no": "config"}))
    infos = runs.list_runs(tmp_path)
    assert [info.run_id for info in infos] == [new_id, old_id]
    newest = infos[0]
    assert (newest.status, newest.epoch) == ("finished", 2)
    assert (newest.test_accuracy, newest.best_test_accuracy) == (0.99, 0.991)
    assert (infos[1].status, infos[1].arch, infos[1].preset) == ("unknown", "seed002", "seed002")
    assert runs.list_runs(tmp_path / "none") == []


def test_a_run_whose_process_died_is_interrupted_and_a_live_one_cannot_be_resumed_twice(tmp_path):
    from core.train import config_to_dict, preset_config, train

    config = preset_config("fast", epochs=1, train_subset=640, test_subset=300)
    run_id, folder = runs.new_run(config_to_dict(config), name="ghost", root=tmp_path)
    runs.write_status(folder, "running", epoch=1, total_epochs=1)  # written by this (live) process
    (info,) = runs.list_runs(tmp_path)
    assert info.status == "running"
    with pytest.raises(runs.RunError, match="still training in another process"):
        next(iter(train(None, resume=run_id, runs_root=tmp_path)))

    status = runs.read_status(folder)
    status["pid"] = 2**22 + 4321  # above Linux's largest pid: no such process
    (folder / runs.STATUS_FILE).write_text(json.dumps(status))
    (info,) = runs.list_runs(tmp_path)
    assert info.status == runs.INTERRUPTED

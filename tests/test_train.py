"""The training engine on small real subsets: convergence, events, resume, stop, failure, config checks."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from core import runs
from core.__main__ import main
from core.checkpoints import load_checkpoint
from core.i18n import Translator, message_from_fields, render
from core.models import output_kind
from core.training import (
    FLAT_FIELDS,
    PRESETS,
    BatchEnd,
    CheckpointSaved,
    ConfigError,
    Diverged,
    EpochEnd,
    Failed,
    Finished,
    RunStarted,
    Stopped,
    TaskConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    loss_function,
    override,
    preset_config,
    train,
)

TINY = {"train_subset": 640, "test_subset": 300, "threads": 2}  # a few seconds on 2 cores


def run_all(config, **kwargs):
    return list(train(config, **kwargs))


@pytest.mark.slow
def test_short_run_on_5000_real_images_converges(mnist, tmp_path):
    config = preset_config("fast", epochs=1, train_subset=5000, test_subset=2000, threads=2)
    events = run_all(config, runs_root=tmp_path, dataset=mnist, run_name="smoke test")

    started, finished = events[0], events[-1]
    steps = math.ceil(5000 / config.data.batch_size)
    assert isinstance(started, RunStarted) and started.steps_per_epoch == steps and started.train_size == 5000
    assert isinstance(finished, Finished)
    assert finished.test_accuracy > 0.90
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert [b.step for b in batches] == list(range(1, steps + 1))
    assert [type(e) for e in events[steps + 1 :]] == [EpochEnd, CheckpointSaved, CheckpointSaved, Finished]
    assert finished.run_id.endswith("-smoke-test")

    evaluation = finished.evaluation
    assert len(evaluation.predictions) == len(evaluation.confidences) == 2000
    assert evaluation.labels == mnist.test_labels[:2000].tolist()
    assert sum(map(sum, evaluation.confusion)) == 2000
    assert len(evaluation.per_class_accuracy) == 10
    assert all(0.1 <= c <= 1.0 for c in evaluation.confidences)
    assert runs.read_evaluation(finished.run_dir) == evaluation
    assert runs.read_status(finished.run_dir)["status"] == "finished"
    [row] = runs.read_metrics(finished.run_dir).rows
    assert row.test_accuracy == finished.test_accuracy and row.epoch == 1


def test_best_checkpoint_reproduces_the_reported_accuracy(mnist, tmp_path):
    config = preset_config("seed003", **TINY)
    finished = run_all(config, runs_root=tmp_path, dataset=mnist)[-1]
    loaded = load_checkpoint(finished.best_checkpoint)
    assert loaded.epoch == 1 and loaded.task == "multiclass" and loaded.dataset == "mnist"
    images = mnist.test_images[:300].unsqueeze(1).float() / 255
    x = (images - loaded.normalization.mean) / loaded.normalization.std
    with torch.inference_mode():
        predictions = loaded.model(x).argmax(dim=1)
    accuracy = (predictions == mnist.test_labels[:300]).double().mean().item()
    assert accuracy == pytest.approx(finished.best_test_accuracy, abs=1.5 / 300)  # a float tie may flip one


def test_resume_continues_epoch_count_and_metrics_file(mnist, tmp_path):
    first = run_all(preset_config("seed003", epochs=1, **TINY), runs_root=tmp_path, dataset=mnist)[-1]
    assert isinstance(first, Finished)
    events = run_all(preset_config("seed003", epochs=3, **TINY), resume=first.run_id, runs_root=tmp_path, dataset=mnist)
    assert events[0].start_epoch == 1 and events[0].total_epochs == 3
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3]
    assert events[-1].epochs == 3
    rows = runs.read_metrics(first.run_dir).rows
    assert [row.epoch for row in rows] == [1, 2, 3]
    assert rows[0].elapsed_seconds < rows[1].elapsed_seconds < rows[2].elapsed_seconds
    assert load_checkpoint(first.run_dir / "last.pt").epoch == 3
    with pytest.raises(ConfigError, match="already has 3 of 3 epochs"):
        run_all(None, resume=first.run_id, runs_root=tmp_path, dataset=mnist)


def test_stop_takes_effect_within_one_batch_and_run_resumes(mnist, tmp_path):
    stop = threading.Event()
    config = preset_config("seed003", epochs=2, **TINY)
    events = []
    for event in train(config, stop=stop, runs_root=tmp_path, dataset=mnist):
        events.append(event)
        if isinstance(event, BatchEnd) and event.epoch == 2 and event.step == 3:
            stop.set()
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert (batches[-1].epoch, batches[-1].step) == (2, 3)  # no step after the request
    stopped = events[-1]
    assert isinstance(stopped, Stopped) and stopped.epoch == 1
    assert runs.read_status(stopped.run_dir)["status"] == "stopped"

    resumed = run_all(None, resume=stopped.run_id, runs_root=tmp_path, dataset=mnist)
    assert resumed[0].start_epoch == 1 and isinstance(resumed[-1], Finished)
    assert [row.epoch for row in runs.read_metrics(stopped.run_dir).rows] == [1, 2]


def test_closing_the_stream_marks_the_run_stopped(mnist, tmp_path):
    events = train(preset_config("seed003", **TINY), runs_root=tmp_path, dataset=mnist)
    started = next(events)
    next(events)
    events.close()
    assert runs.read_status(started.run_dir)["status"] == "stopped"


def test_non_finite_loss_diverges_with_a_message_naming_the_learning_rate(mnist, tmp_path):
    config = preset_config("seed003", lr=1e12, momentum=0.0, **TINY)
    events = run_all(config, runs_root=tmp_path, dataset=mnist)
    diverged = events[-1]
    assert isinstance(diverged, Diverged) and diverged.cause == "non-finite loss"
    assert "set to 1e+12): that setting is probably too high for sgd on seed003. Try 1e+11 or lower" in diverged.message
    assert diverged.suggested_lr == pytest.approx(1e11)
    assert not any(isinstance(e, EpochEnd) for e in events)
    status = runs.read_status(diverged.run_dir)
    assert (status["status"], status["message"], status["suggested_lr"]) == ("diverged", diverged.message, 1e11)
    # The diverging batch is the last line of batches.csv, its loss as the engine saw it (not finite).
    step = status["message_params"]["step"]
    last = (diverged.run_dir / runs.BATCHES_FILE).read_text().splitlines()[-1].split(",")
    assert int(last[0]) == step and not math.isfinite(float(last[1])) and float(last[2]) == pytest.approx(1e12)
    assert runs.read_batches(diverged.run_dir).steps[-1] == step


def test_an_exploding_but_finite_loss_diverges(mnist, tmp_path):
    # fast at lr 10 reached a training loss of 4e10 and chance accuracy, and used to end "finished".
    config = preset_config("fast", lr=10.0, train_subset=6000, test_subset=500, threads=2)
    events = run_all(config, runs_root=tmp_path, dataset=mnist)
    diverged = events[-1]
    assert isinstance(diverged, Diverged) and diverged.cause in ("exploding loss", "non-finite loss")
    assert diverged.suggested_lr == pytest.approx(1.0) and "Try 1 or lower" in diverged.message
    assert runs.find_run(diverged.run_id, tmp_path).status == "diverged"
    if diverged.cause == "exploding loss":  # "it started near" the first batch's loss, as the loss chart shows
        first_loss = runs.read_batches(diverged.run_dir).losses[0]
        status = runs.read_status(diverged.run_dir)
        assert status["message_params"]["start"] == pytest.approx(first_loss, rel=1e-4)
        assert first_loss < 2 * math.log(10)


def test_a_healthy_run_is_never_called_diverged(mnist, tmp_path):
    # plain SGD at lr 0.01 barely moves in 10 steps: slow, not diverging
    config = preset_config("seed003", train_subset=640, test_subset=300, threads=2)
    assert isinstance(run_all(config, runs_root=tmp_path, dataset=mnist)[-1], Finished)


def test_accuracy_at_chance_with_a_risen_loss_diverges(mnist, tmp_path, monkeypatch):
    import core.training.engine as engine

    monkeypatch.setattr(engine, "EXPLODE_FACTOR", math.inf)  # only the end-of-epoch check can catch it
    config = preset_config("fast", lr=10.0, scheduler="none", train_subset=640, test_subset=300, threads=2)
    diverged = run_all(config, runs_root=tmp_path, dataset=mnist)[-1]
    assert isinstance(diverged, Diverged) and diverged.cause in ("accuracy at chance", "non-finite loss")


@pytest.mark.slow
def test_cli_says_diverged(tmp_path, capsys):
    code = main(["train", "--preset", "fast", "--lr", "10", "--train-subset", "6000", "--test-subset", "2000",
                 "--runs-dir", str(tmp_path), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["status"] == "diverged" and result["suggested_lr"] == 1.0 and result["cause"]


def test_a_failing_write_ends_the_run_failed_with_the_message(mnist, tmp_path, monkeypatch):
    import core.training.engine as engine

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine, "save_checkpoint", disk_full)
    failed = run_all(preset_config("seed003", **TINY), runs_root=tmp_path, dataset=mnist)[-1]
    assert isinstance(failed, Failed) and "No space left on device" in failed.message
    status = runs.read_status(failed.run_dir)
    assert status["status"] == "failed" and "No space left on device" in status["message"]


def test_deleting_the_folder_of_a_running_run_ends_it_without_recreating_it(mnist, tmp_path):
    import shutil

    events = train(preset_config("seed003", epochs=3, **TINY), runs_root=tmp_path, dataset=mnist)
    started = next(events)
    next(events)  # one batch done
    shutil.rmtree(started.run_dir)
    rest = list(events)
    assert isinstance(rest[-1], Failed) and "was deleted" in rest[-1].message
    assert not started.run_dir.exists()


@pytest.mark.slow
def test_binary_task_reports_metrics_next_to_always_no(mnist, tmp_path):
    config = preset_config("seed000", epochs=1, train_subset=1000, test_subset=500, threads=2)
    finished = run_all(config, runs_root=tmp_path, dataset=mnist)[-1]
    binary = finished.evaluation.binary
    eights = (mnist.test_labels[:500] == 8).double().mean().item()
    assert binary.baseline_accuracy == pytest.approx(1 - eights)
    assert binary.accuracy == pytest.approx(finished.test_accuracy)
    assert len(finished.evaluation.confusion) == 2 and set(finished.evaluation.predictions) <= {0, 1}
    assert runs.read_evaluation(finished.run_dir).binary == binary


def test_binary_task_on_a_log_softmax_network_trains_its_single_logit(mnist, tmp_path):
    # With one output the registry drops seed002's log_softmax (constant 0 over one value): a logit.
    config = preset_config("seed002", task="binary", epochs=1, **TINY)
    events = run_all(config, runs_root=tmp_path, dataset=mnist)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.evaluation.binary is not None
    model = load_checkpoint(finished.run_dir / runs.LAST_CHECKPOINT).model
    assert output_kind(model) == "logits" and not isinstance(list(model.modules())[-1], torch.nn.LogSoftmax)
    # A log_softmax kept over the one output would be 0 for every image: P(8) = 0.5 for all, nothing learned.
    # The trained logit ranks the 8s above the rest better than chance (0.5); 0.65 measured after this one epoch.
    assert len(set(finished.evaluation.confidences)) > 1
    assert finished.evaluation.binary.roc_auc > 0.6


def test_loss_follows_the_head():
    logits = torch.randn(6, 10)
    digits = torch.tensor([0, 1, 2, 3, 8, 9])
    multiclass = TaskConfig()
    expected = F.cross_entropy(logits, digits)
    assert torch.allclose(loss_function(multiclass, "logits")(logits, digits), expected)
    assert torch.allclose(loss_function(multiclass, "log_softmax")(logits.log_softmax(1), digits), expected)
    probs = logits.softmax(1)  # tutorial 001: cross-entropy on top of a softmax output, faithfully
    assert torch.allclose(loss_function(multiclass, "softmax")(probs, digits), F.cross_entropy(probs, digits))
    binary = TaskConfig(kind="binary", target_digit=8)
    one_logit = torch.randn(6, 1)
    is_eight = torch.tensor([0.0, 0, 0, 0, 1, 0])
    expected_bce = F.binary_cross_entropy_with_logits(one_logit.squeeze(1), is_eight)
    assert torch.allclose(loss_function(binary, "logits")(one_logit, digits), expected_bce)


def test_presets_follow_the_tutorials():
    seed000, seed001, seed002, seed003 = (PRESETS[f"seed00{i}"] for i in range(4))
    assert (seed000.task.kind, seed000.task.target_digit, seed000.data.normalization) == ("binary", 8, "half")
    assert (seed000.optimizer.lr, seed000.data.batch_size, seed000.epochs) == (1e-3, 64, 5)
    assert (seed001.optimizer.lr, seed001.optimizer.betas, seed001.data.batch_size) == (1e-2, (0.9, 0.999), 32)
    assert (seed001.scheduler.name, seed001.scheduler.t_max, seed001.epochs) == ("none", 32, 50)
    assert seed001.data.normalization == "none"
    assert (seed002.optimizer.name, seed002.optimizer.lr, seed002.epochs, seed002.data.normalization) == (
        "adam", 1e-3, 20, "dataset",
    )
    assert (seed003.optimizer.name, seed003.optimizer.momentum, seed003.optimizer.lr) == ("sgd", 0.0, 0.01)
    assert (seed003.epochs, seed003.data.batch_size) == (1, 64)
    for name in PRESETS:
        assert preset_config(name).preset == name  # every preset validates against the registry


def test_config_round_trips_through_json():
    config = preset_config("best", lr=0.01, betas=(0.8, 0.99), options={"dropout": 0.2}, arch="bestcnn")
    again = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert again == config and isinstance(again.optimizer.betas, tuple)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": {"lr": -1}}, "lr must be a positive number"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer must be one of sgd, adam, adamw"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr must be a number, got .fast."),
        ({"data": {"batch_size": 0}}, "batch_size must be at least 1"),
        ({"data": {"colour": True}}, "unknown field data.colour"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"epochs": True}, "epochs must be a whole number, got True"),
        ({"task": {"kind": "binary", "target_digit": 12}}, "target_digit must be 0-9"),
        ({"model": {"arch": "resnet152"}}, "arch must be one of"),
        ({"model": {"arch": "fastcnn", "options": {"wings": 2}}}, "unknown option"),
        ({"scheduler": {"name": "onecycle", "pct_start": 1.5}}, "pct_start must be in"),
        ({"device": "tpu"}, "device must be auto, cpu"),
        ({"learning_rate": 1}, "unknown config field 'learning_rate'"),
    ],
)
def test_config_validation_names_the_problem(change, message):
    data = config_to_dict(TrainConfig())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_unknown_preset_and_override_are_refused():
    with pytest.raises(ConfigError, match="unknown preset 'fastest'"):
        preset_config("fastest")
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        preset_config("fast", learning_rate=0.1)


def test_cli_trains_and_prints_one_json_line(tmp_path, capsys):
    code = main([
        "train", "--preset", "seed003", "--train-subset", "640", "--test-subset", "300", "--threads", "2",
        "--runs-dir", str(tmp_path), "--run-name", "cli", "--json",
    ])
    out, err = capsys.readouterr()
    assert code == 0
    [line] = out.strip().splitlines()
    result = json.loads(line)
    expected = {"run_id", "run_dir", "test_accuracy", "test_loss", "epochs", "train_seconds", "samples_per_second",
                "best_checkpoint"}
    assert expected <= set(result) and result["epochs"] == 1
    assert load_checkpoint(result["best_checkpoint"]).epoch == 1
    assert "epoch 1/1" in err  # a plain line per epoch when stderr is not a terminal


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--lr", "-1"], "lr must be a positive number"),
        (["train", "--resume", "../../etc"], "invalid run id"),
        (["train", "--resume", "no-such-run"], "no run 'no-such-run'"),
        (["train", "--run-name", "../outside", "--train-subset", "64"], "must not contain"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(argv, message, tmp_path, capsys):
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_train_compares_both_pipelines(capsys):
    code = main(["bench", "train", "--preset", "seed003", "--train-subset", "640", "--test-subset", "300", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("baseline_epoch_seconds", "ours_epoch_seconds", "ratio", "baseline_test_accuracy",
                "ours_test_accuracy", "floor_epoch_seconds"):
        assert result[key] > 0
    assert result["ratio"] == pytest.approx(result["ours_epoch_seconds"] / result["baseline_epoch_seconds"])


def test_a_one_cycle_schedule_too_short_to_warm_up_is_refused(mnist, tmp_path):
    config = preset_config("fast", train_subset=256)  # 4 steps: torch's one-cycle would divide by zero
    with pytest.raises(ConfigError, match="one-cycle schedule has only 4 steps"):
        run_all(config, runs_root=tmp_path, dataset=mnist)
    assert not list(tmp_path.iterdir())


def test_every_config_setting_has_a_cli_flag(tmp_path):
    from core.__main__ import build_parser
    from core.train_cli import OVERRIDES, config_from_args

    args = build_parser().parse_args([
        "train", "--preset", "seed002", "--optimizer", "sgd", "--nesterov", "--momentum", "0.8", "--betas", "0.8",
        "0.99", "--scheduler", "step", "--step-size", "2", "--gamma", "0.5", "--pct-start", "0.3", "--min-lr", "1e-5",
        "--no-augment", "--target-digit", "3",
    ])
    config = config_from_args(args)
    assert (config.optimizer.nesterov, config.optimizer.momentum, config.optimizer.betas) == (True, 0.8, (0.8, 0.99))
    assert (config.scheduler.step_size, config.scheduler.gamma, config.scheduler.pct_start) == (2, 0.5, 0.3)
    assert (config.scheduler.min_lr, config.data.augment, config.task.target_digit) == (1e-5, False, 3)
    assert set(OVERRIDES) == set(FLAT_FIELDS) - {"preset", "options"}


def test_status_messages_carry_their_template_and_parameters_and_render_in_chinese(mnist, tmp_path):
    finished = run_all(preset_config("fast", epochs=1, **TINY), runs_root=tmp_path, dataset=mnist)[-1]
    status = runs.read_status(finished.run_dir)
    assert status["message_template"] == "finished %(epochs)d epoch" and status["message_params"] == {"epochs": 1}
    message = message_from_fields(status)
    assert message.english() == status["message"] == "finished 1 epoch"
    assert render(message, Translator("zh_CN")) == "已完成 1 轮训练"

    diverged = run_all(preset_config("seed003", lr=1e12, momentum=0.0, **TINY), runs_root=tmp_path, dataset=mnist)[-1]
    record = runs.find_run(diverged.run_dir.name, tmp_path)
    assert record.message_parts is not None and record.message_parts.english() == record.message == diverged.message
    chinese = render(record.message_parts, Translator("zh_CN"))
    assert "设定值很可能太高了" in chinese and "试试 1e+11 或更低的学习率" in chinese and "seed003" in chinese


def test_config_parsing_errors_are_templates_shown_in_chinese():
    from core.i18n import Translator, render

    data = config_to_dict(TrainConfig())
    data["optimizer"]["lr"] = "fast"
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    assert render(error.value.messages[0], Translator("zh_CN")) == "optimizer.lr 必须是数字，实际为 'fast'"
    with pytest.raises(ConfigError) as error:
        preset_config("fastest")
    assert render(error.value.messages[0], Translator("zh_CN")).startswith("未知的预设 'fastest'；可选：")


def test_distort_on_fashion_mnist_widens_nothing_and_adds_no_strokes(tmp_path, monkeypatch):
    """Box-filling scans and writing styles are other writers' digits: a Fashion-MNIST run gets only the warp."""
    from core.data import load_dataset
    from core.training import engine

    fashion = load_dataset("fashion-mnist")
    warps, strokes = [], []
    real_distort = engine.random_distort
    monkeypatch.setattr(engine, "random_distort", lambda x, aug, gen: warps.append(aug) or real_distort(x, aug, gen))
    monkeypatch.setattr(engine, "writing_styles", lambda images, *rest: strokes.append(1) or images)
    config = preset_config("seed002", device="cpu", dataset="fashion-mnist", distort=True, epochs=1, **TINY)
    finished = next(e for e in train(config, runs_root=tmp_path, dataset=fashion) if isinstance(e, Finished))
    assert warps and {aug.box_aspect for aug in warps} == {0.0} and not strokes
    assert warps[0] == replace(engine.DISTORTION, box_aspect=0.0)  # the rest of the warp as on MNIST
    record = json.loads((finished.run_dir / runs.CONFIG_FILE).read_text())["distortion"]
    assert record["box_aspect"] == 0.0 and record["writing_styles"] == 0.0 and record["elastic"] > 0


def test_a_distort_run_records_what_distort_meant_from_its_first_start(mnist, tmp_path):
    config = preset_config("seed002", device="cpu", distort=True, epochs=1, **TINY)
    finished = next(e for e in train(config, runs_root=tmp_path, dataset=mnist) if isinstance(e, Finished))
    record = json.loads((finished.run_dir / runs.CONFIG_FILE).read_text())
    assert record["distortion"]["box_aspect"] == 0.5 and record["distortion"]["writing_styles"] == 0.3
    record["distortion"]["box_aspect"] = 0.25  # as if an older version had started it
    (finished.run_dir / runs.CONFIG_FILE).write_text(json.dumps(record))
    resumed = override(config, epochs=2)
    for _ in train(resumed, runs_root=tmp_path, dataset=mnist, resume=finished.run_id):
        pass
    assert json.loads((finished.run_dir / runs.CONFIG_FILE).read_text())["distortion"]["box_aspect"] == 0.25
    record = json.loads((finished.run_dir / runs.CONFIG_FILE).read_text())
    del record["distortion"]  # a run from before the record: resuming it must not claim today's settings
    (finished.run_dir / runs.CONFIG_FILE).write_text(json.dumps(record))
    for _ in train(override(config, epochs=3), runs_root=tmp_path, dataset=mnist, resume=finished.run_id):
        pass
    assert "distortion" not in json.loads((finished.run_dir / runs.CONFIG_FILE).read_text())
    plain = next(e for e in train(override(config, distort=False), runs_root=tmp_path, dataset=mnist)
                 if isinstance(e, Finished))
    assert "distortion" not in json.loads((plain.run_dir / runs.CONFIG_FILE).read_text())

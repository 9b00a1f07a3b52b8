"""Sweeps: the search space, tiny real studies in a temporary SQLite file, pruning, and stopping a
detached sweep from another process.

Every wait polls a folder or the study for a state, never a fixed time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from core import runs, sweep
from core.i18n import Message, Translator, render
from core.training import FLAT_FIELDS, ConfigError

ROOT = Path(__file__).resolve().parents[1]
# A few hundred real images and a space narrowed to settings that learn: a trial takes about a second.
TINY = {"train_subset": 256, "test_subset": 200, "scheduler": "none", "epochs": 1}
SAFE_SPACE = ["optimizer=adam", "lr=0.001:0.003", "batch_size=64", "augment=false", "weight_decay=1e-6:1e-5"]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def stop_everything(root: Path) -> None:
    """Stop every live sweep and run under the root, and wait until none is live."""
    for status in sweep.list_sweeps(root):
        if status.live:
            runs.request_stop(status.folder)
    for record in runs.list_runs(root):
        if record.live:
            runs.request_stop(record.run_dir)
    wait_for(lambda: not any(s.live for s in sweep.list_sweeps(root))
             and not any(r.live for r in runs.list_runs(root)), "everything stopped", timeout=120)


@pytest.fixture
def root(tmp_path) -> Iterator[Path]:
    yield tmp_path
    stop_everything(tmp_path)


# A study with a failure and two accuracies: sgd at learning rate 50 diverges within its first epoch; adam learns.
MIXED_SPACE = ["optimizer=sgd,adam", "lr=0.001:50", "batch_size=64", "augment=false,true", "weight_decay=1e-6:1e-5"]
MIXED_TRIALS = [
    {"optimizer": "sgd", "lr": 50.0, "augment": False, "label_smoothing": 0.0},
    {"optimizer": "adam", "lr": 0.002, "augment": False, "label_smoothing": 0.1},
    {"optimizer": "adam", "lr": 0.003, "augment": True, "label_smoothing": 0.05},
]


def mixed_study(root: Path, trials: int = 3, name: str = "mixed") -> optuna.Study:
    """A real study in the root's default storage whose first `trials` of MIXED_TRIALS ran, in that order."""
    spec = sweep.make_spec("fast", TINY, sweep.parse_space(MIXED_SPACE))
    storage = f"sqlite:///{(sweep.sweeps_root(root) / sweep.DB_FILE).resolve()}"
    study = sweep.create_or_load(spec, name, storage)
    for params in MIXED_TRIALS[:trials]:
        study.enqueue_trial({"batch_size": 64, "weight_decay": 1e-6, **params})
    sweep.run_sweep(spec, trials, name, storage=storage, root=root)
    return sweep.load_study(name, storage, root)


CODE_NAMES = [name for name in FLAT_FIELDS if "_" in name or name in ("lr", "arch", "betas")]  # not English words


def raw_keys(text: str) -> list[str]:
    """Setting names as only the code spells them (train_subset, batch_size, lr) that a text shows."""
    return [name for name in CODE_NAMES if re.search(rf"(?<![\w-]){name}(?![\w-])", text)]


def tiny_spec(epochs: int = 1, space: list[str] | None = None) -> sweep.SweepSpec:
    return sweep.make_spec("fast", {**TINY, "epochs": epochs}, sweep.parse_space(space or SAFE_SPACE))


def cli(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", "sweep", *args, "--runs-dir", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------------------
# The space


def test_the_space_is_declared_once_and_narrowed_by_name():
    space = sweep.parse_space(["lr=1e-3:1e-1", "optimizer=sgd,adamw", "augment=false", "weight_decay=0"])
    assert space["lr"] == sweep.FloatRange(1e-3, 1e-1, log=True)
    assert space["optimizer"] == sweep.Choice(("sgd", "adamw"))
    assert space["augment"] == sweep.Choice((False,))
    assert space["weight_decay"] == sweep.FloatRange(0.0, 0.0)  # one value: fixed, and 0 is allowed then
    assert space["batch_size"] == sweep.SEARCH_SPACE["batch_size"]  # untouched entries stay as declared
    assert sweep.space_from_dict(sweep.space_to_dict(space)) == space


@pytest.mark.parametrize(("text", "message"), [
    ("momentum=0.1:0.9", "not in the search space"),
    ("lr=0.1:0.01", "above the high end"),
    ("lr=0:0.1", "above 0"),
    ("batch_size=64,big", "not a whole number"),
    ("augment=maybe", "not on/off"),
    ("lr", "write name=low:high"),
])
def test_a_bad_space_says_what_is_wrong(text, message):
    with pytest.raises(sweep.SweepError, match=message):
        sweep.parse_space([text])


def test_a_spec_fixes_searched_settings_given_a_value_and_refuses_what_cannot_train():
    spec = sweep.make_spec("fast", {"lr": 0.05, "epochs": 2}, sweep.SEARCH_SPACE)
    assert spec.space["lr"] == sweep.FloatRange(0.05, 0.05) and spec.overrides == {"epochs": 2}
    assert "label_smoothing" not in sweep.make_spec("seed000", {}, sweep.SEARCH_SPACE).space  # one-vs-rest
    with pytest.raises(ConfigError, match=r"batch_size 128 cannot train.*one-cycle"):
        sweep.make_spec("fast", {"train_subset": 600}, sweep.SEARCH_SPACE)  # 5 steps of 128 cannot warm up
    with pytest.raises(ConfigError, match="one-cycle schedule has only 5 steps"):
        sweep.make_spec("fast", {"train_subset": 300}, sweep.SEARCH_SPACE)  # the base itself cannot


def test_the_command_line_of_a_spec_parses_back_to_the_same_spec():
    from core.__main__ import build_parser
    from core.sweep_cli import _spec

    space = sweep.parse_space(["lr=0.00123456789:0.1", "optimizer=sgd,adamw", "augment=false"])
    spec = sweep.make_spec("fast", {"epochs": 2, "nesterov": False, "betas": (0.8, 0.99), "train_subset": 6000},
                           space)
    args = build_parser().parse_args(sweep.command_line(spec, 3, "again", None, None))
    assert (args.trials, args.study) == (3, "again") and _spec(args) == spec


# ---------------------------------------------------------------------------------------------
# Real studies


@pytest.mark.slow
def test_three_tiny_trials_from_the_cli_are_runs_and_the_study_reopens(root):
    done = cli("--preset", "fast", "--trials", "3", "--study", "tiny", "--json", "--quiet",
               *[f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()],
               *[item for text in SAFE_SPACE for item in ("--space", text)], root=root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout holds the one JSON object, the trial lines go to stderr
    assert result["state"] == "finished" and result["trials_run"] == 3 and len(result["trials"]) == 3
    assert result["storage"].endswith(f"{root}/.sweeps/sweeps.db")
    assert result["best"]["value"] == max(trial["value"] for trial in result["trials"])
    assert 0 <= result["mean_overhead_seconds"] < 30

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/.sweeps/sweeps.db")
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    for trial in study.trials:
        record = runs.find_run(trial.user_attrs["run_id"], root)
        assert (record.study, record.trial, record.trial_state) == ("tiny", trial.number, "complete")
        assert record.status == "finished" and record.final_test_accuracy == trial.value
        assert record.settings.startswith("fastcnn · adam lr")
        assert trial.params["optimizer"] == "adam" and 1e-3 <= trial.params["lr"] <= 3e-3
    assert sweep.read_sweep("tiny", root).state == "finished"

    again = cli("--preset", "fast", "--trials", "1", "--study", "tiny", "--epochs", "2", root=root)
    assert again.returncode == 2 and "Use the same settings" in again.stderr  # another question, refused

    shown = json.loads(cli("--study", "tiny", "--show", "--json", root=root).stdout)
    assert [trial["run_id"] for trial in shown["trials"]] == [trial.user_attrs["run_id"] for trial in study.trials]


class AlwaysPrune(optuna.pruners.BasePruner):
    """Prunes every trial at its first report: a deterministic stand-in for MedianPruner."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_a_pruned_trial_stops_its_run_after_the_first_epoch(root):
    storage = f"sqlite:///{root}/pruned.db"
    result = sweep.run_sweep(tiny_spec(epochs=3), 1, "pruned", storage=storage, root=root, pruner=AlwaysPrune())
    (row,) = result.trials
    assert row.state == "pruned" and row.epochs == 1 and row.value is not None
    assert "pruned after epoch 1" in str(row.message)
    record = runs.find_run(row.run_id, root)
    assert record.status == "stopped" and record.epochs_done == 1 and record.trial_state == "pruned"
    trial = optuna.load_study(study_name="pruned", storage=storage).trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values == {1: row.value}
    with pytest.raises(sweep.SweepError, match="no complete trial"):
        sweep.best_config(sweep.load_study("pruned", storage, root))


@pytest.mark.slow
def test_a_detached_sweep_is_stopped_from_another_process(root):
    spec = tiny_spec(epochs=200)
    status = sweep.launch_sweep(spec, 5, "long", root=root)
    assert status.state == "queued" and status.live and status.pid is not None

    def training() -> bool:
        now = sweep.read_sweep("long", root)
        return bool(now.run_id) and runs.find_run(now.run_id, root).epochs_done >= 1
    wait_for(training, "the first trial trains")
    with pytest.raises(sweep.SweepError, match="already has a sweep running"):
        sweep.launch_sweep(spec, 1, "long", root=root)

    stopped = cli("--study", "long", "--stop", "--json", root=root)
    assert stopped.returncode == 0 and "stops within a batch" in json.loads(stopped.stdout)["message"]
    wait_for(lambda: not sweep.read_sweep("long", root).live, "the sweep ends")
    final = sweep.read_sweep("long", root)
    assert final.state == "stopped" and final.done == 1, final.message
    (row,) = sweep.trial_rows(sweep.load_study("long", None, root))
    assert row.state == "fail" and str(row.message) == "stopped with the sweep"
    record = runs.find_run(row.run_id, root)
    assert record.status == "stopped" and record.resumable and record.trial_state == "fail"
    assert "trial 0 fail" in (final.folder / sweep.LOG_FILE).read_text()


def test_stopping_a_sweep_that_is_not_running_says_so_in_both_languages(tmp_path):
    from core.i18n import Translator, render

    with pytest.raises(sweep.SweepError) as error:
        sweep.stop_sweep("nothing-here", tmp_path)
    assert str(error.value).startswith("no sweep of study 'nothing-here' is running here")
    assert render(error.value.messages[0], Translator("zh_CN")).startswith("这里没有正在运行的研究 'nothing-here'")


# ---------------------------------------------------------------------------------------------
# What a study sweeps and why its trials ended, as people read them


def test_every_setting_has_a_label():
    assert set(sweep.SETTING_LABELS) == set(FLAT_FIELDS)


def test_the_study_summary_names_settings_by_their_labels_in_both_languages():
    spec = sweep.make_spec("fast", {"dataset": "mnist", "train_subset": 3000, "test_subset": 0, "epochs": 1},
                           sweep.SEARCH_SPACE)
    english = [render(part) for part in (*spec.fixed_messages(), *spec.searched_messages())]
    assert english == ["Dataset MNIST", "Training images 3,000", "Test images all", "Epochs 1",
                       "Learning rate 0.0001 to 0.3 (log scale)", "Batch size 32, 64, 128 or 256",
                       "Weight decay 1e-06 to 0.01 (log scale)", "Label smoothing 0 to 0.2", "Augmentation off or on",
                       "Optimizer sgd, adam or adamw"]
    zh = Translator("zh_CN")
    chinese = " · ".join(render(part, zh) for part in (*spec.fixed_messages(), *spec.searched_messages()))
    assert not raw_keys(" · ".join(english)) and not raw_keys(chinese), chinese
    for name in ("dataset", "epochs", "lr", "batch_size", "weight_decay", "label_smoothing", "augment", "optimizer"):
        label = sweep.SETTING_LABELS[name]
        assert zh.gettext(label) != label and zh.gettext(label) in chinese and label not in chinese, label
    assert "关" in chinese and "开" in chinese  # augmentation off or on, in the page's words


def test_a_diverged_trial_says_why_in_the_words_of_its_run(root):
    study = mixed_study(root, trials=1)
    (row,) = sweep.trial_rows(study, root)
    assert row.state == "fail" and row.value is None
    assert row.message.template == "diverged: %(reason)s"
    reason = row.message.params["reason"]
    assert isinstance(reason, Message) and reason == runs.find_run(row.run_id, root).message_parts  # translatable
    assert str(row.message).startswith("diverged: the training loss stayed at")
    chinese = render(row.message, Translator("zh_CN"))
    assert chinese.startswith("发散：") and "training loss" not in chinese, chinese

    # Trials whose sweep kept no reason (it died), or only the English text (older sweeps), and one with no run.
    fail = optuna.trial.TrialState.FAIL
    study.add_trial(optuna.trial.create_trial(state=fail, user_attrs={"run_id": row.run_id}))
    study.add_trial(optuna.trial.create_trial(state=fail, user_attrs={
        "run_id": row.run_id, "message": str(row.message), "message_template": "diverged: %(reason)s",
        "message_params": {"reason": str(reason)}}))
    study.add_trial(optuna.trial.create_trial(state=fail))
    _, silent, english_only, runless = sweep.trial_rows(study, root)
    assert silent.message == english_only.message == row.message  # from the run folder, whole
    assert str(runless.message) == "its sweep process ended before the trial did"

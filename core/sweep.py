"""Hyperparameter sweeps with Optuna: every trial is an ordinary run in the registry.

A sweep samples settings from `SEARCH_SPACE` (narrowed by the caller), applies them to a preset and
trains each as a run through the queue (`jobs.prepare` + `jobs.work`), so trials show on the Train and
Compare pages like any run. Each epoch's test accuracy is reported to the trial; Optuna's MedianPruner
stops hopeless trials through the run's own stop signal.

    <runs root>/.sweeps/sweeps.db            the default storage (SQLite), shared by every study here
    <runs root>/.sweeps/<study>/status.json  the sweep process on this machine: state, heartbeat, trial
    <runs root>/.sweeps/<study>/stop.request present when someone asked that sweep to stop
    <runs root>/.sweeps/<study>/sweep.log    what a detached sweep printed

The folder is hidden so the run registry does not take it for a run. The storage is $DIGITS_SWEEP_STORAGE
when set, else that SQLite file; any URL Optuna accepts (postgresql://, mysql://) lets sweeps on several
machines add trials to the same study (optuna's load_if_exists), each training on its own machine.

Trial states as Optuna's: complete (value = the last epoch's test accuracy), pruned (stopped by the
pruner; its last reported accuracy stays in the study), fail (diverged, failed, stopped by a person or
by the sweep's stop). Samplers learn nothing from failed trials, so a space where many diverge should
be narrowed (a lower learning rate range).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import jobs, runs
from core.data import DATASETS, Dataset, load_dataset
from core.i18n import N_, Message, message_from_fields
from core.training import (
    FLAT_FIELDS,
    ConfigError,
    Diverged,
    EpochEnd,
    Event,
    Failed,
    Finished,
    Outcome,
    RunStarted,
    Stopped,
    TrainConfig,
    preset_config,
)

if TYPE_CHECKING:
    import optuna

STORAGE_ENV = "DIGITS_SWEEP_STORAGE"
SWEEPS_DIR = ".sweeps"  # in the runs root; hidden, so list_runs does not read it as a run
DB_FILE = "sweeps.db"
LOG_FILE = "sweep.log"
SPEC_ATTR = "digits_sweep"  # study user attribute: the SweepSpec every worker of the study must share
HEARTBEAT_SECONDS = 30  # Optuna's trial heartbeat: a trial silent for GRACE_SECONDS is failed by the next worker
GRACE_SECONDS = 120
STARTUP_TRIALS = 3  # MedianPruner: trials that always run to the end before it compares
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


class SweepError(ConfigError):
    """A sweep setting or state the user can fix (bad space, unknown study, one already running).

    A ConfigError, so the CLI and the pages already turn it into a message, never a traceback.
    """


# ---------------------------------------------------------------------------------------------
# The search space: declared once here; the CLI's --space and the page narrow it


@dataclass(frozen=True)
class FloatRange:
    """A number drawn from [low, high]; log-uniformly when `log` (learning rates, decays)."""

    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        if self.low == self.high:
            return f"{self.low:g}"
        return f"{self.low:g}:{self.high:g}" + (" (log)" if self.log else "")

    def cli_text(self) -> str:
        """What --space takes back, to full precision."""
        return repr(self.low) if self.low == self.high else f"{self.low!r}:{self.high!r}"


@dataclass(frozen=True)
class Choice:
    """One of a few values (batch sizes, optimizers, on/off)."""

    options: tuple[Any, ...]

    def describe(self) -> str:
        return ",".join(str(option).lower() if isinstance(option, bool) else str(option) for option in self.options)

    def cli_text(self) -> str:
        return self.describe()


Param = FloatRange | Choice

# What a trial may change, by FLAT_FIELDS name; everything else comes from the preset and its overrides.
SEARCH_SPACE: dict[str, Param] = {
    "lr": FloatRange(1e-4, 0.3, log=True),  # learning rate (the peak for onecycle)
    "batch_size": Choice((32, 64, 128, 256)),  # training images per optimizer step
    "weight_decay": FloatRange(1e-6, 1e-2, log=True),  # L2 penalty / decoupled decay per step
    "label_smoothing": FloatRange(0.0, 0.2),  # multiclass only: share of target mass spread evenly
    "augment": Choice((False, True)),  # random affine per training image
    "optimizer": Choice(("sgd", "adam", "adamw")),
}


# What each FLAT_FIELDS name is called where people read it (the Train page's and the Sweep page's labels),
# marked; pages render them with the session's language. The preset is named on its own.
SETTING_LABELS: dict[str, str] = {
    "arch": N_("Architecture"), "options": N_("Network options"), "task": N_("Task"),
    "target_digit": N_("Target class"), "label_smoothing": N_("Label smoothing"), "dataset": N_("Dataset"),
    "normalization": N_("Normalization"), "augment": N_("Augmentation"), "distort": N_("Distort like other writers"),
    "batch_size": N_("Batch size"), "train_subset": N_("Training images"), "test_subset": N_("Test images"),
    "optimizer": N_("Optimizer"), "lr": N_("Learning rate"), "weight_decay": N_("Weight decay"),
    "momentum": N_("Momentum"), "nesterov": N_("Nesterov momentum"), "betas": "β1, β2",
    "scheduler": N_("Scheduler"), "t_max": N_("T_max (epochs)"), "min_lr": N_("Minimum learning rate"),
    "step_size": N_("Step size (epochs)"), "gamma": N_("Gamma (multiplier)"), "pct_start": N_("Warm-up share of steps"),
    "epochs": N_("Epochs"), "seed": N_("Random seed"), "device": N_("Device"), "threads": N_("CPU threads"),
    "precision": N_("Precision"), "preset": N_("preset"),
}
SWITCH_LABELS = {True: N_("on"), False: N_("off")}  # a yes/no setting's value, as the Sweep page's choices say it


def value_message(name: str, value: Any) -> Message:
    """One setting's value as people read it: on/off, a dataset's title, grouped whole numbers, 0 images = all."""
    if isinstance(value, bool):
        return Message(SWITCH_LABELS[value])
    if name in ("train_subset", "test_subset") and value == 0:
        return Message(N_("all"))
    if name == "dataset" and value in DATASETS:
        return Message("%(title)s", {"title": DATASETS[value].title})
    if name == "task" and value in runs.TASK_LABELS:
        return Message(runs.TASK_LABELS[value])
    if isinstance(value, int):
        return Message("%(value)s", {"value": f"{value:,}"})
    if isinstance(value, float):
        return Message("%(value)s", {"value": f"{value:g}"})
    if isinstance(value, list | tuple):
        return Message("%(value)s", {"value": ", ".join(f"{item:g}" if isinstance(item, float) else str(item)
                                                        for item in value)})
    if isinstance(value, dict):
        return Message("%(value)s", {"value": json.dumps(value, sort_keys=True)})
    return Message("%(value)s", {"value": str(value)})  # names: optimizers, schedulers, devices stay as written


def one_of(options: Sequence[Message]) -> Message:
    """'a, b or c' in any language: each pair joined by a marked template, so a catalog can use its own words."""
    if len(options) == 1:
        return options[0]
    if len(options) == 2:
        return Message(N_("%(first)s or %(last)s"), {"first": options[0], "last": options[1]})
    return Message(N_("%(first)s, %(rest)s"), {"first": options[0], "rest": one_of(options[1:])})


def _labelled(name: str, value: Message) -> Message:
    return Message(N_("%(setting)s %(value)s"), {"setting": Message(SETTING_LABELS.get(name, name)), "value": value})


def setting_message(name: str, value: Any) -> Message:
    """'Training images 3,000': a setting's label and its value."""
    return _labelled(name, value_message(name, value))


def searched_message(name: str, param: Param) -> Message:
    """'Learning rate 0.0001 to 0.3 (log scale)', 'Batch size 32, 64 or 128': a setting and what a trial may take."""
    if isinstance(param, Choice):
        return _labelled(name, one_of([value_message(name, option) for option in param.options]))
    if param.low == param.high:
        return setting_message(name, param.low)
    template = N_("%(setting)s %(low)s to %(high)s (log scale)") if param.log else N_("%(setting)s %(low)s to %(high)s")
    return Message(template, {"setting": Message(SETTING_LABELS.get(name, name)), "low": f"{param.low:g}",
                              "high": f"{param.high:g}"})


def _parse_value(name: str, text: str, like: Any) -> Any:
    """One choice typed on the command line, read as the type of the declared options."""
    text = text.strip()
    if isinstance(like, bool):
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
        raise SweepError(f"--space {name}: {text!r} is not on/off (use true or false)")
    if isinstance(like, int):
        if not re.fullmatch(r"\d+", text):
            raise SweepError(f"--space {name}: {text!r} is not a whole number")
        return int(text)
    return text


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"--space {name}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SweepError(f"--space {name}: {text!r} is not a finite number")
    return value


def narrow_param(name: str, text: str) -> Param:
    """`low:high` or one number for a range; `a,b,...` or one value for a choice."""
    declared = SEARCH_SPACE.get(name)
    if declared is None:
        raise SweepError(f"--space {name}: not in the search space; it has {', '.join(SEARCH_SPACE)}")
    if isinstance(declared, Choice):
        options = tuple(dict.fromkeys(_parse_value(name, part, declared.options[0]) for part in text.split(",")))
        if not options or options == ("",):
            raise SweepError(f"--space {name}: give one or more of {declared.describe()}")
        return Choice(options)
    low_text, _, high_text = text.partition(":")
    low = _number(name, low_text)
    high = _number(name, high_text) if high_text else low
    if low > high:
        raise SweepError(f"--space {name}: the low end {low:g} is above the high end {high:g}")
    if declared.log and low <= 0 < high:
        raise SweepError(f"--space {name} is drawn log-uniformly: both ends must be above 0")
    return FloatRange(low, high, log=declared.log and 0 < low < high)  # one value: fixed, never log


def parse_space(texts: Sequence[str]) -> dict[str, Param]:
    """SEARCH_SPACE with each `name=...` of `texts` (the CLI's --space) replacing its entry."""
    space = dict(SEARCH_SPACE)
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals:
            raise SweepError(f"--space {text!r}: write name=low:high or name=a,b (e.g. lr=1e-3:1e-1)")
        space[name.strip()] = narrow_param(name.strip(), value)
    return space


def space_for(config: TrainConfig, space: dict[str, Param]) -> dict[str, Param]:
    """The space that applies to the base config: label smoothing means nothing to a one-vs-rest task."""
    if config.task.kind == "binary":
        return {name: param for name, param in space.items() if name != "label_smoothing"}
    return dict(space)


def space_to_dict(space: dict[str, Param]) -> dict[str, Any]:
    return {name: ({"choice": list(param.options)} if isinstance(param, Choice) else asdict(param))
            for name, param in space.items()}


def space_from_dict(data: dict[str, Any]) -> dict[str, Param]:
    return {name: (Choice(tuple(value["choice"])) if "choice" in value else FloatRange(**value))
            for name, value in data.items()}


def suggest(trial: optuna.Trial, space: dict[str, Param]) -> dict[str, Any]:
    """The trial's settings, one per entry of the space (a fixed entry is still recorded as a param)."""
    values: dict[str, Any] = {}
    for name, param in space.items():
        if isinstance(param, Choice):
            values[name] = trial.suggest_categorical(name, list(param.options))
        else:
            values[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
    return values


# ---------------------------------------------------------------------------------------------
# What a study sweeps: the preset, its fixed overrides and the space, shared by all its workers


@dataclass(frozen=True)
class SweepSpec:
    """The base config (a preset with overrides such as epochs and subsets) and the space around it."""

    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)  # FLAT_FIELDS name -> value, fixed for every trial
    space: dict[str, Param] = field(default_factory=lambda: dict(SEARCH_SPACE))

    def base_config(self) -> TrainConfig:
        return preset_config(self.preset, **self.overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "overrides": dict(self.overrides), "space": space_to_dict(self.space)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        return cls(str(data["preset"]), dict(data.get("overrides", {})), space_from_dict(data["space"]))

    def fixed_messages(self) -> tuple[Message, ...]:
        """The settings every trial shares beyond the preset, by their labels: 'Training images 3,000'."""
        return tuple(setting_message(name, value) for name, value in self.overrides.items())

    def searched_messages(self) -> tuple[Message, ...]:
        """What each trial may change, by the settings' labels: 'Learning rate 0.0001 to 0.3 (log scale)'."""
        return tuple(searched_message(name, param) for name, param in self.space.items())

    def describe(self) -> str:
        """One English line for the CLI and its errors, by the flags' names (train_subset 3000)."""
        fixed = ", ".join(f"{name} {value}" for name, value in self.overrides.items())
        varied = ", ".join(f"{name} {param.describe()}" for name, param in self.space.items())
        return f"preset {self.preset}" + (f" with {fixed}" if fixed else "") + f"; varying {varied}"


def make_spec(preset: str, overrides: dict[str, Any], space: dict[str, Param]) -> SweepSpec:
    """A checked spec: ConfigError/SweepError now for any setting a trial could not train with."""
    unknown = sorted(set(overrides) - set(FLAT_FIELDS))
    if unknown:
        raise SweepError(f"unknown setting {unknown[0]!r}")
    space = dict(space)
    for name in [name for name in overrides if name in space]:  # a searched setting given a value: fixed
        value = overrides[name]
        space[name] = Choice((value,)) if isinstance(space[name], Choice) else FloatRange(float(value), float(value))
    overrides = {name: tuple(value) if isinstance(value, list) else value  # betas: a pair, however it came
                 for name, value in overrides.items() if name not in space}
    base = preset_config(preset, **overrides)
    jobs.check_startable(base)
    spec = SweepSpec(preset, dict(overrides), space_for(base, space))
    for name, param in spec.space.items():
        ends = param.options if isinstance(param, Choice) else (param.low, param.high)
        for value in ends:
            try:
                jobs.check_startable(preset_config(preset, **{**overrides, name: value}))
            except ConfigError as error:
                raise SweepError(f"the search space's {name} {value} cannot train: {error}") from None
    return spec


# ---------------------------------------------------------------------------------------------
# Storage and studies


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name) or ".." in name:
        raise SweepError(f"invalid study name {name!r}: use letters, digits, '.', '_' and '-' only (at most 80)")
    return name


def sweeps_root(root: Path | str | None = None) -> Path:
    return runs.runs_root(root) / SWEEPS_DIR


def sweep_dir(study: str, root: Path | str | None = None) -> Path:
    """The folder of this machine's sweep of `study` (not created here)."""
    return sweeps_root(root) / check_study_name(study)


def default_storage(root: Path | str | None = None) -> str:
    """$DIGITS_SWEEP_STORAGE, else the SQLite file in the runs root's sweeps folder."""
    return os.environ.get(STORAGE_ENV) or f"sqlite:///{(sweeps_root(root) / DB_FILE).resolve()}"


def masked(url: str) -> str:
    """The storage URL with any password hidden, for status files, logs and pages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's database storage with trial heartbeats (a dead sweep's running trial becomes failed)."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SweepError(f"{url!r} is not a database URL (e.g. sqlite:///sweeps.db, postgresql://host/db)") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}  # the page reads while a sweep writes: wait for the lock
    for attempt in range(3):  # two processes creating a new database's tables at once: one loses, then finds them
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them on purpose
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=GRACE_SECONDS)
        except IntegrityError:
            if attempt == 2:
                raise
        except (SQLAlchemyError, ImportError, ValueError) as error:
            raise SweepError(f"cannot open the sweep storage {masked(url)}: {error}") from None
    raise AssertionError("unreachable")


def _quiet_optuna() -> None:
    """Our own per-trial lines replace Optuna's log (its failed-trial warning prints a traceback)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def load_study(study: str, storage: str | None = None, root: Path | str | None = None) -> optuna.Study:
    """An existing study; SweepError if the storage has none of that name."""
    import optuna

    _quiet_optuna()
    url = storage or default_storage(root)
    try:
        return optuna.load_study(study_name=check_study_name(study), storage=open_storage(url))
    except KeyError:
        raise SweepError(f"there is no study {study!r} in {masked(url)}") from None


def study_names(storage: str | None = None, root: Path | str | None = None) -> list[str]:
    """Every study in the storage (none if the default SQLite file does not exist yet)."""
    import optuna

    url = storage or default_storage(root)
    if storage is None and STORAGE_ENV not in os.environ and not (sweeps_root(root) / DB_FILE).exists():
        return []
    return sorted(optuna.get_all_study_names(open_storage(url)))


def searched_space(study: optuna.Study) -> dict[str, Param]:
    """The space the study's trials were drawn from, as Optuna recorded it (each setting's distribution)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Param] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            if isinstance(distribution, CategoricalDistribution):
                space.setdefault(name, Choice(tuple(distribution.choices)))
            elif isinstance(distribution, FloatDistribution | IntDistribution):
                space.setdefault(name, FloatRange(float(distribution.low), float(distribution.high), distribution.log))
    return space


def varied(space: dict[str, Param]) -> list[str]:
    """The settings a trial may change: a range wider than one value, or more than one choice."""
    return [name for name, param in space.items()
            if (len(param.options) > 1 if isinstance(param, Choice) else param.low < param.high)]


def study_spec(study: optuna.Study) -> SweepSpec | None:
    data = study.user_attrs.get(SPEC_ATTR)
    return SweepSpec.from_dict(data) if isinstance(data, dict) else None


def create_or_load(spec: SweepSpec, study: str, storage: str,
                   pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study, made if new (maximize test accuracy); SweepError if it sweeps something else."""
    import optuna

    _quiet_optuna()
    handle = optuna.create_study(
        study_name=check_study_name(study), storage=open_storage(storage), direction="maximize",
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS), load_if_exists=True,
    )
    if handle.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise SweepError(f"study {study!r} minimizes its objective; this sweep maximizes test accuracy")
    wanted = json.loads(json.dumps(spec.to_dict()))  # as stored: tuples become lists
    stored = handle.user_attrs.get(SPEC_ATTR)
    if stored is None:
        handle.set_user_attr(SPEC_ATTR, wanted)
    elif stored != wanted:
        raise SweepError(
            f"study {study!r} in {masked(storage)} sweeps {SweepSpec.from_dict(stored).describe()}; this sweep asks "
            f"for {spec.describe()}. Use the same settings to add trials to it, or name a new study with --study."
        )
    return handle


# ---------------------------------------------------------------------------------------------
# Trials: what a study holds, as the page and the CLI show it


@dataclass(frozen=True)
class TrialRow:
    """One trial of a study."""

    number: int
    state: str  # "running", "waiting", "complete", "pruned" or "fail"
    value: float | None  # complete: the final test accuracy (fraction); otherwise the last one reported, if any
    epochs: int  # epochs reported to Optuna
    params: dict[str, Any]
    run_id: str  # its run folder's id ("" before it had one)
    seconds: float | None  # the trial's wall time, from Optuna's start to its end
    train_seconds: float | None  # its run's own training time (metrics.jsonl's elapsed seconds)
    overhead_seconds: float | None  # seconds - train_seconds: queue, data loading, checkpoints, Optuna
    message: Message  # why it ended so (pruned, diverged, failed, stopped); str() gives the English


# A run's state (status.json) -> why its trial failed, for trials whose sweep recorded no reason.
_RUN_ENDINGS = {runs.DIVERGED: N_("diverged: %(reason)s"), runs.FAILED: N_("failed: %(reason)s"),
                runs.CRASHED: N_("failed: %(reason)s")}


def _reason_of_run(run_id: str, root: Path | str | None) -> Message | None:
    """Why the trial's run ended, from its folder's status.json; None if the run ended no such way."""
    try:
        folder = runs.run_dir(run_id, root)
    except runs.RunError:
        return Message(N_("its run folder was deleted"))
    state, message = runs.state_message_of(runs.read_status(folder))
    if state == runs.STOPPED:
        return Message(N_("its run was stopped"))
    return Message(_RUN_ENDINGS[state], {"reason": message}) if state in _RUN_ENDINGS else None


def _trial_message(trial: optuna.trial.FrozenTrial, run_id: str, root: Path | str | None) -> Message:
    """Why the trial ended so. A failed trial whose sweep recorded no reason (it died), or only the English
    text of its run's message (older sweeps), is explained by its run folder, which keeps the message whole."""
    import optuna

    message = message_from_fields(trial.user_attrs)
    if trial.state != optuna.trial.TrialState.FAIL:
        return message
    if not message.template:
        from_run = _reason_of_run(run_id, root) if run_id else None
        return from_run or Message(N_("its sweep process ended before the trial did"))
    if message.template in _RUN_ENDINGS.values() and isinstance(message.params.get("reason"), str) and run_id:
        from_run = _reason_of_run(run_id, root)
        if from_run is not None and "reason" in from_run.params:
            return from_run
    return message


def trial_rows(study: optuna.Study, root: Path | str | None = None) -> list[TrialRow]:
    """The study's trials; `root` is the runs root their run folders are in (for failed trials' reasons)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        value = trial.value if trial.value is not None else (trial.intermediate_values[steps[-1]] if steps else None)
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        train_seconds = trial.user_attrs.get("train_seconds")
        overhead = seconds - train_seconds if seconds is not None and isinstance(train_seconds, float) else None
        run_id = str(trial.user_attrs.get("run_id", ""))
        rows.append(TrialRow(
            number=trial.number, state=trial.state.name.lower(), value=value, epochs=steps[-1] if steps else 0,
            params=dict(trial.params), run_id=run_id, seconds=seconds,
            train_seconds=train_seconds if isinstance(train_seconds, float) else None, overhead_seconds=overhead,
            message=_trial_message(trial, run_id, root),
        ))
    return rows


def mean_overhead(rows: Sequence[TrialRow]) -> float | None:
    """Mean seconds per trial beyond its own training, over trials that trained to their end."""
    values = [row.overhead_seconds for row in rows if row.state == "complete" and row.overhead_seconds is not None]
    return sum(values) / len(values) if values else None


def best_config(study: optuna.Study, *, epochs: int | None = None, full_data: bool = True) -> TrainConfig:
    """The best trial's settings on the study's base config; optionally on all images and more epochs."""
    spec = study_spec(study)
    if spec is None:
        raise SweepError(f"study {study.study_name!r} was not made by this app: it has no base config")
    try:
        params = study.best_trial.params
    except ValueError:
        raise SweepError(f"study {study.study_name!r} has no complete trial yet") from None
    overrides = {**spec.overrides, **params}
    if full_data:
        overrides.update(train_subset=0, test_subset=0)
    if epochs is not None:
        overrides["epochs"] = epochs
    return preset_config(spec.preset, **overrides)


# ---------------------------------------------------------------------------------------------
# Running a sweep in this process


class TrialFailed(RuntimeError):
    """A trial that diverged, failed or was stopped: Optuna records it as FAIL with this message."""


class _TrialStop(runs.StopSignal):
    """The run's stop signal (its event and stop file), also set by the sweep's own stop."""

    def __init__(self, folder: Path, sweep_stop: runs.StopSignal) -> None:
        super().__init__(folder, threading.Event())
        self.sweep_stop = sweep_stop

    def is_set(self) -> bool:
        return super().is_set() or self.sweep_stop.is_set()


@dataclass
class _Sweep:
    """What every trial of one sweep process shares."""

    spec: SweepSpec
    study: str
    root: Path | str | None
    stop: runs.StopSignal  # the sweep's: its stop file, SIGTERM, Ctrl-C
    writer: runs.StatusWriter
    on_event: Callable[[Event], None] | None
    done: int = 0
    dataset: Dataset | None = None  # loaded by the first trial, reused by the others (a dataset is not swept)


def _trial_meta(sweep: _Sweep, folder: Path, number: int, state: str) -> None:
    runs.update_record(folder, sweep={"study": sweep.study, "trial": number, "state": state})


def _ending(outcome: Outcome | None, pruned: bool, sweep_stopped: bool,
            reason: Message | None = None) -> tuple[str, Message]:
    """(trial state, message) for how the trial's run ended; `reason` is the run's own message (status.json's)."""
    if isinstance(outcome, Finished):
        return "complete", Message("")
    if isinstance(outcome, Stopped) and pruned:
        return "pruned", Message(N_("pruned after epoch %(epoch)d: its test accuracy was below the median of earlier "
                                    "trials"), {"epoch": outcome.epoch})
    if isinstance(outcome, Stopped):
        return "fail", Message(N_("stopped with the sweep") if sweep_stopped else N_("its run was stopped"))
    if isinstance(outcome, Diverged):
        return "fail", Message(N_("diverged: %(reason)s"), {"reason": reason or outcome.message})
    if isinstance(outcome, Failed):
        return "fail", Message(N_("failed: %(reason)s"), {"reason": reason or outcome.message})
    return "fail", Message(N_("its run folder was deleted"))


def _set_message(trial: optuna.Trial, message: Message) -> None:
    for name, value in message.to_fields().items():  # message, message_template, message_params
        trial.set_user_attr(name, value)


def _objective(sweep: _Sweep, trial: optuna.Trial) -> float:
    import optuna

    if sweep.stop.is_set():
        message = Message(N_("the sweep was stopped before this trial began"))
        _set_message(trial, message)
        raise TrialFailed(message)
    params = suggest(trial, sweep.spec.space)
    config = preset_config(sweep.spec.preset, **sweep.spec.overrides, **params)
    run_id = jobs.prepare(config, f"{sweep.study} trial {trial.number}", sweep.root)
    folder = runs.run_dir(run_id, sweep.root)
    _trial_meta(sweep, folder, trial.number, "running")
    trial.set_user_attr("run_id", run_id)
    sweep.writer.set(trial=trial.number, run_id=run_id, message=Message(
        N_("trial %(trial)d waits in the run queue as run %(run)s"), {"trial": trial.number, "run": run_id}))
    stop = _TrialStop(folder, sweep.stop)
    pruned = False

    def on_event(event: Event) -> None:
        nonlocal pruned
        if isinstance(event, RunStarted):
            sweep.writer.set(message=Message(N_("trial %(trial)d is training as run %(run)s"),
                                             {"trial": trial.number, "run": run_id}))
        if isinstance(event, EpochEnd):
            trial.report(event.test_accuracy, event.epoch)
            if event.epoch < event.total_epochs and trial.should_prune():
                pruned = True
                stop.set()  # the run stops before its next batch, saved at this epoch
        if sweep.on_event is not None:
            sweep.on_event(event)

    if sweep.dataset is None:
        sweep.dataset = load_dataset(sweep.spec.base_config().data.dataset)
    outcome = jobs.work(run_id, sweep.root, stop=stop, on_event=on_event, dataset=sweep.dataset)
    record = runs.find_run(run_id, sweep.root)
    trial.set_user_attr("train_seconds", float(record.wall_seconds or 0.0))
    state, message = _ending(outcome, pruned, sweep.stop.is_set(), record.message_parts)
    _trial_meta(sweep, folder, trial.number, state)
    _set_message(trial, message)
    if state == "complete":
        assert isinstance(outcome, Finished)
        return outcome.test_accuracy
    if state == "pruned":
        raise optuna.TrialPruned(message)
    raise TrialFailed(message)


@dataclass(frozen=True)
class SweepResult:
    """How a sweep process ended, with the study's trials as they stand."""

    study: str
    storage: str  # masked
    state: str  # "finished" (all its trials ran) or "stopped"
    trials_run: int  # trials this process ran
    trials: list[TrialRow]
    best: TrialRow | None
    mean_overhead_seconds: float | None


def claim_folder(study: str, root: Path | str | None = None) -> Path:
    """This machine's sweep folder for the study; SweepError if another sweep of it is live here."""
    folder = sweep_dir(study, root)
    status = runs.read_status(folder)
    if runs.is_live(status) and status.get("pid") not in (os.getpid(), os.getppid()):
        raise SweepError(f"study {study!r} already has a sweep running here (pid {status.get('pid')}); stop it first "
                         "or add trials from another machine")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_sweep(
    spec: SweepSpec,
    trials: int,
    study: str,
    *,
    storage: str | None = None,
    root: Path | str | None = None,
    stop: threading.Event | None = None,
    on_trial: Callable[[TrialRow], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> SweepResult:
    """Run `trials` more trials of the study in this process, one run at a time through the queue.

    The sweep's folder holds its status (heartbeat, current trial) while it works; its stop file, or
    `stop`, ends the trial under way (recorded as failed, its run stopped and resumable) and the sweep.
    """
    if not isinstance(trials, int) or trials < 1:
        raise SweepError(f"trials must be a whole number of at least 1, got {trials!r}")
    url = storage or default_storage(root)
    launched = runs.read_status(sweep_dir(study, root))
    folder = claim_folder(study, root)
    if not (launched.get("status") == runs.QUEUED and launched.get("pid") in (os.getpid(), os.getppid())):
        runs.clear_stop(folder)  # a stale request; one made while launch_sweep started us is honored
    sweep_stop = runs.StopSignal(folder, stop)
    writer = runs.StatusWriter(folder, runs.RUNNING, message=N_("opening the study"), study=study,
                               storage=masked(url), trials=trials, done=0).start()
    try:
        handle = create_or_load(spec, study, url, pruner)
        sweep = _Sweep(spec, study, root, sweep_stop, writer, on_event)

        def after_trial(study_handle: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
            sweep.done += 1
            writer.set(done=sweep.done, trial=None, run_id=None, message=Message(
                N_("%(done)d of %(trials)d trials done; trial %(trial)d %(state)s"),
                {"done": sweep.done, "trials": trials, "trial": frozen.number, "state": frozen.state.name.lower()}))
            if on_trial is not None:
                on_trial(next(row for row in trial_rows(study_handle, root) if row.number == frozen.number))
            if sweep_stop.is_set():
                study_handle.stop()

        if not sweep_stop.is_set():
            handle.optimize(partial(_objective, sweep), n_trials=trials, catch=(TrialFailed,),
                            callbacks=[after_trial])
        state = runs.STOPPED if sweep_stop.is_set() else runs.FINISHED
        rows = trial_rows(handle, root)
        complete = [row for row in rows if row.state == "complete" and row.value is not None]
        best = max(complete, key=lambda row: row.value or 0.0) if complete else None
        message = (Message(N_("stopped after %(done)d of %(trials)d trials"), {"done": sweep.done, "trials": trials})
                   if state == runs.STOPPED else Message(N_("ran all %(trials)d trials"), {"trials": trials}))
        writer.set(status=state, message=message, done=sweep.done, trial=None, run_id=None)
        return SweepResult(study, masked(url), state, sweep.done, rows, best, mean_overhead(rows))
    except BaseException as error:
        writer.set(status=runs.FAILED, message=f"{type(error).__name__}: {error}")
        raise
    finally:
        writer.close()


# ---------------------------------------------------------------------------------------------
# A sweep as a job: launched in its own process, followed and stopped through its folder


@dataclass(frozen=True)
class SweepStatus:
    """This machine's sweep of a study, as its folder says."""

    study: str
    folder: Path
    state: str  # queued / running / finished / stopped / failed, or crashed when its process is gone
    message: str  # in English
    message_parts: Message  # the same as a template and parameters, for the page to translate
    trials: int  # trials asked of this sweep
    done: int  # trials it has ended
    trial: int | None  # the trial under way
    run_id: str  # that trial's run
    storage: str  # masked
    live: bool
    pid: int | None


def read_sweep(study: str, root: Path | str | None = None) -> SweepStatus:
    folder = sweep_dir(study, root)
    status = runs.read_status(folder)
    state, message = runs.state_message_of(status)
    trial = status.get("trial")
    return SweepStatus(
        study=study, folder=folder, state=state, message=message.english(), message_parts=message,
        trials=int(status.get("trials") or 0),
        done=int(status.get("done") or 0), trial=trial if isinstance(trial, int) else None,
        run_id=str(status.get("run_id") or ""), storage=str(status.get("storage", "")),
        live=state in runs.ACTIVE, pid=status.get("pid") if isinstance(status.get("pid"), int) else None,
    )


def list_sweeps(root: Path | str | None = None) -> list[SweepStatus]:
    """Every sweep folder on this machine, live ones first, then by name."""
    base = sweeps_root(root)
    if not base.is_dir():
        return []
    found = [read_sweep(path.name, root) for path in base.iterdir()
             if path.is_dir() and _STUDY_NAME.fullmatch(path.name)]
    return sorted(found, key=lambda sweep: (not sweep.live, sweep.study))


def stop_sweep(study: str, root: Path | str | None = None) -> Message:
    """Ask this machine's sweep of the study to stop: its trial under way stops within a batch (str() is English)."""
    sweep = read_sweep(study, root)
    if not sweep.live:
        raise SweepError(Message(N_("no sweep of study %(study)r is running here (it is %(state)s)"),
                                 {"study": study, "state": sweep.state}))
    runs.request_stop(sweep.folder)
    return Message(N_("the sweep of %(study)s stops within a batch; a trial under way is recorded as failed, its run "
                      "resumable"), {"study": study})


def command_line(spec: SweepSpec, trials: int, study: str, storage: str | None, root: Path | str | None) -> list[str]:
    """The `python -m core sweep` arguments for this spec: the same command adds workers on any machine."""
    args = ["sweep", "--preset", spec.preset, "--trials", str(trials), "--study", study]
    for name, value in spec.overrides.items():  # train_cli's options: one per FLAT_FIELDS name
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            args += [flag, *(str(item) for item in value)] if isinstance(value, list | tuple) else [flag, str(value)]
    for name, param in spec.space.items():
        if param != SEARCH_SPACE.get(name):
            args += ["--space", f"{name}={param.cli_text()}"]
    if storage:
        args += ["--storage", storage]
    if root is not None:
        args += ["--runs-dir", str(Path(root).resolve())]
    return args


def launch_sweep(spec: SweepSpec, trials: int, study: str, *, storage: str | None = None,
                 root: Path | str | None = None) -> SweepStatus:
    """Start the sweep as its own process (`python -m core sweep ...`), which outlives the page."""
    if not isinstance(trials, int) or trials < 1:
        raise SweepError(f"trials must be a whole number of at least 1, got {trials!r}")
    folder = claim_folder(study, root)
    open_storage(storage or default_storage(root))  # a bad URL is said now; a new database's tables made once
    runs.clear_stop(folder)
    url = storage or default_storage(root)
    runs.write_status(folder, runs.QUEUED, message=N_("starting: loading Optuna and PyTorch"), study=study,
                      storage=masked(url), trials=trials, done=0)
    command = [sys.executable, "-m", "core", *command_line(spec, trials, study, storage, root)]
    pid = jobs.spawn_detached(command, folder / LOG_FILE)
    status = runs.read_status(folder)
    if status.get("status") == runs.QUEUED and status.get("pid") == os.getpid():  # the sweep has not written yet
        runs.write_status(folder, runs.QUEUED, message=str(status.get("message", "")), study=study,
                          storage=masked(url), trials=trials, done=0, pid=pid)
    return read_sweep(study, root)


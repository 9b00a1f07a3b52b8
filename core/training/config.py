"""Training configuration: one dataclass per concern (as nanoGPT's GPTConfig), validated as a whole.

The Train page's form, the CLI's flags, the presets and the tests all build the same `TrainConfig`;
`config_to_dict(config)` is saved in every run folder and checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core import models
from core.i18n import N_, Message, as_message


class ConfigError(ValueError):
    """A training setting the user can fix; the message names the field and the allowed values.

    `messages` holds each problem as a Message (template and parameters) for the pages to translate;
    str(error) is them all in English, joined by "; ".
    """

    def __init__(self, *messages: str | Message) -> None:
        self.messages = tuple(as_message(message) for message in messages)
        super().__init__("; ".join(message.english() for message in self.messages))


TASKS = ("multiclass", "binary")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class ModelConfig:
    """Which network to train."""

    arch: str = "fastcnn"  # architecture name in core.models' registry
    options: dict[str, Any] = field(default_factory=dict)  # architecture settings, e.g. {"softmax": False}


@dataclass
class TaskConfig:
    """What the network learns to answer, and the loss that follows from it."""

    kind: str = "multiclass"  # "multiclass": which of 10 classes; "binary": is it the target digit?
    target_digit: int = 8  # binary only: the positive class (0-9)
    label_smoothing: float = 0.0  # multiclass on a logits head only: share of target mass spread evenly


@dataclass
class DataConfig:
    """Which images, how they are scaled, batched and augmented."""

    dataset: str = "mnist"  # "mnist" or "fashion-mnist"
    normalization: str = "dataset"  # "none": [0, 1]; "half": [-1, 1]; "dataset": training mean/std
    augment: bool = False  # a small random affine per training image (core.data.Augmentation)
    distort: bool = False  # instead: slant, wobble, pen width, coarse and box-filling scans (core.data.Distortion)
    batch_size: int = 64  # training images per optimizer step
    train_subset: int = 0  # train on the first N training images (0 = all 60,000)
    test_subset: int = 0  # evaluate on the first N test images (0 = all 10,000)


@dataclass
class OptimizerConfig:
    """How the weights move."""

    name: str = "adam"  # "sgd", "adam" or "adamw"
    lr: float = 1e-3  # learning rate; the peak learning rate for onecycle
    weight_decay: float = 0.0  # L2 penalty (sgd, adam) or decoupled decay (adamw), per step
    momentum: float = 0.9  # sgd only; 0 = plain SGD
    nesterov: bool = False  # sgd only, needs momentum > 0
    betas: tuple[float, float] = (0.9, 0.999)  # adam/adamw: decay rates of the moment estimates


@dataclass
class SchedulerConfig:
    """How the learning rate changes over the run."""

    name: str = "none"  # "none", "cosine" (per epoch), "step" (per epoch) or "onecycle" (per batch)
    t_max: int = 0  # cosine: epochs from the peak to the minimum (0 = the run's epochs)
    min_lr: float = 0.0  # cosine: learning rate at the bottom of the curve
    step_size: int = 1  # step: epochs between decays
    gamma: float = 0.1  # step: learning-rate multiplier at each decay
    pct_start: float = 0.25  # onecycle: share of all steps spent warming up to the peak


@dataclass
class TrainConfig:
    """Everything that decides a training run; `config_to_dict` of it is saved in every run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    epochs: int = 1  # passes over the training set
    seed: int = 0  # model init, shuffling, augmentation and dropout all follow from it
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps"
    threads: int = 0  # CPU threads for torch (0 = the idle cores, up to the queue slot's share, every epoch)
    # The training steps' arithmetic: "auto" is bfloat16 autocast where the hardware multiplies bf16 natively
    # (CUDA; CPUs with AVX512-BF16 or AMX), float32 elsewhere. Weights, optimizer and test scoring stay float32.
    precision: str = "auto"
    preset: str = ""  # the preset this config started from ("" = none), for the record


SECTIONS = {
    "model": ModelConfig,
    "task": TaskConfig,
    "data": DataConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
}

# Flat names accepted by `preset_config(**overrides)` and `override`: name -> (section, field).
# Section None means a top-level field of TrainConfig.
FLAT_FIELDS: dict[str, tuple[str | None, str]] = {
    "arch": ("model", "arch"),
    "options": ("model", "options"),
    "task": ("task", "kind"),
    "target_digit": ("task", "target_digit"),
    "label_smoothing": ("task", "label_smoothing"),
    "dataset": ("data", "dataset"),
    "normalization": ("data", "normalization"),
    "augment": ("data", "augment"),
    "distort": ("data", "distort"),
    "batch_size": ("data", "batch_size"),
    "train_subset": ("data", "train_subset"),
    "test_subset": ("data", "test_subset"),
    "optimizer": ("optimizer", "name"),
    "lr": ("optimizer", "lr"),
    "weight_decay": ("optimizer", "weight_decay"),
    "momentum": ("optimizer", "momentum"),
    "nesterov": ("optimizer", "nesterov"),
    "betas": ("optimizer", "betas"),
    "scheduler": ("scheduler", "name"),
    "t_max": ("scheduler", "t_max"),
    "min_lr": ("scheduler", "min_lr"),
    "step_size": ("scheduler", "step_size"),
    "gamma": ("scheduler", "gamma"),
    "pct_start": ("scheduler", "pct_start"),
    "epochs": (None, "epochs"),
    "seed": (None, "seed"),
    "device": (None, "device"),
    "threads": (None, "threads"),
    "precision": (None, "precision"),
    "preset": (None, "preset"),
}


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """A JSON-safe dict of the config (tuples become lists); `config_from_dict` reads it back."""
    data = asdict(config)
    data["optimizer"]["betas"] = list(data["optimizer"]["betas"])
    return data


def flat_values(config: TrainConfig) -> dict[str, Any]:
    """The config as FLAT_FIELDS name -> value: the shape of the Train page's form and the CLI's flags."""
    values = {}
    for name, (section, key) in FLAT_FIELDS.items():
        holder = config if section is None else getattr(config, section)
        values[name] = getattr(holder, key)
    return values


def _coerce(where: str, annotation: str, value: Any) -> Any:
    """Check one JSON value against a field's annotation; raise ConfigError naming the field."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if annotation == "bool" and isinstance(value, bool):
        return value
    if annotation == "int" and is_number and float(value).is_integer():
        return int(value)
    if annotation == "float" and is_number:
        return float(value)
    if annotation == "str" and isinstance(value, str):
        return value
    if annotation.startswith("dict") and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return dict(value)
    if annotation.startswith("tuple") and isinstance(value, list | tuple) and len(value) == 2:
        return tuple(_coerce(where, "float", item) for item in value)
    expected = {"bool": N_("true or false"), "int": N_("a whole number"), "float": N_("a number"), "str": N_("text"),
                "dict[str, Any]": N_("a mapping"), "tuple[float, float]": N_("a pair of numbers")}.get(annotation)
    raise ConfigError(Message(N_("%(field)s must be %(expected)s, got %(value)s"),
                              {"field": where, "expected": Message(expected or annotation), "value": repr(value)}))


def _section_from_dict(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(Message(N_("%(section)s must be a mapping of its fields, got %(value)s"),
                                  {"section": name, "value": repr(values)}))
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(Message(N_("unknown field %(section)s.%(field)s; %(section)s has %(known)s"),
                                  {"section": name, "field": unknown[0], "known": ", ".join(known)}))
    return cls(**{key: _coerce(f"{name}.{key}", str(known[key].type), value) for key, value in values.items()})


def with_precision_recorded(record: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """A config record from before `precision` existed, given the precision it trained in.

    Then the CPU always trained in float32 and CUDA under bf16 autocast; `device` is where it ran.
    A record that names its precision is returned as it is.
    """
    if "precision" in record:
        return record
    return {**record, "precision": "bfloat16" if device.startswith("cuda") else "float32"}


def config_from_dict(data: Any) -> TrainConfig:
    """Build and validate a TrainConfig from `config_to_dict` output; missing fields take defaults."""
    if not isinstance(data, dict):
        raise ConfigError(Message(N_("a training config must be a mapping, got %(kind)s"),
                                  {"kind": type(data).__name__}))
    top = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(data) - set(top))
    if unknown:
        raise ConfigError(Message(N_("unknown config field %(field)r; known fields: %(known)s"),
                                  {"field": unknown[0], "known": ", ".join(top)}))
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            values[key] = _section_from_dict(key, SECTIONS[key], value)
        else:
            values[key] = _coerce(key, str(top[key].type), value)
    config = TrainConfig(**values)
    validate(config)
    return config


def override(config: TrainConfig, **overrides: Any) -> TrainConfig:
    """A copy of `config` with flat-named fields replaced (see FLAT_FIELDS), validated."""
    data = config_to_dict(config)
    for name, value in overrides.items():
        if name not in FLAT_FIELDS:
            raise ConfigError(Message(N_("unknown setting %(name)r; known settings: %(known)s"),
                                      {"name": name, "known": ", ".join(FLAT_FIELDS)}))
        section, key = FLAT_FIELDS[name]
        target = data if section is None else data[section]
        target[key] = list(value) if isinstance(value, tuple) else value
    return config_from_dict(data)


def _check(errors: list[Message], ok: bool, template: str, **params: Any) -> None:
    if not ok:
        errors.append(Message(template, params))


def _config_errors(config: TrainConfig) -> list[Message]:
    """Every problem in the config, as messages a person can act on."""
    from core.data import DATASETS, NORMALIZATIONS

    errors: list[Message] = []
    task, data, opt, sched = config.task, config.data, config.optimizer, config.scheduler
    _check(errors, task.kind in TASKS, N_("task must be one of %(choices)s, got %(value)r"),
           choices=", ".join(TASKS), value=task.kind)
    _check(errors, 0 <= task.target_digit <= 9, N_("target_digit must be 0-9, got %(value)s"), value=task.target_digit)
    _check(errors, 0 <= task.label_smoothing < 1, N_("label_smoothing must be in [0, 1), got %(value)s"),
           value=task.label_smoothing)
    _check(errors, data.dataset in DATASETS, N_("dataset must be one of %(choices)s, got %(value)r"),
           choices=", ".join(DATASETS), value=data.dataset)
    _check(errors, data.normalization in NORMALIZATIONS, N_("normalization must be one of %(choices)s, got %(value)r"),
           choices=", ".join(NORMALIZATIONS), value=data.normalization)
    _check(errors, data.batch_size >= 1, N_("batch_size must be at least 1, got %(value)s"), value=data.batch_size)
    _check(errors, data.train_subset >= 0, N_("train_subset must be 0 (all) or more, got %(value)s"),
           value=data.train_subset)
    _check(errors, data.test_subset >= 0, N_("test_subset must be 0 (all) or more, got %(value)s"),
           value=data.test_subset)
    _check(errors, opt.name in OPTIMIZERS, N_("optimizer must be one of %(choices)s, got %(value)r"),
           choices=", ".join(OPTIMIZERS), value=opt.name)
    _check(errors, math.isfinite(opt.lr) and opt.lr > 0, N_("lr must be a positive number, got %(value)s"),
           value=opt.lr)
    _check(errors, opt.weight_decay >= 0, N_("weight_decay must be 0 or more, got %(value)s"), value=opt.weight_decay)
    _check(errors, 0 <= opt.momentum < 1, N_("momentum must be in [0, 1), got %(value)s"), value=opt.momentum)
    _check(errors, not opt.nesterov or opt.momentum > 0, N_("nesterov needs momentum > 0"))
    _check(errors, all(0 <= b < 1 for b in opt.betas), N_("betas must be in [0, 1), got %(value)s"),
           value=str(opt.betas))
    _check(errors, sched.name in SCHEDULERS, N_("scheduler must be one of %(choices)s, got %(value)r"),
           choices=", ".join(SCHEDULERS), value=sched.name)
    _check(errors, sched.t_max >= 0, N_("t_max must be 0 (the run's epochs) or more, got %(value)s"),
           value=sched.t_max)
    _check(errors, sched.min_lr >= 0, N_("min_lr must be 0 or more, got %(value)s"), value=sched.min_lr)
    _check(errors, sched.step_size >= 1, N_("step_size must be at least 1, got %(value)s"), value=sched.step_size)
    _check(errors, sched.gamma > 0, N_("gamma must be positive, got %(value)s"), value=sched.gamma)
    _check(errors, 0 < sched.pct_start < 1, N_("pct_start must be in (0, 1), got %(value)s"), value=sched.pct_start)
    _check(errors, config.epochs >= 1, N_("epochs must be at least 1, got %(value)s"), value=config.epochs)
    _check(errors, config.seed >= 0, N_("seed must be 0 or more, got %(value)s"), value=config.seed)
    _check(errors, config.threads >= 0, N_("threads must be 0 (torch's default) or more, got %(value)s"),
           value=config.threads)
    _check(errors, config.precision in PRECISIONS, N_("precision must be one of %(choices)s, got %(value)r"),
           choices=", ".join(PRECISIONS), value=config.precision)
    _check(errors, _device_name_ok(config.device), N_("device must be auto, cpu, cuda, cuda:N or mps, got %(value)r"),
           value=config.device)
    errors += _model_errors(config)
    return errors


def _device_name_ok(device: str) -> bool:
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def _model_errors(config: TrainConfig) -> list[Message]:
    """Problems with the architecture choice; the registry itself judges names and options."""
    names = models.list_architectures()
    if config.model.arch not in names:
        return [Message(N_("arch must be one of %(choices)s, got %(value)r"),
                        {"choices": ", ".join(names), "value": config.model.arch})]
    try:
        models.arch_config(config.model.arch, num_outputs(config), config.model.options)
    except models.ArchitectureError as error:
        return [error.message]
    return []


def validate(config: TrainConfig) -> None:
    """Raise ConfigError listing every problem in the config (joined by "; ")."""
    errors = _config_errors(config)
    if errors:
        raise ConfigError(*errors)


def num_outputs(config: TrainConfig) -> int:
    """Binary one-vs-rest uses a single logit (BCE-with-logits), as the "is it an 8?" tutorial."""
    return 1 if config.task.kind == "binary" else 10

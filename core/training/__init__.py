"""Training: the config objects, the presets, the events and `train(config)`, a generator of them.

    config.py   one dataclass per concern, flat setting names, validation
    presets.py  each tutorial's recipe, `fast` and `best`
    events.py   what `train` yields
    engine.py   the loop: data, model, optimizer, scheduler, checkpoints, run folder, DDP

Everything a caller needs is importable from here: `from core.training import preset_config, train`.
"""

from core.training.config import (
    FLAT_FIELDS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    SECTIONS,
    TASKS,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TaskConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    flat_values,
    num_outputs,
    override,
    validate,
)
from core.training.engine import (
    AUGMENTATION,
    AUTOCAST_DTYPE,
    EVAL_BATCH_SIZE,
    LOSS_SMOOTHING,
    MEMORY_FORMAT,
    PER_BATCH_SCHEDULERS,
    StopFlag,
    TrainData,
    accuracy_of,
    autocast,
    build_optimizer,
    build_scheduler,
    check_schedule,
    count_correct,
    cpu_computes_bf16,
    evaluate,
    evaluation_of,
    load_train_data,
    loss_function,
    pool_before_relu,
    probabilities,
    resolve_device,
    resolve_precision,
    train,
    uses_cuda,
)
from core.training.events import (
    BatchEnd,
    CheckpointSaved,
    Diverged,
    EpochEnd,
    Event,
    Failed,
    Finished,
    Outcome,
    RunStarted,
    Stopped,
)
from core.training.presets import PRESET_DESCRIPTIONS, PRESETS, preset_config

__all__ = [
    "AUGMENTATION", "AUTOCAST_DTYPE", "EVAL_BATCH_SIZE", "FLAT_FIELDS", "LOSS_SMOOTHING", "MEMORY_FORMAT",
    "OPTIMIZERS",
    "PER_BATCH_SCHEDULERS", "PRECISIONS",
    "PRESETS", "PRESET_DESCRIPTIONS", "SCHEDULERS", "SECTIONS", "TASKS", "BatchEnd", "CheckpointSaved",
    "ConfigError", "DataConfig", "Diverged", "EpochEnd", "Event", "Failed", "Finished", "ModelConfig",
    "OptimizerConfig", "Outcome", "RunStarted", "SchedulerConfig", "StopFlag", "Stopped", "TaskConfig",
    "TrainConfig", "TrainData", "accuracy_of", "autocast", "build_optimizer", "build_scheduler", "check_schedule",
    "config_from_dict", "config_to_dict", "count_correct", "cpu_computes_bf16", "evaluate", "evaluation_of",
    "flat_values",
    "load_train_data", "loss_function", "num_outputs", "override", "pool_before_relu", "preset_config",
    "probabilities",
    "resolve_device", "resolve_precision", "train", "uses_cuda", "validate",
]

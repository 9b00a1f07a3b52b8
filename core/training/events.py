"""Events: what `train` yields, in order, as small frozen dataclasses.

The Train page, the CLI, the jobs and the tests consume the same stream:
    RunStarted, then per epoch: BatchEnd x steps, EpochEnd, CheckpointSaved (last, and best when it
    improved); then exactly one of Finished, Stopped, Failed or Diverged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.metrics import Evaluation
from core.training.config import TrainConfig


@dataclass(frozen=True)
class RunStarted:
    """The run folder exists and the first batch is about to start."""

    run_id: str
    run_dir: Path
    config: TrainConfig
    start_epoch: int  # epochs already done (0 for a new run; more when resuming)
    total_epochs: int  # the epoch count the run will reach
    steps_per_epoch: int  # optimizer steps (batches) per epoch
    train_size: int  # training images per epoch
    test_size: int  # test images evaluated per epoch
    param_count: int  # trainable parameters
    device: str  # where the run computes, e.g. "cpu" or "cuda:0"
    precision: str = "float32"  # the training steps' arithmetic: "float32" or "bfloat16" (autocast)
    world_size: int = 1  # processes training together under torchrun (DDP); batches are split among them


@dataclass(frozen=True)
class BatchEnd:
    """One optimizer step done."""

    epoch: int  # 1-based epoch this step belongs to
    step: int  # 1-based step within the epoch
    steps_per_epoch: int
    global_step: int  # 1-based step counted over the whole run, resumed epochs included
    loss: float  # mean training loss of this batch
    lr: float  # learning rate used for this step
    samples_per_second: float  # training throughput so far in this epoch
    elapsed_seconds: float  # training time of the whole run so far, resumed epochs included


@dataclass(frozen=True)
class EpochEnd:
    """One epoch trained and evaluated; the same numbers are one line of metrics.jsonl."""

    epoch: int  # 1-based
    total_epochs: int
    train_loss: float  # mean over the epoch's batches
    train_accuracy: float  # fraction right during the epoch's training batches (model in train mode)
    test_loss: float  # mean over the test images
    test_accuracy: float  # fraction of test images right
    lr: float  # learning rate at the end of the epoch
    seconds: float  # wall time of this epoch, evaluation included
    elapsed_seconds: float  # wall time of the whole run so far, resumed epochs included
    samples_per_second: float  # training images per second during this epoch
    is_best: bool  # the best test accuracy so far


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint file was written (atomically)."""

    path: Path
    epoch: int
    is_best: bool  # True for best.pt, False for last.pt


@dataclass(frozen=True)
class Finished:
    """The run went through all its epochs; `evaluation` is of the last epoch's model."""

    run_id: str
    run_dir: Path
    epochs: int  # epochs done, resumed ones included
    test_accuracy: float  # last epoch
    test_loss: float  # last epoch
    best_test_accuracy: float
    best_epoch: int
    train_seconds: float  # wall time of all epochs, resumed ones included
    samples_per_second: float  # training images per second over the whole run
    best_checkpoint: Path
    evaluation: Evaluation  # the last epoch's model on the test set


@dataclass(frozen=True)
class Stopped:
    """A stop was requested; the run is saved up to its last whole epoch and can be resumed."""

    run_id: str
    run_dir: Path
    epoch: int  # last whole epoch saved (0 if none finished)
    message: str


@dataclass(frozen=True)
class Failed:
    """The run could not go on; the run folder (if any) is marked failed with the same message."""

    message: str
    run_id: str = ""
    run_dir: Path | None = None
    epoch: int = 0  # last whole epoch saved


@dataclass(frozen=True)
class Diverged:
    """The loss became non-finite or exploded, or accuracy fell to chance: stopped, marked diverged."""

    message: str  # what happened, where, and what to try
    cause: str  # "non-finite loss", "exploding loss" or "accuracy at chance"
    suggested_lr: float  # a learning rate to try instead
    run_id: str
    run_dir: Path
    epoch: int  # last whole epoch saved


Outcome = Finished | Stopped | Failed | Diverged
Event = RunStarted | BatchEnd | EpochEnd | CheckpointSaved | Finished | Stopped | Failed | Diverged

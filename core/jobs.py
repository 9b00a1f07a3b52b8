"""A training run in a background thread, with a thread-safe snapshot of its progress for a UI to poll.

The thread only consumes `core.train.train` events and records them; it never touches any UI.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import runs
from core.data import Dataset
from core.train import (
    BatchEnd,
    CheckpointSaved,
    EpochEnd,
    Event,
    Failed,
    Finished,
    RunStarted,
    Stopped,
    TrainConfig,
    config_from_dict,
    train,
)


@dataclass(frozen=True)
class EpochPoint:
    """One epoch's numbers, from this session or read back from a resumed run's metrics.jsonl."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    lr: float
    seconds: float  # wall time of the epoch
    elapsed_seconds: float  # wall time of the run up to the end of this epoch
    samples_per_second: float


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state at one moment."""

    status: str  # "starting", "running", "finished", "stopped" or "failed"
    message: str  # the reason a run failed or stopped; "" otherwise
    started: RunStarted | None
    epochs: tuple[EpochPoint, ...]
    batch_steps: tuple[int, ...]  # global step of each recorded batch
    batch_losses: tuple[float, ...]  # its training loss
    batch_lrs: tuple[float, ...]  # its learning rate
    last_batch: BatchEnd | None
    finished: Finished | None
    checkpoints: int  # checkpoint files written so far
    wall_seconds: float  # since the job started

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    @property
    def fraction_done(self) -> float:
        """Share of the run's optimizer steps done, resumed epochs counted as done."""
        if self.started is None:
            return 0.0
        if self.status == "finished":
            return 1.0
        total = self.started.total_epochs * self.started.steps_per_epoch
        steps = self.started.steps_per_epoch
        done = self.last_batch.global_step if self.last_batch else self.started.start_epoch * steps
        return min(done / max(total, 1), 1.0)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, from this session's pace (None until there is a pace)."""
        if self.started is None or self.last_batch is None or not self.active:
            return None
        first = self.started.start_epoch * self.started.steps_per_epoch
        done_here = self.last_batch.global_step - first
        left = self.started.total_epochs * self.started.steps_per_epoch - self.last_batch.global_step
        if done_here <= 0:
            return None
        return self.wall_seconds / done_here * left


def _point(values: dict[str, float]) -> EpochPoint:
    return EpochPoint(**{name: values[name] for name in EpochPoint.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass
class TrainingJob:
    """Runs one training in a daemon thread; `snapshot()` is safe to call from any thread."""

    config: TrainConfig | None
    run_name: str | None = None
    resume: str | None = None  # run id to continue
    runs_root: Path | None = None
    dataset: Dataset | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _status: str = "starting"
    _message: str = ""
    _started: RunStarted | None = None
    _epochs: list[EpochPoint] = field(default_factory=list)
    _batch_steps: list[int] = field(default_factory=list)
    _batch_losses: list[float] = field(default_factory=list)
    _batch_lrs: list[float] = field(default_factory=list)
    _last_batch: BatchEnd | None = None
    _finished: Finished | None = None
    _checkpoints: int = 0
    _t0: float = 0.0

    def start(self) -> TrainingJob:
        """Start the thread (once) and return self."""
        if self._thread is None:
            self._t0 = time.perf_counter()
            self._thread = threading.Thread(target=self._run, name="training-job", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop; it does within one batch and saves its last whole epoch."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(
                status=self._status,
                message=self._message,
                started=self._started,
                epochs=tuple(self._epochs),
                batch_steps=tuple(self._batch_steps),
                batch_losses=tuple(self._batch_losses),
                batch_lrs=tuple(self._batch_lrs),
                last_batch=self._last_batch,
                finished=self._finished,
                checkpoints=self._checkpoints,
                wall_seconds=time.perf_counter() - self._t0 if self._t0 else 0.0,
            )

    def _run(self) -> None:
        try:
            events = train(
                self.config, run_name=self.run_name, resume=self.resume, stop=self._stop,
                runs_root=self.runs_root, dataset=self.dataset,
            )
            for event in events:
                with self._lock:
                    self._record(event)
        except Exception as error:  # a config/run/data problem raised before the run began, or a bug
            with self._lock:
                self._status, self._message = "failed", str(error) or type(error).__name__
            return
        with self._lock:
            if self._status in ("starting", "running"):  # the stream ended without a final event
                self._status, self._message = "failed", "training ended without reporting a result"

    def _record(self, event: Event) -> None:
        """Fold one event into the state (called with the lock held)."""
        if isinstance(event, RunStarted):
            self._status, self._started = "running", event
            if event.start_epoch:  # resumed: its earlier epochs continue the same charts
                self._epochs = [_point(row) for row in runs.read_metrics(event.run_dir)[: event.start_epoch]]
        elif isinstance(event, BatchEnd):
            self._last_batch = event
            self._batch_steps.append(event.global_step)
            self._batch_losses.append(event.loss)
            self._batch_lrs.append(event.lr)
        elif isinstance(event, EpochEnd):
            self._epochs.append(_point(event.__dict__))
        elif isinstance(event, CheckpointSaved):
            self._checkpoints += 1
        elif isinstance(event, Finished):
            self._status, self._finished = "finished", event
        elif isinstance(event, Stopped):
            self._status, self._message = "stopped", event.message
        elif isinstance(event, Failed):
            self._status, self._message = "failed", event.message


def resume_job(run_id: str, runs_root: Path | None = None, dataset: Dataset | None = None,
               epochs: int | None = None) -> TrainingJob:
    """A job that continues a stopped run, optionally to a new total epoch count."""
    config = None
    if epochs is not None:
        saved = runs.read_config(runs.run_dir(run_id, runs_root))
        config = config_from_dict({**saved["config"], "epochs": epochs})
    return TrainingJob(config, resume=run_id, runs_root=runs_root, dataset=dataset)

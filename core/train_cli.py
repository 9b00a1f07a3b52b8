"""`python -m core train ...`: train a preset (with overrides), resume a run, or list the presets.

Under `torchrun --nproc_per_node=N -m core train ...` the same command trains one run data-parallel
(DDP, gloo on CPU, nccl on CUDA): rank 0 writes the run folder and prints; `--batch-size` is the
global batch, split evenly over the N processes.

A progress bar with ETA goes to stderr in a terminal, a plain line per epoch otherwise; `--json`
prints one JSON line with the outcome on stdout. The first Ctrl-C stops after the current batch
(the run is saved up to its last whole epoch and can be resumed); a second one aborts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from types import FrameType
from typing import Any, TextIO

from core import distributed, jobs, runs
from core.training import (
    FLAT_FIELDS,
    OPTIMIZERS,
    PRECISIONS,
    PRESET_DESCRIPTIONS,
    PRESETS,
    SCHEDULERS,
    SECTIONS,
    TASKS,
    BatchEnd,
    CheckpointSaved,
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
    config_to_dict,
    preset_config,
)

# Every config setting can be typed on the command line, except the preset itself and architecture options.
OVERRIDES = tuple(name for name in FLAT_FIELDS if name not in ("preset", "options"))
OPTION_HELP = {
    "arch": "architecture (see `python -m core summary --list`)",
    "task": "10-class, or one class against the rest",
    "target_digit": "binary task: the class to recognise, 0-9 (default 8)",
    "augment": "random affine per image",
    "distort": "instead of --augment: slant, wobble, pen width, coarse and box-filling scans (and on MNIST crossed "
    "7s, flagged 1s, hooked 9s), as the default model trains",
    "batch_size": "the global batch (split over processes under torchrun)",
    "train_subset": "train on the first N images (0 = all)",
    "test_subset": "evaluate on the first N test images (0 = all)",
    "lr": "learning rate (the peak for onecycle)",
    "momentum": "sgd only",
    "nesterov": "sgd only: Nesterov momentum",
    "betas": "adam/adamw: decay rates of the moment estimates",
    "t_max": "cosine: epochs from the peak to the minimum (0 = all)",
    "min_lr": "cosine: the learning rate at the bottom",
    "step_size": "step: epochs between decays",
    "gamma": "step: learning-rate multiplier at each decay",
    "pct_start": "onecycle: share of all steps spent warming up",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "threads": "CPU threads for torch (0 = the cores other work leaves idle, checked every epoch)",
    "precision": "auto (bfloat16 autocast where the hardware multiplies it natively: CUDA from Ampere on, CPUs with "
    "AVX512-BF16 or AMX; else float32), float32 or bfloat16; weights, optimizer and test scoring stay float32",
}
RESUME_OVERRIDES = ("epochs", "device", "threads")  # what `--resume` may change


def format_duration(seconds: float) -> str:
    """1:02:03 / 2:03 style."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressReporter:
    """Turns the event stream into a redrawn bar (terminal) or one line per epoch (pipe, log)."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self.stream, self.interactive = stream, interactive
        self.started = time.perf_counter()
        self.last_draw = 0.0
        self.total_steps = self.done_at_start = 1

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.total_steps = event.total_epochs * event.steps_per_epoch
            self.done_at_start = event.start_epoch * event.steps_per_epoch
            self._line(
                f"run {event.run_id}: {event.config.model.arch}, {event.train_size} training images, "
                f"epochs {event.start_epoch + 1}-{event.total_epochs}, {event.param_count:,} parameters, "
                f"{event.device}, {event.precision}"
            )
        elif isinstance(event, BatchEnd) and self.interactive:
            self._bar(event)
        elif isinstance(event, EpochEnd):
            best = " (best)" if event.is_best else ""
            self._line(
                f"epoch {event.epoch}/{event.total_epochs}: train loss {event.train_loss:.4f} "
                f"acc {event.train_accuracy:.2%} | test loss {event.test_loss:.4f} acc {event.test_accuracy:.2%}"
                f"{best} | {event.seconds:.1f}s, {event.samples_per_second:,.0f} img/s, lr {event.lr:.3g}"
            )
        elif isinstance(event, Stopped | Failed | Diverged):
            self._line(f"{outcome_state(event)}: {event.message}")
        elif isinstance(event, Finished):
            self._line(
                f"finished: test accuracy {event.test_accuracy:.2%} (best {event.best_test_accuracy:.2%} at "
                f"epoch {event.best_epoch}) in {format_duration(event.train_seconds)}; best checkpoint "
                f"{event.best_checkpoint}"
            )

    def _bar(self, event: BatchEnd) -> None:
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and event.step != event.steps_per_epoch:
            return  # redraw at most ten times a second
        self.last_draw = now
        done = event.global_step - self.done_at_start
        eta = (now - self.started) / max(done, 1) * (self.total_steps - event.global_step)
        fraction = event.global_step / max(self.total_steps, 1)
        filled = int(fraction * 30)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} epoch {event.epoch} "
            f"step {event.step}/{event.steps_per_epoch} loss {event.loss:.4f} "
            f"{event.samples_per_second:,.0f} img/s ETA {format_duration(eta)} \x1b[K"
        )
        self.stream.flush()

    def _line(self, text: str) -> None:
        prefix = "\r\x1b[K" if self.interactive else ""
        self.stream.write(f"{prefix}{text}\n")
        self.stream.flush()


def outcome_state(event: Outcome) -> str:
    return {Finished: runs.FINISHED, Stopped: runs.STOPPED, Failed: runs.FAILED, Diverged: runs.DIVERGED}[type(event)]


def exit_code(outcome: Outcome | None) -> int:
    """0 finished, 130 stopped (as after Ctrl-C), 1 failed or diverged or gone."""
    return 130 if isinstance(outcome, Stopped) else 0 if isinstance(outcome, Finished) else 1


def outcome_json(event: Outcome) -> dict[str, Any]:
    """The one JSON line `--json` prints."""
    if isinstance(event, Finished):
        return {
            "status": "finished", "run_id": event.run_id, "run_dir": str(event.run_dir),
            "test_accuracy": event.test_accuracy, "test_loss": event.test_loss, "epochs": event.epochs,
            "train_seconds": event.train_seconds, "samples_per_second": event.samples_per_second,
            "best_test_accuracy": event.best_test_accuracy, "best_epoch": event.best_epoch,
            "best_checkpoint": str(event.best_checkpoint),
        }
    outcome = {
        "status": outcome_state(event), "run_id": event.run_id, "run_dir": str(event.run_dir or ""),
        "epochs": event.epoch, "message": event.message,
    }
    if isinstance(event, Diverged):
        outcome.update(cause=event.cause, suggested_lr=event.suggested_lr)
    return outcome


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named on the command line with the options typed there applied."""
    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    return preset_config(args.preset, **overrides)


def queue_resume(args: argparse.Namespace) -> str:
    """For --resume: queue the run again, with epochs/device/threads if given (nothing else may change)."""
    given = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    refused = sorted(set(given) - set(RESUME_OVERRIDES))
    if refused:
        raise ConfigError(f"--resume keeps the run's config; only --epochs, --device and --threads may change, "
                          f"not --{refused[0].replace('_', '-')}")
    return jobs.prepare_resume(args.resume, args.runs_dir, **given)


def _install_stop_handler(stop: runs.StopSignal, stream: TextIO) -> Callable[[], None]:
    """First Ctrl-C: set `stop` (the run ends after this batch, saved and resumable). Second: abort."""
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum: int, frame: FrameType | None) -> None:
        stream.write("\nstopping after this batch… (Ctrl-C again to abort)\n")
        stream.flush()
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handle)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore


def _list_presets(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({name: {"description": PRESET_DESCRIPTIONS[name], "config": config_to_dict(config)}
                          for name, config in PRESETS.items()}))
        return 0
    for name, config in PRESETS.items():
        opt, data = config.optimizer, config.data
        print(
            f"{name:8} {config.model.arch:9} {config.task.kind:10} {opt.name} lr {opt.lr:g}, "
            f"{config.scheduler.name}, batch {data.batch_size}, {config.epochs} epoch{'s' * (config.epochs != 1)}, "
            f"normalize {data.normalization}{', augment' if data.augment else ''}"
        )
        print(f"         {PRESET_DESCRIPTIONS[name]}")
    return 0


def _queue_run(args: argparse.Namespace, world: distributed.World) -> str:
    """Rank 0 (or the only process) queues the run; under torchrun every rank gets its id."""
    from core.__main__ import user_errors

    run_id: str | None = None
    error: Exception | None = None
    if world.main:
        try:
            processes = args.processes if args.detach else 1
            run_id = queue_resume(args) if args.resume else jobs.prepare(
                config_from_args(args), args.run_name, args.runs_dir, processes=processes)
        except user_errors() as refused:
            error = refused
    run_id = distributed.broadcast(run_id, world)
    if error is not None:
        raise error
    if run_id is None:
        raise SystemExit(2)  # rank 0 has said why
    return run_id


def _run(args: argparse.Namespace) -> int:
    if args.list_presets:
        return _list_presets(args)
    world = distributed.setup(distributed.device_type(args.device or "auto"))
    try:
        return _train(args, world)
    finally:
        distributed.teardown()


def _train(args: argparse.Namespace, world: distributed.World) -> int:
    if world.distributed and args.detach:
        raise ConfigError("--detach starts its own processes; do not combine it with torchrun (use --processes)")
    if args.processes != 1 and not args.detach:
        raise ConfigError("--processes N needs --detach; in the foreground, start N processes with torchrun")
    run_id = _queue_run(args, world)
    if args.detach:
        jobs.spawn_run(runs.run_dir(run_id, args.runs_dir))
        record = runs.find_run(run_id, args.runs_dir)
        print(json.dumps({"status": record.status, "run_id": run_id, "run_dir": str(record.run_dir)}) if args.json
              else f"run {run_id} started in the background; follow it with `python -m core runs show {run_id}`")
        return 0
    stop = runs.StopSignal(runs.run_dir(run_id, args.runs_dir), threading.Event())
    report = ProgressReporter(sys.stderr, interactive=sys.stderr.isatty())

    def on_event(event: Event) -> None:
        if world.main and (not args.quiet or not isinstance(event, BatchEnd | CheckpointSaved)):
            report(event)

    restore = _install_stop_handler(stop, sys.stderr)
    try:
        outcome = jobs.work(run_id, args.runs_dir, stop=stop, on_event=on_event,
                            on_wait=lambda message: print(f"run {run_id}: {message}", file=sys.stderr))
    finally:
        restore()
    if outcome is None:
        print(f"error: the run folder of {run_id} was deleted", file=sys.stderr)
        return 1
    if args.json and world.main:
        print(json.dumps({**outcome_json(outcome), "world_size": world.size}))
    return exit_code(outcome)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `python -m core train`; Ctrl-C leaves a stopped, resumable run (exit code 130)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\naborted; the run is marked stopped and can be resumed from its last whole epoch", file=sys.stderr)
        return 130


def _option_kind(name: str) -> str:
    """The annotation of the config field a flat setting name points at ("int", "float", "bool", ...)."""
    section, key = FLAT_FIELDS[name]
    holder = TrainConfig if section is None else SECTIONS[section]
    return str(next(item.type for item in fields(holder) if item.name == key))


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    """One option per config setting (FLAT_FIELDS): --lr, --nesterov/--no-nesterov, --betas B1 B2, ..."""
    from core.data import DATASETS, NORMALIZATIONS

    choices: dict[str, Sequence[str]] = {
        "task": TASKS, "dataset": sorted(DATASETS), "normalization": list(NORMALIZATIONS),
        "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "precision": PRECISIONS,
    }
    numbers = {"int": int, "float": float, "str": str}
    for name in OVERRIDES:
        flag, kind = "--" + name.replace("_", "-"), _option_kind(name)
        text = OPTION_HELP.get(name)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif kind.startswith("tuple"):
            parser.add_argument(flag, type=float, nargs=2, metavar=("B1", "B2"), help=text)
        else:
            parser.add_argument(flag, type=numbers[kind], choices=choices.get(name), help=text)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core train`."""
    parser = subparsers.add_parser(
        "train", help="train a preset, resume a run, or list the presets",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="fast", choices=list(PRESETS), help="starting recipe (default fast)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue this run from its last whole epoch")
    parser.add_argument("--list-presets", action="store_true", help="show the presets and exit")
    parser.add_argument("--run-name", help="a name for the run; it becomes part of the run id")
    parser.add_argument("--runs-dir", help="folder of run folders (default $DIGITS_RUNS_DIR or checkpoints/runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON line with the outcome on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the per-epoch lines")
    parser.add_argument("--detach", action="store_true",
                        help="train in a background process and return at once (follow it with `runs show`)")
    parser.add_argument("--processes", type=int, default=1,
                        help="with --detach: train data-parallel in N local processes (torchrun, DDP); "
                             "--batch-size stays the global batch")
    _add_overrides(parser)
    parser.set_defaults(func=run_cli)

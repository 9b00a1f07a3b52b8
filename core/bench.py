"""`python -m core bench ACTION`: speed benchmarks, each an action of the `bench` command.

`bench train` runs, in one process, on the same preset and machine, a tutorial's own pipeline
(torchvision dataset with per-sample ToTensor/Normalize, a DataLoader, a plain loop) and our engine,
and compares epoch times and accuracies. With --to-99 it also times `fast` against the tutorial
pipeline of seed002 to 99.0% test accuracy. Other benchmarks join as more actions (see ACTIONS).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from core import models
from core.data import data_dir, get_spec, load_dataset, normalization
from core.training import (
    ConfigError,
    EpochEnd,
    Failed,
    RunStarted,
    TrainConfig,
    build_optimizer,
    count_correct,
    loss_function,
    override,
    preset_config,
    resolve_precision,
    train,
)

TARGET_ACCURACY = 0.99  # the "time to 99%" threshold
TUTORIAL_TEST_BATCH = 64  # the tutorials evaluate with DataLoader(test, batch_size=64)


# ---------------------------------------------------------------------------------------------
# The tutorials' own pipeline


@dataclass(frozen=True)
class EpochResult:
    """One epoch of a pipeline: wall time (training + evaluation) and test accuracy."""

    epoch: int
    seconds: float  # training and evaluating this epoch
    train_seconds: float  # of which training
    test_accuracy: float


def tutorial_loaders(config: TrainConfig) -> tuple[DataLoader, DataLoader]:
    """torchvision's dataset with per-sample ToTensor (+ Normalize) and DataLoaders, as the tutorials do."""
    dataset = load_dataset(config.data.dataset)  # makes sure the files are there; its tensors are not used
    norm = normalization(config.data.normalization, dataset)
    steps: list[Any] = [transforms.ToTensor()]
    if config.data.normalization != "none":
        steps.append(transforms.Normalize((norm.mean,), (norm.std,)))
    transform = transforms.Compose(steps)
    spec = get_spec(config.data.dataset)
    train_set = spec.torchvision_class(str(data_dir()), train=True, transform=transform)
    test_set = spec.torchvision_class(str(data_dir()), train=False, transform=transform)
    if config.data.train_subset:
        train_set = torch.utils.data.Subset(train_set, range(config.data.train_subset))
    if config.data.test_subset:
        test_set = torch.utils.data.Subset(test_set, range(config.data.test_subset))
    # The loader's own seeded generator: its order does not depend on what else ran in the process.
    shuffle = torch.Generator().manual_seed(config.seed)
    return (
        DataLoader(train_set, batch_size=config.data.batch_size, shuffle=True, generator=shuffle),
        DataLoader(test_set, batch_size=TUTORIAL_TEST_BATCH, shuffle=False),
    )


def tutorial_epochs(config: TrainConfig, max_epochs: int) -> Iterator[EpochResult]:
    """The tutorial loop: model, optimizer, batch size and loss of the preset, a plain for loop per epoch."""
    torch.manual_seed(config.seed)
    num_outputs = 1 if config.task.kind == "binary" else 10
    model: nn.Module = models.build_model(config.model.arch, num_outputs, config.model.options)
    loss_fn = loss_function(config.task, models.output_kind(model))
    optimizer = build_optimizer(config.optimizer, model.parameters())
    train_loader, test_loader = tutorial_loaders(config)
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
        trained = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int(count_correct(model(images), labels, config.task))
        yield EpochResult(epoch, time.perf_counter() - start, trained - start, correct / len(test_loader.dataset))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Our engine, measured the same way


def engine_epochs(config: TrainConfig) -> Iterator[EpochResult]:
    """Our `train()` on the same config, in a throw-away runs folder; wall time between epoch ends.

    Timing starts at RunStarted (data loaded, model built), as the tutorial loop's starts at its
    first batch, and includes our per-epoch checkpoint saving.
    """
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as root:
        mark, train_size = time.perf_counter(), 1
        for event in train(config, runs_root=root):
            if isinstance(event, RunStarted):
                mark, train_size = time.perf_counter(), event.train_size
            elif isinstance(event, EpochEnd):
                now = time.perf_counter()
                train_seconds = train_size / event.samples_per_second
                yield EpochResult(event.epoch, now - mark, train_seconds, event.test_accuracy)
                mark = time.perf_counter()  # the consumer's own time between epochs does not count
            elif isinstance(event, Failed):
                raise ConfigError(f"our engine failed: {event.message}")


def seconds_to(results: Iterator[EpochResult], target: float) -> tuple[float | None, int, float]:
    """Wall seconds until an epoch ends at `target` accuracy or better (None if never); epochs; last accuracy."""
    total, epochs, accuracy = 0.0, 0, 0.0
    for result in results:
        total += result.seconds
        epochs, accuracy = result.epoch, result.test_accuracy
        if accuracy >= target:
            break
    else:
        return None, epochs, accuracy
    close = getattr(results, "close", None)
    if close is not None:
        close()  # end the pipeline now: a run closed early is marked stopped and its folder removed
    return total, epochs, accuracy


# ---------------------------------------------------------------------------------------------
# The floor: the model's arithmetic at the CPU's matrix-multiply peak


def matmul_flops_per_second(size: int = 1024, repeats: int = 3, trials: int = 5,
                            dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a square matmul in `dtype` at the current thread count: the CPU's practical peak.

    The best of several trials, since other processes sharing the CPU only ever slow it down.
    """
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm up
    best = math.inf
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def floor_epoch_seconds(
    config: TrainConfig, train_size: int, test_size: int, flops_per_second: float, train_flops: float | None = None
) -> float:
    """The epoch time if every multiply-accumulate ran at matmul peak: 3x the forward for training, 1x for test.

    `train_flops` is the peak of the training steps' precision (bfloat16 under autocast) when it is not
    `flops_per_second`, the float32 peak at which the test set is scored.
    """
    from core.summary import summarize_architecture

    num_outputs = 1 if config.task.kind == "binary" else 10
    macs = summarize_architecture(config.model.arch, num_outputs, config.model.options).total_macs
    training = flops_per_second if train_flops is None else train_flops
    return 2 * macs * (3 * train_size / training + test_size / flops_per_second)


# ---------------------------------------------------------------------------------------------
# bench train


def bench_train(
    preset: str,
    epochs: int = 1,
    threads: int = 2,
    train_subset: int = 0,
    test_subset: int = 0,
    to_99: bool = False,
    max_epochs_99: int = 10,
    our_threads: int = 0,
) -> dict[str, Any]:
    """Run both pipelines and return the numbers `--json` prints (subsets are for quick checks only).

    The tutorial pipeline runs with `threads` torch threads, as written (torch's default is every
    core). Our engine runs with `our_threads`; 0 means its own policy: the cores other processes leave
    idle, up to `threads`, looked at every epoch (core.training.engine.free_cores).
    """
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    config = preset_config(
        preset, epochs=epochs, threads=threads, train_subset=train_subset, test_subset=test_subset, device="cpu"
    )
    ours_config = override(config, threads=our_threads)
    # With --to-99 on seed002's full data, the tutorial run that is timed to 99% is this same run, continued.
    reuse = to_99 and preset == "seed002" and not train_subset and not test_subset
    baseline_run = tutorial_epochs(config, max(epochs, max_epochs_99) if reuse else epochs)
    # Alternate the two pipelines' epochs, so a change in background load hits both alike.
    pairs = list(zip(itertools.islice(baseline_run, epochs), engine_epochs(ours_config), strict=True))
    baseline, ours = [base for base, _ in pairs], [our for _, our in pairs]
    base_epoch = sum(r.seconds for r in baseline) / len(baseline)
    our_epoch = sum(r.seconds for r in ours) / len(ours)
    dataset = load_dataset(config.data.dataset)
    train_size = train_subset or len(dataset.train_labels)
    test_size = test_subset or len(dataset.test_labels)
    peak = matmul_flops_per_second()
    floor = floor_epoch_seconds(config, train_size, test_size, peak)
    precision = resolve_precision(ours_config.precision, torch.device("cpu"))
    bf16_peak = matmul_flops_per_second(dtype=torch.bfloat16) if precision == "bfloat16" else peak
    our_floor = floor_epoch_seconds(config, train_size, test_size, peak, train_flops=bf16_peak)
    result: dict[str, Any] = {
        "preset": preset, "epochs": epochs, "threads": threads, "our_threads": our_threads or "auto",
        "train_size": train_size, "load_average_1min_before": load_before,
        "baseline_epoch_seconds": base_epoch, "ours_epoch_seconds": our_epoch, "ratio": our_epoch / base_epoch,
        "baseline_test_accuracy": baseline[-1].test_accuracy, "ours_test_accuracy": ours[-1].test_accuracy,
        "floor_epoch_seconds": floor, "floor_ratio": floor / base_epoch, "our_precision": precision,
        "our_floor_epoch_seconds": our_floor, "our_floor_ratio": our_floor / base_epoch,
    }
    if to_99:
        started = itertools.chain(baseline, baseline_run) if reuse else None
        result.update(_time_to_99(threads, max_epochs_99, started, our_threads))
    result["load_average_1min_after"] = os.getloadavg()[0]
    return result


def _time_to_99(
    threads: int, max_epochs: int, baseline: Iterator[EpochResult] | None = None, our_threads: int = 0
) -> dict[str, Any]:
    """seed002's tutorial pipeline (`baseline` if already under way) vs our `fast` preset, each to 99.0%."""
    if baseline is None:
        baseline = tutorial_epochs(preset_config("seed002", threads=threads, device="cpu"), max_epochs)
    base_seconds, base_epochs, base_accuracy = seconds_to(baseline, TARGET_ACCURACY)
    fast_config = preset_config("fast", threads=our_threads, device="cpu")
    fast_seconds, fast_epochs, fast_accuracy = seconds_to(engine_epochs(fast_config), TARGET_ACCURACY)
    return {
        "baseline_seconds_to_99": base_seconds, "baseline_epochs_to_99": base_epochs,
        "baseline_accuracy_at_stop": base_accuracy,
        "fast_seconds_to_99": fast_seconds, "fast_epochs_to_99": fast_epochs, "fast_accuracy_at_stop": fast_accuracy,
        "time_to_99_ratio": fast_seconds / base_seconds if fast_seconds and base_seconds else None,
    }


def _reached(result: dict[str, Any], who: str) -> str:
    seconds, epochs = result[f"{who}_seconds_to_99"], result[f"{who}_epochs_to_99"]
    if seconds is None:
        return f"not reached ({result[f'{who}_accuracy_at_stop']:.2%} after {epochs} epochs)"
    return f"{seconds:.1f} s ({epochs} epochs)"


def print_train_report(result: dict[str, Any]) -> None:
    """The human-readable table of `bench train`."""
    base, ours, floor = result["baseline_epoch_seconds"], result["ours_epoch_seconds"], result["floor_epoch_seconds"]
    print(f"bench train: preset {result['preset']}, {result['epochs']} epoch(s), {result['train_size']} images, "
          f"tutorial {result['threads']} threads, ours {result['our_threads']}, load average "
          f"{result['load_average_1min_before']:.1f} before, {result['load_average_1min_after']:.1f} after")
    print(f"  tutorial pipeline: {base:7.2f} s/epoch, test accuracy {result['baseline_test_accuracy']:.2%}")
    print(f"  our engine:        {ours:7.2f} s/epoch, test accuracy {result['ours_test_accuracy']:.2%}")
    print(f"  ratio ours/tutorial: {result['ratio']:.2f}x (target <= 0.30x)")
    print(f"  floor (the model's arithmetic at float32 matmul peak): {floor:.2f} s/epoch = "
          f"{result['floor_ratio']:.2f}x the tutorial's")
    if result["our_precision"] != "float32":
        our_floor = result["our_floor_epoch_seconds"]
        print(f"  our engine trains in {result['our_precision']} (autocast; scored in float32): its floor is "
              f"{our_floor:.2f} s/epoch = {result['our_floor_ratio']:.2f}x; our epoch is {ours / our_floor:.1f}x it")
    else:
        print(f"  our epoch is {ours / floor:.1f}x the floor")
    if "fast_seconds_to_99" in result:
        print(f"  time to 99.0%: seed002 tutorial pipeline {_reached(result, 'baseline')}, "
              f"fast preset {_reached(result, 'fast')}")
        if result["time_to_99_ratio"] is not None:
            print(f"  ratio fast/tutorial: {result['time_to_99_ratio']:.2f}x (target <= 0.10x)")


def _cmd_train(args: argparse.Namespace) -> int:
    result = bench_train(
        args.preset, args.epochs, args.threads, args.train_subset, args.test_subset, args.to_99, args.max_epochs_99,
        args.our_threads,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print_train_report(result)
    return 0


def _add_train(actions: argparse._SubParsersAction) -> None:
    from core.training import PRESETS

    parser = actions.add_parser("train", help="tutorial pipeline vs our engine: epoch time, accuracy, time to 99%")
    parser.add_argument("--preset", default="seed002", choices=list(PRESETS))
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each pipeline (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both (default 2)")
    parser.add_argument("--our-threads", type=int, default=0,
                        help="torch threads for our engine (default 0: the idle cores, up to --threads)")
    parser.add_argument("--train-subset", type=int, default=0, help="first N training images (0 = all)")
    parser.add_argument("--test-subset", type=int, default=0, help="first N test images (0 = all)")
    parser.add_argument("--to-99", action="store_true", help="also time seed002's pipeline and `fast` to 99.0%%")
    parser.add_argument("--max-epochs-99", type=int, default=10, help="give up on 99%% after this many epochs")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.set_defaults(func=_cmd_train)


# ---------------------------------------------------------------------------------------------
# bench predict


# The training run `bench predict --with-training` starts beside the timed predictions: the same
# CLI the Train page's worker processes run, on a subset so that it is surely still training when timed.
BUSY_SECONDS = 5.0  # default length of each timing with --with-training: the first 0.3 s of a run is not typical
TRAINING_BESIDE = ["--preset", "fast", "--train-subset", "30000", "--test-subset", "2000", "--epochs", "3", "--quiet"]


@contextlib.contextmanager
def training_beside(timeout: float = 300.0, niceness: int = 0) -> Iterator[subprocess.Popen]:
    """A `python -m core train` process in a throw-away runs folder, yielded once its first epoch has begun.

    "Begun" is its run folder's status.json saying running: the engine writes it after loading the
    data and building the model, right before the first batch. The process is ended afterwards.
    `niceness` > 0 runs it at that lower CPU priority (os.nice), to see what that would buy a server.
    """
    with tempfile.TemporaryDirectory(prefix="bench-beside-") as root:
        command = [sys.executable, "-m", "core", "train", *TRAINING_BESIDE, "--runs-dir", root]
        with tempfile.TemporaryFile("w+") as log:
            lower = functools.partial(os.nice, niceness) if niceness else None  # runs in the child, before exec
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lower)
            try:
                _wait_until_training(process, Path(root), log, timeout)
                yield process
            finally:
                process.terminate()  # the CLI stops at the next batch and marks the run stopped
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_training(process: subprocess.Popen, root: Path, log: IO[str], timeout: float) -> None:
    """Poll the runs folder until a run's status.json says running; RuntimeError if the process ends first."""
    from core.runs import STATUS_FILE, read_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the training process ended (code {process.returncode}) before training:\n{log.read()}")
        if any(read_status(path.parent).get("status") == "running" for path in root.glob(f"*/{STATUS_FILE}")):
            return
        time.sleep(0.05)  # polling a file another process writes: nothing to wait on instead
    raise RuntimeError(f"the training process did not start training within {timeout:.0f} s")


def bench_predict(
    checkpoint: str, count: int, with_training: bool = False, seconds: float = 0.0, training_nice: int = 0
) -> dict[str, Any]:
    """Time preprocess + predict per canvas-like image: `count` real test digits drawn at 280x280.

    The process first sets its thread count as the dashboard server does (core.inference.set_serving_threads).
    Each timing repeats the images for at least `seconds`. With `with_training`, they are timed again
    while a training process runs beside them (see `training_beside`), the ratios busy/idle of p50
    and p95 are added, and a last idle timing shows how much the machine's other load drifted meanwhile.
    """
    from core.checkpoints import load_checkpoint
    from core.inference import set_serving_threads, time_predictions
    from core.preprocess import render_as_canvas

    set_serving_threads()
    loaded = load_checkpoint(checkpoint)
    dataset = load_dataset(loaded.dataset)
    images = [render_as_canvas(image) for image in dataset.test_images[:count]]  # (280, 280, 4) RGBA each
    labels = dataset.test_labels[:count].tolist()
    timing = time_predictions(loaded.model, loaded.normalization, images, labels, min_seconds=seconds)
    result: dict[str, Any] = {
        "checkpoint": checkpoint, "images": count, "predictions": timing.count, "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "p50_ms": timing.p50_ms, "p95_ms": timing.p95_ms, "max_ms": timing.max_ms, "accuracy": timing.accuracy,
    }
    if with_training:
        with training_beside(niceness=training_nice) as process:
            busy = time_predictions(loaded.model, loaded.normalization, images, labels, min_seconds=seconds)
            result["training_throughout"] = process.poll() is None  # still training when the timing ended
            result["busy_load_average_1min"] = os.getloadavg()[0]
        after = time_predictions(loaded.model, loaded.normalization, images, labels, min_seconds=seconds)
        result.update({
            "training_command": " ".join(["python -m core train", *TRAINING_BESIDE]), "training_nice": training_nice,
            "busy_predictions": busy.count, "busy_p50_ms": busy.p50_ms, "busy_p95_ms": busy.p95_ms,
            "busy_max_ms": busy.max_ms, "ratio_p50": busy.p50_ms / timing.p50_ms,
            "ratio_p95": busy.p95_ms / timing.p95_ms,
            "idle_after_p50_ms": after.p50_ms, "idle_after_p95_ms": after.p95_ms,
        })
    return result


def print_predict_report(result: dict[str, Any]) -> None:
    """The human-readable lines of `bench predict`."""
    print(f"bench predict: {result['images']} MNIST test digits drawn as 280x280 RGBA canvases "
          f"({result['predictions']} timed), {result['checkpoint']}, {result['threads']} torch thread(s), "
          f"CPU load average {result['load_average_1min']:.1f}")
    print(f"  preprocess + predict per image: p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms "
          f"(target <= 5 ms), max {result['max_ms']:.2f} ms")
    print(f"  accuracy on these images: {result['accuracy']:.2%}")
    if "busy_p50_ms" in result:
        nice = f" at nice {result['training_nice']}" if result["training_nice"] else ""
        print(f"  beside `{result['training_command']}`{nice} (load average {result['busy_load_average_1min']:.1f}): "
              f"p50 {result['busy_p50_ms']:.2f} ms, p95 {result['busy_p95_ms']:.2f} ms, "
              f"max {result['busy_max_ms']:.2f} ms")
        print(f"  busy / idle: p50 {result['ratio_p50']:.2f}x, p95 {result['ratio_p95']:.2f}x (target <= 1.2x)")
        print(f"  idle again afterwards: p50 {result['idle_after_p50_ms']:.2f} ms, "
              f"p95 {result['idle_after_p95_ms']:.2f} ms (how much the rest of the machine's load moved meanwhile)")
        if not result["training_throughout"]:
            print("  warning: the training process ended before the timing did; the busy figures are too kind")


def _cmd_predict(args: argparse.Namespace) -> int:
    seconds = args.seconds if args.seconds is not None else BUSY_SECONDS if args.with_training else 0.0
    result = bench_predict(args.checkpoint, args.count, args.with_training, seconds, args.training_nice)
    if args.json:
        print(json.dumps(result))
    else:
        print_predict_report(result)
    return 0


def _add_predict(actions: argparse._SubParsersAction) -> None:
    from core.inference import DEFAULT_CHECKPOINT

    parser = actions.add_parser("predict", help="Draw page speed: preprocessing + prediction per image, p50/p95")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help="a checkpoint file or a run folder (its best checkpoint); default: the shipped model")
    parser.add_argument("--count", type=int, default=500, help="test digits to time (default 500)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="repeat the digits until each timing has lasted this long (default: once; "
                             f"with --with-training, {BUSY_SECONDS:g} s)")
    parser.add_argument("--with-training", action="store_true",
                        help="time them again while a training process runs beside them; print busy/idle ratios")
    parser.add_argument("--training-nice", type=int, default=0,
                        help="with --with-training: run the training process at this lower CPU priority (default 0)")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.set_defaults(func=_cmd_predict)


# ---------------------------------------------------------------------------------------------
# bench ladder


def print_ladder_report(result: dict[str, Any]) -> None:
    """The ladder as a table: each rung's time to 99%, its ratio to the first rung, accuracy and epochs."""
    machine = result["machine"]
    print(f"speedrun ladder: {result['train_size']} training images, {machine['cpu']}, {machine['cores']} cores, "
          f"load average {machine['load_average_1min']:.1f} before, {result['load_average_1min_after']:.1f} after")
    first = result["rungs"][0]["seconds_to_99"] if result["rungs"] else None
    for row in result["rungs"]:
        seconds = row["seconds_to_99"]
        reached = f"{seconds:8.1f} s" if seconds is not None else "  not reached"
        ratio = f"{seconds / first:5.2f}x" if seconds is not None and first else "     "
        print(f"  {row['key']:<14} {reached} {ratio}  {row['test_accuracy']:.2%} after {row['epochs']} epoch(s)"
              f"{'  ' + row['error'] if row['error'] else ''}")


def _cmd_ladder(args: argparse.Namespace) -> int:
    from core.speedrun import run_ladder, write_ladder

    torch.set_num_threads(2)
    skip = tuple(key for key in args.skip.split(",") if key)
    def progress(rung: Any, measured: Any) -> None:  # one line per rung on stderr while the ladder climbs
        reached = f"{measured.seconds_to_99:.1f} s" if measured.seconds_to_99 is not None else "not reached"
        print(f"  rung {rung.key}: {reached}, {measured.test_accuracy:.2%} after {measured.epochs} epoch(s)",
              file=sys.stderr, flush=True)

    result = run_ladder(args.train_subset, args.test_subset, args.max_epochs, skip, on_rung=progress)
    if args.output:
        write_ladder(result, Path(args.output))
    if args.json:
        print(json.dumps(result))
    else:
        print_ladder_report(result)
    return 0


def _add_ladder(actions: argparse._SubParsersAction) -> None:
    from core.speedrun import DEFAULT_OUTPUT

    parser = actions.add_parser("ladder", help="the speedrun ladder: tutorial pipeline to `fast`, one change a rung")
    parser.add_argument("--train-subset", type=int, default=0, help="first N training images (0 = all)")
    parser.add_argument("--test-subset", type=int, default=0, help="first N test images (0 = all)")
    parser.add_argument("--max-epochs", type=int, default=4, help="epochs a constant-rate rung may take (default 4)")
    parser.add_argument("--skip", default="", help="comma-separated rungs not to measure, e.g. compile")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help=f"write the result here for the Speedrun page (default {DEFAULT_OUTPUT}; '' = nowhere)")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.set_defaults(func=_cmd_ladder)


# ---------------------------------------------------------------------------------------------
# bench gpu


def _cmd_gpu(args: argparse.Namespace) -> int:
    from core.gpu import bench_gpu, cold_run

    overrides = {name: value for name, value in (("batch_size", args.batch_size), ("lr", args.lr)) if value}
    result = bench_gpu(args.preset, args.warm_runs, args.compile, **overrides)
    if args.cold:
        result.update(cold_run(args.preset, args.compile, batch_size=args.batch_size, lr=args.lr))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"bench gpu: {result['gpu']}, preset {args.preset} {overrides or ''}, autocast {result['autocast']}, "
          f"compile {'on' if args.compile else 'off'}")
    print(f"  first run in this process (CUDA start-up{', compiling' if args.compile else ''}): "
          f"{result['first_run_seconds_to_99']} s to 99%")
    print(f"  warm: {result['warm_seconds_to_99']} s to 99% (best {result['warm_best_seconds_to_99']}), "
          f"accuracies {result['warm_accuracies']}")
    if args.cold:
        print(f"  cold process: {result['cold_process_seconds']:.1f} s from start to answer, "
              f"{result['cold_seconds_to_99']} s of it training to 99%")
    return 0


def _add_gpu(actions: argparse._SubParsersAction) -> None:
    from core.training import PRESETS

    parser = actions.add_parser("gpu", help="time to 99%% on a CUDA GPU (CUDA events), warm and from a cold process")
    parser.add_argument("--preset", default="fast", choices=list(PRESETS))
    parser.add_argument("--warm-runs", type=int, default=3, help="timed runs after the first (default 3)")
    parser.add_argument("--cold", action="store_true", help="also time a fresh process from its start")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--batch-size", type=int, default=0, help="override the preset's batch size")
    parser.add_argument("--lr", type=float, default=0.0, help="override the preset's (peak) learning rate")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.set_defaults(func=_cmd_gpu)


# Each action adds its parser to `bench`'s sub-commands.
ACTIONS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train, _add_predict, _add_ladder, _add_gpu]


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core bench ACTION ...`."""
    bench = subparsers.add_parser("bench", help="speed benchmarks", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = bench.add_subparsers(dest="action", required=True)
    for add_action in ACTIONS:
        add_action(actions)

"""The GPU path: what changes when CUDA is present, and `bench gpu`, `fast`'s time to 99% on it.

On CUDA the engine keeps the data on the GPU (core.training.load_train_data moves it once), runs the
forward pass under bf16 autocast (weights and optimizer stay float32), keeps activations
channels-last and augments on the GPU. Without CUDA nothing here is used and every path is the CPU
one. `bench gpu` times with CUDA events, warm (in this process, after a first run that pays for
CUDA's start-up and any compilation) and cold (a fresh `python -m core bench gpu` process, from its
start to its answer).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core import models
from core.data import iterate_batches, load_dataset, to_model_input
from core.training import (
    AUTOCAST_DTYPE,
    MEMORY_FORMAT,
    PER_BATCH_SCHEDULERS,
    ConfigError,
    TrainConfig,
    TrainData,
    autocast,
    build_optimizer,
    build_scheduler,
    count_correct,
    load_train_data,
    loss_function,
    num_outputs,
    preset_config,
    uses_cuda,
)

TARGET_ACCURACY = 0.99
EVAL_BATCH = 10_000  # the whole test set in one forward pass fits any GPU's memory
GPU_PRECISION = "bfloat16"  # the lean loop autocasts on CUDA; on the CPU (tests) it runs float32


def loop_precision(device: torch.device) -> str:
    """bf16 autocast on CUDA, float32 elsewhere: the lean loop's arithmetic, training and scoring alike."""
    return GPU_PRECISION if uses_cuda(device) else "float32"

class Stopwatch:
    """Elapsed seconds of GPU work: CUDA events on CUDA (no host sync until read), perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = uses_cuda(device)
        if self.cuda:
            self.begin, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.started = time.perf_counter()

    def seconds(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self.started
        self.end.record()
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1000.0


@dataclass(frozen=True)
class GpuRun:
    """One timed run to 99%: seconds (None if the epochs ran out), epochs and final accuracy."""

    seconds_to_99: float | None
    epochs: int
    test_accuracy: float


def train_to_99(config: TrainConfig, data: TrainData, device: torch.device, compile_model: bool = False,
                target: float = TARGET_ACCURACY) -> GpuRun:
    """The lean loop of `bench gpu`: data resident on `device`, autocast, channels-last; evaluated per epoch."""
    torch.manual_seed(config.seed)
    model: nn.Module = models.build_model(config.model.arch, num_outputs(config), config.model.options)
    model = model.to(device).to(memory_format=MEMORY_FORMAT)
    net: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if compile_model else model
    loss_fn = loss_function(config.task, models.output_kind(model))
    optimizer = build_optimizer(config.optimizer, model.parameters(), device)
    if config.data.augment or config.data.distort:
        raise ConfigError(f"bench gpu times a recipe without augmentation (as `fast`); {config.preset or 'this'} "
                          "augments")
    scheduler = build_scheduler(config, optimizer, -(-len(data.train_labels) // config.data.batch_size))
    precision = loop_precision(device)
    per_batch = config.scheduler.name in PER_BATCH_SCHEDULERS
    watch, accuracy = Stopwatch(device), 0.0
    for epoch in range(1, config.epochs + 1):
        model.train()
        for images, labels in iterate_batches(data.train_images, data.train_labels, config.data.batch_size,
                                              seed=config.seed, epoch=epoch):
            with autocast(device, precision):
                loss = loss_fn(net(to_model_input(images, data.norm).contiguous(memory_format=MEMORY_FORMAT)),
                               labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None and per_batch:
                scheduler.step()
        if scheduler is not None and not per_batch:
            scheduler.step()
        accuracy = _accuracy(net, model, data, config, device)  # a host sync: the epoch's answer is needed
        if accuracy >= target:
            return GpuRun(watch.seconds(), epoch, accuracy)
    return GpuRun(None, config.epochs, accuracy)


@torch.inference_mode()
def _accuracy(net: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, data: TrainData,
              config: TrainConfig, device: torch.device) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(data.test_labels), EVAL_BATCH):
        images = to_model_input(data.test_images[start : start + EVAL_BATCH], data.norm)
        with autocast(device, loop_precision(device)):
            outputs = net(images.contiguous(memory_format=MEMORY_FORMAT))
        correct += count_correct(outputs, data.test_labels[start : start + EVAL_BATCH], config.task)
    return int(correct) / len(data.test_labels)


def require_cuda() -> torch.device:
    """The CUDA device, or ConfigError saying there is none (the CLI prints it and exits 2)."""
    if not torch.cuda.is_available():
        raise ConfigError("bench gpu needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is "
                          "False); the CPU figures come from `python -m core bench train --to-99`")
    return torch.device("cuda")


def bench_gpu(preset: str = "fast", warm_runs: int = 3, compile_model: bool = False,
              **overrides: Any) -> dict[str, Any]:
    """`warm_runs` timed runs of the preset to 99% after one untimed run that warms CUDA (and compiles)."""
    device = require_cuda()
    config = preset_config(preset, device="cuda", **overrides)
    data = load_train_data(config, device, load_dataset(config.data.dataset))
    first = train_to_99(config, data, device, compile_model)
    runs = [train_to_99(config, data, device, compile_model) for _ in range(warm_runs)]
    reached = [run.seconds_to_99 for run in runs if run.seconds_to_99 is not None]
    return {
        "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "preset": preset, "overrides": overrides, "compile": compile_model, "autocast": str(AUTOCAST_DTYPE),
        "first_run_seconds_to_99": first.seconds_to_99, "warm_seconds_to_99": [run.seconds_to_99 for run in runs],
        "warm_best_seconds_to_99": min(reached) if reached else None,
        "warm_accuracies": [run.test_accuracy for run in runs], "epochs": [run.epochs for run in runs],
    }


def cold_run(preset: str, compile_model: bool, timeout: float = 600.0, batch_size: int | None = None,
             lr: float | None = None) -> dict[str, Any]:
    """A fresh `python -m core bench gpu --warm-runs 0` process with the same settings: seconds to its answer."""
    command = [sys.executable, "-m", "core", "bench", "gpu", "--preset", preset, "--warm-runs", "0", "--json"]
    if compile_model:
        command.append("--compile")
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    if lr:
        command += ["--lr", repr(lr)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise ConfigError(f"the cold `bench gpu` process failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    inner = json.loads(done.stdout.strip().splitlines()[-1])
    return {"cold_process_seconds": seconds, "cold_seconds_to_99": inner["first_run_seconds_to_99"]}


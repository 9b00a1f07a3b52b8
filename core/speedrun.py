"""The speedrun ladder: from the tutorial pipeline to `fast`, one change at a time, each rung measured.

Every rung is the rung before it with exactly one change (`Rung.changes` names the settings it
touches), so a rung's gain is that change's own. Each rung trains its network from the same seed
until an epoch ends at 99.0% test accuracy (or its epochs run out) and records the wall time,
training and evaluation included, as `bench train --to-99` times `fast`. All rungs run in one
process, one after another, so that their times can be compared; the result (with the machine, its
load and the torch version) is written as JSON for the Speedrun page: no figure there is typed.

    python -m core bench ladder [--json] [--output docs/speedrun-ladder.json]
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import models
from core.data import iterate_batches, load_dataset, to_model_input
from core.i18n import N_, Message, MessageError
from core.training import (
    TrainConfig,
    TrainData,
    autocast,
    build_optimizer,
    build_scheduler,
    count_correct,
    flat_values,
    load_train_data,
    loss_function,
    num_outputs,
    override,
    preset_config,
    relu_later,
    resolve_precision,
)

TARGET_ACCURACY = 0.99  # the "time to 99%" threshold
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "speedrun-ladder.json"  # wherever it runs from
EVAL_BATCH = 1000  # test images per forward pass once the data is in memory


class LadderError(MessageError):
    """A ladder result file that cannot be read; `message` says why."""


@dataclass(frozen=True)
class RungSettings:
    """How one rung trains: the training config plus the engine's switches the config does not hold."""

    config: TrainConfig  # network, optimizer, schedule, batch size, epochs (the most a rung may train), threads
    pipeline: str = "dataloader"  # "dataloader": torchvision dataset, per-image ToTensor/Normalize; "tensors": slices
    fused: bool = False  # fused optimizer kernels instead of torch's per-parameter loop
    channels_last: bool = False  # NHWC activations and weights
    relu_later: bool = False  # the engine's exact rewrite: ReLU past the MaxPool2d and Flatten that follow it
    compile: bool = False  # torch.compile the network (its compile time counts)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name: what the ladder's test compares rung to rung."""
        knobs = {"pipeline": self.pipeline, "fused": self.fused, "channels_last": self.channels_last,
                 "relu_later": self.relu_later, "compile": self.compile}
        return {**flat_values(self.config), **knobs}


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: a name, what changed (a sentence to translate) and the settings."""

    key: str  # short id, e.g. "tensors"
    title: str  # N_-marked: what this rung adds
    changes: tuple[str, ...]  # the flat setting names that differ from the rung before
    settings: RungSettings


def ladder_rungs(train_subset: int = 0, test_subset: int = 0, max_epochs: int = 4) -> list[Rung]:
    """The rungs from the tutorial pipeline to `fast`, each the one before with one change.

    The first rung is the tutorial pipeline (as `bench train` runs it) with `fast`'s network: Adam at
    lr 1e-3 and batch 64 as tutorial 002 trains, a constant rate for up to `max_epochs` epochs, on one
    core. `fast` itself is the last rung but one (on a CPU without native bfloat16 its precision rung
    changes nothing measurable); the last tries torch.compile on top.
    """
    fast = preset_config("fast", train_subset=train_subset, test_subset=test_subset, device="cpu", threads=2)
    tutorial = override(fast, optimizer="adam", lr=1e-3, momentum=0.9, nesterov=False, weight_decay=0.0,
                        scheduler="none", epochs=max_epochs, threads=1, precision="float32", preset="")
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("tensors", N_("in-memory tensors: batches sliced from the uint8 images, evaluation in batches of 1,000"),
         {"pipeline": "tensors"}),
        ("threads", N_("both CPU cores: 2 torch threads instead of 1"), {"threads": 2}),
        ("schedule", N_("Nesterov SGD on a one-cycle schedule to lr 0.1 with weight decay, for one epoch"),
         {"optimizer": "sgd", "lr": 0.1, "nesterov": True, "weight_decay": 5e-4, "scheduler": "onecycle",
          "epochs": 1}),
        ("fused", N_("fused optimizer update"), {"fused": True}),
        ("channels_last", N_("channels-last memory format"), {"channels_last": True}),
        ("relu_later", N_("ReLU after max-pooling and flattening: the same numbers, less work"),
         {"relu_later": True}),
        ("precision", N_("bfloat16 autocast where the CPU multiplies it natively (precision auto)"),
         {"precision": "auto"}),
        ("compile", N_("torch.compile (its compile time counts)"), {"compile": True}),
    ]
    rungs = [Rung("tutorial", N_("the tutorial pipeline: torchvision dataset, DataLoader, Adam lr 1e-3, one core"),
                  (), RungSettings(tutorial))]
    for key, title, change in steps:
        before = rungs[-1].settings
        knobs = {name: value for name, value in change.items() if name in KNOBS}
        config_changes = {name: value for name, value in change.items() if name not in knobs}
        config = override(before.config, **config_changes) if config_changes else before.config
        settings = replace(before, config=config, **knobs)
        changed = tuple(sorted(name for name, value in settings.flat().items() if before.flat()[name] != value))
        rungs.append(Rung(key, title, changed, settings))
    return rungs


KNOBS = ("pipeline", "fused", "channels_last", "relu_later", "compile")  # RungSettings' own switches
FAST_RUNG = "precision"  # the rung whose settings are the `fast` preset's (the engine's)


# ---------------------------------------------------------------------------------------------
# Measuring one rung


@dataclass(frozen=True)
class RungResult:
    """A measured rung: time to 99% (None if its epochs ran out first) and what each epoch gave."""

    key: str
    seconds_to_99: float | None  # wall time until an epoch ended at 99.0% or more (training + evaluation)
    epochs: int  # epochs trained
    test_accuracy: float  # at the last epoch trained
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch, training + evaluation
    epoch_accuracies: list[float] = field(default_factory=list)
    setup_seconds: float = 0.0  # building the network, optimizer and pipeline; not counted (compiling is)
    error: str = ""  # why the rung could not run (e.g. torch.compile without a C++ compiler)


class _Pipeline:
    """Where a rung's batches come from: the tutorial's DataLoaders, or slices of the in-memory tensors."""

    def __init__(self, settings: RungSettings, data: TrainData) -> None:
        self.config, self.data, self.tensors = settings.config, data, settings.pipeline == "tensors"
        if not self.tensors:
            from core.bench import tutorial_loaders

            self.train_loader, self.test_loader = tutorial_loaders(self.config)

    def train(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float (B, 1, 28, 28) normalized, labels (B,)) for one epoch, shuffled."""
        if not self.tensors:
            yield from self.train_loader
            return
        for images, labels in iterate_batches(self.data.train_images, self.data.train_labels,
                                              self.config.data.batch_size, seed=self.config.seed, epoch=epoch):
            yield to_model_input(images, self.data.norm), labels

    def test(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.tensors:
            yield from self.test_loader
            return
        for start in range(0, len(self.data.test_labels), EVAL_BATCH):
            yield (to_model_input(self.data.test_images[start : start + EVAL_BATCH], self.data.norm),
                   self.data.test_labels[start : start + EVAL_BATCH])


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_rung(rung: Rung, data: TrainData, target: float = TARGET_ACCURACY) -> RungResult:
    """Train the rung's recipe from its seed, epoch by epoch, until an epoch ends at `target` or better."""
    settings, config = rung.settings, rung.settings.config
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    cpu = torch.device("cpu")
    precision = resolve_precision(config.precision, cpu)  # the training steps'; the test set is scored in float32
    with _threads(config.threads):
        started = time.perf_counter()
        torch.manual_seed(config.seed)
        model: nn.Module = models.build_model(config.model.arch, num_outputs(config), config.model.options)
        model = model.to(memory_format=memory_format)
        if settings.relu_later:
            model = relu_later(model)
        net: Callable[[torch.Tensor], torch.Tensor] = model
        if settings.compile:
            net = torch.compile(model)
        loss_fn = loss_function(config.task, models.output_kind(model))
        optimizer = build_optimizer(config.optimizer, model.parameters(),
                                    torch.device("cpu") if settings.fused else None)
        steps = -(-len(data.train_labels) // config.data.batch_size)
        scheduler = build_scheduler(config, optimizer, steps)
        pipeline = _Pipeline(settings, data)
        setup = time.perf_counter() - started  # not counted, as `bench train` starts at the first batch
        elapsed, seconds, accuracies = 0.0, [], []
        try:
            for epoch in range(1, config.epochs + 1):
                epoch_start = time.perf_counter()
                model.train()
                for images, labels in pipeline.train(epoch):
                    with autocast(cpu, precision):
                        loss = loss_fn(net(images.contiguous(memory_format=memory_format)), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                accuracies.append(_accuracy(pipeline, net, model, memory_format))
                seconds.append(time.perf_counter() - epoch_start)
                elapsed += seconds[-1]
                if accuracies[-1] >= target:
                    return RungResult(rung.key, elapsed, epoch, accuracies[-1], seconds, accuracies, setup)
        except Exception as error:  # torch.compile needs a working C++ toolchain; the rung says why it failed
            if not settings.compile:
                raise
            return RungResult(rung.key, None, len(seconds), accuracies[-1] if accuracies else 0.0, seconds,
                              accuracies, setup, f"{type(error).__name__}: {error}".splitlines()[0][:300])
    return RungResult(rung.key, None, config.epochs, accuracies[-1], seconds, accuracies, setup)


@torch.inference_mode()
def _accuracy(pipeline: _Pipeline, net: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
              memory_format: torch.memory_format) -> float:
    """Test accuracy in eval mode, through the rung's own test pipeline."""
    model.eval()
    correct, total = 0, 0
    for images, labels in pipeline.test():
        correct += int(count_correct(net(images.contiguous(memory_format=memory_format)), labels,
                                     pipeline.config.task))
        total += len(labels)
    return correct / total


# ---------------------------------------------------------------------------------------------
# The whole ladder


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, torch, and the load before the run."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0]}


def run_ladder(train_subset: int = 0, test_subset: int = 0, max_epochs: int = 4, skip: tuple[str, ...] = (),
               on_rung: Callable[[Rung, RungResult], None] | None = None,
               target: float = TARGET_ACCURACY) -> dict[str, Any]:
    """Measure every rung (but those in `skip`) in this process; the JSON the page renders.

    `target` other than 99% is for quick checks on small subsets, where 99% is out of reach.
    """
    rungs = ladder_rungs(train_subset, test_subset, max_epochs)
    unknown = set(skip) - {rung.key for rung in rungs}
    if unknown:
        from core.training import ConfigError

        raise ConfigError(f"unknown rung {sorted(unknown)[0]!r}; the rungs are {', '.join(r.key for r in rungs)}")
    first = rungs[0].settings.config
    dataset = load_dataset(first.data.dataset)
    data = load_train_data(first, torch.device("cpu"), dataset)
    info = machine_info()
    started = time.time()
    rows = []
    for rung in rungs:
        if rung.key in skip:
            continue
        result = measure_rung(rung, data, target)
        if on_rung is not None:
            on_rung(rung, result)
        rows.append({"key": rung.key, "title": rung.title, "changes": list(rung.changes),
                     "settings": rung.settings.flat(), **asdict(result)})
    return {
        "target_accuracy": target, "train_size": len(data.train_labels), "test_size": len(data.test_labels),
        "max_epochs": max_epochs, "fast_rung": FAST_RUNG, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                        time.gmtime(started)),
        "seconds": time.time() - started, "machine": info, "load_average_1min_after": os.getloadavg()[0],
        "rungs": rows,
    }


def write_ladder(result: dict[str, Any], path: Path = DEFAULT_OUTPUT) -> Path:
    """Write a ladder result atomically (the Speedrun page may be reading the old one)."""
    from core.runs import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return path


# What the Speedrun page reads from a ladder file: a file without any of them is refused with a message.
LADDER_KEYS = ("rungs", "target_accuracy", "machine", "measured_at", "train_size", "test_size",
               "load_average_1min_after", "fast_rung")
MACHINE_KEYS = ("cpu", "cores", "torch", "load_average_1min")
RUNG_KEYS = ("key", "title", "seconds_to_99", "test_accuracy", "epochs", "error")


def read_ladder(path: Path = DEFAULT_OUTPUT) -> dict[str, Any] | None:
    """A written ladder, or None when there is none yet; LadderError if the file is not a ladder."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
        missing = [key for key in LADDER_KEYS if key not in result]
        missing += [f"machine.{key}" for key in MACHINE_KEYS if key not in result.get("machine", {})]
        rungs = result.get("rungs")
        if not isinstance(rungs, list) or not all(isinstance(row, dict) for row in rungs):
            raise TypeError("its rungs are not a list of rows")
        missing += sorted({f"rung.{key}" for row in rungs for key in RUNG_KEYS if key not in row})
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, TypeError) as error:
        template = N_("%(path)s is not a speedrun ladder result (%(error)s); measure it again with "
                      "python -m core bench ladder")
        raise LadderError(Message(template, {"path": str(path), "error": str(error)})) from error
    return result

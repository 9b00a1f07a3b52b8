"""The engine: `train(config)`, a generator of events (core.training.events) that trains one run.

Building blocks (device, data, loss, optimizer, scheduler, evaluation), a run's set-up (new or
resumed), its epochs, and what it writes to its folder (core.runs). Under torchrun it trains data-
parallel (core.distributed). Nothing here prints or imports streamlit.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from core import distributed, models, runs
from core.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
from core.data import (
    Augmentation,
    Dataset,
    Distortion,
    Normalization,
    iterate_batches,
    load_dataset,
    normalization,
    random_affine,
    random_distort,
    to_model_input,
    writing_styles,
)
from core.i18n import N_, Message
from core.metrics import Evaluation, binary_evaluation, multiclass_evaluation
from core.training.config import (
    ConfigError,
    OptimizerConfig,
    TaskConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    num_outputs,
    validate,
    with_precision_recorded,
)
from core.training.events import (
    BatchEnd,
    CheckpointSaved,
    Diverged,
    EpochEnd,
    Event,
    Failed,
    Finished,
    RunStarted,
    Stopped,
)

AUGMENTATION = Augmentation()  # core.data's defaults: ±10°, ±10% shift, 0.9-1.1 zoom
DISTORTION = Distortion()  # core.data's defaults: other writers' slant, wobble, pen width, coarse and box scans
WRITING_STYLES = 0.3  # with distort on MNIST: share of 1s, 7s, 9s given another writer's stroke (core.data)
EVAL_BATCH_SIZE = 1000  # test images per forward pass when evaluating
PER_BATCH_SCHEDULERS = ("onecycle",)  # stepped after every batch; the others after every epoch
# NHWC activations: oneDNN's convolutions, pooling and batch norm run up to 2x faster in this layout
# on a 2-core CPU (measured on fastcnn and seed002, training and evaluation; see the README).
MEMORY_FORMAT = torch.channels_last


# Divergence: a smoothed loss this many times the larger of its first batches' and a uniform guess's
# (ln 10 for ten classes) is exploding, checked once this many steps have passed.
EXPLODE_FACTOR = 10.0
EXPLODE_AFTER = 10
LOSS_SMOOTHING = 0.2  # weight of the newest batch in the smoothed loss: about the last 5 batches (the chart's
# EMA, core.metrics.CHART_SMOOTHING, keeps 0.95 of the past, about 20 batches: this check must react faster)


class Divergence(RuntimeError):
    """The loss became non-finite or exploded; the message names the likely cause and what to try."""

    def __init__(self, message: Message, cause: str, suggested_lr: float) -> None:
        super().__init__(message.english())
        self.message, self.cause, self.suggested_lr = message, cause, suggested_lr


class StopFlag(Protocol):
    """What `train` polls before every batch: a threading.Event, or core.runs.StopSignal (a stop file too)."""

    def is_set(self) -> bool: ...


class RunFolderGone(RuntimeError):
    """The run folder was deleted while the run trained: nothing more can be written."""


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot, from Linux's /proc/stat; None where it is not there.

    Busy is user, nice, system, irq, softirq and steal time (steal: taken by the hypervisor, not ours).
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        ticks = [int(value) for value in fields[1:9]]
        if fields[0] != "cpu" or len(ticks) < 8:
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class OtherWork:
    """How many cores the rest of the machine kept busy since the last look: all busy time less this process's.

    Unlike the load average, it does not count this process's own threads (`bench train` runs the
    tutorial's loop in the same process) nor remember, for a minute, a process that has already ended.
    """

    MIN_INTERVAL = 0.5  # seconds: a shorter look says too little; the last estimate stands

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.monotonic(), machine_busy_seconds(), time.process_time()
        self.cores: float | None = None  # the last estimate

    def __call__(self) -> float:
        """Mean busy cores of other processes since the last look.

        Without /proc/stat (macOS, say), the 1-minute load average less this process's own CPU use
        over the same look, a rougher stand-in that still does not count its own threads as others'.
        """
        wall, busy, own = time.monotonic(), machine_busy_seconds(), time.process_time()
        elapsed = wall - self.wall
        if elapsed < self.MIN_INTERVAL and self.cores is not None:
            return self.cores
        own_cores = (own - self.own) / elapsed if elapsed > 0 else 0.0
        if busy is None:
            estimate = os.getloadavg()[0] - own_cores
        elif self.busy is not None and busy >= self.busy and elapsed > 0:
            estimate = (busy - self.busy) / elapsed - own_cores
        else:  # no baseline yet, or busy counters that went back (a CPU taken offline): the last estimate stands
            estimate = self.cores if self.cores is not None else os.getloadavg()[0] - own_cores
        self.wall, self.busy, self.own = wall, busy, own
        self.cores = max(0.0, estimate)
        return self.cores


OTHER_WORK = OtherWork()  # counting from when the engine was imported, near the process's start


def free_cores(ceiling: int, others: float | None = None) -> int:
    """CPU threads worth using now: the cores the rest of the machine leaves idle, from 1 up to `ceiling`.

    `others` is the busy cores of other processes (OtherWork); without it, the 1-minute load average.
    Why not always every core: torch's OpenMP threads meet at a barrier after each parallel op, and when
    other processes hold the cores every barrier waits for a descheduled thread. Measured on 2 cores at
    load average 9-10: fastcnn 450-800 ms a step with 2 threads, 32-55 ms with 1 (seed002: 350-680
    against 25-47 ms). On an idle machine it is every core up to the ceiling.
    """
    busy = os.getloadavg()[0] if others is None else others
    return max(1, min(ceiling, round((os.cpu_count() or 1) - busy)))


AUTOCAST_DTYPE = torch.bfloat16  # forward passes on CUDA; no loss scaling needed, unlike float16


def uses_cuda(device: torch.device) -> bool:
    """Whether the GPU path applies (see core.gpu): a CUDA device, and torch sees CUDA."""
    return device.type == "cuda" and torch.cuda.is_available()


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16).

    There a bf16 matmul runs about 4x float32's (measured on a 2-core AMD EPYC with AVX512-BF16: 750 against
    185 GFLOP/s on the Digit model's largest layer); without the instructions bf16 is emulated and slower.
    """
    try:
        capability = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):  # a torch without the probe: assume not
        return False
    return bool(capability.get("avx512_bf16") or capability.get("amx_bf16"))


def cuda_computes_bf16() -> bool:
    """Whether the CUDA GPU multiplies bfloat16 natively (Ampere and later), not by emulation."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # an older torch without the argument
        return bool(torch.cuda.is_bf16_supported())


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a run's training steps use: "float32" or "bfloat16".

    "auto" is bfloat16 on GPUs and CPUs that multiply it natively, else float32. Autocast exists here for
    CUDA and the CPU only, so elsewhere (MPS) every run is float32, whatever it asked for.
    """
    if device.type not in ("cpu", "cuda"):
        return "float32"
    if name != "auto":
        return name
    native = (uses_cuda(device) and cuda_computes_bf16()) or (device.type == "cpu" and cpu_computes_bf16())
    return "bfloat16" if native else "float32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a "bfloat16" run on CUDA or the CPU (weights and optimizer stay float32); else nothing."""
    if precision == "bfloat16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=AUTOCAST_DTYPE)
    return contextlib.nullcontext()


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's name: auto picks cuda, then mps, then cpu; a named one must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(Message(N_("device %(device)r asked for, but torch sees no CUDA GPU here; use auto or cpu"),
                                  {"device": name}))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(Message(N_("device 'mps' asked for, but Apple's MPS is not available here; use auto or cpu")))
    return device


@dataclass(frozen=True, eq=False)
class TrainData:
    """The images a run uses, already on its device (uint8, normalized per batch)."""

    train_images: torch.Tensor  # (N, 28, 28) uint8
    train_labels: torch.Tensor  # (N,) int64, digit 0-9
    test_images: torch.Tensor  # (M, 28, 28) uint8
    test_labels: torch.Tensor  # (M,) int64
    norm: Normalization
    classes: tuple[str, ...]


def load_train_data(config: TrainConfig, device: torch.device, dataset: Dataset | None = None) -> TrainData:
    """The config's dataset (loaded unless given), cut to its subsets and moved to `device` once."""
    if dataset is None:
        dataset = load_dataset(config.data.dataset)
    elif dataset.spec.key != config.data.dataset:
        raise ConfigError(f"the dataset passed in is {dataset.spec.key!r}, the config asks for {config.data.dataset!r}")
    train_count = config.data.train_subset or len(dataset.train_labels)
    test_count = config.data.test_subset or len(dataset.test_labels)
    return TrainData(
        train_images=dataset.train_images[:train_count].to(device),
        train_labels=dataset.train_labels[:train_count].to(device),
        test_images=dataset.test_images[:test_count].to(device),
        test_labels=dataset.test_labels[:test_count].to(device),
        norm=normalization(config.data.normalization, dataset),
        classes=dataset.classes,
    )


LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_function(task: TaskConfig, head: str) -> LossFunction:
    """(outputs, digits) -> mean loss, chosen by the task and the network's last layer.

    outputs: (B, 10) for multiclass, (B, 1) for binary; digits: (B,) int64 0-9.
    """
    if task.kind == "binary":
        target = task.target_digit
        return lambda outputs, digits: F.binary_cross_entropy_with_logits(
            outputs.squeeze(1), (digits == target).to(outputs.dtype)
        )
    if head == "log_softmax" and task.label_smoothing == 0:
        return F.nll_loss
    # Logits; or, faithful to tutorial 001, a softmax output that cross-entropy treats as logits.
    # On a log_softmax head cross-entropy equals NLL (log_softmax is idempotent), and allows smoothing.
    return partial(F.cross_entropy, label_smoothing=task.label_smoothing)


def count_correct(outputs: torch.Tensor, digits: torch.Tensor, task: TaskConfig) -> torch.Tensor:
    """How many answers are right, as a 0-d tensor (no sync)."""
    if task.kind == "binary":
        return ((outputs.squeeze(1) >= 0) == (digits == task.target_digit)).sum()
    return (outputs.argmax(dim=1) == digits).sum()


def probabilities(outputs: torch.Tensor, task: TaskConfig, head: str) -> torch.Tensor:
    """Binary: P(target) (B,); multiclass: class probabilities (B, 10), whatever the head."""
    probs = models.probabilities(outputs, head)
    return probs.squeeze(1) if task.kind == "binary" else probs


def build_optimizer(
    config: OptimizerConfig, parameters: Iterable[nn.Parameter], device: torch.device | None = None
) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW from the config; fused kernels on CPU and CUDA.

    Fused updates give the same numbers as the default ones up to rounding and cut seed002's
    Adam step (1.1 M weights) from ~5 ms to ~2 ms on 2 CPU cores.
    """
    fused = device is not None and device.type in ("cpu", "cuda")
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay, fused=fused or None,
        )
    optimizer_class = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    return optimizer_class(
        parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused or None
    )


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """torch's own schedulers; cosine and step count epochs, onecycle counts batches."""
    sched = config.scheduler
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=sched.t_max or config.epochs, eta_min=sched.min_lr
        )
    if sched.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=sched.step_size, gamma=sched.gamma)
    if sched.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.optimizer.lr, total_steps=config.epochs * steps_per_epoch,
            pct_start=sched.pct_start,
        )
    return None


def distortion_of(config: TrainConfig) -> tuple[Distortion, float]:
    """What `distort` means on config's dataset: the warp, and the share of 1s, 7s and 9s given a writing style.

    Box-filling scans and other writers' strokes are about handwritten digits: on Fashion-MNIST a trouser
    widened to a box's proportions is no longer a trouser, so there only the rest of the warp applies.
    """
    if config.data.dataset == "mnist":
        return DISTORTION, WRITING_STYLES
    return replace(DISTORTION, box_aspect=0.0), 0.0


def _model_input(
    images: torch.Tensor, norm: Normalization, augment: torch.Generator | None, distortion: Distortion | None = None
) -> torch.Tensor:
    """uint8 (B, 28, 28) on the run's device -> float (B, 1, 28, 28), augmented when a generator is given:
    warped by `distortion` if one is given, else by the plain random affine. Called outside autocast, so a
    bfloat16 run's images are warped in float32, as a float32 run's are."""
    x = to_model_input(images, norm)
    if augment is not None and len(x):  # a process's share of a tiny last global batch can be empty
        # Parameters drawn from a CPU generator (the same draws on any device), warped where the images are.
        x = random_distort(x, distortion, augment) if distortion else random_affine(x, AUGMENTATION, augment)
    return x.contiguous(memory_format=MEMORY_FORMAT)


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: TrainData, task: TaskConfig, head: str, loss_fn: LossFunction
) -> tuple[float, torch.Tensor]:
    """Mean test loss and the probabilities of every test image (CPU), batched, in eval mode, in float32."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=data.test_labels.device)
    chunks = []
    try:
        for start in range(0, len(data.test_labels), EVAL_BATCH_SIZE):
            digits = data.test_labels[start : start + EVAL_BATCH_SIZE]
            # float32 whatever the run trained in: the accuracy recorded is the one the saved model gives later
            outputs = model(_model_input(data.test_images[start : start + EVAL_BATCH_SIZE], data.norm, None))
            total_loss += loss_fn(outputs, digits).double() * len(digits)
            chunks.append(probabilities(outputs, task, head).float().cpu())
    finally:
        model.train(was_training)
    return float(total_loss) / max(len(data.test_labels), 1), torch.cat(chunks)


def accuracy_of(probs: torch.Tensor, digits: torch.Tensor, task: TaskConfig) -> float:
    """Fraction right from `evaluate`'s probabilities; binary answers "target" at P >= 0.5."""
    digits = digits.cpu()
    if task.kind == "binary":
        return float(((probs >= 0.5) == (digits == task.target_digit)).double().mean())
    return float((probs.argmax(dim=1) == digits).double().mean())


def evaluation_of(loss: float, probs: torch.Tensor, data: TrainData, task: TaskConfig) -> Evaluation:
    """The full core.metrics.Evaluation from `evaluate`'s output."""
    digits = data.test_labels.cpu()
    if task.kind == "binary":
        return binary_evaluation(digits, probs, task.target_digit, loss)
    return multiclass_evaluation(digits, probs, loss)


# ---------------------------------------------------------------------------------------------
# A run: set up (new or resumed), then the loop


@dataclass(eq=False)
class _Run:
    """Everything the loop needs, and what it has done so far."""

    config: TrainConfig
    run_id: str
    run_dir: Path
    device: torch.device
    data: TrainData
    model: nn.Module
    head: str  # "logits", "log_softmax" or "softmax"
    arch_config: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loss_fn: LossFunction
    epoch: int = 0  # last whole epoch done (and saved)
    best_accuracy: float = -1.0
    best_epoch: int = 0
    elapsed_seconds: float = 0.0  # wall time of all whole epochs, resumed ones included
    train_phase_seconds: float = 0.0  # of which training (not evaluating), for throughput
    last_eval: tuple[float, torch.Tensor] | None = None  # (loss, probabilities) of the last epoch
    ended: bool = False  # a final status has been written
    status: runs.StatusWriter | None = None  # status.json and its heartbeat, while the loop runs
    batches: runs.BatchLog | None = None  # batches.csv, while the loop runs
    first_losses: list[float] = field(default_factory=list)  # this process's first batches, the reference
    smoothed_loss: float | None = None  # exponential moving average of the batch losses
    world: distributed.World = field(default_factory=distributed.World)  # rank 0 alone writes the folder
    net: nn.Module | None = None  # what trains: the model, or DistributedDataParallel around it
    thread_ceiling: int = 0  # with config.threads 0 on a CPU: the most threads an epoch may use (0 = fixed)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train_labels) / self.config.data.batch_size)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass(frozen=True, eq=False)
class _Parts:
    """What a run is built from, checked before any run folder is made."""

    config: TrainConfig  # as given, with "auto" precision resolved for the device: what the record keeps
    device: torch.device
    data: TrainData
    model: nn.Module  # freshly initialized from the config's seed, on `device`
    head: str  # "logits", "log_softmax" or "softmax"
    arch_config: dict[str, Any]

    @property
    def param_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def _prepare(config: TrainConfig, dataset: Dataset | None) -> _Parts:
    """Validate, pick the device and precision, load the data and build the seeded network; raise on user errors."""
    validate(config)
    world = distributed.current()
    if config.data.batch_size % world.size:
        raise ConfigError(Message(N_("batch_size %(batch)d is the global batch and must split evenly over "
                                     "%(processes)d processes"),
                                  {"batch": config.data.batch_size, "processes": world.size}))
    device = resolve_device(config.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    data = load_train_data(config, device, dataset)
    arch_config = models.arch_config(config.model.arch, num_outputs(config), config.model.options)
    torch.manual_seed(config.seed)  # the same seed gives the same initial weights
    model = models.build_model(**arch_config)
    head = models.output_kind(model)
    if config.task.kind == "binary" and head != "logits":
        raise ConfigError(Message(
            N_("the binary task needs a network that outputs a logit, but %(arch)s ends in %(head)s; pick another "
               "architecture (or its option that drops the softmax)"), {"arch": config.model.arch, "head": head}))
    check_schedule(config, math.ceil(len(data.train_labels) / config.data.batch_size))
    model = relu_later(model.to(device).to(memory_format=MEMORY_FORMAT))
    config = replace(config, precision=resolve_precision(config.precision, device))
    return _Parts(config, device, data, model, head, arch_config)


def relu_later(model: nn.Module) -> nn.Module:
    """Exact rewrites for speed: in every Sequential, a ReLU moves past every MaxPool2d and Flatten right after it.

    - ReLU then max-pooling: max(relu(x)) = relu(max(x)), since ReLU never changes which of two numbers
      is larger, and the gradient reaches the same element (or is 0 both ways); the ReLU runs on the
      pooled map, a quarter of the size. seed002's pass over the test set: 0.35 -> 0.23 s on 2 cores.
    - ReLU then Flatten: elementwise, so the same numbers either way. Flattening a channels-last map
      copies it into the plain layout; with the ReLU after that copy, its forward and backward both run
      on plain tensors instead of mixing a plain gradient with a channels-last output, which took
      seed002 0.2 ms of a 3 ms step on 2 cores.

    Rewrites `model` in place and returns it: the engine gives it the network it has just built, never
    one a caller holds. Names are kept, so the state_dict is the saved model's. Positions change (model[1]
    is now the pool), so only name-based access works on the rewritten network; nothing indexes it. A ReLU
    that ends an inner Sequential stays before a pool or Flatten that follows it outside: left as it is. A
    pool that returns its indices stays where it is, and nothing else moves (an average pool would change
    the numbers).
    """
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        items = list(module._modules.items())
        for i in range(len(items) - 1):
            (_, first), (_, second) = items[i], items[i + 1]
            pool = type(second) is nn.MaxPool2d and not second.return_indices
            if type(first) is nn.ReLU and (pool or type(second) is nn.Flatten):
                items[i], items[i + 1] = items[i + 1], items[i]
        module._modules.clear()
        module._modules.update(items)
    return model


def check_schedule(config: TrainConfig, steps_per_epoch: int) -> None:
    """One-cycle needs a warm-up of at least two steps (torch divides by its length minus one)."""
    total = config.epochs * steps_per_epoch
    if config.scheduler.name == "onecycle" and config.scheduler.pct_start * total < 2:
        raise ConfigError(Message(
            N_("the one-cycle schedule has only %(steps)d step, too few to warm up over %(share)g of it; train on "
               "more images or epochs, use a smaller batch, or pick another scheduler") if total == 1 else
            N_("the one-cycle schedule has only %(steps)d steps, too few to warm up over %(share)g of them; train on "
               "more images or epochs, use a smaller batch, or pick another scheduler"),
            {"steps": total, "share": config.scheduler.pct_start}))


def _assemble(config: TrainConfig, run_id: str, folder: Path, parts: _Parts) -> _Run:
    optimizer = build_optimizer(config.optimizer, parts.model.parameters(), parts.device)
    run = _Run(
        config=config, run_id=run_id, run_dir=folder, device=parts.device, data=parts.data, model=parts.model,
        head=parts.head, arch_config=parts.arch_config, optimizer=optimizer, scheduler=None,
        loss_fn=loss_function(config.task, parts.head),
    )
    run.scheduler = build_scheduler(config, optimizer, run.steps_per_epoch)
    run.world = distributed.current()
    run.net = run.model
    if run.world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [parts.device.index] if parts.device.type == "cuda" else None
        run.net = DistributedDataParallel(parts.model, device_ids=device_ids)  # starts from rank 0's weights
    return run


def _new_run(config: TrainConfig, run_name: str | None, root: Path | str | None, dataset: Dataset | None) -> _Run:
    """Check everything, then make the run folder."""
    runs.slugify(run_name or "")  # reject a bad name before anything is loaded or written
    parts = _prepare(config, dataset)
    config = parts.config  # the record says which precision "auto" became
    run_id, folder = runs.new_run(
        config_to_dict(config), name=run_name, arch_config=parts.arch_config, param_count=parts.param_count,
        root=root,
    )
    return _assemble(config, run_id, folder, parts)


def _resumed_config(saved: TrainConfig, given: TrainConfig | None, state: dict[str, Any], epoch: int) -> TrainConfig:
    """The saved config, with epochs/device/threads from `given`; ConfigError if nothing is left to do."""
    config = saved if given is None else replace(saved, epochs=given.epochs, device=given.device, threads=given.threads)
    if epoch >= config.epochs:
        raise ConfigError(Message(N_("the run already has %(done)d of %(epochs)d epochs; ask for more epochs"),
                                  {"done": epoch, "epochs": config.epochs}))
    if state and config.scheduler.name == "onecycle" and state.get("total_epochs") != config.epochs:
        raise ConfigError(Message(N_("a one-cycle schedule is fixed to its run's length; start a new run to train "
                                     "longer")))
    return config


def _resume_run(run_id: str, given: TrainConfig | None, root: Path | str | None, dataset: Dataset | None) -> _Run:
    """Reopen a run folder at its last saved epoch: weights, optimizer, scheduler, best so far, metrics."""
    folder = runs.run_dir(run_id, root)
    status = runs.read_status(folder)
    main = distributed.current().main  # the other ranks of a DDP run read the folder rank 0 owns
    if main and runs.is_live(status) and status.get("pid") != os.getpid():
        raise runs.RunError(Message(N_("run %(run)s is still %(status)s in another process; stop it there first"),
                                    {"run": run_id, "status": Message(runs.STATUS_LABELS.get(str(status["status"]),
                                                                                           str(status["status"])))}))
    recorded = runs.read_config(folder)["config"]
    if isinstance(recorded, dict):  # a record from before the precision setting resumes as it trained
        recorded = with_precision_recorded(recorded, str(status.get("device", "")))
    saved = config_from_dict(recorded)
    last = folder / runs.LAST_CHECKPOINT
    payload = read_checkpoint(last) if last.is_file() else None  # none: stopped in its first epoch
    epoch = int(payload["meta"]["epoch"]) if payload else 0
    state = payload.get("training_state", {}) if payload else {}
    config = _resumed_config(saved, given, state, epoch)
    parts = _prepare(config, dataset)
    config = parts.config  # a queued run starting: "auto" becomes what this machine does, kept from then on
    run = _assemble(config, run_id, folder, parts)
    if config != saved and main:
        runs.update_config(folder, config_to_dict(config))
    if main and not runs.read_config(folder).get("arch_config"):  # a queued run starting: record what was built
        runs.update_record(folder, arch_config=parts.arch_config, param_count=parts.param_count)
    if payload:
        try:
            run.model.load_state_dict(payload["state_dict"])
            run.optimizer.load_state_dict(state["optimizer"])
            if run.scheduler is not None and state.get("scheduler"):
                run.scheduler.load_state_dict(state["scheduler"])
            run.best_accuracy, run.best_epoch = state["best_test_accuracy"], state["best_epoch"]
        except (KeyError, RuntimeError, ValueError) as error:  # weights or optimizer state of another run
            raise CheckpointError(
                f"{last} cannot continue run {run_id}: it does not match the run's network and optimizer "
                f"({type(error).__name__}: {error}). Start a new run instead."
            ) from error
    run.epoch = epoch
    if not main:
        rows = [row for row in runs.read_metrics(folder).rows if row.epoch <= epoch]
    else:
        rows = runs.truncate_metrics(folder, epoch)  # drop lines past the checkpoint, or cut short by a crash
        runs.truncate_batches(folder, epoch * run.steps_per_epoch)  # the per-batch curve continues from there
        for leftover in folder.glob(".*.tmp"):  # a write torn by a crash; the file it was replacing is intact
            leftover.unlink(missing_ok=True)
    run.elapsed_seconds = sum(row.seconds or 0.0 for row in rows)
    run.train_phase_seconds = sum(row.train_seconds or 0.0 for row in rows)
    return run


EpochTotals = dict[str, float]  # train_loss, train_accuracy, train_seconds, samples_per_second


def _train_epoch(run: _Run, epoch: int, stop: StopFlag | None) -> Generator[BatchEnd, None, EpochTotals | None]:
    """One pass over the training images, yielding BatchEnd; returns its totals, or None if stopped."""
    config, data, world = run.config, run.data, run.world
    net = run.net or run.model
    net.train()
    if run.thread_ceiling:  # the idle cores, looked at again every epoch
        torch.set_num_threads(free_cores(run.thread_ceiling, others=OTHER_WORK()))
        if run.status is not None:
            run.status.note(threads=torch.get_num_threads())  # status.json says what this epoch uses
    seed = config.seed * 1000 + epoch  # dropout and augmentation draws depend on (seed, epoch): resumable
    torch.manual_seed(seed + 7919 * world.rank)
    augmenting = config.data.augment or config.data.distort
    augment = torch.Generator().manual_seed(seed + 7919 * world.rank) if augmenting else None
    distortion, styles = distortion_of(config) if config.data.distort else (None, 0.0)
    batches = iterate_batches(
        data.train_images, data.train_labels, config.data.batch_size, shuffle=True, seed=config.seed, epoch=epoch
    )
    loss_sum, correct, seen = 0.0, torch.zeros((), dtype=torch.int64, device=run.device), 0
    start = time.perf_counter()
    for step, (global_images, global_digits) in enumerate(batches, 1):
        # Each rank takes every world.size-th image of the global batch: the union of the shards is the epoch.
        images, digits = global_images[world.rank :: world.size], global_digits[world.rank :: world.size]
        gone = run.status is not None and run.status.gone
        stopping = stop is not None and stop.is_set()
        if world.distributed:  # every rank must stop at the same batch: rank 0 reads the stop file for all
            flags = distributed.sum_across(torch.tensor([float(gone), float(stopping)]), world)
            gone, stopping = bool(flags[0]), bool(flags[1])
        if gone:
            raise RunFolderGone(f"the run folder {run.run_dir} was deleted while the run trained")
        if stopping:
            return None
        if augment is not None and styles:
            images = writing_styles(images.cpu(), digits.cpu(), styles, augment).to(images.device)
        model_input = _model_input(images, data.norm, augment, distortion)
        with autocast(run.device, run.config.precision):  # see resolve_precision
            outputs = net(model_input)
            loss = run.loss_fn(outputs, digits)
        loss_value, lr = loss.item(), run.lr()
        if world.distributed:  # the global batch's mean loss, the same number one process would see
            pair = distributed.sum_across(torch.tensor([loss_value * len(digits), float(len(digits))],
                                                       dtype=torch.float64), world)
            loss_value = float(pair[0] / pair[1])
        try:
            _watch_loss(run, loss_value, epoch, step, lr)
        except Divergence:
            if run.batches is not None:  # the batch that diverged belongs on the chart (written before the status)
                run.batches.add((epoch - 1) * run.steps_per_epoch + step, loss_value, lr)
                run.batches.flush()
            raise
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.scheduler is not None and config.scheduler.name in PER_BATCH_SCHEDULERS:
            run.scheduler.step()
        correct += count_correct(outputs.detach(), digits, config.task)
        loss_sum += loss_value * len(global_digits)
        seen += len(global_digits)
        seconds = time.perf_counter() - start
        event = BatchEnd(
            epoch=epoch, step=step, steps_per_epoch=run.steps_per_epoch,
            global_step=(epoch - 1) * run.steps_per_epoch + step, loss=loss_value, lr=lr,
            samples_per_second=seen / max(seconds, 1e-9), elapsed_seconds=run.elapsed_seconds + seconds,
        )
        _record_batch(run, event)
        yield event
    if run.scheduler is not None and config.scheduler.name not in PER_BATCH_SCHEDULERS:
        run.scheduler.step()
    seconds = time.perf_counter() - start
    correct = distributed.sum_across(correct, world)  # right answers of every shard
    return {
        "train_loss": loss_sum / seen, "train_accuracy": int(correct) / seen, "train_seconds": seconds,
        "samples_per_second": seen / max(seconds, 1e-9),
    }


def _record_batch(run: _Run, event: BatchEnd) -> None:
    """The batch into batches.csv, its progress into status.json at the next heartbeat."""
    if run.batches is not None:
        run.batches.add(event.global_step, event.loss, event.lr)
    if run.status is not None:
        run.status.note(epoch_in_progress=event.epoch, step=event.step, global_step=event.global_step,
                        samples_per_second=event.samples_per_second, elapsed_seconds=event.elapsed_seconds)


def _chance_loss(config: TrainConfig) -> float:
    """The loss of a uniform guess: ln 2 for one-vs-rest, ln 10 for ten classes."""
    return math.log(2 if config.task.kind == "binary" else 10)


# What the loss did, by cause: whole sentences (to translate), each followed by where and what to try. The
# rate to change is the run's setting (a one-cycle schedule's peak), not the rate at that step, which a
# warm-up keeps far below it.
_DIVERGED = {
    "non-finite loss": N_(
        "the training loss became %(loss)s at epoch %(epoch)d, step %(step)d (learning rate %(lr)g there, set to "
        "%(setting)g): that setting is probably too high for %(optimizer)s on %(arch)s. Try %(suggestion)g or "
        "lower."),
    "exploding loss": N_(
        "the training loss exploded to %(loss).3g (it started near %(start).3g) at epoch %(epoch)d, step %(step)d "
        "(learning rate %(lr)g there, set to %(setting)g): that setting is probably too high for %(optimizer)s on "
        "%(arch)s. Try %(suggestion)g or lower."),
    "accuracy at chance": N_(
        "the training loss stayed at %(loss).3g (a uniform guess scores %(start).3g) and test accuracy fell to "
        "chance (%(accuracy).1f%%) at epoch %(epoch)d, step %(step)d (learning rate %(lr)g there, set to "
        "%(setting)g): that setting is probably too high for %(optimizer)s on %(arch)s. Try %(suggestion)g or "
        "lower."),
}
# The same messages as runs recorded them before they named the setting: kept in the catalogs, so an older
# run's reason still reads in the page's language.
_DIVERGED_BEFORE = (
    N_("the training loss became %(loss)s at epoch %(epoch)d, step %(step)d (learning rate %(lr)g): the learning "
       "rate is probably too high for %(optimizer)s on %(arch)s. Try %(suggestion)g or lower."),
    N_("the training loss exploded to %(loss).3g (it started near %(start).3g) at epoch %(epoch)d, step %(step)d "
       "(learning rate %(lr)g): the learning rate is probably too high for %(optimizer)s on %(arch)s. "
       "Try %(suggestion)g or lower."),
    N_("the training loss stayed at %(loss).3g (a uniform guess scores %(start).3g) and test accuracy fell to "
       "chance (%(accuracy).1f%%) at epoch %(epoch)d, step %(step)d (learning rate %(lr)g): the learning rate is "
       "probably too high for %(optimizer)s on %(arch)s. Try %(suggestion)g or lower."),
)


def _divergence(run: _Run, cause: str, epoch: int, step: int, lr: float, **what: float | str) -> Divergence:
    config = run.config
    suggestion = config.optimizer.lr / 10
    params = {**what, "epoch": epoch, "step": step, "lr": lr, "setting": config.optimizer.lr,
              "optimizer": config.optimizer.name, "arch": config.model.arch, "suggestion": suggestion}
    return Divergence(Message(_DIVERGED[cause], params), cause, suggestion)


def _watch_loss(run: _Run, loss: float, epoch: int, step: int, lr: float) -> None:
    """Raise Divergence on a non-finite loss, or a smoothed loss far above where this run started."""
    if not math.isfinite(loss):
        raise _divergence(run, "non-finite loss", epoch, step, lr, loss=str(loss))  # 'nan', 'inf': JSON-safe
    if len(run.first_losses) < 5:
        run.first_losses.append(loss)
    previous = run.smoothed_loss
    run.smoothed_loss = loss if previous is None else (1 - LOSS_SMOOTHING) * previous + LOSS_SMOOTHING * loss
    reference = max(statistics.median(run.first_losses), _chance_loss(run.config))  # a spike does not move it
    if len(run.first_losses) >= 5 and step >= EXPLODE_AFTER and run.smoothed_loss > EXPLODE_FACTOR * reference:
        # "started near" names the first batch's loss: the reference may already have climbed with it
        raise _divergence(run, "exploding loss", epoch, step, lr, loss=run.smoothed_loss, start=run.first_losses[0])


def _check_chance(run: _Run, epoch: int, train_loss: float, test_accuracy: float) -> None:
    """After an epoch: ten-class accuracy at chance with a training loss well above a uniform guess's."""
    chance_loss = _chance_loss(run.config)
    if run.config.task.kind == "multiclass" and test_accuracy <= 0.12 and train_loss > 1.5 * chance_loss:
        raise _divergence(run, "accuracy at chance", epoch, run.steps_per_epoch, run.lr(), loss=train_loss,
                          start=chance_loss, accuracy=100 * test_accuracy)


def _meta(run: _Run, row: dict[str, Any]) -> dict[str, Any]:
    """The plain metadata saved in both checkpoints."""
    return {
        "run_id": run.run_id,
        "arch_config": run.arch_config,
        "config": config_to_dict(run.config),
        "epoch": row["epoch"],
        "metrics": row,
        "normalization": asdict(run.data.norm),
        "dataset": run.config.data.dataset,
        "classes": list(run.data.classes),
        "task": run.config.task.kind,
        "target_digit": run.config.task.target_digit,
        "head": run.head,
    }


def _save(run: _Run, row: dict[str, Any], is_best: bool) -> Iterator[CheckpointSaved]:
    """last.pt (with the optimizer and scheduler, for resuming) every epoch; best.pt when it improved."""
    if not run.world.main:
        return
    meta = _meta(run, row)
    state = {
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "best_test_accuracy": run.best_accuracy,
        "best_epoch": run.best_epoch,
        "total_epochs": run.config.epochs,
    }
    last = save_checkpoint(run.run_dir / runs.LAST_CHECKPOINT, run.model, meta, training_state=state)
    yield CheckpointSaved(path=last, epoch=row["epoch"], is_best=False)
    if is_best:
        best = save_checkpoint(run.run_dir / runs.BEST_CHECKPOINT, run.model, meta)
        yield CheckpointSaved(path=best, epoch=row["epoch"], is_best=True)


def _end_epoch(run: _Run, epoch: int, totals: dict[str, float], started: float) -> Iterator[Event]:
    """Evaluate, append the metrics line, save the checkpoints, update the status."""
    test_loss, probs = evaluate(run.model, run.data, run.config.task, run.head, run.loss_fn)
    test_accuracy = accuracy_of(probs, run.data.test_labels, run.config.task)
    _check_chance(run, epoch, totals["train_loss"], test_accuracy)
    if run.world.main and not run.run_dir.is_dir():
        raise RunFolderGone(f"the run folder {run.run_dir} was deleted while the run trained")
    seconds = time.perf_counter() - started
    run.elapsed_seconds += seconds
    run.train_phase_seconds += totals["train_seconds"]
    is_best = test_accuracy > run.best_accuracy
    if is_best:
        run.best_accuracy, run.best_epoch = test_accuracy, epoch
    metrics = runs.EpochMetrics(
        epoch=epoch, train_loss=totals["train_loss"], train_accuracy=totals["train_accuracy"], test_loss=test_loss,
        test_accuracy=test_accuracy, lr=run.lr(), seconds=seconds, elapsed_seconds=run.elapsed_seconds,
        train_seconds=totals["train_seconds"], samples_per_second=totals["samples_per_second"],
    )
    row = asdict(metrics)
    if run.batches is not None:
        run.batches.flush()
    if run.world.main:
        runs.append_metrics(run.run_dir, metrics)
    run.epoch, run.last_eval = epoch, (test_loss, probs)
    yield EpochEnd(
        epoch=epoch, total_epochs=run.config.epochs, train_loss=totals["train_loss"],
        train_accuracy=totals["train_accuracy"], test_loss=test_loss, test_accuracy=test_accuracy, lr=row["lr"],
        seconds=seconds, elapsed_seconds=run.elapsed_seconds, samples_per_second=totals["samples_per_second"],
        is_best=is_best,
    )
    yield from _save(run, row, is_best)
    _write_status(run, "running", Message(N_("epoch %(epoch)d of %(total)d done"),
                                          {"epoch": epoch, "total": run.config.epochs}), step=0)


def _write_status(run: _Run, status: str, message: str | Message, **extra: Any) -> None:
    accuracy = accuracy_of(run.last_eval[1], run.data.test_labels, run.config.task) if run.last_eval else None
    fields = dict(
        status=status, message=message, epoch=run.epoch, total_epochs=run.config.epochs,
        steps_per_epoch=run.steps_per_epoch, test_accuracy=accuracy,
        best_test_accuracy=run.best_accuracy if run.best_epoch else None, **extra,
    )
    run.ended = status != "running"
    if not run.world.main:
        return
    if run.status is not None:
        run.status.set(**fields)
    else:
        runs.write_status(run.run_dir, **fields)


def _write_evaluation(run: _Run) -> Evaluation | None:
    if run.last_eval is None:
        return None
    evaluation = evaluation_of(*run.last_eval, run.data, run.config.task)
    if run.world.main:
        runs.write_evaluation(run.run_dir, evaluation)
    return evaluation


def _finish(run: _Run) -> Finished:
    evaluation = _write_evaluation(run)
    assert evaluation is not None  # at least one epoch ran: resuming a complete run is refused
    template = N_("finished %(epochs)d epoch") if run.epoch == 1 else N_("finished %(epochs)d epochs")
    _write_status(run, "finished", Message(template, {"epochs": run.epoch}))
    trained_images = run.epoch * len(run.data.train_labels)
    return Finished(
        run_id=run.run_id, run_dir=run.run_dir, epochs=run.epoch, test_accuracy=evaluation.accuracy,
        test_loss=evaluation.test_loss, best_test_accuracy=run.best_accuracy, best_epoch=run.best_epoch,
        train_seconds=run.elapsed_seconds, samples_per_second=trained_images / max(run.train_phase_seconds, 1e-9),
        best_checkpoint=run.run_dir / runs.BEST_CHECKPOINT, evaluation=evaluation,
    )


def _stopped(run: _Run, epoch: int) -> Stopped:
    message = (
        Message(N_("stopped during epoch %(epoch)d; saved up to epoch %(saved)d"), {"epoch": epoch, "saved": run.epoch})
        if run.epoch
        else Message(N_("stopped during epoch %(epoch)d, before any epoch was saved"), {"epoch": epoch})
    )
    _write_evaluation(run)
    _write_status(run, "stopped", message)
    return Stopped(run_id=run.run_id, run_dir=run.run_dir, epoch=run.epoch, message=message.english())


def _failed(run: _Run, error: Exception, details: str = "") -> Failed:
    """The run ends failed: status.json frames the exception's own (English) text for the pages to translate."""
    message = Message(N_("it stopped on an error: %(error)s (%(kind)s); status.json keeps the traceback"),
                      {"error": str(error), "kind": type(error).__name__})
    try:
        _write_status(run, "failed", message, details=details)
    except OSError:  # the disk is full or the folder gone: the event still says why
        run.ended = True
    return Failed(message=message.english(), run_id=run.run_id, run_dir=run.run_dir, epoch=run.epoch)


def _diverged(run: _Run, error: Divergence) -> Diverged:
    _write_status(run, "diverged", error.message, cause=error.cause, suggested_lr=error.suggested_lr)
    return Diverged(message=str(error), cause=error.cause, suggested_lr=error.suggested_lr, run_id=run.run_id,
                    run_dir=run.run_dir, epoch=run.epoch)


def _open_record(run: _Run) -> None:
    """Rank 0 (or the only process): status.json with its heartbeat, batches.csv, and how it is launched."""
    world = run.world
    run.status = runs.StatusWriter(
        run.run_dir, "running", message=Message(N_("starting epoch %(epoch)d of %(total)d"),
                                                  {"epoch": run.epoch + 1, "total": run.config.epochs}),
        epoch=run.epoch, total_epochs=run.config.epochs, steps_per_epoch=run.steps_per_epoch, step=0,
        threads=torch.get_num_threads(), device=str(run.device), precision=run.config.precision, world_size=world.size,
    ).start()
    run.batches = runs.BatchLog(run.run_dir)
    batch = run.config.data.batch_size
    fields: dict[str, Any] = {"world_size": world.size, "global_batch_size": batch,
                              "per_process_batch_size": batch // world.size}
    if run.config.data.distort and run.epoch == 0 and "distortion" not in runs.read_config(run.run_dir):
        # at its first start only: a run from before this record, resumed now, had older settings for its epochs
        fields["distortion"] = distortion_settings(run.config)
    runs.update_record(run.run_dir, **fields)


def distortion_settings(config: TrainConfig) -> dict[str, Any]:
    """What `distort` means in this version: core.data.Distortion's settings and the writing styles' share.

    A run's config.json keeps this from the run's first start, so an export or a comparison can tell
    apart runs trained with different versions of Distort.
    """
    distortion, styles = distortion_of(config)
    return asdict(distortion) | {"writing_styles": styles}


def _loop(run: _Run, stop: StopFlag | None) -> Iterator[Event]:
    """The epochs of a prepared run; always ends the run folder with a final status."""
    previous_threads = torch.get_num_threads()
    try:
        if run.config.threads:
            torch.set_num_threads(run.config.threads)
        elif run.device.type == "cpu" and not run.world.distributed:
            run.thread_ceiling = previous_threads  # the queue slot's share, or torch's default: every core
        if run.world.main:
            _open_record(run)
        yield RunStarted(
            run_id=run.run_id, run_dir=run.run_dir, config=run.config, start_epoch=run.epoch,
            total_epochs=run.config.epochs, steps_per_epoch=run.steps_per_epoch,
            train_size=len(run.data.train_labels), test_size=len(run.data.test_labels),
            param_count=sum(p.numel() for p in run.model.parameters() if p.requires_grad),
            device=str(run.device), precision=run.config.precision, world_size=run.world.size,
        )
        for epoch in range(run.epoch + 1, run.config.epochs + 1):
            started = time.perf_counter()
            totals = yield from _train_epoch(run, epoch, stop)
            if totals is None:
                yield _stopped(run, epoch)
                return
            yield from _end_epoch(run, epoch, totals, started)
        yield _finish(run)
    except Divergence as error:
        yield _diverged(run, error)
    except RunFolderGone as error:
        run.ended = True  # nothing to write into
        yield Failed(message=str(error), run_id=run.run_id, run_dir=run.run_dir, epoch=run.epoch)
    except Exception as error:  # a crash mid-run: the folder says so, the traceback is kept in status.json
        yield _failed(run, error, traceback.format_exc())
    finally:
        torch.set_num_threads(previous_threads)
        try:
            if not run.ended:  # the reader closed the stream or Ctrl-C interrupted: resumable from last.pt
                interrupted = N_("interrupted during epoch %(epoch)d; saved up to epoch %(saved)d")
                _write_status(run, "stopped", Message(interrupted, {"epoch": run.epoch + 1, "saved": run.epoch}))
        finally:
            if run.batches is not None:
                run.batches.close()
            if run.status is not None:
                run.status.close()


def train(
    config: TrainConfig | None,
    *,
    run_name: str | None = None,
    resume: str | None = None,
    stop: StopFlag | None = None,
    runs_root: Path | str | None = None,
    dataset: Dataset | None = None,
) -> Iterator[Event]:
    """Train a network and yield what happens, as events (see the order above).

    - `config`: the settings; may be None when resuming (the run's saved config is used).
    - `run_name`: a name typed by a person; it becomes the slug of the run id.
    - `resume`: a run id to continue from its last saved epoch. Its saved config is used, except
      `epochs`, `device` and `threads` taken from `config` when given (so a run can be extended).
    - `stop`: set it from another thread to stop before the next batch; the run is marked stopped.
    - `runs_root`: the folder of run folders (default: $DIGITS_RUNS_DIR or checkpoints/runs).
    - `dataset`: an already loaded core.data.Dataset to reuse (must match config.data.dataset).

    An invalid config, unknown run id or missing dataset raises ConfigError / RunError / DataError /
    CheckpointError at the first `next()`, before any run folder is made. Problems after that (a
    non-finite loss, a crash) end the stream with Failed, and the run folder is marked failed.
    """
    if resume is not None:
        run = _resume_run(resume, config, runs_root, dataset)
    elif config is None:
        raise ConfigError("train() needs a config unless it resumes a run")
    else:
        run = _new_run(config, run_name, runs_root, dataset)
    yield from _loop(run, stop)

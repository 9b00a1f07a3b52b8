"""The accuracy mode: several small networks trained from different seeds, each read through shifted
copies of every test image (test-time augmentation), their softmax probabilities averaged.

Shifts, not flips: a mirrored 2 or 5 is not the same digit, but a digit moved by a pixel is. Members
are ordinary runs (they show on the Train and Compare pages); the ensemble's figures are measured on
the whole test set, never chosen on it: every member is its last epoch, not its best one.

    python -m core ensemble --members 5 [--preset fast --epochs 3] [--json]
    python -m core ensemble --runs RUN_ID RUN_ID ... [--json]      # ensemble runs that exist
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core import runs
from core.checkpoints import load_checkpoint
from core.data import Dataset, Normalization, load_dataset, to_model_input
from core.training import MEMORY_FORMAT, ConfigError, Failed, Finished, TrainConfig, preset_config, train

# The test-time shifts, in pixels (down, right): the image itself and one pixel each way.
SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
EVAL_BATCH = 1000  # test images per forward pass
MEMBER_EPOCHS = 3  # `fast`'s recipe for 3 epochs: each member about 99.6%


def shift_images(images: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """uint8 (N, H, W) moved by whole pixels; what moves in from the edge is black (0), nothing wraps round."""
    if down == 0 and right == 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (max(right, 0), max(-right, 0), max(down, 0), max(-down, 0)))
    top, left = max(-down, 0), max(-right, 0)
    return padded[..., top : top + height, left : left + width]


@torch.inference_mode()
def tta_probabilities(model: nn.Module, images: torch.Tensor, norm: Normalization,
                      shifts: Sequence[tuple[int, int]] = SHIFTS) -> torch.Tensor:
    """Class probabilities (N, 10) of uint8 images (N, 28, 28), averaged over the shifted copies."""
    model.eval()
    total = torch.zeros(len(images), 10)
    for start in range(0, len(images), EVAL_BATCH):
        batch = images[start : start + EVAL_BATCH]
        for down, right in shifts:
            x = to_model_input(shift_images(batch, down, right), norm).contiguous(memory_format=MEMORY_FORMAT)
            total[start : start + len(batch)] += F.softmax(model(x).float(), dim=1)
    return total / len(shifts)


@dataclass(frozen=True)
class EnsembleResult:
    """Accuracies on the test set: each member alone (plain and with shifts), and all of them averaged."""

    members: list[str]  # run ids or checkpoint paths
    member_accuracies: list[float]  # each member alone, one look at each image
    member_tta_accuracies: list[float]  # each member alone, averaged over SHIFTS
    ensemble_accuracy: float  # all members averaged, one look each
    ensemble_tta_accuracy: float  # all members averaged, each over SHIFTS: the accuracy mode's figure
    test_size: int


def evaluate_ensemble(checkpoints: Sequence[Path], dataset: Dataset, names: Sequence[str] | None = None,
                      test_subset: int = 0) -> EnsembleResult:
    """Load every checkpoint (weights_only) and measure it alone and in the ensemble, with and without shifts."""
    count = test_subset or len(dataset.test_labels)
    images, labels = dataset.test_images[:count], dataset.test_labels[:count]
    plain_sum, tta_sum = torch.zeros(count, 10), torch.zeros(count, 10)
    plain_acc, tta_acc = [], []
    for path in checkpoints:
        loaded = load_checkpoint(path)
        if loaded.meta.get("task", "multiclass") != "multiclass" or loaded.meta.get("dataset") != dataset.spec.key:
            raise ConfigError(f"{path} is not a ten-class {dataset.spec.key} model; an ensemble averages those only")
        model = loaded.model.to(memory_format=MEMORY_FORMAT)
        plain = tta_probabilities(model, images, loaded.normalization, shifts=((0, 0),))
        shifted = tta_probabilities(model, images, loaded.normalization)
        plain_acc.append(_accuracy(plain, labels))
        tta_acc.append(_accuracy(shifted, labels))
        plain_sum += plain
        tta_sum += shifted
    return EnsembleResult(
        members=list(names or [str(path) for path in checkpoints]), member_accuracies=plain_acc,
        member_tta_accuracies=tta_acc, ensemble_accuracy=_accuracy(plain_sum, labels),
        ensemble_tta_accuracy=_accuracy(tta_sum, labels), test_size=count,
    )


def _accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probabilities.argmax(dim=1) == labels).double().mean())


def member_configs(members: int, preset: str = "fast", epochs: int = MEMBER_EPOCHS, first_seed: int = 0,
                   **overrides: Any) -> list[TrainConfig]:
    """One config per member: the same recipe, seeds first_seed, first_seed + 1, ..."""
    if members < 1:
        raise ConfigError(f"an ensemble needs at least one member, got {members}")
    return [preset_config(preset, epochs=epochs, seed=first_seed + index, **overrides) for index in range(members)]


def train_members(configs: Sequence[TrainConfig], root: Path | str | None, dataset: Dataset,
                  name: str = "ensemble") -> list[str]:
    """Train each member as an ordinary run (named `<name>-seedN`); their run ids."""
    run_ids = []
    for config in configs:
        outcome = None
        for event in train(config, run_name=f"{name}-seed{config.seed}", runs_root=root, dataset=dataset):
            if isinstance(event, Finished | Failed):
                outcome = event
        if not isinstance(outcome, Finished):
            raise ConfigError(f"member seed {config.seed} did not finish: {getattr(outcome, 'message', outcome)}")
        run_ids.append(outcome.run_id)
    return run_ids


def last_checkpoint(run_id: str, root: Path | str | None) -> Path:
    """A run's last epoch (last.pt): the final model, not the epoch that happened to test best."""
    path = runs.run_dir(run_id, root) / runs.LAST_CHECKPOINT
    if not path.is_file():
        raise runs.RunError(f"run {run_id} has no saved epoch ({path} is missing)")
    return path


def _cmd_ensemble(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.runs:
        first = runs.read_config(runs.run_dir(args.runs[0], args.runs_dir))["config"]
        dataset, run_ids = load_dataset(first["data"]["dataset"]), list(args.runs)
    else:
        overrides = {"train_subset": args.train_subset, "test_subset": args.test_subset}
        if args.threads:
            overrides["threads"] = args.threads
        configs = member_configs(args.members, args.preset, args.epochs, args.first_seed, **overrides)
        dataset = load_dataset(configs[0].data.dataset)
        run_ids = train_members(configs, args.runs_dir, dataset, args.name)
    trained = time.perf_counter()
    result = evaluate_ensemble([last_checkpoint(run_id, args.runs_dir) for run_id in run_ids], dataset,
                               run_ids, args.test_subset)
    figures = {**result.__dict__, "train_seconds": trained - started,
               "evaluate_seconds": time.perf_counter() - trained, "shifts": [list(shift) for shift in SHIFTS]}
    if args.json:
        print(json.dumps(figures))
        return 0
    for run_id, plain, shifted in zip(run_ids, result.member_accuracies, result.member_tta_accuracies, strict=True):
        print(f"  {run_id}: {plain:.2%} alone, {shifted:.2%} with shifts")
    print(f"ensemble of {len(run_ids)}: {result.ensemble_accuracy:.2%}, with shifts {result.ensemble_tta_accuracy:.2%} "
          f"on {result.test_size} test images; trained in {figures['train_seconds']:.0f} s, "
          f"evaluated in {figures['evaluate_seconds']:.1f} s")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core ensemble`."""
    from core.training import PRESETS

    parser = subparsers.add_parser("ensemble", help="the accuracy mode: several seeds + shifted test images",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=5, help="networks to train (default 5)")
    parser.add_argument("--preset", default="fast", choices=list(PRESETS), help="each member's recipe (default fast)")
    parser.add_argument("--epochs", type=int, default=MEMBER_EPOCHS, help=f"each member's epochs ({MEMBER_EPOCHS})")
    parser.add_argument("--first-seed", type=int, default=0, help="members get seeds from this one up (default 0)")
    parser.add_argument("--runs", nargs="+", metavar="RUN_ID", help="ensemble these finished runs instead of training")
    parser.add_argument("--name", default="ensemble", help="members are named NAME-seedN (default ensemble)")
    parser.add_argument("--runs-dir", help="folder of run folders (default $DIGITS_RUNS_DIR or checkpoints/runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per member (0 = the idle cores)")
    parser.add_argument("--train-subset", type=int, default=0, help="first N training images (0 = all)")
    parser.add_argument("--test-subset", type=int, default=0, help="first N test images (0 = all)")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.set_defaults(func=_cmd_ensemble)

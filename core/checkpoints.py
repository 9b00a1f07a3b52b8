"""Checkpoints: a state dict plus plain metadata, written atomically, read back with weights_only=True.

A checkpoint file holds a dict:
    format          "digits-checkpoint" (anything else is refused)
    version         1
    state_dict      the model's tensors, on the CPU
    meta            plain values only: arch_config, config, epoch, metrics, normalization, dataset,
                    task, target_digit, run_id, torch_version, saved_at
    training_state  last.pt only: optimizer and scheduler state for resuming (plain values + tensors)
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from core import models
from core.data import DIGITS, Normalization
from core.runs import BEST_CHECKPOINT

FORMAT = "digits-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a checkpoint of ours, is damaged, or does not fit its architecture."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint (in eval mode) and what it was trained on."""

    path: Path
    model: nn.Module  # in eval mode, on the requested device
    meta: dict[str, Any]

    @property
    def arch_config(self) -> dict[str, Any]:
        return dict(self.meta["arch_config"])

    @property
    def normalization(self) -> Normalization:
        norm = self.meta["normalization"]
        return Normalization(norm["preset"], float(norm["mean"]), float(norm["std"]))

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "multiclass"))

    @property
    def target_digit(self) -> int:
        return int(self.meta.get("target_digit", 8))

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset", "mnist"))

    @property
    def classes(self) -> tuple[str, ...]:
        """The ten class names in output order ("0".."9" for digits; "T-shirt/top", ... for Fashion-MNIST)."""
        names = self.meta.get("classes")
        if isinstance(names, list) and len(names) == 10 and all(isinstance(name, str) for name in names):
            return tuple(names)
        return DIGITS

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.meta.get("metrics", {}))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _reason(error: BaseException) -> str:
    """The telling line of torch.load's long error messages, without its advice on loosening the checks."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "error:" in line.lower()]
    line = (telling or lines or [type(error).__name__])[0]
    return line.split(". Please use")[0].split("weights_only")[0].rstrip(" .(")[:300] or type(error).__name__


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # weights_only's "Unsupported global: GLOBAL torch.nn....Linear"


def _pickled_object_error(path: Path, error: pickle.UnpicklingError) -> CheckpointError:
    """What a file refused by weights_only loading is, and what to do instead (never: load it unsafely)."""
    refused = _REFUSED_GLOBAL.search(str(error))
    what = (
        f"a pickled Python object that needs {refused.group(1)}, such as a whole model saved with torch.save(model)"
        if refused
        else f"pickled data in a format this project does not read ({_reason(error)})"
    )
    return CheckpointError(
        f"{path} is {what}, not a MNIST Lab checkpoint of weights. It was not opened, because unpickling it "
        "could run any code in it. To use that model here, load it where it was made and save its weights as a "
        "state_dict with core.checkpoints.save_checkpoint (weights plus architecture and normalization); "
        "otherwise train a model here or pick a last.pt/best.pt from a run folder."
    )


def save_checkpoint(
    path: Path | str, model: nn.Module, meta: dict[str, Any], *, training_state: dict[str, Any] | None = None
) -> Path:
    """Write the model's weights and `meta` to `path` atomically: a temp file in the same folder, then rename.

    A crash mid-write leaves the previous file at `path` intact and at most a hidden `.NAME.*.tmp`.
    """
    path = Path(path)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        # A JSON round trip keeps the metadata to plain values that weights_only loading accepts.
        "meta": json.loads(json.dumps({"torch_version": str(torch.__version__), "saved_at": _now(), **meta})),
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return write_atomically(path, lambda f: torch.save(payload, f))


def write_atomically(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temp file beside `path`, fsync it, then rename it over `path`.

    Readers never see half a file: a crash mid-write leaves the previous file intact and at most a hidden
    `.NAME.*.tmp` beside it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, checked to be ours; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only refused a class or function the file needs
        raise _pickled_object_error(path, error) from error
    except Exception as error:  # torch.load raises anything from KeyError to UnpicklingError on a foreign file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_reason(error)})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a checkpoint of this project (no '{FORMAT}' header); "
            "train a model here or pick a last.pt/best.pt from a run folder"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')!r}; this code reads {VERSION}")
    meta = payload.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("arch_config"), dict) or "normalization" not in meta:
        raise CheckpointError(f"{path} lacks its metadata (architecture or normalization)")
    return payload


def build_from_checkpoint(payload: dict[str, Any], path: Path | str = "checkpoint") -> nn.Module:
    """Rebuild the network through the registry and load the weights; CheckpointError on any mismatch."""
    arch_config = payload["meta"]["arch_config"]
    try:
        model = models.build_model(**arch_config)
    except (models.ArchitectureError, TypeError) as error:
        raise CheckpointError(f"{path}: cannot rebuild architecture {arch_config!r}: {error}") from error
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError, AttributeError) as error:
        detail = " ".join(str(error).split())[:400]
        raise CheckpointError(
            f"{path}: its weights do not fit architecture {arch_config.get('arch')!r} ({detail})"
        ) from error
    return model


def checkpoint_file(path: Path | str) -> Path:
    """`path` itself, or for a folder (a run folder) its best checkpoint; CheckpointError if the folder has none."""
    path = Path(path)
    if not path.is_dir():
        return path
    best = path / BEST_CHECKPOINT
    if not best.is_file():
        raise CheckpointError(f"no checkpoint in the folder {path}: looked for {BEST_CHECKPOINT} "
                              "(a run folder's best checkpoint, written after its first epoch)")
    return best


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a checkpoint saved by `save_checkpoint` into a fresh model in eval mode on `device`.

    `path` is a checkpoint file or a run folder, which stands for its best checkpoint (`checkpoint_file`).
    """
    path = checkpoint_file(path)
    payload = read_checkpoint(path, "cpu")
    model = build_from_checkpoint(payload, path).to(device).eval()
    return LoadedCheckpoint(path=path, model=model, meta=payload["meta"])

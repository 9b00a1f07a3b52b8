"""Data-parallel training under torchrun: the engine learns its rank and world size from the environment.

`torchrun --nproc_per_node=N -m core train ...` starts N processes with RANK, WORLD_SIZE, LOCAL_RANK
and MASTER_ADDR/PORT set; `setup()` joins them into one process group (gloo on CPU, nccl on CUDA).
Without torchrun WORLD_SIZE is absent and everything here is a no-op for a world of one.

The config's batch size is the global batch: each of the N ranks takes every N-th image of each
global batch, so the union of the shards is the epoch, a checkpoint resumes under any world size,
and one process with the same batch size takes the same optimizer steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes."""

    rank: int = 0  # 0 writes the run folder, status and checkpoints
    size: int = 1  # processes training together
    local_rank: int = 0  # index on this machine: picks the GPU

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_environment() -> World:
    """The world torchrun describes in the environment (a world of one without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def device_type(device: str) -> str:
    """"cuda" if a config's device lets it use a GPU and there is one, else "cpu": it picks the backend."""
    wants_gpu = device in ("auto", "cuda") or device.startswith("cuda:")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def setup(device_type: str = "cpu") -> World:
    """Join the process group torchrun describes (once); return this process's world."""
    world = from_environment()
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        # A long timeout: rank 0 may wait in the run queue while the others wait for it.
        dist.init_process_group(backend=backend, timeout=timedelta(hours=24))
    return world


def current() -> World:
    """The world of an initialized process group, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(rank=dist.get_rank(), size=dist.get_world_size(),
                     local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank (a run id, say)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(values: torch.Tensor, world: World) -> torch.Tensor:
    """Elementwise sum over all ranks, on the tensor's own device; unchanged in a world of one."""
    if not world.distributed:
        return values
    # nccl reduces CUDA tensors only, gloo CPU ones
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    moved = values.to(device)
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    return moved.to(values.device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

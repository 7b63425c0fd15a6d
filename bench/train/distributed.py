"""Process-group set-up for torchrun, and the few collectives training and sampling need.

A run started by `torchrun --nproc_per_node N ...` sees WORLD_SIZE/RANK/LOCAL_RANK in its
environment; a plain `python -m bench ...` does not and runs as a world of one, where every
collective below is a no-op. CPU runs use gloo, CUDA runs NCCL; object collectives (lists of
sample tensors, the set of finished cells) always go through a gloo group so that they work
without staging tensors on the GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from bench.errors import UsageError


@dataclass
class DistContext:
    """Who this process is in the run. `rank == 0` is the one that writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cpu_group: Any = None
    owns_group: bool = False

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier(group=self.cpu_group)

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.is_distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj, group=self.cpu_group)
        return gathered

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` in rank order on rank 0; None on the other ranks."""
        if not self.is_distributed:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0, group=self.cpu_group)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.is_distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.cpu_group)
        return box[0]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a scalar tensor over ranks (the tensor's own device; NCCL needs CUDA)."""
        if not self.is_distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def close(self) -> None:
        """Tear down the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' is the local GPU when there is one, else the CPU; 'cuda' means this rank's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda[:index]") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but CUDA is not available here")
        if parsed.index is None:
            parsed = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif parsed.type != "cpu":
        raise UsageError(f"device {device!r} is not supported: use auto, cpu or cuda[:index]")
    return parsed


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group if there is one (idempotent), and pick this rank's device.

    Without torchrun's variables this returns a world of one on `device`.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    target = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=target)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend=backend)
        owns = True
    cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=target, cpu_group=cpu_group, owns_group=owns)

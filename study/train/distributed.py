"""torchrun support: process group from the environment, DDP wrapping with SyncBatchNorm on GPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from study.parent_death import die_with_parent


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1 or dist.is_initialized()


def init_from_env() -> World:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK); a single process otherwise."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun starts ranks in their own session: end with the agent
        die_with_parent()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
    return world


def wrap(model: torch.nn.Module, device: torch.device, sync_bn: bool) -> tuple[torch.nn.Module, str]:
    """DDP around the model; BatchNorm becomes SyncBatchNorm on GPUs when asked. Returns (model, BN kind)."""
    bn = "BatchNorm"
    if sync_bn and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        bn = "SyncBatchNorm"
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids), bn


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()

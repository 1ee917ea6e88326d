"""Data-parallel training across processes started by ``torchrun``: ranks, the process group, DDP, agreement.

``torchrun`` describes each process through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``); without it, or with ``WORLD_SIZE=1``, everything here is a no-op so a
plain process trains exactly as before.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

SEED_STRIDE = 1_000_003  # a prime: seeds of different ranks and different runs do not collide


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes: its global and per-node rank and their number."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Ranks:
        """The ranks ``torchrun`` gave this process; one process of one when it was not started by ``torchrun``."""
        world_size = int(env.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if "RANK" not in env or "LOCAL_RANK" not in env:
            raise ValueError(
                f"WORLD_SIZE={world_size} is set but RANK or LOCAL_RANK is not; start distributed training "
                "with torchrun (python -m torch.distributed.run), which sets all three"
            )
        return cls(rank=int(env["RANK"]), local_rank=int(env["LOCAL_RANK"]), world_size=world_size)

    @property
    def distributed(self) -> bool:
        """Whether there are other processes to stay in step with."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, writes checkpoints and metrics, and shows progress; the others only train."""
        return self.rank == 0


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The GPU of this process on its node (``cuda:LOCAL_RANK``) when distributed on CUDA; ``device`` otherwise."""
    if ranks.distributed and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def rank_seed(seed: int, ranks: Ranks) -> int:
    """The seed of this rank: ``seed`` itself on rank 0, so that one process draws what it always drew."""
    return seed + SEED_STRIDE * ranks.rank


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the ``torchrun`` process group for the duration (NCCL on CUDA, Gloo on CPU), then leave it.

    DistributedDataParallel keeps the group inside reference cycles, so they are collected before the group
    is destroyed: left to interpreter shutdown, Gloo's threads abort the process ("terminate called without
    an active exception"). After an error the group is not destroyed, as that would wait for ranks stuck in
    a collective; the process fails at once and ``torchrun`` stops the others.
    """
    if not ranks.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world_size
    )
    yield
    gc.collect()
    dist.destroy_process_group()


def data_parallel(network: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """``network`` wrapped in DistributedDataParallel when distributed, ``network`` itself otherwise.

    DDP copies rank 0's weights to every rank on construction and averages gradients in ``backward``, so
    with the same optimizer state every rank takes the same step and the weights stay identical.
    """
    if not ranks.distributed:
        return network
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def from_main(value: float, ranks: Ranks, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank; ``value`` itself in a single process.

    Decisions read from a clock (the learning-rate schedule, the time budget) must agree across ranks, or
    their weights drift apart and a rank that stops early leaves the others waiting forever. Receiving ranks
    also wait here until rank 0 has got this far.
    """
    if not ranks.distributed:
        return value
    shared = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(shared, src=0)
    return float(shared.item())

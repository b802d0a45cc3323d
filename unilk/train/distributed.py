"""DDP helpers: process-group setup under torchrun, the sharded training sampler and pad-free evaluation shards.

Training: every epoch one global permutation (from the seed, identical on all ranks) is cut into global batches of
``batch_size`` (the last partial batch is dropped); rank ``r`` of ``W`` takes the ``r``-th contiguous slice of each,
so W processes see exactly the samples one process would, and DDP's gradient average equals the one-process mean.
Evaluation: rank ``r`` takes indices ``r, r+W, r+2W, ...``; no sample is padded or repeated, and metrics are computed
on the gathered predictions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from unilk.errors import ConfigError
from unilk.once import log_once

__all__ = [
    "shutdown_process_group",
    "DistInfo",
    "GlobalBatchSampler",
    "all_gather_objects",
    "eval_shard",
    "init_distributed",
    "maybe_sync_batchnorm",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when running under a process group with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which writes checkpoints and logs."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA).

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Raises:
        ConfigError: ``device='cuda'`` without a GPU, or an unknown device.
    """
    if device == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    elif device in ("cpu", "cuda"):
        kind = device
    else:
        raise ConfigError(f"train.device: got {device!r}, expected 'auto', 'cpu' or 'cuda'")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: got 'cuda' but no GPU is visible; use train.device=cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
        logger.info("joined process group: rank %d of %d on %s", rank, world_size, torch_device)
    return DistInfo(rank=rank, world_size=world_size, device=torch_device)


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's slice of each global batch of a seeded per-epoch permutation.

    Args:
        num_samples: dataset length.
        batch_size: global batch size (divisible by ``world_size``).
        seed: permutation seed; epoch ``e`` uses ``seed + e``.
        rank: this process's rank.
        world_size: number of processes.
        shuffle: permute (training) or keep the order.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if batch_size % world_size:
            raise ConfigError(
                f"data.batch_size: got {batch_size}, expected a multiple of the {world_size} processes; "
                f"use {batch_size - batch_size % world_size or world_size}"
            )
        if num_samples < batch_size:
            raise ConfigError(
                f"data.batch_size: got {batch_size}, larger than the {num_samples} training samples; lower it"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Start the next iteration at batch ``start_batch`` of epoch ``epoch`` (for resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.num_samples // self.batch_size - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            order = list(range(self.num_samples))
        local = self.batch_size // self.world_size
        for b in range(self.start_batch, self.num_samples // self.batch_size):
            start = b * self.batch_size + self.rank * local
            yield order[start : start + local]


def shutdown_process_group(wait_for_peers: bool) -> None:
    """Leave the default process group (a no-op when none is initialised).

    Args:
        wait_for_peers: meet every rank first. Use it when this rank finished normally: a rank that tears gloo down
            while a peer is still receiving can abort the peer (``terminate called without an active exception``,
            gloo issue 155: a barrier alone does not prevent it, since a rank leaves the barrier while its last message
            to a peer may still be in flight). So after the barrier every rank also says in the rendezvous store that it
            has left it, and waits for all the others to say so, before any rank destroys its connections. Leave it
            off on the error path, where a peer may never reach the barrier.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if wait_for_peers:
            dist.barrier()
            _wait_until_all_left_barrier()
    finally:
        dist.destroy_process_group()


def _wait_until_all_left_barrier() -> None:
    """Each rank marks in the default store that it left the final barrier, then waits for every rank's mark."""
    get_store = getattr(dist.distributed_c10d, "_get_default_store", None)  # private; absent: the barrier alone
    if get_store is None:
        return
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        store = get_store()
        store.set(f"unilk/left_barrier/{rank}", b"1")
        store.wait([f"unilk/left_barrier/{r}" for r in range(world_size)])
    except RuntimeError as err:  # DistError included; the store's host already gone: every rank had arrived
        logger.debug("shutdown: store handshake skipped (%s)", err)


def eval_shard(num_samples: int, rank: int, world_size: int) -> list[int]:
    """Indices evaluated by ``rank``: every ``world_size``-th sample, no padding, no duplicates."""
    return list(range(rank, num_samples, world_size))


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (in rank order); just ``[obj]`` without a process group."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def maybe_sync_batchnorm(model: nn.Module, enabled: bool, info: DistInfo) -> nn.Module:
    """Convert BatchNorm layers to SyncBatchNorm when asked and running distributed on CUDA.

    SyncBatchNorm needs CUDA; on CPU (gloo) the conversion is skipped with a warning.
    """
    if not (enabled and info.enabled):
        return model
    if info.device.type != "cuda":
        message = "model.sync_bn: SyncBatchNorm needs CUDA; keeping per-process BatchNorm on %s"
        log_once(logger, "sync_bn on cpu", message, info.device)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)

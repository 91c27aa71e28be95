"""torch.distributed plumbing: one process per device under ``torchrun``, or a single process.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous address);
with a world of one nothing is initialised. CUDA processes use NCCL and the GPU numbered by
their local rank; CPU processes use gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UsageError, braces
from .config import TrainError


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str) -> Context:
    """Pick the device and, under torchrun, join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank if world > 1 else None)
    if world > 1:
        if dev.type == "mps":
            raise TrainError("distributed training runs on cuda or cpu, not mps")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank, world, local_rank, dev)


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("{device} cuda: no CUDA device is available (try {device} cpu)", "device")
        if local_rank is not None:
            if local_rank >= torch.cuda.device_count():
                raise TrainError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible")
            return torch.device("cuda", local_rank)
        return torch.device("cuda")
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise TrainError("{device} mps: Apple's MPS backend is not available here (try {device} cpu)", "device")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"{{device}} {braces(repr(name))}: expected cpu, cuda, mps or auto", "device")


def all_sum(ctx: Context, values: list[float]) -> list[float]:
    """Sum numbers over all processes (identity for one)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(ctx: Context, model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics): DDP syncs them at the
    start of each forward, so after the last step each rank holds the ones its own batch moved."""
    if ctx.distributed:
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def wrap(ctx: Context, model: torch.nn.Module, find_unused: bool = True) -> torch.nn.Module:
    """DistributedDataParallel with ``find_unused_parameters=True``: a drop-path sample skips the
    layers no surviving path uses, so their parameters get no gradient. All ranks draw the same
    sample (same generator seed), so those parameters are unused on every rank and DDP leaves
    their ``.grad`` at None, exactly like one process would: the optimizer then skips them (no
    momentum or weight-decay step), which ``compute_all`` masking (zero gradients) would not.
    Without drop-path every parameter is used, and ``find_unused=False`` spares DDP the
    per-step search of the autograd graph."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()

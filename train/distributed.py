"""Data-parallel training with PyTorch's DistributedDataParallel, started by torchrun:

    torchrun --standalone --nproc_per_node=2 -m train.train --out runs/x --steps 200 ...
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        --nproc_per_node=8 -m train.train ...          # the same on each node, its own rank

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op and training
runs in one process. The backend is gloo on the CPU and NCCL on CUDA, one GPU per process
(LOCAL_RANK). Rank 0 alone writes checkpoints, logs and samples; every rank reads the same
checkpoint when a run resumes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def is_main_process() -> bool:
    """Rank 0, or not under torchrun: the process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def start() -> Ranks:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return ranks


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def device(ranks: Ranks) -> torch.device:
    return torch.device("cuda", ranks.local_rank) if torch.cuda.is_available() else torch.device("cpu")


class Losses(nn.Module):
    """The model's training losses as a forward pass, the call DistributedDataParallel wraps
    (it prepares the gradient all-reduce in forward)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x1, x2, keep_char=None):
        return self.model.losses(x1, x2, keep_char)


def wrap(model: nn.Module, ranks: Ranks) -> nn.Module:
    """The losses module, under DDP when distributed (its construction broadcasts rank 0's weights)."""
    losses = Losses(model)
    if not ranks.distributed:
        return losses
    ids = [ranks.local_rank] if torch.cuda.is_available() else None
    return nn.parallel.DistributedDataParallel(losses, device_ids=ids)


def agree(values: list[float], ranks: Ranks) -> list[float]:
    """The largest of each value over the ranks (one all-reduce), so that every rank takes the same
    decision from clocks that differ."""
    if not ranks.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device(ranks))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def check_in_sync(model: nn.Module, ranks: Ranks) -> float:
    """Max abs difference of any parameter from rank 0's (0.0 in a healthy run: every rank applies
    the same averaged gradients); a RuntimeError when the ranks have drifted apart."""
    if not ranks.distributed:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    if diff.item() != 0.0:
        raise RuntimeError(f"rank {ranks.rank}: parameters differ from rank 0's by up to {diff.item():.3g}")
    return diff.item()

"""The process group every engine process joins (torchrun: nccl on CUDA, gloo on CPU) and the few collectives
the engines use; one process (world 1) makes all of them no-ops."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..threads import apply_threads


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    threads: str = ""  # what dasvit.threads chose, for the progress output and the run_start event

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto", long_waits: bool = False) -> DistInfo:
    """Join the process group when started by torchrun (nccl on CUDA, gloo on CPU).

    `long_waits`: ranks may wait for a person (manual approval), so collectives time out after two
    days instead of the backend's default (10 to 30 minutes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        timeout = {"timeout": datetime.timedelta(days=2)} if long_waits else {}
        dist.init_process_group("nccl" if use_cuda else "gloo", **timeout)
    threads = apply_threads().describe()
    return DistInfo(rank=rank, world=world, local_rank=local, device=dev, threads=threads)


def all_reduce_mean(tensors: list[torch.Tensor], info: DistInfo) -> None:
    """Average tensors across ranks in place (one flat buffer: one collective)."""
    if info.world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= info.world
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum scalars across ranks (for epoch metrics)."""
    if info.world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def epoch_peak_memory(info: DistInfo) -> dict[str, int]:
    """{"peak_mem_bytes": the CUDA memory peak since the last call} for an epoch event, then the peak is reset;
    {} off CUDA."""
    if info.device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(info.device)
    torch.cuda.reset_peak_memory_stats(info.device)
    return {"peak_mem_bytes": peak}


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if info.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

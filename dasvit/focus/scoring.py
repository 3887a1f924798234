"""Scoring architectures of a FocusFormer supernet: their cost (FLOPs, params) and their loss and top-1 with
inherited weights. The sampler's training (`train.py`) and specialization (`specialize.py`) both use it."""

from __future__ import annotations

from ..model.cost import Cost
from ..run.distributed import DistInfo
from ..train.data import EpochLoaders
from ..train.loop import evaluate
from .cost import subnet_cost
from .space import FocusSpace, Subnet
from .supernet import FocusSupernet


class CostTable:
    """What architectures cost at one input size (`Cost`: FLOPs, params), memoised."""

    def __init__(self, space: FocusSpace, image_size: int, patch_size: int, num_classes: int, in_chans: int):
        self.space = space
        self.args = (image_size, patch_size, num_classes, in_chans)
        self._memo: dict[Subnet, Cost] = {}

    def __call__(self, subnet: Subnet) -> Cost:
        hit = self._memo.get(subnet)
        if hit is None:
            hit = self._memo[subnet] = subnet_cost(self.space, subnet, *self.args)
        return hit

    def flops(self, subnet: Subnet) -> int:
        return self(subnet).flops


def eval_batch(batch_size: int) -> int:
    """Evaluation batches: at least 256 images (no backward pass; fewer, larger steps)."""
    return max(batch_size, 256)


class EvalBatches:
    """The validation split in batches, read once and kept in memory when small (under `limit` bytes): an
    architecture's evaluation then costs its forward passes only, which matters when specialization
    evaluates hundreds. Larger splits are read afresh each time."""

    def __init__(self, loaders: EpochLoaders, limit: int = 1 << 30):
        self.loaders = loaders
        x0 = loaders.dataset[0][0]
        small = len(loaders.dataset) * x0.numel() * x0.element_size() <= limit
        self.cached = list(loaders.epoch(0)) if small else None

    def __iter__(self):
        return iter(self.cached if self.cached is not None else self.loaders.epoch(0))


def evaluate_subnet(
    net: FocusSupernet, subnet: Subnet, batches, info: DistInfo, max_batches: int = 0
) -> tuple[float, float]:
    """(loss, top-1) of one architecture with inherited weights over `batches` (all of them when
    `max_batches` is 0), summed over ranks: the shared `dasvit.train.loop.evaluate` with the subnet in the forward."""
    m = evaluate(net, batches, info, args=(subnet,), max_batches=max_batches)
    return m["val_loss"], m["top1"]

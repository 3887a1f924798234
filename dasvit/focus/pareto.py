"""The Pareto front of cost against accuracy (what specialization reports and the monitor draws), and the
Pareto-aware ranks the sampler learns from. No torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def _as_pair(item: Any) -> tuple[float, float]:
    return item


def pareto_front(items: Iterable[T], key: Callable[[T], tuple[float, float]] = _as_pair) -> list[T]:
    """The items no other beats: none costs as little or less and scores at least as high, one of the two
    strictly. `key` gives an item's (cost, score), by default the item itself, a (FLOPs, accuracy) pair.
    Sorted by cost; the score rises along it. Of items equal in both, the first is kept."""
    front: list[T] = []
    best = -math.inf
    for item in sorted(items, key=lambda x: (key(x)[0], -key(x)[1])):
        score = key(item)[1]
        if score > best:
            front.append(item)
            best = score
    return front


def pareto_ranks(flops: list[float], losses: list[float], budget: float) -> list[int]:
    """Rank architectures for one budget as a cap, 0 = best: every one within budget beats every one over it;
    within budget the lower loss wins, over budget the lower FLOPs win (`focus.lstm.rank: cap`)."""
    keys = [(0, loss, f) if f <= budget else (1, f, loss) for f, loss in zip(flops, losses)]
    return _ranks(keys)


def window_ranks(flops: list[float], losses: list[float], low: float, budget: float) -> list[int]:
    """Rank architectures for one budget bin as a window (low, budget], 0 = best (`focus.lstm.rank: window`):
    the bin's own FLOPs range first, lower loss winning there; then the smaller networks, larger first (they
    belong to a lower bin); over budget last, smaller first. A cap alone rewards small networks at every
    budget (under weight sharing they are the best trained); the window asks each bin for the best network
    of its own cost, so the bins together trace the front (AttentiveNAS samples within a FLOPs window alike)."""
    keys = [
        (0, loss, -f) if low < f <= budget else ((1, -f, loss) if f <= low else (2, f, loss))
        for f, loss in zip(flops, losses)
    ]
    return _ranks(keys)


def _ranks(keys: list[tuple]) -> list[int]:
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = [0] * len(keys)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def window_shortfall(flops: list[float], low: float, budget: float, span: float) -> list[float]:
    """How far each architecture lies outside the bin's window (low, budget], as a fraction of the space's
    FLOPs range: 0 inside, the distance below `low` or above `budget` outside. Priced analytically, so the
    sampler can learn where each budget's networks lie from many draws that need no supernet evaluation."""
    span = max(span, 1.0)
    return [(low - f) / span if f <= low else ((f - budget) / span if f > budget else 0.0) for f in flops]

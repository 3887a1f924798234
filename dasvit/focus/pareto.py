"""The Pareto front of cost against accuracy: what specialization reports and the monitor draws. No torch."""

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

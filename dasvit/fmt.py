"""How durations, sizes and counts read, everywhere (engine progress lines, the monitor, the CLI tables). No torch."""

from __future__ import annotations

import math
import re

from .errors import BudgetError
from .limits import MAX_COUNT


def clock(seconds: float | None) -> str:
    """12:05 or 1:02:03; --:-- when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def human_bytes(n: float | None) -> str:
    """512 B, 3 KiB, 1.5 MiB, 2.0 GiB; – when unknown."""
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


_COUNT = re.compile(r"^\s*(\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE]([+-]?\d{1,30}))?\s*([kKmMgGtT]?)\s*$")
_SCALE = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


_PREFIXES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))


def count(n: float) -> str:
    """1400000000 → 1.4G, 900000 → 900K: a count in the form `--flops`/`--params` take (`parse_count`)."""
    for unit, scale in _PREFIXES:
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def count_in_table(n: float | None, unit: str = "") -> str:
    """86567656 → 86.57 M, 151000 → 151.00 k; – when unknown: `count` with two decimals, for the columns
    of a table (cost tables, `dasvit compare`), where figures are compared digit by digit."""
    if n is None:
        return "–"
    for prefix, scale in _PREFIXES:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix.replace('K', 'k')}{unit}"
    return f"{n:g} {unit}".rstrip()


def parse_count(text: str, option: str = "--flops") -> int:
    """'1.4G' → 1_400_000_000, '900M', '6M', '500K', '2.5e9', '1200000'; anything else is a BudgetError."""
    m = _COUNT.match(str(text)[:100])
    if not m or len(str(text)) > 100:
        raise BudgetError(f"{option} {str(text)[:40]!r} is not a count; write it like 1.4G, 900M, 6M or 1500000.")
    exponent = max(-400, min(400, int(m.group(2) or 0)))  # beyond, a float is 0 or inf anyway: no 10**huge
    value = float(f"{m.group(1)}e{exponent}") * _SCALE[m.group(3).lower()]
    if value < 0.5:
        raise BudgetError(f"{option} must be at least 1, got {text!r}.")
    if value > MAX_COUNT:
        raise BudgetError(f"{option} is at most {MAX_COUNT:.0e} (a count that large is no budget), got {text!r}.")
    return round(value)


def check_budget(value: int | None, smallest: float | None, name: str, unit: str) -> None:
    """A `BudgetError` when a budget (`name`, like --flops) is below the space's smallest architecture;
    None (no budget, or the smallest unknown) passes."""
    if value is not None and smallest is not None and value < smallest:
        raise BudgetError(
            f"{name} {count(value)} is below the smallest architecture of this space "
            f"({count(smallest)} {unit}); ask for at least that much."
        )

"""How durations and sizes read, everywhere (engine progress lines, the monitor, the CLI tables). No torch."""

from __future__ import annotations


def clock(seconds: float | None) -> str:
    """12:05 or 1:02:03; --:-- when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
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

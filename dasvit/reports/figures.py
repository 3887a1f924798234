"""What every figure of dasvit shares: its style, its formats (PNG and SVG, matplotlib's Agg backend: no
display needed; SVG text stays text), the colours of the runs, and how it is written (atomically)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from ..run import jsonio

FORMATS = ("png", "svg")
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
    # every text is literal: labels, run names and strings read from files may hold $ (no mathtext)
    "text.parse_math": False,
    "figure.dpi": 100,
    "savefig.dpi": 200,
}


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def save(fig, out: Path, stem: str) -> list[Path]:
    written = []
    for fmt in FORMATS:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        path = out / f"{stem}.{fmt}"
        jsonio.atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written

"""Figures of `dasvit compare`: where the searched cell stands among random cells of its own space and the
ViT block, run by run (PNG and SVG, matplotlib's Agg backend).

- `random` (a search run whose compare.json has random cells): test top-1 of each random cell (grey
  dots, their median a grey bar), the ViT block (blue square) and the searched cell (red star), at equal
  depth; the matched-FLOPs searched cell (hollow star) when it differs.
- the same for several runs (`dasvit compare RUN... --summary FILE` writes it beside FILE): one column
  per run (search seed).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .plot import STYLE, _save


def _column(ax, x: float, c: dict[str, Any], seen: set[str]) -> None:
    """Draw one run's column; each kind of mark gets its legend entry the first time it is drawn."""

    def label(name: str) -> str | None:
        if name in seen:
            return None
        seen.add(name)
        return name

    eq = c["equal_depth"]
    rnd = (c.get("random") or {}).get("cells") or []
    tops = [100 * r["top1"] for r in rnd]
    if tops:
        ax.scatter(
            [x + 0.12 * ((i % 5) - 2) / 2 for i in range(len(tops))],
            tops,
            s=12,
            color="0.55",
            zorder=2,
            label=label("random cells"),
        )
        ax.hlines(
            statistics.median(tops),
            x - 0.3,
            x + 0.3,
            color="0.35",
            lw=1.5,
            zorder=3,
            label=label("median of the random cells"),
        )
    ax.scatter(
        [x],
        [100 * eq["vit"]["top1"]],
        marker="s",
        s=30,
        color="#1f77b4",
        zorder=4,
        label=label("ViT block"),
    )
    ax.scatter(
        [x],
        [100 * eq["searched"]["top1"]],
        marker="*",
        s=90,
        color="#d62728",
        zorder=5,
        label=label("searched cell"),
    )
    mf = c.get("matched_flops")
    if mf and mf["depth"] != eq["depth"]:
        ax.scatter(
            [x + 0.25],
            [100 * mf["searched"]["top1"]],
            marker="*",
            s=70,
            facecolor="none",
            edgecolor="#d62728",
            zorder=5,
            label=label("searched cell, matched FLOPs (deeper)"),
        )


def _epochs(n: int | None) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def plot_random(compares: list[dict[str, Any]], labels: list[str], out: Path, stem: str = "random") -> list[Path]:
    """One column per compare.json (a run): random cells, ViT block, searched cell; [] if none has random cells."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not any(c.get("random") for c in compares):
        return []
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(3.8, 1.6 + 1.1 * len(compares)), 3.6), constrained_layout=True)
        seen: set[str] = set()
        for i, c in enumerate(compares):
            _column(ax, i, c, seen)
        ax.set_xticks(range(len(compares)), labels)
        ax.set_xlim(-0.6, len(compares) - 0.4)
        first = compares[0]
        eq = first["equal_depth"]
        ax.set(ylabel="top-1 on the test split (%)")
        ax.set_title(
            f"{first.get('dataset')}: searched cell against random cells\nof its space and the ViT block "
            f"(depth {eq['depth']}, width {first.get('embed_dim')}, {_epochs(eq['vit'].get('epochs'))})",
            fontsize=8,
        )
        fig.legend(frameon=False, fontsize=6, loc="outside lower center", ncol=3)
        try:
            return _save(fig, out, stem)
        finally:
            plt.close(fig)

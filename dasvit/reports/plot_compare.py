"""Figures of `dasvit compare`: where the searched cell stands among random cells of its own space and the
ViT block, run by run (PNG and SVG, matplotlib's Agg backend).

- `random` (a search run whose compare.json has random cells): test top-1 of each random cell (grey
  dots, their median a grey bar), the ViT block (blue square) and the searched cell (red star), at equal
  depth; the matched-FLOPs searched cell (hollow star) when it differs.
- the same for several runs (`dasvit compare RUN... --summary FILE` writes it beside FILE): one column
  per run (search seed).
- `cost`: top-1 against network FLOPs of every random cell (matched-cost ones hollow), their trend, the
  searched cell, each selection rule's cell and the ViT block (`--match-cost`, `--selection`).
- `ranking`: per stage end, the supernet's one-shot top-1 of each retrained cell against its retrained
  top-1, with Kendall's τ (the ranking diagnostic, dasvit.reports.ranking).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .figures import STYLE, pyplot, save


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
    plt = pyplot()

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
            return save(fig, out, stem)
        finally:
            plt.close(fig)


def _num(x: Any) -> bool:
    """A finite number (compare.json is read back as untrusted input)."""
    import math

    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _points(rows: Any) -> list[tuple[float, float]]:
    """(MFLOPs, top-1 %) of a list of compare.json rows, skipping any that lack finite numbers."""
    if not isinstance(rows, list):
        return []
    return [
        (r["flops"] / 1e6, 100 * r["top1"])
        for r in rows
        if isinstance(r, dict) and _num(r.get("flops")) and _num(r.get("top1"))
    ]


SELECTION_MARKS = {"perturbation": "D", "oneshot": "P", "skip-limit": "v"}
SKIP_LIMIT_MARKS = "v^<>"  # skip-limit-1, -2, -3, ...: one triangle each, told apart in the legend


def selection_mark(name: str) -> str:
    """A selection rule's cell's marker: its rule's, a skip limit's own triangle, else an X."""
    rule, _, m = name.rpartition("-")
    if rule == "skip-limit" and m.isdigit():
        return SKIP_LIMIT_MARKS[(int(m) - 1) % len(SKIP_LIMIT_MARKS)]
    return SELECTION_MARKS.get(name, "X")


def plot_cost(c: dict[str, Any], label: str, out: Path, stem: str = "cost") -> list[Path]:
    """Top-1 against network FLOPs: every random cell (dots; matched-cost ones hollow), their least-squares
    trend, the searched cell (red star), each selection rule's cell and the ViT block: does the searched cell
    lie above the random cells of its cost? [] without random cells."""
    plt = pyplot()

    rnd = _points((c.get("random") or {}).get("cells") if isinstance(c.get("random"), dict) else None)
    mc = _points((c.get("matched_cost") or {}).get("cells") if isinstance(c.get("matched_cost"), dict) else None)
    if len(rnd) + len(mc) < 2:
        return []
    trend = c.get("cost_trend") if isinstance(c.get("cost_trend"), dict) else {}
    cells = trend.get("cells") if isinstance(trend.get("cells"), dict) else {}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.6), constrained_layout=True)
        if rnd:
            ax.scatter(*zip(*rnd), s=14, color="0.5", zorder=2, label="random cells (within the budget)")
        if mc:
            ax.scatter(*zip(*mc), s=18, facecolor="none", edgecolor="0.3", zorder=2, label="random cells, matched cost")
        xs = [x for x, _ in rnd + mc]
        if _num(trend.get("slope_per_mflop")) and _num(trend.get("intercept")):
            lo, hi = min(xs), max(xs)
            for row in cells.values():
                if isinstance(row, dict) and _num(row.get("flops")):
                    lo, hi = min(lo, row["flops"] / 1e6), max(hi, row["flops"] / 1e6)
            line = [100 * (trend["intercept"] + trend["slope_per_mflop"] / 1e6 * x * 1e6) for x in (lo, hi)]
            spread = trend.get("residual_std")
            ax.plot([lo, hi], line, color="0.45", lw=1, ls="--", zorder=1, label="their trend (least squares)")
            if _num(spread):
                ax.fill_between(
                    [lo, hi],
                    [y - 100 * spread for y in line],
                    [y + 100 * spread for y in line],
                    color="0.85",
                    zorder=0,
                    label="± their scatter (std)",
                )
        for name, row in cells.items():
            if not (isinstance(row, dict) and _num(row.get("flops")) and _num(row.get("top1"))):
                continue
            x, y = row["flops"] / 1e6, 100 * row["top1"]
            if name == "vit_b16":
                ax.scatter([x], [y], marker="s", s=30, color="#1f77b4", zorder=4, label="ViT block")
            elif name == "searched":
                ax.scatter([x], [y], marker="*", s=110, color="#d62728", zorder=5, label="searched cell")
            else:
                ax.scatter([x], [y], marker=selection_mark(name), s=36, color="#9467bd", zorder=5, label=f"{name} cell")
        eq = c.get("equal_depth") if isinstance(c.get("equal_depth"), dict) else {}
        ax.set(xlabel="network FLOPs (M, one image)", ylabel="top-1 on the test split (%)")
        ax.set_title(f"{label}: top-1 against cost at depth {eq.get('depth', '?')}", fontsize=8)
        fig.legend(frameon=False, fontsize=6, loc="outside lower center", ncol=2)
        try:
            return save(fig, out, stem)
        finally:
            plt.close(fig)


def ranking_mark(name: str) -> tuple[dict[str, Any], str]:
    """A cell's marker in the ranking figure, as the cost figure draws it, and its legend label."""
    if name == "searched":
        return {"marker": "*", "s": 90, "color": "#d62728"}, "searched cell"
    if name == "vit_b16":
        return {"marker": "s", "s": 26, "color": "#1f77b4"}, "ViT block"
    if name.startswith("matched"):
        return {"marker": "o", "s": 16, "facecolor": "none", "edgecolor": "0.3"}, "random cells, matched cost"
    if name.startswith("random"):
        return {"marker": "o", "s": 14, "color": "0.5"}, "random cells (within the budget)"
    return {"marker": selection_mark(name), "s": 30, "color": "#9467bd"}, f"{name} cell"


def plot_ranking(c: dict[str, Any], label: str, out: Path, stem: str = "ranking") -> list[Path]:
    """The supernet's one-shot top-1 of each retrained cell against its retrained top-1, a panel per stage end,
    with Kendall's τ: can the supernet rank cells? [] without compare.json's ranking."""
    plt = pyplot()

    ranking = c.get("ranking") if isinstance(c.get("ranking"), dict) else None
    if not ranking or not isinstance(ranking.get("cells"), dict) or not isinstance(ranking.get("stages"), dict):
        return []
    stages = sorted(k for k in ranking["stages"] if isinstance(k, str) and k.isdigit() and len(k) < 5)[:8]
    if not stages:
        return []
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(stages), figsize=(2.4 * len(stages) + 0.6, 2.8), constrained_layout=True, squeeze=False
        )
        for ax, k in zip(axes[0], stages):
            pts = []
            for name, cell in ranking["cells"].items():
                if not isinstance(cell, dict) or not isinstance(cell.get("oneshot"), dict):
                    continue
                acc, top1 = cell["oneshot"].get(k), cell.get("top1")
                if _num(acc) and _num(top1):
                    pts.append((100 * acc, 100 * top1, name))
            for x, y, name in pts:
                mark, kind = ranking_mark(name)
                ax.scatter([x], [y], zorder=3, label=kind, **mark)
            st = ranking["stages"][k] if isinstance(ranking["stages"][k], dict) else {}
            corr = st.get("oneshot") if isinstance(st.get("oneshot"), dict) else None
            tau = (corr or {}).get("kendall", {}).get("tau") if isinstance((corr or {}).get("kendall"), dict) else None
            ax.set_title(
                f"stage {k}: " + (f"τ = {tau:+.2f} (n {len(pts)})" if _num(tau) else f"n {len(pts)}"), fontsize=8
            )
            ax.set_xlabel("one-shot top-1, validation (%)")
        axes[0][0].set_ylabel("retrained top-1, test (%)")
        fig.suptitle(f"{label}: does the supernet rank the cells as retraining does?", fontsize=8)
        named = {}  # one legend entry per kind of cell, across the panels
        for ax in axes[0]:
            for handle, name in zip(*ax.get_legend_handles_labels()):
                named.setdefault(name, handle)
        if named:
            fig.legend(named.values(), named.keys(), frameon=False, fontsize=6, loc="outside lower center", ncol=4)
        try:
            return save(fig, out, stem)
        finally:
            plt.close(fig)

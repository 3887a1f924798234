"""The search's own figures, from its event fold (`plot.Series`): the architecture weights per edge (the
paper's Figures 2-3, `op_weights`), the skip fraction per stage (`skip`), and two runs' skip edges side by side
(`skip_edges`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..model.opspec import edge_order, parse_op
from .figures import RUN_COLOURS, save
from .plot_curves import Series, _epoch_axis, _mark_stages, _segments, _weight

# op colours, light to dark by heads / ratio: distinct hues within a family, blue-purple for msa, orange-brown for mlp
FAMILY_SHADES = {"msa": ["#56b4e9", "#0060c0", "#6a3d9a"], "mlp": ["#f0a030", "#d55e00", "#8c2d04"]}


def op_colours(ops: list[str]) -> dict[str, Any]:
    """One colour per op, the same in every figure: zero grey, skip black, msa blue to purple, mlp orange
    to brown (darker for more heads / a larger ratio)."""
    from matplotlib import colormaps

    specs = []
    for name in dict.fromkeys(ops):
        try:
            specs.append(parse_op(name))
        except UserError:  # an op this version does not know: still drawn, in a neutral colour
            specs.append(None)
    colours: dict[str, Any] = {}
    for family, cmap in (("msa", "Blues"), ("mlp", "Oranges")):
        members = sorted(
            (sp for sp in specs if sp is not None and sp.type == family),
            key=lambda sp: sp.heads if family == "msa" else sp.ratio,
        )
        shades = (
            FAMILY_SHADES[family]
            if len(members) <= len(FAMILY_SHADES[family])
            else [colormaps[cmap](0.35 + 0.6 * i / max(len(members) - 1, 1)) for i in range(len(members))]
        )
        for i, sp in enumerate(members):
            colours[sp.name] = shades[i]
    colours.update({"zero": "#9a9a9a", "skip": "#000000"})
    others = [name for name in dict.fromkeys(ops) if name not in colours]
    for i, name in enumerate(others):
        colours[name] = colormaps["Greens"](0.5 + 0.4 * i / max(len(others), 1))
    return colours


def _grid(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def _edge_panels(n: int, row_height: float, margin: float):
    """A figure of a panel per edge, `n` of them in a near-square grid sharing both axes: (figure, axes)."""
    import matplotlib.pyplot as plt

    rows, cols = _grid(n)
    return plt.subplots(
        rows,
        cols,
        figsize=(2.35 * cols, row_height * rows + margin),
        sharex=True,
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )


PRUNED_MS = 4.0  # size (points) of a pruned-here mark


def plot_op_weights(run: Series, out: Path, colours: dict[str, Any], stem: str = "op_weights") -> list[Path]:
    """The paper's Figures 2-3: one panel per edge, the weight of each op over epochs."""
    import matplotlib.pyplot as plt

    fig = op_weights_figure(run, colours)
    try:
        return save(fig, out, stem)
    finally:
        plt.close(fig)


def op_weights_figure(run: Series, colours: dict[str, Any]):
    """The op_weights figure (`plot_op_weights` saves it)."""
    from matplotlib.lines import Line2D

    edges = run.edges()
    fig, axes = _edge_panels(len(edges), 1.75, 0.5)
    top = max(
        (w for e in run.epochs for ws in (e.get("arch_weights") or {}).values() for w in ws.values()), default=1.0
    )
    marks: list[tuple[Any, list[tuple[float, float, Any]]]] = []  # per panel and stage: (x, weight, colour)
    for ax, edge in zip(axes.flat, edges):
        for op in run.ops():
            for xs, ys in _segments(run, lambda e, op=op, edge=edge: _weight(e, edge, op)):
                ax.plot(xs, ys, color=colours[op], lw=1.6 if op == "skip" else 1.1, marker="o", ms=2)
        for st, dropped in run.pruned.items():
            last = run.of_stage(st)[-1]
            weights = (last.get("arch_weights") or {}).get(edge, {})
            marks.append((ax, [(last["x"], weights[op], colours[op]) for op in dropped.get(edge, []) if op in weights]))
        _mark_stages(ax, [run], text=False)
        ax.set_title(f"edge {edge}", pad=2)
        ax.set_ylim(0, min(1.0, top * 1.08))
    for ax in axes.flat[len(edges) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        _epoch_axis(ax, [run])
    for ax in axes[:, 0]:
        ax.set_ylabel("weight")
    handles = [Line2D([], [], color=colours[op], lw=1.6, label=op) for op in run.ops()]
    handles.append(Line2D([], [], color="#444444", marker="x", ls="none", label="pruned here"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 9), frameon=False)
    fig.suptitle(
        f"{run.label}: op weights per edge\nsoftmax of α at each epoch's end; dotted lines: a new stage (α restarts)",
        fontsize=9,
    )
    _draw_pruned_marks(fig, marks)
    return fig


def _draw_pruned_marks(fig, marks: list[tuple[Any, list[tuple[float, float, Any]]]]) -> None:
    """An x per op pruned at a stage's end, at its last weight. Ops pruned together often weigh about the
    same (at stage 1 every op is near 1/8), so marks closer than a mark's size are set side by side,
    leftwards from the stage's last epoch, instead of on top of each other."""
    fig.canvas.draw()  # the layout fixed, so that data and points convert
    size = PRUNED_MS * fig.dpi / 72 * 1.15  # pixels between the centres of two marks that do not touch
    for ax in {id(ax): ax for ax, _ in marks}.values():
        ax.set_xlim(ax.get_xlim())
    for ax, points in marks:
        to_px, to_data = ax.transData, ax.transData.inverted()
        placed: list[tuple[float, float]] = []
        for x, w, colour in sorted(points, key=lambda p: p[1]):
            px, py = to_px.transform((x, w))
            while any(abs(px - qx) < size and abs(py - qy) < size for qx, qy in placed):
                px -= size
            placed.append((px, py))
            dx, _ = to_data.transform((px, py))
            ax.plot([dx], [w], marker="x", ms=PRUNED_MS, color=colour, mew=1.2, ls="none", zorder=3)


def _skip_edges_left(run: Series, stage: int) -> tuple[int, int]:
    """(edges whose ops in `stage` include skip, edges)."""
    weights = run.of_stage(stage)[-1].get("arch_weights") or {}
    return sum("skip" in w for w in weights.values()), len(weights)


def plot_skip(runs: list[Series], out: Path, stem: str = "skip") -> list[Path]:
    """Skip fraction per epoch (left) and at each stage's end (right), with the edges still offering skip."""
    import matplotlib.pyplot as plt

    fig, (ax_line, ax_bar) = plt.subplots(
        1, 2, figsize=(7.0, 2.5), constrained_layout=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        c = RUN_COLOURS[i % len(RUN_COLOURS)]
        for k, (xs, ys) in enumerate(_segments(run, lambda e: e.get("skip_fraction"))):
            ax_line.plot(xs, ys, color=c, lw=1.4, marker="o", ms=2.5, label=run.label if k == 0 else None)
        stages = run.stages()
        ends = [run.of_stage(st)[-1].get("skip_fraction") or 0.0 for st in stages]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(stages))]
        bars = ax_bar.bar(xs, ends, width=width * 0.95, color=c, label=run.label)
        for bar, st in zip(bars, stages):
            left, total = _skip_edges_left(run, st)
            ax_bar.annotate(
                f"{left}/{total}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=6,
                xytext=(0, 1),
                textcoords="offset points",
            )
    _mark_stages(ax_line, runs)
    _epoch_axis(ax_line, runs)
    ax_line.set_ylabel("skip fraction")
    ax_line.set_ylim(bottom=0)
    if len(runs) > 1:
        ax_line.legend(frameon=False, loc="best")
    n_stages = max(len(r.stages()) for r in runs)
    ax_bar.set_xticks(range(n_stages), [f"stage {k + 1}" for k in range(n_stages)])
    ax_bar.set_ylabel("skip fraction at stage end")
    ax_bar.set_title("labels: edges still offering skip", fontsize=7, color="#555555")
    ax_bar.set_ylim(0, max([0.05, *(b.get_height() for b in ax_bar.patches)]) * 1.25)
    fig.suptitle("skip: " + " vs ".join(r.label for r in runs), fontsize=9)
    try:
        return save(fig, out, stem)
    finally:
        plt.close(fig)


def plot_skip_edges(runs: list[Series], out: Path, stem: str = "skip_edges") -> list[Path]:
    """Per edge, the weight on skip over epochs, one line per run (plain DARTS vs DASViT, say); x: pruned."""
    import matplotlib.pyplot as plt

    edges = list(dict.fromkeys(e for r in runs for e in r.edges()))
    edges.sort(key=edge_order)
    fig, axes = _edge_panels(len(edges), 1.6, 0.4)
    top = max([0.05, *(_weight(e, edge, "skip") or 0.0 for r in runs for e in r.epochs for edge in edges)])
    for ax, edge in zip(axes.flat, edges):
        for i, run in enumerate(runs):
            segs = _segments(run, lambda e, edge=edge: _weight(e, edge, "skip"))
            c = RUN_COLOURS[i % len(RUN_COLOURS)]
            for k, (xs, ys) in enumerate(segs):
                ax.plot(xs, ys, color=c, lw=1.3, marker="o", ms=2, label=run.label if k == 0 else None)
            for st, dropped in run.pruned.items():
                if "skip" in dropped.get(edge, []):
                    last = run.of_stage(st)[-1]
                    ax.plot([last["x"]], [last["arch_weights"][edge]["skip"]], marker="x", ms=4, mew=1.2, color=c)
        _mark_stages(ax, runs, text=False)
        ax.set_title(f"edge {edge}", pad=2)
        ax.set_ylim(0, top * 1.08)
    for ax in axes.flat[len(edges) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        _epoch_axis(ax, runs)
    for ax in axes[:, 0]:
        ax.set_ylabel("skip weight")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    fig.suptitle(
        "weight on skip per edge: " + " vs ".join(r.label for r in runs) + "\nx: skip pruned there; "
        "dotted lines: a new stage",
        fontsize=9,
    )
    try:
        return save(fig, out, stem)
    finally:
        plt.close(fig)

"""Figures of a run, for a paper: PNG and SVG, drawn with matplotlib's Agg backend (no display needed).

Everything comes from the run's event log (`events.jsonl`). For a search run:

- `curves`      loss and accuracy per epoch across the stages (train dashed, validation solid; stage
                boundaries marked), the runs overlaid when there are two;
- `op_weights`  one small panel per edge, a line per op: the softmax of α at each epoch's end (the
                paper's Figures 2-3). Op colours are the same in every panel and every figure; α restarts
                at each stage, so each stage is its own segment, and an op pruned at a stage's end ends
                there with an x. With two runs, one such figure per run;
- `skip`        the skip fraction (mean weight on `skip` over edges) per epoch and at each stage's end,
                with how many edges still offer `skip`; two runs side by side;
- `skip_edges`  (two runs) the weight on `skip` of each edge over epochs, one line per run;
- `retrain`     loss, top-1 and top-5 per epoch of RUN_DIR/retrain, when it exists;
- `compare`     the same for the retrains of `dasvit compare` (searched cell and ViT block), when
                RUN_DIR/compare.json exists.

For a retrain run directory: `retrain` only. SVG text stays text (editable, searchable).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import RunDirError, UserError
from ..model.opspec import edge_order, parse_op
from ..run import jsonio, jsonl, layout
from ..run.events import EPOCH, RUN_START
from ..run.history import RunHistory

FORMATS = ("png", "svg")
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
# op colours, light to dark by heads / ratio: distinct hues within a family, blue-purple for msa, orange-brown for mlp
FAMILY_SHADES = {"msa": ["#56b4e9", "#0060c0", "#6a3d9a"], "mlp": ["#f0a030", "#d55e00", "#8c2d04"]}
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


@dataclass
class Series:
    """One run's finished epochs on one axis, as `dasvit.run.history.RunHistory` folds them (an epoch a resume
    logged twice counts once; `x` counts from the run's start, stage offsets added), with its label."""

    path: Path
    label: str
    kind: str
    history: RunHistory

    def __post_init__(self) -> None:
        self.epochs = self.history.ordered()
        self.stage_starts = self.history.stage_starts()  # stage -> x where it starts
        self.stage_depths = self.history.stage_depths()
        self.pruned = self.history.pruned()  # stage -> edge -> the ops dropped after it

    def stages(self) -> list[int]:
        return sorted(self.stage_starts)

    def of_stage(self, stage: int) -> list[dict[str, Any]]:
        return [e for e in self.epochs if e["stage"] == stage]

    def edges(self) -> list[str]:
        return sorted(self.history.edges(), key=edge_order)

    def ops(self) -> list[str]:
        return self.history.ops()


def load_series(run_dir: str | Path, label: str | None = None) -> Series:
    """The epochs of `run_dir`; a RunDirError if it is not a run or no epoch has finished."""
    run_dir = layout.require_run_dir(Path(run_dir))
    events, _ = jsonl.read_events(run_dir)
    kind = next((e.get("kind", "search") for e in events if e.get("type") == RUN_START), "search")
    history = RunHistory.of_events(events)
    if not history.ordered():
        raise RunDirError(f"{run_dir} has no finished epoch yet; there is nothing to plot.")
    default = f"{run_dir.parent.name}/{layout.RETRAIN}" if run_dir.name == layout.RETRAIN else run_dir.name
    # a name read from a path: printable (STYLE keeps its $ literal: no mathtext)
    return Series(run_dir, label or jsonio.printable(default, newlines=False), kind, history)


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _save(fig, out: Path, stem: str) -> list[Path]:
    written = []
    for fmt in FORMATS:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        path = out / f"{stem}.{fmt}"
        jsonio.atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def _mark_stages(ax, runs: list[Series], text: bool = True) -> None:
    """Dotted lines where stages start (after the first), and the stage names above the axes."""
    first = runs[0]
    bounds = sorted({x for r in runs for st, x in r.stage_starts.items() if x > 0})
    for x in bounds:
        ax.axvline(x + 0.5, color="#777777", lw=0.7, ls=":", zorder=0)
    if text and len(first.stage_starts) > 1:
        ends = [*(first.stage_starts[st] for st in first.stages()[1:]), first.epochs[-1]["x"]]
        for st, end in zip(first.stages(), ends):
            start = first.stage_starts[st]
            depth = first.stage_depths.get(st)
            name = f"stage {st}" + (f" (depth {depth})" if depth else "")
            ax.text(
                (start + end) / 2 + 0.5,
                1.0,
                name,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=6.5,
                color="#555555",
            )


def _epoch_axis(ax, runs: list[Series]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch" + (" (all stages)" if any(len(r.stage_starts) > 1 for r in runs) else ""))


def _weight(epoch: dict[str, Any], edge: str, op: str) -> float | None:
    return ((epoch.get("arch_weights") or {}).get(edge) or {}).get(op)


def _segments(run: Series, key) -> list[tuple[list[float], list[float]]]:
    """(x, y) per stage for the value `key(epoch)` (None where absent): lines do not join across stages."""
    out = []
    for st in run.stages():
        pts = [(e["x"], key(e)) for e in run.of_stage(st)]
        pts = [(x, y) for x, y in pts if isinstance(y, (int, float)) and math.isfinite(y)]
        if pts:
            out.append(([p[0] for p in pts], [p[1] for p in pts]))
    return out


def plot_curves(runs: list[Series], out: Path, stem: str = "curves", title: str | None = None) -> list[Path]:
    """Loss and accuracy per epoch, train dashed and validation solid (top-1 / top-5 for a retrain)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    retrain = runs[0].kind == "retrain"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(7.0, 2.6), constrained_layout=True)
    for i, run in enumerate(runs):
        c = RUN_COLOURS[i % len(RUN_COLOURS)]
        series = [
            (ax_loss, "train_loss", "--"),
            (ax_loss, "val_loss", "-"),
            (ax_acc, "train_acc", "--"),
            (ax_acc, "top1" if retrain else "val_acc", "-"),
        ]
        if retrain:
            series.append((ax_acc, "top5", _interleaved_dots(i, len(runs))))
        for ax, key, ls in series:
            for xs, ys in _segments(run, lambda e, k=key: e.get(k)):
                dots = key == "top5" and len(runs) > 1  # a marker would cover the other runs' at the same point
                ax.plot(xs, ys, ls=ls, color=c, lw=1.3, marker="o" if len(xs) < 12 and not dots else None, ms=2.5)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        _mark_stages(ax, runs)
        _epoch_axis(ax, runs)
        ax.set_ylabel(name)
    ax_acc.set_ylim(0, 1.04)
    styles = [
        Line2D([], [], color="#444444", ls="--", label="train"),
        Line2D([], [], color="#444444", ls="-", label="top-1 (val)" if retrain else "validation"),
    ]
    if retrain:
        styles.append(Line2D([], [], color="#444444", ls=":", label="top-5 (val)"))
    handles = styles + (
        [Line2D([], [], color=RUN_COLOURS[i], lw=2, label=r.label) for i, r in enumerate(runs)] if len(runs) > 1 else []
    )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    title = title or f"{'retrain' if retrain else 'search'}: " + " vs ".join(r.label for r in runs)
    fig.suptitle(title, fontsize=9)
    try:
        return _save(fig, out, stem)
    finally:
        plt.close(fig)


def _interleaved_dots(i: int, n: int):
    """Run i's dotted line among n: a dot every n dots, shifted by i, so that where the runs' lines meet
    (top-5 at 100 % in every retrain of a task with few classes) the one dotted line there shows every run's
    colour in turn instead of the last run's alone."""
    if n <= 1:
        return ":"
    dot, gap = 1.0, 1.65  # matplotlib's ':' in line widths
    return (i * (dot + gap), (dot, n * (dot + gap) - dot))


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
        return _save(fig, out, stem)
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
        return _save(fig, out, stem)
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
        return _save(fig, out, stem)
    finally:
        plt.close(fig)


def plot_runs(
    run_dirs: list[str | Path],
    out: str | Path | None = None,
    labels: list[str] | None = None,
    note: Callable[[str], None] = lambda text: None,
) -> list[Path]:
    """Write every figure of one run, or of two runs overlaid, into `out` (default RUN_DIR/figures).

    Returns the files written; `note` hears of what was passed over (a damaged compare.json). Two runs must
    be of the same kind (two searches or two retrains).
    """
    if not 1 <= len(run_dirs) <= 2:
        raise UserError(f"plot takes one or two run directories, got {len(run_dirs)}.")
    if labels is not None and len(labels) != len(run_dirs):
        raise UserError(f"--labels names {len(labels)} runs but {len(run_dirs)} run directories were given.")
    runs = [load_series(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    if len(runs) == 2 and runs[0].label == runs[1].label:
        runs[0].label, runs[1].label = f"{runs[0].label} (1)", f"{runs[1].label} (2)"
    kinds = {r.kind for r in runs}
    if len(kinds) > 1:
        raise UserError(f"cannot overlay a {runs[0].kind} run with a {runs[1].kind} run; give two of the same kind.")
    out = Path(out) if out is not None else layout.run_subdir(run_dirs[0], layout.FIGURES)
    layout.ensure_writable(out, "the figures folder", "write them elsewhere with --out")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    written: list[Path] = []
    with plt.rc_context(STYLE):
        if runs[0].kind == "retrain":
            return plot_curves(runs, out, "retrain")
        written += plot_curves(runs, out)
        if runs[0].kind == "focus":
            from .plot_focus import plot_sampler

            for r in runs:
                written += plot_sampler(
                    r.path, out, "sampler" if len(runs) == 1 else f"sampler-{_slug(r.label)}", r.label
                )
        searched = [r for r in runs if r.edges()]
        colours = op_colours([op for r in searched for op in r.ops()])
        for r in searched:
            stem = "op_weights" if len(runs) == 1 else f"op_weights-{_slug(r.label)}"
            written += plot_op_weights(r, out, colours, stem)
        if searched:
            written += plot_skip(searched, out)
        if len(searched) == 2:
            written += plot_skip_edges(searched, out)
        retrains = [
            load_series(r.path / layout.RETRAIN, f"{r.label}")
            for r in runs
            if layout.is_run_dir(r.path / layout.RETRAIN)
            and any(e.get("type") == EPOCH for e in jsonl.read_events(r.path / layout.RETRAIN)[0])
        ]
        if retrains:
            written += plot_curves(retrains, out, "retrain")
        if len(runs) == 1:
            from ..run.records import DamagedRecord
            from .compare import read_compare

            try:
                data = read_compare(runs[0].path)
            except DamagedRecord as e:
                note(f"no comparison figures: {e}")
                data = None
            if data is not None:
                from .plot_compare import plot_cost, plot_random, plot_ranking

                compared = compare_series(runs[0].path, data)
                if compared:
                    title = f"dasvit compare {runs[0].label}: searched cell vs ViT block, same recipe"
                    written += plot_curves(compared, out, "compare", title)
                written += plot_random([data], [runs[0].label], out)
                written += plot_cost(data, runs[0].label, out)
                written += plot_ranking(data, runs[0].label, out)
    return written


def compare_series(run_dir: Path, data: dict[str, Any]) -> list[Series]:
    """The retrains of the searched cell and the ViT block that `dasvit compare` made (its compare.json,
    `data`, read whole), labelled by cell and depth."""
    rows = list(data["models"].values())
    names = {"searched": "searched cell", "vit_b16": "ViT block"}
    out = []
    for row in rows:
        if row.get("cell") not in names:  # random cells: the `random` figure shows where they end
            continue
        d = Path(run_dir) / row["dir"]
        if layout.is_run_dir(d):
            cell = row.get("cell")
            out.append(load_series(d, f"{names.get(cell, cell)}, depth {row.get('depth')}"))
    return out

"""A run's curves: its epochs on one axis (`Series`, from the event fold `RunHistory`), and loss and accuracy
per epoch across the stages (`plot_curves`: train dashed, validation solid, stage boundaries marked; several
runs overlaid)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunDirError
from ..model.opspec import edge_order
from ..run import jsonio, jsonl, layout
from ..run.events import RUN_START
from ..run.history import RunHistory
from .figures import RUN_COLOURS, save


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
        return save(fig, out, stem)
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

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

from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..run import jsonl, layout
from ..run.events import EPOCH
from .figures import STYLE, pyplot, slug
from .plot_curves import Series, load_series, plot_curves
from .plot_search import op_colours, plot_op_weights, plot_skip, plot_skip_edges


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
    plt = pyplot()

    written: list[Path] = []
    with plt.rc_context(STYLE):
        if runs[0].kind == "retrain":
            return plot_curves(runs, out, "retrain")
        written += plot_curves(runs, out)
        if runs[0].kind == "focus":
            from .plot_focus import plot_sampler

            for r in runs:
                written += plot_sampler(
                    r.path, out, "sampler" if len(runs) == 1 else f"sampler-{slug(r.label)}", r.label
                )
        searched = [r for r in runs if r.edges()]
        colours = op_colours([op for r in searched for op in r.ops()])
        for r in searched:
            stem = "op_weights" if len(runs) == 1 else f"op_weights-{slug(r.label)}"
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
            from .compare_result import read_compare

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

"""`dasvit plot`: a run's figures (PNG and SVG) for a paper, from its event log."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def plot(
    run_dirs: Optional[list[Path]] = typer.Argument(
        None,
        metavar="RUN_DIR [RUN_DIR2]",
        help="A search, retrain or FocusFormer run directory; a second one of the same kind is overlaid.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write. Default: RUN_DIR/figures."),
    labels: Optional[str] = typer.Option(
        None,
        "--labels",
        "-l",
        metavar="A[,B]",
        help="Run names for legends, comma-separated. Default: directory names.",
    ),
    memory: Optional[Path] = typer.Option(
        None,
        "--memory",
        metavar="FILE",
        help="Instead of a run: memory against batch size per stage (the paper's Figure 1) from "
        "dasvit search --dry-run --json FILE. Default --out: FILE's folder.",
    ),
    gpu_mem: Optional[str] = typer.Option(
        None, "--gpu-mem", metavar="SIZE", help="With --memory: the card's line (default: the dry run's)."
    ),
) -> None:
    """Draw a run's figures as PNG and SVG: curves, op weights per edge, skip fraction.

    Figures of a search run:
      curves      loss and accuracy per epoch across stages (boundaries marked)
      op_weights  a panel per edge, a line per op; x: pruned there (Figures 2-3)
      skip        skip fraction per epoch and at each stage's end
      retrain     loss, top-1 and top-5 of RUN_DIR/retrain, when it exists
      compare     the same for the retrains of `dasvit compare`, when it ran
      random      the searched cell among the random cells, after compare --random
    With RUN_DIR2 the runs are overlaid; op_weights-<label> for each run, and
    skip_edges: each edge's weight on skip, run against run.
    A retrain run directory gives retrain only. A FocusFormer run gives curves
    and sampler: per budget bin and epoch, the mean FLOPs of the sampler's draws
    against the budget, the fraction within it and the entropy.

    Everything comes from events.jsonl, so a running search can be plotted too.
    Prints the files written.

    With --memory FILE (from dasvit search --dry-run --json FILE): memory against batch size, a panel
    per stage, plain DARTS against DASViT, fp32 and bf16, with the card's line (the paper's Figure 1).

    Example: dasvit plot runs/plain runs/dasvit --labels "plain DARTS,DASViT"
    Example: dasvit plot --memory results/memory/imagenet100.json
    """
    if memory is not None:
        from dasvit.errors import UserError
        from dasvit.reports.memory import parse_bytes
        from dasvit.reports.plot_memory import plot_memory

        if run_dirs:
            raise UserError("--memory draws a dry run's estimate, not a run; give it without RUN_DIR.")
        gpu = parse_bytes(gpu_mem) if gpu_mem is not None else None
        for path in plot_memory(memory, out or memory.parent, gpu):
            typer.echo(str(path))
        return
    if not run_dirs:
        from dasvit.errors import UserError

        raise UserError("give a run directory to plot (or --memory FILE for a dry run's estimate).")
    from dasvit.reports.plot import plot_runs

    names = [s.strip() for s in labels.split(",")] if labels is not None else None
    for path in plot_runs(list(run_dirs), out, names, note=lambda text: typer.echo(f"note: {text}", err=True)):
        typer.echo(str(path))

"""`dasvit tensorboard`: run directories as TensorBoard event files, once or while they run."""

from __future__ import annotations

from pathlib import Path

import typer


def tensorboard(
    run_dirs: list[Path] = typer.Argument(
        ...,
        metavar="RUN_DIR",
        help="Search, retrain or FocusFormer run directories (a search's retrain/ is a run directory of its own).",
    ),
    logdir: Path = typer.Option(
        ...,
        "--logdir",
        metavar="DIR",
        help="Where to write: DIR/<run name>, one TensorBoard run per RUN_DIR (outside the run directories).",
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        help="Keep converting live runs: their new epochs every 2 s, until none is running any more (or Ctrl-C).",
    ),
) -> None:
    """Convert run directories into TensorBoard event files, for `tensorboard --logdir DIR`.

    Each RUN_DIR becomes DIR/<its name>: on one step axis, the epoch counted
    from the run's start across the stages, the losses, accuracies, learning
    rate, throughput and memory of every epoch; a search's skip fraction,
    fairness terms, op type shares, expected cost and architecture weights
    (alpha/<edge>/<op>); a retrain's top-1 and top-5; a FocusFormer run's
    smallest architecture and sampler bins (sampler/bin<k>/...). The config
    and each stage's cell go to the Text tab; the config's scalars with the
    final accuracy (a retrain's test top-1, else the last val_acc) to the
    HParams tab.

    Converting again replaces what the last conversion wrote there (the event
    files of DIR/<name> are deleted first). Nothing is written into a run
    directory.

    Examples:
      dasvit tensorboard runs/fashion-s0 runs/fashion-s1 --logdir runs/tensorboard
      dasvit tensorboard runs/demo-20261121-101301 --logdir tb --follow
    """
    from dasvit.reports.tensorboard import convert_runs
    from dasvit.run.runtime import Outcome

    with Outcome() as outcome:
        convert_runs(
            list(run_dirs), logdir, follow, say=typer.echo, note=lambda text: typer.echo(f"note: {text}", err=True)
        )
    if outcome.code:
        raise typer.Exit(outcome.code)
    typer.echo(f"next: tensorboard --logdir {logdir}")

"""`dasvit retrain`: train a searched cell (or ViT-B/16) from scratch and measure it.

With --headless the engine runs in the foreground (in this process, or under torchrun with --nproc N);
without it, the monitor starts the engine detached and watches it (`dasvit_tui.commands.tui.start_and_monitor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dasvit.errors import UserError
from dasvit.run.requests import RetrainRequest
from dasvit_tui.commands.launching import Nodes
from dasvit_tui.commands.options import Executor, GpusPerJob, JobTime, NoProgress, Partition, launch_flags, set_option


def retrain(
    source: Optional[str] = typer.Argument(
        None,
        metavar="GENOTYPE|RUN_DIR|BUILTIN",
        help="A search run directory (its genotype.json and config.yaml), a genotype.json, or vit_b16.",
    ),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        "-p",
        help="Preset name or YAML file. Default: the config.yaml of the run the source comes from.",
    ),
    overrides: set_option("retrain.epochs=100") = None,
    run_dir: Optional[Path] = typer.Option(
        None,
        "--run-dir",
        "-o",
        help="Where to write. Default: RUN_DIR/retrain for a search run directory, "
        "FOCUS_RUN/specialized/<budget>-retrain for a file dasvit specialize wrote, else runs/<name>-retrain-<time>.",
    ),
    resume: Optional[Path] = typer.Option(
        None,
        "--resume",
        help="Continue a retrain run (or a search run's retrain/) from its last completed epoch; --set still "
        "applies, except to the network's sizes and the data.",
    ),
    init: Optional[str] = typer.Option(
        None,
        "--init",
        metavar="scratch|inherited",
        help="The first weights: scratch (ViT init; the default) or inherited: the weights beside the genotype file "
        "(<budget>.safetensors, as dasvit specialize writes a FocusFormer subnet's), fine-tuned. "
        "The same as --set retrain.init=...; a fine-tune goes to FOCUS_RUN/specialized/<budget>-finetune.",
    ),
    headless: bool = typer.Option(
        False, "--headless", help="Run in the foreground with progress on stdout instead of opening the monitor."
    ),
    nproc: int = typer.Option(1, "--nproc", help="Processes (one per GPU) under torchrun; gloo on CPU."),
    no_progress: NoProgress = False,
    executor: Executor = None,
    partition: Partition = None,
    time_limit: JobTime = None,
    gpus_per_job: GpusPerJob = None,
    nodes: Optional[int] = Nodes,
) -> None:
    """Retrain a searched cell from scratch; report top-1/top-5, params, FLOPs, images/s.

    Writes config.yaml, genotype.json, events.jsonl, checkpoint.pt (each epoch), best.pt, last.pt and
    metrics.json. Train the ViT-B/16 baseline with the same recipe to compare (see `dasvit show`).

    A version-2 genotype (FocusFormer) trains at its own depth and width; data, image, patch, recipe: the
    preset, or the FocusFormer run's config for RUN_DIR/specialized/<budget>.json.

    With --init inherited a FocusFormer subnet starts from the weights its
    supernet trained (specialize keeps them beside the genotype) and is
    fine-tuned with the recipe (a short one: --set retrain.epochs=5).

    Exit codes: 0 finished, 1 failed, 2 bad input, 130 stopped (continue with --resume DIR).

    Examples:
      dasvit retrain runs/demo-20260101-120000 --headless
      dasvit retrain runs/focus/specialized/2.23M.json --init inherited --set retrain.epochs=5 --headless
      dasvit retrain runs/in100-s0 --executor slurm --partition gpu --nodes 2 --nproc 4 --gpus-per-job 4
    """
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}.")
    overrides = list(overrides or [])
    if init is not None:
        if init not in ("scratch", "inherited"):
            raise UserError(f"--init is scratch or inherited, got {init!r}.")
        overrides.append(f"retrain.init={init}")
    request = RetrainRequest(source, preset, overrides, run_dir, resume, progress=not no_progress)
    request = request.resolved()  # every mistake: exit 2, now
    if (executor or "") == "slurm":
        from dasvit_tui.commands.launching import run_on_slurm, settings

        flags = launch_flags(None, executor, partition, time_limit, gpus_per_job) | {"nodes": nodes}
        raise typer.Exit(run_on_slurm(request, settings(request, flags), nproc, typer.echo))
    if not headless:
        if nproc > 1:
            raise UserError("--nproc runs the ranks in the foreground; add --headless.")
        from dasvit_tui.commands.tui import start_and_monitor

        raise typer.Exit(start_and_monitor(request))
    if nproc > 1:
        from dasvit_tui.launch import run_distributed

        raise typer.Exit(run_distributed(request, nproc))
    from dasvit.train.retrain import run

    raise typer.Exit(run(request))

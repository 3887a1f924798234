"""`dasvit focus`: train a FocusFormer supernet and its budget-aware sampler (headless for now)."""

from __future__ import annotations

from typing import Optional

import typer

from dasvit.errors import UserError
from dasvit.run.requests import FocusRequest, check_preset_engine, presets_for
from dasvit_tui.commands.options import NewRunDir, NoProgress, Nproc, Resume, set_option


def focus(
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        "-p",
        help=f"Preset name ({', '.join(presets_for('focus'))}) or a YAML file with a focus: section. "
        "Default: focus-demo.",
    ),
    overrides: set_option("focus.sampler=uniform") = None,
    run_dir: NewRunDir = None,
    headless: bool = typer.Option(
        False,
        "--headless",
        help="Run in the foreground with progress on stdout (the only mode; dasvit tui --preset opens the monitor).",
    ),
    resume: Resume = None,
    nproc: Nproc = 1,
    no_progress: NoProgress = False,
) -> None:
    """Train a FocusFormer supernet and its budget-aware architecture sampler.

    The supernet is weight-entangled over an elastic space around a cell:
    focus.base (vit_b16, a genotype.json or a DASViT search run directory)
    with the choices of focus.embed_dims, focus.depths, focus.heads and
    focus.mlp_ratios. focus.sampler: pareto (FocusFormer) or uniform
    (AutoFormer's training, the baseline). Then: dasvit specialize RUN_DIR
    --flops 1.4G.

    Exit codes: 0 finished, 1 failed, 2 bad input, 130 stopped (Ctrl-C,
    SIGTERM or a stop request). A stopped or killed run continues with
    --resume RUN_DIR from its last completed epoch.

    Example: dasvit focus --headless --preset focus-demo
    """
    if not headless:
        raise UserError(
            "dasvit focus runs in the foreground only; add --headless, or start it with its monitor: "
            "dasvit tui --preset PRESET (dasvit tui RUN_DIR watches a headless one)."
        )
    if resume is None:
        check_preset_engine(preset, "focus")
    request = FocusRequest(preset, list(overrides or []), run_dir, resume, progress=not no_progress)
    request = request.resolved()  # every rank writes the same run directory; a bad config stops here
    if nproc > 1:
        from dasvit_tui.launch import run_distributed

        raise typer.Exit(run_distributed(request, nproc))
    from dasvit.focus.train import run

    raise typer.Exit(run(request))

"""What `dasvit search` and `dasvit retrain` share when they launch beyond one process: several seeds as
independent jobs, and a run submitted to SLURM (one node, or torchrun across `--nodes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import typer

from dasvit.errors import UserError
from dasvit.run.config import LauncherConfig
from dasvit.run.jobs import Job, exit_code, summary
from dasvit.run.launcher import launcher_for, settings_with
from dasvit.run.requests import EngineRequest


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` or `0-4` → the seeds; one sentence for anything else."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    except ValueError:
        raise UserError(f"--seeds takes seeds like 0,1,2 or 0-4, got {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or len(seeds) > 1000:
        raise UserError(f"--seeds takes up to 1,000 distinct seeds of 0 or more, got {text!r}.")
    return seeds


def settings(request: EngineRequest, flags: dict[str, Any]) -> LauncherConfig:
    """The resolved request's config's launcher section with the command's flags on top."""
    return settings_with(request.config.launcher, **flags)


def run_jobs(jobs: list[Job], s: LauncherConfig, say: Callable[[str], None], what: str) -> int:
    """Independent jobs through the launcher `s` names; the launch's exit code, after a summary."""
    results = launcher_for(s, in_process=False).run(jobs, say, what=what, where=", ".join(str(j.run_dir) for j in jobs))
    say(summary(results))
    return exit_code(results)


def run_on_slurm(request: EngineRequest, s: LauncherConfig, nproc: int, say: Callable[[str], None]) -> int:
    """One resolved run submitted to SLURM: one task, or torchrun on `s.nodes` nodes x `nproc` ranks."""
    launcher = launcher_for(s)
    if s.nodes > 1 or nproc > 1:
        return launcher.run_distributed(request, nproc, say)
    run_dir = Path(request.resume if request.resume is not None else request.run_dir)
    return exit_code(launcher.run([Job(request.KIND, request)], say, what=request.KIND, where=str(run_dir)))


Seeds = typer.Option(
    None,
    "--seeds",
    help="Several searches, one a seed (search.seed), as independent jobs (--jobs at once, or a SLURM array with "
    "--executor slurm); each into RUN_DIR-s<seed> with --run-dir RUN_DIR (a rerun then reuses finished seeds and "
    "resumes stopped ones), else runs/<preset>-s<seed>-<time>. With --headless.",
    metavar="0,1,2|0-4",
)
Nodes = typer.Option(
    None,
    "--nodes",
    help="With --executor slurm: one job of torchrun on N nodes (--nproc ranks a node, DDP across them); the run "
    "directory must be on storage every node sees. Config: launcher.nodes.",
    metavar="N",
)

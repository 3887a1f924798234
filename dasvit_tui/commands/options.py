"""The options several commands declare alike, as `Annotated` types: one help text each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def set_option(example: str):
    """`--set KEY=VALUE`, repeatable, with an example of the command's own keys."""
    return Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            "-s",
            help=f"Override a config key, VALUE parsed as YAML; repeatable. Example: --set {example}",
            metavar="KEY=VALUE",
        ),
    ]


NewRunDir = Annotated[
    Optional[Path], typer.Option("--run-dir", "-o", help="Where the run writes. Default: runs/<preset>-<timestamp>.")
]
Resume = Annotated[Optional[Path], typer.Option("--resume", help="Continue RUN_DIR from its last completed epoch.")]
Nproc = Annotated[int, typer.Option("--nproc", min=1, help="Processes (one per GPU) under torchrun; gloo on CPU.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Print no progress lines.")]

# where independent jobs run (dasvit.run.launcher); each overrides the config's `launcher:` key of its name
Jobs = Annotated[
    Optional[int],
    typer.Option(
        "--jobs",
        "-j",
        help="Jobs at once. Local: one process each, on CUDA one GPU each (default: one a GPU), on a CPU "
        "launcher.threads threads each (default: one a core); slurm: the array's tasks running at once (default: "
        "no cap). Config: launcher.jobs.",
        metavar="N",
    ),
]
Executor = Annotated[
    Optional[str],
    typer.Option(
        "--executor",
        help='local (this machine) or slurm (a job array through submitit: pip install "dasvit\\[slurm]"). '
        "Config: launcher.executor.",
        metavar="local|slurm",
    ),
]
Partition = Annotated[Optional[str], typer.Option("--partition", help="SLURM partition. Config: launcher.partition.")]
JobTime = Annotated[
    Optional[int],
    typer.Option("--time", help="SLURM time limit of a job, minutes. Config: launcher.time.", metavar="MIN"),
]
GpusPerJob = Annotated[
    Optional[int], typer.Option("--gpus-per-job", help="SLURM GPUs of each job. Config: launcher.gpus_per_job.")
]


def launch_flags(jobs, executor, partition, time, gpus_per_job) -> dict:
    """The launcher flags a command was given (None: the config's), checked at once (one sentence each)."""
    from dasvit.run.config import LauncherConfig
    from dasvit.run.launcher import settings_with

    flags = {"jobs": jobs, "executor": executor, "partition": partition, "time": time, "gpus_per_job": gpus_per_job}
    settings_with(LauncherConfig(), **flags)
    return flags

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

"""`dasvit search` (headless or with the monitor) and `dasvit approve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from dasvit import rundir as rd
from dasvit.engine_request import SearchRequest
from dasvit.errors import RunDirError, UserError

SET_HELP = "Override a config key, VALUE parsed as YAML; repeatable. Example: --set search.pts.ratio=0.25"


def register(app: typer.Typer) -> None:
    @app.command(no_args_is_help=False)
    def search(
        preset: Optional[str] = typer.Option(
            None,
            "--preset",
            "-p",
            help="Preset name (demo, cifar10, cifar100, imagenet100) or a YAML file. Default: demo.",
        ),
        overrides: list[str] = typer.Option([], "--set", "-s", help=SET_HELP, metavar="KEY=VALUE"),
        run_dir: Optional[Path] = typer.Option(
            None, "--run-dir", "-o", help="Where the run writes. Default: runs/<preset>-<timestamp>."
        ),
        headless: bool = typer.Option(
            False,
            "--headless",
            help="Run in the foreground with progress on stdout (for scripts and clusters) instead of opening the monitor.",
        ),
        approve: Optional[str] = typer.Option(
            None,
            "--approve",
            help="Stage pruning: auto (default when headless) or manual (wait for `dasvit approve` or the monitor).",
        ),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue RUN_DIR from its last completed epoch."),
        nproc: int = typer.Option(1, "--nproc", min=1, help="Processes (one per GPU) under torchrun; gloo on CPU."),
    ) -> None:
        """Search a ViT encoder cell with DASViT; opens the monitor unless --headless.

        Progressive three-stage bi-level search with partial token selection and operation fairness.

        torch.compile: --set search.compile=auto|true|false; auto (default) compiles CUDA stages of 2000+ steps.
        Compiling costs ~200 s per stage on a 2-core CPU (demo: 871 s compiled, 83 s not); see dasvit bench --compile.

        Exit codes: 0 finished, 1 failed, 2 bad input, 130 stopped (Ctrl-C, SIGTERM or a stop request).
        A stopped or killed run continues with --resume RUN_DIR from its last completed epoch.

        Example: dasvit search --headless --preset demo --set search.pts.ratio=0.25
        """
        if approve not in (None, "auto", "manual"):
            raise UserError(f"--approve must be auto or manual, got {approve!r}.")
        request = SearchRequest(preset, list(overrides), run_dir, approve, resume)
        if not headless:
            if nproc > 1:
                raise UserError(
                    "--nproc runs the ranks in the foreground; add --headless (and watch with: dasvit tui RUN_DIR)."
                )
            from .cmd_tui import start_and_monitor

            raise typer.Exit(start_and_monitor(request))
        request = request.resolved()  # every rank writes the same run directory; a bad config stops here
        if nproc > 1:
            from .launch import run_distributed

            raise typer.Exit(run_distributed(request, nproc))
        from dasvit.search import run

        raise typer.Exit(run(request))

    @app.command()
    def approve(
        run_dir: Path = typer.Argument(..., help="The run directory of a search waiting for approval."),
        keep: Optional[str] = typer.Option(
            None,
            "--keep",
            help="JSON (or a JSON file) mapping each edge 'i->j' to the ops to keep. Default: the proposal as is.",
        ),
        stop: bool = typer.Option(False, "--stop", help="Stop the run instead of approving."),
    ) -> None:
        """Answer a pending stage-pruning proposal from a script.

        Example: dasvit approve runs/demo-20260101-120000 --keep '{"0->2": ["msa_4", "mlp_4"], ...}'
        """
        rd.require_run_dir(run_dir)  # none of its files a link
        shown = rd.printable(run_dir, newlines=False)
        pending = rd.pending_proposal(run_dir)
        if stop:
            rd.write_control(run_dir, {"type": "stop"})
            typer.echo(f"stop requested for {shown}")
            return
        if pending is None:
            raise RunDirError(f"{run_dir} has no pruning proposal waiting for approval.")
        if not rd.is_live(run_dir):
            typer.echo(f"note: no engine is running on {shown}; the approval applies when it is resumed.", err=True)
        cmd: dict = {"type": "approve", "stage": pending["stage"]}
        if keep is not None:
            parsed = _keep_argument(keep)
            proposal = pending.get("keep", {})
            if not isinstance(parsed, dict) or set(parsed) != set(proposal):
                raise UserError(f"--keep must map exactly the edges {', '.join(proposal)} to lists of ops.")
            cmd["keep"] = parsed
        rd.write_control(run_dir, cmd)
        typer.echo(f"approved stage {pending['stage']} pruning for {shown}")


def _keep_argument(keep: str) -> object:
    """--keep: JSON, or a JSON file; read as untrusted input (bounded size and depth)."""
    try:
        if keep.lstrip().startswith("{"):
            return rd.parse_json(keep.encode())
        if not Path(keep).is_file():
            raise UserError(f"--keep {keep[:60]!r} is neither JSON nor a JSON file.")
        return rd.read_json_file(Path(keep), follow=True, max_bytes=1 << 20)
    except json.JSONDecodeError as e:
        raise UserError(f"--keep is not valid JSON ({e.msg}).") from None
    except ValueError as e:
        raise UserError(f"--keep is not valid JSON ({e}).") from None
    except OSError as e:
        raise UserError(f"--keep {keep[:60]!r} cannot be read ({e.strerror or e}).") from None

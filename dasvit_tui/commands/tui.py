"""`dasvit tui`: start a search and watch it, re-attach to a run, or browse all runs.

`start_and_monitor` is also what `dasvit search` (without --headless) calls.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from dasvit.errors import UserError
from dasvit.run import layout, runlock
from dasvit.run.presets import parse_override, resolve_preset
from dasvit.run.requests import EngineRequest, request_for_preset

RUNS_ROOT = Path("runs")


def _farewell(run_dir: Path) -> None:
    if runlock.is_live(run_dir):
        print(f"The run goes on in {run_dir}; watch it again with: dasvit tui {run_dir}", file=sys.stderr)


def _run_app(app) -> int:
    app.run()
    return app.return_code or 0


def monitor(run_dir: Path) -> int:
    """Open the monitor on an existing run (live or finished). Exit code 2 if it is not a run directory."""
    from dasvit_tui.app import DasvitApp

    run_dir = layout.require_run_dir(Path(run_dir))
    code = _run_app(DasvitApp(run_dir=run_dir))
    _farewell(run_dir)
    return code


def browse(root: Path = RUNS_ROOT) -> int:
    """The runs screen over every run under `root`."""
    from dasvit_tui.app import DasvitApp

    return _run_app(DasvitApp(runs_root=Path(root)))


def start_and_monitor(request: EngineRequest, root: Path = RUNS_ROOT) -> int:
    """Start the engine a request asks for, detached, and open its monitor; return an exit code.

    A search defaults to manual approval. Closing the monitor leaves the engine running. A mistake in the
    preset or the overrides is one sentence before any run directory exists; one only the engine finds ends
    the app with the engine's sentence and code 2.
    """
    from dasvit_tui import launch
    from dasvit_tui.app import DasvitApp

    if request.preset is not None:
        resolve_preset(request.preset)
    for o in request.overrides:
        parse_override(o)
    for named in (request.run_dir, request.resume):  # before resolving, which would say "stop it first"
        _refuse_live(named)
    request = request.resolved(root)  # the whole config is checked here
    _refuse_live(request.run_dir)  # a search run's retrain/, resumed
    launched = launch.start_engine(request)
    app = DasvitApp(run_dir=launched.run_dir, process=launched.process, exit_on_user_error=True, kind=launched.kind)
    code = _run_app(app)
    if code == 2:
        _discard_if_empty(launched.run_dir)
        raise UserError(str(app.return_value or "the engine refused its input.").removeprefix("dasvit: "))
    _farewell(launched.run_dir)
    return code


def _refuse_live(run_dir: Path | None) -> None:
    if run_dir is not None and runlock.is_live(run_dir):
        raise UserError(f"{run_dir} is in use by a live engine process; watch it with: dasvit tui {run_dir}")


def _discard_if_empty(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but the log of an engine that refused to start."""
    try:
        entries = {p.name for p in run_dir.iterdir()}
    except FileNotFoundError:
        return
    if entries <= {layout.ENGINE_LOG, layout.LOCK}:
        for name in entries:
            (run_dir / name).unlink(missing_ok=True)
        run_dir.rmdir()


def tui(
    run_dir: Optional[Path] = typer.Argument(
        None, help="A run directory to watch (live or finished).", show_default=False
    ),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        "-p",
        help="Start a new run from this preset (name or YAML path) and watch it: a FocusFormer training if "
        "the preset has a focus: section (focus-demo, ...), else a DASViT search.",
    ),
    set_: List[str] = typer.Option(
        [],
        "--set",
        help="Override a config key of the new run, VALUE parsed as YAML; repeatable. Example: --set search.pts.ratio=0.25",
        metavar="KEY=VALUE",
    ),
    runs: Path = typer.Option(RUNS_ROOT, "--runs", help="Where runs live (the runs screen lists them)."),
) -> None:
    """Watch and steer searches and FocusFormer runs in a terminal UI; the engine runs detached and survives
    the terminal.

    dasvit tui --preset demo   starts a search and opens its monitor.
    dasvit tui --preset focus-demo   starts a FocusFormer training (a preset with a focus: section);
    in its monitor, b specializes it for a FLOPs budget and r there retrains the result.
    dasvit tui RUN_DIR         re-attaches to a running or finished run.
    dasvit tui                 lists every run under runs/.
    """
    if run_dir is not None and (preset is not None or set_):
        raise UserError("give either RUN_DIR to watch a run or --preset/--set to start one, not both.")
    if preset is not None or set_:
        code = start_and_monitor(request_for_preset(preset, list(set_)), root=runs)
    elif run_dir is not None:
        code = monitor(run_dir)
    else:
        code = browse(runs)
    raise typer.Exit(code)

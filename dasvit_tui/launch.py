"""Starting engine processes that outlive the terminal, engines in the foreground under torchrun, and the
command line of every child process a front starts (`cli_command`, a request's `command()`).

An engine runs as `python -m <request.MODULE> <request.argv()>` (`dasvit.run.requests`: one typed request
per engine) in a session of its own (no SIGHUP when the terminal or the SSH connection goes), with stdin
closed and stdout/stderr appended to RUN_DIR/engine.log. The front resolves the run directory first so it
can watch it at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from dasvit.errors import USER_ERROR_FILE, RunDirError, UserError
from dasvit.limits import MAX_PROCESSES
from dasvit.run import layout, runlock
from dasvit.run.jobs import start_detached
from dasvit.run.requests import EngineRequest, SearchRequest


@dataclass
class Launched:
    run_dir: Path
    process: subprocess.Popen
    kind: str | None = None  # the engine's: search, retrain, focus


def cli_command(*args: str) -> list[str]:
    """A `dasvit` command run as a child process of this front (`dasvit show`, `dasvit specialize`), with
    this Python. An engine's is its request's `command()`."""
    return [sys.executable, "-m", "dasvit_tui.cli", *args]


def start_engine(request: EngineRequest) -> Launched:
    """Start a detached engine for a resolved request (its run directory fixed); return at once.

    A detached search, watched by a person, defaults to manual approval."""
    if request.run_dir is None:
        raise ValueError("resolve the request first: its run directory must be known to watch it")
    if isinstance(request, SearchRequest) and request.approve is None:
        request = replace(request, approve="manual")
    run_dir = Path(request.run_dir).absolute()
    request = replace(request, run_dir=run_dir) if request.resume is None else request
    if runlock.is_live(run_dir):
        raise RunDirError(f"{run_dir} is in use by a live engine process; open it with: dasvit tui {run_dir}")
    layout.ensure_writable(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    layout.check_no_links(run_dir)
    proc = start_detached(request.command(), run_dir / layout.ENGINE_LOG, dict(os.environ, PYTHONUNBUFFERED="1"))
    # Reap it if it ends while this front still runs (no zombie); if the front leaves first, init does.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return Launched(run_dir, proc, request.KIND)


def run_distributed(request: EngineRequest, nproc: int) -> int:
    """Run a resolved request's engine under torchrun with `nproc` local ranks, in the foreground.

    A user mistake a rank meets (bad data, a run directory in use) is one sentence and exit 2, as without
    torchrun; torchrun itself would report it as a failed child with exit 1."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        request.MODULE,
        *request.argv(),
    ]
    if not 1 <= nproc <= MAX_PROCESSES:
        raise UserError(f"--nproc must be between 1 and {MAX_PROCESSES}, got {nproc:,}.")
    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    with tempfile.TemporaryDirectory(prefix="dasvit-ranks-") as tmp:
        said = Path(tmp) / "user-error"
        env = dict(os.environ, OMP_NUM_THREADS=threads, **{USER_ERROR_FILE: str(said)})
        try:
            rc = subprocess.call(cmd, env=env)
        except KeyboardInterrupt:
            return 130
        if rc != 0 and said.is_file():
            raise UserError(said.read_text().strip())  # the CLI prints it and exits 2
    return rc

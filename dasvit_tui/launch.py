"""Starting engine processes that outlive the terminal.

An engine runs as `python -m dasvit.search` or `python -m dasvit.retrain` in a session of its own (no
SIGHUP when the terminal or the SSH connection goes), with stdin closed and stdout/stderr appended to
RUN_DIR/engine.log. The front picks the run directory first so it can watch it at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from dasvit import rundir as rd
from dasvit.errors import RunDirError

ENGINES = {"search": "dasvit.search", "retrain": "dasvit.retrain", "focus": "dasvit.focus"}


@dataclass
class Launched:
    run_dir: Path
    process: subprocess.Popen


def engine_command(kind: str, args: list[str]) -> list[str]:
    if kind not in ENGINES:
        raise ValueError(f"unknown engine kind {kind!r}")
    return [sys.executable, "-m", ENGINES[kind], *args]


def start_engine(kind: str, run_dir: Path, args: list[str]) -> Launched:
    """Start a detached engine writing into `run_dir` (created here); return at once."""
    run_dir = Path(run_dir).absolute()
    if rd.is_live(run_dir):
        raise RunDirError(f"{run_dir} is in use by a live engine process; open it with: dasvit tui {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(run_dir / rd.ENGINE_LOG, "ab") as log:
        proc = subprocess.Popen(
            engine_command(kind, args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env,
        )
    # Reap it if it ends while this front still runs (no zombie); if the front leaves first, init does.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return Launched(run_dir, proc)


def preset_name(preset: str | None) -> str:
    """The name a run of this preset is filed under: the preset file's `preset:` key, else its stem."""
    from dasvit.config import load_config

    return load_config(preset or "demo").preset


def search_args(preset: str | None, overrides: list[str], run_dir: Path, approve: str = "manual",
                extra_args: list[str] | None = None) -> list[str]:
    args = ["--run-dir", str(run_dir)]
    if preset is not None:
        args += ["--preset", preset]
    for o in overrides:
        args += ["--set", o]
    extra = list(extra_args or [])
    if "--approve" not in extra:
        args += ["--approve", approve]
    return args + extra


def start_search(preset: str | None, overrides: list[str] = (), run_dir: Path | None = None,
                 approve: str = "manual", extra_args: list[str] | None = None,
                 root: Path = Path("runs")) -> Launched:
    """A new search; with `--resume DIR` in extra_args and no run_dir, that run goes on in its directory."""
    extra = list(extra_args or [])
    if run_dir is None and "--resume" in extra:
        i = extra.index("--resume")
        if i + 1 < len(extra):
            run_dir = Path(extra[i + 1])
    if run_dir is None:
        run_dir = rd.default_run_dir(preset_name(preset), root)
    run_dir = Path(run_dir).absolute()
    return start_engine("search", run_dir, search_args(preset, list(overrides), run_dir, approve, extra))


def start_retrain(source: Path | str, run_dir: Path | None = None, preset: str | None = None,
                  overrides: list[str] = (), extra_args: list[str] | None = None) -> Launched:
    """Retrain the genotype of a finished search (or a genotype file) into run_dir (default SOURCE/retrain)."""
    ref = str(source)
    if Path(ref).exists():  # a file or a run directory; anything else is a built-in name (vit_b16)
        ref = str(Path(ref).absolute())
    if run_dir is None:
        path = Path(ref)
        run_dir = (path if path.is_dir() else path.parent) / "retrain"
    run_dir = Path(run_dir).absolute()
    args = [ref, "--run-dir", str(run_dir)]
    if preset is not None:
        args += ["--preset", preset]
    for o in overrides:
        args += ["--set", o]
    return start_engine("retrain", run_dir, args + list(extra_args or []))

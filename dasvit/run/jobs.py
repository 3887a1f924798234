"""What every launcher shares (`dasvit.run.launcher`, `dasvit.run.slurm`): a job (an engine request whose run
directory is fixed), how it ended, and the launch's one-line summary and exit code. Imports no torch."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..fmt import clock
from . import jsonio, layout
from .requests import EngineRequest

EXIT_OK, EXIT_USER, EXIT_STOPPED = 0, 2, 130
JOB_PREFIX = "dasvit"  # every dasvit job's SLURM name starts so (`queued` finds them)


@dataclass
class Job:
    """One independent job: an engine request whose run directory is fixed."""

    name: str
    request: EngineRequest

    @property
    def run_dir(self) -> Path:
        d = self.request.resume if self.request.resume is not None else self.request.run_dir
        if d is None:
            raise ValueError(f"job {self.name}: fix its run directory first")
        return Path(d)

    @property
    def log(self) -> Path:
        return self.run_dir / layout.ENGINE_LOG


@dataclass
class JobResult:
    """How a job ended: `code` its exit code (None: it never ended by itself: cancelled, killed, lost)."""

    job: Job
    code: int | None
    state: str  # finished, failed, user error, stopped, cancelled, not started
    seconds: float = 0.0
    detail: str = ""  # where it ran, or why it did not finish (a SLURM job's id and state)
    other_log: Path | None = None  # where to look when the engine wrote no log (a SLURM task's own output)

    @property
    def ok(self) -> bool:
        return self.code == EXIT_OK

    def describe(self) -> str:
        if self.ok:
            return f"{self.job.name}: finished in {clock(self.seconds)}"
        if self.state == "not started":
            return f"{self.job.name}: not started"
        why = ", ".join(x for x in (f"exit {self.code}" if self.code is not None else "", self.detail) if x)
        said = last_line(self.job.log) if self.code == EXIT_USER else ""
        logs = [p for p in (self.job.log, self.other_log) if p is not None and p.is_file()]
        log = f", its log {logs[0]}" if logs else ""  # none when it ran in this process
        return (
            f"{self.job.name}: {self.state}{f' ({why})' if why else ''}"
            f"{': ' + said if said else ''}; its run directory {self.job.run_dir}{log}"
        )


def start_detached(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """An engine process of its own session (a Ctrl-C at the terminal is not sent to it), its output appended
    to `log` (opened not through a link), stdin closed."""
    fd = jsonio.open_run_file(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )


def last_line(path: Path, limit: int = 64 << 10) -> str:
    """The last non-empty line of a log (a user error's one sentence), printable; "" if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return jsonio.printable(lines[-1][:300], newlines=False) if lines else ""


def summary(results: list[JobResult]) -> str:
    """One line: how many finished, and each that did not."""
    bad = [r for r in results if not r.ok]
    head = f"{len(results) - len(bad)} of {len(results)} jobs finished"
    return head if not bad else head + "; " + "; ".join(r.describe() for r in bad)


def exit_code(results: list[JobResult]) -> int:
    """The launch's exit code: 0 when all finished, 130 when any was stopped, else the first failure's."""
    if all(r.ok for r in results):
        return EXIT_OK
    if any(r.state == "stopped" for r in results):
        return EXIT_STOPPED
    return next((r.code for r in results if not r.ok and r.code not in (None, EXIT_OK)), 1)


def state_of(code: int | None) -> str:
    return {EXIT_OK: "finished", EXIT_USER: "user error", EXIT_STOPPED: "stopped"}.get(code, "failed")

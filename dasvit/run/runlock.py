"""Whether an engine lives on a run: the `flock` it holds on RUN_DIR/.lock for its whole life, and its pid.
Imports no torch.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import RunDirError
from .jsonio import open_run_file, run_file_error
from .layout import LOCK


class RunLock:
    """An exclusive `flock` on RUN_DIR/.lock, held by the live engine process for its whole life.

    The kernel drops it when the process dies, however it dies, so `is_live` never sees a stale lock.
    The lock file is never opened through a link (a planted one would have its target truncated).
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = open_run_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by a live engine process; stop it first or use another run directory."
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise run_file_error(self.path, e, writing=True) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_live(run_dir: Path) -> bool:
    """True while an engine process holds the run's lock."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # none, or a link (which no engine of ours holds)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def engine_pid(run_dir: Path) -> int | None:
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            text = f.read(32)
        pid = int(text.strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if 0 < pid < 1 << 22 else None

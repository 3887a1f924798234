"""Watching a run directory: the one place in the front that reads a run while it is written.

`RunWatcher` runs in a worker thread (`run()` loops until `stop()`). Each pass it reads the new complete
lines of `events.jsonl` (a partial last line waits for the next pass; a corrupt line becomes a
`BadEventLine`), the new lines of `engine.log`, whether the engine is alive (its `flock`, or the process
this front started), and every couple of seconds the engine's CPU/RAM (psutil) or GPU use (nvidia-smi).
It posts typed messages (`dasvit_tui.messages`) and nothing else: it never touches a widget. Screens fold
them into a `dasvit_tui.state.RunState` on the UI thread.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from dasvit.errors import UserError
from dasvit.run import events, jsonio, jsonl, layout, runlock
from dasvit.run.events import RUN_START
from dasvit_tui import messages as m

POLL_SECONDS = 0.2  # new events reach the screen well within 0.5 s
STATS_SECONDS = 2.0
LOG_TAIL_BYTES = 64 * 1024
LOG_READ_BYTES = 4 << 20
MAX_LOG_LINES_PER_PASS = 500


class Target(Protocol):
    def post_message(self, message: Any) -> bool: ...


class RunWatcher:
    """Tails one run directory and posts what it finds to `target` (a screen)."""

    def __init__(
        self,
        run_dir: Path,
        target: Target,
        process: subprocess.Popen | None = None,
        interval: float = POLL_SECONDS,
        stats_interval: float = STATS_SECONDS,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.target = target
        self.process = process
        self.interval = interval
        self.stats_interval = stats_interval
        self._events = jsonl.JsonlTail(
            self.run_dir / layout.EVENTS, clean=events.clean_event
        )  # untrusted: jsonio.parse_line
        self._log_offset: int | None = None
        self._log_partial = b""
        self._live: tuple[bool, int | None] | None = None
        self._stopping = threading.Event()
        self._next_sample = 0.0
        self._proc_handle = None  # psutil.Process, kept so cpu_percent measures between samples
        self._device = ""
        self._pid: int | None = None
        self._metrics_mtime = 0.0
        self._first = True
        self._warned_partial = b""

    # -- the loop -------------------------------------------------------------------------
    def run(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Poll until `stop()` or `cancelled()` (the worker's cancellation)."""
        while not (self._stopping.is_set() or cancelled()):
            self.poll()
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()

    def poll(self) -> None:
        """One pass over the run directory."""
        posted = self._read_events() + self._read_log()
        self._check_live()
        posted += self._truncated_tail()
        now = time.monotonic()
        if now >= self._next_sample:
            self._next_sample = now + self.stats_interval
            self._sample_system()
            self._check_metrics()
        if posted or self._first:
            self.target.post_message(m.CaughtUp(first=self._first))
            self._first = False

    # -- the pieces -----------------------------------------------------------------------
    def _read_events(self) -> int:
        items = self._events.read_new()
        for kind, obj in items:
            if kind == "bad":
                self.target.post_message(m.BadEventLine(obj))
                continue
            if obj.get("type") == RUN_START:
                self._device = str(obj.get("device", ""))
                self._pid = obj.get("pid") if isinstance(obj.get("pid"), int) else self._pid
            self.target.post_message(m.RunEvent(obj))
        return len(items)

    def _read_log(self) -> int:
        path = self.run_dir / layout.ENGINE_LOG
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # none yet, or a link: nothing to show
            return 0
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return 0
            if self._log_offset is None:  # first look: only the tail of a long log
                size = f.seek(0, 2)
                self._log_offset = max(0, size - LOG_TAIL_BYTES)
                skip_first = self._log_offset > 0
            else:
                skip_first = False
            f.seek(self._log_offset)
            chunk = f.read(LOG_READ_BYTES)  # a bounded read per pass: a runaway log cannot flood memory
        if not chunk:
            return 0
        self._log_offset += len(chunk)
        lines = (self._log_partial + chunk).split(b"\n")
        self._log_partial = lines.pop()
        if len(self._log_partial) > LOG_TAIL_BYTES:  # a line without end: show what there is
            lines.append(self._log_partial)
            self._log_partial = b""
        if skip_first and lines:
            lines = lines[1:]
        text = [jsonio.printable(ln.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1], False) for ln in lines]
        text = [t for t in text if t.strip()][-MAX_LOG_LINES_PER_PASS:]
        if text:
            self.target.post_message(m.LogLines(text))
        return len(text)

    def _truncated_tail(self) -> int:
        """A last line without its newline once no engine is writing: a crash mid-write. Warn once."""
        partial = self._events.partial
        if not partial or (self._live and self._live[0]) or partial == self._warned_partial:
            return 0
        self._warned_partial = partial
        self.target.post_message(m.BadEventLine(jsonio.printable(partial[:1000].decode("utf-8", "replace"), False)))
        return 1

    def _check_live(self) -> None:
        exit_code = self.process.poll() if self.process is not None else None
        live = runlock.is_live(self.run_dir) or (self.process is not None and exit_code is None)
        if (live, exit_code) != self._live:
            self._live = (live, exit_code)
            self.target.post_message(m.EngineStatus(live, exit_code))

    def _sample_system(self) -> None:
        if not (self._live and self._live[0]):
            return
        pid = runlock.engine_pid(self.run_dir) or self._pid or (self.process.pid if self.process else None)
        if pid is None:
            return
        import psutil

        try:
            if self._proc_handle is None or self._proc_handle.pid != pid:
                self._proc_handle = psutil.Process(pid)
                self._proc_handle.cpu_percent(None)  # the first call only starts the measurement
                cpu = None
            else:
                cpu = self._proc_handle.cpu_percent(None)
            with self._proc_handle.oneshot():
                rss = self._proc_handle.memory_info().rss
                threads = self._proc_handle.num_threads()
            for child in self._proc_handle.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
            ram = psutil.virtual_memory().percent
        except psutil.Error:
            self._proc_handle = None
            return
        gpus = query_gpus() if self._device.startswith("cuda") else None
        self.target.post_message(m.SystemSample(pid, cpu, rss, threads, ram, gpus))

    def _check_metrics(self) -> None:
        path = self.run_dir / layout.METRICS
        try:
            mtime = path.stat().st_mtime
            if mtime == self._metrics_mtime:
                return
            data = jsonio.read_json_file(path)
        except (OSError, ValueError, UserError):
            return
        self._metrics_mtime = mtime
        if isinstance(data, dict):  # what the monitor shows of it are numbers: a value of another type is absent
            self.target.post_message(m.MetricsReady({k: v for k, v in data.items() if type(v) in (int, float)}))


def query_gpus() -> list[m.GpuSample] | None:
    """GPU utilisation and memory from nvidia-smi (no CUDA context in the UI process)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=3,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            gpus.append(
                m.GpuSample(
                    int(parts[0]), parts[1], float(parts[2]), int(float(parts[3])) << 20, int(float(parts[4])) << 20
                )
            )
        except (IndexError, ValueError):
            continue
    return gpus or None

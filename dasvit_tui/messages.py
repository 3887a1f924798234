"""Typed messages from the run watcher to the monitor.

The watcher (`dasvit_tui.watcher.RunWatcher`) reads the run directory in a worker thread and posts one of
these per thing it finds; widgets only render. Each event line of `events.jsonl` is one `RunEvent`,
handled in one place (`MonitorScreen.on_run_event`), which folds it into the `dasvit_tui.state.RunState`
(the one switch on the event type) and logs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


class RunEvent(Message, bubble=False):
    """One event from `events.jsonl`, as the engine wrote it (any type, known to this front or not)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event

    @property
    def type(self) -> str:
        return str(self.event.get("type"))


class BadEventLine(Message, bubble=False):
    """A line of `events.jsonl` that is not a JSON object (a crash mid-write): skipped, with a warning."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class LogLines(Message, bubble=False):
    """New complete lines of `engine.log` (the engine's stdout and stderr)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines


class EngineStatus(Message, bubble=False):
    """The engine process's liveness changed. `exit_code` is known only for a process this front started."""

    def __init__(self, live: bool, exit_code: int | None = None) -> None:
        super().__init__()
        self.live = live
        self.exit_code = exit_code


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_percent: float
    mem_used: int
    mem_total: int


class SystemSample(Message, bubble=False):
    """Resource use of the engine process (and its children), and of the GPUs when the run is on CUDA."""

    def __init__(
        self,
        pid: int | None,
        cpu_percent: float | None,
        rss: int | None,
        threads: int | None,
        ram_percent: float | None,
        gpus: list[GpuSample] | None = None,
    ) -> None:
        super().__init__()
        self.pid = pid
        self.cpu_percent = cpu_percent
        self.rss = rss
        self.threads = threads
        self.ram_percent = ram_percent
        self.gpus = gpus


class MetricsReady(Message, bubble=False):
    """`metrics.json` appeared (a finished retrain: top-1/top-5, params, FLOPs)."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        super().__init__()
        self.metrics = metrics


class CaughtUp(Message, bubble=False):
    """Everything the watcher read in one pass has been posted: a good moment to redraw once."""

    def __init__(self, first: bool) -> None:
        super().__init__()
        self.first = first

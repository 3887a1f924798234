"""Progress on stdout: a rich live bar on a terminal, plain lines every 10 s otherwise."""

from __future__ import annotations

import os
import sys
import time

from ..fmt import clock


class Progress:
    """Shows stage, epoch, step, loss, accuracy, images/s and ETA: a rich live bar on a terminal,
    plain lines otherwise (logs, pipes, a detached engine)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self._bar = None
        self._task = None
        self._last_plain = 0.0
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()

    def start_epoch(self, label: str, total_steps: int) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(label, total=total_steps, info="")
        self._label, self._total, self._t0 = label, total_steps, time.time()

    def step(self, step: int, info: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        now = time.time()
        if now - self._last_plain >= 10 or step == self._total:
            self._last_plain = now
            rate = step / max(now - self._t0, 1e-9)
            eta = (self._total - step) / rate if rate > 0 else None
            self.line(f"{self._label} step {step}/{self._total} {info} eta {clock(eta)}")

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

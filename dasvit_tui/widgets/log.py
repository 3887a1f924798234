"""The engine's output and the monitor's own warnings, newest at the bottom, wrapped to the panel's width (a
progress line's ETA and a hint at the end of a line stay readable at 80 columns)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

MAX_LINES = 2000


def line_style(line: str) -> str:
    low = line.lower()
    if "traceback" in low or "error" in low or low.startswith("dasvit:"):
        return "red"
    if "warning" in low:
        return "yellow"
    return ""


class EngineLog(RichLog):
    """The tail of `engine.log`, plus warnings and errors as they arrive."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            max_lines=MAX_LINES, wrap=True, markup=False, highlight=False, min_width=20, id=id, classes=classes
        )
        self.border_title = "log"

    def add_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(Text(line, style=line_style(line)))

    def warn(self, text: str) -> None:
        self.write(Text(f"warning: {text}", style="yellow"))

    def error(self, message: str, traceback: str = "", tail: int = 12) -> None:
        self.write(Text(f"error: {message}", style="bold red"))
        lines = [ln for ln in traceback.rstrip().splitlines() if ln.strip()][-tail:]
        for ln in lines:
            self.write(Text(ln, style="red"))

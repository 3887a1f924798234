"""The engine's output and the monitor's own warnings, newest at the bottom, wrapped to the panel's width (a
progress line's ETA and a hint at the end of a line stay readable at 80 columns)."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.events import Resize
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
        self._entries: deque[Text] = deque(maxlen=MAX_LINES)  # what was written, to wrap again on a resize
        self._wrapped_at = 0

    def add(self, text: Text) -> None:
        """Write a line that is kept, to be wrapped again when the panel is resized."""
        self._entries.append(text)
        self.write(text)

    def on_resize(self, event: Resize) -> None:
        """Wrap every line again when the panel's width changes (a resized terminal, or a layout that settled
        after the first lines arrived): a line wrapped for a wider panel is cut, and loses its end."""
        width = self.scrollable_content_region.width
        if self._size_known and width != self._wrapped_at:
            self.clear()  # RichLog's own handler runs after this one and finds nothing deferred
            for text in self._entries:
                self.write(text)
        self._wrapped_at = width
        if self.auto_scroll:  # a shorter panel keeps showing the newest lines
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def add_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.add(Text(line, style=line_style(line)))

    def warn(self, text: str) -> None:
        self.add(Text(f"warning: {text}", style="yellow"))

    def error(self, message: str, traceback: str = "", tail: int = 12) -> None:
        self.add(Text(f"error: {message}", style="bold red"))
        lines = [ln for ln in traceback.rstrip().splitlines() if ln.strip()][-tail:]
        for ln in lines:
            self.add(Text(ln, style="red"))

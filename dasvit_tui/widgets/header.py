"""The monitor's header: which run, where it runs, how far it is, and its status."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dasvit.fmt import clock
from dasvit_tui.state import RunState

STATUS_STYLE = {
    "running": ("● running", "bold green"),
    "waiting": ("◆ waiting for approval", "bold black on yellow"),
    "starting": ("○ starting", "bold cyan"),
    "loading": ("○ loading", "grey62"),
    "finished": ("✔ finished", "bold dodger_blue1"),
    "stopped": ("■ stopped", "bold grey70"),
    "failed": ("✖ failed", "bold white on red"),
    "crashed": ("✖ engine died", "bold white on red"),
    "not started": ("○ not started", "grey62"),
}


def header_text(state: RunState, now: float | None = None, width: int | None = None) -> Text:
    """Two lines: the run and where it runs (cut with … to `width`, never wrapped over the second), then
    how far it is and its status."""
    first = Text()
    first.append(state.name, style="bold")
    for part in (state.kind, state.preset, state.device):
        if part and part != "?":
            first.append(" · ")
            first.append(part)
    if width is not None and width > 1:
        first.truncate(width, overflow="ellipsis")
    out = first + Text("\n")
    last = state.last
    stages = state.stages
    if state.kind == "search" and stages:
        out.append(f"stage {min(state.stage_position() + 1, len(stages))}/{len(stages)}", style="bold")
        out.append(" · ")
    if last is not None:
        out.append(f"epoch {last.get('epoch', '?')}/{last.get('epochs', '?')}", style="bold")
        out.append(" · ")
    out.append(f"{clock(state.elapsed(now))} elapsed")
    eta = state.eta(now)
    if eta is not None:
        out.append(f" · ETA ~{clock(eta)}")
    label, style = STATUS_STYLE.get(state.status, (state.status, "bold"))
    out.append("  ")
    out.append(f" {label} ", style=style)
    return out


class RunHeader(Static):
    """Two lines; the monitor calls `show` on every batch of events and once a second for the clock."""

    def show(self, state: RunState, now: float | None = None) -> None:
        self.update(header_text(state, now, self.content_size.width or None))

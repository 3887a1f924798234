"""Resource use of the run: GPU utilisation and memory on CUDA, else CPU and RAM of the engine process."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dasvit.fmt import human_bytes
from dasvit_tui.messages import SystemSample


def describe(sample: SystemSample, width: int | None = None) -> Text:
    """GPUs (on CUDA), the engine's CPU and memory, the machine's RAM use, and the engine's pid; what does
    not fit in `width` goes, least useful first (the machine's RAM, then the GPUs' memory), never the pid."""
    parts: list[tuple[int, str, str]] = []  # (keep order: lower goes first, label, value)
    if sample.pid is not None:
        parts.append((9, "pid", str(sample.pid)))
    for g in sample.gpus or []:
        parts.append((8, f"gpu{g.index}", f"{g.util_percent:.0f}%"))
        parts.append((2, "", f"{human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}"))
    parts.append((7, "cpu", "–" if sample.cpu_percent is None else f"{sample.cpu_percent:.0f}%"))
    parts.append((5, "rss", human_bytes(sample.rss)))
    if sample.ram_percent is not None:
        parts.append((1, "ram", f"{sample.ram_percent:.0f}%"))

    def text(kept: list[tuple[int, str, str]]) -> Text:
        out = Text()
        for i, (_, label, value) in enumerate(kept):
            if i:
                out.append(" " if not label else " · ")
            if label:
                out.append(f"{label} ", style="bold")
            out.append(value)
        return out

    kept = list(parts)
    while width is not None and len(text(kept).plain) > width and len(kept) > 1:
        kept.remove(min(kept, key=lambda p: p[0]))
    return text(kept)


class SystemPanel(Static):
    """One line of resource figures, refreshed every couple of seconds while the engine lives."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("engine not running", id=id, classes=classes)
        self.border_title = "system"
        self.memory_note = ""  # the started stage's memory estimate (and measured peak), a line of its own

    def show_sample(self, sample: SystemSample) -> None:
        out = describe(sample, self.content_size.width or None)
        if self.memory_note:
            out.append("\n" + self.memory_note, style="grey62")
        self.update(out)

    def show_idle(self, text: str, peak_mem: int | None = None, pid: int | None = None) -> None:
        """No live figures (the engine ended, or is not found yet): what is known, the pid it had kept."""
        extra = f" · peak gpu mem {human_bytes(peak_mem)}" if peak_mem else ""
        extra += f" · pid {pid}" if pid is not None else ""
        note = f"\n{self.memory_note}" if self.memory_note else ""
        self.update(Text(text + extra + note, style="grey62"))

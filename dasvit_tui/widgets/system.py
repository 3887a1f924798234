"""Resource use of the run: GPU utilisation and memory on CUDA, else CPU and RAM of the engine process."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dasvit.fmt import human_bytes

from ..messages import SystemSample


def describe(sample: SystemSample) -> Text:
    out = Text()
    if sample.gpus:
        for g in sample.gpus:
            out.append(f"gpu{g.index} ", style="bold")
            out.append(f"{g.util_percent:.0f}% · {human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}  ")
    cpu = "–" if sample.cpu_percent is None else f"{sample.cpu_percent:.0f}%"
    out.append("cpu ", style="bold")
    out.append(f"{cpu} · ")
    out.append("rss ", style="bold")
    out.append(f"{human_bytes(sample.rss)}")
    if sample.ram_percent is not None:
        out.append(f" · ram {sample.ram_percent:.0f}%")
    if sample.pid is not None:
        out.append(f" · pid {sample.pid}", style="grey62")
    return out


class SystemPanel(Static):
    """One line of resource figures, refreshed every couple of seconds while the engine lives."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("engine not running", id=id, classes=classes)
        self.border_title = "system"
        self.memory_note = ""  # the started stage's memory estimate (and measured peak), a line of its own

    def show_sample(self, sample: SystemSample) -> None:
        out = describe(sample)
        if self.memory_note:
            out.append("\n" + self.memory_note, style="grey62")
        self.update(out)

    def show_idle(self, text: str, peak_mem: int | None = None) -> None:
        extra = f" · peak gpu mem {human_bytes(peak_mem)}" if peak_mem else ""
        note = f"\n{self.memory_note}" if self.memory_note else ""
        self.update(Text(text + extra + note, style="grey62"))

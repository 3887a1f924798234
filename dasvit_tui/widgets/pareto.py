"""A FocusFormer run's Pareto view, drawn in braille like the line charts: the (FLOPs, val accuracy) points
the sampler scored (this epoch bright, earlier ones dim), the budget bins as dotted vertical lines, and the
front (no other point is cheaper and at least as accurate) joined by a line with its points marked.

Also the sampler per budget as a compact table. Both only render what they are given; they read no file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from dasvit.fmt import count
from dasvit.focus.pareto import pareto_front
from dasvit_tui.state import drawable
from dasvit_tui.widgets.charts import AXIS_WIDTH, BrailleCanvas

NOW, EARLIER, FRONT, BUDGET = "bold orange1", "grey50", "green3", "grey42"


@dataclass
class ParetoData:
    now: list[tuple[float, float]] = field(default_factory=list)  # (flops, acc) scored in the last epoch
    earlier: list[tuple[float, float]] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)
    x_range: tuple[float, float] | None = None  # the space's FLOPs range, when known
    empty: str = "waiting for the sampler's first scores…"


def draw_pareto(data: ParetoData, width: int, height: int) -> Text:
    """`height` lines of `width` cells: accuracy axis on the left, the FLOPs axis labelled on the last line."""
    pts = data.now + data.earlier
    if not pts or height < 3 or width <= AXIS_WIDTH + 2:
        lines = [Text("")] * max(0, (height - 1) // 2) + [Text(data.empty, style="dim")]
        return Text("\n").join(lines)
    plot_w, plot_h = width - AXIS_WIDTH, height - 1
    xs_all = [f for f, _ in pts] + list(data.budgets)
    lo_x, hi_x = data.x_range if data.x_range else (min(xs_all), max(xs_all))
    lo_x, hi_x = min(lo_x, *xs_all), max(hi_x, *xs_all)
    accs = [a for _, a in pts]
    lo_y, hi_y = min(accs), max(accs)
    pad = max(0.02, (hi_y - lo_y) * 0.08)
    lo_y, hi_y = max(0.0, lo_y - pad), min(1.0, hi_y + pad)
    if hi_x - lo_x <= 0:
        lo_x, hi_x = lo_x * 0.9, hi_x * 1.1 + 1
    if hi_y - lo_y <= 0:
        lo_y, hi_y = lo_y - 0.05, hi_y + 0.05
    canvas = BrailleCanvas(plot_w, plot_h)
    dx, dy = plot_w * 2 - 1, plot_h * 4 - 1

    def px(f: float) -> int:
        return round((f - lo_x) / (hi_x - lo_x) * dx)

    def py(a: float) -> int:
        return round((hi_y - a) / (hi_y - lo_y) * dy)

    for b in data.budgets:
        x = px(b)
        for y in range(0, dy + 1, 2):
            canvas.dot(x, y, BUDGET)
    front = pareto_front(pts)
    for (f0, a0), (f1, a1) in zip(front, front[1:]):  # a staircase: accuracy holds until the next front point
        canvas.line(px(f0), py(a0), px(f1), py(a0), FRONT)
        canvas.line(px(f1), py(a0), px(f1), py(a1), FRONT)
    for f, a in data.earlier:
        canvas.dot(px(f), py(a), EARLIER)
    now = set(data.now)
    for f, a in data.now:
        canvas.dot(px(f), py(a), NOW)
    for f, a in front:  # a front point is a whole cell, coloured by when it was scored
        canvas.text(px(f) // 2, py(a) // 4, "◆", NOW if (f, a) in now else FRONT)
    lines = []
    for r in range(plot_h):
        label = f"{hi_y:.0%}" if r == 0 else (f"{lo_y:.0%}" if r == plot_h - 1 else "")
        lines.append(Text(label.rjust(AXIS_WIDTH - 1) + "▕", style="grey62") + canvas.row_text(r))
    ticks = list(data.budgets) or [hi_x]  # each budget under its line; the right end when there are none
    lines.append(Text(" " * AXIS_WIDTH + flops_axis(lo_x, [px(b) // 2 for b in ticks], ticks, plot_w), style="grey62"))
    return Text("\n").join(lines)


def flops_axis(lo: float, cells: list[int], ticks: list[float], width: int) -> str:
    """The FLOPs axis: the left end, then each tick labelled under its cell where it fits, then the unit."""
    axis = list(count(lo).ljust(width))
    free = len(count(lo)) + 1  # the first cell a label may start at
    unit = " FLOPs"
    for cell, b in zip(cells, ticks):
        label = count(b)
        start = min(max(cell - len(label) // 2, free), width - len(label))
        if start < free:
            continue
        axis[start : start + len(label)] = label
        free = start + len(label) + 1
    text = "".join(axis).rstrip()
    return text + unit if len(text) + len(unit) <= width else text


class ParetoPlot(Widget):
    """The scatter; give it data with `plot`."""

    DEFAULT_CSS = """
    ParetoPlot { height: 1fr; min-height: 5; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.data = ParetoData()
        self.border_title = f"Pareto [{NOW}]● now[/] [{EARLIER}]● before[/] [{FRONT}]◆ front[/] [{BUDGET}]┊ budget[/]"
        self.border_subtitle = "x: FLOPs of one image · y: validation top-1"  # the axes' names

    def plot(self, data: ParetoData) -> None:
        self.data = data
        self.refresh()

    def render(self) -> Text:
        return draw_pareto(self.data, self.content_size.width, self.content_size.height)


def sampler_table(bins: list[dict], width: int = 40) -> Text:
    """One line per budget bin: budget, mean FLOPs of its samples (and a bar of mean/budget, the bar's end is
    the budget), fraction within budget, entropy."""
    if not bins:
        return Text("waiting for the first epoch…", style="dim")
    bar_w = max(4, width - 32)
    out = Text()
    out.append(f"{'budget':>7} {'mean':>6} {'':{bar_w}} {'≤budget':>7} {'entropy':>7}", style="bold")
    for b in bins:
        budget, mean = b.get("budget_flops"), b.get("mean_flops")
        feasible, entropy = b.get("feasible"), b.get("entropy")
        out.append("\n")
        out.append(f"{count(budget) if isinstance(budget, (int, float)) else '?':>7} ")
        out.append(f"{count(mean) if isinstance(mean, (int, float)) else '?':>6} ")
        if drawable(budget) and drawable(mean) and budget > 0 and math.isfinite(mean / budget):
            ratio = mean / budget
            filled = min(bar_w - 1, round(min(ratio, 1.0) * (bar_w - 1)))
            style = "dodger_blue1" if ratio <= 1 else "red"
            out.append("█" * filled, style=style)
            out.append(" " * (bar_w - 1 - filled))
            out.append("▏" if ratio <= 1 else "▶", style="grey62" if ratio <= 1 else "red")
        else:
            out.append(" " * bar_w)
        out.append(f" {feasible:>7.0%}" if isinstance(feasible, (int, float)) else f" {'–':>7}")
        out.append(f" {entropy:>7.2f}" if isinstance(entropy, (int, float)) else f" {'–':>7}")
    return out


class SamplerTable(Static):
    """The sampler per budget bin (`sampler_table`), redrawn each epoch."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.bins: list[dict] = []
        self.border_title = "sampler per budget"

    def show(self, bins: list[dict], epoch: int | None = None) -> None:
        self.bins = bins
        self.border_title = "sampler per budget" + (f" · epoch {epoch}" if epoch is not None else "")
        self.refresh(layout=True)  # its height follows the number of bins

    def render(self) -> Text:
        return sampler_table(self.bins, self.content_size.width)

"""Line charts drawn in braille dots: several series over the epoch axis, stage boundaries as dotted
vertical lines, reference levels (fairness bounds) as dotted horizontal lines.

A `LineChart` only renders what it was given with `plot(...)`; it reads no file and folds no event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rich.text import Text
from textual.widget import Widget

from dasvit_tui.state import drawable

# braille dot bits, indexed [row 0..3][column 0..1]
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
AXIS_WIDTH = 6


@dataclass
class Series:
    """One line: a value per x position (None leaves a gap)."""

    name: str
    values: Sequence[float | None]
    style: str = "white"


@dataclass
class ChartData:
    series: list[Series] = field(default_factory=list)
    x_max: int = 1  # number of x positions the axis spans (planned epochs)
    vlines: list[tuple[int, str]] = field(default_factory=list)  # (x, label): a stage starts at x
    hlines: list[float] = field(default_factory=list)
    y_min: float | None = None
    y_max: float | None = None
    empty: str = "waiting for the first epoch…"


def _fmt(v: float) -> str:
    """An axis label in at most five characters for a positive value: 1.39, 0.012, 7.32k, 1.2M, 45e-5."""
    if v == 0:
        return "0"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale * 0.9995:  # what .3g would round up to the next unit
            return f"{v / scale:.3g}{unit}" if abs(v) < scale * 100 else f"{v / scale:.0f}{unit}"
    if abs(v) >= 0.01:
        text = f"{v:.3g}"
        return text if len(text) <= 5 else f"{v:.2g}"
    mantissa, exponent = f"{v:.1e}".split("e")  # 4.5e-04 is written 45e-5, 1.0e-05 is 1e-5
    if mantissa.endswith(".0"):
        return f"{mantissa[:-2]}e{int(exponent)}"
    text = f"{mantissa.replace('.', '')}e{int(exponent) - 1}"
    return text if len(text) <= 5 else f"{v:.0e}".replace("e-0", "e-")


class BrailleCanvas:
    """A width x height grid of braille cells (2 x 4 dots each); the last style drawn in a cell wins."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.bits = [[0] * width for _ in range(height)]
        self.styles: list[list[str | None]] = [[None] * width for _ in range(height)]
        self.chars: dict[tuple[int, int], tuple[str, str]] = {}

    def dot(self, x: int, y: int, style: str) -> None:
        """Dot at (x, y) in dot coordinates, y = 0 at the top."""
        if 0 <= x < self.width * 2 and 0 <= y < self.height * 4:
            r, c = y // 4, x // 2
            self.bits[r][c] |= _DOTS[y % 4][x % 2]
            self.styles[r][c] = style

    def line(self, x0: int, y0: int, x1: int, y1: int, style: str) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.dot(x0, y0, style)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, col: int, row: int, s: str, style: str) -> None:
        for i, ch in enumerate(s):
            if 0 <= col + i < self.width and 0 <= row < self.height:
                self.chars[(row, col + i)] = (ch, style)

    def row_text(self, r: int) -> Text:
        out = Text()
        for c in range(self.width):
            if (r, c) in self.chars:
                ch, st = self.chars[(r, c)]
                out.append(ch, st)
            elif self.bits[r][c]:
                out.append(chr(0x2800 + self.bits[r][c]), self.styles[r][c] or "")
            else:
                out.append(" ")
        return out


def draw_chart(data: ChartData, width: int, height: int) -> Text:
    """The chart as `height` lines of `width` cells, with a y axis on the left."""
    plot_w = max(1, width - AXIS_WIDTH)
    values = [v for s in data.series for v in s.values if drawable(v)]
    hlines = [h for h in data.hlines if drawable(h)]
    if not values or height < 1:
        msg = Text(data.empty, style="dim")
        lines = [Text("")] * max(0, (height - 1) // 2) + [msg]
        return Text("\n").join(lines)
    lo = data.y_min if data.y_min is not None else min(values + hlines)
    hi = data.y_max if data.y_max is not None else max(values + hlines)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    canvas = BrailleCanvas(plot_w, height)
    xs, ys = plot_w * 2 - 1, height * 4 - 1
    span = max(1, data.x_max - 1)

    def px(i: int) -> int:
        return round(min(i, span) / span * xs)

    def py(v: float) -> int:
        return round((hi - v) / (hi - lo) * ys)

    for level in hlines:
        y = py(level)
        for x in range(0, xs + 1, 2):
            canvas.dot(x, y, "grey50")
    for x_at, label in data.vlines:
        x = px(x_at) - 1 if x_at > 0 else 0
        for y in range(0, ys + 1, 2):
            canvas.dot(x, y, "grey50")
        canvas.text(x // 2, 0, label, "grey62")
    for s in data.series:
        prev = None
        for i, v in enumerate(s.values):
            if not drawable(v):
                prev = None
                continue
            pt = (px(i), py(min(max(v, lo), hi)))
            if prev is None:
                canvas.dot(*pt, s.style)
            else:
                canvas.line(*prev, *pt, s.style)
            prev = pt
    lines = []
    for r in range(height):
        if r == 0:
            label = _fmt(hi)
        elif r == height - 1:
            label = _fmt(lo)
        elif height >= 5 and r == height // 2:
            label = _fmt(hi - (hi - lo) * (r * 4 + 1.5) / ys)
        else:
            label = ""
        axis = Text(label.rjust(AXIS_WIDTH - 1)[: AXIS_WIDTH - 1] + "▕", style="grey62")
        lines.append(axis + canvas.row_text(r))
    return Text("\n").join(lines)


def legend(series: Sequence[Series]) -> str:
    """Content markup for a border title: the series names in their colours."""
    return " ".join(f"[{s.style}]━ {s.name}[/]" for s in series)


class LineChart(Widget):
    """A braille line chart; give it data with `plot`."""

    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 3; }
    """

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.data = ChartData()
        self.border_title = title

    def plot(self, data: ChartData) -> None:
        self.data = data
        if data.series:
            self.border_title = f"{self.title} {legend(data.series)}"
        self.refresh()

    def render(self) -> Text:
        return draw_chart(self.data, self.content_size.width, self.content_size.height)

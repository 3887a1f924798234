"""The operation-weight heatmap: one row per edge, one column per candidate op, the softmax weight in each
cell on a colour ramp. The strongest op of each edge is marked `▸`; an op pruned from the edge is drawn as
gone (`╌`). Columns follow the config's op list so an op keeps its column across stages.
"""

from __future__ import annotations

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from dasvit.model.opspec import edge_order, read_op

LOW = Color.from_rgb(28, 32, 44)
HIGH = Color.from_rgb(240, 170, 40)
MID = Color.from_rgb(160, 60, 120)


def ramp(w: float) -> Color:
    """Dark blue-grey at 0, magenta in the middle, amber at 1."""
    w = min(max(w, 0.0), 1.0)
    a, b, t = (LOW, MID, w * 2) if w < 0.5 else (MID, HIGH, (w - 0.5) * 2)
    ta, tb = a.get_truecolor(), b.get_truecolor()
    return Color.from_rgb(*(round(x + (y - x) * t) for x, y in zip(ta, tb)))


def short_op(op: str, width: int) -> str:
    """An op name that fits `width` cells: msa_12 → msa12 → a12, mlp_0.5 → mlp.5 → m.5."""
    if len(op) <= width:
        return op
    spec = read_op(op)
    if spec is None:  # a name the engine never writes
        return op[:width]
    kind, arg = spec.type, spec.size
    arg = arg[1:] if arg.startswith("0.") else arg
    for cand in (f"{kind}{arg}", f"{kind[:2]}{arg}", f"{kind[-1]}{arg}" if kind in ("msa",) else f"{kind[:1]}{arg}"):
        if len(cand) <= width:
            return cand
    return op[:width]


def draw_heatmap(
    weights: dict[str, dict[str, float]], ops: list[str], active: dict[str, list[str]], width: int
) -> Text:
    """The table as text for `width` cells."""
    if not weights:
        return Text("waiting for the first epoch…", style="dim")
    edges = sorted(weights, key=edge_order)
    label_w = max(len(e) for e in edges) + 1
    cell = max(3, min(7, (width - label_w) // max(1, len(ops))))
    out = Text(" " * label_w)
    for op in ops:
        out.append(short_op(op, cell - 1).rjust(cell - 1) + " ", style="bold")
    for edge in edges:
        w = weights[edge]
        keep = set(active.get(edge, w))
        ranked = sorted(w.values(), reverse=True)
        best = max(w, key=lambda o: w[o]) if ranked and (len(ranked) == 1 or ranked[0] > ranked[1] + 1e-9) else None
        out.append("\n")
        out.append(edge.rjust(label_w - 1) + " ", style="bold")
        for op in ops:
            if op not in w or op not in keep:
                out.append("╌".rjust(cell - 1) + " ", style="grey35")
                continue
            v = float(w[op])
            if not 0 <= v <= 1:  # not a softmax weight (NaN from a diverged run, a damaged event): no colour
                out.append("?".rjust(cell - 1) + " ", style="bold red")
                continue
            num = "1.0" if v >= 0.995 else f"{v:.2f}"[1:]
            if cell - 1 <= 3:
                num = "1.0" if v >= 0.995 else f"{round(v * 100):2d}"
            mark = "▸" if op == best else " "
            body = (mark + num).rjust(cell - 1)
            fg = "black" if v >= 0.5 else "white"
            out.append(body, style=Style(bgcolor=ramp(v), color=fg, bold=op == best))
            out.append(" ")
    return out


class OpHeatmap(Widget):
    """Edges x ops softmax weights of the latest epoch."""

    DEFAULT_CSS = """
    OpHeatmap { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.weights: dict[str, dict[str, float]] = {}
        self.ops: list[str] = []
        self.active: dict[str, list[str]] = {}
        self.border_title = "op weights"
        self.border_subtitle = "▸ strongest  ╌ pruned"

    def show(
        self, weights: dict[str, dict[str, float]], ops: list[str], active: dict[str, list[str]], title: str
    ) -> None:
        self.weights, self.ops, self.active = weights, ops, active
        self.border_title = title
        self.refresh(layout=True)

    def render(self) -> Text:
        return draw_heatmap(self.weights, self.ops, self.active, self.content_size.width)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 + len(self.weights) if self.weights else 1

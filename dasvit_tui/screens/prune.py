"""The stage-pruning modal: what the next stage would keep on each edge, with the weights that decided it.

The user approves as proposed, toggles ops per edge (each edge keeps at least one op), or stops the run.
The modal only decides; the monitor writes the answer to `control.jsonl`. Its result is
`PruneDecision` or None (decide later: the engine waits, `p` brings the modal back).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Label

from dasvit.model.opspec import edge_order
from dasvit_tui.widgets.heatmap import short_op


@dataclass
class PruneDecision:
    action: str  # "approve" | "stop"
    stage: object = None
    keep: dict[str, list[str]] | None = None  # None: the proposal as is


class KeepGrid(Widget, can_focus=True):
    """Edges x ops checkboxes with a cursor; each cell shows whether the op stays and its weight."""

    BINDINGS = [
        Binding("up,k", "move(-1, 0)", "Up", show=False),
        Binding("down,j", "move(1, 0)", "Down", show=False),
        Binding("left,h", "move(0, -1)", "Left", show=False),
        Binding("right,l", "move(0, 1)", "Right", show=False),
        Binding("space", "toggle", "Keep/drop"),
    ]
    DEFAULT_CSS = "KeepGrid { height: auto; width: auto; }"
    CELL = 7
    LABEL = 6

    class Refused(Message):
        """A toggle that would leave an edge without ops."""

        def __init__(self, edge: str) -> None:
            super().__init__()
            self.edge = edge

    class Changed(Message):
        pass

    def __init__(
        self, weights: dict[str, dict[str, float]], keep: dict[str, list[str]], ops: list[str], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.edges = sorted(set(weights) | set(keep), key=edge_order)
        present = {o for e in self.edges for o in list(weights.get(e, {})) + list(keep.get(e, []))}
        self.ops = [o for o in ops if o in present] + sorted(present - set(ops))
        self.weights = weights
        self.keep = {e: set(keep.get(e, [])) for e in self.edges}
        self.row, self.col = 0, 0

    def kept(self) -> dict[str, list[str]]:
        return {e: [o for o in self.ops if o in self.keep[e]] for e in self.edges}

    def _active(self, edge: str, op: str) -> bool:
        w = self.weights.get(edge)
        return op in w if w else op in self.keep[edge]

    def action_move(self, drow: int, dcol: int) -> None:
        self.row = (self.row + drow) % max(1, len(self.edges))
        self.col = (self.col + dcol) % max(1, len(self.ops))
        self.refresh()

    def action_toggle(self) -> None:
        self.toggle(self.row, self.col)

    def toggle(self, row: int, col: int) -> None:
        if not (0 <= row < len(self.edges) and 0 <= col < len(self.ops)):
            return
        edge, op = self.edges[row], self.ops[col]
        if not self._active(edge, op):
            return
        kept = self.keep[edge]
        if op in kept:
            if len(kept) == 1:
                self.post_message(self.Refused(edge))
                return
            kept.discard(op)
        else:
            kept.add(op)
        self.refresh()
        self.post_message(self.Changed())

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1 or offset.x < self.LABEL:
            return
        self.row, self.col = offset.y - 1, (offset.x - self.LABEL) // self.CELL
        self.toggle(self.row, self.col)

    def get_content_width(self, container, viewport) -> int:
        return self.LABEL + self.CELL * len(self.ops)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 + len(self.edges)

    def render(self) -> Text:
        out = Text(" " * self.LABEL)
        for op in self.ops:
            out.append(short_op(op, self.CELL - 1).center(self.CELL), style="bold")
        for r, edge in enumerate(self.edges):
            out.append("\n" + edge.rjust(self.LABEL - 1) + " ", style="bold")
            for c, op in enumerate(self.ops):
                here = self.has_focus and (r, c) == (self.row, self.col)
                if not self._active(edge, op):
                    text, style = "  ╌    ", "grey35"
                else:
                    w = self.weights.get(edge, {}).get(op)
                    num = "  " if w is None else ("1.0" if w >= 0.995 else f"{w:.2f}"[1:])
                    on = op in self.keep[edge]
                    text = f"[{'x' if on else ' '}]{num} ".ljust(self.CELL)
                    style = "bold green" if on else "grey50 strike"
                out.append(text, style=style + (" reverse" if here else ""))
        return out


class PruneScreen(ModalScreen[PruneDecision | None]):
    """Approve, edit or refuse the ops the next stage keeps."""

    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("x", "stop_run", "Stop run"),
        Binding("escape", "later", "Later"),
    ]

    def __init__(
        self,
        proposal: dict,
        weights: dict[str, dict[str, float]],
        ops: list[str],
        stages: int | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__()
        self.proposal = proposal
        self.weights = weights
        self.ops = ops
        self.stages, self.position = stages, position
        self.proposed = {e: list(v) for e, v in (proposal.get("keep") or {}).items()}

    def compose(self) -> ComposeResult:
        stage = self.proposal.get("stage")
        of = f" of {self.stages}" if self.stages else ""
        nxt = f"stage {self.position + 2}" if self.position is not None else "the next stage"
        with Vertical(id="dialog"):
            yield Label(
                f"[b]Stage {stage}{of} is done.[/b] Ops {nxt} keeps per edge (weight at the stage end):",
                id="prune-title",
            )
            yield KeepGrid(self.weights, self.proposed, self.ops, id="keep-grid")
            yield Label("", id="prune-status")
            with Horizontal(id="buttons"):
                yield Button("Approve (a)", variant="success", id="approve")
                yield Button("Stop run (x)", variant="error", id="stop")
                yield Button("Later (esc)", id="later")

    def on_mount(self) -> None:
        self.query_one(KeepGrid).focus()
        self._update_status()

    def _update_status(self) -> None:
        kept = self.query_one(KeepGrid).kept()
        n = sum(len(v) for v in kept.values())
        edited = kept != {e: [o for o in self.query_one(KeepGrid).ops if o in v] for e, v in self.proposed.items()}
        note = "[yellow]edited[/]" if edited else "as proposed"
        self.query_one("#prune-status", Label).update(
            f"{n} ops on {len(kept)} edges, {note} · space toggles, arrows move"
        )

    def on_keep_grid_changed(self, _: KeepGrid.Changed) -> None:
        self._update_status()

    def on_keep_grid_refused(self, event: KeepGrid.Refused) -> None:
        self.notify(f"edge {event.edge} must keep at least one op.", severity="warning", timeout=3, markup=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"approve": self.action_approve, "stop": self.action_stop_run, "later": self.action_later}[event.button.id]()

    def action_approve(self) -> None:
        grid = self.query_one(KeepGrid)
        kept = grid.kept()
        as_proposed = {e: [o for o in grid.ops if o in v] for e, v in self.proposed.items()}
        self.dismiss(PruneDecision("approve", self.proposal.get("stage"), None if kept == as_proposed else kept))

    def action_stop_run(self) -> None:
        self.dismiss(PruneDecision("stop", self.proposal.get("stage")))

    def action_later(self) -> None:
        self.dismiss(None)

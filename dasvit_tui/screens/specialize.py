"""`b` on a FocusFormer monitor: specialize the run's supernet for a budget, then retrain what it found.

The dialog takes a FLOPs budget (`1.4G`, `900M`) and an optional params budget and starts a
`dasvit_tui.specialize_job.SpecializeJob`: `dasvit specialize RUN --format json` in a subprocess (the UI
process never imports torch), whose progress lines on stderr it shows (the protocol is written down in
that module). The answer is read back from the genotype file the engine wrote,
RUN_DIR/specialized/<budget>.json: the per-layer table, FLOPs, params and inherited top-1. `r` retrains it
(the retrain monitor opens), `g` draws it.

The job belongs to the monitor, not to the dialog: closing the dialog leaves it running, and `b` shows it
again. A budget that does not parse, or one below the space's smallest architecture, is one
sentence in the dialog; the run goes on.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ProgressBar, Static

from dasvit.errors import BudgetError
from dasvit.fmt import check_budget, count, parse_count
from dasvit_tui.specialize_job import SAMPLES, Budget, SpecializeJob
from dasvit_tui.state import run_name


def parse_budget(flops: str, params: str, space: dict[str, Any] | None) -> Budget:
    """The budget typed in the dialog, checked against the space's smallest architecture when the run's
    `space` event is known; a `BudgetError` of one sentence otherwise."""
    flops, params = flops.strip(), params.strip()
    if not flops:
        raise BudgetError("type a FLOPs budget, like 1.4G, 900M or 420K.")
    budget = Budget(
        parse_count(flops, "the FLOPs budget"), parse_count(params, "the params budget") if params else None
    )
    budget.text = f"{flops}" + (f", {params} params" if params else "")
    space = space or {}
    check_budget(budget.flops, space.get("min_flops"), "the FLOPs budget", "FLOPs")
    check_budget(budget.params, space.get("min_params"), "the params budget", "params")
    return budget


def result_view(job: SpecializeJob) -> Group | Text:
    """What the engine wrote, read back from the genotype file: the budget and what the chosen architecture
    costs, its inherited top-1, and the per-layer sizes."""
    from dasvit.errors import UserError
    from dasvit.model.genotype import load_genotype
    from dasvit_tui.render import layer_table

    path = job.genotype_path
    try:
        genotype = load_genotype(str(path))
    except (UserError, OSError, TypeError) as e:
        return Text(f"could not read the specialized genotype: {e}", style="red")
    meta = genotype.meta

    def num(key: str, fmt=count) -> str:  # a file of the run directory: a field may be missing or of any type
        v = meta.get(key)
        return fmt(v) if type(v) in (int, float) and math.isfinite(v) else "?"

    head = Text()
    head.append(f"{num('flops_budget')} FLOPs", style="bold")
    if meta.get("params_budget") is not None:
        head.append(f", {num('params_budget')} params", style="bold")
    head.append(" → ")
    head.append(f"{num('flops')} FLOPs · {num('params')} params · ", style="bold")
    head.append(f"top-1 {num('top1_inherited', lambda v: f'{v:.2%}')}", style="bold green")
    head.append(" (inherited weights)")
    found = Text(
        f"best of {num('evaluations', str)} evaluated (found at #{num('found_at', str)}) · depth {genotype.depth}, "
        f"embed dim {genotype.embed_dim}, head width {genotype.head_dim}",
        style="grey62",
    )
    notes = [Text(f"note: {n}", style="yellow") for n in (job.result or {}).get("notes") or []]
    table = layer_table(genotype)
    table.title = None  # said on the line above
    return Group(head, found, *notes, table, Text(f"wrote {run_name(path)}", style="grey62"))


class SpecializeScreen(ModalScreen[None]):
    """Type a budget, watch `dasvit specialize` work, see the architecture; `r` retrains it, `g` draws it."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("r", "retrain", "Retrain it"),
        Binding("g", "genotype", "Draw it"),
        Binding("x", "cancel", "Cancel"),
    ]

    def __init__(self, monitor) -> None:
        super().__init__()
        self.monitor = monitor  # the FocusMonitorScreen: its run, its space, and the job it keeps
        self._shown: SpecializeJob | None = None  # the job whose answer is on screen

    @property
    def job(self) -> SpecializeJob | None:
        return self.monitor.specialize_job

    def compose(self) -> ComposeResult:
        space = self.monitor.state.space or {}
        with Vertical(id="dialog"):
            yield Label(
                Text.assemble(
                    (f"Specialize {self.monitor.state.name}", "bold"),  # a run's name: never markup
                    f": the most accurate architecture under a budget, scored with the supernet's inherited "
                    f"weights ({SAMPLES} evaluations).",
                ),
                id="spec-title",
            )
            sizes = [space.get(k) for k in ("min_flops", "max_flops", "min_params", "max_params")]
            if all(type(v) in (int, float) and math.isfinite(v) for v in sizes):
                bins = " ".join(count(b) for b in self.monitor.state.budgets)
                yield Label(
                    f"space {count(sizes[0])}–{count(sizes[1])} FLOPs, "
                    f"{count(sizes[2])}–{count(sizes[3])} params · bins {bins}",
                    classes="hint",
                    id="spec-space",
                )
            with Horizontal(id="spec-inputs"):
                yield Input(placeholder="FLOPs, like 1.4G or 420K", id="spec-flops")
                yield Input(placeholder="params (optional), like 6M", id="spec-params")
            yield Static("", id="spec-status")
            yield ProgressBar(total=SAMPLES, show_eta=False, id="spec-progress")
            with VerticalScroll(id="spec-result"):
                yield Static("", id="spec-answer")
            yield Label("", classes="hint", id="spec-keys")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "specialize"
        job = self.job
        if job is not None:
            self.query_one("#spec-flops", Input).value = count(job.budget.flops)
            if job.budget.params is not None:
                self.query_one("#spec-params", Input).value = count(job.budget.params)
        if job is not None and (job.running or job.genotype_path is not None):
            self.query_one("#spec-result").focus()  # its keys (x, r, g) work at once
        else:
            self.query_one("#spec-flops", Input).focus()
        self._say("type a budget and press enter.", "grey62")
        self.set_interval(0.2, self._poll)
        self._poll()

    # -- input --------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.job is not None and self.job.running:
            self._say("still specializing; x cancels it.", "yellow")
            return
        try:
            budget = parse_budget(
                self.query_one("#spec-flops", Input).value,
                self.query_one("#spec-params", Input).value,
                self.monitor.state.space,
            )
        except BudgetError as e:
            self._say(str(e), "bold red")
            return
        self.monitor.specialize_job = SpecializeJob(self.monitor.run_dir, budget).start()
        self._shown = None
        self.query_one("#spec-answer", Static).update("")
        self.query_one("#spec-result").focus()  # r, g and x are keys again, not letters in the input
        self._poll()

    def _say(self, text: str, style: str = "") -> None:
        self.query_one("#spec-status", Static).update(Text(text, style=style))

    # -- the job ------------------------------------------------------------------------------
    def _poll(self) -> None:
        job = self.job
        bar = self.query_one("#spec-progress", ProgressBar)
        bar.display = job is not None and (job.running or job.result is not None)
        self._keys(job)
        self.refresh_bindings()
        if job is None:
            return
        bar.update(total=job.samples, progress=job.evaluated)
        took = (job.ended or time.monotonic()) - job.started
        if job.running:
            if job.evaluated == 0:
                self._say(f"loading the supernet and the validation split… {took:.0f} s", "grey62")
            else:
                best = f" · best top-1 {job.best_top1:.2%} at {count(job.best_flops)} FLOPs" if job.best_top1 else ""
                self._say(f"evaluated {job.evaluated} of {job.samples}{best} · {took:.0f} s")
            return
        if self._shown is job:  # said once; a refused budget typed since stays on screen
            return
        self._shown = job
        if job.error is not None:
            self._say(job.error, "bold red")
            return
        self._say(f"done in {took:.1f} s.", "green")
        self.query_one("#spec-answer", Static).update(result_view(job))
        if not isinstance(self.focused, Input):
            self.query_one("#spec-result").focus()

    def _keys(self, job: SpecializeJob | None) -> None:
        typing = isinstance(self.focused, Input)
        if job is not None and job.running:
            keys = "x cancel · esc close (it goes on; b shows it again)"
        elif job is not None and job.genotype_path is not None and not typing:
            keys = "r retrain it from scratch · g draw it · tab another budget · esc close"
        else:
            keys = "enter specialize · tab next field · esc close"
        self.query_one("#spec-keys", Label).update(keys)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        job = self.job
        if action in ("retrain", "genotype"):
            return job is not None and job.genotype_path is not None
        if action == "cancel":
            return job is not None and job.running
        return True

    def action_close(self) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def action_retrain(self) -> None:
        path = self.job.genotype_path if self.job else None
        if path is not None:
            self.dismiss(None)
            self.app.start_retrain(path)

    def action_genotype(self) -> None:
        path = self.job.genotype_path if self.job else None
        if path is not None:
            from dasvit_tui.screens.genotype import GenotypeScreen

            self.app.push_screen(GenotypeScreen(path, title=f"specialized for {count(self.job.budget.flops)} FLOPs"))

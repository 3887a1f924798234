"""The monitor of a DASViT search: loss and accuracy across the stages, the skip fraction, the op weights
of every edge; `p` answers a pruning proposal (opened by itself when one arrives), `g` shows the
genotype, `r` retrains a finished search. The rest is every monitor's (`MonitorScreen`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from dasvit_tui.screens.monitor import MonitorScreen, train_val
from dasvit_tui.screens.prune import PruneDecision, PruneScreen
from dasvit_tui.state import RunState
from dasvit_tui.widgets.charts import LineChart
from dasvit_tui.widgets.heatmap import OpHeatmap
from dasvit_tui.widgets.skip import SkipChart
from dasvit_tui.widgets.system import SystemPanel


class SearchMonitorScreen(MonitorScreen):
    """Loss, accuracy and skip charts on the left; op-weight heatmap on the right."""

    KIND = "search"
    BINDINGS = [
        Binding("p", "prune", "Approve…"),
        Binding("g", "genotype", "Genotype"),
        Binding("r", "retrain", "Retrain"),
        *MonitorScreen.COMMON_BINDINGS,
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._prompted: set[tuple] = set()
        self._answered: set[tuple] = set()
        self._prune_screen: PruneScreen | None = None

    def compose_left(self) -> ComposeResult:
        yield LineChart("loss", id="loss")
        yield LineChart("accuracy", id="acc")
        yield SkipChart(id="skip")

    def compose_right(self) -> ComposeResult:
        yield OpHeatmap(id="heatmap")

    def draw(self, s: RunState) -> None:
        eps, vlines, x_max = s.epochs, s.stage_marks(), max(1, s.total_epochs)
        self.query_one("#loss", LineChart).plot(train_val(eps, "loss", x_max, vlines=vlines))
        self.query_one("#acc", LineChart).plot(train_val(eps, "acc", x_max, vlines=vlines, y_min=0.0, y_max=1.0))
        self.query_one(SkipChart).show(s)
        last = s.last or {}
        title = "op weights" + (f" · stage {s.stage_position() + 1} epoch {last.get('epoch')}" if last else "")
        self.query_one(OpHeatmap).show(last.get("arch_weights") or {}, s.ops, s.active_ops(), title)
        self.query_one(SystemPanel).memory_note = s.memory_note()

    def after_batch(self) -> None:
        self._close_stale_prompt()
        self._maybe_prompt()

    # -- steering ------------------------------------------------------------------------------
    def _proposal_key(self) -> tuple | None:
        p = self.state.proposal
        return None if p is None else (p.get("stage"), p.get("time"))

    def _close_stale_prompt(self) -> None:
        """The proposal on screen was answered elsewhere (`dasvit approve`, another monitor) or the run ended."""
        shown = self._prune_screen
        if shown is not None and shown.is_current and shown.proposal is not self.state.proposal:
            self._prune_screen = None
            self.app.pop_screen()
            self.notify("The pruning proposal was answered elsewhere or the run ended.", timeout=4)

    def _maybe_prompt(self) -> None:
        key = self._proposal_key()
        if key is None or not self.state.live or key in self._prompted or key in self._answered:
            return
        self._prompted.add(key)
        self.action_prune()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        s = self.state
        if action == "prune":
            return bool(s.live) and s.proposal is not None and self._proposal_key() not in self._answered
        if action == "retrain":
            return s.kind == "search" and s.status == "finished"
        return super().check_action(action, parameters)

    def action_prune(self) -> None:
        s = self.state
        if s.proposal is None:
            return
        weights = s.proposal.get("weights") or (s.last or {}).get("arch_weights") or {}
        self._prune_screen = PruneScreen(s.proposal, weights, s.ops, len(s.stages) or None, s.stage_position())
        self.app.push_screen(self._prune_screen, self._answer_proposal)

    def _answer_proposal(self, decision: PruneDecision | None) -> None:
        self._prune_screen = None
        if decision is None:
            self.notify("The run waits for your answer; p brings the proposal back.", timeout=4)
            return
        if decision.action == "stop":
            self.action_stop()
            return
        command = {"type": "approve", "stage": decision.stage}
        if decision.keep is not None:
            command["keep"] = decision.keep
        if not self.send_control(command):
            return
        key = self._proposal_key()
        if key is not None:
            self._answered.add(key)
        self._log().add(
            Text(f"approved stage {decision.stage}" + (" (edited)" if decision.keep else ""), style="bold green")
        )
        self.refresh_bindings()

    def action_genotype(self) -> None:
        from dasvit_tui.screens.genotype import search_genotype_screen

        s = self.state
        if s.genotype is None:
            self.notify("No genotype yet: the first one is derived when stage 1 ends.", timeout=4)
        else:
            self.app.push_screen(
                search_genotype_screen(self.run_dir, s.genotype, s.genotype_stage, final=s.status == "finished")
            )

    def action_retrain(self) -> None:
        self.app.start_retrain(self.run_dir)

"""The monitor: one run, live or finished, drawn from its run directory.

A `RunWatcher` in a worker thread posts typed messages; this screen folds each event into a `RunState` and, once
per batch (`CaughtUp`), hands the state to its widgets. Steering goes back through `control.jsonl`:
approve a pruning proposal (`p`, opened by itself when one arrives), stop (`s`). `g` shows the genotype,
`r` retrains a finished search, `q` leaves while the run goes on.
"""

from __future__ import annotations

import subprocess
from collections import deque
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from dasvit import rundir as rd
from dasvit.events import ERROR, GENOTYPE, PRUNE, PRUNE_PROPOSAL, RUN_END, RUN_START
from dasvit.fmt import human_bytes

from .. import messages as m
from ..state import RunState
from ..watcher import RunWatcher
from ..widgets.charts import ChartData, LineChart, Series
from ..widgets.header import RunHeader
from ..widgets.heatmap import OpHeatmap
from ..widgets.log import EngineLog
from ..widgets.skip import SkipChart
from ..widgets.system import SystemPanel
from .confirm import ConfirmScreen
from .prune import PruneDecision, PruneScreen

TRAIN, VAL, THIRD = "dodger_blue1", "orange1", "green3"


def event_log_line(ev: dict) -> tuple[str, str] | None:
    """(text, style) of the log line an event earns, if any (epochs are in the charts, not the log)."""
    t, stage = ev.get("type"), ev.get("stage")
    if t == PRUNE_PROPOSAL:
        return f"stage {stage} done: pruning proposal", "bold yellow"
    if t == PRUNE:
        return f"stage {stage} pruned ({ev.get('by', '?')})", "cyan"
    if t == GENOTYPE:
        return f"stage {stage}: genotype derived (g to see it)", "cyan"
    if t == RUN_END:
        style = {"finished": "bold green", "stopped": "bold"}.get(ev.get("status"), "bold red")
        return f"run {ev.get('status')}: {ev.get('message', '')}".rstrip(": "), style
    return None


def _values(epochs: list[dict], key: str) -> list[float | None]:
    return [e.get(key) if isinstance(e.get(key), (int, float)) else None for e in epochs]


class MonitorScreen(Screen):
    """Header, charts, op-weight heatmap, skip chart, system panel and log of one run."""

    BINDINGS = [
        Binding("p", "prune", "Approve…"),
        Binding("g", "genotype", "Genotype"),
        Binding("r", "retrain", "Retrain"),
        Binding("s", "stop", "Stop"),
        Binding("escape", "back", "Back"),
        Binding("q", "leave", "Leave"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        run_dir: Path,
        process: subprocess.Popen | None = None,
        exit_on_user_error: bool = False,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.state = RunState(self.run_dir)
        kwargs = {} if poll_interval is None else {"interval": poll_interval}
        self.watcher = RunWatcher(self.run_dir, self, process=process, **kwargs)
        self.exit_on_user_error = exit_on_user_error
        self.caught_up = False  # the whole history present at opening has been drawn
        self._prompted: set[tuple] = set()
        self._answered: set[tuple] = set()
        self._log_tail: deque[str] = deque(maxlen=8)
        self._failure_shown = False
        self._prune_screen: PruneScreen | None = None

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield LineChart("loss", id="loss")
                yield LineChart("accuracy", id="acc")
                yield SkipChart(id="skip")
                yield LineChart("throughput", id="speed")
            with Vertical(id="right"):
                yield Static(id="failure")
                yield OpHeatmap(id="heatmap")
                yield Static(id="retrain-info")
                yield SystemPanel(id="system")
                yield EngineLog(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#failure").border_title = "engine error"
        for box in self.query("#retrain-info"):  # a FocusFormer monitor (a subclass) has none
            box.border_title = "retrain"
        self.run_worker(self._watch, thread=True, name=f"watch {self.run_dir.name}", group="watcher")
        self.set_interval(1.0, self._tick)
        self._redraw()

    def _watch(self) -> None:
        worker = get_current_worker()
        self.watcher.run(lambda: worker.is_cancelled)

    def on_unmount(self) -> None:
        self.watcher.stop()

    # -- messages from the watcher ------------------------------------------------------------
    def on_run_event(self, msg: m.RunEvent) -> None:
        """Every event line: fold it into the state, then say in the log what a person should notice."""
        ev = msg.event
        self.state.apply(ev)
        if msg.type == RUN_START:
            self.set_class(self.state.kind == "retrain", "-retrain")
        elif msg.type == ERROR:
            self._log().error(str(ev.get("message", "")), str(ev.get("traceback") or ""))
        else:
            line = event_log_line(ev)
            if line is not None:
                self._log().write(Text(*line))

    def on_bad_event_line(self, msg: m.BadEventLine) -> None:
        self.state.bad_lines += 1
        self._log().warn(f"skipped a malformed line in events.jsonl: {msg.text[:120]!r}")

    def on_log_lines(self, msg: m.LogLines) -> None:
        self._log_tail.extend(msg.lines)
        self._log().add_lines(msg.lines)

    def on_engine_status(self, msg: m.EngineStatus) -> None:
        self.state.live, self.state.exit_code = msg.live, msg.exit_code
        if (
            not msg.live
            and msg.exit_code == 2
            and self.exit_on_user_error
            and not self.state.epochs
            and self.state.kind == "?"
        ):
            last = next((ln for ln in reversed(self._log_tail) if ln.strip()), "the engine refused its input.")
            self.app.exit(result=last, return_code=2)
            return
        self._redraw()

    def on_system_sample(self, msg: m.SystemSample) -> None:
        if self.state.live:
            self.query_one(SystemPanel).show_sample(msg)

    def on_metrics_ready(self, msg: m.MetricsReady) -> None:
        self.state.metrics = msg.metrics
        self._redraw()

    def on_caught_up(self, msg: m.CaughtUp) -> None:
        self._redraw()
        self.caught_up = True
        self._close_stale_prompt()
        self._maybe_prompt()

    # -- drawing -----------------------------------------------------------------------------
    def _log(self) -> EngineLog:
        return self.query_one(EngineLog)

    def _tick(self) -> None:
        self.query_one(RunHeader).show(self.state)

    def _redraw(self) -> None:
        s = self.state
        eps = s.epochs
        vlines = s.stage_marks()
        x_max = max(1, s.total_epochs)
        self.query_one(RunHeader).show(s)
        self.query_one("#loss", LineChart).plot(
            ChartData(
                [Series("train", _values(eps, "train_loss"), TRAIN), Series("val", _values(eps, "val_loss"), VAL)],
                x_max=x_max,
                vlines=vlines,
            )
        )
        if s.kind == "retrain":
            self.query_one("#acc", LineChart).plot(
                ChartData(
                    [Series("top-1", _values(eps, "top1"), TRAIN), Series("top-5", _values(eps, "top5"), VAL)],
                    x_max=x_max,
                    y_min=0.0,
                    y_max=1.0,
                )
            )
            self.query_one("#speed", LineChart).plot(
                ChartData([Series("images/s", _values(eps, "images_per_s"), THIRD)], x_max=x_max)
            )
            self.query_one("#retrain-info", Static).update(self._retrain_info())
        else:
            self.query_one("#acc", LineChart).plot(
                ChartData(
                    [Series("train", _values(eps, "train_acc"), TRAIN), Series("val", _values(eps, "val_acc"), VAL)],
                    x_max=x_max,
                    vlines=vlines,
                    y_min=0.0,
                    y_max=1.0,
                )
            )
            self.query_one(SkipChart).show(s)
            last = s.last or {}
            title = "op weights" + (f" · stage {s.stage_position() + 1} epoch {last.get('epoch')}" if last else "")
            self.query_one(OpHeatmap).show(last.get("arch_weights") or {}, s.ops, s.active_ops(), title)
        self.query_one(SystemPanel).memory_note = s.memory_note()
        if not s.live:
            self._show_idle()
        self._show_failure()
        self.refresh_bindings()

    def _show_idle(self) -> None:
        """The system panel of a run whose engine is not (or not yet) running: the engine's pid kept."""
        s = self.state
        peak = max((e.get("peak_mem_bytes") or 0 for e in s.epochs), default=0) or None
        text = "engine not running" if s.live is not None else "looking for the engine…"
        self.query_one(SystemPanel).show_idle(text, peak, s.pid)

    def _retrain_info(self) -> Text:
        s, last = self.state, self.state.last or {}
        out = Text()
        best = max((v for v in _values(s.epochs, "top1") if v is not None), default=None)
        rows = [
            ("top-1", last.get("top1")),
            ("best top-1", best),
            ("top-5", last.get("top5")),
            ("images/s", last.get("images_per_s")),
            ("lr", last.get("lr")),
            ("s/epoch", last.get("seconds")),
        ]
        metrics = s.metrics or {}
        rows += [(k, metrics.get(k)) for k in ("params", "flops") if k in metrics]
        for k, v in rows:
            if v is None:
                continue
            val = (
                f"{v:.2%}"
                if k in ("top-1", "best top-1", "top-5")
                else (f"{v:,.0f}" if k in ("params", "flops") else f"{v:.4g}")
            )
            out.append(f"{k:>11} ", style="bold")
            out.append(val + "\n")
        peak = last.get("peak_mem_bytes")
        if peak:
            out.append(f"{'peak mem':>11} ", style="bold")
            out.append(human_bytes(peak))
        return out if out.plain else Text("waiting for the first epoch…", style="dim")

    def _show_failure(self) -> None:
        s = self.state
        failed = s.status in ("failed", "crashed")
        self.set_class(failed, "-failed")
        if not failed:
            return
        box = self.query_one("#failure", Static)
        err = s.failure
        if err is not None:
            tb = [ln for ln in str(err.get("traceback") or "").rstrip().splitlines() if ln.strip()][-6:]
            box.update(
                Text("\n").join(
                    [Text(str(err.get("message", "")), style="bold red")] + [Text(ln, style="red") for ln in tb]
                )
            )
        else:
            code = f" (exit code {s.exit_code})" if s.exit_code is not None else ""
            lines = [
                Text(f"the engine process ended without a run_end event{code}; engine.log ends:", style="bold red")
            ] + [Text(ln, style="red") for ln in list(self._log_tail)[-5:]]
            box.update(Text("\n").join(lines))
        if not self._failure_shown and self.caught_up:
            self._failure_shown = True
            self.notify("The engine stopped with an error; the run directory is intact.", severity="error")

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
        if action == "stop":
            return bool(s.live)  # gone from the footer once the engine has ended
        return True

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
        rd.write_control(self.run_dir, command)
        key = self._proposal_key()
        if key is not None:
            self._answered.add(key)
        self._log().write(
            Text(f"approved stage {decision.stage}" + (" (edited)" if decision.keep else ""), style="bold green")
        )
        self.refresh_bindings()

    def action_stop(self) -> None:
        if not self.state.live:
            self.notify("The run is not running.", timeout=3)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                rd.write_control(self.run_dir, {"type": "stop"})
                self._log().write(Text("stop requested: the engine stops after its current step", style="bold"))

        self.app.push_screen(
            ConfirmScreen(
                f"Stop {self.state.name}? The engine stops after its current step; "
                "everything so far stays in the run directory.",
                yes="Stop",
            ),
            answer,
        )

    def action_genotype(self) -> None:
        from .genotype import GenotypeScreen, search_genotype_screen

        s = self.state
        if s.kind == "retrain":  # the genotype it trains, kept in its run directory
            self.app.push_screen(GenotypeScreen(self.run_dir, title="genotype it trains"))
        elif s.genotype is None:
            self.notify("No genotype yet: the first one is derived when stage 1 ends.", timeout=4)
        else:
            self.app.push_screen(
                search_genotype_screen(self.run_dir, s.genotype, s.genotype_stage, final=s.status == "finished")
            )

    def action_retrain(self) -> None:
        self.app.start_retrain(self.run_dir)

    def action_back(self) -> None:
        self.app.back_from(self)

    def action_leave(self) -> None:
        self.app.exit()

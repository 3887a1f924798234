"""The monitor of one run, live or finished, drawn from its run directory: what every monitor shares.

A `RunWatcher` in a worker thread posts typed messages; `MonitorScreen` folds each event into a `RunState`
and, once per batch (`CaughtUp`), redraws. It lays out the header, two columns and the footer, puts the
engine-error box, the system panel and the engine log in the right column, and has the keys every monitor
has: `s` stops the run (through `control.jsonl`), `esc` goes back, `q` leaves while the run goes on, `?`
helps. A monitor of one kind of run only adds its own widgets (`compose_left`, `compose_right`), draws
them (`draw`) and adds its own keys:

- `SearchMonitorScreen` (search_monitor.py): loss, accuracy, skip fraction, op weights; `p` approves a
  pruning proposal (opened by itself when one arrives), `g` the genotype, `r` retrains a finished search.
- `RetrainMonitorScreen` (retrain_monitor.py): loss, top-1/top-5, throughput, the retrain's figures; `g`
  the genotype it trains.
- `FocusMonitorScreen` (focus_monitor.py): the sampler's Pareto scatter and bins, loss, accuracy; `b`
  specializes the supernet for a budget, `g` the specialized architecture.

The app opens the monitor of the run's kind, the kind of its first `run_start` (`DasvitApp.monitor_for`).
A run opened before it has said its kind gets the search monitor, which makes way for the run's own
monitor when that first `run_start` comes (`DasvitApp.reopen`); a later one (a resume) changes nothing.
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

from dasvit.errors import UserError
from dasvit.run import controls, jsonio, layout
from dasvit.run.events import ERROR, GENOTYPE, PRUNE, PRUNE_PROPOSAL, RUN_END, RUN_START
from dasvit_tui import messages as m
from dasvit_tui.screens.confirm import ConfirmScreen
from dasvit_tui.state import RunState
from dasvit_tui.watcher import RunWatcher
from dasvit_tui.widgets.charts import ChartData, Series
from dasvit_tui.widgets.header import RunHeader
from dasvit_tui.widgets.log import EngineLog
from dasvit_tui.widgets.system import SystemPanel

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


def train_val(epochs: list[dict], key: str, x_max: int, **kwargs) -> ChartData:
    """The train and validation curves of `train_<key>` and `val_<key>` (loss, acc) per epoch."""
    series = [
        Series("train", _values(epochs, f"train_{key}"), TRAIN),
        Series("val", _values(epochs, f"val_{key}"), VAL),
    ]
    return ChartData(series, x_max=x_max, **kwargs)


class MonitorScreen(Screen):
    """Header, engine-error box, system panel and log of one run, around the widgets of its kind."""

    KIND = ""  # the kind of run (the `run_start` event's) a subclass draws: search, retrain, focus
    COMMON_BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("escape", "back", "Back"),
        Binding("q", "leave", "Leave"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]
    """Every monitor's keys. Textual lists inherited bindings before a class's own in the footer, so each
    monitor splices these into its BINDINGS, placed among its own keys, instead of inheriting them."""

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
        self._log_tail: deque[str] = deque(maxlen=8)
        self._failure_shown = False

    # -- what a monitor of one kind adds -------------------------------------------------------
    def compose_left(self) -> ComposeResult:
        """The left column's widgets."""
        raise NotImplementedError

    def compose_right(self) -> ComposeResult:
        """The right column's widgets, between the engine-error box and the system panel."""
        raise NotImplementedError

    def draw(self, state: RunState) -> None:
        """Draw this kind's widgets from the state (`_redraw` draws the header, the engine-error box and the
        idle system panel around it)."""
        raise NotImplementedError

    def after_batch(self) -> None:
        """After each batch of events is drawn (`CaughtUp`): what this kind does then; nothing by default."""

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield from self.compose_left()
            with Vertical(id="right"):
                yield Static(id="failure")
                yield from self.compose_right()
                yield SystemPanel(id="system")
                yield EngineLog(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#failure").border_title = "engine error"
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
        first_start = msg.type == "run_start" and self.state.kind == "?"  # the run says its kind
        self.state.apply(ev)
        if msg.type == RUN_START:
            if first_start and self.state.kind != self.KIND:  # opened before the run had said it
                self.app.reopen(self)
        elif msg.type == ERROR:
            self._log().error(str(ev.get("message", "")), str(ev.get("traceback") or ""))
        else:
            line = event_log_line(ev)
            if line is not None:
                self._log().add(Text(*line))

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
        self.after_batch()

    # -- drawing -----------------------------------------------------------------------------
    def _log(self) -> EngineLog:
        return self.query_one(EngineLog)

    def _tick(self) -> None:
        self.query_one(RunHeader).show(self.state)

    def _redraw(self) -> None:
        s = self.state
        self.query_one(RunHeader).show(s)
        self.draw(s)
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

    # -- the keys every monitor has -------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return bool(self.state.live)  # gone from the footer once the engine has ended
        return True

    def action_stop(self) -> None:
        if not self.state.live:
            self.notify("The run is not running.", timeout=3)
            return

        def answer(yes: bool | None) -> None:
            if yes and self.send_control({"type": "stop"}):
                self._log().add(Text("stop requested: the engine stops after its current step", style="bold"))

        self.app.push_screen(
            ConfirmScreen(
                f"Stop {self.state.name}? The engine stops after its current step; "
                "everything so far stays in the run directory.",
                yes="Stop",
            ),
            answer,
        )

    def send_control(self, command: dict) -> bool:
        """Append a control line (stop, approve) for the engine. A run directory that cannot take it (its
        control.jsonl a planted link or not a file, read-only, full) is that sentence in the log and a
        notification, and the monitor stays; False then."""
        try:
            controls.write_control(self.run_dir, command)
        except (UserError, OSError) as e:
            why = (
                str(e)
                if isinstance(e, UserError)
                else f"cannot write {self.run_dir / layout.CONTROL} ({e.strerror or e})."
            )
            why = jsonio.printable(f"{command.get('type')} not sent: {why}", newlines=False)
            self._log().add(Text(why, style="bold red"))
            self.notify(why, severity="error", timeout=8, markup=False)
            return False
        return True

    def action_back(self) -> None:
        self.app.back_from(self)

    def action_leave(self) -> None:
        self.app.exit()

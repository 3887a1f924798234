"""The Textual app: a runs list or a monitor, and the few things every screen may ask of it (open a run,
start a search or a retrain, show help).

Screens: `RunsScreen` (no run given); the monitor of a run's kind (`MONITORS`: the search, retrain and
FocusFormer monitors, each a `MonitorScreen` with its own widgets); `PruneScreen` and `SpecializeScreen`
(modal), `GenotypeScreen`, `HelpScreen`, `ConfirmScreen`. Engines are started by `dasvit_tui.launch` in a
worker thread, detached, so leaving the app never stops a run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from textual import work
from textual.app import App

from dasvit.errors import UserError
from dasvit.run import jsonl, layout, runlock
from dasvit.run.events import RUN_START
from dasvit.run.requests import RetrainRequest, request_for_preset, retrain_run_dir
from dasvit_tui import launch
from dasvit_tui.screens.focus_monitor import FocusMonitorScreen
from dasvit_tui.screens.help import HelpScreen
from dasvit_tui.screens.monitor import MonitorScreen
from dasvit_tui.screens.retrain_monitor import RetrainMonitorScreen
from dasvit_tui.screens.runs import RunsScreen
from dasvit_tui.screens.search_monitor import SearchMonitorScreen

MONITORS: dict[str, type[MonitorScreen]] = {
    "search": SearchMonitorScreen,
    "retrain": RetrainMonitorScreen,
    "focus": FocusMonitorScreen,
}
"""The monitor of each kind of run (the `kind` of its `run_start` event)."""


def run_kind(run_dir: Path) -> str | None:
    """The kind of a run (search, retrain, focus) from its first run_start event; None before it has one."""
    events, _ = jsonl.read_events(Path(run_dir))
    return next((e.get("kind") for e in events if e.get("type") == RUN_START), None)


class DasvitApp(App[str | None]):
    """`run_dir` opens its monitor; without one, the runs under `runs_root`. The result is the engine's
    one-sentence complaint when it refused its input (then the return code is 2)."""

    CSS_PATH = "app.tcss"
    TITLE = "dasvit"
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        run_dir: Path | None = None,
        process: subprocess.Popen | None = None,
        runs_root: Path = Path("runs"),
        exit_on_user_error: bool = False,
        poll_interval: float | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.kind = kind  # of the run to open, when the caller knows it (one it just started: no events yet)
        self.process = process
        self.runs_root = Path(runs_root)
        self.exit_on_user_error = exit_on_user_error
        self.poll_interval = poll_interval
        self.launched: list[launch.Launched] = []  # engines this app started (still running or not)

    def on_mount(self) -> None:
        if self.run_dir is not None:
            self.push_screen(self.monitor_for(self.run_dir, self.process, self.exit_on_user_error, self.kind))
        else:
            self.push_screen(RunsScreen(self.runs_root))

    def monitor_for(
        self, run_dir: Path, process=None, exit_on_user_error: bool = False, kind: str | None = None
    ) -> MonitorScreen:
        """The monitor of the run's kind; the search monitor while the run has not said it (no run_start)."""
        screen = MONITORS.get(kind or run_kind(run_dir) or "search", SearchMonitorScreen)
        return screen(run_dir, process, exit_on_user_error=exit_on_user_error, poll_interval=self.poll_interval)

    def reopen(self, monitor: MonitorScreen) -> None:
        """A monitor opened before its run said its kind makes way for the monitor of that kind (a run_start
        of a kind without a monitor of its own leaves it as it is)."""
        kind = monitor.state.kind
        if kind in MONITORS and not isinstance(monitor, MONITORS[kind]) and self.screen is monitor:
            process, exit_on_user_error = monitor.watcher.process, monitor.exit_on_user_error
            self.switch_screen(self.monitor_for(monitor.run_dir, process, exit_on_user_error, kind))

    # -- what screens ask for ----------------------------------------------------------------
    def open_run(self, run_dir: Path, process: subprocess.Popen | None = None, kind: str | None = None) -> None:
        self.push_screen(self.monitor_for(run_dir, process, kind=kind))

    def back_from(self, screen: MonitorScreen) -> None:
        """Back to the screen this monitor was opened from; the runs list if it was the first one."""
        if len(self.screen_stack) > 2:  # [default, ..., this]
            self.pop_screen()
        else:
            self.switch_screen(RunsScreen(self.runs_root))

    def start_search(self, preset: str, overrides: list[str] | None = None) -> None:
        """A new run of the engine the preset names: a FocusFormer training for a focus preset, else a search."""
        request = request_for_preset(preset, overrides or [])
        self.notify(
            f"starting a {preset} {'FocusFormer training' if request.KIND == 'focus' else 'search'}…", timeout=3
        )
        self._launch(lambda: launch.start_engine(request.resolved(self.runs_root)))

    def start_retrain(self, source: Path) -> None:
        """Retrain a finished search's cell (into SEARCH/retrain) or a specialized genotype (into
        FOCUS/specialized/<budget>-retrain); one that has its retrain already is shown instead."""
        run_dir = retrain_run_dir(str(Path(source).absolute()), self.runs_root)
        if layout.is_run_dir(run_dir) or runlock.is_live(run_dir):
            self.notify("This has a retrain already; showing it.", timeout=4)
            self.open_run(run_dir)
            return
        self.notify("starting the retrain…", timeout=3)
        self._launch(lambda: launch.start_engine(RetrainRequest(str(source)).resolved(self.runs_root)))

    @work(thread=True, group="launch")
    def _launch(self, start: Callable[[], launch.Launched]) -> None:
        try:
            launched = start()
        except UserError as e:
            self.call_from_thread(self.notify, str(e), severity="error", timeout=8, markup=False)
            return
        self.launched.append(launched)
        self.call_from_thread(self.open_run, launched.run_dir, launched.process, launched.kind)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

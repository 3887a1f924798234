"""FocusFormer runs in the TUI: the monitor at 80x24 on a recorded focus-demo run (tests/recorded_focus_run,
recorded by the real engine: `dasvit focus --headless --preset focus-demo`), the state it folds, and
starting one from a preset as `dasvit tui --preset focus-demo` and the runs screen's `n` do.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from dasvit import rundir as rd
from dasvit.engine_request import FocusRequest, SearchRequest, preset_engine, request_for_preset
from dasvit_tui import launch
from dasvit_tui.app import DasvitApp
from dasvit_tui.screens.focus_monitor import FocusMonitorScreen, pareto_data
from dasvit_tui.screens.monitor import MonitorScreen
from dasvit_tui.screens.runs import RunsScreen
from dasvit_tui.state import RunState
from dasvit_tui.widgets.pareto import pareto_front, sampler_table

RECORDED = Path(__file__).parent / "recorded_focus_run"
SIZE = (80, 24)
TINY = ["data.synthetic_train=64", "data.synthetic_val=32", "focus.epochs=2", "focus.warmup_epochs=1"]


async def until(pilot, condition, timeout: float = 20.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


@pytest.fixture
def run(tmp_path) -> Path:
    return shutil.copytree(RECORDED, tmp_path / "runs" / "focus-demo-recorded")


def recorded_events() -> list[dict]:
    events, bad = rd.read_events(RECORDED)
    assert not bad
    return events


# -- the state -------------------------------------------------------------------------------------
def test_run_state_folds_a_focus_run():
    events = recorded_events()
    state = RunState(RECORDED)
    for ev in events:
        state.apply(ev)
    epochs = [e for e in events if e["type"] == "epoch"]
    space = next(e for e in events if e["type"] == "space")
    assert state.kind == "focus" and state.status == "finished"
    assert state.space == space and state.budgets == space["budgets"]
    assert state.sampler_bins == epochs[-1]["sampler"]["bins"]
    assert len(state.sampler_bins) == len(state.budgets)
    points = state.scored_points()
    assert len(points) == sum(len(e["points"]) for e in epochs) > 0
    assert {i for i, _ in points} == set(range(len(epochs)))
    assert state.best_acc == max(e["val_acc"] for e in epochs)
    data = pareto_data(state)  # this epoch's points against the earlier ones, inside the space's range
    assert len(data.now) == len(epochs[-1]["points"]) and len(data.now) + len(data.earlier) == len(points)
    assert data.x_range == (space["min_flops"], space["max_flops"])
    assert all(space["min_flops"] <= f <= space["max_flops"] for f, _ in data.now + data.earlier)


def test_pareto_front_keeps_only_undominated_points():
    pts = [(3.0, 0.5), (1.0, 0.4), (2.0, 0.4), (2.0, 0.6), (4.0, 0.55), (5.0, 0.9)]
    assert pareto_front(pts) == [(1.0, 0.4), (2.0, 0.6), (5.0, 0.9)]


def test_sampler_table_marks_a_bin_over_budget():
    bins = [
        {"budget_flops": 1e6, "mean_flops": 1.2e6, "feasible": 0.25, "entropy": 3.0},
        {"budget_flops": 2e6, "mean_flops": 1e6, "feasible": 1.0, "entropy": 2.5},
    ]
    lines = sampler_table(bins, 40).plain.splitlines()
    assert len(lines) == 3 and all(len(ln) <= 40 for ln in lines)
    assert "1M" in lines[1] and "1.2M" in lines[1] and "▶" in lines[1] and "25%" in lines[1]
    assert "2M" in lines[2] and "▶" not in lines[2] and "100%" in lines[2]


# -- the screen ------------------------------------------------------------------------------------
async def caught_up(pilot) -> None:
    await until(pilot, lambda: getattr(pilot.app.screen, "caught_up", False))
    await pilot.pause(0.2)


def test_focus_monitor(snap_compare, run):
    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=caught_up)


def test_a_focus_run_opens_the_focus_monitor_with_what_the_sampler_did(run):
    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=SIZE) as pilot:
            await caught_up(pilot)
            screen = app.screen
            assert isinstance(screen, FocusMonitorScreen)
            table = screen.query_one("#sampler")
            assert table.content_size.height == len(screen.state.sampler_bins) + 1  # a line per bin, all shown
            sampler = table.render().plain
            hidden = [screen.check_action(a, ()) for a in ("prune", "genotype", "retrain")]
            return screen.state, sampler, hidden

    state, sampler, hidden = asyncio.run(scenario())
    assert hidden == [False, False, False]  # a search's keys are not offered
    assert state.kind == "focus" and len(state.epochs) == len([e for e in recorded_events() if e["type"] == "epoch"])
    for b in state.sampler_bins:  # every bin's fraction within budget is in the table
        assert f"{b['feasible']:.0%}" in sampler


# -- starting one ----------------------------------------------------------------------------------
def test_a_preset_with_a_focus_section_names_the_focus_engine(tmp_path):
    assert preset_engine("focus-demo") == "focus" and preset_engine("demo") == "search"
    assert isinstance(request_for_preset("focus-demo"), FocusRequest)
    assert isinstance(request_for_preset("demo", ["search.lr=0.01"]), SearchRequest)
    own = tmp_path / "mine.yaml"
    own.write_text("preset: mine\nfocus: {epochs: 2}\n")
    assert preset_engine(str(own)) == "focus"


def test_tui_preset_focus_demo_starts_a_detached_focus_run_and_draws_its_first_epoch(tmp_path):
    """What `dasvit tui --preset focus-demo` does (cmd_tui.start_and_monitor), with a tiny config."""
    request = request_for_preset("focus-demo", TINY).resolved(tmp_path / "runs")
    launched = launch.start_engine(request)

    async def scenario():
        app = DasvitApp(run_dir=launched.run_dir, process=launched.process, kind=launched.kind)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, FocusMonitorScreen))
            await until(pilot, lambda: bool(app.screen.state.epochs), timeout=60)
            return app.screen.state

    try:
        state = asyncio.run(scenario())
        assert launched.kind == "focus" and "dasvit.focus" in launched.process.args
        assert state.kind == "focus" and state.space is not None and state.sampler_bins
        assert launched.process.poll() is None or launched.process.returncode == 0  # closing the app left it
    finally:
        launched.process.terminate()
        launched.process.wait(timeout=30)


def test_n_on_the_runs_screen_starts_a_focus_run_from_a_focus_preset(tmp_path):
    from dasvit_tui.screens.runs import PresetScreen

    root = tmp_path / "runs"

    async def scenario():
        app = DasvitApp(runs_root=root)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, PresetScreen))
            options = app.screen.query_one("#presets")
            options.highlighted = [str(o.prompt) for o in options.options].index("focus-demo")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            return app.launched, type(app.screen)

    launched, screen = asyncio.run(scenario())
    try:
        (run,) = launched
        assert screen is FocusMonitorScreen and run.kind == "focus"
        assert "dasvit.focus" in run.process.args and run.run_dir.name.startswith("focus-demo-")
    finally:
        for r in launched:
            r.process.terminate()
            r.process.wait(timeout=30)


def test_the_recorded_run_is_a_real_focus_demo_run():
    events = recorded_events()
    assert events[0]["type"] == "run_start" and events[0]["kind"] == "focus"
    assert events[0]["preset"] == "focus-demo" and events[-1]["status"] == "finished"
    assert json.loads((RECORDED / "base-genotype.json").read_text())

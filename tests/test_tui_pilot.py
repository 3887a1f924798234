"""The TUI against real engine processes: a demo search driven through its first pruning approval from the
keyboard, and a run that goes on after the app has closed. Every engine started here is stopped or finished
before the test ends (no stray processes).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from dasvit.run import controls, jsonl, runlock
from dasvit.run.requests import SearchRequest
from dasvit_tui import launch
from dasvit_tui.app import DasvitApp
from dasvit_tui.screens.monitor import MonitorScreen
from dasvit_tui.screens.prune import KeepGrid, PruneScreen

# the demo preset, shrunk so that a stage takes a few seconds on 2 busy cores
SMALL = [
    "search.steps_per_epoch=2",
    "search.arch_warmup_epochs=0",
    "data.synthetic_train=256",
    "data.synthetic_val=32",
    "data.batch_size=16",
    "space.embed_dim=24",
    "search.pts.dim=8",
]
TWO_STAGES = ["search.stages=[{depth: 1, keep: 8, epochs: 1}, {depth: 1, keep: 3, epochs: 1}]"]
ONE_LONG_STAGE = ["search.stages=[{depth: 1, keep: 8, epochs: 200}]"]


def epochs_written(run: Path) -> int:
    events, _ = jsonl.read_events(run)
    return sum(e["type"] == "epoch" for e in events)


def finish(launched: launch.Launched, timeout: float = 60) -> int:
    """Stop the engine through its control file if it still runs, and reap it."""
    proc = launched.process
    if proc.poll() is None:
        controls.write_control(launched.run_dir, {"type": "stop"})
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        proc.kill()
        proc.wait()
        raise


async def until(pilot, condition, timeout: float) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


def test_pilot_approves_the_first_pruning_proposal_and_sees_the_next_stage(tmp_path):
    launched = launch.start_engine(SearchRequest("demo", SMALL + TWO_STAGES, tmp_path / "run").resolved())
    timings = {}
    try:

        async def scenario():
            t0 = time.monotonic()
            app = DasvitApp(run_dir=launched.run_dir, process=launched.process)
            async with app.run_test(size=(80, 24)) as pilot:
                monitor = app.screen
                assert isinstance(monitor, MonitorScreen)
                await until(pilot, lambda: bool(monitor.state.epochs), timeout=90)
                timings["first epoch on screen"] = time.monotonic() - t0
                assert monitor.query_one("#heatmap").weights  # the op weights are drawn too
                await until(
                    pilot, lambda: isinstance(app.screen, PruneScreen) and bool(app.screen.query(KeepGrid)), timeout=60
                )
                assert monitor.state.status == "waiting"
                await pilot.press("a")
                await until(pilot, lambda: any(e.get("stage") == 2 for e in monitor.state.epochs), timeout=90)
                assert monitor.state.stage_position() == 1
                assert [p["by"] for p in monitor.state.prunes] == ["user"]

        asyncio.run(scenario())
        assert launched.process.wait(timeout=60) == 0
    finally:
        finish(launched)
    print(timings)
    (approve,) = [json.loads(ln) for ln in (launched.run_dir / "control.jsonl").read_text().splitlines()]
    assert approve["type"] == "approve" and approve["stage"] == 1 and "keep" not in approve


@pytest.mark.slow  # starts real engines: kept out of the default suite's 5 minutes (pytest -m slow runs it)
def test_a_run_started_by_the_launcher_goes_on_after_the_app_exits(tmp_path):
    launched = launch.start_engine(SearchRequest("demo", SMALL + ONE_LONG_STAGE, tmp_path / "run").resolved())
    try:

        async def scenario():
            app = DasvitApp(run_dir=launched.run_dir, process=launched.process)
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.screen.state.kind == "search", timeout=90)  # run_start seen
                await pilot.press("q")
            assert app.return_code == 0

        asyncio.run(scenario())
        seen = epochs_written(launched.run_dir)
        deadline = time.monotonic() + 60
        while epochs_written(launched.run_dir) <= seen:
            assert time.monotonic() < deadline, "no epoch written after the app closed"
            assert launched.process.poll() is None, "the engine ended with the app"
            time.sleep(0.2)
        assert runlock.is_live(launched.run_dir)
    finally:
        code = finish(launched)
    assert code == 130
    events, _ = jsonl.read_events(launched.run_dir)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"

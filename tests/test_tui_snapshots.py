"""Whole screens at 80x24 on the recorded run (tests/recorded_run, a real demo search), compared with the
accepted SVGs under tests/__snapshots__/test_tui_snapshots/. Update them with `pytest --snapshot-update`
after looking at the report.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from dasvit.run import jsonl, runlock
from dasvit_tui.app import DasvitApp
from dasvit_tui.screens.genotype import GenotypeScreen
from dasvit_tui.screens.prune import KeepGrid, PruneScreen
from dasvit_tui.screens.runs import RunsScreen

RECORDED = Path(__file__).parent / "recorded_run"
SIZE = (80, 24)


async def until(pilot, condition, timeout: float = 20.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


@pytest.fixture
def run(tmp_path) -> Path:
    return shutil.copytree(RECORDED, tmp_path / "runs" / "demo-recorded")


async def caught_up(pilot) -> None:
    await until(pilot, lambda: getattr(pilot.app.screen, "caught_up", False))
    await pilot.pause(0.2)


def test_monitor(snap_compare, run):
    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=caught_up)


def test_prune_modal(snap_compare, run):
    events, _ = jsonl.read_events(run)
    proposal = next(e for e in events if e["type"] == "prune_proposal")

    async def open_modal(pilot) -> None:
        await caught_up(pilot)
        state = pilot.app.screen.state
        pilot.app.push_screen(PruneScreen(proposal, proposal.get("weights") or {}, state.ops, len(state.stages), 0))
        await until(pilot, lambda: bool(pilot.app.screen.query(KeepGrid)))
        await pilot.press("down", "right")  # the cursor on 1->2, second op
        await pilot.pause(0.1)

    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=open_modal)


def test_genotype_screen(snap_compare, run):
    async def open_genotype(pilot) -> None:
        await caught_up(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(pilot.app.screen, GenotypeScreen))
        await until(pilot, lambda: pilot.app.screen.stats is not None, timeout=90)  # dasvit show measured it
        await pilot.pause(0.2)

    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=open_genotype)


def test_runs_screen(snap_compare, run, monkeypatch):
    monkeypatch.chdir(run.parent.parent)
    root = Path("runs")
    waiting = root / "demo-waiting"
    shutil.copytree(run, waiting, ignore=shutil.ignore_patterns("retrain"))
    lines = (waiting / "events.jsonl").read_text().splitlines()
    cut = next(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "prune_proposal")
    (waiting / "events.jsonl").write_text("\n".join(lines[: cut + 1]) + "\n")
    lock = runlock.RunLock(waiting)  # held as its engine would hold it while waiting for an answer
    lock.acquire()
    os.utime(run, (1_700_000_000, 1_700_000_000))  # the list is newest first
    os.utime(waiting, (1_700_000_100, 1_700_000_100))

    async def loaded(pilot) -> None:
        await until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, RunsScreen)
                and pilot.app.screen.loaded
                and pilot.app.screen.query_one(DataTable).row_count == 3
            ),
        )
        await pilot.pause(1.0)  # 0.3 s left a loaded 2-core machine mid-render once in a whole suite

    try:
        assert snap_compare(DasvitApp(runs_root=root), terminal_size=SIZE, run_before=loaded)
    finally:
        lock.release()


def test_new_run_dialog(snap_compare, run, monkeypatch):
    """`n` on the runs screen: the presets and the dialog's two sentences, wrapped inside it."""
    from dasvit_tui.screens.runs import PresetScreen

    monkeypatch.chdir(run.parent.parent)
    os.utime(run, (1_700_000_000, 1_700_000_000))

    async def opened(pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, PresetScreen))
        await pilot.pause(1.0)  # 0.3 s left a loaded 2-core machine mid-render once in a whole suite

    assert snap_compare(DasvitApp(runs_root=Path("runs")), terminal_size=SIZE, run_before=opened)

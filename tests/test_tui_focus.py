"""FocusFormer runs in the TUI: the monitor at 80x24 on a recorded focus-demo run (tests/recorded_focus_run,
recorded by the real engine: `dasvit focus --headless --preset focus-demo`, and its
specialized/423K.json by `dasvit specialize` on that run), the state it folds, starting one from a preset as
`dasvit tui --preset focus-demo` and the runs screen's `n` do, leaving and re-attaching, and specializing
from the monitor's dialog (a real `dasvit specialize` on a real tiny run) then retraining what it found.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dasvit.fmt import count
from dasvit.focus.pareto import pareto_front
from dasvit.run import controls, jsonl, runlock, runstatus
from dasvit.run.requests import FocusRequest, SearchRequest, preset_engine, request_for_preset
from dasvit_tui import launch
from dasvit_tui.app import DasvitApp
from dasvit_tui.screens.focus_monitor import FocusMonitorScreen, pareto_data
from dasvit_tui.screens.genotype import GenotypeScreen
from dasvit_tui.screens.monitor import MonitorScreen
from dasvit_tui.screens.runs import RunsScreen
from dasvit_tui.screens.specialize import SpecializeScreen
from dasvit_tui.specialize_job import Budget, SpecializeJob
from dasvit_tui.state import RunState
from dasvit_tui.widgets.pareto import sampler_table

RECORDED = Path(__file__).parent / "recorded_focus_run"
ANSWER = Path(__file__).parent / "fixtures" / "specialize-423K-answer.json"  # its `dasvit specialize --format json`
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
    events, bad = jsonl.read_events(RECORDED)
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
            actions = {b.binding.action for b in screen.active_bindings.values()}
            hidden = [a in actions for a in ("prune", "retrain")]
            offered = [a in actions and screen.check_action(a, ()) for a in ("specialize", "genotype")]
            return screen.state, sampler, hidden, offered

    state, sampler, hidden, offered = asyncio.run(scenario())
    assert hidden == [False, False] and offered == [True, True]  # a search's keys are not offered, its own are
    assert state.kind == "focus" and len(state.epochs) == len([e for e in recorded_events() if e["type"] == "epoch"])
    for b in state.sampler_bins:  # every bin's fraction within budget is in the table
        assert f"{b['feasible']:.0%}" in sampler


def test_a_focus_run_that_ends_while_watched_shows_no_cpu_figure_and_keeps_the_pid(run):
    """The recorded focus run replayed live (its lock held, as its engine holds it) up to its last epoch; then
    the engine writes its run_end and exits: the system panel says so, keeps the pid and shows no CPU %
    any more, and the footer no longer offers Stop."""
    from textual.widgets._footer import FooterKey

    lines = (run / "events.jsonl").read_text().splitlines()
    (run / "events.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert json.loads(lines[-1])["type"] == "run_end"
    pid = json.loads(lines[0])["pid"]
    lock = runlock.RunLock(run)
    lock.acquire()

    def system(app) -> str:
        return str(app.screen.query_one("#system").render())

    def footer(app) -> set[str]:
        return {k.description for k in app.screen.query(FooterKey)}

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "cpu" in system(app) and "Stop" in footer(app))
            jsonl.append_jsonl(run / "events.jsonl", json.loads(lines[-1]))
            lock.release()
            await until(pilot, lambda: app.screen.state.status == "finished" and "Stop" not in footer(app))
            await pilot.pause(2.5)  # a system sample is due every 2 s while the engine lives: none comes now
            log = app.screen.query_one("#log")
            return system(app), "".join(log.render_line(y).text for y in range(log.size.height))  # rows on screen

    try:
        shown, log = asyncio.run(scenario())
    finally:
        lock.release()
    assert "engine not running" in shown and f"pid {pid}" in shown and "cpu" not in shown
    # the engine's hint at the end of its last line is wrapped at 80 columns, not cut
    hint = (run / "engine.log").read_text().splitlines()[-1].split("; ")[1]
    assert hint.startswith("specialize with: dasvit specialize ") and len(hint) > 32
    assert "".join(hint.split()) in "".join(log.split())


# -- starting one ----------------------------------------------------------------------------------
def test_a_preset_with_a_focus_section_names_the_focus_engine(tmp_path):
    assert preset_engine("focus-demo") == "focus" and preset_engine("demo") == "search"
    assert isinstance(request_for_preset("focus-demo"), FocusRequest)
    assert isinstance(request_for_preset("demo", ["search.lr=0.01"]), SearchRequest)
    own = tmp_path / "mine.yaml"
    own.write_text("preset: mine\nfocus: {epochs: 2}\n")
    assert preset_engine(str(own)) == "focus"


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


def test_the_runs_list_shows_a_specialized_retrain_below_its_focus_run(run):
    """RUN/specialized/<budget>-retrain (where `r` in the dialog trains) is listed right below RUN."""
    from dasvit_tui.screens.runs import run_label

    shutil.copytree(Path(__file__).parent / "recorded_run" / "retrain", run / "specialized" / "423K-retrain")
    root = run.parent
    listed = [runstatus.summarize(p) for p in runstatus.iter_runs(root)]
    labels = [run_label(s, root, prev) for s, prev in zip(listed, [None] + listed)]
    assert labels == [run.name, " └ specialized/423K-retrain"]
    assert [s.kind for s in listed] == ["focus", "retrain"]


# -- leaving and coming back -----------------------------------------------------------------------
def test_closing_the_tui_leaves_a_focus_run_going_and_reattaching_shows_its_history(tmp_path):
    """What `dasvit tui --preset focus-demo` does (commands.tui.start_and_monitor: a detached engine, its
    monitor drawing the first epoch), then `q`, then `dasvit tui RUN_DIR`; with a tiny config."""
    long = TINY + ["focus.epochs=200", "focus.lr_warmup_epochs=1"]
    launched = launch.start_engine(request_for_preset("focus-demo", long).resolved(tmp_path / "runs"))
    assert launched.kind == "focus" and "dasvit.focus" in launched.process.args

    async def watch(until_epochs: int) -> RunState:
        app = DasvitApp(run_dir=launched.run_dir, process=launched.process, kind=launched.kind)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, FocusMonitorScreen))
            await until(pilot, lambda: len(app.screen.state.epochs) >= until_epochs, timeout=90)
            state = app.screen.state
            assert state.kind == "focus" and state.space is not None and state.sampler_bins
            await pilot.press("q")  # leave: the run goes on
        return state

    def epochs_written() -> int:
        return sum(e["type"] == "epoch" for e in jsonl.read_events(launched.run_dir)[0])

    try:
        asyncio.run(watch(1))
        seen = epochs_written()
        deadline = time.monotonic() + 60
        while epochs_written() <= seen:
            assert launched.process.poll() is None, "the focus engine ended with the app"
            assert time.monotonic() < deadline, "no epoch written after the app closed"
            time.sleep(0.2)
        assert runlock.is_live(launched.run_dir)

        async def reattach():  # `dasvit tui RUN_DIR`: no process handle, the kind read from the run
            app = DasvitApp(run_dir=launched.run_dir)
            async with app.run_test(size=SIZE) as pilot:
                await caught_up(pilot)
                screen = app.screen
                first = (type(screen), screen.state.live, [e["epoch"] for e in screen.state.epochs])
                await pilot.press("s", "y")  # stop it from here; then nothing moves while we look
                await until(pilot, lambda: screen.state.status == "stopped", timeout=60)
                await caught_up(pilot)
                return first, screen.state, screen.query_one("#sampler").render().plain

        (screen, live, epochs), state, sampler = asyncio.run(reattach())
        assert screen is FocusMonitorScreen and live
        # the whole history, from the first epoch, not only what came after re-attaching
        assert len(epochs) >= seen + 1 and epochs == list(range(1, len(epochs) + 1))
        assert [e["epoch"] for e in state.epochs] == list(range(1, epochs_written() + 1))
        assert all(f"{b['feasible']:.0%}" in sampler for b in state.sampler_bins)
        assert launched.process.wait(timeout=60) == 130  # stopped from the re-attached monitor
    finally:
        if launched.process.poll() is None:
            controls.write_control(launched.run_dir, {"type": "stop"})
            launched.process.wait(timeout=60)


# -- specializing from the monitor -----------------------------------------------------------------
def text_of(static) -> str:
    """What a Static shows, as plain text at its width."""
    from rich.console import Console

    console = Console(width=static.content_size.width, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


def recorded_job(run: Path) -> SpecializeJob:
    """The dialog's job as `dasvit specialize RUN --flops 423K --format json` left it on the recorded run."""
    answer = json.loads(ANSWER.read_text())
    answer["genotype"] = str(run / "specialized" / "423K.json")
    return SpecializeJob(run, Budget(423_000, None, "423K"), evaluated=100, result=answer, started=0.0, ended=5.0)


async def steady_cursor(pilot) -> None:
    """A blinking input cursor would make the screenshot depend on when it is taken."""
    from textual.widgets import Input

    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause(0.2)


def test_specialize_dialog(snap_compare, run):
    async def open_dialog(pilot) -> None:
        await caught_up(pilot)
        pilot.app.screen.specialize_job = recorded_job(run)  # b again: the dialog shows the last answer
        await pilot.press("b")
        await until(pilot, lambda: isinstance(pilot.app.screen, SpecializeScreen))
        await until(pilot, lambda: pilot.app.screen._shown is not None)  # the answer is drawn
        await steady_cursor(pilot)

    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=open_dialog)


def test_specialize_dialog_refuses_a_bad_budget_in_one_sentence(snap_compare, run):
    async def type_bad_budget(pilot) -> None:
        await caught_up(pilot)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(pilot.app.screen, SpecializeScreen))
        await pilot.press("1", "0", "K", "enter")
        dialog = pilot.app.screen
        await until(pilot, lambda: "below" in str(dialog.query_one("#spec-status").render()))
        await steady_cursor(pilot)

    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=type_bad_budget)


def test_v2_genotype_screen(snap_compare, run):
    async def open_genotype(pilot) -> None:
        await caught_up(pilot)
        await pilot.press("g")  # the newest specialized architecture: specialized/423K.json
        await until(pilot, lambda: isinstance(pilot.app.screen, GenotypeScreen))
        await until(pilot, lambda: pilot.app.screen.stats is not None, timeout=90)  # dasvit show measured it
        await pilot.pause(0.2)

    assert snap_compare(DasvitApp(run_dir=run), terminal_size=SIZE, run_before=open_genotype)


@pytest.fixture(scope="module")
def tiny_focus_run(tmp_path_factory) -> Path:
    """A real focus-demo training, shrunk to seconds, with its checkpoint: something to specialize."""
    from dasvit.focus.train import main as focus_main

    run_dir = tmp_path_factory.mktemp("focus") / "runs" / "tiny-focus"
    sets = [a for o in TINY for a in ("--set", o)]
    assert focus_main(["--preset", "focus-demo", "--run-dir", str(run_dir), "--no-progress", *sets]) == 0
    return run_dir


@pytest.mark.slow  # a real specialize child process: 11 s (pytest -m slow runs it; tests/test_specialize_job.py holds the protocol)
def test_typing_a_budget_specializes_the_run_and_shows_what_the_engine_wrote(tiny_focus_run):
    space = next(e for e in jsonl.read_events(tiny_focus_run)[0] if e["type"] == "space")
    mid = count(space["budgets"][1])  # a mid budget, as typed: "423K"

    async def scenario():
        app = DasvitApp(run_dir=tiny_focus_run)
        async with app.run_test(size=SIZE) as pilot:
            await caught_up(pilot)
            monitor = app.screen
            await pilot.press("b")
            await until(pilot, lambda: isinstance(app.screen, SpecializeScreen))
            dialog = app.screen
            await pilot.press(*"1.4Q", "enter")  # not a count: one sentence, nothing started
            refused = str(dialog.query_one("#spec-status").render())
            assert monitor.specialize_job is None
            await pilot.press(*["backspace"] * 4, *"10", "enter")  # below the smallest architecture
            too_small = str(dialog.query_one("#spec-status").render())
            assert monitor.specialize_job is None
            await pilot.press(*["backspace"] * 2, *mid, "enter")
            await until(pilot, lambda: monitor.specialize_job is not None and not monitor.specialize_job.running, 120)
            await pilot.pause(0.5)
            job = monitor.specialize_job
            shown = text_of(dialog.query_one("#spec-answer"))
            status = str(dialog.query_one("#spec-status").render())
            await pilot.press("r")  # retrain it: the retrain monitor opens on a detached retrain
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen is not monitor, 60)
            return refused, too_small, job, shown, status, app.screen.run_dir, app.launched

    refused, too_small, job, shown, status, retrain_dir, launched = asyncio.run(scenario())
    try:
        assert refused == "the FLOPs budget '1.4Q' is not a count; write it like 1.4G, 900M, 6M or 1500000."
        assert too_small.startswith("the FLOPs budget 10 is below the smallest architecture of this space (")
        assert job.error is None and job.evaluated == job.samples == 100, status
        path = tiny_focus_run / "specialized" / f"{mid}.json"
        assert job.genotype_path == path and path.is_file()
        written = json.loads(path.read_text())
        meta = written["meta"]
        assert meta["flops"] <= space["budgets"][1] and meta["flops_budget"] == int(job.budget.flops)
        for figure in (count(meta["flops"]), count(meta["params"]), f"top-1 {meta['top1_inherited']:.2%}"):
            assert figure in shown, figure
        assert f"depth {written['depth']}, embed dim {written['embed_dim']}" in shown
        rows = [ln.split() for ln in shown.splitlines() if ln.split()[:1] and ln.split()[0].isdigit()]
        sized = [i for i, op in enumerate(written["layers"][0]) if op.startswith(("msa_", "mlp_"))]
        assert rows == [  # one row per layer: its number, width, then each msa's heads and each mlp's ratio
            [str(k + 1), str(written["embed_dim"])] + [layer[i].split("_", 1)[1] for i in sized]
            for k, layer in enumerate(written["layers"])
        ]
        (retrain,) = launched
        assert retrain.kind == "retrain" and retrain_dir == retrain.run_dir == path.with_name(f"{mid}-retrain")
        assert str(path) in retrain.process.args
    finally:
        for r in launched:
            r.process.terminate()
            r.process.wait(timeout=30)


def test_a_long_run_name_is_cut_and_the_status_line_stays(tmp_path):
    """A specialized architecture's retrain has a long name (FOCUS/specialized/<budget>-retrain)."""
    from dasvit_tui.widgets.header import header_text

    state = RunState(tmp_path / "focus-demo-20261121-171157" / "specialized" / "423K-retrain")
    for ev in recorded_events():
        state.apply(ev)
    first, second = header_text(state, width=60).plain.split("\n")
    assert first.startswith("focus-demo-20261121-171157/specialized/423K-retrain") and len(first) <= 60
    assert first.endswith("…") and "epoch 6/6" in second and "finished" in second


def test_the_ui_process_never_imports_torch(run):
    """The monitor, the specialize dialog showing an answer and the v2 genotype screen, driven in a fresh
    interpreter: torch is for the engine processes (dasvit specialize, dasvit show), not the UI."""
    script = f"""
import asyncio, json, sys, time
from pathlib import Path
from dasvit_tui.app import DasvitApp
from dasvit_tui.screens.genotype import GenotypeScreen
from dasvit_tui.screens.specialize import SpecializeScreen
from dasvit_tui.specialize_job import Budget, SpecializeJob

run = Path({str(run)!r})
answer = json.loads(Path({str(ANSWER)!r}).read_text())
answer["genotype"] = str(run / "specialized" / "423K.json")

async def until(pilot, cond):
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < 60
        await pilot.pause(0.05)

async def main():
    app = DasvitApp(run_dir=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "caught_up", False))
        monitor = app.screen
        monitor.specialize_job = SpecializeJob(run, Budget(423_000), evaluated=100, result=answer, ended=1.0)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, SpecializeScreen) and app.screen._shown is not None)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GenotypeScreen) and app.screen.stats is not None)
    print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"

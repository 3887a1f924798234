"""The monitor driven by a pilot on recorded run directories: steering writes control lines, failures show,
bad lines are skipped, new events show within half a second. A run is "live" here because the test holds
its engine lock, exactly as an engine would; nothing of the UI is replaced.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.app import App

from dasvit.run import jsonl, runlock
from dasvit.run.events import make_event
from dasvit_tui.app import DasvitApp
from dasvit_tui.screens.confirm import ConfirmScreen
from dasvit_tui.screens.help import HelpScreen
from dasvit_tui.screens.monitor import MonitorScreen
from dasvit_tui.screens.prune import KeepGrid, PruneDecision, PruneScreen
from dasvit_tui.screens.runs import RunsScreen
from dasvit_tui.widgets.log import EngineLog

RECORDED = Path(__file__).parent / "recorded_run"


async def until(pilot, condition, timeout: float = 10.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


def recorded_events() -> list[str]:
    return (RECORDED / "events.jsonl").read_text().splitlines()


def waiting_run(tmp_path: Path) -> Path:
    """The recorded run cut just after its first pruning proposal: an engine waiting for an answer."""
    run = shutil.copytree(RECORDED, tmp_path / "waiting")
    lines = recorded_events()
    first = next(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "prune_proposal")
    (run / "events.jsonl").write_text("\n".join(lines[: first + 1]) + "\n")
    (run / "control.jsonl").write_text("")
    return run


def control_lines(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "control.jsonl").read_text().splitlines() if ln.strip()]


def log_text(app: App) -> str:
    """The log's text, its lines wrapped to the panel joined again (whitespace collapsed)."""
    return " ".join(" ".join(strip.text for strip in app.screen.query_one(EngineLog).lines).split())


def test_proposal_opens_the_modal_and_an_edited_approval_goes_to_control(tmp_path):
    run = waiting_run(tmp_path)
    proposal = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    lock = runlock.RunLock(run)
    lock.acquire()

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PruneScreen) and bool(app.screen.query(KeepGrid)))
            grid = app.screen.query_one(KeepGrid)
            edge = grid.edges[0]
            dropped = grid.kept()[edge][-1]
            await pilot.press(*["right"] * grid.ops.index(dropped), "space")
            kept = grid.kept()
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            return edge, dropped, kept

    try:
        edge, dropped, kept = asyncio.run(scenario())
    finally:
        lock.release()
    (cmd,) = control_lines(run)
    assert cmd["type"] == "approve" and cmd["stage"] == proposal["stage"] and cmd["keep"] == kept
    assert set(kept[edge]) == set(proposal["keep"][edge]) - {dropped}
    assert {e: set(v) for e, v in kept.items() if e != edge} == {
        e: set(v) for e, v in proposal["keep"].items() if e != edge
    }


def test_each_edge_keeps_at_least_one_op():
    weights = {"0->2": {"msa_4": 0.7, "mlp_4": 0.3}, "1->2": {"skip": 0.6, "mlp_4": 0.4}}
    proposal = {"stage": 1, "keep": {"0->2": ["msa_4"], "1->2": ["skip"]}}
    results: list = []

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(PruneScreen(proposal, weights, ["skip", "msa_4", "mlp_4"]), results.append)

    async def scenario():
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PruneScreen) and bool(app.screen.query(KeepGrid)))
            grid = app.screen.query_one(KeepGrid)
            assert grid.ops == ["skip", "msa_4", "mlp_4"]
            await pilot.press("right", "space")  # 0->2 msa_4: its only op, refused
            assert grid.kept()["0->2"] == ["msa_4"]
            await pilot.press("right", "space", "left", "space")  # add mlp_4, then msa_4 may go
            assert grid.kept()["0->2"] == ["mlp_4"]
            msa_4 = (KeepGrid.LABEL + 1 * KeepGrid.CELL + 1, 2)  # the mouse, on row 1->2
            mlp_4 = (KeepGrid.LABEL + 2 * KeepGrid.CELL + 1, 2)
            await pilot.click(KeepGrid, offset=msa_4)  # not an op of 1->2: nothing to toggle
            await pilot.click(KeepGrid, offset=mlp_4)
            assert grid.kept()["1->2"] == ["skip", "mlp_4"]
            await pilot.click(KeepGrid, offset=mlp_4)
            await pilot.press("a")
            await until(pilot, lambda: bool(results))

    asyncio.run(scenario())
    assert results == [PruneDecision("approve", 1, {"0->2": ["mlp_4"], "1->2": ["skip"]})]


def test_stop_asks_first_then_writes_a_stop_line(tmp_path):
    run = waiting_run(tmp_path)
    lock = runlock.RunLock(run)
    lock.acquire()

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PruneScreen) and bool(app.screen.query(KeepGrid)))
            await pilot.press("escape")  # decide later: the run waits
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            assert control_lines(run) == []
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: bool(control_lines(run)))

    try:
        asyncio.run(scenario())
    finally:
        lock.release()
    assert [c["type"] for c in control_lines(run)] == ["stop"]


def on_screen(widget) -> str:
    """The text of a widget's rows as drawn (scrolled, wrapped or cut), without whitespace."""
    return "".join("".join(widget.render_line(y).text for y in range(widget.size.height)).split())


def footer_keys(app: App) -> dict[str, bool]:
    """What the footer offers: description -> enabled."""
    from textual.widgets._footer import FooterKey

    return {k.description: not k.disabled for k in app.screen.query(FooterKey)}


def test_a_search_that_finishes_while_watched_offers_retrain_and_no_longer_stop(tmp_path):
    """The recorded run replayed live (its lock held as its engine holds it) up to its last epoch; then the
    engine writes its run_end and exits. The footer drops `s Stop` and offers `r Retrain`, as re-attaching
    to the finished run does; the system panel keeps the engine's pid and shows no CPU figure any more."""
    run = shutil.copytree(RECORDED, tmp_path / "live")
    lines = recorded_events()
    end = next(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "run_end")
    (run / "events.jsonl").write_text("\n".join(lines[:end]) + "\n")
    pid = json.loads(lines[0])["pid"]
    log_lines = (run / "engine.log").read_text().splitlines(keepends=True)
    cut = max(i for i, ln in enumerate(log_lines) if " eta " in ln) + 1  # the log ends with a progress line
    (run / "engine.log").write_text("".join(log_lines[:cut]))
    lock = runlock.RunLock(run)
    lock.acquire()

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await until(pilot, lambda: screen.caught_up and "cpu" in str(screen.query_one("#system").render()))
            assert screen.state.status == "running"
            # the log wraps the engine's lines at 80 columns: the progress line is on screen whole, ETA included
            log = screen.query_one(EngineLog)
            progress = log_lines[cut - 1]
            assert len(progress) > log.size.width and progress.split()[-2:] == ["eta", "00:00"]
            await until(pilot, lambda: "".join(progress.split()) in on_screen(log))
            with open(run / "engine.log", "a") as f:
                f.write("".join(log_lines[cut:]))
            await until(pilot, lambda: "Stop" in footer_keys(app))
            keys = footer_keys(app)
            assert keys.get("Stop") is True and "Retrain" not in keys
            jsonl.append_jsonl(run / "events.jsonl", json.loads(lines[end]))
            lock.release()  # the engine exits
            await until(pilot, lambda: screen.state.status == "finished" and screen.state.live is False)
            await until(pilot, lambda: "Retrain" in footer_keys(app))
            await pilot.pause(0.2)
            keys = footer_keys(app)
            assert keys.get("Retrain") is True and "Stop" not in keys
            system = str(screen.query_one("#system").render())
            assert f"pid {pid}" in system and "cpu" not in system and "engine not running" in system
        async with DasvitApp(run_dir=run).run_test(size=(80, 24)) as pilot:  # re-attached: the same
            await until(pilot, lambda: pilot.app.screen.caught_up and "Retrain" in footer_keys(pilot.app))
            await pilot.pause(0.2)
            assert footer_keys(pilot.app) == keys

    try:
        asyncio.run(scenario())
    finally:
        lock.release()


def test_the_log_wraps_its_lines_again_when_the_terminal_is_resized(tmp_path):
    """Lines wrapped for a wide panel would be cut in a narrow one and lose their end (the ETA): the log
    wraps every line again at the new width, in both directions."""
    run = shutil.copytree(RECORDED, tmp_path / "run")
    last = (run / "engine.log").read_text().splitlines()[-1]

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(160, 40)) as pilot:
            log = app.screen.query_one(EngineLog)
            await until(pilot, lambda: app.screen.caught_up and "".join(last.split()) in on_screen(log))
            wide = max(strip.cell_length for strip in log.lines)
            for size in ((80, 24), (60, 20), (140, 30)):
                await pilot.resize_terminal(*size)
                await until(pilot, lambda: "".join(last.split()) in on_screen(log))
                assert max(strip.cell_length for strip in log.lines) <= log.scrollable_content_region.width
            return wide

    wide = asyncio.run(scenario())
    assert wide > 60  # the first panel was wider than the narrowest one tried


def test_engine_death_shows_the_error_and_traceback_and_stays_open(tmp_path):
    run = shutil.copytree(RECORDED, tmp_path / "crashed")
    lines = [ln for ln in recorded_events() if '"type":"run_end"' not in ln][:8]
    tb = 'Traceback (most recent call last):\n  File "dasvit/search.py", line 1\nRuntimeError: CUDA out of memory\n'
    lines.append(json.dumps(make_event("error", message="RuntimeError: CUDA out of memory", traceback=tb)))
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")
    before = sorted((p.name, p.stat().st_size) for p in run.iterdir())

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.screen.caught_up)
            await pilot.pause(0.3)
            screen = app.screen
            assert screen.state.status == "crashed" and screen.has_class("-failed")
            failure = str(screen.query_one("#failure").render())
            assert "RuntimeError: CUDA out of memory" in failure and "search.py" in failure
            assert "RuntimeError: CUDA out of memory" in log_text(app)
            assert isinstance(app.screen, MonitorScreen)

    asyncio.run(scenario())
    assert sorted((p.name, p.stat().st_size) for p in run.iterdir()) == before  # nothing rewritten


def test_a_corrupt_events_line_is_skipped_with_a_warning(tmp_path):
    run = shutil.copytree(RECORDED, tmp_path / "corrupt")
    lines = recorded_events()
    lines.insert(3, '{"v":1,"type":"epoch","stage":1,"ep')
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.screen.caught_up)
            await pilot.pause(0.3)
            assert app.screen.state.bad_lines == 1
            assert app.screen.state.status == "finished" and len(app.screen.state.epochs) == 9
            assert "skipped a malformed line in events.jsonl" in log_text(app)

    asyncio.run(scenario())


def test_each_kind_of_run_opens_its_own_monitor_even_one_that_says_its_kind_late(tmp_path):
    """A search opens the search monitor and a retrain the retrain monitor, each with its own widgets. A run
    opened before its engine wrote run_start gets the search monitor, which makes way for the retrain
    monitor when the retrain's run_start comes."""
    from dasvit_tui.screens.retrain_monitor import RetrainMonitorScreen
    from dasvit_tui.screens.search_monitor import SearchMonitorScreen

    search = shutil.copytree(RECORDED, tmp_path / "search", ignore=shutil.ignore_patterns("retrain"))
    retrain = shutil.copytree(RECORDED / "retrain", tmp_path / "retrain")
    late = shutil.copytree(RECORDED / "retrain", tmp_path / "late")
    (late / "events.jsonl").write_text("")  # the engine has not written its run_start yet

    def ids(screen) -> set[str]:
        return {w.id for w in screen.query("#skip, #heatmap, #speed, #retrain-info")}

    async def scenario():
        for run, screen_type, own in (
            (search, SearchMonitorScreen, {"skip", "heatmap"}),
            (retrain, RetrainMonitorScreen, {"speed", "retrain-info"}),
        ):
            async with DasvitApp(run_dir=run).run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: pilot.app.screen.caught_up)
                assert type(pilot.app.screen) is screen_type and ids(pilot.app.screen) == own
        app = DasvitApp(run_dir=late)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.screen.caught_up)
            first = app.screen
            assert type(first) is SearchMonitorScreen
            (late / "events.jsonl").write_text((RECORDED / "retrain" / "events.jsonl").read_text())
            await until(pilot, lambda: isinstance(app.screen, RetrainMonitorScreen) and app.screen.caught_up)
            assert ids(app.screen) == {"speed", "retrain-info"} and app.screen.state.status == "finished"
            assert first not in app.screen_stack and len(app.screen_stack) == 2  # replaced, not stacked

    asyncio.run(scenario())


def test_a_new_epoch_reaches_the_screen_within_half_a_second(tmp_path):
    """Three epochs appended one by one; the median of the three delays is the latency (a single one also
    measures whatever else the 2-core machine was doing at that moment: 0.64 s once in the whole suite)."""
    run = waiting_run(tmp_path)
    lines = recorded_events()
    (run / "events.jsonl").write_text(lines[0] + "\n")  # run_start; lines 1-3 are the first three epochs
    lock = runlock.RunLock(run)
    lock.acquire()

    async def scenario():
        app = DasvitApp(run_dir=run)
        delays = []
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.screen.caught_up)
            screen = app.screen
            for line in lines[1:4]:
                seen = len(screen.state.epochs)
                await pilot.pause(0.1)
                t0 = time.monotonic()
                jsonl.append_jsonl(run / "events.jsonl", json.loads(line))
                await until(pilot, lambda seen=seen: len(screen.state.epochs) > seen, timeout=2)
                delays.append(time.monotonic() - t0)
        return delays

    try:
        delays = asyncio.run(scenario())
    finally:
        lock.release()
    assert sorted(delays)[1] < 0.5, ", ".join(f"{d:.2f} s" for d in delays)  # the median


@pytest.mark.parametrize("kind", ["missing", "not a run"])
def test_a_bad_run_dir_is_one_sentence_and_exit_2(tmp_path, kind):
    target = tmp_path / "nope"
    if kind == "not a run":
        target.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "tui", str(target)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("dasvit: ") and str(target) in proc.stderr


def test_runs_screen_opens_a_run_and_help_and_back(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(RECORDED, root / "demo-recorded")

    async def scenario():
        app = DasvitApp(runs_root=root)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            assert app.screen.run_dir == root / "demo-recorded"
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen))

    asyncio.run(scenario())


def test_n_starts_a_search_from_a_chosen_preset(tmp_path):
    from dasvit_tui.screens.runs import PresetScreen

    root = tmp_path / "runs"

    async def scenario():
        app = DasvitApp(runs_root=root)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, PresetScreen))
            options = app.screen.query_one("#presets")
            options.highlighted = [str(o.prompt) for o in options.options].index("demo")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            return app.launched

    launched = asyncio.run(scenario())
    try:
        (run,) = launched
        assert run.run_dir.parent == root.absolute() and run.run_dir.name.startswith("demo-")
        assert run.process.poll() is None
        assert "--approve manual" in " ".join(run.process.args)
    finally:
        for run in launched:
            run.process.terminate()
            run.process.wait(timeout=30)


def test_a_proposal_answered_elsewhere_closes_the_modal(tmp_path):
    run = waiting_run(tmp_path)
    proposal = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    lock = runlock.RunLock(run)
    lock.acquire()

    async def scenario():
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PruneScreen) and bool(app.screen.query(KeepGrid)))
            # `dasvit approve` from a script; the engine acts on it
            jsonl.append_jsonl(
                run / "events.jsonl", make_event("prune", stage=proposal["stage"], keep=proposal["keep"], by="user")
            )
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
            assert app.screen.state.proposal is None and app.screen.state.status == "running"

    try:
        asyncio.run(scenario())
    finally:
        lock.release()
    assert control_lines(run) == []


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_the_new_run_dialog_shows_its_sentences_whole(tmp_path, size):
    """`n` on the runs screen: each sentence of the dialog is on screen word for word (wrapped, not cut)."""
    from textual.widgets import Label

    from dasvit_tui.screens.runs import PresetScreen

    async def scenario():
        app = DasvitApp(runs_root=tmp_path / "runs")
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, PresetScreen))
            await pilot.pause(0.2)
            box = app.screen.query_one("#dialog").content_region
            return [
                ("".join(str(label.render()).split()), on_screen(label), box.contains_region(label.region))
                for label in app.screen.query(Label)
            ]

    labels = asyncio.run(scenario())
    assert len(labels) == 2 and all(len(text) > 40 for text, _, _ in labels)
    for text, shown, inside in labels:
        assert shown == text and inside  # every word drawn, and nothing of it outside the dialog (cut there)


def test_the_fairness_line_says_what_it_is_in_words(tmp_path):
    """The share chart's bottom border names the fairness loss and its two terms, at 80 and 120 columns."""
    from dasvit_tui.widgets.skip import SkipChart

    run = shutil.copytree(RECORDED, tmp_path / "run")
    last = [json.loads(ln) for ln in recorded_events() if '"type":"epoch"' in ln][-1]["fairness"]

    async def scenario(size):
        app = DasvitApp(run_dir=run)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.screen.caught_up)
            await pilot.pause(0.2)
            chart = app.screen.query_one(SkipChart)
            return str(chart.border_subtitle), chart.size.width

    for size in ((80, 24), (120, 40)):
        line, width = asyncio.run(scenario(size))
        assert line.startswith("fairness") and "skip" in line and "type" in line and "Σ" not in line
        assert len(line) <= width - 4  # the whole of it fits in the border
        assert f"{last['skip']:.2f}".lstrip("0") in line and f"{last['type']:.2f}".lstrip("0") in line
        if size == (120, 40):
            assert line.startswith("fairness loss") and f"{last['total']:.2f}".lstrip("0") in line


def test_new_run_dirs_are_timestamped_and_never_reused(tmp_path):
    import re

    from dasvit.run.layout import default_run_dir

    first = default_run_dir("demo", tmp_path)
    assert first.parent == tmp_path and re.fullmatch(r"demo-\d{8}-\d{6}", first.name)
    first.mkdir()
    assert default_run_dir("demo", tmp_path).name.endswith("-2")


def test_a_bad_config_is_one_sentence_and_exit_2_before_any_run_dir(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "tui", "--preset", "demo", "--set", "search.lr=-1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "search.lr" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_chart_axis_labels_fit_their_five_cells_and_keep_their_value():
    """A loss or learning rate of 1e-5 used to lose its exponent to the axis width ("1.0e-")."""
    from dasvit_tui.widgets.charts import _fmt

    units = {"k": 1e3, "M": 1e6, "G": 1e9}
    for exp in range(-11, 11):
        for mantissa in (1.0, 1.234, 4.5, 9.99):
            v = mantissa * 10.0**exp
            label = _fmt(v)
            assert len(label) <= 5, (v, label)
            if label[-1] in units:
                back = float(label[:-1]) * units[label[-1]]
            elif "e" in label:
                digits, e = label.split("e")
                back = float(digits) * 10.0 ** int(e)
            else:
                back = float(label)
            assert abs(back - v) <= 0.06 * v + 0.005 * (v >= 0.01) or exp <= -9, (v, label)  # below 1e-8: one digit


def test_the_runs_list_shows_this_users_dasvit_jobs_in_slurms_queue(tmp_path, monkeypatch):
    """squeue (here a script that answers as SLURM's does for `squeue --me -h -o ...`) lists a pending array
    task and a running one: the runs screen shows both, why the pending one waits, and what they run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(
        "#!/bin/sh\n"
        "printf '12_1|dasvit-compare|RUNNING|None|0:42|dasvit compare: runs/fashion-s0\\n'\n"
        "printf '12_[2-4]|dasvit-compare|PENDING|Resources|0:00|dasvit compare: runs/fashion-s0\\n'\n"
        "printf '13|someone-else|PENDING|Priority|0:00|\\n'\n"
    )
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    shutil.copytree(RECORDED, tmp_path / "runs" / "demo")

    async def scenario():
        app = DasvitApp(runs_root=tmp_path / "runs")
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            queue = app.screen.query_one("#runs-queue")
            text = str(queue.render())
            assert queue.display and "12_1" in text and "12_[2-4]" in text and "Resources" in text
            assert "runs/fashion-s0" in text and "someone-else" not in text
            assert "1 SLURM job(s) pending" in str(app.screen.query_one("#runs-hint").render())

    asyncio.run(scenario())

"""The run watcher turns a run directory into typed messages; RunState folds them. No app needed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from dasvit.run import jsonl, layout, runlock, runstatus
from dasvit.run.events import make_event
from dasvit_tui import messages as m
from dasvit_tui.state import RunState
from dasvit_tui.watcher import RunWatcher

RECORDED = Path(__file__).parent / "recorded_run"


class Inbox:
    """Stands in for a screen: keeps what the watcher posts."""

    def __init__(self) -> None:
        self.messages: list = []

    def post_message(self, message) -> bool:
        self.messages.append(message)
        return True

    def of(self, cls) -> list:
        return [x for x in self.messages if isinstance(x, cls)]


def fragment(type_: str, **fields) -> dict:
    """An event with only the fields a test needs, as an old or hand-made run may hold (the engines'
    `make_event` insists on every field its definition requires)."""
    return {"v": 1, "type": type_, "time": time.time(), **fields}


def fold(inbox: Inbox, run_dir: Path) -> RunState:
    state = RunState(run_dir)
    for msg in inbox.messages:
        if isinstance(msg, m.RunEvent):
            state.apply(msg.event)
        elif isinstance(msg, m.EngineStatus):
            state.live, state.exit_code = msg.live, msg.exit_code
    return state


def test_recorded_run_folds_into_a_finished_three_stage_search(tmp_path):
    run = shutil.copytree(RECORDED, tmp_path / "run")
    inbox = Inbox()
    RunWatcher(run, inbox).poll()
    state = fold(inbox, run)
    assert state.kind == "search" and state.status == "finished"
    assert len(state.stages) == 3 and state.stage_position() == 2
    assert [s for _, s in state.stage_starts()] == [2, 3]
    assert state.eta() is None and state.elapsed() > 0
    assert state.genotype is not None and state.genotype_stage == 3
    # the last stage weighs the ops the last prune kept (the user kept 4 on one edge); the rest are gone
    active = state.active_ops()
    kept = state.prunes[-1]["keep"]
    assert {e: set(v) for e, v in active.items()} == {e: set(v) for e, v in kept.items()}
    assert sorted(len(v) for v in active.values()) == [3] * 8 + [4]
    # one CaughtUp per pass that found something, after the events it covers
    assert isinstance(inbox.messages[-1], m.CaughtUp) and inbox.messages[-1].first


def test_partial_line_waits_and_corrupt_line_is_skipped_with_a_warning(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("preset: demo\n")
    events = run / "events.jsonl"
    start = fragment("run_start", kind="search", preset="demo", device="cpu", pid=1, config={})
    epoch = fragment("epoch", stage=1, epoch=1, epochs=3, train_loss=1.0, val_acc=0.5)
    line = json.dumps(epoch)
    events.write_text(
        json.dumps(start) + "\n" + '{"v":1,"type":"epo\n' + line[:20]
    )  # a crash mid-write, then half a line
    inbox = Inbox()
    watcher = RunWatcher(run, inbox)
    lock = runlock.RunLock(run)  # a live engine is still writing
    lock.acquire()
    try:
        watcher.poll()
        seen = [
            x.type if isinstance(x, m.RunEvent) else type(x)
            for x in inbox.messages
            if isinstance(x, (m.RunEvent, m.BadEventLine))
        ]
        assert seen == ["run_start", m.BadEventLine]
        with open(events, "a") as f:
            f.write(line[20:] + "\n")
        watcher.poll()
    finally:
        lock.release()
    assert len(inbox.of(m.BadEventLine)) == 1
    epochs = [x for x in inbox.of(m.RunEvent) if x.type == "epoch"]
    assert len(epochs) == 1 and epochs[0].event["train_loss"] == 1.0


def test_engine_log_lines_arrive_whole(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    log = run / layout.ENGINE_LOG
    log.write_text("stage 1/3 epoch 1/3 step 4/8\nhalf a li")
    inbox = Inbox()
    watcher = RunWatcher(run, inbox)
    watcher.poll()
    with open(log, "a") as f:
        f.write("ne\nTraceback (most recent call last):\n")
    watcher.poll()
    lines = [ln for msg in inbox.of(m.LogLines) for ln in msg.lines]
    assert lines == ["stage 1/3 epoch 1/3 step 4/8", "half a line", "Traceback (most recent call last):"]


def test_liveness_follows_the_engine_lock(tmp_path):
    run = shutil.copytree(RECORDED, tmp_path / "run")
    inbox = Inbox()
    watcher = RunWatcher(run, inbox)
    watcher.poll()
    lock = runlock.RunLock(run)
    lock.acquire()
    try:
        watcher.poll()
    finally:
        lock.release()
    watcher.poll()
    assert [x.live for x in inbox.of(m.EngineStatus)] == [False, True, False]


def test_engine_death_without_run_end_is_a_crash_with_its_error(tmp_path):
    run = shutil.copytree(RECORDED, tmp_path / "run")
    lines = (run / "events.jsonl").read_text().splitlines()
    cut = [ln for ln in lines if '"type":"run_end"' not in ln]
    cut.append(
        json.dumps(
            make_event(
                "error",
                message="RuntimeError: boom",
                traceback="Traceback (most recent call last):\n  File x\nRuntimeError: boom\n",
            )
        )
    )
    (run / "events.jsonl").write_text("\n".join(cut) + "\n")
    inbox = Inbox()
    RunWatcher(run, inbox).poll()
    state = fold(inbox, run)
    assert state.status == "crashed"
    assert state.failure["message"] == "RuntimeError: boom"


def test_a_truncated_last_line_of_a_dead_engine_is_warned_about_once(tmp_path):
    run = shutil.copytree(RECORDED, tmp_path / "run")
    with open(run / "events.jsonl", "a") as f:
        f.write('{"v":1,"type":"epoch","stage":3,"epo')  # the engine died mid-write
    inbox = Inbox()
    watcher = RunWatcher(run, inbox)
    watcher.poll()
    watcher.poll()
    (bad,) = inbox.of(m.BadEventLine)
    assert bad.text.startswith('{"v":1,"type":"epoch"')


def test_every_front_reads_the_same_status_for_any_kind_of_run(tmp_path):
    """rundir.summarize (lists, scripts) and the monitor's RunState share one status definition, and the
    plan comes from config[kind]: a kind this front has never seen (focus) is planned from its epochs."""
    run = tmp_path / "focus"
    run.mkdir()
    (run / "config.yaml").write_text("preset: demo\n")
    evs = [
        fragment(
            "run_start",
            kind="focus",
            preset="focus-demo",
            device="cpu",
            pid=1,
            config={"focus": {"epochs": 4}, "search": {"stages": [{"epochs": 1}] * 3}},
        ),
        fragment("epoch", stage=1, epoch=1, epochs=4, val_acc=0.5),
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    lock = runlock.RunLock(run)
    lock.acquire()
    try:
        summary = runstatus.summarize(run)
        state = RunState(run)
        for e in evs:
            state.apply(e)
        state.live = True
        assert summary.status == state.status == "running"
        assert summary.planned_stages == state.stages == [{"depth": 1, "keep": 1, "epochs": 4}]
    finally:
        lock.release()
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps(make_event("run_end", status="stopped", message="")) + "\n")
    assert runstatus.summarize(run).status == "stopped"
    assert runstatus.summarize(run / "nothing-here").status == "not started"


def test_a_real_focus_run_reads_the_same_in_the_runs_list_and_the_monitor_state(tmp_path):
    """A tiny real FocusFormer run (kind "focus"): summarize, the runs list's row and the monitor's state
    agree, its plan comes from config["focus"], and nothing in its events (space, sampler, points) trips them."""
    from dasvit.focus.train import main as focus_main
    from dasvit_tui.screens.runs import row_cells

    run = tmp_path / "runs" / "focus"
    assert (
        focus_main(
            [
                "--preset",
                "focus-demo",
                "--run-dir",
                str(run),
                "--no-progress",
                "--set",
                "focus.epochs=2",
                "--set",
                "focus.warmup_epochs=1",
                "--set",
                "focus.steps_per_epoch=2",
                "--set",
                "focus.sampler_every=1",
                "--set",
                "focus.batch_size=16",
                "--set",
                "focus.lstm.archs=2",
                "--set",
                "focus.lstm.budgets=1",
                "--set",
                "focus.lstm.batch_size=16",
                "--set",
                "data.synthetic_train=128",
                "--set",
                "data.synthetic_val=32",
            ]
        )
        == 0
    )
    assert list(runstatus.iter_runs(tmp_path / "runs")) == [run]
    summary = runstatus.summarize(run)
    inbox = Inbox()
    RunWatcher(run, inbox).poll()
    state = fold(inbox, run)
    assert summary.kind == state.kind == "focus" and summary.status == state.status == "finished"
    assert summary.planned_stages == state.stages == [{"depth": 1, "keep": 1, "epochs": 2}]
    val_acc = [e["val_acc"] for e in jsonl.read_events(run)[0] if e["type"] == "epoch"]
    assert (summary.epoch, summary.stage_epochs, summary.best_acc) == (2, 2, max(val_acc))
    cells = row_cells(summary, "focus")
    assert [str(c) for c in cells[1:3]] == ["focus", "focus-demo"] and str(cells[3]) == "finished" and cells[5] == "2/2"

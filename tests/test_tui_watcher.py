"""The run watcher turns a run directory into typed messages; RunState folds them. No app needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dasvit import rundir as rd
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
    start = rd.make_event("run_start", kind="search", preset="demo", device="cpu", pid=1, config={})
    epoch = rd.make_event("epoch", stage=1, epoch=1, epochs=3, train_loss=1.0, val_acc=0.5)
    line = json.dumps(epoch)
    events.write_text(json.dumps(start) + "\n" + '{"v":1,"type":"epo\n' + line[:20])  # a crash mid-write, then half a line
    inbox = Inbox()
    watcher = RunWatcher(run, inbox)
    lock = rd.RunLock(run)  # a live engine is still writing
    lock.acquire()
    try:
        watcher.poll()
        seen = [x.type if isinstance(x, m.RunEvent) else type(x) for x in inbox.messages
                if isinstance(x, (m.RunEvent, m.BadEventLine))]
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
    log = run / rd.ENGINE_LOG
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
    lock = rd.RunLock(run)
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
    cut.append(json.dumps(rd.make_event("error", message="RuntimeError: boom",
                                        traceback="Traceback (most recent call last):\n  File x\nRuntimeError: boom\n")))
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

"""A run's status, the one definition every front shares: what its events add up to (`RunStatus`), and the
runs under a folder (`iter_runs`, `summarize`). Imports no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .events import EPOCH, PRUNE, PRUNE_PROPOSAL, RUN_END, RUN_START, Event, PruneProposalEvent, RunEndEvent
from .jsonl import read_events
from .layout import RETRAIN, SPECIALIZED, is_run_dir
from .runlock import is_live


@dataclass(kw_only=True)
class RunStatus:
    """What a run's events add up to, and whether its engine lives: the one definition of a run's status
    that every front uses (`summarize` for lists and scripts, the monitor's `RunState`, the commands).

    Fold events in order with `apply`; set `live` (and `exit_code`, for a process the front started)
    from outside. Nothing here knows the kind of run: the plan comes from `config[kind]`."""

    kind: str = "?"
    preset: str = "?"
    device: str = "?"
    pid: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    last_time: float | None = None
    stage: int = 0  # of the last epoch event (1-based)
    epoch: int = 0
    stage_epochs: int = 0  # epochs of that stage
    best_acc: float | None = None  # best top-1 (retrain) or validation accuracy (search) so far
    proposal: PruneProposalEvent | None = None  # a prune_proposal no answer has followed yet
    end: RunEndEvent | None = None  # the run_end of the last engine process, unless one started since
    live: bool | None = None  # None: nobody has looked yet
    exit_code: int | None = None

    STATUSES = ("loading", "not started", "starting", "running", "waiting", "finished", "stopped", "failed", "crashed")

    def apply(self, ev: Event) -> None:
        t = ev.get("type")
        time_ = ev.get("time")
        if isinstance(time_, (int, float)):
            self.last_time = time_
        if t == RUN_START:
            self.kind = str(ev.get("kind", self.kind))
            self.preset = str(ev.get("preset", self.preset))
            self.device = str(ev.get("device", self.device))
            self.pid = ev.get("pid") if isinstance(ev.get("pid"), int) else self.pid
            if isinstance(ev.get("config"), dict):
                self.config = ev["config"]
            if self.started is None:
                self.started = time_
            self.end = None  # a resumed run goes on
        elif t == EPOCH:
            self.stage, self.epoch = ev.get("stage", 0), ev.get("epoch", 0)
            self.stage_epochs = ev.get("epochs", 0)
            acc = ev.get("top1", ev.get("val_acc"))
            if isinstance(acc, (int, float)):
                self.best_acc = acc if self.best_acc is None else max(self.best_acc, acc)
            if self.proposal is not None and ev.get("stage") != self.proposal.get("stage"):
                self.proposal = None
        elif t == PRUNE_PROPOSAL:
            self.proposal = ev if isinstance(ev.get("stage"), int) else self.proposal
        elif t == PRUNE:
            self.proposal = None
        elif t == RUN_END:
            self.end = ev
            self.proposal = None

    @property
    def status(self) -> str:
        """One of STATUSES: the run_end's status once there is one; else, while the engine lives,
        starting, waiting (a proposal awaits an answer) or running; else crashed (it started and died),
        failed (this front's engine exited before it started), not started, or loading (not looked yet)."""
        if self.end is not None:
            return str(self.end.get("status", "finished"))
        started = self.kind != "?"
        if self.live:
            if not started:
                return "starting"
            return "waiting" if self.proposal is not None else "running"
        if self.live is None:
            return "loading"
        if started:
            return "crashed"
        return "failed" if self.exit_code is not None else "not started"

    def _section(self, name: str) -> dict[str, Any]:
        sec = self.config.get(name)
        return sec if isinstance(sec, dict) else {}

    @property
    def planned_stages(self) -> list[dict[str, Any]]:
        """[{depth, keep, epochs}] from `config[kind]`: its `stages` list (a search), else one stage of its
        `epochs` (a retrain, or any kind that trains one network)."""
        sec = self._section(self.kind)
        stages = sec.get("stages")
        if isinstance(stages, list):
            return [_counts(st) for st in stages if isinstance(st, dict)]
        if "epochs" in sec:
            return [_counts({"depth": sec.get("depth", 1), "keep": 1, "epochs": sec.get("epochs", 0)})]
        return []


def _counts(stage: dict[str, Any]) -> dict[str, int]:
    """A planned stage's depth, keep and epochs that are whole numbers (a hand-edited config may say anything)."""
    return {k: v for k in ("depth", "keep", "epochs") if type(v := stage.get(k)) is int}


@dataclass
class RunSummary(RunStatus):
    """One line of a list of runs: a run directory's status, folded from its event log."""

    path: Path
    last_event: dict[str, Any] = field(default_factory=dict)

    def apply(self, ev: Event) -> None:
        super().apply(ev)
        self.last_event = ev


def summarize(run_dir: Path, events: list[dict[str, Any]] | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    if events is None:
        events, _ = read_events(run_dir)
    s = RunSummary(path=run_dir)
    for ev in events:
        s.apply(ev)
    s.live = is_live(run_dir)
    return s


def pending_proposal(run_dir: Path) -> dict[str, Any] | None:
    """The prune_proposal event of a run that waits for an answer (none once pruned or ended)."""
    return summarize(run_dir).proposal


def iter_runs(root: Path) -> Iterator[Path]:
    """The runs under `root`, newest first, each followed by its retrains (SEARCH/retrain,
    FOCUS/specialized/<budget>-retrain and -finetune)."""
    root = Path(root)
    try:
        entries = [(e.stat().st_mtime, Path(e.path)) for e in os.scandir(root) if _is_dir(e)]
    except OSError:
        return
    for _, p in sorted(entries, key=lambda t: t[0], reverse=True):
        if is_run_dir(p):
            yield p
        if is_run_dir(p / RETRAIN):
            yield p / RETRAIN
        if (p / SPECIALIZED).is_dir():  # retrains of a focus run's specialized architectures
            yield from sorted(d for d in (p / SPECIALIZED).iterdir() if d.is_dir() and is_run_dir(d))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir() and bool(entry.stat())
    except OSError:  # a dangling link, a folder that vanished
        return False

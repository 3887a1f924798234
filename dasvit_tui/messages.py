"""Typed messages from the run watcher to the monitor.

The watcher (`dasvit_tui.watcher.RunWatcher`) reads the run directory in a worker thread and posts one of
these per thing it finds; screens fold them into a `RunState` and widgets only render. Every event type of
the run-directory contract has its own message class, so a handler reads as `on_epoch_ended`, not as a
switch on `event["type"]`. `RunState` is what the event messages add up to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.message import Message


class RunMessage(Message, bubble=False):
    """One event from `events.jsonl`, as the engine wrote it."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class RunStarted(RunMessage, bubble=False):
    """`run_start`: kind, preset, device, pid, config."""


class EpochEnded(RunMessage, bubble=False):
    """`epoch`: metrics of one epoch (search: also arch_weights, skip_fraction, fairness)."""


class PruneProposed(RunMessage, bubble=False):
    """`prune_proposal`: the ops the next stage would keep; a manual run now waits for an answer."""


class Pruned(RunMessage, bubble=False):
    """`prune`: the ops kept for the next stage, and who decided."""


class GenotypeFound(RunMessage, bubble=False):
    """`genotype`: the cell derived at a stage end."""


class RunEnded(RunMessage, bubble=False):
    """`run_end`: finished, stopped or failed."""


class EngineError(RunMessage, bubble=False):
    """`error`: a message and a traceback (a bug, or a control line the engine ignored)."""


class OtherEvent(RunMessage, bubble=False):
    """An event type this front does not know; kept for the log, never fatal."""


EVENT_MESSAGES: dict[str, type[RunMessage]] = {
    "run_start": RunStarted,
    "epoch": EpochEnded,
    "prune_proposal": PruneProposed,
    "prune": Pruned,
    "genotype": GenotypeFound,
    "run_end": RunEnded,
    "error": EngineError,
}


def event_message(event: dict[str, Any]) -> RunMessage:
    """The typed message for one parsed event line."""
    return EVENT_MESSAGES.get(str(event.get("type")), OtherEvent)(event)


class BadEventLine(Message, bubble=False):
    """A line of `events.jsonl` that is not a JSON object (a crash mid-write): skipped, with a warning."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class LogLines(Message, bubble=False):
    """New complete lines of `engine.log` (the engine's stdout and stderr)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines


class EngineStatus(Message, bubble=False):
    """The engine process's liveness changed. `exit_code` is known only for a process this front started."""

    def __init__(self, live: bool, exit_code: int | None = None) -> None:
        super().__init__()
        self.live = live
        self.exit_code = exit_code


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_percent: float
    mem_used: int
    mem_total: int


class SystemSample(Message, bubble=False):
    """Resource use of the engine process (and its children), and of the GPUs when the run is on CUDA."""

    def __init__(self, pid: int | None, cpu_percent: float | None, rss: int | None, threads: int | None,
                 ram_percent: float | None, gpus: list[GpuSample] | None = None) -> None:
        super().__init__()
        self.pid = pid
        self.cpu_percent = cpu_percent
        self.rss = rss
        self.threads = threads
        self.ram_percent = ram_percent
        self.gpus = gpus


class MetricsReady(Message, bubble=False):
    """`metrics.json` appeared (a finished retrain: top-1/top-5, params, FLOPs)."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        super().__init__()
        self.metrics = metrics


class CaughtUp(Message, bubble=False):
    """Everything the watcher read in one pass has been posted: a good moment to redraw once."""

    def __init__(self, first: bool) -> None:
        super().__init__()
        self.first = first


# ---------------------------------------------------------------------------------------------
# what the messages add up to


@dataclass
class RunState:
    """A run as the monitor sees it, folded from its events in order."""

    run_dir: Path
    kind: str = "?"
    preset: str = "?"
    device: str = "?"
    pid: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    last_time: float | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    proposal: dict[str, Any] | None = None
    prunes: list[dict[str, Any]] = field(default_factory=list)
    genotype: dict[str, Any] | None = None
    genotype_stage: Any = None
    end: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    live: bool | None = None  # None until the watcher has looked
    exit_code: int | None = None
    metrics: dict[str, Any] | None = None
    _index: dict[tuple[Any, Any], int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        p = self.run_dir
        return f"{p.parent.name}/{p.name}" if p.name == "retrain" else p.name

    def apply(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        time_ = ev.get("time")
        if isinstance(time_, (int, float)):
            self.last_time = time_
        if t == "run_start":
            self.kind = str(ev.get("kind", self.kind))
            self.preset = str(ev.get("preset", self.preset))
            self.device = str(ev.get("device", self.device))
            self.pid = ev.get("pid") if isinstance(ev.get("pid"), int) else self.pid
            if isinstance(ev.get("config"), dict):
                self.config = ev["config"]
            if self.started is None:
                self.started = time_
            self.end = None  # a resumed run goes on
        elif t == "epoch":
            key = (ev.get("stage"), ev.get("epoch"))
            if key in self._index:  # an epoch repeated after a resume replaces the first one
                self.epochs[self._index[key]] = ev
            else:
                self._index[key] = len(self.epochs)
                self.epochs.append(ev)
            if self.proposal is not None and ev.get("stage") != self.proposal.get("stage"):
                self.proposal = None
        elif t == "prune_proposal":
            self.proposal = ev
        elif t == "prune":
            self.prunes.append(ev)
            self.proposal = None
        elif t == "genotype":
            self.genotype = ev.get("genotype") if isinstance(ev.get("genotype"), dict) else self.genotype
            self.genotype_stage = ev.get("stage")
        elif t == "run_end":
            self.end = ev
            self.proposal = None
        elif t == "error":
            self.errors.append(ev)

    # -- the plan ---------------------------------------------------------------------------
    def _section(self, name: str) -> dict[str, Any]:
        sec = self.config.get(name)
        return sec if isinstance(sec, dict) else {}

    @property
    def stages(self) -> list[dict[str, Any]]:
        """Planned stages: [{depth, keep, epochs}] for a search, one pseudo-stage for a retrain."""
        if self.kind == "retrain":
            r = self._section("retrain")
            return [{"depth": r.get("depth", 1), "keep": 1, "epochs": r.get("epochs", 0)}]
        st = self._section("search").get("stages")
        return [s for s in st if isinstance(s, dict)] if isinstance(st, list) else []

    @property
    def ops(self) -> list[str]:
        ops = self._section("space").get("ops")
        if isinstance(ops, list) and ops:
            return [str(o) for o in ops]
        seen: list[str] = []
        for ev in self.epochs[-1:]:
            for weights in (ev.get("arch_weights") or {}).values():
                seen += [o for o in weights if o not in seen]
        return seen

    @property
    def fairness_bounds(self) -> tuple[float, float] | None:
        f = self._section("search").get("fairness")
        if isinstance(f, dict) and f.get("enabled", True) and "lower" in f and "upper" in f:
            return float(f["lower"]), float(f["upper"])
        return None

    @property
    def last(self) -> dict[str, Any] | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def total_epochs(self) -> int:
        return max(sum(int(s.get("epochs", 0)) for s in self.stages), len(self.epochs))

    def stage_starts(self) -> list[tuple[int, Any]]:
        """(x, stage) where each stage after the first begins on the epoch axis."""
        out, prev = [], None
        for i, ev in enumerate(self.epochs):
            s = ev.get("stage")
            if prev is not None and s != prev:
                out.append((i, s))
            prev = s
        return out

    def stage_marks(self) -> list[tuple[int, str]]:
        """Chart marks where stages 2.. begin: (x, "S2"), ..."""
        return [(x, f"S{n}") for n, (x, _) in enumerate(self.stage_starts(), start=2)]

    def stage_position(self) -> int:
        """Index (0-based) of the current stage in the plan: from the stage numbers seen, first one = 0."""
        if not self.epochs:
            return 0
        seen: list[Any] = []
        for ev in self.epochs:
            if ev.get("stage") not in seen:
                seen.append(ev.get("stage"))
        return len(seen) - 1

    def active_ops(self) -> dict[str, list[str]]:
        """The ops still in play per edge: the last prune's keep if it came after the last epoch, else
        the ops the last epoch weighed."""
        last = self.last
        weights = (last or {}).get("arch_weights") or {}
        active = {e: list(w) for e, w in weights.items()}
        if self.prunes and (last is None or self.prunes[-1].get("time", 0) >= last.get("time", 0)):
            keep = self.prunes[-1].get("keep") or {}
            active = {e: [o for o in self.ops if o in keep.get(e, [])] for e in (active or keep)}
        return active

    # -- now --------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.end is not None:
            return str(self.end.get("status", "finished"))
        if self.live:
            if not self.epochs and self.kind == "?":
                return "starting"
            return "waiting" if self.proposal is not None else "running"
        if self.live is None:
            return "loading"
        if self.exit_code is not None and not self.epochs and self.kind == "?":
            return "failed"
        return "crashed" if self.kind != "?" else "not started"

    def elapsed(self, now: float | None = None) -> float | None:
        if self.started is None:
            return None
        if self.end is not None or not self.live:
            end = self.end.get("time") if self.end else self.last_time
            return max(0.0, (end or self.started) - self.started)
        return max(0.0, (now or time.time()) - self.started)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: recent seconds per epoch, scaled to later stages by depth x ops kept, counted down
        from the last epoch's end."""
        if self.status not in ("running", "waiting") or not self.epochs:
            return None
        last = self.epochs[-1]
        same = [e for e in self.epochs[-4:] if e.get("stage") == last.get("stage")]
        times = [e.get("time") for e in same if isinstance(e.get("time"), (int, float))]
        if len(times) >= 2:  # wall time between epochs: training, evaluation and checkpoint
            per_epoch = (times[-1] - times[0]) / (len(times) - 1)
        else:
            secs = [e.get("seconds") for e in same if isinstance(e.get("seconds"), (int, float))]
            if not secs:
                return None
            per_epoch = sum(secs) / len(secs)
        stages = self.stages
        pos = self.stage_position()
        left = max(0, int(last.get("epochs", 0)) - int(last.get("epoch", 0)))
        total = left * per_epoch
        if pos < len(stages):
            cur = stages[pos]
            cost = max(1, int(cur.get("depth", 1)) * int(cur.get("keep", 1)))
            for st in stages[pos + 1:]:
                ratio = int(st.get("depth", 1)) * int(st.get("keep", 1)) / cost
                total += int(st.get("epochs", 0)) * per_epoch * ratio
        if self.status == "waiting" or not isinstance(last.get("time"), (int, float)):
            return total  # the clock does not run while the engine waits for an answer
        since = (now or time.time()) - last["time"]
        return max(0.0, total - max(0.0, since))

    @property
    def failure(self) -> dict[str, Any] | None:
        """The error to show when the run failed or its engine died: the last `error` event."""
        if self.status in ("failed", "crashed") and self.errors:
            return self.errors[-1]
        return None

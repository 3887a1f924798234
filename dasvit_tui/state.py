"""`RunState`: what a run's events add up to, as the monitor draws it.

The status, the plan and the pending proposal are `dasvit.run.runstatus.RunStatus`, and what the run went
through (every epoch, the prunes, the genotype, the errors) `dasvit.run.history.RunHistory`: the folds every
front shares. This adds the estimates the monitor shows (elapsed time, ETA). The screens fold the watcher's
events into it with `apply`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dasvit.fmt import human_bytes
from dasvit.limits import MAX_BUDGET_BINS
from dasvit.run.events import (
    EpochEvent,
    ErrorEvent,
    Event,
)
from dasvit.run.history import RunHistory
from dasvit.run.jsonio import printable
from dasvit.run.layout import RETRAIN, SPECIALIZED
from dasvit.run.runstatus import RunStatus


def run_name(path: Path) -> str:
    """How a run (or a genotype file it wrote) is named on screen: its directory's name, with the run it
    belongs to for a search's retrain (SEARCH/retrain) and for what `dasvit specialize` wrote
    (FOCUS/specialized/<budget>.json, FOCUS/specialized/<budget>-retrain)."""
    path = Path(path)
    p = path.parent if path.suffix == ".json" and path.parent.name != SPECIALIZED else path
    if p.parent.name == SPECIALIZED:
        name = f"{p.parent.parent.name}/{SPECIALIZED}/{p.name}"
    else:
        name = f"{p.parent.name}/{p.name}" if p.name == RETRAIN else p.name
    return printable(name, newlines=False)  # a path may hold escape sequences


def drawable(v: Any) -> bool:
    """A number a chart can place: finite and not so large that differences overflow (a run file may say anything)."""
    return type(v) in (int, float) and -1e300 < v < 1e300


@dataclass
class RunState(RunStatus, RunHistory):
    """A run as the monitor sees it: the shared `RunStatus` fold (kind, config, proposal, end, status) and the
    shared `RunHistory` fold (every epoch, the prunes, the genotype, the errors, the space, the memory), plus
    what only the monitor keeps: the lines it could not read and a retrain's metrics."""

    run_dir: Path
    bad_lines: int = 0
    metrics: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return run_name(self.run_dir)

    def apply(self, ev: Event) -> None:
        RunStatus.apply(self, ev)
        RunHistory.apply(self, ev)

    def memory_note(self) -> str:
        """'stage 2: memory estimate 21.3 GiB · peak 20.1 GiB' for the started stage (the peak: CUDA only, its
        epochs' largest so far), or '' before any estimate."""
        m = self.memory
        if m is None:
            return ""
        stage = m.get("stage")
        peaks = [e.get("peak_mem_bytes") for e in self.epochs if e.get("stage") == stage]
        peak = max((p for p in peaks if isinstance(p, (int, float))), default=None)
        note = f"stage {stage}: memory estimate {human_bytes(m['estimate_bytes'])}"
        return note + (f" · peak {human_bytes(peak)}" if peak is not None else "")

    # -- a FocusFormer run ---------------------------------------------------------------------
    @property
    def budgets(self) -> list[float]:
        """The sampler's budget bins (FLOPs): from the space event, else from the last epoch's bins."""
        budgets = (self.space or {}).get("budgets")
        if not (isinstance(budgets, list) and budgets):
            budgets = [b.get("budget_flops") for b in self.sampler_bins]
        return [float(b) for b in budgets if drawable(b)]

    @property
    def sampler_bins(self) -> list[dict[str, Any]]:
        """The last epoch's sampler state per budget bin: budget_flops, mean_flops, feasible, entropy."""
        bins = ((self.last or {}).get("sampler") or {}).get("bins")
        return [b for b in bins[:MAX_BUDGET_BINS] if isinstance(b, dict)] if isinstance(bins, list) else []

    def scored_points(self) -> list[tuple[int, dict[str, Any]]]:
        """(epoch index, point) of every architecture the sampler scored, each with flops and val_acc."""
        out = []
        for i, ev in enumerate(self.epochs):
            for p in ev.get("points") or []:
                if isinstance(p, dict) and drawable(p.get("flops")) and drawable(p.get("val_acc")):
                    out.append((i, p))
        return out

    # -- the plan ---------------------------------------------------------------------------
    @property
    def stages(self) -> list[dict[str, Any]]:
        """Planned stages: [{depth, keep, epochs}] (one pseudo-stage for a run that trains one network)."""
        return self.planned_stages

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
        if isinstance(f, dict) and f.get("enabled", True) and drawable(f.get("lower")) and drawable(f.get("upper")):
            return float(f["lower"]), float(f["upper"])
        return None

    @property
    def last(self) -> EpochEvent | None:
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
            for st in stages[pos + 1 :]:
                ratio = int(st.get("depth", 1)) * int(st.get("keep", 1)) / cost
                total += int(st.get("epochs", 0)) * per_epoch * ratio
        if self.status == "waiting" or not isinstance(last.get("time"), (int, float)):
            return total  # the clock does not run while the engine waits for an answer
        since = (now or time.time()) - last["time"]
        return max(0.0, total - max(0.0, since))

    @property
    def failure(self) -> ErrorEvent | None:
        """The error to show when the run failed or its engine died: the last `error` event."""
        if self.status in ("failed", "crashed") and self.errors:
            return self.errors[-1]
        return None

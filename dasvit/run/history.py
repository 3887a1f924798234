"""What a run's events record, folded once: the one fold of an event log that the plots, the monitor's
state, the seed comparison (`dasvit.reports.replicates`) and the experiments' scripts all read.

`RunStatus` (runstatus.py) says where a run stands; `RunHistory` keeps what it went through:

- every epoch, once: an epoch a resumed run logged twice counts once, the last time (`epochs`, in log
  order); `ordered()` by (stage, epoch) with `x`, the epoch counted from the run's start (stage offsets
  added); each stage's start on that axis and its depth;
- the prunes (and what each dropped of the stage's last weights), the last genotype, the errors, a
  FocusFormer run's space, the last memory estimate;
- each stage's last architecture weights (`stage_end_weights`), the edges and ops α has weighed.

Readers treat every field as possibly absent (`events.clean_event` has dropped those of a wrong type).
Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import (
    EPOCH,
    ERROR,
    GENOTYPE,
    MEMORY,
    PRUNE,
    SPACE,
    EpochEvent,
    ErrorEvent,
    Event,
    MemoryEvent,
    PruneEvent,
    SpaceEvent,
)
from .jsonl import read_events


def _int(v: Any, default: int) -> int:
    return v if type(v) is int else default


@dataclass(kw_only=True)
class RunHistory:
    """The fold of a run's events (see the module); feed it events in log order with `apply`."""

    epochs: list[EpochEvent] = field(default_factory=list)
    prunes: list[PruneEvent] = field(default_factory=list)
    genotype: dict[str, Any] | None = None
    genotype_stage: Any = None
    errors: list[ErrorEvent] = field(default_factory=list)
    space: SpaceEvent | None = None  # a FocusFormer run's elastic space: FLOPs range and budget bins
    memory: MemoryEvent | None = None  # the last `memory` event: the started stage's estimate
    _index: dict[tuple[Any, Any], int] = field(default_factory=dict, repr=False)

    @classmethod
    def of_events(cls, events: list[Event]) -> RunHistory:
        history = cls()
        for ev in events:
            history.apply(ev)
        return history

    @classmethod
    def read(cls, run_dir: Path) -> RunHistory:
        """The history of a run directory's events.jsonl (malformed lines passed over)."""
        return cls.of_events(read_events(Path(run_dir))[0])

    def apply(self, ev: Event) -> None:
        t = ev.get("type")
        if t == EPOCH:
            key = (ev.get("stage"), ev.get("epoch"))
            if key in self._index:  # an epoch repeated after a resume replaces the first one
                self.epochs[self._index[key]] = ev
            else:
                self._index[key] = len(self.epochs)
                self.epochs.append(ev)
        elif t == PRUNE:
            self.prunes.append(ev)
        elif t == GENOTYPE:
            self.genotype = ev.get("genotype") if isinstance(ev.get("genotype"), dict) else self.genotype
            self.genotype_stage = ev.get("stage")
        elif t == ERROR:
            self.errors.append(ev)
        elif t == SPACE:
            self.space = ev
        elif t == MEMORY and isinstance(ev.get("estimate_bytes"), (int, float)):
            self.memory = ev

    # -- the epochs on one axis ------------------------------------------------------------------------
    def ordered(self) -> list[dict[str, Any]]:
        """The epochs with a whole-number epoch, by (stage, epoch), each with `x`: its place counted from the
        run's start (a stage starts where the last one's planned epochs end)."""
        keyed = sorted(((_int(e.get("stage"), 1), e["epoch"]), e) for e in self.epochs if type(e.get("epoch")) is int)
        out, offset, previous = [], 0, None
        for (stage, epoch), e in keyed:
            if stage != previous and previous is not None:
                offset += max(_int(out[-1].get("epochs"), 0), out[-1]["epoch"])
            previous = stage
            out.append({**e, "stage": stage, "x": offset + epoch})
        return out

    def stage_starts(self) -> dict[int, int]:
        """stage -> x where it starts (its first epoch is at start + 1)."""
        starts: dict[int, int] = {}
        for e in self.ordered():
            starts.setdefault(e["stage"], e["x"] - e["epoch"])
        return starts

    def stage_depths(self) -> dict[int, int]:
        return {e["stage"]: e["depth"] for e in self.ordered() if type(e.get("depth")) is int}

    def of_stage(self, stage: int) -> list[dict[str, Any]]:
        return [e for e in self.ordered() if e["stage"] == stage]

    # -- what α weighed -----------------------------------------------------------------------------
    def stage_end_weights(self) -> dict[int, dict[str, dict[str, float]]]:
        """{stage: {edge: {op: weight}}}: the architecture weights of each stage's last epoch."""
        out = {}
        for e in self.ordered():
            if isinstance(e.get("arch_weights"), dict):
                out[e["stage"]] = e["arch_weights"]
        return out

    def pruned(self) -> dict[int, dict[str, list[str]]]:
        """stage -> edge -> the ops its prune dropped: those of the stage's last weights not kept."""
        ends = self.stage_end_weights()
        out = {}
        for p in self.prunes:
            stage, keep = p.get("stage"), p.get("keep")
            if type(stage) is int and isinstance(keep, dict) and stage in ends:
                out[stage] = {
                    edge: [op for op in ops if op not in (keep.get(edge) or [])] for edge, ops in ends[stage].items()
                }
        return out

    def edges(self) -> list[str]:
        """Every edge α has weighed, in the order of the first epoch that names it."""
        names: dict[str, None] = {}
        for e in self.epochs:
            if isinstance(e.get("arch_weights"), dict):
                names.update(dict.fromkeys(e["arch_weights"]))
        return list(names)

    def ops(self) -> list[str]:
        names: dict[str, None] = {}
        for e in self.epochs:
            for w in (e.get("arch_weights") or {}).values():
                if isinstance(w, dict):
                    names.update(dict.fromkeys(w))
        return list(names)

    @property
    def last(self) -> EpochEvent | None:
        return self.epochs[-1] if self.epochs else None

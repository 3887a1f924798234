"""The events an engine writes to `events.jsonl`: one definition per event type, for writers and readers.

Every event is one JSON object on a line of its own: the envelope `{"v": EVENT_VERSION, "type": ...,
"time": <unix seconds>}` and the fields its type defines below. Each type is a `TypedDict`: its keys are
the fields, their annotations the types, `NotRequired` the fields an engine may leave out. `SCHEMA`
says which engine writes which type (the `epoch` of each engine is its own class, on a common base).
Units: accuracies are fractions in [0, 1], times seconds, memory bytes, FLOPs fvcore's (one
multiply-add is one FLOP); edges are named "i->j".

Types mean what JSON holds, as `dasvit.run.schema` checks them (finite numbers, 64-bit integers).

- **Writers** build events with `make_event(type, engine, **fields)` (`runtime.Run.emit`). An unknown
  type, a type this engine does not write, a missing required field, a field the type does not define
  or one of the wrong type raises `EventSchemaError`: each is a bug of the engine, found by the first
  test that runs it.
- **Readers** pass every line through `clean_event`, which drops each field whose value is not of its
  type (`"stage": [1]`, a number as a string), so that a reader sees it absent and keeps its default;
  within a field with parts (a sampler's bins, the scored points) it drops the parts' fields likewise.
  A reader must still treat every field as possibly absent: runs written by older versions lack some
  (`threads`, `type_shares`, `memory_estimate_bytes`), and a run directory may hold anything. Readers
  switch on the type names below (`EPOCH`, `RUN_END`, ...).

This module imports no torch: fronts read runs through it without loading a model.
"""

import sys
import time
from typing import Annotated, Any, Callable

from .schema import Fields, check, describe, hints

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # typing_extensions comes with torch
    from typing_extensions import NotRequired, TypedDict

EVENT_VERSION = 1
ENGINES = ("search", "retrain", "focus")  # the `kind` of a run_start: which engine wrote the run

# the event types
RUN_START = "run_start"
MEMORY = "memory"
EPOCH = "epoch"
SPACE = "space"
GENOTYPE = "genotype"
PRUNE_PROPOSAL = "prune_proposal"
PRUNE = "prune"
ERROR = "error"
RUN_END = "run_end"

# the values of a few str fields (documented; a reader shows whatever is there)
RUN_END_STATUSES = ("finished", "stopped", "failed")  # run_end.status
PRUNED_BY = ("auto", "user")  # prune.by


def _finite(v: Any) -> bool:
    return -1e18 < v < 1e18  # clocks and durations are computed from it (NaN fails too)


Time = Annotated[float, _finite]  # unix seconds
Weights = dict[str, dict[str, float]]  # {edge "i->j": {op: weight}}: softmax(α) over the edge's active ops
Keep = dict[str, list[str]]  # {edge "i->j": [op, ...]}: the ops an edge keeps


class Event(TypedDict):
    """The envelope every event has."""

    v: int  # EVENT_VERSION
    type: str  # one of SCHEMA's keys
    time: Time


class RunStartEvent(Event):
    """An engine took the run directory (a new run, or `--resume`: then `resumed` is true)."""

    kind: str  # ENGINES
    preset: str
    device: str  # "cpu", "cuda:0", ...
    world_size: int
    threads: str  # what dasvit.threads chose
    pid: int
    host: str
    resumed: bool
    config: dict[str, Any]  # the whole resolved config (dasvit.run.config.Config.to_dict)


class MemoryEvent(Event):
    """A search stage starts: its memory estimate (dasvit.reports.memory)."""

    stage: int  # from 1
    estimate_bytes: int
    parts: dict[str, int]  # weights, gradients, optimizer, activations, total
    precision: str  # "fp32" or "bf16"
    device: str  # the device type: "cpu", "cuda"
    estimate: dict[str, Any]  # the whole StageMemory (StageMemory.to_json)


class EpochEvent(Event):
    """An epoch ended: what every engine's epoch event has."""

    stage: int  # from 1 (1 for an engine without stages)
    epoch: int  # from 1, within the stage
    epochs: int  # of the stage
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float
    peak_mem_bytes: NotRequired[int]  # on CUDA: the epoch's peak


class Fairness(TypedDict):
    skip: float  # L_skip
    type: float  # L_type
    total: float  # L_fair
    enabled: bool


class ExpectedCost(TypedDict):
    """E_α[cell cost] relative to search.budget (dasvit.search.budget): 1.0 is the budget."""

    flops: float
    params: float


class SearchEpochEvent(EpochEvent):
    """A search epoch (dasvit.search.searcher.Searcher.emit_epoch)."""

    stages: int
    depth: int
    arch_step: bool  # α was trained this epoch (after search.arch_warmup_epochs)
    arch_weights: Weights
    skip_fraction: float
    fairness: Fairness
    type_shares: dict[str, float]  # W_t per op type
    memory_estimate_bytes: NotRequired[int]  # once the stage has an estimate
    expected_cost: NotRequired[ExpectedCost]  # with a search.budget: E_α[cell cost] / budget


class RetrainEpochEvent(EpochEvent):
    """A retrain epoch (dasvit.train.retrain.Retrainer); val_* are on the selection split (validation, or test
    when data.holdout is 0), val_acc = top1."""

    top1: float
    top5: float


class SamplerBin(TypedDict):
    budget_flops: float
    mean_flops: float  # of the architectures the training draws at that budget
    feasible: float  # the fraction of them within it
    entropy: float


class SamplerState(TypedDict):
    bins: list[SamplerBin]


class Point(TypedDict):
    flops: float
    params: float
    val_loss: float
    val_acc: float
    bin: int


class FocusEpochEvent(EpochEvent):
    """A FocusFormer epoch (dasvit.focus.train.FocusTrainer.train); val_* of the largest architecture."""

    stages: int  # 1
    val_loss_smallest: float
    val_acc_smallest: float
    phase: str  # "uniform" or "sampler"
    sampler_steps: int
    sampler: SamplerState
    points: list[Point]  # one scored architecture per bin


class SpaceEvent(Event):
    """A FocusFormer run's elastic space (its first start only)."""

    min_flops: float
    max_flops: float
    min_params: float
    max_params: float
    budgets: list[float]  # the K bin budgets (FLOPs)
    decisions: int
    smallest: dict[str, Any]  # architectures (Subnet.to_json)
    largest: dict[str, Any]


class GenotypeEvent(Event):
    """A search stage ended with this cell (also in genotype-stage<k>.json)."""

    stage: int
    genotype: dict[str, Any]  # genotype JSON (dasvit.model.genotype); its meta carries cost and, with a budget, budget


class PruneProposalEvent(Event):
    """A search stage but the last ended: the ops each edge would keep."""

    stage: int
    keep: Keep
    weights: Weights
    approval: str  # search.approval: "auto" or "manual"


class PruneEvent(Event):
    """The answer to a proposal: the next stage's ops."""

    stage: int
    keep: Keep
    by: str  # PRUNED_BY


class ErrorEvent(Event):
    """Something went wrong: an exception (with its traceback), or a control line refused (no traceback)."""

    message: str
    traceback: str
    stage: NotRequired[int]  # a refused approval's stage


class RunEndEvent(Event):
    """The engine process ends its run (a resumed run may start again)."""

    status: str  # RUN_END_STATUSES
    message: str


# type -> {engine: its definition}: which engine writes which event
SCHEMA: dict[str, dict[str, type]] = {
    RUN_START: dict.fromkeys(ENGINES, RunStartEvent),
    MEMORY: {"search": MemoryEvent},
    EPOCH: {"search": SearchEpochEvent, "retrain": RetrainEpochEvent, "focus": FocusEpochEvent},
    SPACE: {"focus": SpaceEvent},
    GENOTYPE: {"search": GenotypeEvent},
    PRUNE_PROPOSAL: {"search": PruneProposalEvent},
    PRUNE: {"search": PruneEvent},
    ERROR: dict.fromkeys(ENGINES, ErrorEvent),
    RUN_END: dict.fromkeys(ENGINES, RunEndEvent),
}
TYPES = tuple(SCHEMA)
ENVELOPE = tuple(Event.__annotations__)


class EventSchemaError(ValueError):
    """An engine built an event its definition does not allow: a bug."""


# ---------------------------------------------------------------------------------------------
# the definitions as checks (dasvit.run.schema)


class _Definition:
    """One event class as checks: its fields (required or not), each with the strict predicate."""

    def __init__(self, cls: type):
        self.cls = cls
        self.hints = {k: a for k, a in hints(cls).items() if k not in ENVELOPE}
        self.required = frozenset(cls.__required_keys__) - set(ENVELOPE)
        self.checks = {k: check(a, strict=True) for k, a in self.hints.items()}

    def problem(self, fields: dict[str, Any], complete: bool = True) -> str | None:
        missing = sorted(self.required - fields.keys())
        if missing and complete:
            return f"it lacks {', '.join(missing)}"
        for k, v in fields.items():
            if k not in self.checks:
                return f"{self.cls.__name__} has no field {k!r}"
            if not self.checks[k](v):
                return f"its {k} is not {describe(self.hints[k])}: {v!r:.200}"
        return None


_DEFINITIONS = {cls: _Definition(cls) for engines in SCHEMA.values() for cls in engines.values()}


def _field_types() -> dict[str, Any]:
    """Every field name of every event, with its one annotation (a name means one thing in every event)."""
    out: dict[str, Any] = dict(hints(Event))
    for d in _DEFINITIONS.values():
        for name, ann in d.hints.items():
            if out.setdefault(name, ann) != ann:
                raise TypeError(f"events: the field {name!r} has two types, {out[name]!r} and {ann!r}")
    return out


FIELD_TYPES: dict[str, Any] = _field_types()
# what clean_event checks each field name against (the same in every event type, and in unknown ones)
READER_CHECKS: dict[str, Callable[[Any], bool]] = {k: check(a, strict=False) for k, a in FIELD_TYPES.items()}

# how clean_event reads every field name of every event (the same in each type, and in unknown ones); the
# fields with parts (a sampler's bins, the scored points, the fairness terms) are cleaned within
_EVENT_FIELDS = Fields(FIELD_TYPES)


# ---------------------------------------------------------------------------------------------
# writing and reading


def event_problem(type_: Any, fields: dict[str, Any], engine: str | None = None, complete: bool = True) -> str | None:
    """Why an event of `type_` with `fields` (the envelope left out) breaks its definition, or None. With
    `engine`, the definition of that engine's event; without, any engine's. Not `complete`: required
    fields may be missing (a run an older version wrote)."""
    engines = SCHEMA.get(type_) if isinstance(type_, str) else None
    if engines is None:
        return f"{type_!r} is not an event type (events.SCHEMA has {', '.join(TYPES)})"
    if engine is not None:
        if engine not in engines:
            return f"the {engine} engine writes no {type_} event"
        return _DEFINITIONS[engines[engine]].problem(fields, complete)
    problems = [_DEFINITIONS[cls].problem(fields, complete) for cls in dict.fromkeys(engines.values())]
    return None if None in problems else problems[0]


def make_event(type_: str, engine: str | None = None, /, **fields: Any) -> Event:
    """The event of `type_` with `fields`, stamped with the version and the time; EventSchemaError if its
    definition (that of `engine`'s event, when given) does not allow it."""
    why = event_problem(type_, fields, engine)
    if why:
        raise EventSchemaError(f"event {type_!r}{f' of the {engine} engine' if engine else ''}: {why}")
    return {"v": EVENT_VERSION, "type": type_, "time": time.time(), **fields}  # type: ignore[return-value]


def check_event(ev: dict[str, Any], engine: str | None = None, complete: bool = True) -> str | None:
    """Why a whole event as read back from events.jsonl (envelope included) breaks the schema, or None:
    for tests that hold what an engine wrote to its definition (see event_problem)."""
    env = {k: ev.get(k) for k in ENVELOPE}
    if env["v"] != EVENT_VERSION or not READER_CHECKS["time"](env["time"]):
        return f"its envelope is not {{v: {EVENT_VERSION}, type, time}}: {env}"
    return event_problem(ev.get("type"), {k: v for k, v in ev.items() if k not in ENVELOPE}, engine, complete)


def clean_event(ev: dict[str, Any]) -> Event:
    """`ev` (an object read from a line) without the fields whose value is not of the type the schema gives
    that field name (FIELD_TYPES): for readers, which then see them absent. A field with parts (`sampler`,
    `points`, `fairness`) is cleaned the same way within: `{"bins": [1, {"budget_flops": "x"}]}` is read as
    `{"bins": [{}, {}]}`. Other fields pass as they are, so an event type this version does not know is
    still shown as far as it can be. An event with nothing to clean is returned as it is."""
    return _EVENT_FIELDS.clean(ev)  # type: ignore[return-value]

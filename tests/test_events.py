"""The event schema (dasvit.run.events): one definition per event type, for the engines' writer and the readers.

The engines' own events are held to it where the tests run them (schema_problems in test_search,
test_retrain, test_focus); here: what the writer refuses, what readers drop, and old runs still read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dasvit.run import events as ev
from dasvit.run import jsonl, layout

HERE = Path(__file__).parent
RECORDED = [HERE / "recorded_run", HERE / "recorded_run" / "retrain", HERE / "recorded_focus_run"]

SEARCH_EPOCH = dict(
    stage=1,
    stages=3,
    epoch=1,
    epochs=2,
    depth=1,
    lr=0.1,
    arch_step=False,
    train_loss=2.3,
    train_acc=0.1,
    seconds=1.5,
    images_per_s=100.0,
    val_loss=2.3,
    val_acc=0.1,
    arch_weights={"0->2": {"skip": 0.5, "msa_4": 0.5}},
    skip_fraction=0.5,
    fairness={"skip": 0.0, "type": 0.1, "total": 0.01, "enabled": True},
    type_shares={"skip": 0.5, "msa": 0.5},
)


def test_every_event_type_has_a_name_and_a_definition_for_each_engine_that_writes_it():
    assert ev.TYPES == (
        ev.RUN_START,
        ev.MEMORY,
        ev.EPOCH,
        ev.SPACE,
        ev.GENOTYPE,
        ev.PRUNE_PROPOSAL,
        ev.PRUNE,
        ev.ERROR,
        ev.RUN_END,
    )
    for engines in ev.SCHEMA.values():
        assert set(engines) <= set(ev.ENGINES)
    assert {e: c.__name__ for e, c in ev.SCHEMA[ev.EPOCH].items()} == {
        "search": "SearchEpochEvent",
        "retrain": "RetrainEpochEvent",
        "focus": "FocusEpochEvent",
    }


def test_the_writer_builds_an_event_its_definition_allows():
    e = ev.make_event(ev.EPOCH, "search", **SEARCH_EPOCH)
    assert e["v"] == ev.EVENT_VERSION and e["type"] == "epoch" and isinstance(e["time"], float)
    assert ev.check_event(json.loads(json.dumps(e)), "search") is None
    ev.make_event(ev.EPOCH, "search", **SEARCH_EPOCH, peak_mem_bytes=1 << 30, memory_estimate_bytes=2 << 30)
    ev.make_event(ev.ERROR, "retrain", message="x", traceback="")  # stage is optional
    ev.make_event(ev.RUN_END, status="finished", message="")  # no engine named: any engine's definition


@pytest.mark.parametrize(
    "type_, engine, fields, why",
    [
        ("epochs", "search", {}, "not an event type"),
        (ev.MEMORY, "focus", {}, "the focus engine writes no memory event"),
        (ev.EPOCH, "search", {k: v for k, v in SEARCH_EPOCH.items() if k != "depth"}, "lacks depth"),
        (ev.EPOCH, "search", {**SEARCH_EPOCH, "top1": 0.5}, "no field 'top1'"),  # a retrain's, not a search's
        (ev.EPOCH, "search", {**SEARCH_EPOCH, "stage": "1"}, "its stage is not a whole number"),
        (ev.EPOCH, "search", {**SEARCH_EPOCH, "stage": True}, "its stage is not a whole number"),
        (ev.EPOCH, "search", {**SEARCH_EPOCH, "lr": None}, "its lr is not a finite number"),
        (ev.EPOCH, "search", {**SEARCH_EPOCH, "arch_weights": {"0->2": {"skip": "0.5"}}}, "its arch_weights"),
        (ev.EPOCH, "search", {**SEARCH_EPOCH, "fairness": {"skip": 0.0, "type": 0.1, "total": 0.0}}, "fairness"),
        (ev.ERROR, "search", {"message": "x", "traceback": "", "stage": 1.0}, "its stage is not a whole number"),
        (ev.PRUNE, "search", {"stage": 1, "keep": {"0->2": "skip"}, "by": "auto"}, "its keep"),
    ],
)
def test_the_writer_refuses_what_the_definition_does_not_allow(type_, engine, fields, why):
    with pytest.raises(ev.EventSchemaError, match=why):
        ev.make_event(type_, engine, **fields)


def test_a_field_name_means_one_thing_in_every_event_and_readers_check_each_by_it():
    assert set(ev.READER_CHECKS) == set(ev.FIELD_TYPES)
    for engines in ev.SCHEMA.values():
        for cls in engines.values():
            assert set(cls.__annotations__) <= set(ev.FIELD_TYPES)
    # what rundir checked before the schema existed is all still checked
    assert {"time", "arch_weights", "weights", "keep", "budgets", "points", "config", "fairness"} <= set(ev.FIELD_TYPES)


def test_the_reader_drops_wrong_typed_fields_and_keeps_the_rest():
    line = {
        "v": 1,
        "type": "epoch",
        "time": 1e999,
        "stage": [1],
        "epoch": 2,
        "train_loss": float("nan"),  # written by an older dasvit; read as null: every number read is finite
        "seconds": 10**400,  # read as null too (beyond a 64-bit integer)
        "val_acc": "0.5",
        "arch_weights": {"0->2": {"skip": "x"}},
        "points": [1, {"flops": "x", "val_acc": 0.5}],  # parts: each item an object, its fields of their type
        "fairness": {"skip": "x", "total": 0.1},  # likewise
        "resumed": 1,
        "newer_field": {"anything": 1},
    }
    from dasvit.run.jsonio import parse_line

    clean = ev.clean_event(parse_line(json.dumps(line).encode()))  # as every reader reads a line
    assert set(line) - set(clean) == {"time", "stage", "val_acc", "arch_weights", "resumed", "train_loss", "seconds"}
    assert clean["points"] == [{}, {"val_acc": 0.5}] and clean["fairness"] == {"total": 0.1}
    assert clean["newer_field"] == line["newer_field"]
    sampler = {"bins": [{"budget_flops": 1.0, "mean_flops": 0.5, "feasible": 1.0, "entropy": 0.1}]}
    whole = {"type": "epoch", "sampler": sampler, "points": [{"flops": 1.0}], "fairness": {"skip": 0.1}}
    assert ev.clean_event(whole) is whole and ev.clean_event(whole)["sampler"] is sampler  # nothing copied
    assert ev.clean_event({"sampler": {"bins": [1, {"budget_flops": "x", "mean_flops": "y"}]}}) == {
        "sampler": {"bins": [{}, {}]}
    }
    assert ev.clean_event({"sampler": {"bins": "x"}, "points": {}}) == {"sampler": {}}
    good = ev.make_event(ev.RUN_END, status="finished", message="")
    assert ev.clean_event(good) is good
    assert ev.clean_event({"type": "approve", "stage": "1"}) == {"type": "approve"}  # a type it does not know


@pytest.mark.parametrize("run", RECORDED, ids=lambda p: str(p.relative_to(HERE)))
def test_old_runs_still_read_every_event_whole(run):
    """The recorded runs (an older version wrote them): every type known, every field defined and of its
    type, nothing dropped on reading; only fields added since (run_start's threads, ...) may be missing."""
    evs, bad = jsonl.read_events(run)
    assert evs and not bad
    raw = [json.loads(line) for line in (run / layout.EVENTS).read_text().splitlines() if line.strip()]
    assert evs == raw
    kind = raw[0]["kind"]
    for e in raw:
        assert ev.check_event(e, kind, complete=False) is None, e["type"]


def test_the_schema_imports_no_torch():
    code = "import sys, dasvit.run.events; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE.parent)

"""Shared helpers: tiny real searches (synthetic data, few steps) that finish in seconds on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ["DASVIT_THREADS"] = "1"  # the engines run in this process keep to one thread (dasvit.threads)

REPO = Path(__file__).resolve().parent.parent

# A whole three-stage search in a few seconds.
TINY = [
    "search.stages=[{depth: 1, keep: 8, epochs: 2}, {depth: 2, keep: 4, epochs: 2}, {depth: 2, keep: 2, epochs: 2}]",
    "search.steps_per_epoch=3",
    "search.arch_warmup_epochs=1",
    "data.synthetic_train=192",
    "data.synthetic_val=48",
    "data.batch_size=16",
    "space.embed_dim=24",
    "search.pts.dim=8",
]

# A whole focus run in a few seconds: 3 epochs (1 of uniform warm-up) of 4 steps, sampler every 2 steps.
TINY_FOCUS = [
    "focus.epochs=3",
    "focus.warmup_epochs=1",
    "focus.lr_warmup_epochs=1",
    "focus.steps_per_epoch=4",
    "focus.sampler_every=2",
    "focus.batch_size=16",
    "focus.lstm.archs=3",
    "focus.lstm.budgets=1",
    "focus.lstm.batch_size=16",
    "focus.lstm.hidden=16",
    "data.synthetic_train=256",
    "data.synthetic_val=64",
]


def sets(overrides: list[str]) -> list[str]:
    out = []
    for o in overrides:
        out += ["--set", o]
    return out


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "events.jsonl").read_text().splitlines() if line.strip()]


def of_type(evs: list[dict], type_: str) -> list[dict]:
    return [e for e in evs if e["type"] == type_]


def schema_problems(run_dir: Path) -> list[str]:
    """The lines of a run's events.jsonl that its engine's definitions (dasvit.run.events.SCHEMA) do not allow,
    each with why: an unknown type, a field missing, undefined or of the wrong type. [] when all are."""
    from dasvit.run.events import check_event

    evs = events(run_dir)
    kind = next(e["kind"] for e in evs if e["type"] == "run_start")
    return [f"line {i} ({e.get('type')}): {why}" for i, e in enumerate(evs, 1) if (why := check_event(e, kind))]


def engine_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def engine_env(**extra: str) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def start_engine(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        engine_cmd(module, *args), env=engine_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory) -> Path:
    """A finished tiny three-stage search run directory (real engine, in-process)."""
    from dasvit.search.searcher import main

    run_dir = tmp_path_factory.mktemp("search") / "run"
    assert main(["--preset", "demo", "--run-dir", str(run_dir), "--no-progress", *sets(TINY)]) == 0
    return run_dir


@pytest.fixture
def mounts(tmp_path):
    """The file systems a test mounts (a full or read-only tmpfs), unmounted after it."""
    made: list[Path] = []
    yield made
    for m in reversed(made):
        subprocess.run(["umount", "-l", str(m)], check=False)

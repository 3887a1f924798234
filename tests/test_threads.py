"""Every dasvit process lets idle OpenMP threads sleep and computes with the threads it says it chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, events, of_type

PROBE = "import os, dasvit, torch; print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "DASVIT_THREADS")}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=REPO, capture_output=True, text=True)


def test_importing_dasvit_lets_idle_openmp_threads_sleep_unless_told_otherwise():
    assert _python(PROBE).stdout.split()[0] == "PASSIVE"
    assert _python(PROBE, OMP_WAIT_POLICY="ACTIVE").stdout.split()[0] == "ACTIVE"


@pytest.mark.slow  # starts real engines: kept out of the default suite's 5 minutes (pytest -m slow runs it)
def test_engines_use_the_threads_they_report(tmp_path):
    from dasvit.threads import apply_threads

    code = "import dasvit.threads as t; c = t.apply_threads(); import torch; print(c.threads, torch.get_num_threads())"
    assert _python(code, DASVIT_THREADS="1").stdout.split() == ["1", "1"]
    assert _python(code, OMP_NUM_THREADS="1").stdout.split() == ["1", "1"]
    assert _python(code).stdout.split() == ["1", "1"]  # auto: one thread a process
    every = _python(code, DASVIT_THREADS="all").stdout.split()
    assert every[0] == every[1] and int(every[0]) == len(os.sched_getaffinity(0))
    bad = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "--threads", "zero", "search", "--headless", "--preset", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--threads" in bad.stderr
    assert apply_threads().threads == 1  # this test process: conftest's DASVIT_THREADS=1


def test_the_run_start_event_says_what_was_chosen(tiny_search):
    start = of_type(events(tiny_search), "run_start")[0]
    assert start["threads"].startswith("threads: 1 (DASVIT_THREADS=1")

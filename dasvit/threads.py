"""How an engine process uses the CPU: OpenMP's wait policy and the number of intra-op threads.

Torch's CPU kernels run on an OpenMP thread pool whose idle threads, by default, spin for a while before
they sleep. On a machine with other work (a second run, data-loader workers, another user) a spinning
thread holds a core that the thread doing the work needs: measured on 2 cores with other jobs running, a
demo search stage took 617 s with 2 spinning threads, 46 s with 2 threads that sleep when idle, 99 s with
one thread (BENCHMARKS.md has the side-by-side figures). On an idle machine sleeping threads cost instead
(a demo search stage 2.0-2.7x slower than with spinning ones, measured there: an idle core wakes slowly);
`OMP_WAIT_POLICY=ACTIVE` in the environment restores spinning. So every dasvit process asks OpenMP to let idle
threads sleep (`OMP_WAIT_POLICY=PASSIVE`, unless the environment sets it), which must happen before torch
loads OpenMP: `dasvit/__init__.py` calls `configure_openmp` on import.

The number of threads is `--threads` on the command line or `DASVIT_THREADS` (an engine started by the
CLI or the monitor inherits it), else `OMP_NUM_THREADS`, else `auto`: the cores this process may run on,
shared by the ranks torchrun starts on this machine. Every engine prints what it chose.

Torch-free: the CLI imports it to check `--threads` before any engine starts.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .errors import ConfigError

ENV = "DASVIT_THREADS"
WAIT_POLICY = "OMP_WAIT_POLICY"
MAX_THREADS = 1024


def configure_openmp() -> None:
    """Let OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the environment says otherwise; only
    before torch is imported (OpenMP reads it once, when it loads)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's limit counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parse_threads(value: str | int | None, source: str = "--threads") -> int | None:
    """A thread setting: None or "auto" (choose), else a whole number from 1 to MAX_THREADS."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{source} must be auto or a number of threads, got {value!r}.") from None
    if not 1 <= n <= MAX_THREADS:
        raise ConfigError(f"{source} must be between 1 and {MAX_THREADS} threads (or auto), got {n}.")
    return n


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    why: str

    def describe(self) -> str:
        policy = os.environ.get(WAIT_POLICY, "OpenMP's default")
        return f"threads: {self.threads} ({self.why}; idle OpenMP threads: {policy})"


def choose_threads() -> ThreadChoice:
    """The intra-op thread count of this process (see the module docstring for the order of settings)."""
    for name in (ENV, "OMP_NUM_THREADS"):
        raw = os.environ.get(name)
        n = parse_threads(raw, name)
        if n is not None:
            return ThreadChoice(n, f"{name}={n}")
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    n = max(1, cores() // local_ranks)
    shared = f", shared by {local_ranks} ranks" if local_ranks > 1 else ""
    return ThreadChoice(n, f"auto: {cores()} cores{shared}")


def apply_threads() -> ThreadChoice:
    """Set torch's intra-op threads to the choice and return it (engines print `describe()`)."""
    import torch

    choice = choose_threads()
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice

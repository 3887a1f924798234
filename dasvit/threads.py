"""How an engine process uses the CPU: the number of intra-op threads and OpenMP's wait policy.

Torch's CPU kernels run on an OpenMP thread pool. The engines' work on a CPU is many small ops (tiny
ViTs, a few thousand tokens a batch), which a second thread speeds up little, and an idle thread of the
pool either spins (holding a core another job needs) or sleeps (and wakes slowly for the next op).
Measured on 2 cores, idle and beside another job, for a demo search stage, a FocusFormer run and `dasvit
bench --quick` (BENCHMARKS.md, "threads"): one thread was the fastest setting or within 1.2x of it in every
case; two threads that sleep when idle were up to 2.9x slower on the idle machine, two that spin up to
4x slower on the loaded one. So `auto`, the default, is one thread a process; `all` is the cores this
process may run on (shared by the ranks torchrun starts on this machine), for a machine and a workload
where more threads pay (measure with `dasvit --threads all bench --quick`).

The setting is `--threads` on the command line or `DASVIT_THREADS` (an engine started by the CLI or the
monitor inherits it), else `OMP_NUM_THREADS`, else `auto`. Every engine prints what it chose. With more
than one thread, idle OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE`, unless the environment sets it: on
a machine with other work a spinning thread holds the core the working one needs); that must be set
before torch loads OpenMP, so `dasvit/__init__.py` calls `configure_openmp` on import.

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


ALL = "all"


def parse_threads(value: str | int | None, source: str = "--threads") -> int | str | None:
    """A thread setting: None or "auto" (choose: one thread), "all" (this process's cores), else a whole
    number from 1 to MAX_THREADS."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    if str(value).strip().lower() == ALL:
        return ALL
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{source} must be auto, all or a number of threads, got {value!r}.") from None
    if not 1 <= n <= MAX_THREADS:
        raise ConfigError(f"{source} must be between 1 and {MAX_THREADS} threads (or auto or all), got {n}.")
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
        if n == ALL:
            local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
            shared = f", shared by {local_ranks} ranks" if local_ranks > 1 else ""
            return ThreadChoice(max(1, cores() // local_ranks), f"{name}=all: {cores()} cores{shared}")
        if n is not None:
            return ThreadChoice(n, f"{name}={n}")
    return ThreadChoice(1, "auto: one thread a process, the fastest on small ops; --threads all or N for more")


def apply_threads() -> ThreadChoice:
    """Set torch's intra-op threads to the choice and return it (engines print `describe()`)."""
    import torch

    choice = choose_threads()
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice

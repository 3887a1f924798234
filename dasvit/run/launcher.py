"""One launcher for independent jobs: a comparison's retrains, several search seeds, FocusFormer's claim (its
supernets and its picks' retrains). Each job is an engine request with its own run directory, so whatever
ran it, the monitor, the runs list, `--resume` and compare's reuse work as for a run started by hand.

- `LocalLauncher` (the default): N jobs at once on this machine, each a process of its own, its output in
  RUN_DIR/engine.log. On CUDA one GPU a job: each job's CUDA_VISIBLE_DEVICES comes from the pool of
  visible GPUs and goes back to it when the job ends, so two jobs share a GPU only when --jobs asks for
  more jobs than there are GPUs. On a CPU, N jobs of `threads` threads each. One job at a time runs in
  this process instead (its progress on the terminal, no process to start). A job that fails is reported
  with its run directory and log and the others go on; Ctrl-C or SIGTERM stops them all, each keeping
  its last epoch's checkpoint, and a rerun resumes what did not finish and reuses what did.
- `dasvit.run.slurm.SlurmLauncher`: the same jobs as one SLURM job array, through submitit.

`queued()` lists this user's dasvit jobs in SLURM's queue (`squeue`), for `dasvit tui`. `launcher_for(settings)` picks one from a config's `launcher:` section (`LauncherConfig`) with the command
line's flags on top. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, UserError
from . import layout
from .config import LauncherConfig
from .jobs import EXIT_STOPPED, JOB_PREFIX, Job, JobResult, start_detached, state_of

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 120  # a stopped job finishes its step and leaves; past this it is killed
STATUS_SECONDS = 60  # how often a launch says where its running jobs are

# ---------------------------------------------------------------------------------------------
# where local jobs run: GPUs and cores


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them: that variable when it is set, else
    nvidia-smi's list; [] on a machine without."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class GpuPool:
    """GPUs handed to jobs, the least busy first: one job a GPU until every GPU has one."""

    def __init__(self, gpus: list[str]):
        self.busy = {g: 0 for g in gpus}

    def take(self) -> str | None:
        if not self.busy:
            return None
        gpu = min(self.busy, key=lambda g: (self.busy[g], list(self.busy).index(g)))
        self.busy[gpu] += 1
        return gpu

    def give(self, gpu: str | None) -> None:
        if gpu is not None:
            self.busy[gpu] -= 1


class _Signals:
    """Notes every SIGINT / SIGTERM while jobs run in this process, whoever handles it.

    Each engine installs its own handler (stop after this step); one that lands while a job is finishing
    (last evaluation, metrics) lets it finish, and must still stop the launch. The wakeup fd sees every
    signal that has a Python handler. Between jobs SIGTERM stops, as SIGINT does."""

    def __enter__(self) -> _Signals:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        self._old_term = signal.signal(signal.SIGTERM, _raise_stopped)
        return self

    def fired(self) -> bool:
        try:
            data = self._r.recv(4096)
        except BlockingIOError:
            return False
        return any(b in (signal.SIGINT, signal.SIGTERM) for b in data)

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._old_fd)
        signal.signal(signal.SIGTERM, self._old_term)
        self._r.close()
        self._w.close()


# ---------------------------------------------------------------------------------------------
# the local launcher


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    gpu: str | None
    started: float


class LocalLauncher:
    """Jobs on this machine, `jobs` at once (0: one a GPU, else one a core of `threads` threads each)."""

    def __init__(self, jobs: int = 0, threads: int = 1, gpus: list[str] | None = None, in_process: bool = True):
        self.gpus = visible_gpus() if gpus is None else list(gpus)
        self.threads = threads
        self.jobs = jobs or (len(self.gpus) if self.gpus else max(1, cpu_cores() // threads))
        self.in_process = in_process

    def describe(self) -> str:
        where = (
            f"{len(self.gpus)} GPU(s)" if self.gpus else f"{cpu_cores()} CPU core(s), {self.threads} thread(s) a job"
        )
        return f"local: {self.jobs} job(s) at once on {where}"

    def run(
        self, jobs: list[Job], say: Callable[[str], None] = print, what: str = "jobs", where: str = ""
    ) -> list[JobResult]:
        if not jobs:
            return []
        if min(self.jobs, len(jobs)) == 1 and self.in_process:
            return self._in_process(jobs, say)
        return self._processes(jobs, say)

    def _in_process(self, jobs: list[Job], say: Callable[[str], None]) -> list[JobResult]:
        """One after another in this process (the engine's own `run(request)`), stopping after a signal."""
        from .runtime import Stopped

        results: list[JobResult] = []
        with _Signals() as signals:
            for i, job in enumerate(jobs):
                say(f"[{i + 1}/{len(jobs)}] {job.name}: {job.run_dir}")
                t0 = time.time()
                try:
                    code = importlib.import_module(job.request.MODULE).run(job.request)
                except (Stopped, KeyboardInterrupt):
                    code = EXIT_STOPPED
                result = JobResult(job, code, state_of(code), time.time() - t0)
                results.append(result)
                if not result.ok:
                    say(result.describe())
                if code == EXIT_STOPPED or signals.fired():
                    results += [JobResult(j, None, "not started") for j in jobs[i + 1 :]]
                    break
        return results

    def _processes(self, jobs: list[Job], say: Callable[[str], None]) -> list[JobResult]:
        """Each job a process of its own (its own session: a Ctrl-C here is passed on, not sent by the terminal)."""
        from .runtime import Stopped

        pending, running, results = list(jobs), [], {}
        pool = GpuPool(self.gpus)
        slots = min(self.jobs, len(jobs))
        say(f"{len(jobs)} jobs, {self.describe()}")
        stopping, said_at = None, time.time()
        old_term = signal.signal(signal.SIGTERM, _raise_stopped)
        try:
            while pending or running:
                while pending and len(running) < slots and stopping is None:
                    job = pending.pop(0)
                    gpu = pool.take()
                    running.append(_Running(job, self._start(job, gpu), gpu, time.time()))
                    say(f"started {job.name}{f' on GPU {gpu}' if gpu is not None else ''}: {job.run_dir}")
                for r in list(running):
                    code = r.process.poll()
                    if code is None:
                        continue
                    running.remove(r)
                    pool.give(r.gpu)
                    result = JobResult(r.job, code, state_of(code), time.time() - r.started, _where(r.gpu))
                    results[id(r.job)] = result
                    say(result.describe())
                if running and time.time() - said_at >= STATUS_SECONDS:
                    said_at = time.time()
                    say(status_line(running, len(pending), len(results)))
                if pending or running:
                    time.sleep(POLL_SECONDS)
        except (KeyboardInterrupt, Stopped):
            stopping = time.time()
            say(f"stopping {len(running)} running job(s): each keeps its last epoch's checkpoint")
            for r in running:
                _signal(r.process, signal.SIGINT)
            for r in running:
                try:
                    code = r.process.wait(timeout=max(1.0, STOP_GRACE_SECONDS - (time.time() - stopping)))
                except subprocess.TimeoutExpired:
                    _signal(r.process, signal.SIGKILL)
                    code = r.process.wait()
                results[id(r.job)] = JobResult(r.job, code, "stopped", time.time() - r.started, _where(r.gpu))
        finally:
            signal.signal(signal.SIGTERM, old_term)
        return [results.get(id(j)) or JobResult(j, None, "not started") for j in jobs]

    def _start(self, job: Job, gpu: str | None) -> subprocess.Popen:
        run_dir = job.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        layout.check_no_links(run_dir)
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", DASVIT_THREADS=str(self.threads), OMP_NUM_THREADS=str(self.threads)
        )
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return start_detached(job.request.command(), job.log, env)


def status_line(running: list[_Running], waiting: int, done: int) -> str:
    """Where the running jobs are (their last epoch, from their run directories), and how many wait."""
    from .runstatus import summarize

    parts = []
    for r in running:
        s = summarize(r.job.run_dir) if layout.is_run_dir(r.job.run_dir) else None
        where = f"epoch {s.epoch}/{s.stage_epochs}" if s is not None and s.epoch else "starting"
        if s is not None and s.stage and s.kind == "search":
            where = f"stage {s.stage}, {where}"
        parts.append(f"{r.job.name} {where}")
    return f"running: {'; '.join(parts)} · {waiting} waiting, {done} done"


def _raise_stopped(signum, frame) -> None:
    from .runtime import Stopped

    raise Stopped()


def _where(gpu: str | None) -> str:
    return f"GPU {gpu}" if gpu is not None else ""


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# SLURM's queue, for the monitor (no submitit needed)


@dataclass
class QueuedJob:
    job_id: str
    name: str
    state: str
    reason: str
    elapsed: str
    comment: str


def queued(timeout: float = 10.0) -> list[QueuedJob]:
    """This user's dasvit jobs in SLURM's queue (pending and running); [] without SLURM."""
    if shutil.which("squeue") is None:
        return []
    try:
        out = subprocess.run(
            ["squeue", "--me", "-h", "-o", "%i|%j|%T|%r|%M|%k"], capture_output=True, text=True, timeout=timeout
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    jobs = []
    for line in out.splitlines():
        parts = line.split("|", 5)
        if len(parts) == 6 and parts[1].startswith(JOB_PREFIX):
            jobs.append(QueuedJob(*(p.strip() for p in parts)))
    return jobs


# ---------------------------------------------------------------------------------------------
# choosing one


def settings_with(settings: LauncherConfig, **flags: Any) -> LauncherConfig:
    """The config's launcher settings with the command line's flags (those not None) on top, checked."""
    given = {k: v for k, v in flags.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(LauncherConfig)}
    if unknown:
        raise ValueError(f"not launcher settings: {sorted(unknown)}")
    out = dataclasses.replace(settings, **given)
    if out.executor not in ("local", "slurm"):
        raise ConfigError(f"--executor is local or slurm, got {out.executor!r}.")
    from .config import Config
    from .config_check import _validate_launcher

    try:
        _validate_launcher(Config(launcher=out))
    except ConfigError as e:  # a flag's value is named as the user typed it
        key = str(e).split(" ", 1)[0].removeprefix("launcher.")
        if key in given:
            raise ConfigError(f"--{key.replace('_', '-')} (launcher.{key}) {str(e).split(' ', 1)[1]}") from None
        raise
    return out


def launcher_for(settings: LauncherConfig, in_process: bool = True):
    """The launcher `settings` name: a LocalLauncher, or a SlurmLauncher (which needs submitit)."""
    if settings.executor == "local":
        return LocalLauncher(settings.jobs, settings.threads, in_process=in_process)
    if shutil.which("sbatch") is None:
        raise UserError(
            "--executor slurm needs SLURM's sbatch on this machine's PATH; run it on a cluster's login node."
        )
    try:
        from .slurm import SlurmLauncher
    except ImportError:
        raise UserError('--executor slurm needs submitit: pip install "dasvit[slurm]".') from None
    return SlurmLauncher(settings)

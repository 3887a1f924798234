"""Jobs on a SLURM cluster through submitit (`pip install "dasvit[slurm]"`): `--executor slurm`.

- Independent jobs (`SlurmLauncher.run`) go as one job array, `launcher.jobs` of its tasks running at once
  (0: as many as the cluster gives). Each task is an `EngineJob`: it runs the engine as a child process,
  its output appended to RUN_DIR/engine.log, and decides when it starts what to do from the run
  directory: a finished run is left alone, one with a checkpoint is resumed (`--resume`), anything else
  starts afresh. So a task that SLURM preempts or times out (SIGUSR2 first: submitit checkpoints the
  task and requeues it) resumes from its last epoch; so does one requeued from outside (`scontrol
  requeue`, which restarts the submitted task), and so does a rerun of the command after a task died.
- One search or retrain across nodes (`SlurmLauncher.run_distributed`): one job of `launcher.nodes` nodes,
  one task a node, each running torchrun with its node's rank; the rendezvous is the first node's address
  (SLURM's NodeAddr), the port drawn from the job id. The run directory must be on storage every node sees;
  rank 0 writes it, as on one machine.

The submitting process waits for the jobs and reports each as it ends; Ctrl-C leaves them running in SLURM
(`scancel` stops them) and a rerun of the same command collects them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import submitit
from submitit.core.utils import UncompletedJobError

from . import layout, runstatus
from .config import LauncherConfig
from .jobs import EXIT_OK, JOB_PREFIX, Job, JobResult, state_of
from .requests import EngineRequest

STOP_SECONDS = 60  # how long a checkpointed task waits for its engine to stop before it is requeued
STATUS_SECONDS = 60  # how often the submitting process says where the array's tasks are


def resume_request(request: EngineRequest) -> EngineRequest:
    """The request that continues `request`'s run from its checkpoint."""
    run_dir = request.resume if request.resume is not None else request.run_dir
    return type(request)(resume=Path(run_dir), progress=False)


class EngineJob(submitit.helpers.Checkpointable):
    """One engine run as a SLURM task: afresh, resumed or left alone, as its run directory says."""

    def __init__(self, fresh: list[str], resume: list[str], run_dir: str, threads: int = 1):
        self.fresh, self.resume, self.run_dir, self.threads = fresh, resume, run_dir, threads
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str] | None:
        """What this task runs now: None for a finished run, the resume for one with a checkpoint."""
        run_dir = Path(self.run_dir)
        if layout.is_run_dir(run_dir) and runstatus.summarize(run_dir).status == "finished":
            return None
        return self.resume if (run_dir / layout.CHECKPOINT).is_file() else self.fresh

    def __call__(self) -> int:
        cmd = self.command()
        if cmd is None:
            return EXIT_OK
        run_dir = Path(self.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        threads = os.environ.get("SLURM_CPUS_PER_TASK", str(self.threads))
        env = dict(os.environ, PYTHONUNBUFFERED="1", DASVIT_THREADS=threads, OMP_NUM_THREADS=threads)
        with open(run_dir / layout.ENGINE_LOG, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            return self._proc.wait()

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """SLURM is about to stop this task (preemption, time limit): stop the engine at its step's end (its
        last epoch's checkpoint stays) and requeue the same task, which resumes from it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
        return submitit.helpers.DelayedSubmission(EngineJob(self.fresh, self.resume, self.run_dir, self.threads))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _proc=None)


def node_address(name: str) -> str:
    """The address SLURM reaches a node at (its NodeAddr), else the name itself."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "node", name, "-o"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return name
    for field in out.split():
        if field.startswith("NodeAddr="):
            return field.partition("=")[2] or name
    return name


class TorchrunJob:
    """One task a node of a multi-node job: torchrun with this node's rank, the first node the rendezvous."""

    def __init__(self, module: str, argv: list[str], nproc_per_node: int, run_dir: str):
        self.module, self.argv, self.nproc, self.run_dir = module, argv, nproc_per_node, run_dir

    def __call__(self) -> int:
        env = submitit.JobEnvironment()
        master = node_address(env.hostnames[0])
        port = 20000 + int(str(env.job_id).split("_")[0]) % 20000
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={env.num_nodes}",
            f"--node_rank={env.node}",
            f"--nproc_per_node={self.nproc}",
            f"--master_addr={master}",
            f"--master_port={port}",
            "-m",
            self.module,
            *self.argv,
        ]
        threads = os.environ.get("SLURM_CPUS_PER_TASK", "1")
        penv = dict(os.environ, PYTHONUNBUFFERED="1", DASVIT_THREADS=threads, OMP_NUM_THREADS=threads)
        for var in (
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        ):  # submitit's: torchrun sets its own
            penv.pop(var, None)
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(self.run_dir) / f"node{env.node}.log", "ab") as log:
            return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=penv)


class SlurmLauncher:
    """Jobs as a SLURM job array (see the module's docstring)."""

    def __init__(self, settings: LauncherConfig):
        self.settings = settings

    def describe(self) -> str:
        s = self.settings
        cap = f", {s.jobs} at once" if s.jobs else ""
        gpus = f", {s.gpus_per_job} GPU(s)" if s.gpus_per_job else ""
        return (
            f"slurm: partition {s.partition or '(default)'}{cap}, {s.cpus_per_job} CPU(s){gpus} and {s.time} min a job"
        )

    def executor(self, name: str, comment: str, nodes: int = 1, array: int = 0) -> submitit.AutoExecutor:
        s = self.settings
        ex = submitit.AutoExecutor(folder=str(Path(s.folder) / "%j"), cluster="slurm")
        extra = {"comment": comment[:200], **s.slurm_options}
        params = {
            "name": name,
            "timeout_min": s.time,
            "nodes": nodes,
            "tasks_per_node": 1,
            "cpus_per_task": s.cpus_per_job,
            "slurm_additional_parameters": extra,
        }
        if s.partition:
            params["slurm_partition"] = s.partition
        if s.gpus_per_job:
            params["gpus_per_node"] = s.gpus_per_job
        if s.mem_gb:
            params["mem_gb"] = s.mem_gb
        if array:
            params["slurm_array_parallelism"] = s.jobs or array
        ex.update_parameters(**params)
        return ex

    def run(
        self, jobs: list[Job], say: Callable[[str], None] = print, what: str = "jobs", where: str = ""
    ) -> list[JobResult]:
        if not jobs:
            return []
        ex = self.executor(f"{JOB_PREFIX}-{what}", f"dasvit {what}: {where}", array=len(jobs))
        tasks = [
            EngineJob(
                j.request.command(), resume_request(j.request).command(), str(j.run_dir), self.settings.cpus_per_job
            )
            for j in jobs
        ]
        with ex.batch():
            futures = [ex.submit(t) for t in tasks]
        array = str(futures[0].job_id).split("_")[0]
        say(f"submitted {len(jobs)} jobs as SLURM array {array} ({self.describe()}); logs in {self.settings.folder}/")
        return self._wait(jobs, futures, say, array)

    def _wait(self, jobs: list[Job], futures: list, say: Callable[[str], None], array: str) -> list[JobResult]:
        t0, results, said_at = time.time(), {}, time.time()
        try:
            while len(results) < len(jobs):
                for j, f in zip(jobs, futures):
                    if id(j) in results or not f.done():
                        continue
                    results[id(j)] = result = _result(j, f, time.time() - t0)
                    say(result.describe())
                if len(results) < len(jobs) and time.time() - said_at >= STATUS_SECONDS:
                    said_at = time.time()
                    states = [str(f.state) for j, f in zip(jobs, futures) if id(j) not in results]
                    counts = {s: states.count(s) for s in dict.fromkeys(states)}
                    say(
                        f"SLURM array {array}: "
                        + ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
                        + f", {len(results)} done"
                    )
                if len(results) < len(jobs):
                    time.sleep(2.0)
        except KeyboardInterrupt:
            say(
                f"stopped waiting; the jobs go on in SLURM (squeue; scancel {array} stops them): run the same command "
                "again to collect them (finished runs are reused)"
            )
            return [
                results.get(id(j)) or JobResult(j, None, "stopped", detail=f"slurm job {f.job_id}")
                for j, f in zip(jobs, futures)
            ]
        return [results[id(j)] for j in jobs]

    def run_distributed(self, request: EngineRequest, nproc_per_node: int, say: Callable[[str], None] = print) -> int:
        """One search or retrain over `launcher.nodes` nodes, `nproc_per_node` ranks a node; its exit code."""
        s = self.settings
        run_dir = Path(request.resume if request.resume is not None else request.run_dir)
        ex = self.executor(f"{JOB_PREFIX}-{request.KIND}", f"dasvit {request.KIND}: {run_dir}", nodes=s.nodes)
        job = ex.submit(TorchrunJob(request.MODULE, request.argv(), nproc_per_node, str(run_dir)))
        say(
            f"submitted {request.KIND} as SLURM job {job.job_id}: {s.nodes} node(s) x {nproc_per_node} rank(s) "
            f"({self.describe()}); run directory {run_dir}"
        )
        result = _result(Job(request.KIND, request), job, 0.0)
        say(result.describe())
        return result.code if result.code is not None else 1


def _result(job: Job, future, seconds: float) -> JobResult:
    """A finished submitit job as a JobResult: its exit code, or how SLURM ended it."""
    detail = f"slurm job {future.job_id}"
    task_log = Path(future.paths.stdout)  # submitit's output of the task: there when the engine never started
    try:
        codes = future.results() if future.num_tasks > 1 else [future.result()]  # a multi-node job: a task a node
    except UncompletedJobError:
        state = str(future.state)
        state_name = "cancelled" if "CANCEL" in state else state.lower()
        return JobResult(job, None, state_name, seconds, f"{detail}, {state}", task_log)
    except Exception as e:  # the task itself raised: submitit carries its traceback
        first = str(e).strip().splitlines()
        return JobResult(
            job, 1, "failed", seconds, f"{detail}: {first[-1][:200] if first else type(e).__name__}", task_log
        )
    code = next((c for c in codes if c != EXIT_OK), EXIT_OK)
    return JobResult(job, code, state_of(code), seconds, detail, task_log)

#!/usr/bin/env python3
"""End-to-end checks of submitit against the local SLURM test cluster (ci/slurm/up.sh).

Usage:
    source /tmp/dasvit-slurm/env.sh            # SLURM_CONF, DASVIT_SLURM_PARTITION
    python ci/slurm/check_submitit.py --folder /tmp/submitit-check [--only result,array,...]

Checks (each one a function ``check_<name>(folder, partition)`` so pytest can call it):
    result     one job returning a value, result() and its latency
    array      executor.map_array over 3 inputs; tasks run concurrently
    cancel     a running job is cancelled; result() raises UncompletedJobError (no hang)
    preempt    Checkpointable job gets USR2 (what SLURM sends before timeout/preemption);
               submitit checkpoints it, runs `scontrol requeue` itself, the job resumes from
               the checkpointed state
    requeue    an external `scontrol requeue` of a running Checkpointable job: the job is
               killed (submitit ignores SIGTERM), restarts from its submitted pickle and
               result() still returns
    twonode    nodes=2, tasks_per_node=1: one task per node, SLURM_PROCID / SLURM_NODEID
               (needs DASVIT_SLURM_NODES=2; skipped with 1 node)
Exit status 0 when every selected check passed (a skip counts as passed).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import typing as tp
from pathlib import Path

import submitit
from submitit.core.utils import UncompletedJobError

CHECKS = ("result", "array", "cancel", "preempt", "requeue", "twonode")
DEFAULT_PARTITION = os.environ.get("DASVIT_SLURM_PARTITION", "dasvit")


class Skip(Exception):
    pass


# --------------------------------------------------------------------------- job functions
def add(a: int, b: int) -> int:
    return a + b


def square_timed(x: int) -> dict:
    start = time.time()
    time.sleep(3)
    return {
        "x": x,
        "y": x * x,
        "start": start,
        "end": time.time(),
        "node": os.environ.get("SLURMD_NODENAME"),
        "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }


def sleep_forever(seconds: float = 600) -> str:
    time.sleep(seconds)
    return "not cancelled"


def whoami() -> dict:
    env = submitit.JobEnvironment()
    return {
        "SLURM_PROCID": os.environ.get("SLURM_PROCID"),
        "SLURM_NODEID": os.environ.get("SLURM_NODEID"),
        "SLURMD_NODENAME": os.environ.get("SLURMD_NODENAME"),
        "SLURM_JOB_NODELIST": os.environ.get("SLURM_JOB_NODELIST"),
        "global_rank": env.global_rank,
        "num_tasks": env.num_tasks,
        "hostname": socket.gethostname(),
    }


class Counter(submitit.helpers.Checkpointable):
    """Counts to n_steps, one step a second, writing its progress to progress_file.

    Its attributes (step, starts) are pickled by Checkpointable.checkpoint(), so a job
    resumed from a checkpoint continues counting where it was.
    """

    def __init__(self) -> None:
        self.step = 0
        self.starts: tp.List[int] = []

    def __call__(self, n_steps: int, progress_file: str) -> dict:
        self.starts.append(self.step)
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        while self.step < n_steps:
            time.sleep(1)
            self.step += 1
            Path(progress_file).write_text(f"{restart} {self.step}\n")
        return {"step": self.step, "starts": self.starts, "restart_count": int(restart)}


# --------------------------------------------------------------------------- helpers
def make_executor(folder: Path, partition: str, **params: tp.Any) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params.setdefault("timeout_min", 10)
    executor.update_parameters(slurm_partition=partition, **params)
    return executor


def result_within(job: submitit.Job, timeout: float, all_tasks: bool = False) -> tp.Any:
    """job.result() (or results()) in a daemon thread; raises TimeoutError instead of hanging."""
    out: dict = {}

    def target() -> None:
        try:
            out["value"] = job.results() if all_tasks else job.result()
        except BaseException as e:  # noqa: BLE001 -- reported to the caller
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"job {job.job_id}: result() did not return within {timeout}s (state {job.state})")
    if "error" in out:
        raise out["error"]
    return out["value"]


def slurm_state(job_id: str) -> str:
    """Current state from squeue (empty string once the job left the queue)."""
    r = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return r.stdout.strip()


def wait_until(pred: tp.Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> float:
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
    return time.time() - t0


def read_progress(path: Path) -> tp.Tuple[int, int]:
    try:
        restart, step = path.read_text().split()
        return int(restart), int(step)
    except (OSError, ValueError):
        return -1, -1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- checks
def check_result(folder: Path, partition: str) -> dict:
    ex = make_executor(folder / "result", partition, timeout_min=5)
    t0 = time.time()
    job = ex.submit(add, 2, 3)
    t_submit = time.time() - t0
    value = result_within(job, 60)
    latency = time.time() - t0
    assert value == 5, value
    log(f"result: job {job.job_id} returned {value}; sbatch {t_submit:.2f}s, submit->result {latency:.2f}s")
    return {"job_id": job.job_id, "value": value, "submit_s": t_submit, "latency_s": latency}


def check_array(folder: Path, partition: str) -> dict:
    ex = make_executor(folder / "array", partition, timeout_min=5)
    t0 = time.time()
    jobs = ex.map_array(square_timed, [1, 2, 3])
    results = [result_within(j, 120) for j in jobs]
    latency = time.time() - t0
    assert [r["y"] for r in results] == [1, 4, 9], results
    # at least two of the three tasks overlapped in time (the cluster runs >= 2 jobs at once)
    overlaps = sum(
        1 for i, a in enumerate(results) for b in results[i + 1 :] if a["start"] < b["end"] and b["start"] < a["end"]
    )
    assert overlaps >= 1, f"array tasks never overlapped: {results}"
    log(
        f"array: jobs {[j.job_id for j in jobs]} -> {[r['y'] for r in results]} on nodes "
        f"{[r['node'] for r in results]}; overlapping pairs {overlaps}; total {latency:.2f}s"
    )
    return {"job_ids": [j.job_id for j in jobs], "overlaps": overlaps, "total_s": latency}


def check_cancel(folder: Path, partition: str) -> dict:
    ex = make_executor(folder / "cancel", partition, timeout_min=10)
    job = ex.submit(sleep_forever, 600)
    wait_until(lambda: slurm_state(job.job_id) == "RUNNING", 60, f"job {job.job_id} RUNNING")
    t0 = time.time()
    job.cancel(check=True)
    try:
        value = result_within(job, 90)
    except UncompletedJobError as e:
        dt = time.time() - t0
        state = job.watcher.get_state(job.job_id, mode="force")
        log(
            f"cancel: job {job.job_id} -> result() raised UncompletedJobError after {dt:.2f}s; "
            f"sacct state {state!r}: {str(e).splitlines()[0][:160]}"
        )
        assert state.upper().startswith("CANCELLED"), state
        return {"job_id": job.job_id, "result_raised_after_s": dt, "state": state}
    raise AssertionError(f"cancelled job returned {value!r}")


def _run_counter(folder: Path, partition: str, name: str, n_steps: int) -> tp.Tuple[submitit.Job, Path]:
    ex = make_executor(folder / name, partition, timeout_min=10)
    progress = (folder / name / "progress.txt").resolve()
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.unlink(missing_ok=True)
    job = ex.submit(Counter(), n_steps, str(progress))
    wait_until(lambda: read_progress(progress)[1] >= 3, 90, f"job {job.job_id} to count to 3")
    return job, progress


def _restart_fast(job_id: str, hold_s: float) -> tp.Tuple[float, str]:
    """Wait until the requeued job is PENDING, optionally release its begin-time hold.

    A requeued job gets BeginTime = now + cred_expire + 1 (AuthInfo cred_expire, 10 s in
    up.sh, 120 s by default); `scontrol update JobId=N StartTime=now` releases it. Releasing
    it in the same second as the kill makes the relaunch fail ("Killing non-startable batch
    JobId=N: Job credential revoked", job FAILED), hence hold_s (>= 2 s) before the update.
    hold_s < 0 means: do not release, measure the natural delay.
    """
    t0 = time.time()
    wait_until(
        lambda: slurm_state(job_id) in ("PENDING", "REQUEUE_HOLD", "REQUEUED", "REQUEUE_FED"),
        60,
        f"job {job_id} to be requeued",
    )
    how = "natural BeginTime hold"
    if hold_s >= 0:
        time.sleep(hold_s)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
        how = f"scontrol update StartTime=now {hold_s:g}s after PENDING"
    wait_until(lambda: slurm_state(job_id) == "RUNNING", 180, f"job {job_id} to run again")
    return time.time() - t0, how


def check_preempt(folder: Path, partition: str, release: bool = True) -> dict:
    job, progress = _run_counter(folder, partition, "preempt", n_steps=12)
    _, step_at_signal = read_progress(progress)
    t0 = time.time()
    # what SLURM does at --signal=USR2@90 before the time limit, or on preemption
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    pending_to_running, how = _restart_fast(job.job_id, 2 if release else -1)
    value = result_within(job, 120)
    log(
        f"preempt: job {job.job_id} got USR2 at step ~{step_at_signal}; requeued by submitit, running "
        f"again {pending_to_running:.1f}s later ({how}); result {value}; total {time.time() - t0:.1f}s"
    )
    assert value["step"] == 12, value
    assert value["restart_count"] >= 1, value
    assert len(value["starts"]) == 2 and value["starts"][1] > 0, f"did not resume from checkpoint: {value}"
    return {"job_id": job.job_id, "result": value, "requeue_to_running_s": pending_to_running}


def check_requeue(folder: Path, partition: str, release: bool = True) -> dict:
    job, progress = _run_counter(folder, partition, "requeue", n_steps=8)
    t0 = time.time()
    subprocess.run(["scontrol", "requeue", job.job_id], check=True)
    pending_to_running, how = _restart_fast(job.job_id, 2 if release else -1)
    value = result_within(job, 120)
    log(
        f"requeue: job {job.job_id} requeued externally; running again {pending_to_running:.1f}s later "
        f"({how}); result {value}; total {time.time() - t0:.1f}s"
    )
    assert value["step"] == 8 and value["restart_count"] >= 1, value
    return {"job_id": job.job_id, "result": value, "requeue_to_running_s": pending_to_running}


def check_twonode(folder: Path, partition: str) -> dict:
    nodes = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N"], capture_output=True, text=True)
    if len(set(nodes.stdout.split())) < 2:
        raise Skip("partition has fewer than 2 nodes (start up.sh with DASVIT_SLURM_NODES=2)")
    ex = make_executor(folder / "twonode", partition, timeout_min=5, nodes=2, tasks_per_node=1)
    job = ex.submit(whoami)
    results = result_within(job, 90, all_tasks=True)
    for r in results:
        log(f"twonode: job {job.job_id} task {r}")
    assert sorted(r["SLURM_PROCID"] for r in results) == ["0", "1"], results
    assert sorted(r["SLURM_NODEID"] for r in results) == ["0", "1"], results
    assert len({r["SLURMD_NODENAME"] for r in results}) == 2, results
    return {"job_id": job.job_id, "tasks": results}


# --------------------------------------------------------------------------- main
def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", required=True, type=Path, help="submitit log/pickle folder (created)")
    p.add_argument("--partition", default=DEFAULT_PARTITION)
    p.add_argument("--only", default=",".join(CHECKS), help=f"comma list of {CHECKS}")
    p.add_argument(
        "--no-release",
        action="store_true",
        help="do not `scontrol update StartTime=now` requeued jobs (measures the natural hold)",
    )
    args = p.parse_args(argv)
    if "SLURM_CONF" not in os.environ:
        print("warning: SLURM_CONF is not set; source <DIR>/env.sh written by ci/slurm/up.sh", file=sys.stderr)
    folder = args.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    log(f"submitit {submitit.__version__}, partition {args.partition}, folder {folder}")
    failed = []
    for name in args.only.split(","):
        name = name.strip()
        if name not in CHECKS:
            p.error(f"unknown check {name!r}")
        fn = globals()[f"check_{name}"]
        kwargs = {"release": not args.no_release} if name in ("preempt", "requeue") else {}
        t0 = time.time()
        try:
            fn(folder, args.partition, **kwargs)
            log(f"PASS {name} ({time.time() - t0:.1f}s)")
        except Skip as e:
            log(f"SKIP {name}: {e}")
        except Exception as e:  # noqa: BLE001 -- report and go on
            failed.append(name)
            log(f"FAIL {name} ({time.time() - t0:.1f}s): {type(e).__name__}: {e}")
    log("all passed" if not failed else f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

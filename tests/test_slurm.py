"""`--executor slurm` against a real SLURM cluster on this machine (ci/slurm/up.sh: two slurmd "nodes" on
localhost, with accounting), not a mock: a comparison's retrains as a job array give what the local launcher
gives; a killed task is reported and a rerun finishes it; a preempted retrain resumes from its checkpoint to
the metrics of an uninterrupted one; a search across two nodes under torchrun is one run of two ranks.
Skipped, with the reason, where SLURM is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, engine_env, events, of_type, sets, wait_for

pytestmark = pytest.mark.slurm

RECORDED = Path(__file__).parent / "recorded_run"
CELL = Path(__file__).parent / "fixtures" / "searched_cell.json"
TINY = ["retrain.epochs=1", "retrain.steps_per_epoch=2", "data.synthetic_val=32"]
CLUSTER = Path(os.environ.get("DASVIT_TEST_SLURM_DIR", "/tmp/dasvit-slurm-test"))  # short: munge's socket path


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> dict:
    """The local cluster, started once (ci/slurm/up.sh) and stopped after the session: the environment for
    dasvit's commands (SLURM_CONF, the partition, submitit's folder)."""
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed here (no sbatch/slurmctld): bash ci/slurm/up.sh installs and starts one")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster (ci/slurm/up.sh) starts its daemons as root")
    pytest.importorskip("submitit")
    up = subprocess.run(
        ["bash", str(REPO / "ci" / "slurm" / "up.sh"), str(CLUSTER)], capture_output=True, text=True, timeout=600
    )
    if up.returncode != 0:
        pytest.fail(f"ci/slurm/up.sh failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")
    folder = tmp_path_factory.mktemp("submitit")
    env = dict(engine_env(), SLURM_CONF=str(CLUSTER / "slurm.conf"))
    yield {"env": env, "folder": folder, "partition": "dasvit"}
    subprocess.run(["bash", str(REPO / "ci" / "slurm" / "down.sh"), str(CLUSTER)], capture_output=True, timeout=120)


def dasvit(slurm: dict, *args, wait: bool = True, folder: Path | None = None):
    """`dasvit ARGS --executor slurm ...` as a process (the way a user runs it on a login node)."""
    cmd = [sys.executable, "-m", "dasvit_tui.cli", *map(str, args), "--executor", "slurm", "--partition", "dasvit"]
    cmd += ["--time", "10", "--set", f"launcher.folder={folder or slurm['folder']}"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=slurm["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def squeue(slurm: dict, name: str) -> list[tuple[str, str]]:
    """(job id, state) of the queue's jobs named `name`, array tasks one by one."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-n", name, "-o", "%i|%T"], env=slurm["env"], capture_output=True, text=True
    ).stdout
    return [tuple(line.split("|")) for line in out.split()]


def models(run: Path) -> dict:
    rows = json.loads((run / "compare.json").read_text())["models"]
    return {k: (r["top1"], r["top5"], r["flops"]) for k, r in rows.items()}


def test_a_comparison_as_a_job_array_matches_the_local_launcher(slurm, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    shutil.copytree(RECORDED, local)
    shutil.copytree(RECORDED, cluster)
    proc = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "compare", str(local), "--no-progress", "--random", "1", *sets(TINY)],
        cwd=REPO,
        env=slurm["env"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code, out = dasvit(slurm, "compare", cluster, "--no-progress", "--random", "1", *sets(TINY))
    assert code == 0, out
    assert "submitted 4 jobs as SLURM array" in out
    assert models(cluster) == models(local)


def test_a_killed_array_task_is_reported_and_a_rerun_finishes_it(slurm, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    slow = ["retrain.epochs=3", "retrain.steps_per_epoch=20", "data.synthetic_val=32"]
    proc = dasvit(slurm, "compare", run, "--no-progress", "--jobs", "1", *sets(slow), wait=False)
    running = wait_for(lambda: [j for j, s in squeue(slurm, "dasvit-compare") if s == "RUNNING"], timeout=180)
    from dasvit.run.launcher import queued

    monkeypatch.setenv("SLURM_CONF", slurm["env"]["SLURM_CONF"])
    listed = queued()  # what dasvit tui's runs list shows: the array's tasks, what they run, the pending ones
    assert any(j.state == "PENDING" for j in listed) and all(str(run) in j.comment for j in listed), listed
    subprocess.run(["scancel", running[0]], env=slurm["env"], check=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out
    report = [line for line in out.splitlines() if "cancelled" in line.lower() and "slurm job" in line]
    assert report and "its run directory" in report[0] and "its log" in report[0], out
    assert not (run / "compare.json").exists()
    code, out = dasvit(slurm, "compare", run, "--no-progress", *sets(slow))
    assert code == 0, out
    assert json.loads((run / "compare.json").read_text())["models"]
    assert "reusing" in out  # what finished the first time was not trained again


def test_a_preempted_retrain_resumes_from_its_checkpoint_to_the_same_metrics(slurm, tmp_path):
    recipe = ["retrain.depth=2", "retrain.epochs=6", "retrain.steps_per_epoch=10", "data.synthetic_val=64"]
    preset = tmp_path / "demo.yaml"
    from dasvit.run.presets import dump_config, load_config

    preset.write_text(dump_config(load_config("demo", recipe)))
    plain = tmp_path / "plain"
    done = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "retrain", str(CELL), "--preset", str(preset), "--headless"]
        + ["--no-progress", "--run-dir", str(plain)],
        cwd=REPO,
        env=slurm["env"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "preempted"
    proc = dasvit(slurm, "retrain", CELL, "--preset", preset, "--headless", "--run-dir", run, wait=False)
    wait_for(lambda: (run / "checkpoint.pt").is_file(), timeout=300)
    (job,) = [j for j, s in squeue(slurm, "dasvit-retrain") if s == "RUNNING"]
    # what SLURM sends before a time limit or a preemption: submitit checkpoints the task and requeues it
    subprocess.run(["scancel", "--signal=USR2", job], env=slurm["env"], check=True)
    wait_for(lambda: any(s == "PENDING" for _, s in squeue(slurm, "dasvit-retrain")), timeout=120)
    time.sleep(2.5)  # released in the same second as the kill, a requeued job fails ("credential revoked")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm["env"], check=False)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    starts = of_type(events(run), "run_start")
    assert len(starts) >= 2 and starts[-1]["resumed"], starts  # the requeued task resumed: it did not start afresh
    want, got = (json.loads((d / "metrics.json").read_text()) for d in (plain, run))
    assert (got["top1"], got["top5"], got["best_epoch"]) == (want["top1"], want["top5"], want["best_epoch"])


def test_a_search_across_two_nodes_is_one_run_of_two_ranks(slurm, tmp_path):
    run = tmp_path / "search"
    tiny = [
        "search.stages=[{depth: 1, keep: 8, epochs: 1}, {depth: 1, keep: 4, epochs: 1}, {depth: 1, keep: 2, epochs: 1}]",
        "search.steps_per_epoch=2",
        "data.batch_size=8",
    ]
    code, out = dasvit(slurm, "search", "--preset", "demo", "--headless", "--nodes", "2", "--run-dir", run, *sets(tiny))
    assert code == 0, out
    (start,) = of_type(events(run), "run_start")
    assert start["world_size"] == 2
    assert of_type(events(run), "run_end")[-1]["status"] == "finished" and (run / "genotype.json").is_file()

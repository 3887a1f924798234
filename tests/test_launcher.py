"""The local launcher: jobs side by side give what one at a time gives, a failing job is reported with its run
directory and log while the others finish, and each job gets its own GPU from the pool."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dasvit.run.config import LauncherConfig
from dasvit.run.jobs import Job, exit_code
from dasvit.run.launcher import GpuPool, LocalLauncher, settings_with
from dasvit.run.presets import dump_config, load_config
from dasvit.run.requests import RetrainRequest
from dasvit_tui.cli import app

RECORDED = Path(__file__).parent / "recorded_run"
CELL = Path(__file__).parent / "fixtures" / "searched_cell.json"
TINY = ["retrain.epochs=1", "retrain.steps_per_epoch=2", "data.synthetic_val=32"]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_two_jobs_at_once_give_the_same_comparison_as_one_at_a_time(tmp_path):
    runs = {}
    for jobs in (1, 2):
        run = runs[jobs] = tmp_path / f"jobs{jobs}"
        shutil.copytree(RECORDED, run)
        result = CliRunner().invoke(
            app, ["compare", str(run), "--jobs", str(jobs), "--no-progress", "--format", "json", *sets(TINY)]
        )
        assert result.exit_code == 0, result.output
    one, two = (json.loads((runs[j] / "compare.json").read_text())["models"] for j in (1, 2))
    assert one.keys() == two.keys() and len(one) >= 3
    for key in one:
        assert (one[key]["top1"], one[key]["top5"], one[key]["flops"]) == (
            two[key]["top1"],
            two[key]["top5"],
            two[key]["flops"],
        )
    # side by side, each retrain kept its output in its own engine.log
    assert all((runs[2] / row["dir"] / "engine.log").is_file() for row in two.values())


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    import dasvit.run.launcher as launcher

    monkeypatch.setattr(launcher, "STATUS_SECONDS", 0.0)  # say where the running jobs are at every poll
    preset = tmp_path / "demo.yaml"
    preset.write_text(dump_config(load_config("demo", ["retrain.depth=1", *TINY])))
    broken = tmp_path / "broken.yaml"
    broken.write_text(dump_config(load_config("demo", ["data.name=imagefolder", f"data.root={tmp_path / 'nowhere'}"])))
    good = Job("good", RetrainRequest(str(CELL), str(preset), [], tmp_path / "good", progress=False))
    bad = Job("bad", RetrainRequest(str(CELL), str(broken), [], tmp_path / "bad", progress=False))
    said: list[str] = []
    results = LocalLauncher(jobs=2, gpus=[]).run([bad, good], said.append)
    by_name = {r.job.name: r for r in results}
    assert by_name["good"].ok and (tmp_path / "good" / "metrics.json").is_file()
    failed = by_name["bad"]
    assert failed.state == "user error" and failed.code == 2 and exit_code(results) == 2
    line = failed.describe()
    assert str(tmp_path / "bad") in line and "engine.log" in line and "was not found" in line
    assert any(line == s for s in said)
    assert any(s.startswith("running: ") and "good " in s for s in said)  # where a running job is, while it runs


@dataclass
class _PrintsItsGpu:
    """A request whose engine prints the GPU it was given (what the launcher hands every job alike)."""

    run_dir: Path
    resume: Path | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]


def test_each_local_job_gets_its_own_gpu_until_every_gpu_has_one(tmp_path):
    jobs = [Job(f"j{k}", _PrintsItsGpu(tmp_path / f"j{k}")) for k in range(3)]
    results = LocalLauncher(jobs=2, gpus=["3", "5"]).run(jobs, lambda _: None)
    assert all(r.ok for r in results)
    seen = [(tmp_path / f"j{k}" / "engine.log").read_text().strip() for k in range(3)]
    assert sorted(seen[:2]) == ["3", "5"] and seen[2] in ("3", "5")  # two at once: never the same GPU
    pool = GpuPool(["0", "1"])
    assert [pool.take(), pool.take(), pool.take()] == ["0", "1", "0"]


def test_launcher_settings_from_the_config_and_the_flags(monkeypatch, capsys):
    from dasvit_tui.cli import main

    s = settings_with(LauncherConfig(jobs=3, partition="cpu"), jobs=None, executor="slurm", time=30)
    assert (s.jobs, s.executor, s.partition, s.time) == (3, "slurm", "cpu", 30)
    for flags, words in [
        (["--executor", "cloud"], "--executor is local or slurm"),
        (["--jobs", "-1"], "--jobs (launcher.jobs) must be between 0"),
        (["--gpus-per-job", "99"], "--gpus-per-job (launcher.gpus_per_job)"),
    ]:
        monkeypatch.setattr(sys, "argv", ["dasvit", "compare", str(RECORDED), *flags])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_search_seeds_run_as_jobs_and_a_rerun_reuses_them(tmp_path, monkeypatch, capsys):
    from conftest import TINY
    from dasvit.run.presets import load_run_config
    from dasvit_tui.cli import main

    argv = ["dasvit", "search", "--headless", "--preset", "demo", "--seeds", "3,5", "--run-dir", str(tmp_path / "s")]
    monkeypatch.setattr(sys, "argv", [*argv, "--jobs", "2", *sets(TINY)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    for k in (3, 5):
        run = tmp_path / f"s-s{k}"
        assert (run / "genotype.json").is_file() and load_run_config(run / "config.yaml").search.seed == k
    assert "2 of 2 jobs finished" in out
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.count("has finished; reused") == 2

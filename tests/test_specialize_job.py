"""The specialize job's protocol (dasvit_tui/specialize_job.py, docs/architecture.md): what `dasvit
specialize --format json` writes on stderr and stdout, and what the monitor's job reads from a child.
The children here are small Python scripts that speak the protocol; no supernet is trained."""

from __future__ import annotations

import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from dasvit_tui.commands.specialize import json_progress
from dasvit_tui.specialize_job import Budget, SpecializeJob, progress_line, read_progress


def test_a_progress_line_is_one_json_object_with_evaluated_and_only_that_is_progress():
    line = progress_line(3, 100, 420_000, 0.25, 0.5, 400_000)
    assert "\n" not in line
    assert read_progress(line + "\n") == {
        "evaluated": 3,
        "samples": 100,
        "flops": 420_000,
        "top1": 0.25,
        "best_top1": 0.5,
        "best_flops": 400_000,
    }
    for text in ("dasvit: the FLOPs budget is below the space.\n", "[1, 2]\n", '{"samples": 100}\n', "\n", "{"):
        assert read_progress(text) is None


@dataclass
class _Candidate:
    order: int
    flops: int
    top1: float


def test_the_command_writes_the_lines_the_job_reads_with_the_best_so_far(capsys):
    on_eval = json_progress(3)
    for c in (_Candidate(1, 500, 0.2), _Candidate(2, 400, 0.4), _Candidate(3, 300, 0.3)):
        on_eval(c)
    lines = [read_progress(line) for line in capsys.readouterr().err.splitlines()]
    assert [(p["evaluated"], p["samples"], p["flops"], p["top1"]) for p in lines] == [
        (1, 3, 500, 0.2),
        (2, 3, 400, 0.4),
        (3, 3, 300, 0.3),
    ]
    assert [(p["best_top1"], p["best_flops"]) for p in lines] == [(0.2, 500), (0.4, 400), (0.4, 400)]


class _ScriptedJob(SpecializeJob):
    """A job whose child is a script instead of `dasvit specialize`."""

    script: str = ""

    def command(self) -> list[str]:
        return [sys.executable, "-c", textwrap.dedent(self.script)]


def _run(script: str, tmp_path: Path) -> SpecializeJob:
    job = _ScriptedJob(tmp_path, Budget(420_000, None, "420K"), samples=10)
    job.script = script
    job.start()
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not job.running
    return job


def test_the_job_follows_progress_and_takes_the_answer_from_stdout(tmp_path):
    answer = {"genotype": str(tmp_path / "specialized" / "420K.json"), "notes": []}
    job = _run(
        f"""
        import json, sys
        from dasvit_tui.specialize_job import progress_line
        print("a warning on stderr", file=sys.stderr)
        for n in (1, 2):
            print(progress_line(n, 2, 1000 * n, 0.1 * n, 0.1 * n, 1000 * n), file=sys.stderr, flush=True)
        print(json.dumps({answer!r}))
        """,
        tmp_path,
    )
    assert job.error is None and job.result == answer
    assert (job.evaluated, job.samples, job.best_top1, job.best_flops) == (2, 2, 0.2, 2000)
    assert job.genotype_path == tmp_path / "specialized" / "420K.json"


def test_a_refused_input_is_the_last_stderr_sentence_and_a_failure_says_its_exit_code(tmp_path):
    refused = _run(
        """
        import sys
        print("dasvit: the FLOPs budget 420K is below the space's smallest architecture.", file=sys.stderr)
        sys.exit(2)
        """,
        tmp_path,
    )
    assert refused.result is None
    assert refused.error == "the FLOPs budget 420K is below the space's smallest architecture."
    failed = _run("import sys; print('Traceback: boom', file=sys.stderr); sys.exit(1)", tmp_path)
    assert failed.error == "dasvit specialize failed (exit 1): Traceback: boom"
    silent = _run("print('not json')", tmp_path)
    assert silent.error == "dasvit specialize gave no JSON answer."


def test_cancel_ends_the_child_and_says_so(tmp_path):
    job = _ScriptedJob(tmp_path, Budget(420_000))
    job.script = "import time; time.sleep(60)"
    job.start()
    job.cancel()
    deadline = time.monotonic() + 30
    while job.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.error == "cancelled." and job.result is None

"""`dasvit specialize` as a job of the FocusFormer monitor, and the protocol it speaks to the monitor.

The monitor's specialize dialog (`screens/specialize.py`) never imports torch, so it runs `dasvit
specialize` in a child process and follows it from a thread (`SpecializeJob`). The child writes no run
directory while it works, only its answer at the end (RUN_DIR/specialized/<budget>.json), so it reports on
its standard streams instead. This module holds both sides of that protocol: `progress_line` is what the
command writes (`dasvit_tui.commands.specialize`), `read_progress` and `SpecializeJob` read it. The same
protocol is written down in docs/architecture.md, beside the run-directory contract.

The child, started by `SpecializeJob.start`:

    python -m dasvit_tui.cli specialize RUN_DIR --flops F --samples N --format json [--params P]

with stdin closed and in a session of its own (a Ctrl+C in the TUI does not reach it).

stderr, read line by line while it runs:
- one progress line per evaluated architecture, a JSON object on one line:
      {"evaluated": n, "samples": N, "flops": f, "top1": t, "best_top1": b, "best_flops": bf}
  n is the evaluations done so far (1 … N); f and t are the FLOPs (fvcore's count, one image) and the
  inherited-weight top-1 (a fraction in [0, 1]) of the architecture just evaluated; b and bf those of the
  best one so far. A line is progress when it is a JSON object with an "evaluated" key, and only then.
- any other line is text: warnings, a traceback, or the one sentence of a refused input
  (`dasvit: <sentence>`). The reader keeps the last 20 non-empty ones.

stdout: with exit code 0, one JSON document, the whole answer (`Result.to_json()` of
`dasvit/focus/specialize.py`): `method`, `flops_budget`, `params_budget`, `evaluations`, `found_at`,
`seconds`, `best`, `front`, `genotype` (the path of the genotype file it wrote) and `notes`.

Exit code:
- 0: answered; stdout holds the answer.
- 2: a refused input (a budget below the space, not a focus run, …); the last text line is the sentence.
- anything else: a failure, reported with the last text line; `cancel` sends SIGTERM.

The dialog shows what the child wrote into the run directory: it reads the genotype file named by
`genotype` back (`SpecializeJob.genotype_path`), not the numbers of stdout.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dasvit_tui.launch import cli_command

SAMPLES = 100  # evaluations per specialization: `dasvit specialize`'s default
TEXT_LINES = 20  # the stderr text lines kept: the last one says why a child failed


@dataclass
class Budget:
    flops: int
    params: int | None = None
    text: str = ""  # as typed, for the log


def progress_line(evaluated: int, samples: int, flops: float, top1: float, best_top1: float, best_flops: float) -> str:
    """One progress line of the protocol (without its newline)."""
    line = {"evaluated": evaluated, "samples": samples, "flops": flops, "top1": top1}
    return json.dumps(line | {"best_top1": best_top1, "best_flops": best_flops})


def read_progress(line: str) -> dict[str, Any] | None:
    """The progress object of a stderr line; None for a line of text."""
    try:
        p = json.loads(line)
    except ValueError:
        return None
    return p if isinstance(p, dict) and "evaluated" in p else None


@dataclass
class SpecializeJob:
    """`dasvit specialize` for one budget, in a subprocess read by a thread; poll its fields from the UI."""

    run_dir: Path
    budget: Budget
    samples: int = SAMPLES
    evaluated: int = 0
    best_top1: float | None = None
    best_flops: float | None = None
    result: dict[str, Any] | None = None  # `--format json`'s answer
    error: str | None = None  # one sentence: the engine's, or why it failed
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    _proc: subprocess.Popen | None = None
    _cancelled: bool = False

    @property
    def running(self) -> bool:
        return self.ended is None

    def command(self) -> list[str]:
        args = ["specialize", str(self.run_dir), "--flops", str(self.budget.flops), "--samples", str(self.samples)]
        args += ["--format", "json"] + (["--params", str(self.budget.params)] if self.budget.params is not None else [])
        return cli_command(*args)

    def start(self) -> SpecializeJob:
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl+C in the TUI is not its business
        )
        threading.Thread(target=self._follow, name="specialize", daemon=True).start()
        return self

    def cancel(self) -> None:
        if self._proc is not None and self.running:
            self._cancelled = True
            self._proc.terminate()

    def _follow(self) -> None:
        proc = self._proc
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        reader.start()
        tail: list[str] = []
        for line in proc.stderr:
            p = read_progress(line)
            if p is not None:
                self.evaluated, self.samples = int(p["evaluated"]), int(p.get("samples") or self.samples)
                self.best_top1, self.best_flops = p.get("best_top1"), p.get("best_flops")
            elif line.strip():
                tail = (tail + [line.rstrip()])[-TEXT_LINES:]
        rc = proc.wait()
        reader.join()
        if rc == 0:
            try:
                self.result = json.loads("".join(out))
            except ValueError:
                self.error = "dasvit specialize gave no JSON answer."
        elif self._cancelled:
            self.error = "cancelled."
        else:
            last = tail[-1] if tail else f"dasvit specialize ended with exit code {rc}."
            self.error = last.removeprefix("dasvit: ") if rc == 2 else f"dasvit specialize failed (exit {rc}): {last}"
        self.ended = time.monotonic()

    @property
    def genotype_path(self) -> Path | None:
        path = (self.result or {}).get("genotype")
        return Path(path) if path else None

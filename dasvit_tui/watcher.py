"""Watching a run directory: the one place in the front that reads a run while it is written.

`RunWatcher` runs in a worker thread (`run()` loops until `stop()`). Each pass it reads the new complete
lines of `events.jsonl` (a partial last line waits for the next pass; a corrupt line becomes a
`BadEventLine`), the new lines of `engine.log`, whether the engine is alive (its `flock`, or the process
this front started), and every couple of seconds the engine's CPU/RAM (psutil) or GPU use (nvidia-smi).
It posts typed messages (`dasvit_tui.messages`) and nothing else: it never touches a widget.

`RunState` is what those messages add up to. Screens fold messages into it on the UI thread and hand it to
widgets to draw.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from dasvit import rundir as rd

from . import messages as m

POLL_SECONDS = 0.2  # new events reach the screen well within 0.5 s
STATS_SECONDS = 2.0
LOG_TAIL_BYTES = 64 * 1024
MAX_LOG_LINES_PER_PASS = 500


class Target(Protocol):
    def post_message(self, message: Any) -> bool: ...


class RunWatcher:
    """Tails one run directory and posts what it finds to `target` (a screen)."""

    def __init__(self, run_dir: Path, target: Target, process: subprocess.Popen | None = None,
                 interval: float = POLL_SECONDS, stats_interval: float = STATS_SECONDS) -> None:
        self.run_dir = Path(run_dir)
        self.target = target
        self.process = process
        self.interval = interval
        self.stats_interval = stats_interval
        self._events = rd.JsonlTail(self.run_dir / rd.EVENTS)
        self._log_offset: int | None = None
        self._log_partial = b""
        self._live: tuple[bool, int | None] | None = None
        self._stopping = threading.Event()
        self._next_sample = 0.0
        self._proc_handle = None  # psutil.Process, kept so cpu_percent measures between samples
        self._device = ""
        self._pid: int | None = None
        self._metrics_mtime = 0.0
        self._first = True

    # -- the loop -------------------------------------------------------------------------
    def run(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Poll until `stop()` or `cancelled()` (the worker's cancellation)."""
        while not (self._stopping.is_set() or cancelled()):
            self.poll()
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()

    def poll(self) -> None:
        """One pass over the run directory."""
        posted = self._read_events() + self._read_log()
        self._check_live()
        now = time.monotonic()
        if now >= self._next_sample:
            self._next_sample = now + self.stats_interval
            self._sample_system()
            self._check_metrics()
        if posted or self._first:
            self.target.post_message(m.CaughtUp(first=self._first))
            self._first = False

    # -- the pieces -----------------------------------------------------------------------
    def _read_events(self) -> int:
        items = self._events.read_new()
        for kind, obj in items:
            if kind == "bad":
                self.target.post_message(m.BadEventLine(obj))
                continue
            if obj.get("type") == "run_start":
                self._device = str(obj.get("device", ""))
                self._pid = obj.get("pid") if isinstance(obj.get("pid"), int) else self._pid
            self.target.post_message(m.event_message(obj))
        return len(items)

    def _read_log(self) -> int:
        path = self.run_dir / rd.ENGINE_LOG
        try:
            with open(path, "rb") as f:
                if self._log_offset is None:  # first look: only the tail of a long log
                    size = f.seek(0, 2)
                    self._log_offset = max(0, size - LOG_TAIL_BYTES)
                    skip_first = self._log_offset > 0
                else:
                    skip_first = False
                f.seek(self._log_offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        if not chunk:
            return 0
        self._log_offset += len(chunk)
        lines = (self._log_partial + chunk).split(b"\n")
        self._log_partial = lines.pop()
        if skip_first and lines:
            lines = lines[1:]
        text = [ln.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1] for ln in lines]
        text = [t for t in text if t.strip()][-MAX_LOG_LINES_PER_PASS:]
        if text:
            self.target.post_message(m.LogLines(text))
        return len(text)

    def _check_live(self) -> None:
        exit_code = self.process.poll() if self.process is not None else None
        live = rd.is_live(self.run_dir) or (self.process is not None and exit_code is None)
        if (live, exit_code) != self._live:
            self._live = (live, exit_code)
            self.target.post_message(m.EngineStatus(live, exit_code))

    def _sample_system(self) -> None:
        if not (self._live and self._live[0]):
            return
        pid = rd.engine_pid(self.run_dir) or self._pid or (self.process.pid if self.process else None)
        if pid is None:
            return
        try:
            import psutil
        except ImportError:  # psutil is a dependency, but a broken install must not break the monitor
            self.target.post_message(m.SystemSample(pid, None, None, None, None))
            return
        try:
            if self._proc_handle is None or self._proc_handle.pid != pid:
                self._proc_handle = psutil.Process(pid)
                self._proc_handle.cpu_percent(None)  # the first call only starts the measurement
                cpu = None
            else:
                cpu = self._proc_handle.cpu_percent(None)
            with self._proc_handle.oneshot():
                rss = self._proc_handle.memory_info().rss
                threads = self._proc_handle.num_threads()
            for child in self._proc_handle.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
            ram = psutil.virtual_memory().percent
        except psutil.Error:
            self._proc_handle = None
            return
        gpus = query_gpus() if self._device.startswith("cuda") else None
        self.target.post_message(m.SystemSample(pid, cpu, rss, threads, ram, gpus))

    def _check_metrics(self) -> None:
        path = self.run_dir / "metrics.json"
        try:
            mtime = path.stat().st_mtime
            if mtime == self._metrics_mtime:
                return
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        self._metrics_mtime = mtime
        if isinstance(data, dict):
            self.target.post_message(m.MetricsReady(data))


def query_gpus() -> list[m.GpuSample] | None:
    """GPU utilisation and memory from nvidia-smi (no CUDA context in the UI process)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=3, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            gpus.append(m.GpuSample(int(parts[0]), parts[1], float(parts[2]),
                                    int(float(parts[3])) << 20, int(float(parts[4])) << 20))
        except (IndexError, ValueError):
            continue
    return gpus or None


# ---------------------------------------------------------------------------------------------
# what the messages add up to


@dataclass
class RunState:
    """A run as the monitor sees it, folded from its events in order."""

    run_dir: Path
    kind: str = "?"
    preset: str = "?"
    device: str = "?"
    pid: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    last_time: float | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    proposal: dict[str, Any] | None = None
    prunes: list[dict[str, Any]] = field(default_factory=list)
    genotype: dict[str, Any] | None = None
    genotype_stage: Any = None
    end: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    live: bool | None = None  # None until the watcher has looked
    exit_code: int | None = None
    metrics: dict[str, Any] | None = None
    _index: dict[tuple[Any, Any], int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        p = self.run_dir
        return f"{p.parent.name}/{p.name}" if p.name == "retrain" else p.name

    def apply(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        time_ = ev.get("time")
        if isinstance(time_, (int, float)):
            self.last_time = time_
        if t == "run_start":
            self.kind = str(ev.get("kind", self.kind))
            self.preset = str(ev.get("preset", self.preset))
            self.device = str(ev.get("device", self.device))
            self.pid = ev.get("pid") if isinstance(ev.get("pid"), int) else self.pid
            if isinstance(ev.get("config"), dict):
                self.config = ev["config"]
            if self.started is None:
                self.started = time_
            self.end = None  # a resumed run goes on
        elif t == "epoch":
            key = (ev.get("stage"), ev.get("epoch"))
            if key in self._index:  # an epoch repeated after a resume replaces the first one
                self.epochs[self._index[key]] = ev
            else:
                self._index[key] = len(self.epochs)
                self.epochs.append(ev)
            if self.proposal is not None and ev.get("stage") != self.proposal.get("stage"):
                self.proposal = None
        elif t == "prune_proposal":
            self.proposal = ev
        elif t == "prune":
            self.prunes.append(ev)
            self.proposal = None
        elif t == "genotype":
            self.genotype = ev.get("genotype") if isinstance(ev.get("genotype"), dict) else self.genotype
            self.genotype_stage = ev.get("stage")
        elif t == "run_end":
            self.end = ev
            self.proposal = None
        elif t == "error":
            self.errors.append(ev)

    # -- the plan ---------------------------------------------------------------------------
    def _section(self, name: str) -> dict[str, Any]:
        sec = self.config.get(name)
        return sec if isinstance(sec, dict) else {}

    @property
    def stages(self) -> list[dict[str, Any]]:
        """Planned stages: [{depth, keep, epochs}] for a search, one pseudo-stage for a retrain."""
        if self.kind == "retrain":
            r = self._section("retrain")
            return [{"depth": r.get("depth", 1), "keep": 1, "epochs": r.get("epochs", 0)}]
        st = self._section("search").get("stages")
        return [s for s in st if isinstance(s, dict)] if isinstance(st, list) else []

    @property
    def ops(self) -> list[str]:
        ops = self._section("space").get("ops")
        if isinstance(ops, list) and ops:
            return [str(o) for o in ops]
        seen: list[str] = []
        for ev in self.epochs[-1:]:
            for weights in (ev.get("arch_weights") or {}).values():
                seen += [o for o in weights if o not in seen]
        return seen

    @property
    def fairness_bounds(self) -> tuple[float, float] | None:
        f = self._section("search").get("fairness")
        if isinstance(f, dict) and f.get("enabled", True) and "lower" in f and "upper" in f:
            return float(f["lower"]), float(f["upper"])
        return None

    @property
    def last(self) -> dict[str, Any] | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def total_epochs(self) -> int:
        return max(sum(int(s.get("epochs", 0)) for s in self.stages), len(self.epochs))

    def stage_starts(self) -> list[tuple[int, Any]]:
        """(x, stage) where each stage after the first begins on the epoch axis."""
        out, prev = [], None
        for i, ev in enumerate(self.epochs):
            s = ev.get("stage")
            if prev is not None and s != prev:
                out.append((i, s))
            prev = s
        return out

    def stage_marks(self) -> list[tuple[int, str]]:
        """Chart marks where stages 2.. begin: (x, "S2"), ..."""
        return [(x, f"S{n}") for n, (x, _) in enumerate(self.stage_starts(), start=2)]

    def stage_position(self) -> int:
        """Index (0-based) of the current stage in the plan: from the stage numbers seen, first one = 0."""
        if not self.epochs:
            return 0
        seen: list[Any] = []
        for ev in self.epochs:
            if ev.get("stage") not in seen:
                seen.append(ev.get("stage"))
        return len(seen) - 1

    def active_ops(self) -> dict[str, list[str]]:
        """The ops still in play per edge: the last prune's keep if it came after the last epoch, else
        the ops the last epoch weighed."""
        last = self.last
        weights = (last or {}).get("arch_weights") or {}
        active = {e: list(w) for e, w in weights.items()}
        if self.prunes and (last is None or self.prunes[-1].get("time", 0) >= last.get("time", 0)):
            keep = self.prunes[-1].get("keep") or {}
            active = {e: [o for o in self.ops if o in keep.get(e, [])] for e in (active or keep)}
        return active

    # -- now --------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.end is not None:
            return str(self.end.get("status", "finished"))
        if self.live:
            if not self.epochs and self.kind == "?":
                return "starting"
            return "waiting" if self.proposal is not None else "running"
        if self.live is None:
            return "loading"
        if self.exit_code is not None and not self.epochs and self.kind == "?":
            return "failed"
        return "crashed" if self.kind != "?" else "not started"

    def elapsed(self, now: float | None = None) -> float | None:
        if self.started is None:
            return None
        if self.end is not None or not self.live:
            end = self.end.get("time") if self.end else self.last_time
            return max(0.0, (end or self.started) - self.started)
        return max(0.0, (now or time.time()) - self.started)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: recent seconds per epoch, scaled to later stages by depth x ops kept, counted down
        from the last epoch's end."""
        if self.status not in ("running", "waiting") or not self.epochs:
            return None
        last = self.epochs[-1]
        same = [e for e in self.epochs[-4:] if e.get("stage") == last.get("stage")]
        times = [e.get("time") for e in same if isinstance(e.get("time"), (int, float))]
        if len(times) >= 2:  # wall time between epochs: training, evaluation and checkpoint
            per_epoch = (times[-1] - times[0]) / (len(times) - 1)
        else:
            secs = [e.get("seconds") for e in same if isinstance(e.get("seconds"), (int, float))]
            if not secs:
                return None
            per_epoch = sum(secs) / len(secs)
        stages = self.stages
        pos = self.stage_position()
        left = max(0, int(last.get("epochs", 0)) - int(last.get("epoch", 0)))
        total = left * per_epoch
        if pos < len(stages):
            cur = stages[pos]
            cost = max(1, int(cur.get("depth", 1)) * int(cur.get("keep", 1)))
            for st in stages[pos + 1:]:
                ratio = int(st.get("depth", 1)) * int(st.get("keep", 1)) / cost
                total += int(st.get("epochs", 0)) * per_epoch * ratio
        if self.status == "waiting" or not isinstance(last.get("time"), (int, float)):
            return total  # the clock does not run while the engine waits for an answer
        since = (now or time.time()) - last["time"]
        return max(0.0, total - max(0.0, since))

    @property
    def failure(self) -> dict[str, Any] | None:
        """The error to show when the run failed or its engine died: the last `error` event."""
        if self.status in ("failed", "crashed") and self.errors:
            return self.errors[-1]
        return None

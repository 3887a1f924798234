"""The run directory: the only interface between the engine and any front end.

```
runs/<run-id>/
  config.yaml      resolved configuration, written once at start
  events.jsonl     append-only event log, one JSON object per line, flushed per line
  control.jsonl    append-only commands from a front (approve, stop)
  checkpoint.pt    last completed epoch (atomic: temp file + rename)
  checkpoint.prev.pt  the epoch before (a hard link rotated in before each new checkpoint.pt)
  genotype.json    the searched cell (genotype-stage<k>.json at each stage end)
  engine.log       stdout/stderr of a detached engine process
  metrics.json, best.pt, last.pt   a retrain's results and weights
  .lock            held (flock) by the live engine process
```

This module imports no torch: front ends use it to read runs without loading a model.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import RunDirError

EVENT_VERSION = 1
EVENTS = "events.jsonl"
CONTROL = "control.jsonl"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_PREV = "checkpoint.prev.pt"
GENOTYPE = "genotype.json"
LOCK = ".lock"
ENGINE_LOG = "engine.log"
BASE_GENOTYPE = "base-genotype.json"  # a focus run's base cell, the one its space sizes
SPECIALIZED = "specialized"  # a focus run's specialized/<budget>.json: `dasvit specialize`'s answers
METRICS = "metrics.json"  # a finished retrain: top-1/top-5 of BEST, params, FLOPs, images/s
BEST, LAST = "best.pt", "last.pt"  # a retrain's weights: the best epoch's and the last epoch's


_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes, previous: Path | None = None) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half of one.

    With `previous`, the old file (if any) becomes `previous` first, by a hard link renamed into place, so
    at every moment `path` is whole and `previous` is whole (the file before it, or the one before that).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a kept file gets the mode open() would give it
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            link = Path(previous).with_name(f".{Path(previous).name}.{os.getpid()}.tmp")
            link.unlink(missing_ok=True)
            try:
                os.link(path, link)
            except OSError:  # a file system without hard links: a copy does as well
                shutil.copyfile(path, link)
            os.replace(link, previous)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON object as one line, flushed; a single write() so lines never interleave."""
    line = json.dumps(obj, separators=(",", ":"), allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def make_event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": EVENT_VERSION, "type": type_, "time": time.time(), **fields}


@dataclass
class JsonlTail:
    """Reads complete new lines from a growing JSONL file; keeps a partial last line for later.

    Malformed lines are returned as `("bad", text)` so the caller can warn and go on.
    """

    path: Path
    offset: int = 0
    partial: bytes = b""  # an unfinished last line (a writer mid-write, or one that died there)

    def read_new(self) -> list[tuple[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()  # b"" if the chunk ended with a newline
        out: list[tuple[str, Any]] = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                out.append(("bad", raw.decode("utf-8", "replace")))
                continue
            out.append(("ok", obj) if isinstance(obj, dict) else ("bad", raw.decode("utf-8", "replace")))
        return out


def read_events(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """All complete events of a run, and the malformed lines that were skipped."""
    tail = JsonlTail(Path(run_dir) / EVENTS)
    events, bad = [], []
    for kind, obj in tail.read_new():
        (events if kind == "ok" else bad).append(obj)
    return events, bad


def ensure_writable(run_dir: Path) -> Path:
    """Check, before any work, that `run_dir` can be created and written (creating nothing that stays);
    else one sentence naming it (RunDirError, exit 2)."""
    run_dir = Path(run_dir)
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    why = None
    if not existing.is_dir():
        why = f"{existing} is not a directory"
    else:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".write-test.", dir=existing))
        except OSError as e:
            why = f"{existing}: {e.strerror or e}"
    if why:
        raise RunDirError(f"cannot write the run directory {run_dir} ({why}); pick another --run-dir.")
    return run_dir


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / EVENTS).exists() and (path / CONFIG).exists()


def require_run_dir(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"run directory {path} does not exist.")
    if not is_run_dir(path):
        raise RunDirError(f"{path} is not a dasvit run directory (no {EVENTS} and {CONFIG} in it).")
    return path


def check_new_run_dir(run_dir: Path) -> Path:
    """A run directory a new run may use: holding no run yet and writable; else one sentence (exit 2)."""
    run_dir = Path(run_dir)
    if (run_dir / EVENTS).exists() and (run_dir / EVENTS).stat().st_size:
        if is_live(run_dir):
            raise RunDirError(
                f"{run_dir} is in use by a live engine process; stop it first or use another run directory."
            )
        raise RunDirError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir.")
    return ensure_writable(run_dir)


def resume_run_dir(resume: Path, kind: str, preset: str | None, overrides: list[str]) -> Path:
    """The run directory `--resume` names, checked: a `kind` run with a checkpoint, resumed with its own
    config (no --preset/--set), writable; else one sentence (exit 2)."""
    run_dir = require_run_dir(Path(resume))
    if preset or overrides:
        raise RunDirError("--resume continues a run with its own config.yaml; drop --preset and --set.")
    if summarize(run_dir).kind != kind:
        raise RunDirError(f"{run_dir} is not a {kind} run; resume it with the command that started it.")
    if not (run_dir / CHECKPOINT).is_file():
        raise RunDirError(f"{run_dir} has no {CHECKPOINT} yet; start it again instead of resuming.")
    return ensure_writable(run_dir)


class RunLock:
    """An exclusive `flock` on RUN_DIR/.lock, held by the live engine process for its whole life.

    The kernel drops it when the process dies, however it dies, so `is_live` never sees a stale lock.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by a live engine process; stop it first or use another run directory."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_live(run_dir: Path) -> bool:
    """True while an engine process holds the run's lock."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def engine_pid(run_dir: Path) -> int | None:
    try:
        return int((Path(run_dir) / LOCK).read_text().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def write_control(run_dir: Path, command: dict[str, Any]) -> None:
    """Append one control line (approve / stop) for the engine to act on."""
    append_jsonl(Path(run_dir) / CONTROL, {"time": time.time(), **command})


@dataclass(kw_only=True)
class RunStatus:
    """What a run's events add up to, and whether its engine lives: the one definition of a run's status
    that every front uses (`summarize` for lists and scripts, the monitor's `RunState`, the commands).

    Fold events in order with `apply`; set `live` (and `exit_code`, for a process the front started)
    from outside. Nothing here knows the kind of run: the plan comes from `config[kind]`."""

    kind: str = "?"
    preset: str = "?"
    device: str = "?"
    pid: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    last_time: float | None = None
    stage: int = 0  # of the last epoch event (1-based)
    epoch: int = 0
    stage_epochs: int = 0  # epochs of that stage
    best_acc: float | None = None  # best top-1 (retrain) or validation accuracy (search) so far
    proposal: dict[str, Any] | None = None  # a prune_proposal no answer has followed yet
    end: dict[str, Any] | None = None  # the run_end of the last engine process, unless one started since
    live: bool | None = None  # None: nobody has looked yet
    exit_code: int | None = None

    STATUSES = ("loading", "not started", "starting", "running", "waiting", "finished", "stopped", "failed", "crashed")

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
            self.stage, self.epoch = ev.get("stage", 0), ev.get("epoch", 0)
            self.stage_epochs = ev.get("epochs", 0)
            acc = ev.get("top1", ev.get("val_acc"))
            if isinstance(acc, (int, float)):
                self.best_acc = acc if self.best_acc is None else max(self.best_acc, acc)
            if self.proposal is not None and ev.get("stage") != self.proposal.get("stage"):
                self.proposal = None
        elif t == "prune_proposal":
            self.proposal = ev
        elif t == "prune":
            self.proposal = None
        elif t == "run_end":
            self.end = ev
            self.proposal = None

    @property
    def status(self) -> str:
        """One of STATUSES: the run_end's status once there is one; else, while the engine lives,
        starting, waiting (a proposal awaits an answer) or running; else crashed (it started and died),
        failed (this front's engine exited before it started), not started, or loading (not looked yet)."""
        if self.end is not None:
            return str(self.end.get("status", "finished"))
        started = self.kind != "?"
        if self.live:
            if not started:
                return "starting"
            return "waiting" if self.proposal is not None else "running"
        if self.live is None:
            return "loading"
        if started:
            return "crashed"
        return "failed" if self.exit_code is not None else "not started"

    def _section(self, name: str) -> dict[str, Any]:
        sec = self.config.get(name)
        return sec if isinstance(sec, dict) else {}

    @property
    def planned_stages(self) -> list[dict[str, Any]]:
        """[{depth, keep, epochs}] from `config[kind]`: its `stages` list (a search), else one stage of its
        `epochs` (a retrain, or any kind that trains one network)."""
        sec = self._section(self.kind)
        stages = sec.get("stages")
        if isinstance(stages, list):
            return [st for st in stages if isinstance(st, dict)]
        if "epochs" in sec:
            return [{"depth": sec.get("depth", 1), "keep": 1, "epochs": sec.get("epochs", 0)}]
        return []


@dataclass
class RunSummary(RunStatus):
    """One line of a list of runs: a run directory's status, folded from its event log."""

    path: Path
    last_event: dict[str, Any] = field(default_factory=dict)

    def apply(self, ev: dict[str, Any]) -> None:
        super().apply(ev)
        self.last_event = ev


def summarize(run_dir: Path, events: list[dict[str, Any]] | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    if events is None:
        events, _ = read_events(run_dir)
    s = RunSummary(path=run_dir)
    for ev in events:
        s.apply(ev)
    s.live = is_live(run_dir)
    return s


def pending_proposal(run_dir: Path) -> dict[str, Any] | None:
    """The prune_proposal event of a run that waits for an answer (none once pruned or ended)."""
    return summarize(run_dir).proposal


def iter_runs(root: Path) -> Iterator[Path]:
    """The runs under `root`, newest first, each followed by its retrains (SEARCH/retrain,
    FOCUS/specialized/<budget>-retrain)."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if is_run_dir(p):
            yield p
        if is_run_dir(p / "retrain"):
            yield p / "retrain"
        if (p / SPECIALIZED).is_dir():  # retrains of a focus run's specialized architectures
            yield from sorted(d for d in (p / SPECIALIZED).iterdir() if d.is_dir() and is_run_dir(d))


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """runs/<name>-<timestamp>, with -2, -3, ... if that exists already."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = Path(name).stem if name else "custom"
    path = Path(root) / f"{stem}-{stamp}"
    i = 1
    while path.exists():
        i += 1
        path = Path(root) / f"{stem}-{stamp}-{i}"
    return path


def config_dir_for(source: str | Path) -> Path | None:
    """The run directory whose config.yaml describes `source`: a run directory itself, the folder of a file
    a run wrote (its genotype.json), or the FocusFormer run of a RUN_DIR/specialized/<budget>.json."""
    p = Path(source)
    if not p.exists():
        return None
    for d in (p, p.parent):
        if d.is_dir() and (d / CONFIG).is_file():
            return d
    return specialized_run(p)


def specialized_run(genotype_file: str | Path) -> Path | None:
    """The focus run of a genotype `dasvit specialize` wrote, RUN_DIR/specialized/<budget>.json; else None."""
    folder = Path(genotype_file).parent
    if folder.name == SPECIALIZED and (folder.parent / CONFIG).is_file():
        return folder.parent
    return None

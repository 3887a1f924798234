"""What every engine process shares: the run directory's writer, signals, the run as a context
(`with Run.of(request, info) as run:` takes the run directory and ends the run its one way), and the
mapping of outcomes to exit codes (`Outcome`).
Checkpoint files are `dasvit.run.checkpoint`'s; the process group is `dasvit.run.distributed`'s.

Exit codes: 0 finished, 1 failed (a bug: traceback in the log and an `error` event), 2 bad input
(one sentence), 130 stopped (Ctrl-C, SIGTERM or a `stop` control line).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import USER_ERROR_FILE, DiskFullError, TrainingDiverged, UserError
from . import controls, jsonio, jsonl, layout, runlock
from .config import Config
from .distributed import DistInfo
from .events import EPOCH, ERROR, RUN_END, RUN_START, make_event
from .presets import dump_config
from .progress import Progress
from .requests import EngineRequest

EXIT_OK, EXIT_USER, EXIT_STOPPED = 0, 2, 130  # a bug exits 1, with its traceback (Python's own)


class Stopped(Exception):
    """Raised inside a loop when a stop was asked for (signal or control line)."""


# ---------------------------------------------------------------------------------------------
# the run: directory, events, signals, outcome


class Run:
    """One engine process's hold on its run directory (rank 0 writes; other ranks only compute).

    Use as `with Run.of(request, info) as run:`; `run.emit(type, **fields)` appends an event; `run.should_stop()`
    is true after SIGINT/SIGTERM or a `stop` control line.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: Config,
        kind: str,
        info: DistInfo,
        resume: bool = False,
        progress: bool = True,
        command: str = "dasvit",
    ):
        self.dir = Path(run_dir)
        self.command = command  # how a user resumes it: `{command} --resume RUN_DIR`
        self._finished: tuple[str, str] | None = None
        self._entered = False
        self.cfg = cfg
        self.kind = kind
        self.info = info
        self.resume = resume
        self.progress = Progress(enabled=progress and info.main)
        self._stop = False
        self._lock = runlock.RunLock(self.dir)
        self._old_handlers: dict[int, Any] = {}
        self._control = jsonl.JsonlTail(self.dir / layout.CONTROL)
        self.started = time.time()
        self._queue: list[dict[str, Any]] = []
        self._polled = 0.0

    @classmethod
    def of(cls, req: EngineRequest, info: DistInfo) -> Run:
        """The run a resolved request asks for, on this rank."""
        return cls(req.run_dir, req.config, req.KIND, info, req.resume is not None, req.progress, req.COMMAND)

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Run:
        try:
            if self.info.main:
                self._open_dir()
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            self.emit(
                RUN_START,
                kind=self.kind,
                preset=self.cfg.preset,
                device=str(self.info.device),
                world_size=self.info.world,
                threads=self.info.threads,
                pid=os.getpid(),
                host=socket.gethostname(),
                resumed=self.resume,
                config=self.cfg.to_dict(),
            )
            if self.info.threads:
                self.progress.line(f"{self.info.device.type}, {self.info.threads}")
        except BaseException:
            self._release()
            raise
        self._entered = True
        return self

    def _open_dir(self) -> None:
        """Take the run directory (rank 0): no links in it, the lock, no temporary files a killed process
        left, a fresh config and control file for a new run, and the event log ending on a whole line."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            layout.check_no_links(self.dir)
            self._lock.acquire()
            layout.remove_leftovers(self.dir)
            if not self.resume:
                jsonio.atomic_write_text(self.dir / layout.CONFIG, dump_config(self.cfg))
                os.close(jsonio.open_run_file(self.dir / layout.CONTROL, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
            jsonl.start_on_a_fresh_line(self.dir / layout.EVENTS)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise jsonio.disk_full(Path(e.filename or self.dir)) from None
            raise

    def finished(self, message: str, line: str) -> None:
        """How the run ends well: its `run_end` message, and the line printed; said when the `with` block ends."""
        self._finished = (message, line)

    def __exit__(self, exc_type, exc, tb) -> bool:
        """End the run its one way: finished (its `run_end`), stopped (how to resume it), a user's mistake
        (failed, its sentence), a bug (failed, an `error` event with the traceback); then let go of the run
        directory and the process group. The exception goes on (to `Outcome`)."""
        try:
            if not self._entered:
                pass
            elif exc_type is None:
                message, line = self._finished or ("finished", "finished")
                self.emit(RUN_END, status="finished", message=message)
                self.progress.line(line)
            elif issubclass(exc_type, (Stopped, KeyboardInterrupt)):
                self.end("stopped", "stopped by the user; resume with --resume")
                self.progress.line(f"stopped; resume with: {self.command} --resume {self.dir}")
            elif issubclass(exc_type, UserError):
                self.end("failed", str(exc))
            else:
                fail_event(self, exc)
        finally:
            self._release()
            if dist.is_initialized():
                dist.destroy_process_group()
        return False

    def _release(self) -> None:
        for sig, h in self._old_handlers.items():
            signal.signal(sig, h)
        self.progress.close()
        if self.info.main:
            self._lock.release()

    def _on_signal(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        self._stop = True
        self.progress.line(f"{signal.Signals(signum).name}: stopping after this step (again to abort)")

    # -- events ---------------------------------------------------------------------------
    def emit(self, type_: str, **fields: Any) -> None:
        """Append an event (rank 0), built by `events.make_event` against this engine's definition of its
        type: an event the schema does not allow raises EventSchemaError (a bug). An epoch whose loss is not
        a finite number ends the run instead (TrainingDiverged, one sentence naming the epoch)."""
        if type_ == EPOCH:
            for key in ("train_loss", "val_loss"):
                v = fields.get(key)
                if isinstance(v, float) and not math.isfinite(v):
                    where = f"stage {fields.get('stage')} epoch {fields.get('epoch')}/{fields.get('epochs')}"
                    raise TrainingDiverged.of(f"the {key.replace('_', ' ')} of {where}", v)
        if self.info.main:
            jsonl.append_jsonl(self.dir / layout.EVENTS, make_event(type_, self.kind, **fields))

    def end(self, status: str, message: str) -> None:
        """The `run_end` event. On a failure path the disk may be what failed (full): then the line is lost
        and the error itself still reaches stderr, so an OSError here does not hide it."""
        try:
            self.emit(RUN_END, status=status, message=message)
        except (OSError, DiskFullError):
            if status == "finished":
                raise

    def warn(self, text: str) -> None:
        """A warning on stderr (rank 0), whatever the progress setting: it lands in engine.log when detached."""
        if self.info.main:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    # -- control --------------------------------------------------------------------------
    @property
    def control_offset(self) -> int:
        """Bytes of control.jsonl already read, up to the last whole line (kept in checkpoints)."""
        return self._control.offset - len(self._control.partial)

    @control_offset.setter
    def control_offset(self, offset: int) -> None:
        self._control = jsonl.JsonlTail(self.dir / layout.CONTROL, offset=offset)

    CONTROL_TYPES = controls.CONTROL_TYPES

    def poll_control(self) -> None:
        """Queue new well-formed control lines (rank 0); a malformed one (not JSON, too long or deep, a field
        of the wrong type) gets an `error` event, no crash."""
        if not self.info.main:
            return
        for kind, obj in self._control.read_new():
            why = (
                "it is not a JSON object of a bounded size and depth"
                if kind == "bad"
                else controls.control_problem(obj)
            )
            if why:
                text = obj if kind == "bad" else jsonio.printable(repr(obj)[:200], False)
                self.emit(ERROR, message=f"ignored a malformed control line ({why}): {text[:200]}", traceback="")
                continue
            if obj["type"] == "stop" and isinstance(obj.get("time"), (int, float)) and obj["time"] < self.started:
                continue  # it stopped an earlier process of this run; a resumed run must not stop again
            self._queue.append(obj)

    def take_control(self, type_: str) -> list[dict[str, Any]]:
        """Remove and return the queued control lines of one type."""
        self.poll_control()
        taken = [c for c in self._queue if c["type"] == type_]
        self._queue = [c for c in self._queue if c["type"] != type_]
        return taken

    def local_stop(self) -> bool:
        """This process's own view: a signal arrived, or (rank 0) a `stop` line. No collective."""
        now = time.monotonic()
        if self.info.main and not self._stop and now - self._polled >= 0.2:
            self._polled = now
            if self.take_control("stop"):
                self._stop = True
                self.progress.line("stop requested in control.jsonl: stopping after this step")
        return self._stop

    def should_stop(self, step: int | None = None) -> bool:
        """Stop requested by a signal or a `stop` control line; agreed across ranks.

        Cheap enough for every step: the control file is read at most every 0.2 s. With several ranks
        they must agree through a collective; inside a step loop (`step` given) that happens every
        16th step, the same steps on every rank, so no rank waits on a collective the others skip.
        """
        self.local_stop()
        if self.info.world > 1 and (step is None or step % 16 == 15):
            t = torch.tensor([1.0 if self._stop else 0.0], device=self.info.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            self._stop = bool(t.item())
            return self._stop
        return self._stop and self.info.world == 1


class Outcome:
    """The exit code of an engine process or a command, set by how its `with` block ends: 0 when it ends,
    2 for a user's mistake (its one sentence on stderr; under torchrun, which reports a rank's exit 2 as its
    own failure with a page of traceback, also left in the file $DASVIT_USER_ERROR_FILE names, for the
    launcher to say), 130 when stopped. A bug goes on, with its traceback (exit 1).

        with Outcome() as outcome:
            ...
        return outcome.code
    """

    def __init__(self) -> None:
        self.code = EXIT_OK

    def __enter__(self) -> Outcome:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        if issubclass(exc_type, UserError):
            print(f"dasvit: {jsonio.printable(exc)}", file=sys.stderr)  # it may quote a path or a file: no escapes
            where = os.environ.get(USER_ERROR_FILE)
            if where:
                try:
                    Path(where).write_text(str(exc))
                except OSError:
                    pass
            self.code = EXIT_USER
            return True
        if issubclass(exc_type, (Stopped, KeyboardInterrupt)):
            self.code = EXIT_STOPPED
            return True
        return False


TRAINING_BYTES_PER_PARAM = 16  # fp32 weights, gradients and two AdamW moments


def check_fits(params: int, what: str, lower: str) -> None:
    """Refuse, before anything is allocated, a model whose weights, gradients and optimizer state alone
    exceed this machine's memory (each config key within its bound can still, combined, ask for that): one
    sentence naming `what` and the keys to `lower`."""
    import psutil

    need = TRAINING_BYTES_PER_PARAM * params
    have = psutil.virtual_memory().total
    if need > have:
        raise UserError(
            f"{what} would have {params:,} parameters, {need / 2**30:,.1f} GiB with their gradients and optimizer "
            f"state, more than this machine's {have / 2**30:,.1f} GiB; lower {lower}."
        )


@contextlib.contextmanager
def allocating(what: str, lower: str):
    """An allocation that fails while building `what` (a CPU allocator's or CUDA's out-of-memory) is one
    sentence, not a traceback."""
    oom = tuple(c for c in (MemoryError, getattr(torch, "OutOfMemoryError", None)) if c is not None)
    try:
        yield
    except oom as e:
        raise UserError(f"{what} does not fit in memory ({str(e).splitlines()[0][:120]}); lower {lower}.") from None
    except RuntimeError as e:
        if "alloc" not in str(e).lower():
            raise
        raise UserError(f"{what} does not fit in memory ({str(e).splitlines()[0][:120]}); lower {lower}.") from None


def fail_event(run: Run | None, exc: BaseException) -> None:
    if run is None:
        return
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        run.emit(ERROR, message=f"{type(exc).__name__}: {exc}", traceback=tb)
    except (OSError, DiskFullError):
        pass
    run.end("failed", f"{type(exc).__name__}: {exc}")

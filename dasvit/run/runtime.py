"""What every engine process shares: distributed setup, the run directory's writer, progress on stdout,
signals, the run as a context (`with Run.of(request, info) as run:` takes the run directory and ends the run
its one way), and the mapping of outcomes to exit codes (`Outcome`).
Checkpoint files are `dasvit.checkpoint`'s.

Exit codes: 0 finished, 1 failed (a bug: traceback in the log and an `error` event), 2 bad input
(one sentence), 130 stopped (Ctrl-C, SIGTERM or a `stop` control line).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import math
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import USER_ERROR_FILE, DiskFullError, TrainingDiverged, UserError
from ..fmt import clock
from ..threads import apply_threads
from . import controls, jsonio, jsonl, layout, runlock
from .config import Config, dump_config
from .events import EPOCH, ERROR, RUN_END, RUN_START, make_event
from .requests import EngineRequest

EXIT_OK, EXIT_USER, EXIT_STOPPED = 0, 2, 130  # a bug exits 1, with its traceback (Python's own)


class Stopped(Exception):
    """Raised inside a loop when a stop was asked for (signal or control line)."""


# ---------------------------------------------------------------------------------------------
# distributed


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    threads: str = ""  # what dasvit.threads chose, for the progress output and the run_start event

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto", long_waits: bool = False) -> DistInfo:
    """Join the process group when started by torchrun (nccl on CUDA, gloo on CPU).

    `long_waits`: ranks may wait for a person (manual approval), so collectives time out after two
    days instead of the backend's default (10 to 30 minutes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        timeout = {"timeout": datetime.timedelta(days=2)} if long_waits else {}
        dist.init_process_group("nccl" if use_cuda else "gloo", **timeout)
    threads = apply_threads().describe()
    return DistInfo(rank=rank, world=world, local_rank=local, device=dev, threads=threads)


def all_reduce_mean(tensors: list[torch.Tensor], info: DistInfo) -> None:
    """Average tensors across ranks in place (one flat buffer: one collective)."""
    if info.world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= info.world
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum scalars across ranks (for epoch metrics)."""
    if info.world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def epoch_peak_memory(info: DistInfo) -> dict[str, int]:
    """{"peak_mem_bytes": the CUDA memory peak since the last call} for an epoch event, then the peak is reset;
    {} off CUDA."""
    if info.device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(info.device)
    torch.cuda.reset_peak_memory_stats(info.device)
    return {"peak_mem_bytes": peak}


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if info.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------------------------------------
# progress on stdout


class Progress:
    """Shows stage, epoch, step, loss, accuracy, images/s and ETA: a rich live bar on a terminal,
    plain lines otherwise (logs, pipes, a detached engine)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self._bar = None
        self._task = None
        self._last_plain = 0.0
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()

    def start_epoch(self, label: str, total_steps: int) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(label, total=total_steps, info="")
        self._label, self._total, self._t0 = label, total_steps, time.time()

    def step(self, step: int, info: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        now = time.time()
        if now - self._last_plain >= 10 or step == self._total:
            self._last_plain = now
            rate = step / max(now - self._t0, 1e-9)
            eta = (self._total - step) / rate if rate > 0 else None
            self.line(f"{self._label} step {step}/{self._total} {info} eta {clock(eta)}")

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# ---------------------------------------------------------------------------------------------
# the run: directory, events, signals, outcome


class Run:
    """One engine process's hold on its run directory (rank 0 writes; other ranks only compute).

    Use as `with Run(...) as run:`; `run.emit(type, **fields)` appends an event; `run.should_stop()`
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

"""The run directory: the only interface between the engine and any front end.

```
runs/<run-id>/
  config.yaml      resolved configuration, written once at start
  events.jsonl     append-only event log, one JSON object per line, flushed per line
  control.jsonl    append-only commands from a front (approve, stop)
  checkpoint.pt    last completed epoch (atomic: temp file + rename)
  checkpoint.prev.pt  the epoch before (a hard link rotated in before each new checkpoint.pt)
  genotype.json    the searched cell (genotype-stage<k>.json at each stage end: stage_genotype(k))
  engine.log       stdout/stderr of a detached engine process
  metrics.json, best.pt, last.pt   a retrain's results and weights
  .lock            held (flock) by the live engine process
  retrain/         a search run's retrain (RETRAIN), a run directory of its own
```

What an event holds is defined in `dasvit.events` (the schema; `clean_event` is its reader).
This module imports no torch: front ends use it to read runs without loading a model.
"""

from __future__ import annotations

import array
import errno
import fcntl
import itertools
import json
import math
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import DiskFullError, RunDirError
from .events import (
    EPOCH,
    PRUNE,
    PRUNE_PROPOSAL,
    READER_CHECKS,
    RUN_END,
    RUN_START,
    Event,
    PruneProposalEvent,
    RunEndEvent,
    clean_event,
)

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
COMPARE_JSON = "compare.json"  # `dasvit compare`'s table
RETRAIN = "retrain"  # a search run's retrain: SEARCH/retrain/, a run directory of its own
FIGURES = "figures"  # `dasvit plot`'s default output
# the files an engine writes or reads in its run directory: none of them may be a link
RUN_FILES = (EVENTS, CONTROL, CONFIG, CHECKPOINT, CHECKPOINT_PREV, GENOTYPE, LOCK, ENGINE_LOG, BASE_GENOTYPE)
RUN_FILES += (METRICS, BEST, LAST, COMPARE_JSON)
# what a run that has done some work leaves: a new run may not start over it (one killed before any of
# these holds nothing to lose, and may be started again)
WORK_FILES = (CHECKPOINT, CHECKPOINT_PREV, METRICS, BEST, LAST)


def stage_genotype(stage: int) -> str:
    """genotype-stage<k>.json: the cell a search's stage k (from 1) ended with."""
    return f"genotype-stage{stage}.json"


def stage_supernet(stage: int) -> str:
    """supernet-stage<k>.pt: the supernet (weights, α, mask) a search's stage k (from 1) ended with, for
    re-deriving a cell and scoring cells one-shot without a new search."""
    return f"supernet-stage{stage}.pt"


_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


# ---------------------------------------------------------------------------------------------
# untrusted input: whatever is read from a run directory (or a path) may have been written by anyone

MAX_LINE_BYTES = 8 << 20  # one JSONL line; dasvit's longest (an epoch event of a 32-node space) is ~0.2 MiB
MAX_JSON_DEPTH = 64  # nesting of one line or JSON file; dasvit writes at most 6
MAX_INT = 2**63  # a JSON integer of a run file: a larger one is read as null (dasvit.schema's int)
MAX_JSON_FILE_BYTES = 64 << 20  # a JSON file of a run (metrics.json, compare.json, a genotype)
_READ_CHUNK = 1 << 20

# C0 controls but tab and newline, DEL, C1 controls (ESC, CSI, OSC... make a terminal act), lone surrogates
_CONTROLS = [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0), *range(0xD800, 0xE000)]
_STRIP = dict.fromkeys(_CONTROLS)
_STRIP_LINE = dict.fromkeys([*_CONTROLS, 0x09, 0x0A])


def printable(text: Any, newlines: bool = True) -> str:
    """`text` as a string without the characters a terminal acts on (escape sequences, bell, carriage
    return...): for anything read from a run directory or a path before it is shown. Tabs and newlines
    stay unless `newlines` is false (a name on one line)."""
    return str(text).translate(_STRIP if newlines else _STRIP_LINE)


def _printable_strings(obj: Any) -> Any:
    if type(obj) is str:
        return obj.translate(_STRIP)
    if type(obj) is dict:
        return {k.translate(_STRIP): _printable_strings(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_printable_strings(v) for v in obj]
    return obj


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1 opens, -1 closes


def _shallow(raw: bytes) -> bool:
    """Whether the JSON text `raw` nests no deeper than MAX_JSON_DEPTH, found at C speed: the brackets
    outside strings as +1 / -1 steps, their running sum's maximum."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return True
    steps = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_DEPTH_STEPS)
    return max(itertools.accumulate(array.array("b", steps)), default=0) <= MAX_JSON_DEPTH


# what may hold a number that is not a finite float or a 64-bit integer: a long run of digits, a large
# exponent, NaN or Infinity (json.loads takes all three); only then are the numbers parsed one by one
_ODD_NUMBER = re.compile(rb"[0-9]{19}|[eE][+]?[0-9]{3}|NaN|Infinity")


def _int_or_null(text: str) -> int | None:
    v = int(text) if len(text) < 40 else None
    return v if v is not None and -MAX_INT <= v < MAX_INT else None


def _float_or_null(text: str) -> float | None:
    v = float(text)
    return v if math.isfinite(v) else None


def parse_json(raw: bytes) -> Any:
    """A JSON document read as untrusted input: at most MAX_JSON_DEPTH deep, its strings printable, every
    number finite (one that is not a finite float or a 64-bit integer, NaN and Infinity among them, is read
    as null: a reader then sees a value of the wrong type); a ValueError saying why for anything else (not
    JSON, not UTF-8, too deep)."""
    if not _shallow(raw):
        raise ValueError(f"it nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        if _ODD_NUMBER.search(raw):
            obj = json.loads(raw, parse_int=_int_or_null, parse_float=_float_or_null, parse_constant=lambda _: None)
        else:
            obj = json.loads(raw)
    except RecursionError:  # unbalanced brackets can pass the depth check; json still refuses them
        raise ValueError(f"it nests deeper than {MAX_JSON_DEPTH} levels") from None
    # strict JSON has no raw control characters in strings: only escapes (\\u001b), DEL and C1 (\\xc2..) bring them
    if b"\\" in raw or b"\x7f" in raw or b"\xc2" in raw:
        obj = _printable_strings(obj)
    return obj


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """One JSONL line of a run directory as a dict (see parse_json), or None: too long, not JSON, too deep,
    not an object."""
    if len(raw) > MAX_LINE_BYTES:
        return None
    try:
        obj = parse_json(raw)
    except ValueError:  # also UnicodeDecodeError and JSONDecodeError
        return None
    return obj if type(obj) is dict else None


def open_run_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open of a run directory's file that never follows a link (a planted link would have dasvit write
    through it) and is a regular file: a FIFO would block the open or the read (it is opened with O_NONBLOCK,
    which a regular file ignores), a directory or a device is no run file. A link, anything but a regular
    file, a full disk and a file that cannot be written are each one sentence."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        raise _run_file_error(path, e, writing=bool(flags & (os.O_WRONLY | os.O_RDWR))) from None
    st_mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(st_mode):
        os.close(fd)
        raise not_regular(path, st_mode)
    return fd


def not_regular(path: Path, st_mode: int | None = None) -> RunDirError:
    """The sentence for a run directory's file that is not a regular file (`st_mode` says what it is)."""
    kinds = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")]
    kinds += [(stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")]
    kind = next((name for test, name in kinds if st_mode is not None and test(st_mode)), "not a regular file")
    return RunDirError(
        f"{printable(path, False)} is {kind}; a run directory's files are regular files (dasvit neither reads nor "
        "writes anything else there): remove it."
    )


def _run_file_error(path: Path, e: OSError, writing: bool) -> Exception:
    if e.errno == errno.ELOOP:
        return RunDirError(
            f"{path} is a symbolic link; dasvit neither reads nor writes a run directory's files through links: "
            "remove it."
        )
    if e.errno in (errno.EISDIR, errno.ENXIO):  # a directory opened for writing; a FIFO no one reads
        try:
            return not_regular(path, os.lstat(path).st_mode)
        except OSError:
            return not_regular(path)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(path)
    if writing and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RunDirError(f"cannot write {path} ({e.strerror}); make {path.parent} writable.")
    return e


def disk_full(path: Path, needed: int | None = None) -> DiskFullError:
    size = f" ({needed / 2**20:.1f} MiB needed)" if needed is not None else ""
    return DiskFullError(
        f"no space left on the device for {path}{size}; free some space, then --resume {Path(path).parent} "
        "continues from its last checkpoint (a run without one starts again)."
    )


def read_json_file(path: Path, follow: bool = False, max_bytes: int = MAX_JSON_FILE_BYTES) -> Any:
    """The JSON document in `path` as untrusted input (parse_json), not through a link unless `follow`
    (a path the user named), at most `max_bytes`. OSError when it cannot be read; ValueError with the
    reason when it is not such a document."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _run_file_error(Path(path), e, writing=False) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("it is not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"it is larger than {max_bytes >> 20} MiB")
    return parse_json(data)


def atomic_write_bytes(path: Path, data: bytes, previous: Path | None = None) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half of one.

    With `previous`, the old file (if any) becomes `previous` first, by a hard link renamed into place, so
    at every moment `path` is whole and `previous` is whole (the file before it, or the one before that).
    A full disk, a folder that cannot be written and a `path` that is a directory (or anything but a file)
    are each one sentence, with nothing left behind.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _write_error(path, e, len(data)) from None
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise not_regular(path, st.st_mode)  # a directory: os.replace would fail after the whole write
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a kept file gets the mode open() would give it
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
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(e, OSError):
            raise _write_error(path, e, len(data)) from None
        raise


def _write_error(path: Path, e: OSError, size: int) -> Exception:
    """One sentence for what stopped a write of `path` (full disk, no permission, not a file), else `e`."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"no space left on the device for {printable(path, False)} ({size / 2**20:.1f} MiB needed); nothing was "
            "changed there: free some space and run the command again."
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RunDirError(
            f"cannot write {printable(path, False)} ({e.strerror}); make {printable(path.parent, False)} writable."
        )
    if e.errno in (errno.EISDIR, errno.ENOTDIR):
        return RunDirError(f"cannot write {printable(path, False)}: {e.strerror.lower()} on the way there.")
    return e


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON object as one line, in a single write() so lines never interleave; never through a
    link. A full disk is one sentence (DiskFullError)."""
    line = (json.dumps(obj, separators=(",", ":"), allow_nan=True) + "\n").encode()
    fd = open_run_file(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    except OSError as e:
        raise _run_file_error(Path(path), e, writing=True) from None
    finally:
        os.close(fd)


def start_on_a_fresh_line(path: Path) -> None:
    """End a last line cut short (a crash, a full disk) with a newline, so that what is appended next is a
    line of its own instead of gluing onto it."""
    try:
        fd = open_run_file(Path(path), os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
    except OSError as e:
        raise _run_file_error(Path(path), e, writing=True) from None
    finally:
        os.close(fd)


@dataclass
class JsonlTail:
    """Reads complete new lines from a growing JSONL file; keeps a partial last line for later.

    Every line is untrusted (`parse_line`: bounded size and depth, printable strings); one that is not a
    JSON object is returned as `("bad", text)` so the caller can warn and go on, the others as `("ok",
    obj)`, passed through `clean` when given (`clean_event` for a display). The file is read in chunks,
    never through a link, and not at all unless it is a regular file (a FIFO would block).
    """

    path: Path
    offset: int = 0
    partial: bytes = b""  # an unfinished last line (a writer mid-write, or one that died there)
    clean: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    _skipping: bool = False  # inside a line longer than MAX_LINE_BYTES, dropped up to its newline

    def read_new(self) -> list[tuple[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # missing, a link, unreadable: nothing to read
            return []
        out: list[tuple[str, Any]] = []
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return []
            f.seek(self.offset)
            while chunk := f.read(_READ_CHUNK):
                self.offset += len(chunk)
                self._feed(chunk, out)
        return out

    def _feed(self, chunk: bytes, out: list[tuple[str, Any]]) -> None:
        while chunk:
            end = chunk.find(b"\n")
            if self._skipping:  # inside an over-long line: dropped up to its end
                if end < 0:
                    return
                chunk, self._skipping = chunk[end + 1 :], False
                continue
            if len(self.partial) + (len(chunk) if end < 0 else end) > MAX_LINE_BYTES:
                out.append(("bad", f"a line longer than {MAX_LINE_BYTES >> 20} MiB (skipped)"))
                self.partial, self._skipping = b"", True
                continue
            if end < 0:
                self.partial += chunk
                return
            lines = (self.partial + chunk).split(b"\n")  # each at most MAX_LINE_BYTES
            self.partial = lines.pop()  # b"" if the chunk ended with a newline
            for raw in lines:
                if not raw.strip():
                    continue
                obj = parse_line(raw)
                if obj is None:
                    out.append(("bad", printable(raw[:1000].decode("utf-8", "replace"), newlines=False)))
                else:
                    out.append(("ok", self.clean(obj) if self.clean is not None else obj))
            return


def read_events(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """All complete events of a run (fields of a wrong type dropped: `clean_event`), and the malformed
    lines that were skipped."""
    tail = JsonlTail(Path(run_dir) / EVENTS, clean=clean_event)
    events, bad = [], []
    for kind, obj in tail.read_new():
        (events if kind == "ok" else bad).append(obj)
    return events, bad


# Whether a control line's time and keep hold what dasvit writes there: the same checks as the event
# fields of those names (dasvit.events).
_is_time, _is_keep = READER_CHECKS["time"], READER_CHECKS["keep"]


CONTROL_TYPES = ("approve", "stop")


def control_problem(cmd: dict[str, Any]) -> str | None:
    """Why a control line cannot be acted on (None if it can): its type, time, stage and keep."""
    if type(cmd.get("type")) is not str or cmd["type"] not in CONTROL_TYPES:
        return "its type is not approve or stop"
    if "time" in cmd and not _is_time(cmd["time"]):
        return "its time is not a number"
    if cmd.get("stage") is not None and type(cmd["stage"]) is not int:
        return "its stage is not a stage number"
    if cmd.get("keep") is not None and not _is_keep(cmd["keep"]):
        return "its keep does not map edges to lists of op names"
    return None


def ensure_writable(run_dir: Path, what: str = "the run directory", hint: str = "pick another --run-dir") -> Path:
    """Check, before any work, that `run_dir` can be created and written (creating nothing that stays);
    else one sentence naming it and what to do (RunDirError, exit 2)."""
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
        raise RunDirError(f"cannot write {what} {run_dir} ({why}); {hint}.")
    return run_dir


def ensure_writable_file(path: Path, option: str) -> Path:
    """Check, before any work, that the file `path` (named by `option`, e.g. --json) can be written: not a
    directory or another non-file, in a folder that can be made and written; else one sentence."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise RunDirError(f"{option} {printable(path, False)}: {e.strerror or e}.") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"{option} {printable(path, False)} is a directory; {option} takes a file name.")
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise not_regular(path, st.st_mode)
    ensure_writable(path.parent, f"the folder of {option}", f"give {option} a path you can write")
    return path


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and os.path.lexists(path / EVENTS) and os.path.lexists(path / CONFIG)


def check_no_links(run_dir: Path) -> Path:
    """A run directory none of whose files (RUN_FILES) is a symbolic link or anything but a regular file,
    else one sentence: a planted link would have the engine or a front write, or read, through it; a FIFO
    would block whoever opens or reads it, a directory fail them."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        try:
            st_mode = os.lstat(run_dir / name).st_mode
        except OSError:  # none (or no run directory): nothing to refuse
            continue
        if stat.S_ISLNK(st_mode):
            raise RunDirError(
                f"{run_dir / name} is a symbolic link; dasvit neither reads nor writes a run directory's files "
                "through links: remove it."
            )
        if not stat.S_ISREG(st_mode):
            raise not_regular(run_dir / name, st_mode)
    return run_dir


def run_subdir(run_dir: Path, *names: str) -> Path:
    """RUN_DIR/<names...>, a folder dasvit writes into (figures, specialized, retrain, compare), none of whose
    steps below RUN_DIR is a symbolic link, else one sentence: a planted link would have dasvit write, or
    remove, files in its target."""
    path = Path(run_dir)
    for name in names:
        path = path / name
        if path.is_symlink():
            raise RunDirError(
                f"{printable(path, False)} is a symbolic link; dasvit writes nothing of a run directory through "
                "links: remove it."
            )
    return path


def require_run_dir(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"run directory {printable(path, False)} does not exist.")
    if not is_run_dir(path):
        raise RunDirError(f"{printable(path, False)} is not a dasvit run directory (no {EVENTS} and {CONFIG} in it).")
    return check_no_links(path)


def check_new_run_dir(run_dir: Path) -> Path:
    """A run directory a new run may use: writable, and holding no run that has done some work (a run
    killed before its first checkpoint may be started again); else one sentence (exit 2)."""
    run_dir = Path(run_dir)
    if is_live(run_dir):
        raise RunDirError(f"{run_dir} is in use by a live engine process; stop it first or use another run directory.")
    if any(os.path.lexists(run_dir / name) for name in WORK_FILES):
        raise RunDirError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir.")
    return ensure_writable(check_no_links(run_dir))


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


# a temporary file of atomic_write_bytes: .<name>.<mkstemp's 8 characters>.tmp, or .<name>.<pid>.tmp (the
# hard link rotated into checkpoint.prev.pt)
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]+\.tmp")
_STAGE_FILE = re.compile(r"(genotype-stage[0-9]+\.json|supernet-stage[0-9]+\.pt)")


def is_leftover(name: str) -> bool:
    """Whether `name` is a temporary file dasvit's atomic writes make in a run directory: one of its own
    files' (RUN_FILES, genotype-stage<k>.json, supernet-stage<k>.pt). Anything else is someone else's, and stays."""
    m = _TEMPORARY.fullmatch(name)
    return m is not None and (m["name"] in RUN_FILES or _STAGE_FILE.fullmatch(m["name"]) is not None)


def remove_leftovers(run_dir: Path) -> list[str]:
    """Remove the temporary files of atomic writes a killed process left (`.checkpoint.pt.*.tmp`, ...: only
    names dasvit writes, `is_leftover`); call with the run's lock held, so no writer is mid-write. Returns
    their names."""
    removed = []
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return removed
    for entry in entries:
        if is_leftover(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass
    return removed


class RunLock:
    """An exclusive `flock` on RUN_DIR/.lock, held by the live engine process for its whole life.

    The kernel drops it when the process dies, however it dies, so `is_live` never sees a stale lock.
    The lock file is never opened through a link (a planted one would have its target truncated).
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = open_run_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by a live engine process; stop it first or use another run directory."
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise _run_file_error(self.path, e, writing=True) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_live(run_dir: Path) -> bool:
    """True while an engine process holds the run's lock."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # none, or a link (which no engine of ours holds)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def engine_pid(run_dir: Path) -> int | None:
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            text = f.read(32)
        pid = int(text.strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if 0 < pid < 1 << 22 else None


def write_control(run_dir: Path, command: dict[str, Any]) -> None:
    """Append one control line (approve / stop) for the engine to act on, on a line of its own; a run
    directory that cannot be written is one sentence."""
    path = check_no_links(Path(run_dir)) / CONTROL
    start_on_a_fresh_line(path)
    append_jsonl(path, {"time": time.time(), **command})


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
    proposal: PruneProposalEvent | None = None  # a prune_proposal no answer has followed yet
    end: RunEndEvent | None = None  # the run_end of the last engine process, unless one started since
    live: bool | None = None  # None: nobody has looked yet
    exit_code: int | None = None

    STATUSES = ("loading", "not started", "starting", "running", "waiting", "finished", "stopped", "failed", "crashed")

    def apply(self, ev: Event) -> None:
        t = ev.get("type")
        time_ = ev.get("time")
        if isinstance(time_, (int, float)):
            self.last_time = time_
        if t == RUN_START:
            self.kind = str(ev.get("kind", self.kind))
            self.preset = str(ev.get("preset", self.preset))
            self.device = str(ev.get("device", self.device))
            self.pid = ev.get("pid") if isinstance(ev.get("pid"), int) else self.pid
            if isinstance(ev.get("config"), dict):
                self.config = ev["config"]
            if self.started is None:
                self.started = time_
            self.end = None  # a resumed run goes on
        elif t == EPOCH:
            self.stage, self.epoch = ev.get("stage", 0), ev.get("epoch", 0)
            self.stage_epochs = ev.get("epochs", 0)
            acc = ev.get("top1", ev.get("val_acc"))
            if isinstance(acc, (int, float)):
                self.best_acc = acc if self.best_acc is None else max(self.best_acc, acc)
            if self.proposal is not None and ev.get("stage") != self.proposal.get("stage"):
                self.proposal = None
        elif t == PRUNE_PROPOSAL:
            self.proposal = ev if isinstance(ev.get("stage"), int) else self.proposal
        elif t == PRUNE:
            self.proposal = None
        elif t == RUN_END:
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
            return [_counts(st) for st in stages if isinstance(st, dict)]
        if "epochs" in sec:
            return [_counts({"depth": sec.get("depth", 1), "keep": 1, "epochs": sec.get("epochs", 0)})]
        return []


def _counts(stage: dict[str, Any]) -> dict[str, int]:
    """A planned stage's depth, keep and epochs that are whole numbers (a hand-edited config may say anything)."""
    return {k: v for k in ("depth", "keep", "epochs") if type(v := stage.get(k)) is int}


@dataclass
class RunSummary(RunStatus):
    """One line of a list of runs: a run directory's status, folded from its event log."""

    path: Path
    last_event: dict[str, Any] = field(default_factory=dict)

    def apply(self, ev: Event) -> None:
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
    try:
        entries = [(e.stat().st_mtime, Path(e.path)) for e in os.scandir(root) if _is_dir(e)]
    except OSError:
        return
    for _, p in sorted(entries, key=lambda t: t[0], reverse=True):
        if is_run_dir(p):
            yield p
        if is_run_dir(p / RETRAIN):
            yield p / RETRAIN
        if (p / SPECIALIZED).is_dir():  # retrains of a focus run's specialized architectures
            yield from sorted(d for d in (p / SPECIALIZED).iterdir() if d.is_dir() and is_run_dir(d))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir() and bool(entry.stat())
    except OSError:  # a dangling link, a folder that vanished
        return False


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

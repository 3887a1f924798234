"""Reading and writing a run's files as what they are: untrusted input, and writes that are never half done.

- Untrusted input: whatever is read from a run directory (or a path) may have been written by anyone.
  `parse_json` takes a JSON document at most MAX_JSON_DEPTH deep, its strings printable and its numbers
  finite; `read_json_file` reads one bounded, never through a link; `printable` strips the characters a
  terminal acts on from anything shown.
- Run files are opened never through a link and only if regular (`open_run_file`); a link, a FIFO, a
  directory, a full disk or a file that cannot be written are each one sentence.
- `atomic_write_bytes`: a reader sees the old file or the new one (temp file, fsync, rename), with the
  previous one kept beside it on request (checkpoints).

Imports no torch.
"""

from __future__ import annotations

import array
import errno
import itertools
import json
import math
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, RunDirError

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)


os.umask(_UMASK)


MAX_LINE_BYTES = 8 << 20  # one JSONL line; dasvit's longest (an epoch event of a 32-node space) is ~0.2 MiB


MAX_JSON_DEPTH = 64  # nesting of one line or JSON file; dasvit writes at most 6


MAX_INT = 2**63  # a JSON integer of a run file: a larger one is read as null (dasvit.run.schema's int)


MAX_JSON_FILE_BYTES = 64 << 20  # a JSON file of a run (metrics.json, compare.json, a genotype)


READ_CHUNK = 1 << 20


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
        raise run_file_error(path, e, writing=bool(flags & (os.O_WRONLY | os.O_RDWR))) from None
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


def run_file_error(path: Path, e: OSError, writing: bool) -> Exception:
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
        raise run_file_error(Path(path), e, writing=False) from None
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

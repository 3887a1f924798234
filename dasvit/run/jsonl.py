"""The run's JSON-lines files (events.jsonl, control.jsonl): appended a whole line at a time, read as they
grow. Every line is untrusted (`jsonio.parse_line`); `read_events` passes each event through the schema's
reader (`events.clean_event`). Imports no torch.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import layout
from .events import clean_event
from .jsonio import MAX_LINE_BYTES, READ_CHUNK, open_run_file, parse_line, printable, run_file_error


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON object as one line, in a single write() so lines never interleave; never through a
    link. A full disk is one sentence (DiskFullError)."""
    line = (json.dumps(obj, separators=(",", ":"), allow_nan=True) + "\n").encode()
    fd = open_run_file(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    except OSError as e:
        raise run_file_error(Path(path), e, writing=True) from None
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
        raise run_file_error(Path(path), e, writing=True) from None
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
            while chunk := f.read(READ_CHUNK):
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
    tail = JsonlTail(Path(run_dir) / layout.EVENTS, clean=clean_event)
    events, bad = [], []
    for kind, obj in tail.read_new():
        (events if kind == "ok" else bad).append(obj)
    return events, bad

"""control.jsonl: what a front (the monitor, `dasvit approve`) asks of a live engine, one line each: approve a
stage's pruning (optionally with the ops each edge keeps) or stop. The engine reads it (`runtime.Run`).
Imports no torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .events import READER_CHECKS
from .jsonl import append_jsonl, start_on_a_fresh_line
from .layout import CONTROL, check_no_links

# Whether a control line's time and keep hold what dasvit writes there: the same checks as the event
# fields of those names (dasvit.run.events).
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


def write_control(run_dir: Path, command: dict[str, Any]) -> None:
    """Append one control line (approve / stop) for the engine to act on, on a line of its own; a run
    directory that cannot be written is one sentence."""
    path = check_no_links(Path(run_dir)) / CONTROL
    start_on_a_fresh_line(path)
    append_jsonl(path, {"time": time.time(), **command})

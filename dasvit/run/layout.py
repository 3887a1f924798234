"""The run directory's layout: the only interface between the engine and any front end.

```
runs/<run-id>/
  config.yaml      resolved configuration, written once at start
  events.jsonl     append-only event log, one JSON object per line, flushed per line
  control.jsonl    append-only commands from a front (approve, stop)
  checkpoint.pt    last completed epoch (atomic: temp file + rename)
  checkpoint.prev.pt  the epoch before (a hard link rotated in before each new checkpoint.pt)
  genotype.json    the searched cell (genotype-stage<k>.json at each stage end: stage_genotype(k))
  supernet-stage<k>.pt  each stage's last supernet (weights, α, mask): dasvit derive and the ranking read it
  derived/<rule>.json   the cells other selection rules took from it (dasvit derive)
  engine.log       stdout/stderr of a detached engine process
  metrics.json, best.pt, last.pt   a retrain's results and weights
  .lock            held (flock) by the live engine process
  retrain/         a search run's retrain (RETRAIN), a run directory of its own
```

The names, what makes a directory a run, the checks a run directory passes before anything reads or
writes it (no links, regular files, writable), the temporary files a killed writer leaves, and where a new
run goes. What an event holds is defined in `dasvit.run.events`. Imports no torch.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from pathlib import Path

from ..errors import RunDirError
from .jsonio import not_regular, printable

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


def inherited_weights_path(genotype_file: str | Path) -> Path:
    """Where `dasvit specialize` keeps a subnet's inherited weights: beside its genotype, `<budget>.safetensors`."""
    return Path(genotype_file).with_suffix(".safetensors")


def specialized_run(genotype_file: str | Path) -> Path | None:
    """The focus run of a genotype `dasvit specialize` wrote, RUN_DIR/specialized/<budget>.json; else None."""
    folder = Path(genotype_file).parent
    if folder.name == SPECIALIZED and (folder.parent / CONFIG).is_file():
        return folder.parent
    return None

"""TensorBoard event files of dasvit runs: what `dasvit tensorboard` writes, read from each run's events.jsonl.

Each run directory becomes one TensorBoard run, LOGDIR/<name> (the run directory's name, made safe; a second
run of the same name takes its parent's name in front, then -2, -3, ...), written with torch's
`SummaryWriter`:

- scalars, on one step axis: the epoch counted from the run's start across the stages (`RunHistory`'s `x`),
  with the event's own time as wall time. Every epoch field under its own name (train_loss, train_acc,
  val_loss, val_acc, lr, seconds, images_per_s, peak_mem_bytes, memory_estimate_bytes); a search's
  skip_fraction, fairness/{skip,type,total}, type_shares/<type>, expected_cost/{flops,params} and the
  architecture weights, `alpha/<edge>/<op>` (the edge "0->2" as `0-2`); a retrain's top1, top5; a
  FocusFormer run's val_acc_smallest, val_loss_smallest, sampler_steps and, per budget bin k (from 1),
  `sampler/bin<k>/{mean_flops_over_budget, feasible, entropy}`;
- text: the config of each engine start (`config`), each cell a search stage ends with (`genotype`, at the
  step of the stage's last epoch; genotype.json when the events have none), a FocusFormer run's space
  (`space`), errors (`error`) and how the run ended (`run_end`);
- hparams, for the HParams tab, in the run's own sub-run LOGDIR/<name>/hparams: the run's kind and preset,
  the scalars of the config's data, space and engine sections (`search.lr`, `search.stages.1.depth`,
  ...), and the final accuracy, `hparams/final_acc`: a retrain's metrics.json top-1, else the last epoch's
  val_acc; a search with a finished retrain (RUN_DIR/retrain/metrics.json) adds its top-1 as
  `hparams/retrain_top1`. Written once, when the conversion ends. No experiment summary is written:
  TensorBoard then makes the table's columns from every run's hparams (runs of other kinds, other configs)
  and its metrics from the scalars of the hparams sub-runs alone (not every curve of every run).

Converting again replaces what the last conversion wrote: the event files of LOGDIR/<name> and of its
hparams sub-run are deleted first (only `events.out.tfevents.*`), so that no point is written twice and the
run keeps its name in TensorBoard. `follow` keeps converting live runs: every POLL_SECONDS it reads the
lines added since (`JsonlTail`) and writes the epochs not written yet (an epoch a resumed run logs again
keeps its first points; a new conversion takes the last), until every run's status
(`runstatus.summarize`) is no longer starting, running or waiting, or Ctrl-C; the hparams are written then.

The runs are read only through the project's readers (`JsonlTail`, `RunHistory`, `summarize`,
`read_metrics`), every field as possibly absent or of the wrong type (skipped). Nothing is written into a
run directory: its engine stays its only writer, and LOGDIR may not lie inside one. User mistakes (not a
run directory, a LOGDIR that cannot be written) are one sentence (`RunDirError`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import RunDirError, UserError
from ..limits import MAX_BUDGET_BINS, MAX_CHOICES, MAX_EDGES
from ..run import jsonio, layout
from ..run.events import EPOCH, ERROR, GENOTYPE, RUN_END, RUN_START, SPACE, clean_event
from ..run.history import RunHistory
from ..run.jsonl import JsonlTail
from ..run.runstatus import summarize
from .tensorboard_text import code_block, config_text, genotype_text, hparams_of, is_number, md_cell, space_text

POLL_SECONDS = 2.0  # how often `follow` reads the runs' new lines
FOLLOWED = ("starting", "running", "waiting")  # the statuses `follow` waits through
EVENT_FILE_PREFIX = "events.out.tfevents."  # the event files SummaryWriter writes (and a new conversion deletes)
HPARAMS_RUN = "hparams"  # the sub-run of LOGDIR/<name> that holds the run's hparams and final metrics
FINAL_METRIC = "hparams/final_acc"
RETRAIN_METRIC = "hparams/retrain_top1"

# the epoch fields written under their own name, when they are numbers
EPOCH_FIELDS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "images_per_s",
    "peak_mem_bytes",
    "memory_estimate_bytes",
    "skip_fraction",  # search
    "top1",  # retrain
    "top5",
    "val_acc_smallest",  # focus
    "val_loss_smallest",
    "sampler_steps",
)
FAIRNESS_TERMS = ("skip", "type", "total")
COST_PARTS = ("flops", "params")


def tag_part(name: Any) -> str:
    """`name` as one part of a tag: letters, digits, `_`, `.` and `-` ("0->2" is `0-2`), never empty."""
    return re.sub(r"[^\w.\-]+", "_", str(name).replace("->", "-"), flags=re.ASCII) or "_"


def folder_name(run_dir: Path) -> str:
    """The name of a run directory as a TensorBoard run: the folder's name, made safe (no leading dot)."""
    return tag_part(Path(run_dir).resolve().name).lstrip(".") or "run"


def _unique_names(run_dirs: list[Path]) -> list[str]:
    """A TensorBoard run name for each run directory: its own name; for a second of that name,
    <parent>-<name> (runs/a/retrain and runs/b/retrain: a-retrain, b-retrain), then -2, -3, ..."""
    names: list[str] = []
    for run_dir in run_dirs:
        name = folder_name(run_dir)
        if name in names:
            name = f"{folder_name(Path(run_dir).resolve().parent)}-{name}"
        base, k = name, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# what an epoch becomes


def epoch_scalars(epoch: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(tag, value) of every number an epoch event holds that TensorBoard shows (see the module); the fields
    that are absent or not numbers are skipped."""
    for name in EPOCH_FIELDS:
        if is_number(v := epoch.get(name)):
            yield name, v
    fairness = epoch.get("fairness")
    if isinstance(fairness, dict):
        for term in FAIRNESS_TERMS:
            if is_number(v := fairness.get(term)):
                yield f"fairness/{term}", v
    shares = epoch.get("type_shares")
    if isinstance(shares, dict):
        for op_type, v in list(shares.items())[:MAX_CHOICES]:
            if is_number(v):
                yield f"type_shares/{tag_part(op_type)}", v
    cost = epoch.get("expected_cost")
    if isinstance(cost, dict):
        for part in COST_PARTS:
            if is_number(v := cost.get(part)):
                yield f"expected_cost/{part}", v
    weights = epoch.get("arch_weights")
    if isinstance(weights, dict):
        for edge, ops in list(weights.items())[:MAX_EDGES]:
            if isinstance(ops, dict):
                for op, v in list(ops.items())[:MAX_CHOICES]:
                    if is_number(v):
                        yield f"alpha/{tag_part(edge)}/{tag_part(op)}", v
    sampler = epoch.get("sampler")
    bins = sampler.get("bins") if isinstance(sampler, dict) else None
    if isinstance(bins, list):
        for k, b in enumerate(bins[:MAX_BUDGET_BINS], 1):
            if not isinstance(b, dict):
                continue
            budget, mean = b.get("budget_flops"), b.get("mean_flops")
            if is_number(budget) and is_number(mean) and budget > 0:
                yield f"sampler/bin{k}/mean_flops_over_budget", mean / budget
            for name in ("feasible", "entropy"):
                if is_number(v := b.get(name)):
                    yield f"sampler/bin{k}/{name}", v


def _top1(run_dir: Path, note: Callable[[str], None]) -> float | None:
    """A retrain's test top-1 from its metrics.json (`read_metrics`); None when it has none, with a note when
    it is damaged."""
    from ..run.records import read_metrics

    try:
        top1 = read_metrics(run_dir).get("top1")
    except FileNotFoundError:
        return None
    except UserError as e:
        note(f"{e} (left out of the HParams table)")
        return None
    return top1 if is_number(top1) else None


# ---------------------------------------------------------------------------------------------
# one run


class RunConverter:
    """Writes one run directory's events into one TensorBoard run folder as they come: `poll` reads the lines
    added since the last poll and writes what is new (each epoch once), `finish` writes the hparams and
    closes the files. `status` is the run's status as far as its events and its lock say."""

    def __init__(self, run_dir: Path, folder: Path, note: Callable[[str], None] = lambda text: None):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.folder, self.note = Path(run_dir), Path(folder), note
        self.writer = SummaryWriter(log_dir=str(self.folder), flush_secs=POLL_SECONDS)
        self.tail = JsonlTail(self.run_dir / layout.EVENTS, clean=clean_event)
        self.events: list[dict[str, Any]] = []
        self.history = RunHistory()
        self.written: set[tuple[int, int]] = set()  # (stage, epoch) of the epochs written
        self.step = 0  # the largest step written
        self.last_epoch: dict[str, Any] | None = None  # the epoch at that step
        self.logged_step = 0  # the step of the last epoch in the log so far: where the texts of later events go
        self.genotypes = 0
        self.bad_lines = 0
        self.finished = False

    def poll(self) -> int:
        """Read and write what the run has logged since the last poll; returns the epochs written."""
        new = []
        for kind, obj in self.tail.read_new():
            if kind == "ok":
                new.append(obj)
            else:
                self.bad_lines += 1
        for ev in new:
            self.history.apply(ev)
        self.events += new
        ordered = self.history.ordered()
        written = self._write_epochs(ordered)
        steps = {(e["stage"], e["epoch"]): e["x"] for e in ordered}
        for ev in new:  # in log order: each text at the step of the last epoch logged before it
            if ev.get("type") == EPOCH:
                stage = ev.get("stage") if type(ev.get("stage")) is int else 1  # as RunHistory.ordered reads it
                self.logged_step = max(self.logged_step, steps.get((stage, ev.get("epoch")), 0))
            else:
                self._write_event(ev, self.logged_step)
        self.writer.flush()
        return written

    def _write_epochs(self, ordered: list[dict[str, Any]]) -> int:
        """The epochs of `ordered` (RunHistory.ordered) not written yet; returns how many."""
        count = 0
        for e in ordered:
            key = (e["stage"], e["epoch"])
            if key in self.written:  # written already (an epoch a resumed run logs again stays as first written)
                continue
            self.written.add(key)
            wall = e.get("time") if is_number(e.get("time")) else None
            for tag, value in epoch_scalars(e):
                self.writer.add_scalar(tag, value, e["x"], walltime=wall)
            if e["x"] >= self.step:
                self.step, self.last_epoch = e["x"], e
            count += 1
        return count

    def _write_event(self, ev: dict[str, Any], step: int) -> None:
        """The text of an event that is not an epoch (a run_start's config, a genotype, the space, an error,
        the run's end), at `step`; a genotype at the step of its stage's last epoch."""
        kind = ev.get("type")
        wall = ev.get("time") if is_number(ev.get("time")) else None
        if kind == RUN_START and isinstance(ev.get("config"), dict):
            title = f"{'resumed' if ev.get('resumed') is True else 'started'} at step {step}"
            self.writer.add_text("config", config_text(ev["config"], title), step, walltime=wall)
        elif kind == GENOTYPE and isinstance(ev.get("genotype"), dict):
            stage = ev.get("stage")
            steps = [e["x"] for e in self.history.of_stage(stage)] if type(stage) is int else []
            title = f"cell of stage {stage}" if type(stage) is int else "cell"
            at = max(steps, default=step)
            self.writer.add_text("genotype", genotype_text(ev["genotype"], title), at, walltime=wall)
            self.genotypes += 1
        elif kind == SPACE:
            self.writer.add_text("space", space_text(ev), step, walltime=wall)
        elif kind == ERROR and isinstance(ev.get("message"), str):
            text = [f"**error**: {md_cell(ev['message'])}"]
            if isinstance(ev.get("traceback"), str) and ev["traceback"]:
                text += code_block(ev["traceback"])
            self.writer.add_text("error", "\n".join(text), step, walltime=wall)
        elif kind == RUN_END:
            status, message = ev.get("status"), ev.get("message")
            text = f"**{md_cell(status if isinstance(status, str) else 'ended')}**"
            if isinstance(message, str) and message:
                text += f": {md_cell(message)}"
            self.writer.add_text("run_end", text, step, walltime=wall)

    def status(self) -> str:
        """The run's status (`RunStatus.STATUSES`) from the events read so far and its engine's lock."""
        return summarize(self.run_dir, self.events).status

    def finish(self) -> None:
        """Write what needs the whole run (genotype.json when no event held a cell, the hparams) and close
        the event file."""
        if self.finished:
            return
        self.finished = True
        try:
            if self.bad_lines:
                self.note(f"{self.run_dir}: {self.bad_lines} malformed line(s) of {layout.EVENTS} skipped.")
            if not self.genotypes:
                self._write_genotype_file()
            self._write_hparams()
        finally:
            self.writer.close()

    def _write_genotype_file(self) -> None:
        path = self.run_dir / layout.GENOTYPE
        try:
            doc = jsonio.read_json_file(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError, UserError) as e:
            self.note(f"{jsonio.printable(path, False)} is left out: {e}")
            return
        if isinstance(doc, dict):
            self.writer.add_text("genotype", genotype_text(doc, f"cell ({layout.GENOTYPE})"), self.step)

    def _write_hparams(self) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        run = summarize(self.run_dir, self.events)
        if not run.config:
            return  # no run_start with a config: nothing to put in the table
        metrics: dict[str, float] = {}
        final = _top1(self.run_dir, self.note)
        if final is None and self.last_epoch is not None and is_number(self.last_epoch.get("val_acc")):
            final = self.last_epoch["val_acc"]
        if final is not None:
            metrics[FINAL_METRIC] = final
        if layout.is_run_dir(self.run_dir / layout.RETRAIN):
            retrain_top1 = _top1(self.run_dir / layout.RETRAIN, self.note)
            if retrain_top1 is not None:
                metrics[RETRAIN_METRIC] = retrain_top1
        _, session_start, session_end = hparams(hparams_of(run.config, run.kind), metrics)
        with SummaryWriter(log_dir=str(self.folder / HPARAMS_RUN)) as session:
            for summary in (session_start, session_end):
                session.file_writer.add_summary(summary, self.step)
            for tag, value in metrics.items():
                session.add_scalar(tag, value, self.step)


# ---------------------------------------------------------------------------------------------
# the command


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def prepare_folder(folder: Path) -> int:
    """Make LOGDIR/<name> ready for a new conversion: a folder (not a link, not a file) without the event
    files of an earlier one (deleted, only `events.out.tfevents.*`). Returns how many were deleted."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise RunDirError(
            f"{jsonio.printable(folder, False)} is not a folder (a file or a link); remove it or pick another --logdir."
        )
    if not folder.exists():
        return 0
    deleted = 0
    try:
        for entry in os.scandir(folder):
            if entry.name.startswith(EVENT_FILE_PREFIX) and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
                deleted += 1
    except OSError as e:
        raise RunDirError(
            f"cannot replace the earlier event files in {jsonio.printable(folder, False)} ({e.strerror or e})."
        ) from None
    return deleted


def convert_runs(
    run_dirs: list[Path],
    logdir: Path,
    follow: bool = False,
    say: Callable[[str], None] = print,
    note: Callable[[str], None] = lambda text: None,
    poll_seconds: float = POLL_SECONDS,
) -> list[Path]:
    """Write each run directory into LOGDIR/<name> as TensorBoard event files (see the module); with `follow`,
    go on converting until no run is live any more (or Ctrl-C: what was read is written and closed). `say`
    gets a line per run (and per poll that adds epochs), `note` what is passed over. Returns the folders.

    Checks everything before writing anything: each RUN_DIR a run directory (RunDirError), LOGDIR writable
    and outside them, the tensorboard package installed (UserError)."""
    if not run_dirs:
        raise UserError("give at least one run directory to convert.")
    unique = list(dict.fromkeys(Path(p).resolve() for p in run_dirs))
    given = {Path(p).resolve(): Path(p) for p in reversed(run_dirs)}  # each run as the user named it
    for run_dir in unique:
        layout.require_run_dir(given[run_dir])
    logdir = Path(logdir)
    layout.ensure_writable(logdir, "the TensorBoard log directory", "give --logdir a folder you can write")
    for run_dir in unique:
        if _is_within(logdir.resolve(), run_dir):
            inside = jsonio.printable(given[run_dir], False)
            raise RunDirError(
                f"--logdir {jsonio.printable(logdir, False)} is inside the run directory {inside}, which only its "
                "engine writes; give --logdir a folder outside it."
            )
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise UserError("dasvit tensorboard needs the tensorboard package: pip install tensorboard.") from None
    folders = [logdir / name for name in _unique_names(unique)]
    for folder in folders:
        prepare_folder(folder)
        prepare_folder(folder / HPARAMS_RUN)
    converters: list[RunConverter] = []
    try:
        for run_dir, folder in zip(unique, folders):
            converters.append(c := RunConverter(given[run_dir], folder, note))
            written = c.poll()
            say(f"{jsonio.printable(c.run_dir, False)} -> {jsonio.printable(c.folder, False)}: {written} epoch(s)")
        live = []
        for c in converters if follow else ():
            status = c.status()
            if status in FOLLOWED:
                live.append(c)
            else:
                say(f"{c.folder.name}: {status}, no engine to follow")
        if live:
            say(f"following {len(live)} live run(s) every {poll_seconds:g} s (Ctrl-C to stop)")
        while live:
            time.sleep(poll_seconds)
            for c in live:
                written = c.poll()
                if written and c.last_epoch is not None:
                    e = c.last_epoch
                    say(f"{c.folder.name}: +{written} epoch(s), now stage {e['stage']} epoch {e['epoch']}")
            ended = [c for c in live if c.status() not in FOLLOWED]
            for c in ended:
                c.poll()  # what it wrote between the last read and its end
                say(f"{c.folder.name}: {c.status()}")
            live = [c for c in live if c not in ended]
    finally:
        for c in converters:
            c.finish()
    return folders

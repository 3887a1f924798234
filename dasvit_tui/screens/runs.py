"""`dasvit tui` with no argument: every run under `runs/`, what it is and where it stands.

The list is read in a worker thread (`dasvit.run.runstatus.iter_runs` + `summarize`) every two seconds. Enter
opens a run's monitor; `n` starts a new search from a preset chosen in a list.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Label, OptionList, Static

from dasvit.run import jsonio, layout
from dasvit.run.launcher import QueuedJob, queued
from dasvit.run.runstatus import RunSummary, iter_runs, summarize

REFRESH_SECONDS = 2.0
STATUS = {
    "running": ("running", "green"),
    "waiting": ("waiting for approval", "bold black on yellow"),
    "finished": ("finished", "dodger_blue1"),
    "stopped": ("stopped", "grey70"),
    "failed": ("failed", "red"),
    "crashed": ("engine died", "red"),
    "not started": ("not started", "grey50"),
}


def run_label(summary: RunSummary, root: Path, previous: RunSummary | None = None) -> str:
    """The run's path under root; a retrain listed right below its run is `└ retrain` (a search's) or
    `└ specialized/<budget>-retrain` (a focus run's specialized architecture)."""
    if previous is not None and summary.path.name == layout.RETRAIN and summary.path.parent == previous.path:
        return f" └ {layout.RETRAIN}"
    if previous is not None and summary.path.parent.name == layout.SPECIALIZED:
        owner = summary.path.parent.parent
        if owner in (previous.path, previous.path.parent.parent):  # below its focus run or a sibling retrain
            return f" └ {layout.SPECIALIZED}/{jsonio.printable(summary.path.name, newlines=False)}"
    try:
        return jsonio.printable(summary.path.relative_to(root), newlines=False)
    except ValueError:
        return jsonio.printable(summary.path, newlines=False)


def row_cells(s: RunSummary, label: str) -> list:
    status, style = STATUS.get(s.status, (s.status, ""))
    stages = len(s.planned_stages)
    stage = f"{s.stage}/{stages}" if stages > 1 else "–"
    epoch = f"{s.epoch}/{s.stage_epochs}" if s.stage_epochs else "–"
    best = f"{s.best_acc:.1%}" if s.best_acc is not None else "–"
    # every cell a Text: a run's name, kind and preset come from its files, never read as markup
    return [
        Text(label),
        Text(s.kind),
        Text(s.preset),
        Text(status, style=style),
        stage,
        epoch,
        Text(best, justify="right"),
    ]


MAX_QUEUE_LINES = 6


def queue_text(jobs: list[QueuedJob]) -> Text:
    """This user's dasvit jobs in SLURM's queue: id, state (and why pending), time, what they run."""
    text = Text("SLURM queue", style="bold")
    for j in jobs[:MAX_QUEUE_LINES]:
        why = f" ({j.reason})" if j.state == "PENDING" and j.reason not in ("", "None") else ""
        style = "yellow" if j.state == "PENDING" else "green"
        text.append(f"\n{j.job_id:>12}  ")
        text.append(f"{j.state}{why}", style=style)
        text.append(f"  {j.elapsed}  {jsonio.printable(j.comment or j.name, False)[:90]}")
    if len(jobs) > MAX_QUEUE_LINES:
        text.append(f"\n… and {len(jobs) - MAX_QUEUE_LINES} more (squeue --me)")
    return text


class RunsScreen(Screen):
    BINDINGS = [
        Binding("n", "new", "New run"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.loaded = False
        self.summaries: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        yield Static(
            Text.assemble(("dasvit", "bold"), f" · runs under {jsonio.printable(self.root, False)}/"), id="runs-title"
        )
        table: DataTable = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns("run", "kind", "preset", "status", "stage", "epoch", "best acc")
        yield table
        yield Static("", id="runs-queue")
        yield Static("", id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        self._load()
        self.set_interval(REFRESH_SECONDS, self._load)

    def on_screen_resume(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="runs")
    def _load(self) -> None:
        summaries = [summarize(p) for p in iter_runs(self.root)]
        self.app.call_from_thread(self._show, summaries, queued())

    def _show(self, summaries: list[RunSummary], jobs: list[QueuedJob] = ()) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        previous = None
        for s in summaries:
            table.add_row(*row_cells(s, run_label(s, self.root, previous)), key=str(s.path))
            previous = s
        if summaries:
            table.move_cursor(row=min(cursor, len(summaries) - 1))
        self.summaries = summaries
        waiting = sum(s.status == "waiting" for s in summaries)
        hint = (
            f"no runs yet under {jsonio.printable(self.root, False)}/ — press n to start a search"
            if not summaries
            else f"{len(summaries)} runs"
            + (f" · {waiting} waiting for your approval" if waiting else "")
            + " · enter opens"
        )
        pending = sum(j.state == "PENDING" for j in jobs)
        if pending:
            hint += f" · {pending} SLURM job(s) pending"
        self.query_one("#runs-hint", Static).update(Text(hint))
        queue = self.query_one("#runs-queue", Static)
        queue.display = bool(jobs)
        queue.update(queue_text(jobs))
        self.loaded = True

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(Path(str(event.row_key.value)))

    def action_new(self) -> None:
        def chosen(preset: str | None) -> None:
            if preset:
                self.app.start_search(preset)

        self.app.push_screen(PresetScreen(), chosen)


class PresetScreen(ModalScreen[str | None]):
    """Choose the preset of a new run (run directory runs/<preset>-<time>): a focus-* preset trains a
    FocusFormer, any other runs a search with manual approval."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        from dasvit.run.presets import preset_names

        with Vertical(id="dialog"):
            yield Label("[b]New run[/b]: choose a preset. A focus-* preset trains a FocusFormer; the others search.")
            yield OptionList(*preset_names(), id="presets")
            yield Label(
                "The run goes on in the background when you leave; a search asks you here to approve each "
                "stage's pruning.",
                classes="hint",
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.prompt))

    def action_cancel(self) -> None:
        self.dismiss(None)

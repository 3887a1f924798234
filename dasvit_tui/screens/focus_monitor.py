"""The monitor of a FocusFormer run: supernet loss and accuracy per epoch, the Pareto scatter of what the
sampler scored, the sampler per budget bin, system panel and engine log.

It is the search monitor (`MonitorScreen`: the same watcher, state, header, system panel, log, stop and
leave) with FocusFormer's widgets; everything comes from the run directory's events.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static

from dasvit import rundir as rd

from ..specialize_job import SpecializeJob
from ..state import drawable
from ..widgets.charts import ChartData, LineChart, Series
from ..widgets.header import RunHeader
from ..widgets.log import EngineLog
from ..widgets.pareto import ParetoData, ParetoPlot, SamplerTable
from ..widgets.system import SystemPanel
from .monitor import TRAIN, VAL, MonitorScreen, _values
from .specialize import SpecializeScreen


def pareto_data(state) -> ParetoData:
    """The scatter of a `RunState`: the last epoch's points against the earlier ones, the budget lines."""
    last = len(state.epochs) - 1
    now, earlier = [], []
    for i, p in state.scored_points():
        (now if i == last else earlier).append((float(p["flops"]), float(p["val_acc"])))
    space = state.space or {}
    lo, hi = space.get("min_flops"), space.get("max_flops")
    x_range = (float(lo), float(hi)) if drawable(lo) and drawable(hi) else None
    return ParetoData(now, earlier, state.budgets, x_range)


class FocusMonitorScreen(MonitorScreen):
    """Header, loss and accuracy charts, Pareto scatter, sampler table, system panel and log of a focus run;
    `b` specializes it for a budget, `g` draws what was specialized."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.specialize_job: SpecializeJob | None = None  # the dialog's, kept here: it outlives the dialog
        self._job_told: SpecializeJob | None = None

    BINDINGS = [
        Binding("b", "specialize", "Specialize…"),
        Binding("g", "genotype", "Genotype"),
        Binding("s", "stop", "Stop"),
        Binding("escape", "back", "Back"),
        Binding("q", "leave", "Leave"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="body"):
            with Vertical(id="focus-left"):
                yield ParetoPlot(id="pareto")
                yield SamplerTable(id="sampler")
            with Vertical(id="focus-right"):
                yield Static(id="failure")
                yield LineChart("loss", id="loss")
                yield LineChart("accuracy", id="acc")
                yield SystemPanel(id="system")
                yield EngineLog(id="log")
        yield Footer()

    def _redraw(self) -> None:
        s = self.state
        eps = s.epochs
        x_max = max(1, s.total_epochs)
        self.query_one(RunHeader).show(s)
        self.query_one("#loss", LineChart).plot(
            ChartData(
                [Series("train", _values(eps, "train_loss"), TRAIN), Series("val", _values(eps, "val_loss"), VAL)],
                x_max=x_max,
            )
        )
        self.query_one("#acc", LineChart).plot(
            ChartData(
                [Series("train", _values(eps, "train_acc"), TRAIN), Series("val", _values(eps, "val_acc"), VAL)],
                x_max=x_max,
                y_min=0.0,
                y_max=1.0,
            )
        )
        self.query_one(ParetoPlot).plot(pareto_data(s))
        self.query_one(SamplerTable).show(s.sampler_bins, (s.last or {}).get("epoch"))
        if not s.live:
            self._show_idle()
        self._show_failure()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return bool(self.state.live)
        return action not in ("prune", "retrain")  # a search's keys: hidden here

    # -- specializing ----------------------------------------------------------------------------
    def _tick(self) -> None:
        super()._tick()
        job = self.specialize_job
        if job is not None and not job.running and job is not self._job_told:
            self._job_told = job
            if not isinstance(self.app.screen, SpecializeScreen):  # the dialog shows it itself
                if job.error:
                    self.notify(f"specialize {job.budget.text}: {job.error}", severity="error", timeout=8, markup=False)
                else:
                    self.notify(
                        f"specialized for {job.budget.text} FLOPs: b shows it, r there retrains it.",
                        timeout=8,
                        markup=False,
                    )

    def action_specialize(self) -> None:
        self.app.push_screen(SpecializeScreen(self))

    def action_genotype(self) -> None:
        """The newest specialized architecture (a version-2 genotype); the base cell before there is one."""
        from .genotype import GenotypeScreen

        job = self.specialize_job
        newest = job.genotype_path if job is not None else None
        if newest is None:
            found = sorted((self.run_dir / rd.SPECIALIZED).glob("*.json"), key=lambda p: p.stat().st_mtime)
            newest = found[-1] if found else None
        if newest is not None:
            self.app.push_screen(GenotypeScreen(newest, title="specialized architecture"))
        elif (self.run_dir / rd.BASE_GENOTYPE).is_file():
            self.notify("Nothing specialized yet (b does it); this is the base cell the space sizes.", timeout=5)
            self.app.push_screen(GenotypeScreen(self.run_dir / rd.BASE_GENOTYPE, title="base cell"))
        else:
            self.notify("No genotype yet: the base cell is written when the run starts.", timeout=4)

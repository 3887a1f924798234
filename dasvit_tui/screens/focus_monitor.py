"""The monitor of a FocusFormer run: supernet loss and accuracy per epoch, the Pareto scatter of what the
sampler scored, the sampler per budget bin, system panel and engine log.

It is a `MonitorScreen` (the watcher, state, header, engine-error box, system panel, log, stop, back and
leave of every monitor) with FocusFormer's widgets and keys; everything comes from the run directory's
events.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding

from dasvit.run import layout
from dasvit_tui.screens.monitor import MonitorScreen, train_val
from dasvit_tui.screens.specialize import SpecializeScreen
from dasvit_tui.specialize_job import SpecializeJob
from dasvit_tui.state import RunState, drawable
from dasvit_tui.widgets.charts import LineChart
from dasvit_tui.widgets.pareto import ParetoData, ParetoPlot, SamplerTable


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

    KIND = "focus"
    BINDINGS = [
        Binding("g", "genotype", "Genotype"),
        *MonitorScreen.COMMON_BINDINGS,
        Binding("b", "specialize", "Specialize…"),  # last in the footer, where it has always been
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.specialize_job: SpecializeJob | None = None  # the dialog's, kept here: it outlives the dialog
        self._job_told: SpecializeJob | None = None

    def compose_left(self) -> ComposeResult:
        yield ParetoPlot(id="pareto")
        yield SamplerTable(id="sampler")

    def compose_right(self) -> ComposeResult:
        yield LineChart("loss", id="loss")
        yield LineChart("accuracy", id="acc")

    def draw(self, s: RunState) -> None:
        eps, x_max = s.epochs, max(1, s.total_epochs)
        self.query_one("#loss", LineChart).plot(train_val(eps, "loss", x_max))
        self.query_one("#acc", LineChart).plot(train_val(eps, "acc", x_max, y_min=0.0, y_max=1.0))
        self.query_one(ParetoPlot).plot(pareto_data(s))
        self.query_one(SamplerTable).show(s.sampler_bins, (s.last or {}).get("epoch"))

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
        from dasvit_tui.screens.genotype import GenotypeScreen

        job = self.specialize_job
        newest = job.genotype_path if job is not None else None
        if newest is None:
            found = sorted((self.run_dir / layout.SPECIALIZED).glob("*.json"), key=lambda p: p.stat().st_mtime)
            newest = found[-1] if found else None
        if newest is not None:
            self.app.push_screen(GenotypeScreen(newest, title="specialized architecture"))
        elif (self.run_dir / layout.BASE_GENOTYPE).is_file():
            self.notify("Nothing specialized yet (b does it); this is the base cell the space sizes.", timeout=5)
            self.app.push_screen(GenotypeScreen(self.run_dir / layout.BASE_GENOTYPE, title="base cell"))
        else:
            self.notify("No genotype yet: the base cell is written when the run starts.", timeout=4)

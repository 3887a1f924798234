"""The monitor of a retrain (a searched cell, ViT-B/16, or a specialized FocusFormer architecture trained
from scratch): loss, top-1/top-5 and throughput per epoch, and its figures so far; `g` shows the genotype
it trains. The rest is every monitor's (`MonitorScreen`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from dasvit.fmt import human_bytes
from dasvit_tui.screens.monitor import THIRD, TRAIN, VAL, MonitorScreen, _values, train_val
from dasvit_tui.state import RunState
from dasvit_tui.widgets.charts import ChartData, LineChart, Series


class RetrainMonitorScreen(MonitorScreen):
    """Loss, top-1/top-5 and throughput charts on the left; the retrain's figures on the right."""

    KIND = "retrain"
    BINDINGS = [Binding("g", "genotype", "Genotype"), *MonitorScreen.COMMON_BINDINGS]

    def compose_left(self) -> ComposeResult:
        yield LineChart("loss", id="loss")
        yield LineChart("accuracy", id="acc")
        yield LineChart("throughput", id="speed")

    def compose_right(self) -> ComposeResult:
        info = Static(id="retrain-info")
        info.border_title = "retrain"
        yield info

    def draw(self, s: RunState) -> None:
        eps, x_max = s.epochs, max(1, s.total_epochs)
        self.query_one("#loss", LineChart).plot(train_val(eps, "loss", x_max, vlines=s.stage_marks()))
        top = [Series("top-1", _values(eps, "top1"), TRAIN), Series("top-5", _values(eps, "top5"), VAL)]
        self.query_one("#acc", LineChart).plot(ChartData(top, x_max=x_max, y_min=0.0, y_max=1.0))
        speed = [Series("images/s", _values(eps, "images_per_s"), THIRD)]
        self.query_one("#speed", LineChart).plot(ChartData(speed, x_max=x_max))
        self.query_one("#retrain-info", Static).update(self._retrain_info())

    def _retrain_info(self) -> Text:
        s, last = self.state, self.state.last or {}
        out = Text()
        best = max((v for v in _values(s.epochs, "top1") if v is not None), default=None)
        rows = [
            ("top-1", last.get("top1")),
            ("best top-1", best),
            ("top-5", last.get("top5")),
            ("images/s", last.get("images_per_s")),
            ("lr", last.get("lr")),
            ("s/epoch", last.get("seconds")),
        ]
        metrics = s.metrics or {}
        rows += [(k, metrics.get(k)) for k in ("params", "flops") if k in metrics]
        for k, v in rows:
            if v is None:
                continue
            val = (
                f"{v:.2%}"
                if k in ("top-1", "best top-1", "top-5")
                else (f"{v:,.0f}" if k in ("params", "flops") else f"{v:.4g}")
            )
            out.append(f"{k:>11} ", style="bold")
            out.append(val + "\n")
        peak = last.get("peak_mem_bytes")
        if peak:
            out.append(f"{'peak mem':>11} ", style="bold")
            out.append(human_bytes(peak))
        return out if out.plain else Text("waiting for the first epoch…", style="dim")

    def action_genotype(self) -> None:
        from dasvit_tui.screens.genotype import GenotypeScreen

        self.app.push_screen(GenotypeScreen(self.run_dir, title="genotype it trains"))  # kept in its run directory

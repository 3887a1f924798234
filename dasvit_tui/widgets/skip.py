"""The skip-connect fraction over epochs, with the op-type shares the fairness term bounds, the bounds
drawn as dotted lines, and the latest fairness loss terms in the bottom border.

DARTS on a ViT collapses onto `skip`; operation fairness regularisation keeps the mean weight of each op
type (msa, mlp) between `lower` and `upper` and pushes the skip weight down. This chart shows whether it
does.
"""

from __future__ import annotations

from typing import Any

from ..state import RunState
from .charts import ChartData, LineChart, Series


def type_share(weights: dict[str, dict[str, float]], prefix: str) -> float | None:
    """W_t: mean over edges of the summed weight on ops of one type."""
    if not weights:
        return None
    sums = [sum(v for op, v in w.items() if op.startswith(prefix + "_")) for w in weights.values()]
    return sum(sums) / len(sums)


def fairness_terms(ev: dict[str, Any] | None) -> str:
    f = (ev or {}).get("fairness")
    if not isinstance(f, dict):
        return ""
    names = {"skip": "skip", "type": "type", "total": "Σ"}
    parts = [f"{names[k]} {f[k]:.2f}".replace(" 0.", " .") for k in names if isinstance(f.get(k), (int, float))]
    return ("L " + " ".join(parts)) if parts else ""


class SkipChart(LineChart):
    """skip fraction, and the msa / mlp shares against the fairness bounds (dotted)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("share", id=id, classes=classes)

    def show(self, state: RunState) -> None:
        eps = state.epochs
        weights = [e.get("arch_weights") or {} for e in eps]
        skip = [e.get("skip_fraction") if isinstance(e.get("skip_fraction"), (int, float)) else None for e in eps]
        bounds = state.fairness_bounds
        self.plot(
            ChartData(
                series=[
                    Series("msa", [type_share(w, "msa") for w in weights], "dodger_blue1"),
                    Series("mlp", [type_share(w, "mlp") for w in weights], "green3"),
                    Series("skip", skip, "orange1"),
                ],
                x_max=state.total_epochs,
                vlines=state.stage_marks(),
                hlines=list(bounds) if bounds else [],
                y_min=0.0,
                y_max=1.0,
            )
        )
        terms = fairness_terms(state.last)
        self.border_subtitle = terms

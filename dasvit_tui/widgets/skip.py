"""The skip-connect fraction over epochs, with the op-type shares the fairness term bounds, the bounds
drawn as dotted lines, and the latest fairness loss in words in the bottom border.

DARTS on a ViT collapses onto `skip`; operation fairness regularisation keeps the mean weight of each op
type (msa, mlp) between `lower` and `upper` and pushes the skip weight down. This chart shows whether it
does.
"""

from __future__ import annotations

from typing import Any

from dasvit.model.opspec import type_shares
from dasvit_tui.state import RunState
from dasvit_tui.widgets.charts import ChartData, LineChart, Series


def type_share(ev: dict[str, Any], type_: str) -> float | None:
    """W_t of an epoch: the share the engine reports (`type_shares`). A run written before the engine
    reported it has only its `arch_weights`: then the same mean over edges of the summed weight on the ops
    of that type, worked out here."""
    shares = ev.get("type_shares")
    if not (isinstance(shares, dict) and isinstance(shares.get(type_), (int, float))):
        shares = type_shares(ev.get("arch_weights") or {})
    return float(shares[type_]) if type_ in shares else None


def fairness_words(ev: dict[str, Any] | None, width: int | None = None) -> str:
    """The fairness loss of the latest epoch in words, the longest wording that fits `width`: its skip term
    (skip weight above its fair-share threshold), its type term (msa / mlp shares outside their bounds) and
    the weighted total the α step adds to its loss."""
    f = (ev or {}).get("fairness")
    if not isinstance(f, dict) or not all(isinstance(f.get(k), (int, float)) for k in ("skip", "type")):
        return ""

    def num(v: float) -> str:
        return f"{v:.2f}".replace("0.", ".", 1) if 0 <= v < 1 else f"{v:.2f}"

    skip, type_ = num(f["skip"]), num(f["type"])
    total = num(f["total"]) if isinstance(f.get("total"), (int, float)) else None
    wordings = [
        f"fairness loss {total}: skip {skip} + op type {type_}" if total is not None else None,
        f"fairness loss: skip {skip} + type {type_}",
        f"fairness: skip {skip} type {type_}",
        f"fair: skip {skip} type {type_}",
    ]
    wordings = [w for w in wordings if w]
    return next((w for w in wordings if width is None or len(w) <= width), wordings[-1])


class SkipChart(LineChart):
    """skip fraction, and the msa / mlp shares against the fairness bounds (dotted)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("share", id=id, classes=classes)
        self._last: dict[str, Any] | None = None

    def _subtitle(self) -> None:
        self.border_subtitle = fairness_words(self._last, self.size.width - 4 if self.size.width else None)

    def on_resize(self) -> None:
        self._subtitle()

    def show(self, state: RunState) -> None:
        eps = state.epochs
        skip = [e.get("skip_fraction") if isinstance(e.get("skip_fraction"), (int, float)) else None for e in eps]
        bounds = state.fairness_bounds
        self.plot(
            ChartData(
                series=[
                    Series("msa", [type_share(e, "msa") for e in eps], "dodger_blue1"),
                    Series("mlp", [type_share(e, "mlp") for e in eps], "green3"),
                    Series("skip", skip, "orange1"),
                ],
                x_max=state.total_epochs,
                vlines=state.stage_marks(),
                hlines=list(bounds) if bounds else [],
                y_min=0.0,
                y_max=1.0,
            )
        )
        self._last = state.last
        self._subtitle()

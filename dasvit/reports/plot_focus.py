"""Figures of FocusFormer runs: where the sampler's draws lie against each budget over the epochs, and the
claim's Pareto fronts of the pareto and uniform supernets (PNG and SVG, matplotlib's Agg backend).

- `sampler` (a focus run, from its events.jsonl): per budget bin, the mean FLOPs of the sampler's draws
  against the bin's budget (dashed, same colour), the fraction of draws within budget, and the draws'
  entropy, per epoch; the uniform warm-up shaded.
- `claim` (`python experiments/focus_claim.py`'s claim.json): the Pareto front (FLOPs against inherited top-1 on
  the validation split) of everything evaluated on each supernet, seed by seed, the three budgets marked;
  and the pareto run's sampler draws at those budgets over the epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..focus.pareto import pareto_front
from ..limits import MAX_BUDGET_BINS
from ..run import jsonl
from ..run.events import EPOCH
from .figures import STYLE, pyplot, save

SUPERNET_COLOURS = {"pareto": "#d62728", "uniform": "#1f77b4"}


def sampler_epochs(run_dir: str | Path) -> list[dict[str, Any]]:
    """The epoch events of a focus run that carry the sampler's state (each epoch once: the last logged)."""
    events, _ = jsonl.read_events(Path(run_dir))
    by_epoch: dict[int, dict[str, Any]] = {}
    for e in events:
        bins = (e.get("sampler") or {}).get("bins") if isinstance(e.get("sampler"), dict) else None
        if e.get("type") == EPOCH and isinstance(e.get("epoch"), int) and isinstance(bins, list) and bins:
            by_epoch[e["epoch"]] = e
    return [by_epoch[k] for k in sorted(by_epoch)]


def _colours(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.1 + 0.8 * k / max(n - 1, 1)) for k in range(n)]


def _shade_warmup(ax, epochs: list[dict[str, Any]]) -> None:
    warm = [e["epoch"] for e in epochs if e.get("phase") == "uniform"]
    if warm:
        ax.axvspan(0.5, max(warm) + 0.5, color="0.92", zorder=0, lw=0)


def plot_sampler(run_dir: str | Path, out: Path, stem: str = "sampler", label: str | None = None) -> list[Path]:
    """The sampler figure of one focus run (see the module docstring); [] if no epoch carries its state."""
    plt = pyplot()

    epochs = sampler_epochs(run_dir)
    if not epochs:
        return []
    # the bins of any epoch (a damaged line may hold fewer or more), at most as many as a run may have
    k = min(max(len(e["sampler"]["bins"]) for e in epochs), MAX_BUDGET_BINS)
    colours = _colours(k)
    x = [e["epoch"] for e in epochs]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), constrained_layout=True)
        for ax in axes:
            _shade_warmup(ax, epochs)
        for b in range(k):
            series = [e["sampler"]["bins"][b] if b < len(e["sampler"]["bins"]) else {} for e in epochs]
            budget = next((s["budget_flops"] for s in reversed(series) if "budget_flops" in s), None)
            mean = [s.get("mean_flops") for s in series]
            axes[0].plot(x, [m / 1e6 if m is not None else None for m in mean], color=colours[b], lw=1.2)
            if budget:
                axes[0].axhline(budget / 1e6, color=colours[b], ls="--", lw=0.7)
            axes[1].plot(x, [s.get("feasible") for s in series], color=colours[b], lw=1.2)
            axes[2].plot(x, [s.get("entropy") for s in series], color=colours[b], lw=1.2, label=f"bin {b + 1}")
        axes[0].set(title="mean FLOPs of the draws (dashed: budget)", xlabel="epoch", ylabel="MFLOPs")
        axes[1].set(title="draws within budget", xlabel="epoch", ylabel="fraction", ylim=(-0.03, 1.03))
        axes[2].set(title="entropy of the draws", xlabel="epoch", ylabel="nats")
        axes[2].legend(ncol=2, frameon=False, loc="best")
        fig.suptitle(
            f"FocusFormer sampler per budget bin: {label or Path(run_dir).name} (shaded: uniform warm-up)", fontsize=9
        )
        try:
            return save(fig, out, stem)
        finally:
            plt.close(fig)


def plot_claim(result: dict[str, Any], out: Path, stem: str = "claim") -> list[Path]:
    """The claim figure from claim.json's content (see the module docstring)."""
    plt = pyplot()

    per_seed = result["per_seed"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), constrained_layout=True)
        ax = axes[0]
        for i, (seed, res) in enumerate(per_seed.items()):
            for sup, colour in SUPERNET_COLOURS.items():
                pts = [p for r in res["rows"] if r["supernet"] == sup for p in r.get("evaluated", [])]
                fr = pareto_front(pts)  # the (FLOPs, top-1) points no other beats
                if fr:
                    xs, ys = zip(*fr)
                    ax.step(
                        [v / 1e6 for v in xs],
                        [100 * v for v in ys],
                        where="post",
                        color=colour,
                        lw=1.2,
                        marker="o",
                        ms=2.5,
                        ls="-" if i == 0 else ":",
                        label=f"{sup} supernet, seed {seed}",
                    )
            for b in res["budgets"]:
                ax.axvline(b / 1e6, color="0.6", ls=":", lw=0.7)
        ax.set(title="Pareto front of all evaluated (validation)", xlabel="MFLOPs", ylabel="inherited top-1 (%)")
        ax.legend(frameon=False, loc="lower right")
        first = next(iter(per_seed.values()))
        hist = first["history"]
        x = [h["epoch"] for h in hist]
        colours = _colours(len(first["budgets"]))
        for j in range(len(first["budgets"])):
            budget = hist[-1]["bins"][j]["budget_flops"] / 1e6
            axes[1].plot(x, [h["bins"][j]["mean_flops"] / 1e6 for h in hist], color=colours[j], lw=1.2)
            axes[1].axhline(budget, color=colours[j], ls="--", lw=0.7)
            axes[2].plot(x, [h["bins"][j]["entropy"] for h in hist], color=colours[j], lw=1.2, label=f"{budget:.2f}M")
        warm = [h["epoch"] for h in hist if h.get("phase") == "uniform"]
        for a in axes[1:]:
            if warm:
                a.axvspan(0.5, max(warm) + 0.5, color="0.92", zorder=0, lw=0)
        axes[1].set(title="sampler draws: mean FLOPs (dashed: its bin's budget)", xlabel="epoch", ylabel="MFLOPs")
        axes[2].set(title="sampler draws: entropy", xlabel="epoch", ylabel="nats")
        axes[2].legend(title="bin budget", frameon=False)
        fig.suptitle(
            f"FocusFormer claim ({result.get('preset')}): pareto against uniform supernet; sampler of seed "
            f"{next(iter(per_seed))}",
            fontsize=9,
        )
        try:
            return save(fig, Path(out), stem)
        finally:
            plt.close(fig)

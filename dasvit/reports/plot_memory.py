"""The paper's Figure 1 by measurement: memory of one bi-level search step against the batch, a panel per
stage, plain DARTS against DASViT, fp32 and bf16, with the card's line (PNG and SVG, matplotlib's Agg
backend), from the file `dasvit search --dry-run --json FILE` writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from .figures import STYLE, pyplot, save

MEMORY_LINES = (  # (precision, PTS, checkpointed edges, colour, line style, label)
    ("fp32", False, False, "#d62728", "-", "plain DARTS, fp32"),
    ("bf16", False, False, "#d62728", "--", "plain DARTS, bf16"),
    ("fp32", True, False, "#1f77b4", "-", "DASViT (PTS), fp32"),
    ("bf16", True, False, "#1f77b4", "--", "DASViT (PTS), bf16"),
    ("bf16", True, True, "#2ca02c", ":", "DASViT, bf16, checkpointed edges"),
)


def load_memory(path: str | Path) -> dict[str, Any]:
    """A `dasvit search --dry-run --json` file held to its type (dasvit.run.records.MemoryFile: finite numbers,
    at most 64 stages), or one sentence why it is not one."""
    from ..run.records import DamagedRecord, MemoryFile, read_record

    p = Path(path)
    try:  # a path the user named: followed, but bounded and untrusted
        return read_record(p, MemoryFile, "a memory estimate written by dasvit search --dry-run --json", follow=True)
    except FileNotFoundError:
        raise UserError(f"{p} does not exist; write it with dasvit search --dry-run --json {p}.") from None
    except DamagedRecord as e:
        raise UserError(f"{e} Write it anew with dasvit search --dry-run --json.") from None


def plot_memory(path: str | Path, out: str | Path, gpu_bytes: int | None = None, max_batch: int = 128) -> list[Path]:
    """Memory of a bi-level step against the batch, one panel per stage (stage 1 at the paper's sizes is its
    Figure 1): weights + gradients + optimizer state + saved activations, plain DARTS against DASViT, fp32
    and bf16, with the card's memory as a line; the measured batches as points."""
    plt = pyplot()

    from .memory import StageMemory

    data = load_memory(path)
    try:
        stages = [StageMemory.from_json(s) for s in data["stages"]]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path} holds a stage estimate this version cannot read; write it anew.") from None
    gpu = gpu_bytes if gpu_bytes is not None else int(data.get("gpu_mem_bytes") or 24 * 2**30)
    gib = 2**30
    batches = list(range(1, max_batch + 1))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 2.9), squeeze=False, sharey=True)
        for ax, m in zip(axes[0], stages):
            for precision, pts, ckpt, colour, style, label in MEMORY_LINES:
                if not m.has(precision, pts, ckpt):
                    continue
                totals = [m.total(precision, pts, ckpt, b) / gib for b in batches]
                ax.plot(batches, totals, style, color=colour, lw=1.2, label=label)
                if not ckpt:  # measured points (a checkpointed line adds the recomputed node, a share of another)
                    act = m.activations[f"{precision}/{'pts' if pts else 'plain'}"]
                    fixed = sum(m.states(pts).values())
                    pb = sorted(act.points)
                    ax.plot(pb, [(fixed + act.points[b]) / gib for b in pb], "o", color=colour, ms=2.5, mfc="white")
            ax.axhline(gpu / gib, color="black", lw=0.8)
            ax.text(1, gpu / gib, f" {gpu / gib:g} GiB card", va="bottom", fontsize=7)
            ax.axvline(m.batch, color="grey", lw=0.6, ls=":")
            ops = "all ops" if m.assumed is None else f"{m.keep} ops/edge (most expensive)"
            title = f"stage {m.stage}: depth {m.depth}, {ops}"
            ax.set_title(title + ("\n(the paper's Figure 1)" if m.stage == 1 and m.image_size == 224 else ""))
            ax.set_xlabel(f"batch size (dotted: the preset's {m.batch})")
            ax.set_xlim(0, max_batch)
            ax.set_ylim(0, 1.6 * gpu / gib)
        axes[0][0].set_ylabel("GiB per step (weights, grads, optimizer, activations)", fontsize=7)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
        where = data.get("machine", {})
        fig.suptitle(
            f"{data.get('preset', '')}: memory of one search step against the batch "
            f"(activations measured on {where.get('device', '?')} at the circled batches)",
            fontsize=8,
        )
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        written = save(fig, Path(out), "memory")
        plt.close(fig)
    return written

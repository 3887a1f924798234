"""Will it fit? A search stage's memory, known before any training.

For each stage of a config, at its batch, the bytes a bi-level step holds at its peak:

- **weights, gradients, optimizer state**: exact, from the stage's supernet (fp32 master weights and
  gradients; AdamW's two moments on the weights, Adam's two on α). Under bf16 autocast they are the
  same: autocast casts per matmul, the master weights stay fp32.
- **activations**: the bytes autograd saves for backward in the weight step's forward (distinct storages,
  parameters excluded: `dasvit.reports.bench.saved_tensor_bytes`), *measured* on the stage's supernet at two small
  batches; the bytes are affine in the batch (intercept: what does not grow with it, e.g. autocast's bf16
  copies of the weights; per image: the slope). fp32, and bf16 under autocast (on a CPU entered
  explicitly: `dasvit.train.loop.autocast` is a no-op there), with partial token selection (DASViT) and
  without (plain DARTS), and with `search.checkpoint_edges` (each node's mixed edges recomputed in
  backward) off and on.

The sum is an upper bound of the step's peak as autograd reaches it (all four at once: the weight step's
gradients arrive while its activations are freed, and the α step runs while the last weight step's
gradients are still held); it leaves out the CUDA context (about 0.3-0.5 GiB), the allocator's
fragmentation, the optimizer step's temporaries (after backward, when the activations are gone) and the
data loader's pinned batches.

A stage after the first keeps `keep` ops per edge that only the search decides, so its estimate assumes
each edge keeps its `keep` most expensive ops (largest weight, gradient and optimizer bytes plus saved
activations at the stage's batch, each op measured alone): an upper bound. The estimate `dasvit search
--dry-run` prints, the one a search emits at each stage's start (a `memory` event, measured on the stage's
real supernet and precision) and the numbers of `dasvit plot --memory` all come from
`memory_measure.estimate_stage`.

Nothing here imports torch at module level: the monitor and the CLI read a `StageMemory` (as a dict from
the event log or a JSON file) without it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError
from ..fmt import count

FP32 = 4  # bytes per fp32 element: master weights, gradients and both optimizer moments are fp32
PRECISIONS = ("fp32", "bf16")


class MemorySizeError(UserError):
    """A memory size that cannot be parsed (`--gpu-mem`)."""


_BYTES = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_BINARY = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str, option: str = "--gpu-mem") -> int:
    """'24G', '24GB', '24GiB', '80g', '16384M', '1.5T' → bytes, binary (a 24 GB card holds 24 GiB); a bare number is
    bytes. Anything else, or zero, is one sentence."""
    m = _BYTES.match(str(text))
    if not m:
        raise MemorySizeError(f"{option} {text!r} is not a memory size; write it like 24G, 80G or 16384M.")
    value = float(m.group(1)) * _BINARY[m.group(2).lower()]
    if value < 1:
        raise MemorySizeError(f"{option} must be positive, got {text!r}.")
    return int(value)


def variant_key(precision: str, pts: bool, checkpoint: bool = False) -> str:
    """'fp32/pts', 'bf16/plain', 'fp32/pts/ckpt': the key of one measured variant of a stage."""
    return f"{precision}/{'pts' if pts else 'plain'}" + ("/ckpt" if checkpoint else "")


@dataclass
class Activations:
    """Saved-for-backward bytes of one variant: intercept + per_image × batch, from the measured points."""

    intercept: float
    per_image: float
    points: dict[int, int] = field(default_factory=dict)  # batch → measured bytes

    def at(self, batch: int) -> float:
        return self.intercept + self.per_image * batch

    @classmethod
    def fit(cls, points: dict[int, int]) -> Activations:
        """The line through the two smallest batches (the others only check it)."""
        b1, b2 = sorted(points)[:2]
        slope = (points[b2] - points[b1]) / (b2 - b1)
        return cls(points[b1] - slope * b1, slope, dict(points))


@dataclass
class StageMemory:
    """One stage's memory, before it runs (see the module's doc).

    Args:
        stage: 1-based stage number; depth, keep: the stage's.
        batch: the images per step (data.batch_size; per rank).
        params: weight parameters of the plain-DARTS supernet; selector_params: those partial token
            selection adds (the per-node query/key projections); alpha: α's elements.
        activations: variant_key → Activations.
        assumed: per edge the ops this estimate assumes (a later stage's: the most expensive `keep`), or
            None when every op is there (stage 1) or the stage's real mask was measured.
        device, path: where it was measured (cpu, cuda) and on which mixed-edge path (reference: the one path since the fused one was removed).
        pts_ratio: the kept fraction of patch tokens of the pts variants.
    """

    stage: int
    depth: int
    keep: int
    batch: int
    params: int
    selector_params: int
    alpha: int
    activations: dict[str, Activations]
    assumed: list[str] | None = None
    device: str = "cpu"
    path: str = "reference"
    pts_ratio: float = 0.5
    image_size: int = 0
    dim: int = 0
    # checkpointed edges: the largest node's share of the supernet's mixed edges, whose activations live again
    # while that node is recomputed in backward (added to a checkpointed variant's activations)
    recompute_fraction: float = 0.0

    def weight_params(self, pts: bool) -> int:
        return self.params + (self.selector_params if pts else 0)

    def states(self, pts: bool) -> dict[str, int]:
        """Exact bytes of weights (α included), gradients and optimizer state (AdamW and Adam: two moments)."""
        n, a = self.weight_params(pts), self.alpha
        return {"weights": FP32 * (n + a), "gradients": FP32 * (n + a), "optimizer": 2 * FP32 * (n + a)}

    def parts(self, precision: str, pts: bool, checkpoint: bool = False, batch: int | None = None) -> dict[str, int]:
        """{weights, gradients, optimizer, activations, total} in bytes at `batch` (default: the stage's)."""
        out = dict(self.states(pts))
        out["activations"] = int(round(self.activation_bytes(precision, pts, checkpoint, batch)))
        out["total"] = sum(out.values())
        return out

    def activation_bytes(self, precision: str, pts: bool, checkpoint: bool = False, batch: int | None = None) -> float:
        """Saved activations at `batch`; with checkpointed edges, plus the node recomputed in backward (its
        share of what the stored variant saves beyond the checkpointed one)."""
        b = self.batch if batch is None else batch
        act = self.activations[variant_key(precision, pts, checkpoint)].at(b)
        if checkpoint and self.has(precision, pts, False):
            stored = self.activations[variant_key(precision, pts, False)].at(b)
            act += self.recompute_fraction * max(stored - act, 0.0)
        return act

    def total(self, precision: str, pts: bool, checkpoint: bool = False, batch: int | None = None) -> int:
        return self.parts(precision, pts, checkpoint, batch)["total"]

    def max_batch(self, precision: str, pts: bool, gpu_bytes: int, checkpoint: bool = False) -> int:
        """The largest batch whose total fits `gpu_bytes` (0: not even one image)."""
        intercept = self.activation_bytes(precision, pts, checkpoint, 0)
        per_image = self.activation_bytes(precision, pts, checkpoint, 1) - intercept
        room = gpu_bytes - sum(self.states(pts).values()) - intercept
        if room < per_image or per_image <= 0:
            return 0 if room < per_image else 10**6
        return int(math.floor(room / per_image))

    def has(self, precision: str, pts: bool, checkpoint: bool = False) -> bool:
        return variant_key(precision, pts, checkpoint) in self.activations

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["activations"] = {
            k: {"intercept": a.intercept, "per_image": a.per_image, "points": {str(b): v for b, v in a.points.items()}}
            for k, a in self.activations.items()
        }
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageMemory:
        d = dict(d)
        d["activations"] = {
            k: Activations(
                float(a["intercept"]), float(a["per_image"]), {int(b): int(v) for b, v in a["points"].items()}
            )
            for k, a in d["activations"].items()
        }
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# reading: the table `dasvit search --dry-run` prints, the line a search prints at a stage's start


def gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB"


def describe_stage(m: StageMemory) -> str:
    """The heading of a stage's estimate: geometry, parameters, the exact states, what is assumed."""
    ops = "every op on every edge" if m.assumed is None else f"each edge keeps {', '.join(m.assumed)}"
    s = m.states(True)
    head = (
        f"stage {m.stage}: depth {m.depth}, {ops}, batch {m.batch}; {count(m.params)} weights "
        f"(+{count(m.selector_params)} with PTS): weights {gib(s['weights'])}, gradients {gib(s['gradients'])}, "
        f"AdamW/Adam state {gib(s['optimizer'])}"
    )
    if m.assumed is not None:
        head += f"\n  (kept ops are not known before the search: assumed the {m.keep} most expensive per edge, an upper bound)"
    return head


def stage_rows(m: StageMemory, gpu_bytes: int) -> list[tuple[str, str, str, str, str, str]]:
    """(precision, selection, edges, activations, total, fits / largest batch) per measured variant."""
    rows = []
    for precision in PRECISIONS:
        for pts in (False, True):
            for ckpt in (False, True):
                if not m.has(precision, pts, ckpt):
                    continue
                p = m.parts(precision, pts, ckpt)
                fits = "yes" if p["total"] <= gpu_bytes else "no"
                rows.append(
                    (
                        precision,
                        f"DASViT (PTS {m.pts_ratio:g})" if pts else "plain DARTS",
                        "checkpointed (+1 node recomputed)" if ckpt else "stored",
                        gib(p["activations"]),
                        gib(p["total"]),
                        f"{fits:3s} (largest batch {m.max_batch(precision, pts, gpu_bytes, ckpt):,})",
                    )
                )
    return rows


def report(stages: list[StageMemory], gpu_bytes: int) -> str:
    """The text `dasvit search --dry-run` prints: per stage its heading and one row per measured variant."""
    lines = []
    for m in stages:
        lines.append(describe_stage(m))
        head = ("precision", "token selection", "mixed edges", "activations", "total", f"fits {gib(gpu_bytes)}?")
        rows = [head, *stage_rows(m, gpu_bytes)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for r in rows:
            cells = [r[i].rjust(widths[i]) if i in (3, 4) else r[i].ljust(widths[i]) for i in range(len(r))]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
    if stages:
        m = stages[0]
        lines.append(
            f"measured on {m.device} ({m.path} mixed edges) at batches {', '.join(map(str, sorted(next(iter(m.activations.values())).points)))}; "
            "activations are the bytes autograd saves for backward, per image the slope. Not counted: the CUDA "
            "context, allocator fragmentation, the optimizer step's temporaries."
        )
    return "\n".join(lines)


def summary_line(m: StageMemory, precision: str, pts: bool, checkpoint: bool) -> str:
    """One line for a stage's start: the configured variant's total and its parts."""
    p = m.parts(precision, pts, checkpoint)
    how = f"{precision}, {'PTS' if pts else 'no PTS'}{', checkpointed edges' if checkpoint else ''}, batch {m.batch}"
    upper = ", kept ops assumed the most expensive" if m.assumed is not None else ""
    return (
        f"stage {m.stage} memory estimate ({how}{upper}): {gib(p['total'])} = weights {gib(p['weights'])} + "
        f"gradients {gib(p['gradients'])} + optimizer {gib(p['optimizer'])} + activations {gib(p['activations'])}"
    )

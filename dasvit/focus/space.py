"""FocusFormer's elastic space around a base cell, and one sub-network of it (`Subnet`).

The base cell is a version-1 genotype (`vit_b16`, or a DASViT search's cell). A sub-network picks one
`embed_dim` for the whole network, a `depth`, and per layer the size of every elastic edge of the cell:
the heads of each `msa` edge (each head `head_dim` wide, so the QKV width is heads × head_dim, as in
AutoFormer) and the ratio of each `mlp` edge. `skip` edges are fixed. With `vit_b16` and AutoFormer-Ti's
values (embed 192/216/240, depth 12/13/14, ratio 3.5/4, heads 3/4, head_dim 64) this is AutoFormer-Ti's
space.

An architecture is plain data: per layer, the op name of every edge of the base cell in the genotype's
edge order, e.g. `("skip", "msa_4", "skip", "mlp_3.5")` for the ViT block. Edges whose node does not
feed the cell output are never built, so they are not elastic: they keep the base cell's op.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GenotypeError
from ..model.genotype import Genotype, load_genotype
from ..model.opspec import mlp_name, msa_name, parse_op
from ..run import layout
from ..run.config import Config


@dataclass(frozen=True)
class Subnet:
    """One sub-network of the elastic space: what FocusFormer calls an architecture. (In this code "arch"
    is DASViT's α: `arch_weights`, `arch_step`, `arch_lr`; a FocusFormer draw is a `Subnet`. Files and events
    keep their field names: a checkpoint's `arch_digest`, a result's `arch`.)

    Args:
        embed_dim: token width of the whole network.
        depth: number of cells.
        layers: one tuple per cell (`len == depth`): the op name of every edge of the base cell, in the
            base genotype's edge order.
    """

    embed_dim: int
    depth: int
    layers: tuple[tuple[str, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"embed_dim": self.embed_dim, "depth": self.depth, "layers": [list(layer) for layer in self.layers]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Subnet:
        layers = tuple(tuple(str(op) for op in layer) for layer in d["layers"])
        return Subnet(int(d["embed_dim"]), int(d["depth"]), layers)


def _choices(key: str, values: list, kind: type, positive: bool = True) -> tuple:
    """Validate one list of a space's choices: non-empty, no repeats, positive; returned ascending."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"focus.{key} must be a non-empty list.")
    out = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
        if not ok or (positive and v <= 0):
            what = "positive integers" if kind is int else "positive numbers"
            raise ConfigError(f"focus.{key} must be a list of {what}, got {v!r}.")
        out.append(kind(v))
    if len(set(out)) != len(out):
        raise ConfigError(f"focus.{key} repeats a value ({values!r}); list each choice once.")
    return tuple(sorted(out))


class FocusSpace:
    """The elastic space around a base cell.

    Args:
        base: the cell every layer instantiates (a version-1 genotype; its edges' op types are kept, their
            sizes become choices).
        embed_dims: choices of the network's token width.
        depths: choices of the number of cells.
        heads: choices of the heads of every `msa` edge.
        mlp_ratios: choices of the hidden-width ratio of every `mlp` edge.
        head_dim: width of one attention head (fixed; QKV width = heads × head_dim).
    """

    def __init__(
        self,
        base: Genotype,
        embed_dims: list[int],
        depths: list[int],
        heads: list[int],
        mlp_ratios: list[float],
        head_dim: int = 64,
    ):
        self.base = base
        self.embed_dims: tuple[int, ...] = _choices("embed_dims", embed_dims, int)
        self.depths: tuple[int, ...] = _choices("depths", depths, int)
        self.heads: tuple[int, ...] = _choices("heads", heads, int)
        self.mlp_ratios: tuple[float, ...] = _choices("mlp_ratios", mlp_ratios, float)
        if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
            raise ConfigError(f"focus.head_dim must be a positive integer, got {head_dim!r}.")
        self.head_dim = head_dim
        self.types = [parse_op(e.op, error=GenotypeError).type for e in base.edges]
        live_nodes = set(base.live_nodes())
        self.live: list[int] = [i for i, e in enumerate(base.edges) if e.dst in live_nodes]  # as Network builds
        self.elastic: list[int] = [i for i in self.live if self.types[i] in ("msa", "mlp")]
        self._edge_choices = {
            i: [msa_name(h) for h in self.heads] if self.types[i] == "msa" else [mlp_name(r) for r in self.mlp_ratios]
            for i in self.elastic
        }
        self._index = {i: {op: k for k, op in enumerate(ops)} for i, ops in self._edge_choices.items()}
        self.base_ops: tuple[str, ...] = tuple(e.op for e in base.edges)
        self._decisions: list[tuple[str, list]] = [("depth", list(self.depths)), ("embed_dim", list(self.embed_dims))]
        for layer in range(max(self.depths)):
            self._decisions += [(f"layer{layer}.edge{e}", self.edge_choices(e)) for e in self.elastic]

    def __repr__(self) -> str:
        return (
            f"FocusSpace(edges={list(self.base_ops)}, embed_dims={list(self.embed_dims)}, "
            f"depths={list(self.depths)}, heads={list(self.heads)}, mlp_ratios={list(self.mlp_ratios)}, "
            f"head_dim={self.head_dim})"
        )

    def edge_choices(self, edge: int) -> list[str]:
        """The op names elastic edge `edge` (an index into `base.edges`) can take."""
        return list(self._edge_choices[edge])

    # ---- the decision sequence (what a sampler walks) ----

    def decisions(self) -> list[tuple[str, list]]:
        """Ordered decisions: depth, embed_dim, then for every layer up to max(depths) and every elastic edge
        `(f"layer{l}.edge{e}", op names)`."""
        return [(name, list(values)) for name, values in self._decisions]

    def decode(self, choice: list[int]) -> Subnet:
        """The architecture of one index per decision (`choice[i]` indexes `decisions()[i]`)."""
        n = 2 + max(self.depths) * len(self.elastic)
        if len(choice) != n:
            raise ValueError(f"expected {n} choices, got {len(choice)}")
        depth, embed = self.depths[choice[0]], self.embed_dims[choice[1]]
        layers, k = [], 2
        for _ in range(depth):
            ops = list(self.base_ops)
            for e in self.elastic:
                ops[e] = self._edge_choices[e][choice[k]]
                k += 1
            layers.append(tuple(ops))
        return Subnet(embed, depth, tuple(layers))

    def encode(self, subnet: Subnet) -> list[int]:
        """The inverse of `decode`; layers past the depth get index 0."""
        if not self.contains(subnet):
            raise ValueError(f"{subnet} is not in {self}")
        out = [self.depths.index(subnet.depth), self.embed_dims.index(subnet.embed_dim)]
        for layer in range(max(self.depths)):
            for e in self.elastic:
                out.append(self._index[e][subnet.layers[layer][e]] if layer < subnet.depth else 0)
        return out

    def contains(self, subnet: Subnet) -> bool:
        if not isinstance(subnet, Subnet) or subnet.embed_dim not in self.embed_dims or subnet.depth not in self.depths:
            return False
        if len(subnet.layers) != subnet.depth:
            return False
        for layer in subnet.layers:
            if len(layer) != len(self.base_ops):
                return False
            for e, op in enumerate(layer):
                if e in self._index:
                    if op not in self._index[e]:
                        return False
                elif op != self.base_ops[e]:
                    return False
        return True

    # ---- sampling and evolution ----

    def sample(self, rng: random.Random) -> Subnet:
        """Uniform over each decision (every layer up to max(depths) is drawn, so the draw count is fixed)."""
        return self.decode([rng.randrange(len(values)) for _, values in self._decisions])

    def smallest(self) -> Subnet:
        """Least depth, width, heads and ratios: the space's cheapest architecture."""
        return self.decode([0 for _ in self.decisions()])

    def largest(self) -> Subnet:
        """Greatest depth, width, heads and ratios: the space's most expensive architecture."""
        return self.decode([len(values) - 1 for _, values in self._decisions])

    def _genes(self, subnet: Subnet) -> list[int | None]:
        """Like `encode`, but layers past the depth are None (unset), for crossover."""
        enc = self.encode(subnet)
        per = len(self.elastic)
        return enc[:2] + [v if k < subnet.depth * per else None for k, v in enumerate(enc[2:])]

    def mutate(self, subnet: Subnet, rng: random.Random, prob: float) -> Subnet:
        """AutoFormer's mutation: each decision (depth, width, every layer's op sizes) is redrawn uniformly
        with probability `prob`; layers a deeper depth adds are drawn uniformly."""
        genes = self._genes(subnet)
        out = []
        for g, (_, values) in zip(genes, self._decisions):
            if g is None or rng.random() < prob:
                g = rng.randrange(len(values))
            out.append(g)
        return self.decode(out)

    def crossover(self, a: Subnet, b: Subnet, rng: random.Random) -> Subnet:
        """AutoFormer's crossover: every decision from either parent with equal odds (a layer only one
        parent has comes from that parent)."""
        out = []
        for x, y, (_, values) in zip(self._genes(a), self._genes(b), self._decisions):
            if x is None or y is None:
                g = y if x is None else x
                out.append(g if g is not None else rng.randrange(len(values)))
            else:
                out.append(x if rng.random() < 0.5 else y)
        return self.decode(out)


def space_from_config(cfg: Config, run_dir: Path | None = None) -> FocusSpace:
    """The elastic space `cfg.focus` describes. `focus.base` is a built-in (vit_b16), a genotype.json or a
    DASViT run directory; a focus run directory keeps its own copy of the base cell (`layout.BASE_GENOTYPE`), used when given."""
    f = cfg.focus
    if run_dir is not None and (Path(run_dir) / layout.BASE_GENOTYPE).is_file():
        base = load_base(Path(run_dir) / layout.BASE_GENOTYPE)
    else:
        base = load_base(f.base)
    return FocusSpace(base, list(f.embed_dims), list(f.depths), list(f.heads), list(f.mlp_ratios), f.head_dim)


def load_base(ref: str | Path) -> Genotype:
    """The base cell named by `focus.base`: a built-in (`vit_b16`), a genotype.json path, or a DASViT run
    directory (its genotype.json). A version-2 genotype gives its cell; a bad reference is a GenotypeError."""
    try:
        g = load_genotype(ref)
    except GenotypeError as e:
        raise GenotypeError(f"focus.base: {e}") from None
    return g.cell()

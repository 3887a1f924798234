"""What an op and a cell cost, analytically and without torch: FLOPs in fvcore's convention, exact params.

One image, N tokens (patches + class token), width D; one multiply-add is one FLOP and fvcore counts no
FLOPs for GELU, softmax, the residual additions or `skip` (dasvit.model.profile counts the same on a built
network, with its SDPA handle):

| op | FLOPs | params |
|---|---|---|
| `zero`, `skip` | 0 | 0 |
| `msa_h` (LayerNorm, linear D → 3I, SDPA, linear I → D; I = h·head_dim, D by default) | 5ND + 3NDI + 2N²I + NID | 2D + 3DI + 3I + ID + D |
| `mlp_r` (LayerNorm, linear D → k, GELU, linear k → D; k = mlp_hidden(D, r)) | 5ND + 2NDk | 2D + Dk + k + kD + D |

A cell costs the sum of the ops on its live edges (those an output depends on), whatever their place in
the DAG: every node state is N × D. The search's budget (`search.budget`) and the FocusFormer cost tables
price ops with these formulas; tests hold them equal to fvcore's count of the built network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .opspec import parse_op

# "Cost" throughout: one image's FLOPs as fvcore counts them and the exact parameter count.


def mlp_hidden(dim: int, ratio: float) -> int:
    """Hidden width of `mlp_<ratio>` at width `dim`."""
    return max(1, int(round(dim * ratio)))


class Cost(NamedTuple):
    """FLOPs (fvcore's, one image) and parameters of an op, a cell or a network: a named pair, always in this
    order (`flops, params = cost` unpacks it)."""

    flops: int = 0
    params: int = 0

    def __add__(self, other: Cost) -> Cost:  # type: ignore[override]
        return Cost(self.flops + other.flops, self.params + other.params)

    def __radd__(self, other: int) -> Cost:  # sum() starts from 0
        return self if other == 0 else NotImplemented

    def __mul__(self, k: int) -> Cost:  # type: ignore[override]
        return Cost(self.flops * k, self.params * k)

    def within(self, budget: Cost) -> bool:
        """No more FLOPs and no more params than `budget`."""
        return self.flops <= budget.flops and self.params <= budget.params


def op_cost(name: str, dim: int, tokens: int, head_dim: int | None = None) -> Cost:
    """The cost of op `name` at width `dim` on `tokens` tokens (attention heads `head_dim` wide, D / h by default)."""
    spec = parse_op(name)
    n, d = tokens, dim
    if spec.type == "msa":
        inner = spec.heads * head_dim if head_dim is not None else d
        return Cost(
            5 * n * d + n * d * 3 * inner + n * n * 2 * inner + n * inner * d,
            2 * d + d * 3 * inner + 3 * inner + inner * d + d,
        )
    if spec.type == "mlp":
        k = mlp_hidden(d, spec.ratio)
        return Cost(5 * n * d + 2 * n * d * k, 2 * d + d * k + k + k * d + d)
    return Cost()


def cell_cost(genotype, dim: int, tokens: int, head_dim: int | None = None) -> Cost:
    """The cost of one layer of a cell (a `dasvit.model.genotype.Genotype`, version 1 or one layer of a
    version-2 one): its live edges' ops."""
    live = [e for e in genotype.edges if e.dst in set(genotype.live_nodes())]
    return edges_cost(live, {e.op: op_cost(e.op, dim, tokens, head_dim) for e in live})


def edges_cost(edges, table: dict[str, Cost]) -> Cost:
    """The cost of these edges' ops (each `.op` an op name), from a table of each op's cost (a search space's:
    `dasvit.search.budget.space_costs`)."""
    return sum((table[e.op] for e in edges), Cost())


def tokens_of(image_size: int, patch_size: int) -> int:
    """Patches plus the class token."""
    return (image_size // patch_size) ** 2 + 1


def stem_head_cost(dim: int, image_size: int, patch_size: int, in_chans: int, num_classes: int) -> Cost:
    """The patch embedding (conv, class token, position embedding) and the head (LayerNorm on all tokens,
    linear on the class token) of a network at width `dim`."""
    n = tokens_of(image_size, patch_size)
    conv = dim * in_chans * patch_size**2
    return Cost(
        (n - 1) * conv + 5 * n * dim + dim * num_classes,
        conv + dim + dim + n * dim + 2 * dim + dim * num_classes + num_classes,
    )


@dataclass(frozen=True)
class Sizes:
    """The sizes a cell's network is built at: `depth` cells of width `embed_dim` on `image_size` images cut
    into `patch_size` patches, `in_chans` channels in, `num_classes` out."""

    depth: int
    embed_dim: int
    image_size: int
    patch_size: int
    in_chans: int = 3
    num_classes: int = 1000

    @property
    def tokens(self) -> int:
        return tokens_of(self.image_size, self.patch_size)

    def asdict(self) -> dict[str, int]:
        return dict(self.__dict__)


def network_cost(genotype, sizes: Sizes) -> Cost:
    """What the network of `genotype` at `sizes` costs: the stem and the head, and its cell in every layer (a
    version-2 genotype's own ops in each layer, at its own width and head width). The one network-cost
    function; the tests hold it to fvcore's count of the built network."""
    n = sizes.tokens
    stem_head = stem_head_cost(sizes.embed_dim, sizes.image_size, sizes.patch_size, sizes.in_chans, sizes.num_classes)
    if genotype.layers is None:
        return stem_head + cell_cost(genotype, sizes.embed_dim, n) * sizes.depth
    layers = (cell_cost(genotype.layer_cell(k), sizes.embed_dim, n, genotype.head_dim) for k in range(sizes.depth))
    return sum(layers, stem_head)

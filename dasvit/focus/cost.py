"""What an architecture of a `FocusSpace` costs, analytically: FLOPs in fvcore's convention, exact params.

The sampler prices thousands of architectures a second, too many to build genotypes for. The stem, the head
and every op are priced by `dasvit.model.cost` (its docstring has the formulas), which is what its
`network_cost` sums for the architecture's genotype and `dasvit.model.profile.count_flops` counts on the
extracted `Network`; here they are tabulated once per width and summed over the elastic edges of every
layer (the tests hold the two equal). Edges off the path to the cell output are not built.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from ..model.cost import Cost, op_cost, stem_head_cost
from ..model.opspec import mlp_name, msa_name
from .space import FocusSpace, Subnet

_MODELS: WeakKeyDictionary[FocusSpace, dict[tuple, CostModel]] = WeakKeyDictionary()


class CostModel:
    """Prices architectures of one space at one image size; per-op costs are tabulated once per width.

    Args:
        space: the elastic space.
        image_size, patch_size, num_classes, in_chans: the network's fixed sizes.
    """

    def __init__(self, space: FocusSpace, image_size: int, patch_size: int, num_classes: int, in_chans: int = 3):
        self.space = space
        n = (image_size // patch_size) ** 2 + 1
        self.fixed: dict[int, Cost] = {}  # width -> stem and head
        self.op: dict[int, dict[str, Cost]] = {}  # width -> op name -> cost (dasvit.model.cost.op_cost)
        d = space.head_dim
        for e in space.embed_dims:
            self.fixed[e] = stem_head_cost(e, image_size, patch_size, in_chans, num_classes)
            table = {msa_name(h): op_cost(msa_name(h), e, n, d) for h in space.heads}
            table.update({mlp_name(r): op_cost(mlp_name(r), e, n) for r in space.mlp_ratios})
            self.op[e] = table

    def __call__(self, subnet: Subnet) -> Cost:
        """What `subnet` costs: `dasvit.model.cost.network_cost` of its genotype, from the tables."""
        fixed = self.fixed[subnet.embed_dim]
        flops, params = fixed.flops, fixed.params
        table, elastic = self.op[subnet.embed_dim], self.space.elastic
        for layer in subnet.layers:
            for i in elastic:
                c = table[layer[i]]
                flops += c.flops
                params += c.params
        return Cost(flops, params)


def subnet_cost(
    space: FocusSpace, subnet: Subnet, image_size: int, patch_size: int, num_classes: int, in_chans: int = 3
) -> Cost:
    """What `subnet` in `space` costs at these sizes: FLOPs as fvcore counts the extracted `Network`
    (attention included), params exact. The tables are built on the first call for a space and these sizes."""
    models = _MODELS.setdefault(space, {})
    key = (image_size, patch_size, num_classes, in_chans)
    model = models.get(key)
    if model is None:
        model = models[key] = CostModel(space, *key)
    return model(subnet)

"""What an architecture of a `FocusSpace` costs, analytically: FLOPs in fvcore's convention, exact params.

The sampler prices thousands of architectures a second, too many to trace with fvcore; these formulas
give what `dasvit.profile.count_flops` counts on the extracted `Network` (one image, one multiply-add is
one FLOP). With N tokens (patches + class token), width E, c image channels, patch side p, C classes:

| module | FLOPs (fvcore) | params |
|---|---|---|
| patch embedding (conv) | (N-1)·E·c·p² | E·c·p² + E, class token E, position embedding N·E |
| LayerNorm (affine) | 5·N·E | 2·E |
| linear a → b on N tokens | N·a·b (bias not counted) | a·b + b |
| attention (SDPA), h heads of d | h·N·N·2d (QKᵀ and AV) | — |
| head | LayerNorm on all N tokens, linear E → C on the class token | 2·E + E·C + C |

An `msa` with h heads (inner width I = h·head_dim) is LayerNorm, linear E → 3I, SDPA, linear I → E; an `mlp`
with ratio r (hidden k = mlp_hidden(E, r)) is LayerNorm, linear E → k, GELU, linear k → E. fvcore counts
no FLOPs for GELU, the residual additions or `skip`. Edges off the path to the cell output are not built.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from ..ops import mlp_hidden
from .space import Arch, FocusSpace

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
        self.fixed: dict[int, tuple[int, int]] = {}  # width -> (FLOPs, params) of stem and head
        self.op: dict[int, dict[str, tuple[int, int]]] = {}  # width -> op name -> (FLOPs, params)
        d = space.head_dim
        for e in space.embed_dims:
            conv = e * in_chans * patch_size**2
            flops = (n - 1) * conv + 5 * n * e + e * num_classes
            params = conv + e + e + n * e + 2 * e + e * num_classes + num_classes
            self.fixed[e] = (flops, params)
            table = {}
            for h in space.heads:
                inner = h * d
                table[f"msa_{h}"] = (
                    5 * n * e + n * e * 3 * inner + n * n * 2 * inner + n * inner * e,
                    2 * e + e * 3 * inner + 3 * inner + inner * e + e,
                )
            for r in space.mlp_ratios:
                k = mlp_hidden(e, r)
                table[f"mlp_{r:g}"] = (5 * n * e + 2 * n * e * k, 2 * e + e * k + k + k * e + e)
            self.op[e] = table

    def __call__(self, arch: Arch) -> tuple[int, int]:
        """(FLOPs, params) of `arch`."""
        flops, params = self.fixed[arch.embed_dim]
        table, elastic = self.op[arch.embed_dim], self.space.elastic
        for layer in arch.layers:
            for i in elastic:
                f, p = table[layer[i]]
                flops += f
                params += p
        return flops, params


def arch_cost(
    space: FocusSpace, arch: Arch, image_size: int, patch_size: int, num_classes: int, in_chans: int = 3
) -> tuple[int, int]:
    """(FLOPs, params) of `arch` in `space` at these sizes: FLOPs as fvcore counts the extracted `Network`
    (attention included), params exact. The tables are built on the first call for a space and these sizes."""
    models = _MODELS.setdefault(space, {})
    key = (image_size, patch_size, num_classes, in_chans)
    model = models.get(key)
    if model is None:
        model = models[key] = CostModel(space, *key)
    return model(arch)

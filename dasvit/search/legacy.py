"""The supernet's parameter layout of dasvit 0.1, which stored the ops on the edges leaving a node fused,
one tensor per kind of weight. Two things still depend on it:

- the order in which a seed draws a supernet's weights: node by node, the ops leaving it kind by kind (every
  QKV projection by head count, then every output projection, then every MLP's first and second layers),
  so that a seed gives the supernet it gave then and the runs of that version can be searched again;
- the checkpoints and stage supernets written then, which `convert_state` reads into today's layout.

In that layout, the node's ops (msa and mlp ones; zero and skip hold nothing), in edge order and within an
edge in column order, were stored as:

- `qkv_weight_h{h}` [k, 3D, D], `qkv_bias_h{h}` [k, 3D]: the QKV projections of its k `msa_h` ops;
- `proj_weight_t` [Σ D, D] (transposed), `proj_bias` [n_msa, D]: the output projections, edge by edge and
  within an edge by head count;
- `fc1_weight` [Σ H, D], `fc1_bias` [Σ H]; `fc2_weight_t` [Σ H, D] (transposed), `fc2_bias` [n_mlp, D].
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..model.network import Attention, Mlp

# one stored tensor of the old layout: its name, its shape, and where its rows go:
# (the parameter they become, the rows, whether they are stored transposed)
Slot = tuple[str, tuple[int, ...], list[tuple[torch.Tensor, slice | int, bool]]]


def node_slots(edges: list[list[nn.Module]], dim: int) -> Iterator[Slot]:
    """The old layout of one node's ops (`edges`: the op modules of each edge leaving it, in column order), in
    the order that version drew them."""
    ops = [op for edge in edges for op in edge]
    msa = [op for op in ops if isinstance(op, Attention)]
    for h in sorted({op.heads for op in msa}):
        group = [op for op in msa if op.heads == h]
        yield f"qkv_weight_h{h}", (len(group), 3 * dim, dim), [(op.qkv.weight, m, False) for m, op in enumerate(group)]
        yield f"qkv_bias_h{h}", (len(group), 3 * dim), [(op.qkv.bias, m, False) for m, op in enumerate(group)]
    projs = [
        op for edge in edges for op in sorted((o for o in edge if isinstance(o, Attention)), key=lambda o: o.heads)
    ]
    if projs:
        yield (
            "proj_weight_t",
            (len(projs) * dim, dim),
            [(op.proj.weight, slice(j * dim, (j + 1) * dim), True) for j, op in enumerate(projs)],
        )
        yield "proj_bias", (len(projs), dim), [(op.proj.bias, j, False) for j, op in enumerate(projs)]
    mlps = [op for op in ops if isinstance(op, Mlp)]
    if mlps:
        rows, first = [], 0
        for op in mlps:
            rows.append(slice(first, first + op.fc1.out_features))
            first += op.fc1.out_features
        yield "fc1_weight", (first, dim), [(op.fc1.weight, r, False) for op, r in zip(mlps, rows)]
        yield "fc1_bias", (first,), [(op.fc1.bias, r, False) for op, r in zip(mlps, rows)]
        yield "fc2_weight_t", (first, dim), [(op.fc2.weight, r, True) for op, r in zip(mlps, rows)]
        yield "fc2_bias", (len(mlps), dim), [(op.fc2.bias, j, False) for j, op in enumerate(mlps)]


def draw(edges: list[list[nn.Module]], dim: int) -> None:
    """Fill the weights of one node's ops as dasvit 0.1 drew them from the global generator: each weight
    tensor of the old layout from a truncated normal (std 0.02), the biases zero."""
    with torch.no_grad():
        for name, shape, parts in node_slots(edges, dim):
            source = torch.zeros(shape) if "bias" in name else nn.init.trunc_normal_(torch.empty(shape), std=0.02)
            for param, rows, transposed in parts:
                param.copy_(source[rows].t() if transposed else source[rows])


def is_legacy(state: dict[str, torch.Tensor]) -> bool:
    """Whether a supernet state dict is in the old fused layout."""
    return any(".node_edges." in k for k in state)


def convert_state(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict of the old layout as `net` (today's supernet of the same stage and mask) names it: every
    fused tensor cut into its ops' parameters; the rest (α, the mask, stem, head, selectors) as it was."""
    out = {k: v for k, v in state.items() if ".node_edges." not in k}
    for k, cell in enumerate(net.cells):
        for i, edges in enumerate(cell.node_ops()):
            for name, _, parts in node_slots(edges, cell.dim):
                source = state[f"cells.{k}.node_edges.{i}.{name}"]
                for param, rows, transposed in parts:
                    part = source[rows]
                    out[_name_of(net, param)] = part.t().contiguous() if transposed else part.clone()
    return out


def _name_of(net: nn.Module, param: torch.Tensor) -> str:
    names = getattr(net, "_param_names", None)
    if names is None:
        names = net._param_names = {id(p): n for n, p in net.named_parameters()}
    return names[id(param)]

"""The DASViT supernet: a Transformer-encoder cell as a DAG of mixed edges, repeated `depth` times.

Cell inputs are nodes 0 and 1 (the outputs of cells k-2 and k-1); nodes 2..M+1 are intermediate; there
is an edge (i->j) for every i < j with j >= 2. Each edge mixes the candidate ops with the softmax of its
row of α, one `nn.Parameter` of shape [edges, ops] shared by every cell. Pruned ops are masked out of
the softmax and have no modules at all. The cell output is the sum of the intermediate nodes.

All edges leaving a node share that node's state as input, so they are computed together by
`NodeEdges`: with partial token selection a `TokenSelector` picks the tokens once per node, the edges
compute on those only, and the other tokens pass through unchanged (as PC-DARTS passes channels).
`NodeEdges.mix_reference` is the plain per-op path; a fused path (dasvit/fused.py) must match it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .ops import Head, OpSpec, PatchEmbed, build_op, ceil_tokens, init_vit_weights, parse_op
from .opspec import edge_list, edge_name


class TokenSelector(nn.Module):
    """Attention-based partial token selection.

    Scores token t by the mean over queries of softmax(Q Kᵀ/√d)[:, t] with Q = X Wq, K = X Wk (on the
    LayerNorm of X, so the score does not depend on the scale of the residual stream). Keeps the class
    token and the top ⌈ratio·(N−1)⌉ patch tokens.

    Args:
        dim: token width D.
        ratio: fraction r of patch tokens kept, in (0, 1].
        qk_dim: width d of the query/key projections.
    """

    def __init__(self, dim: int, ratio: float, qk_dim: int = 64):
        super().__init__()
        self.ratio = ratio
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.wq = nn.Linear(dim, qk_dim, bias=False)
        self.wk = nn.Linear(dim, qk_dim, bias=False)
        self.scale = qk_dim**-0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (index [B, k+1] of kept tokens, class token first; their scores [B, k+1])."""
        h = self.norm(x)
        q, k = self.wq(h), self.wk(h)
        attn = torch.softmax((q @ k.transpose(1, 2)) * self.scale, dim=-1)  # [B, N, N]
        score = attn.mean(dim=1)  # [B, N]: attention each token receives, averaged over queries
        n_keep = ceil_tokens(self.ratio, x.shape[1] - 1)
        top = score[:, 1:].topk(n_keep, dim=1).indices + 1
        idx = torch.cat([torch.zeros_like(top[:, :1]), top], dim=1)
        return idx, score.gather(1, idx)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class NodeEdges(nn.Module):
    """The mixed edges leaving one node: out_e = Σ_o w[e, o] · op_{e,o}(x) over each edge's active ops.

    Args:
        dim: token width D.
        ops: the op names of the whole space (the columns of α).
        dsts: destination node of each outgoing edge.
        rows: the row of α of each outgoing edge.
        active: for each outgoing edge, the op names it still has (pruned ops get no module).
    """

    def __init__(self, dim: int, ops: list[str], dsts: list[int], rows: list[int], active: list[list[str]]):
        super().__init__()
        self.dim = dim
        self.ops = [parse_op(o) for o in ops]
        self.col = {o: c for c, o in enumerate(ops)}
        self.dsts = dsts
        self.rows = rows
        self.active = active
        self.edges = nn.ModuleList(
            nn.ModuleDict({o.replace(".", "_"): build_op(parse_op(o), dim) for o in act}) for act in active
        )
        # parsed once: the forward pass must not re-parse op names
        self._specs = [[(parse_op(o), self.col[o], o.replace(".", "_")) for o in act] for act in active]
        # α rows of the outgoing edges, on the model's device (a Python list index would copy host→device)
        self.register_buffer("row_index", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.fused_mix: Callable | None = None  # set by dasvit.fused.enable_fused

    def op_modules(self, e: int) -> list[tuple[OpSpec, int, nn.Module]]:
        """(spec, α column, module) of each active op of outgoing edge e."""
        return [(spec, c, self.edges[e][key]) for spec, c, key in self._specs[e]]

    def mix_reference(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Plain per-op path. x [B, N, D], w [n_out, n_ops] → [n_out, B, N, D]."""
        outs = []
        for e in range(len(self.dsts)):
            acc = None
            for spec, c, mod in self.op_modules(e):
                if spec.type == "zero":
                    continue
                y = w[e, c] * mod(x)
                acc = y if acc is None else acc + y
            outs.append(torch.zeros_like(x) if acc is None else acc)
        return torch.stack(outs)

    def forward(self, x: torch.Tensor, w: torch.Tensor, selector: TokenSelector | None) -> torch.Tensor:
        mix = self.fused_mix or self.mix_reference
        if selector is None:
            return mix(x, w)
        idx, score = selector(x)
        kept = mix(gather_tokens(x, idx), w)  # [n_out, B, k, D]
        # straight-through gate: value 1, gradient reaches Wq/Wk through the scores
        gate = (1.0 + score - score.detach()).unsqueeze(-1)
        kept = kept * gate
        n_out = kept.shape[0]
        base = x.unsqueeze(0).expand(n_out, -1, -1, -1)
        index = idx.unsqueeze(0).unsqueeze(-1).expand(n_out, -1, -1, x.shape[-1])
        return base.scatter(2, index, kept)


class SearchCell(nn.Module):
    """One cell of the supernet: nodes 2..M+1 over inputs c(k-2), c(k-1)."""

    def __init__(self, dim: int, nodes: int, ops: list[str], mask: torch.Tensor, pts_ratio: float | None, pts_dim: int):
        super().__init__()
        self.nodes = nodes
        edges = edge_list(nodes)
        self.node_edges = nn.ModuleList()
        self.selectors = nn.ModuleList()
        for i in range(nodes + 1):  # nodes with outgoing edges: 0 .. M
            out = [(r, e) for r, e in enumerate(edges) if e[0] == i]
            active = [[o for c, o in enumerate(ops) if mask[r, c]] for r, _ in out]
            self.node_edges.append(NodeEdges(dim, ops, [e[1] for _, e in out], [r for r, _ in out], active))
            self.selectors.append(TokenSelector(dim, pts_ratio, pts_dim) if pts_ratio is not None else nn.Identity())
        self.use_pts = pts_ratio is not None

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, arch_w: torch.Tensor) -> torch.Tensor:
        states = [s0, s1]
        pending: dict[int, torch.Tensor] = {}
        for i, ne in enumerate(self.node_edges):
            if i >= 2:
                states.append(pending.pop(i))
            outs = ne(states[i], arch_w.index_select(0, ne.row_index), self.selectors[i] if self.use_pts else None)
            for k, j in enumerate(ne.dsts):
                pending[j] = outs[k] if j not in pending else pending[j] + outs[k]
        states.append(pending.pop(self.nodes + 1))
        return torch.stack(states[2:]).sum(0)


class Supernet(nn.Module):
    """Stem, `depth` search cells sharing one α, head.

    Args:
        num_classes: classifier outputs.
        image_size, patch_size, dim: stem geometry and token width.
        nodes: intermediate nodes M per cell.
        ops: the candidate op names (columns of α).
        depth: cells stacked.
        mask: bool [edges, ops], the ops still active per edge (None: all).
        pts_ratio: kept fraction of patch tokens, or None for no partial token selection.
        pts_dim: width of the selector's query/key projections.
        in_chans: image channels.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        patch_size: int,
        dim: int,
        nodes: int,
        ops: list[str],
        depth: int,
        mask: torch.Tensor | None = None,
        pts_ratio: float | None = 0.5,
        pts_dim: int = 64,
        in_chans: int = 3,
    ):
        super().__init__()
        self.ops = list(ops)
        self.edge_pairs = edge_list(nodes)  # (i, j) per row of α
        self.nodes = nodes
        n_e, n_o = len(self.edge_pairs), len(ops)
        mask = torch.ones(n_e, n_o, dtype=torch.bool) if mask is None else mask.clone().bool()
        if mask.shape != (n_e, n_o) or not mask.any(dim=1).all():
            raise ValueError("mask must be [edges, ops] with at least one op per edge")
        self.register_buffer("mask", mask)
        self.alpha = nn.Parameter(1e-3 * torch.randn(n_e, n_o))
        self.stem = PatchEmbed(image_size, patch_size, dim, in_chans)
        self.cells = nn.ModuleList(SearchCell(dim, nodes, ops, mask, pts_ratio, pts_dim) for _ in range(depth))
        self.head = Head(dim, num_classes)
        init_vit_weights(self.cells)
        init_vit_weights(self.head)

    def arch_weights(self) -> torch.Tensor:
        """softmax(α) over each edge's active ops; pruned ops get exactly 0."""
        return torch.softmax(self.alpha.masked_fill(~self.mask, float("-inf")), dim=-1)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.arch_weights()
        h = self.stem(x)
        s0 = s1 = h
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w)
        return self.head(s1)


def mask_from_keep(keep: dict[str, list[str]], ops: list[str], nodes: int) -> torch.Tensor:
    mask = torch.zeros(len(edge_list(nodes)), len(ops), dtype=torch.bool)
    for r, e in enumerate(edge_list(nodes)):
        for o in keep[edge_name(e)]:
            mask[r, ops.index(o)] = True
    return mask

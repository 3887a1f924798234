"""The DASViT supernet: a Transformer-encoder cell as a DAG of mixed edges, repeated `depth` times.

Cell inputs are nodes 0 and 1 (the outputs of cells k-2 and k-1); nodes 2..M+1 are intermediate; there is
an edge (i->j) for every i < j with j >= 2. Each edge mixes the candidate ops with the softmax of its row of
α, one `nn.Parameter` of shape [edges, ops] shared by every cell: a `MixedEdge` computes the paper's
equation, Σ_o softmax(α)_o · op_o(x). Pruned ops are masked out of the softmax and have no module at all.
Node j is the sum of its incoming edges; the cell output is the sum of the intermediate nodes.

Partial token selection: all the edges leaving a node read that node's state, so a `TokenSelector` picks
its most-attended tokens once per node; the edges compute on those only, and the other tokens pass
through unchanged (as PC-DARTS passes channels). With `checkpoint_edges` a node's edges are recomputed in
backward instead of keeping their activations. The ops are the discrete network's (`dasvit.model.network`)
without their own LayerNorm: a node's state is normalised once, without affine, for all the ops leaving it
(as DARTS's search ops use BatchNorm without affine: an affine in front of a linear layer is the linear
layer's own, so the ops can express the same functions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import CheckpointError
from ..model.network import Head, PatchEmbed, Skip, Zero, build_op, init_vit_weights
from ..model.opspec import edge_list, edge_name
from . import legacy


def ceil_tokens(ratio: float, n_patches: int) -> int:
    """The patch tokens partial token selection keeps of `n_patches`: ⌈ratio · n⌉, at least one."""
    return max(1, math.ceil(ratio * n_patches))


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


class MixedEdge(nn.Module):
    """A mixed edge (DARTS's `MixedOp`): out = Σ_o w_o · op_o(x) over the edge's active ops, w = softmax(α)
    of its row. `zero` adds nothing; an edge left with `zero` alone gives zeros. The msa and mlp ops read x
    normalised (h = LayerNorm(x), no affine), which every edge leaving the node shares.

    Args:
        ops: the op names of the whole space (the columns of α).
        active: the columns this edge still has.
        dim: token width D.
        device: where the ops' parameters are made ("meta": none drawn; the supernet fills them).
    """

    def __init__(self, ops: list[str], active: list[int], dim: int, device=None):
        super().__init__()
        self.ops = nn.ModuleDict({str(c): build_op(ops[c], dim, prenorm=False, device=device) for c in active})
        # (column, op, whether it reads the normalised tokens); zero contributes nothing
        self.columns = [
            (c, op, not isinstance(op, Skip)) for c, op in zip(active, self.ops.values()) if not isinstance(op, Zero)
        ]

    @property
    def normalises(self) -> bool:
        return any(norm for _, _, norm in self.columns)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        out = None
        for c, op, norm in self.columns:
            y = w[c] * op(h if norm else x)
            out = y if out is None else out + y
        return torch.zeros_like(x) if out is None else out


class SearchCell(nn.Module):
    """One cell of the supernet: nodes 2..M+1 over inputs c(k-2), c(k-1), a mixed edge for every (i->j).

    Args:
        dim: token width D.
        nodes: intermediate nodes M.
        ops: the op names of the whole space (the columns of α).
        mask: bool [edges, ops], the ops each edge still has.
        pts_ratio: kept fraction of patch tokens, or None for no partial token selection.
        pts_dim: width of the selector's query/key projections.
    """

    def __init__(self, dim: int, nodes: int, ops: list[str], mask: torch.Tensor, pts_ratio: float | None, pts_dim: int):
        super().__init__()
        self.dim, self.nodes = dim, nodes
        self.pairs = edge_list(nodes)  # (i, j) per row of α
        actives = [[c for c in range(len(ops)) if mask[r, c]] for r in range(len(self.pairs))]
        self.edges = nn.ModuleList(MixedEdge(ops, a, dim, device="meta") for a in actives)
        self.edges.to_empty(device=torch.get_default_device())
        self.leaving = [[r for r, (i, _) in enumerate(self.pairs) if i == node] for node in range(nodes + 1)]
        for node, rows in enumerate(self.leaving):  # α's rows of each node's edges, on the model's device
            self.register_buffer(f"rows{node}", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.selectors = nn.ModuleList()
        for node_edges in self.node_ops():  # the weights as a seed has always drawn them (dasvit.search.legacy)
            legacy.draw(node_edges, dim)
            self.selectors.append(TokenSelector(dim, pts_ratio, pts_dim) if pts_ratio is not None else nn.Identity())
        self.has_selectors = pts_ratio is not None
        self.use_pts = self.has_selectors  # dasvit.reports.memory switches it off to measure plain DARTS
        self.checkpoint = False  # search.checkpoint_edges: recompute each node's edges in backward

    def node_ops(self) -> list[list[list[nn.Module]]]:
        """Per node with outgoing edges (0..M): per edge leaving it, its op modules in column order."""
        return [[list(self.edges[r].ops.values()) for r in rows] for rows in self.leaving]

    EPS = 1e-5  # nn.LayerNorm's

    def _leave(self, x: torch.Tensor, w: torch.Tensor, node: int) -> torch.Tensor:
        """The edges leaving `node` on its state x, w their rows of the weights: [edges, B, N, D]. The node's
        state is normalised once for all of them."""
        edges = [self.edges[r] for r in self.leaving[node]]
        h = F.layer_norm(x, (x.shape[-1],), eps=self.EPS) if any(e.normalises for e in edges) else None
        return torch.stack([edge(x, h, w[k]) for k, edge in enumerate(edges)])

    def _kept(
        self, x: torch.Tensor, idx: torch.Tensor, score: torch.Tensor, w: torch.Tensor, node: int
    ) -> torch.Tensor:
        kept = self._leave(gather_tokens(x, idx), w, node)  # [edges, B, k, D]
        # straight-through gate: value 1, gradient reaches Wq/Wk through the scores
        return kept * (1.0 + score - score.detach()).unsqueeze(-1)

    def leave(self, x: torch.Tensor, w: torch.Tensor, node: int) -> torch.Tensor:
        """The outputs of the edges leaving `node` [edges, B, N, D], w their rows of the architecture weights:
        with partial token selection they compute
        on its kept tokens and the others pass through unchanged; checkpointed, they are recomputed in
        backward (saved: the node's input, and the kept tokens' index and scores)."""
        ckpt = self.checkpoint and torch.is_grad_enabled()
        run = dict(use_reentrant=False, preserve_rng_state=False)
        if not self.use_pts:
            return checkpoint(self._leave, x, w, node, **run) if ckpt else self._leave(x, w, node)
        idx, score = self.selectors[node](x)
        kept = checkpoint(self._kept, x, idx, score, w, node, **run) if ckpt else self._kept(x, idx, score, w, node)
        n_out = kept.shape[0]
        base = x.unsqueeze(0).expand(n_out, -1, -1, -1)
        index = idx.unsqueeze(0).unsqueeze(-1).expand(n_out, -1, -1, x.shape[-1])
        return base.scatter(2, index, kept.to(base.dtype))  # under autocast the edges may come out in bf16

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        states = [s0, s1]
        pending: dict[int, torch.Tensor] = {}
        for node, rows in enumerate(self.leaving):
            if node >= 2:
                states.append(pending.pop(node))
            outs = self.leave(states[node], w.index_select(0, getattr(self, f"rows{node}")), node)
            for k, r in enumerate(rows):
                j = self.pairs[r][1]
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
        for cell in self.cells:  # the selectors' projections; the ops' weights are drawn (dasvit.search.legacy)
            init_vit_weights(cell.selectors)
        init_vit_weights(self.head)

    @classmethod
    def of_stage(cls, cfg, stage: int, mask: torch.Tensor, num_classes: int, in_chans: int) -> Supernet:
        """The supernet of search stage `stage` (from 1) of config `cfg`, with `mask`'s ops, untrained."""
        sc = cfg.search
        return cls(
            num_classes,
            cfg.data.image_size,
            cfg.space.patch_size,
            cfg.space.embed_dim,
            cfg.space.nodes,
            list(cfg.space.ops),
            sc.stages[stage - 1].depth,
            mask=mask,
            pts_ratio=sc.pts.ratio if sc.pts.enabled else None,
            pts_dim=sc.pts.dim,
            in_chans=in_chans,
        )

    def arch_weights(self) -> torch.Tensor:
        """softmax(α) over each edge's active ops; pruned ops get exactly 0."""
        return torch.softmax(self.alpha.masked_fill(~self.mask, float("-inf")), dim=-1)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    @property
    def checkpoint_edges(self) -> bool:
        return any(cell.checkpoint for cell in self.cells)

    def set_checkpoint_edges(self, on: bool) -> Supernet:
        """search.checkpoint_edges: each node's mixed edges (with PTS: the gather, the edges and the gate)
        save only their inputs for backward and are recomputed there (`torch.utils.checkpoint`)."""
        for cell in self.cells:
            cell.checkpoint = bool(on)
        return self

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict, one written by dasvit 0.1 (its mixed edges stored fused) too."""
        self.load_state_dict(legacy.convert_state(state, self) if legacy.is_legacy(state) else state)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of images x, each edge mixing its ops by softmax(α), or by `weights` [edges, ops] when given
        (one-shot evaluation of a discrete cell: one op per edge at weight 1, `dasvit.search.selection`)."""
        w = self.arch_weights() if weights is None else weights
        h = self.stem(x)
        s0 = s1 = h
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w)
        return self.head(s1)


def stage_params(cfg, stage: int, mask: torch.Tensor) -> int:
    """About the parameters of `Supernet.of_stage` (dasvit.model.cost's op formulas, which count an affine LayerNorm
    the search ops do not have; the stem and head left out), without building it."""
    from ..model.cost import op_cost, tokens_of

    d, n = cfg.space.embed_dim, tokens_of(cfg.data.image_size, cfg.space.patch_size)
    per_op = {o: op_cost(o, d, n).params for o in cfg.space.ops}
    cell = sum(per_op[o] for r in range(mask.shape[0]) for c, o in enumerate(cfg.space.ops) if mask[r, c])
    selectors = (cfg.space.nodes + 1) * 2 * d * cfg.search.pts.dim if cfg.search.pts.enabled else 0
    return cfg.search.stages[stage - 1].depth * (cell + selectors)


def mask_from_keep(keep: dict[str, list[str]], ops: list[str], nodes: int) -> torch.Tensor:
    mask = torch.zeros(len(edge_list(nodes)), len(ops), dtype=torch.bool)
    for r, e in enumerate(edge_list(nodes)):
        for o in keep[edge_name(e)]:
            mask[r, ops.index(o)] = True
    return mask


def inherit_weights(net: Supernet, prev: Supernet) -> int:
    """Start a stage's supernet from the last one's weights: stem, head, and cell k from cell k mod the last
    depth, each op that is still there (an op is named by its edge's row and its column of α, the same in
    every stage; pruned ops are gone, α starts afresh). Returns the tensors copied."""
    old = prev.state_dict()
    depth = len(prev.cells)
    copied = 0
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name in ("alpha", "mask"):
                continue
            parts = name.split(".")
            if parts[0] == "cells":
                parts[1] = str(int(parts[1]) % depth)
            src = old.get(".".join(parts))
            if src is not None and src.shape == t.shape:
                t.copy_(src)
                copied += 1
    return copied


def check_supernet_layout(model: dict[str, Any], path: Path) -> None:
    """A checkpoint of dasvit 0.1, whose supernet stored each node's ops fused, cannot be resumed: its optimizer
    state belongs to those parameters. (Its stage supernets still load: `Supernet.load_state`.)"""
    if legacy.is_legacy(model):
        raise CheckpointError(
            f"{path} holds a supernet in the fused parameter layout of dasvit 0.1, whose optimizer state this "
            "version cannot resume; finish the run with the version that started it, or start it anew."
        )

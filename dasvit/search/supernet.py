"""The DASViT supernet: a Transformer-encoder cell as a DAG of mixed edges, repeated `depth` times.

Cell inputs are nodes 0 and 1 (the outputs of cells k-2 and k-1); nodes 2..M+1 are intermediate; there
is an edge (i->j) for every i < j with j >= 2. Each edge mixes the candidate ops with the softmax of its
row of α, one `nn.Parameter` of shape [edges, ops] shared by every cell. Pruned ops are masked out of
the softmax and have no modules at all. The cell output is the sum of the intermediate nodes.

All edges leaving a node share that node's state as input, so they are computed together by
`MixedEdges`: with partial token selection a `TokenSelector` picks the tokens once per node, the edges
compute on those only, and the other tokens pass through unchanged (as PC-DARTS passes channels).
`MixedEdges.mix_reference` is the plain per-op path; a fused path (dasvit/fused.py) must match it. Each
node stores its ops' weights fused, as the fused path multiplies them (see `MixedEdges`), and the per-op
path reads views of them; `MixedEdges.op_tensors` names an op's views in `nn.Linear` terms.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model.cost import mlp_hidden
from ..model.ops import Head, PatchEmbed, ceil_tokens, init_vit_weights, parse_op
from ..model.opspec import edge_list, edge_name


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


# callbacks that see the tensors a checkpointed node keeps for its recomputation (`torch.utils.checkpoint` holds
# them itself, not through saved-tensor hooks): `dasvit.bench.saved_tensor_bytes` counts them with the rest
CHECKPOINT_OBSERVERS: list[Callable[[torch.Tensor], None]] = []


def _held(*tensors: torch.Tensor) -> None:
    for observe in CHECKPOINT_OBSERVERS:
        for t in tensors:
            observe(t)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class MixedEdges(nn.Module):
    """The mixed edges leaving one node: out_e = Σ_o w[e, o] · op_{e,o}(x) over each edge's active ops.

    A mixed edge is the paper's (DARTS's `MixedOp`): every candidate op of an edge, weighted by softmax(α)
    of its row. One module holds all the mixed edges that leave a node, not one edge, because they read the
    same normalised input (and, with partial token selection, the same kept tokens) and their weights are
    stored together; the cell keeps them per source node in `SearchCell.node_edges` (a name the
    checkpoints' parameter keys carry).

    The parameters are stored fused, as the fused path (dasvit/fused.py) multiplies them, and each op
    reads views of them (`op_tensors`); nothing is concatenated or folded in a forward or a backward:

    - `qkv_weight_h{h}` [k, 3D, D], `qkv_bias_h{h}` [k, 3D]: the QKV projections of the k `msa_h` ops
      leaving the node (edge order); op m's is row m, laid out [Q; K; V] as `nn.Linear` would hold it.
    - `proj_weight_t` [Σ D, D], `proj_bias` [n_msa, D]: the output projections of every msa, edge by edge
      (within an edge by head count), stored transposed: op m's `proj.weight` is its row block's `.t()`, and
      an edge's ops are one block of rows, the weight of one matmul over their concatenated outputs.
    - `fc1_weight` [Σ H, D], `fc1_bias` [Σ H]: the first layers of every `mlp_r`, edge by edge (one matmul);
      `fc2_weight_t` [Σ H, D] (transposed, the same rows), `fc2_bias` [n_mlp, D]: their second layers.

    Every op normalises its input with a LayerNorm without affine (as DARTS's search ops use BatchNorm
    without affine): an affine in front of a linear layer is the linear layer's own (W diag γ, c + W β),
    so the ops can express the same functions, and all ops leaving a node share one normalised input.

    Args:
        dim: token width D.
        ops: the op names of the whole space (the columns of α).
        dsts: destination node of each outgoing edge.
        rows: the row of α of each outgoing edge.
        active: for each outgoing edge, the op names it still has (pruned ops get no parameters).
    """

    EPS = 1e-5  # nn.LayerNorm's

    def __init__(self, dim: int, ops: list[str], dsts: list[int], rows: list[int], active: list[list[str]]):
        super().__init__()
        self.dim = dim
        self.col = {o: c for c, o in enumerate(ops)}
        self.dsts = dsts
        self.rows = rows
        self.active = active
        self.n_out = len(dsts)
        # parsed once: the forward pass must not re-parse op names
        self._specs = [[(parse_op(o), self.col[o], o) for o in act] for act in active]
        d = dim
        # msa: grouped by head count (one SDPA call per group in the fused path); members in edge order
        by_heads: dict[int, list[tuple[int, str]]] = {}
        for e in range(self.n_out):
            for spec, _, name in self._specs[e]:
                if spec.type == "msa":
                    if d % spec.heads:
                        raise ValueError(f"width {d} is not divisible by {spec.heads} heads")
                    by_heads.setdefault(spec.heads, []).append((e, name))
        self.heads = sorted(by_heads)
        self.msa_slot: dict[tuple[int, str], tuple[int, int]] = {}  # (edge, op) → (head count, member)
        for h in self.heads:
            for m, key in enumerate(by_heads[h]):
                self.msa_slot[key] = (h, m)
            k = len(by_heads[h])
            self.register_parameter(f"qkv_weight_h{h}", nn.Parameter(_trunc_normal(k, 3 * d, d)))
            self.register_parameter(f"qkv_bias_h{h}", nn.Parameter(torch.zeros(k, 3 * d)))
        # per edge, its msa ops by head count: their output projections are one block of rows
        self.edge_msa: list[list[tuple[int, str]]] = []  # per edge: (α column, op name)
        self.proj_index: dict[tuple[int, str], int] = {}
        n = 0
        for e in range(self.n_out):
            msas = sorted(
                ((spec.heads, c, name) for spec, c, name in self._specs[e] if spec.type == "msa"), key=lambda t: t[0]
            )
            self.edge_msa.append([(c, name) for _, c, name in msas])
            for _, _, name in msas:
                self.proj_index[(e, name)] = n
                n += 1
        self.n_msa = n
        if n:
            self.proj_weight_t = nn.Parameter(_trunc_normal(n * d, d))
            self.proj_bias = nn.Parameter(torch.zeros(n, d))
        # mlp: every first layer in one matmul, edge by edge; an edge's second layers one block of rows
        self.edge_mlp: list[list[tuple[int, str, int]]] = []  # per edge: (α column, op name, hidden units)
        self.mlp_index: dict[tuple[int, str], tuple[int, int, int]] = {}  # (edge, op) → (index, first row, rows)
        i = row = 0
        for e in range(self.n_out):
            mlps = []
            for spec, c, name in self._specs[e]:
                if spec.type == "mlp":
                    hidden = mlp_hidden(d, spec.ratio)
                    mlps.append((c, name, hidden))
                    self.mlp_index[(e, name)] = (i, row, hidden)
                    i, row = i + 1, row + hidden
            self.edge_mlp.append(mlps)
        self.n_mlp, self.mlp_rows = i, row
        self.mlp_widths = [sum(h for _, _, h in m) for m in self.edge_mlp]  # hidden units per edge
        if i:
            self.fc1_weight = nn.Parameter(_trunc_normal(row, d))
            self.fc1_bias = nn.Parameter(torch.zeros(row))
            self.fc2_weight_t = nn.Parameter(_trunc_normal(row, d))
            self.fc2_bias = nn.Parameter(torch.zeros(i, d))
        self.skip: list[int | None] = [None] * self.n_out  # α column of each edge's skip
        for e in range(self.n_out):
            for spec, c, _ in self._specs[e]:
                if spec.type == "skip":
                    self.skip[e] = c
        # α rows of the outgoing edges, on the model's device (a Python list index would copy host→device)
        self.register_buffer("row_index", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.fused_mix: Callable | None = None  # set by dasvit.fused.enable_fused
        self.checkpoint = False  # search.checkpoint_edges: recompute this node's edges in backward

    def qkv(self, h: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"qkv_weight_h{h}"), getattr(self, f"qkv_bias_h{h}")

    def op_tensors(self, e: int, name: str) -> dict[str, torch.Tensor]:
        """Views of op `name` on outgoing edge e in `nn.Linear` terms ({"qkv.weight", ...}; {} for zero and
        skip): what the per-op path computes with, and what a stage inherits op by op."""
        d = self.dim
        if (e, name) in self.msa_slot:
            h, m = self.msa_slot[(e, name)]
            w, b = self.qkv(h)
            j = self.proj_index[(e, name)]
            return {
                "qkv.weight": w[m],
                "qkv.bias": b[m],
                "proj.weight": self.proj_weight_t[j * d : (j + 1) * d].t(),
                "proj.bias": self.proj_bias[j],
            }
        if (e, name) in self.mlp_index:
            j, r, n = self.mlp_index[(e, name)]
            return {
                "fc1.weight": self.fc1_weight[r : r + n],
                "fc1.bias": self.fc1_bias[r : r + n],
                "fc2.weight": self.fc2_weight_t[r : r + n].t(),
                "fc2.bias": self.fc2_bias[j],
            }
        return {}

    def mix_reference(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Plain per-op path: each op on its own, on views of the fused parameters. x [B, N, D],
        w [n_out, n_ops] → [n_out, B, N, D].

        The views come from `unbind`/`split`, whose backward assembles each parameter's gradient in one
        stack or concatenation (indexing op by op would add a zero-filled copy of the whole parameter per op)."""
        b, n, d = x.shape
        xn = F.layer_norm(x, (d,), eps=self.EPS) if self.n_msa or self.n_mlp else None
        qkv = {h: tuple(t.unbind(0) for t in self.qkv(h)) for h in self.heads}
        if self.n_msa:
            proj_w, proj_b = self.proj_weight_t.split(d, 0), self.proj_bias.unbind(0)
        if self.n_mlp:
            sizes = [hid for m in self.edge_mlp for _, _, hid in m]
            fc1_w, fc1_b = self.fc1_weight.split(sizes, 0), self.fc1_bias.split(sizes, 0)
            fc2_w, fc2_b = self.fc2_weight_t.split(sizes, 0), self.fc2_bias.unbind(0)
        outs = []
        for e in range(self.n_out):
            acc = None
            for spec, c, name in self._specs[e]:
                if spec.type == "zero":
                    continue
                if spec.type == "skip":
                    y = x
                elif spec.type == "msa":
                    h, m = self.msa_slot[(e, name)]
                    j = self.proj_index[(e, name)]
                    q, k, v = F.linear(xn, qkv[h][0][m], qkv[h][1][m]).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
                    a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
                    y = F.linear(a, proj_w[j].t(), proj_b[j])
                else:
                    j = self.mlp_index[(e, name)][0]
                    y = F.linear(F.gelu(F.linear(xn, fc1_w[j], fc1_b[j])), fc2_w[j].t(), fc2_b[j])
                y = w[e, c] * y
                acc = y if acc is None else acc + y
            outs.append(torch.zeros_like(x) if acc is None else acc)
        return torch.stack(outs)

    def _mix(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (self.fused_mix or self.mix_reference)(x, w)

    def _kept(self, x: torch.Tensor, idx: torch.Tensor, score: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        kept = self._mix(gather_tokens(x, idx), w)  # [n_out, B, k, D]
        # straight-through gate: value 1, gradient reaches Wq/Wk through the scores
        return kept * (1.0 + score - score.detach()).unsqueeze(-1)

    def forward(self, x: torch.Tensor, w: torch.Tensor, selector: TokenSelector | None) -> torch.Tensor:
        ckpt = self.checkpoint and torch.is_grad_enabled()
        if selector is None:
            return (
                checkpoint(self._mix, x, w, use_reentrant=False, preserve_rng_state=False) if ckpt else self._mix(x, w)
            )
        idx, score = selector(x)
        if ckpt:  # saved: the node's input, the kept tokens' index and scores; the rest is recomputed in backward
            kept = checkpoint(self._kept, x, idx, score, w, use_reentrant=False, preserve_rng_state=False)
        else:
            kept = self._kept(x, idx, score, w)
        n_out = kept.shape[0]
        base = x.unsqueeze(0).expand(n_out, -1, -1, -1)
        index = idx.unsqueeze(0).unsqueeze(-1).expand(n_out, -1, -1, x.shape[-1])
        return base.scatter(2, index, kept.to(base.dtype))  # under autocast the edges may come out in bf16


def _trunc_normal(*shape: int) -> torch.Tensor:
    """ViT's init of a linear weight (truncated normal, std 0.02)."""
    return nn.init.trunc_normal_(torch.empty(*shape), std=0.02)


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
            self.node_edges.append(MixedEdges(dim, ops, [e[1] for _, e in out], [r for r, _ in out], active))
            self.selectors.append(TokenSelector(dim, pts_ratio, pts_dim) if pts_ratio is not None else nn.Identity())
        self.has_selectors = pts_ratio is not None
        self.use_pts = self.has_selectors  # dasvit.memory switches it off to measure plain DARTS on the same net

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
        return any(ne.checkpoint for ne in self.modules() if isinstance(ne, MixedEdges))

    def set_checkpoint_edges(self, on: bool) -> Supernet:
        """search.checkpoint_edges: each node's mixed edges (with PTS: the gather, the edges and the gate)
        save only their inputs for backward and are recomputed there (`torch.utils.checkpoint`)."""
        for ne in self.modules():
            if isinstance(ne, MixedEdges):
                ne.checkpoint = bool(on)
        return self

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of images x, each edge mixing its ops by softmax(α), or by `weights` [edges, ops] when given
        (one-shot evaluation of a discrete cell: one op per edge at weight 1, `dasvit.selection`)."""
        w = self.arch_weights() if weights is None else weights
        h = self.stem(x)
        s0 = s1 = h
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w)
        return self.head(s1)


def stage_params(cfg, stage: int, mask: torch.Tensor) -> int:
    """About the parameters of `Supernet.of_stage` (dasvit.cost's op formulas, which count an affine LayerNorm
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

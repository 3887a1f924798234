"""Fused mixed edges: every candidate op on the edges leaving one node, computed together.

All the edges that leave a node read the same state x, so (per node, across all its outgoing edges):

- x is normalised once. Each op's own LayerNorm affine (γ, β) is folded into its first layer:
  W (γ ⊙ x̂) + W β + c  =  (W diag γ) x̂ + (W β + c).
- The QKV projections of every `msa_h` and the first layers of every `mlp_r` are one matmul
  (`in_proj`, as timm's ParallelScalingBlock does for one block).
- Attention runs through `scaled_dot_product_attention` once per head count: heads of the same size
  from different edges are independent, so they go in one call side by side.
- Per edge, the α-weighted output projections of its `msa_h` are one matmul over their concatenated
  outputs, and the α-weighted second layers of its `mlp_r` are one matmul over their hidden slices;
  the weight w_o scales op o's slice (`scaled_linear`). `skip` adds w·x, `zero` adds nothing.

The fused weights are rebuilt from the per-op modules' parameters on every call (torch.cat and friends),
so gradients reach those parameters and `NodeEdges.mix_reference`, the plain per-op path, stays the
reference on identical parameters. Pruned ops have no modules and so drop out of the fused weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import Attention, Mlp
from .supernet import NodeEdges, Supernet


class _ScaledLinear(torch.autograd.Function):
    """out = acc + (h ⊙ s) [W₁ … W_m]ᵀ: one matmul over the column blocks W_i, α-scaled per column.

    Scaling the weight instead (h (W diag s)ᵀ) is the same forward, but autograd would then take ∂s
    from ∂W = gᵀh, a full weight-gradient matmul even in the architecture step, which needs none.
    Here ∂s = Σ_tokens (g W) ⊙ h reuses g W, which ∂h needs anyway. Saved: h, s and the blocks
    themselves (parameters, no copies); their concatenation is rebuilt in backward.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, s: torch.Tensor, acc: torch.Tensor | None, *blocks: torch.Tensor):
        ctx.save_for_backward(h, s, *blocks)
        ctx.acc_dim = None if acc is None else acc.dim()
        weight = (torch.cat(blocks, 1) * s).to(h.dtype)
        return h @ weight.t() if acc is None else torch.addmm(acc, h, weight.t())

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, s, *blocks = ctx.saved_tensors
        need = [_will_compute(ctx, i) for i in range(3 + len(blocks))]
        grads: list[torch.Tensor | None] = [None] * len(need)
        if need[0] or need[1]:
            gu = g @ torch.cat(blocks, 1).to(g.dtype)  # ∂(h ⊙ s)
            if need[0]:
                grads[0] = (gu * s).to(h.dtype)
            if need[1]:
                grads[1] = (gu * h).sum(0, dtype=torch.float32).to(s.dtype)
        if need[2]:
            grads[2] = g if ctx.acc_dim == 2 else g.sum(0)
        if any(need[3:]):
            grad_w = (g.t() @ h.to(g.dtype)) * s
            grads[3:] = grad_w.split([b.shape[1] for b in blocks], 1)
        return tuple(grads)


def _will_compute(ctx, i: int) -> bool:
    """Whether this backward pass wants the gradient of input i.

    `ctx.needs_input_grad` only says the input requires grad; the architecture step
    (`autograd.grad(loss, α)`) wants no weight gradients, and built-in ops skip them then. The engine
    knows which nodes it will run; ask it, as `torch.autograd.graph.register_multi_grad_hook` does.
    """
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None or torch.compiler.is_compiling():
        return True
    try:
        return torch._C._will_engine_execute_node(node)
    except Exception:  # outside an engine run (e.g. traced by torch.compile): compute it
        return True


def scaled_linear(h: torch.Tensor, s: torch.Tensor, blocks: list[torch.Tensor],
                  acc: torch.Tensor | None = None) -> torch.Tensor:
    """acc + (h ⊙ s) [W₁ … W_m]ᵀ for h [T, K], s [K], W_i [D, K_i] with Σ K_i = K, acc [T, D], [D] or None.

    Under autocast the matmul runs in the autocast dtype; s and its gradient stay in float32.
    """
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
        h, blocks = h.to(dtype), [b.to(dtype) for b in blocks]
        acc = None if acc is None else acc.to(dtype)
        with torch.autocast(h.device.type, enabled=False):
            return _ScaledLinear.apply(h, s, acc, *blocks)
    return _ScaledLinear.apply(h, s, acc, *blocks)


def fold_norm(norm: nn.LayerNorm, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of `linear ∘ norm`'s affine part: linear(γ ⊙ x̂ + β) = (W diag γ) x̂ + (W β + c)."""
    return linear.weight * norm.weight, torch.addmv(linear.bias, linear.weight, norm.bias)


class FusedNodeMix:
    """The fused `NodeEdges.fused_mix` of one node: x [B, N, D], w [n_out, n_ops] → [n_out, B, N, D].

    Args:
        ne: the node's mixed edges; their op modules hold the parameters, this only reads them.
    """

    def __init__(self, ne: NodeEdges):
        self.n_out = len(ne.dsts)
        self.skip: list[int | None] = [None] * self.n_out  # α column of each edge's skip
        by_heads: dict[int, list[tuple[int, int, Attention]]] = {}
        self.mlps: list[tuple[int, int, Mlp]] = []  # (edge, α column, module), in edge order
        for e in range(self.n_out):
            for spec, c, mod in ne.op_modules(e):
                if spec.type == "skip":
                    self.skip[e] = c
                elif spec.type == "msa":
                    by_heads.setdefault(spec.heads, []).append((e, c, mod))
                elif spec.type == "mlp":
                    self.mlps.append((e, c, mod))
        self.groups = sorted(by_heads.items())  # [(heads, [(edge, α column, module)])], one SDPA call each
        self.msas = [m for _, members in self.groups for m in members]
        eps = {mod.norm.eps for _, _, mod in self.msas + self.mlps}
        if len(eps) > 1:
            raise ValueError(f"ops leaving one node use LayerNorm eps {sorted(eps)}; one shared norm needs one eps")
        self.eps = eps.pop() if eps else 1e-5
        # per edge: its msa outputs as (group, position in group) with α column and module
        self.edge_msa: list[list[tuple[int, int, int, Attention]]] = [[] for _ in range(self.n_out)]
        for g, (_, members) in enumerate(self.groups):
            for pos, (e, c, mod) in enumerate(members):
                self.edge_msa[e].append((g, pos, c, mod))
        # per edge: its mlps (α column, module); their hidden units are one slice of the concatenation
        self.edge_mlp = [[(c, mod) for e2, c, mod in self.mlps if e2 == e] for e in range(self.n_out)]
        self.mlp_widths = [sum(mod.fc1.out_features for _, mod in m) for m in self.edge_mlp]

    def qkv_proj(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded QKV weight and bias of every msa: per head count, [Q of its ops; K of its ops; V of its ops]."""
        mods = [mod for _, _, mod in self.msas]
        weight = torch.stack([m.qkv.weight for m in mods])  # [n, 3D, D]
        d = weight.shape[-1]
        gamma = torch.stack([m.norm.weight for m in mods]).unsqueeze(1)
        beta = torch.stack([m.norm.bias for m in mods]).unsqueeze(2)
        bias = torch.stack([m.qkv.bias for m in mods]).unsqueeze(2)
        folded_w = (weight * gamma).view(-1, 3, d, d)
        folded_b = torch.baddbmm(bias, weight, beta).view(-1, 3, d)
        ws, bs, start = [], [], 0
        for _, members in self.groups:
            k = len(members)
            ws.append(folded_w[start: start + k].transpose(0, 1).reshape(-1, d))
            bs.append(folded_b[start: start + k].transpose(0, 1).reshape(-1))
            start += k
        return torch.cat(ws), torch.cat(bs)

    def fc1_proj(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded first-layer weight and bias of every mlp, in edge order."""
        ws, bs = zip(*(fold_norm(mod.norm, mod.fc1) for _, _, mod in self.mlps))
        return torch.cat(ws), torch.cat(bs)

    def __call__(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        x2 = x.reshape(b * n, d)
        if self.msas or self.mlps:
            xn = F.layer_norm(x2, (d,), eps=self.eps)
        ys = []  # per head count: each member op's attention output [B·N, D]
        if self.msas:
            wq, bq = self.qkv_proj()
            qkv = torch.addmm(bq, xn, wq.t()).split([3 * len(m) * d for _, m in self.groups], 1)
            for (heads, members), part in zip(self.groups, qkv):
                q, k, v = part.view(b, n, 3, len(members) * heads, d // heads).permute(2, 0, 3, 1, 4)
                y = F.scaled_dot_product_attention(q, k, v)  # [B, k·h, N, D/h]
                ys.append(y.transpose(1, 2).reshape(b * n, len(members), d).unbind(1))
        if self.mlps:
            w1, b1 = self.fc1_proj()
            hidden = F.gelu(torch.addmm(b1, xn, w1.t())).split(self.mlp_widths, 1)
        outs = []
        for e in range(self.n_out):
            out = self.edge_bias(e, w)
            if self.edge_msa[e]:
                msa = self.edge_msa[e]
                y = torch.cat([ys[g][pos] for g, pos, _, _ in msa], 1)
                s = w[e, [c for _, _, c, _ in msa]].repeat_interleave(d)
                out = scaled_linear(y, s, [mod.proj.weight for _, _, _, mod in msa], out)
            if self.edge_mlp[e]:
                mlp = self.edge_mlp[e]
                s = torch.cat([w[e, c].expand(mod.fc1.out_features) for c, mod in mlp])
                out = scaled_linear(hidden[e], s, [mod.fc2.weight for _, mod in mlp], out)
            c = self.skip[e]
            if c is not None:
                out = x2 * w[e, c] if out is None else torch.addcmul(out, x2, w[e, c])
            outs.append(x2.new_zeros(b * n, d) if out is None else out)
        return torch.stack(outs).view(self.n_out, b, n, d)

    def edge_bias(self, e: int, w: torch.Tensor) -> torch.Tensor | None:
        """Σ_o w[e, o] · (bias of op o's last layer) over the edge's msa and mlp ops, or None."""
        terms = [(c, mod.proj.bias) for _, _, c, mod in self.edge_msa[e]]
        terms += [(c, mod.fc2.bias) for c, mod in self.edge_mlp[e]]
        if not terms:
            return None
        return torch.stack([bias for _, bias in terms], 1) @ w[e, [c for c, _ in terms]]


def enable_fused(net: Supernet) -> Supernet:
    """Compute every node's mixed edges with the fused path (same parameters as the reference)."""
    for ne in net.modules():
        if isinstance(ne, NodeEdges):
            ne.fused_mix = FusedNodeMix(ne)
    return net


def disable_fused(net: Supernet) -> Supernet:
    """Back to the plain per-op reference path."""
    for ne in net.modules():
        if isinstance(ne, NodeEdges):
            ne.fused_mix = None
    return net

"""Fused mixed edges: every candidate op on the edges leaving one node, computed together.

All the edges that leave a node read the same state x, so (per node, across all its outgoing edges):

- x is normalised once (the ops' LayerNorms have no affine: see `dasvit.supernet.MixedEdges`).
- The QKV projections of every `msa_h` with the same head count are one matmul with the node's stored
  `qkv_weight_h{h}` [k, 3D, D], and their heads go through one `scaled_dot_product_attention` call side
  by side (heads are independent); the first layers of every `mlp_r` are one matmul with `fc1_weight`.
- Per edge, the α-weighted output projections of its `msa_h` are one matmul over their concatenated
  outputs with the edge's block of `proj_weight_t`, and the α-weighted second layers of its `mlp_r` one
  matmul over their hidden units with its block of `fc2_weight_t`; w_o scales op o's rows
  (`scaled_linear`). `skip` adds w·x, `zero` adds nothing.

The weights are the node's parameters as they are stored: nothing is concatenated, stacked or folded in
a forward or a backward, and `MixedEdges.mix_reference`, the plain per-op path, reads views of the same
parameters, so it stays the reference on identical parameters. Pruned ops have no parameters. Activation
memory is the activations' only (no per-op LayerNorm outputs, no per-op outputs kept for ∂α).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .supernet import MixedEdges, Supernet


class _ScaledLinear(torch.autograd.Function):
    """out = acc + (h ⊙ s) Wᵗ for a stored transposed weight Wᵗ [K, D]: one matmul, α-scaled per row of Wᵗ.

    Scaling the weight is the same forward as scaling h, but autograd would then take ∂s from ∂W = hᵀg, a
    full weight-gradient matmul even in the architecture step, which needs none. Here ∂s = Σ_tokens (g W)
    ⊙ h reuses g W, which ∂h needs anyway. Saved: h, s and Wᵗ (a parameter, no copy).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, s: torch.Tensor, acc: torch.Tensor | None, wt: torch.Tensor):
        ctx.save_for_backward(h, s, wt)
        ctx.acc_dim = None if acc is None else acc.dim()
        weight = (wt * s.unsqueeze(1)).to(h.dtype)
        return h @ weight if acc is None else torch.addmm(acc, h, weight)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, s, wt = ctx.saved_tensors
        need = [_will_compute(ctx, i) for i in range(4)]
        grads: list[torch.Tensor | None] = [None] * 4
        if need[0] or need[1]:
            gu = g @ wt.t().to(g.dtype)  # ∂(h ⊙ s)
            if need[0]:
                grads[0] = (gu * s).to(h.dtype)
            if need[1]:
                grads[1] = (gu * h).sum(0, dtype=torch.float32).to(s.dtype)
        if need[2]:
            grads[2] = g if ctx.acc_dim == 2 else g.sum(0)
        if need[3]:
            grads[3] = ((h.t() @ g.to(h.dtype)) * s.unsqueeze(1)).to(wt.dtype)
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


def scaled_linear(h: torch.Tensor, s: torch.Tensor, wt: torch.Tensor, acc: torch.Tensor | None = None) -> torch.Tensor:
    """acc + (h ⊙ s) Wᵗ for h [T, K], s [K], Wᵗ [K, D], acc [T, D], [D] or None.

    Under autocast the matmul runs in the autocast dtype; s and its gradient stay in float32.
    """
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
        h, acc = h.to(dtype), None if acc is None else acc.to(dtype)
        with torch.autocast(h.device.type, enabled=False):
            return _ScaledLinear.apply(h, s, acc, wt)
    return _ScaledLinear.apply(h, s, acc, wt)


class FusedNodeMix:
    """The fused `MixedEdges.fused_mix` of one node: x [B, N, D], w [n_out, n_ops] → [n_out, B, N, D].

    Args:
        ne: the node's mixed edges; it holds the parameters, this only reads them.
    """

    def __init__(self, ne: MixedEdges):
        self.ne = ne
        d = ne.dim
        # per edge: its msa outputs as (head count, member) in the order of its rows of proj_weight_t
        self.edge_msa = [[ne.msa_slot[(e, name)] for _, name in ne.edge_msa[e]] for e in range(ne.n_out)]
        self.msa_cols = [[c for c, _ in ne.edge_msa[e]] for e in range(ne.n_out)]
        self.proj_rows = []  # per edge: (first, last) row of proj_weight_t and of proj_bias
        for e in range(ne.n_out):
            first = ne.proj_index[(e, ne.edge_msa[e][0][1])] if ne.edge_msa[e] else 0
            self.proj_rows.append((first, first + len(ne.edge_msa[e])))
        self.mlp_rows = []  # per edge: (first, last) row of fc2_weight_t, (first, last) row of fc2_bias
        for e in range(ne.n_out):
            if ne.edge_mlp[e]:
                i0, r0, _ = ne.mlp_index[(e, ne.edge_mlp[e][0][1])]
                self.mlp_rows.append(((r0, r0 + ne.mlp_widths[e]), (i0, i0 + len(ne.edge_mlp[e]))))
            else:
                self.mlp_rows.append(None)
        self.d = d

    def __call__(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ne, d = self.ne, self.d
        b, n, _ = x.shape
        x2 = x.reshape(b * n, d)
        if ne.n_msa or ne.n_mlp:
            xn = F.layer_norm(x2, (d,), eps=ne.EPS)
        ys = {}  # head count → the group's attention outputs [B·N, k, D]
        for h in ne.heads:
            weight, bias = ne.qkv(h)
            k = weight.shape[0]
            qkv = F.linear(xn, weight.view(k * 3 * d, d), bias.view(-1))  # [B·N, k·3·D]
            # each [B, k·h, N, D/h]: SDPA's fused kernels take 4-d inputs (5-d ones fall back to the math path)
            q, kk, v = qkv.view(b, n, k, 3, h, d // h).permute(3, 0, 2, 4, 1, 5).reshape(3, b, k * h, n, d // h)
            y = F.scaled_dot_product_attention(q, kk, v)  # [B, k·h, N, D/h]
            ys[h] = y.transpose(1, 2).reshape(b * n, k, d)
        if ne.n_mlp:
            hidden = F.gelu(F.linear(xn, ne.fc1_weight, ne.fc1_bias)).split(ne.mlp_widths, 1)
        outs = []
        for e in range(ne.n_out):
            out = self.edge_bias(e, w)
            if self.edge_msa[e]:
                parts = [ys[h][:, m] for h, m in self.edge_msa[e]]
                y = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
                s = torch.cat([w[e, c].expand(d) for c in self.msa_cols[e]])  # basic indexing: no host→device copy
                first, last = self.proj_rows[e]
                out = scaled_linear(y, s, ne.proj_weight_t[first * d : last * d], out)
            if self.mlp_rows[e] is not None:
                (r0, r1), _ = self.mlp_rows[e]
                s = torch.cat([w[e, c].expand(hid) for c, _, hid in ne.edge_mlp[e]])
                out = scaled_linear(hidden[e], s, ne.fc2_weight_t[r0:r1], out)
            c = ne.skip[e]
            if c is not None:
                out = x2 * w[e, c] if out is None else torch.addcmul(out, x2, w[e, c])
            outs.append(x2.new_zeros(b * n, d) if out is None else out)
        return torch.stack(outs).view(ne.n_out, b, n, d)

    def edge_bias(self, e: int, w: torch.Tensor) -> torch.Tensor | None:
        """Σ_o w[e, o] · (bias of op o's last layer) over the edge's msa and mlp ops, or None."""
        ne, out = self.ne, None
        if self.edge_msa[e]:
            first, last = self.proj_rows[e]
            out = torch.stack([w[e, c] for c in self.msa_cols[e]]) @ ne.proj_bias[first:last]
        if self.mlp_rows[e] is not None:
            _, (i0, i1) = self.mlp_rows[e]
            term = torch.stack([w[e, c] for c, _, _ in ne.edge_mlp[e]]) @ ne.fc2_bias[i0:i1]
            out = term if out is None else out + term
        return out


def enable_fused(net: Supernet) -> Supernet:
    """Compute every node's mixed edges with the fused path (same parameters as the reference)."""
    for ne in net.modules():
        if isinstance(ne, MixedEdges):
            ne.fused_mix = FusedNodeMix(ne)
    return net


def disable_fused(net: Supernet) -> Supernet:
    """Back to the plain per-op reference path."""
    for ne in net.modules():
        if isinstance(ne, MixedEdges):
            ne.fused_mix = None
    return net

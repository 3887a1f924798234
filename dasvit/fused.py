"""Fused mixed edges: every candidate op on the edges leaving one node, computed together.

All the edges that leave a node read the same state x, so (per node, across all its outgoing edges):

- x is normalised once. Each op's own LayerNorm affine (γ, β) is folded into its first layer:
  W (γ ⊙ x̂ + β) + c  =  (W diag γ) x̂ + (W β + c).
- The first layers of every `mlp_r` are one matmul; the QKV projections of every `msa_h` with the
  same head count are one matmul, laid out [Q of those ops; K; V] so that the heads of all of them
  go through one `scaled_dot_product_attention` call side by side (heads are independent).
- Per edge, the α-weighted output projections of its `msa_h` are one matmul over their concatenated
  outputs, and the α-weighted second layers of its `mlp_r` one matmul over their hidden units; w_o
  scales op o's slice (`scaled_linear`). `skip` adds w·x, `zero` adds nothing.

The fused weights are built from the per-op modules' parameters on every call, so gradients reach
those parameters and `NodeEdges.mix_reference`, the plain per-op path, stays the reference on
identical parameters. Pruned ops have no modules and so drop out of the fused weights. Neither the
folded nor the concatenated weights are saved for backward (they are rebuilt there): activation
memory is the activations', about a fifth less than the reference path's (no per-op LayerNorm
outputs, no per-op outputs for ∂α).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

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


def scaled_linear(
    h: torch.Tensor, s: torch.Tensor, blocks: list[torch.Tensor], acc: torch.Tensor | None = None
) -> torch.Tensor:
    """acc + (h ⊙ s) [W₁ … W_m]ᵀ for h [T, K], s [K], W_i [D, K_i] with Σ K_i = K, acc [T, D], [D] or None.

    Under autocast the matmul runs in the autocast dtype; s and its gradient stay in float32.
    """
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
        h, acc = h.to(dtype), None if acc is None else acc.to(dtype)
        with torch.autocast(h.device.type, enabled=False):
            return _ScaledLinear.apply(h, s, acc, *blocks)
    return _ScaledLinear.apply(h, s, acc, *blocks)


class _FoldedLinear(torch.autograd.Function):
    """x Wᵀ + b with (W, b) = fold(θ), rebuilt from the parameters θ in backward instead of saved.

    The folded weights are as large as the layers they come from: saving them for backward would hold
    a second copy of every first layer (about 3 GiB at paper scale). Saved: x and θ (no copies).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, *params_and_fold):  # the fold goes last: next_functions skips it
        *params, fold = params_and_fold
        weight, bias = fold(*params)
        ctx.fold = fold
        ctx.save_for_backward(x, *params)
        return torch.addmm(bias.to(x.dtype), x, weight.to(x.dtype).t())

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, *params = ctx.saved_tensors
        need_x = _will_compute(ctx, 0)
        need = [i for i in range(len(params)) if _will_compute(ctx, 1 + i)]
        leaves = [p.detach().requires_grad_(i in need) for i, p in enumerate(params)]
        with torch.enable_grad():
            weight, bias = ctx.fold(*leaves)
        grads: list[torch.Tensor | None] = [None] * len(params)
        if need:
            gw, gb = (g.t() @ x.to(g.dtype)).to(weight.dtype), g.sum(0).to(bias.dtype)
            for i, gp in zip(need, torch.autograd.grad((weight, bias), [leaves[i] for i in need], (gw, gb))):
                grads[i] = gp
        grad_x = g @ weight.detach().to(g.dtype) if need_x else None
        return (grad_x, *grads, None)


def folded_linear(x: torch.Tensor, fold: Callable, params: list[torch.Tensor]) -> torch.Tensor:
    """x Wᵀ + b for (W, b) = fold(*params); under autocast the matmul runs in the autocast dtype."""
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
        with torch.autocast(x.device.type, enabled=False):
            return _FoldedLinear.apply(x, *params, fold)
    return _FoldedLinear.apply(x, *params, fold)


def fold_norm(weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor):
    """A linear layer after a LayerNorm's affine: W (γ ⊙ x̂ + β) + c = (W diag γ) x̂ + (W β + c)."""
    return weight * gamma, torch.addmv(bias, weight, beta)


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

    @staticmethod
    def qkv_params(members: list[tuple[int, int, Attention]]) -> list[torch.Tensor]:
        mods = [mod for _, _, mod in members]
        return (
            [m.qkv.weight for m in mods]
            + [m.qkv.bias for m in mods]
            + [m.norm.weight for m in mods]
            + [m.norm.bias for m in mods]
        )

    @staticmethod
    def fold_qkv(*params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded QKV weight and bias of k msa ops with one head count: [Q of the k ops; K …; V …]."""
        k = len(params) // 4
        d = params[0].shape[1]
        weight = torch.stack([w.view(3, d, d) for w in params[:k]], 1)  # [3, k, D, D]
        bias = torch.stack([c.view(3, d) for c in params[k : 2 * k]], 1)  # [3, k, D]
        gamma, beta = torch.stack(params[2 * k : 3 * k]), torch.stack(params[3 * k :])  # [k, D]
        folded_b = bias + (weight @ beta.unsqueeze(-1)).squeeze(-1)
        return (weight * gamma.unsqueeze(1)).view(-1, d), folded_b.view(-1)

    def fc1_params(self) -> list[torch.Tensor]:
        return [t for _, _, m in self.mlps for t in (m.fc1.weight, m.fc1.bias, m.norm.weight, m.norm.bias)]

    @staticmethod
    def fold_fc1(*params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded first-layer weight and bias of every mlp, in edge order."""
        ws, bs = zip(*(fold_norm(*params[i : i + 4]) for i in range(0, len(params), 4)))
        return torch.cat(ws), torch.cat(bs)

    def __call__(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        x2 = x.reshape(b * n, d)
        if self.msas or self.mlps:
            xn = F.layer_norm(x2, (d,), eps=self.eps)
        ys = []  # per head count: each member op's attention output [B·N, D]
        if self.msas:
            for heads, members in self.groups:
                qkv = folded_linear(xn, self.fold_qkv, self.qkv_params(members))  # [B·N, 3·k·D]
                q, k, v = qkv.view(b, n, 3, len(members) * heads, d // heads).permute(2, 0, 3, 1, 4)
                y = F.scaled_dot_product_attention(q, k, v)  # [B, k·h, N, D/h]
                ys.append(y.transpose(1, 2).reshape(b * n, len(members), d).unbind(1))
        if self.mlps:
            hidden = F.gelu(folded_linear(xn, self.fold_fc1, self.fc1_params())).split(self.mlp_widths, 1)
        outs = []
        for e in range(self.n_out):
            out = self.edge_bias(e, w)
            if self.edge_msa[e]:
                msa = self.edge_msa[e]
                y = torch.cat([ys[g][pos] for g, pos, _, _ in msa], 1)
                s = torch.cat([w[e, c].expand(d) for _, _, c, _ in msa])  # basic indexing: no host→device index copy
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
        return torch.stack([bias for _, bias in terms], 1) @ torch.stack([w[e, c] for c, _ in terms])


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

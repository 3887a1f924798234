"""FocusFormer's supernet: every architecture of a `FocusSpace` in one set of weights (weight entanglement).

Every op holds the weights of its largest choice once; a sub-network uses their leading slices, as in
AutoFormer: a linear layer its first rows and columns; LayerNorm, patch embedding, class token, position
embedding and head their first `embed_dim` channels; an `msa` with h heads the first h × head_dim rows of
each of Q, K and V (and those columns of the output projection); an `mlp` with ratio r the first
`mlp_hidden(E, r)` hidden units. Layers past the architecture's depth are skipped.

The wiring is `dasvit.model.network`'s (node j = Σ of its incoming edges, cell output = Σ of the output nodes,
cell k reads cells k-2 and k-1), so `extract(subnet)` — a plain `Network` with the slices copied in — computes
what the supernet computes for that architecture.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from ..model.build import check_sizes
from ..model.genotype import subnet_genotype
from ..model.network import Head, Network, PatchEmbed, attention, drop_path, init_vit_weights, mlp, mlp_hidden
from ..model.opspec import parse_op
from .space import FocusSpace, Subnet


@cache
def _size(op: str) -> tuple[str, float]:
    """(type, heads or ratio) of an op name, parsed once."""
    spec = parse_op(op)
    return spec.type, spec.heads if spec.type == "msa" else spec.ratio


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor, e: int) -> torch.Tensor:
    return F.layer_norm(x, (e,), norm.weight[:e], norm.bias[:e], norm.eps)


class ElasticAttention(nn.Module):
    """Pre-norm multi-head self-attention at its largest size; any (embed_dim, heads) is a leading slice.

    Args:
        dim: largest token width.
        heads: largest head count.
        head_dim: width of one head (fixed).
    """

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)

    def sliced(self, e: int, h: int) -> dict[str, torch.Tensor]:
        """The weights of `Attention(e, h, head_dim)`, by its parameter names: the first h heads of each of
        Q, K, V and the first e channels."""
        inner, full = h * self.head_dim, self.heads * self.head_dim
        d = self.qkv.weight.shape[1]
        return {
            "norm.weight": self.norm.weight[:e],
            "norm.bias": self.norm.bias[:e],
            "qkv.weight": self.qkv.weight.view(3, full, d)[:, :inner, :e].reshape(3 * inner, e),
            "qkv.bias": self.qkv.bias.view(3, full)[:, :inner].reshape(3 * inner),
            "proj.weight": self.proj.weight[:e, :inner],
            "proj.bias": self.proj.bias[:e],
        }

    def forward(self, x: torch.Tensor, h: int) -> torch.Tensor:
        e = x.shape[-1]
        w = self.sliced(e, h)
        y = F.layer_norm(x, (e,), w["norm.weight"], w["norm.bias"], self.norm.eps)
        return attention(y, w["qkv.weight"], w["qkv.bias"], w["proj.weight"], w["proj.bias"], h, self.head_dim)


class ElasticMlp(nn.Module):
    """Pre-norm MLP at its largest size; any (embed_dim, ratio) uses the first `mlp_hidden(e, r)` hidden units.

    Args:
        dim: largest token width.
        hidden: largest hidden width.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def sliced(self, e: int, ratio: float) -> dict[str, torch.Tensor]:
        """The weights of `Mlp(e, ratio)`, by its parameter names."""
        k = mlp_hidden(e, ratio)
        return {
            "norm.weight": self.norm.weight[:e],
            "norm.bias": self.norm.bias[:e],
            "fc1.weight": self.fc1.weight[:k, :e],
            "fc1.bias": self.fc1.bias[:k],
            "fc2.weight": self.fc2.weight[:e, :k],
            "fc2.bias": self.fc2.bias[:e],
        }

    def forward(self, x: torch.Tensor, ratio: float) -> torch.Tensor:
        e = x.shape[-1]
        w = self.sliced(e, ratio)
        y = F.layer_norm(x, (e,), w["norm.weight"], w["norm.bias"], self.norm.eps)
        return mlp(y, w["fc1.weight"], w["fc1.bias"], w["fc2.weight"], w["fc2.bias"])


class ElasticCell(nn.Module):
    """One layer of the supernet: the base cell with elastic msa and mlp edges (skip edges carry nothing).

    Args:
        space: the elastic space (its base cell, largest sizes and head width).
    """

    def __init__(self, space: FocusSpace):
        super().__init__()
        base = space.base
        self.edges = [(i, base.edges[i]) for i in space.live]  # (index in base.edges, edge), as Network's Cell
        self.nodes = sorted({e.dst for _, e in self.edges})  # every node feeding the output has an incoming edge
        self.output = list(base.output)
        dim = max(space.embed_dims)
        hidden = mlp_hidden(dim, max(space.mlp_ratios))
        mods = []
        for i, _ in self.edges:
            kind = space.types[i]
            mods.append(
                ElasticAttention(dim, max(space.heads), space.head_dim)
                if kind == "msa"
                else ElasticMlp(dim, hidden)
                if kind == "mlp"
                else nn.Identity()
            )
        self.ops = nn.ModuleList(mods)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, layer: tuple[str, ...], drop: float) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: s0, 1: s1}
        for j in self.nodes:
            terms = []
            for (i, e), mod in zip(self.edges, self.ops):
                if e.dst != j:
                    continue
                kind, size = _size(layer[i])
                if kind == "skip":
                    terms.append(states[e.src])
                elif kind == "msa":
                    terms.append(drop_path(mod(states[e.src], int(size)), drop, self.training))
                else:
                    terms.append(drop_path(mod(states[e.src], size), drop, self.training))
            states[j] = sum(terms[1:], terms[0])
        outs = [states[o] for o in self.output]
        return sum(outs[1:], outs[0])


class FocusSupernet(nn.Module):
    """Patch embedding, max(depths) elastic cells and the head, all at their largest sizes; `forward(x, subnet)`
    runs one architecture on leading slices.

    Args:
        space: the elastic space.
        num_classes: classifier outputs.
        image_size: input side in pixels.
        patch_size: patch side; image_size must be a multiple of it.
        in_chans: image channels.
        drop_path: stochastic-depth rate of an architecture's last cell, rising linearly from 0 in its first
            (as `Network`).
    """

    def __init__(
        self,
        space: FocusSpace,
        num_classes: int,
        image_size: int,
        patch_size: int,
        in_chans: int = 3,
        drop_path: float = 0.0,
    ):
        super().__init__()
        check_sizes(subnet_genotype(space, space.largest()), max(space.embed_dims), image_size, patch_size)
        self.space = space
        self.num_classes, self.image_size, self.patch_size = num_classes, image_size, patch_size
        self.in_chans = in_chans
        self.drop_path = drop_path
        dim = max(space.embed_dims)
        self.embed = PatchEmbed(image_size, patch_size, dim, in_chans)
        self.cells = nn.ModuleList(ElasticCell(space) for _ in range(max(space.depths)))
        self.head = Head(dim, num_classes)
        init_vit_weights(self.cells)
        init_vit_weights(self.head)

    def no_weight_decay(self) -> set[str]:
        """Parameter names AdamW should not decay: position embedding and class token."""
        return {"embed.pos_embed", "embed.cls_token"}

    def _embed(self, x: torch.Tensor, e: int) -> torch.Tensor:
        p = self.embed
        x = F.conv2d(x, p.proj.weight[:e], p.proj.bias[:e], stride=self.patch_size).flatten(2).transpose(1, 2)
        cls = p.cls_token[..., :e].expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + p.pos_embed[..., :e]

    def forward(self, x: torch.Tensor, subnet: Subnet) -> torch.Tensor:
        e, depth = subnet.embed_dim, subnet.depth
        s0 = s1 = self._embed(x, e)
        for k in range(depth):
            rate = self.drop_path * k / max(depth - 1, 1)
            s0, s1 = s1, self.cells[k](s0, s1, subnet.layers[k], rate)
        y = _layer_norm(self.head.norm, s1, e)[:, 0]
        return F.linear(y, self.head.fc.weight[:, :e], self.head.fc.bias)

    def sliced_state(self, subnet: Subnet) -> dict[str, torch.Tensor]:
        """The weights of `subnet`'s `Network`, by its parameter names (views into the supernet's weights)."""
        e = subnet.embed_dim
        p = self.embed
        out = {
            "embed.proj.weight": p.proj.weight[:e],
            "embed.proj.bias": p.proj.bias[:e],
            "embed.cls_token": p.cls_token[..., :e],
            "embed.pos_embed": p.pos_embed[..., :e],
            "head.norm.weight": self.head.norm.weight[:e],
            "head.norm.bias": self.head.norm.bias[:e],
            "head.fc.weight": self.head.fc.weight[:, :e],
            "head.fc.bias": self.head.fc.bias,
        }
        for k in range(subnet.depth):
            cell = self.cells[k]
            for pos, ((i, _), mod) in enumerate(zip(cell.edges, cell.ops)):
                kind, size = _size(subnet.layers[k][i])
                if kind == "skip":
                    continue
                sub = mod.sliced(e, int(size)) if kind == "msa" else mod.sliced(e, size)
                out.update({f"cells.{k}.ops.{pos}.{name}": t for name, t in sub.items()})
        return out

    @torch.no_grad()
    def extract(self, subnet: Subnet) -> Network:
        """A plain `Network` of `subnet` (a version-2 genotype) with the supernet's slices copied in."""
        genotype = subnet_genotype(self.space, subnet, meta={})
        with torch.device("meta"):
            net = Network(
                genotype,
                subnet.depth,
                subnet.embed_dim,
                self.image_size,
                self.patch_size,
                self.num_classes,
                drop_path=self.drop_path,
                in_chans=self.in_chans,
            )
        ref = self.embed.proj.weight
        net = net.to_empty(device=ref.device).to(ref.dtype)
        net.load_state_dict({k: v.detach().clone() for k, v in self.sliced_state(subnet).items()}, strict=True)
        return net.train(self.training)

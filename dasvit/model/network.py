"""A searched Vision Transformer in plain PyTorch: its cell stacked between the ViT stem and head.

This file imports torch and nothing else of dasvit, so that it can travel alone: `dasvit export` writes it
as the exported model's `model.py`, beside the `config.json` and `model.safetensors` that `load` reads.

The maths of the two ops is written once, as functions every module that computes them calls (the
discrete ops here, the search's mixed edges, FocusFormer's elastic layers):

- `attention(h, ...)`: multi-head self-attention of normalised tokens h [B, N, D]: h Wqkv → Q, K, V per
  head, softmax(QKᵀ/√d) V (`scaled_dot_product_attention`), heads concatenated, output projection.
- `mlp(h, ...)`: Linear, GELU, Linear.

An op is named by a string: `zero`, `skip`, `msa_<heads>`, `mlp_<ratio>`. MSA and MLP are pre-norm: they
normalise their input themselves, and the residual is an edge of its own (a `skip` beside them), as in the
standard ViT block written as a cell.

The network: cell k reads the outputs of cells k-2 and k-1 (nodes 0 and 1; for the first cell both are the
patch embedding). Node j is the sum of its incoming edges, each edge one op applied to its source node;
the cell's output is the sum of its `output` nodes. Drop-path (stochastic depth) acts on every edge that
is not a `skip`, so the residual paths stay intact. A cell is given as its genotype's JSON: `edges` of
{"from", "to", "op"}, `output`, and for a network whose layers differ (a FocusFormer architecture)
`layers` (per layer, every edge's op) and `head_dim` (the width of one attention head).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# op names and the maths of the two ops


def parse_op(name: str) -> tuple[str, float]:
    """(type, size) of an op name: ("msa", heads), ("mlp", ratio), ("skip", 0) or ("zero", 0)."""
    kind, _, size = name.partition("_")
    return kind, (float(size) if size else 0.0)


def mlp_hidden(dim: int, ratio: float) -> int:
    """Hidden width of `mlp_<ratio>` at width `dim`."""
    return max(1, int(round(dim * ratio)))


def attention(
    h: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    heads: int,
    head_dim: int,
) -> torch.Tensor:
    """Multi-head self-attention of normalised tokens h [B, N, D] → [B, N, D'] (D' the projection's rows)."""
    b, n, _ = h.shape
    qkv = F.linear(h, qkv_weight, qkv_bias).view(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return F.linear(y.transpose(1, 2).reshape(b, n, heads * head_dim), proj_weight, proj_bias)


def mlp(
    h: torch.Tensor,
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor | None,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Linear, GELU, Linear of normalised tokens h."""
    return F.linear(F.gelu(F.linear(h, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)


# ---------------------------------------------------------------------------------------------
# the op modules


class Zero(nn.Module):
    """The `zero` op: no connection."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Skip(nn.Module):
    """The `skip` op: identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Attention(nn.Module):
    """Pre-norm multi-head self-attention: LayerNorm, then `attention`.

    Args:
        dim: token width D.
        heads: number of heads h; D must be divisible by h unless `head_dim` is given.
        head_dim: width of one head; default D / h. Given, the QKV width is h × head_dim (AutoFormer's
            elastic heads), and the output projection maps it back to D.
        prenorm: the op's own LayerNorm; without it the op reads tokens normalised already (the search's ops
            share their node's normalised state, dasvit.search.supernet).
        device: where the parameters are made ("meta": none drawn, for a supernet that fills them itself).
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, prenorm: bool = True, device=None):
        super().__init__()
        if head_dim is None and dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads if head_dim is None else head_dim
        inner = self.heads * self.head_dim
        self.norm = nn.LayerNorm(dim, device=device) if prenorm else nn.Identity()
        self.qkv = nn.Linear(dim, 3 * inner, device=device)
        self.proj = nn.Linear(inner, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attention(
            self.norm(x), self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.heads, self.head_dim
        )


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm, then `mlp` with mlp_hidden(D, ratio) hidden units.

    Args:
        dim: token width D.
        ratio: hidden width as a multiple r of D.
        prenorm, device: as `Attention`'s.
    """

    def __init__(self, dim: int, ratio: float, prenorm: bool = True, device=None):
        super().__init__()
        hidden = mlp_hidden(dim, ratio)
        self.norm = nn.LayerNorm(dim, device=device) if prenorm else nn.Identity()
        self.fc1 = nn.Linear(dim, hidden, device=device)
        self.fc2 = nn.Linear(hidden, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mlp(self.norm(x), self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)


def build_op(name: str, dim: int, head_dim: int | None = None, prenorm: bool = True, device=None) -> nn.Module:
    """The module of op `name` at width `dim`; `head_dim` fixes the width of each attention head."""
    kind, size = parse_op(name)
    if kind == "zero":
        return Zero()
    if kind == "skip":
        return Skip()
    if kind == "msa":
        return Attention(dim, int(size), head_dim, prenorm, device)
    if kind == "mlp":
        return Mlp(dim, size, prenorm, device)
    raise ValueError(f"unknown op {name!r}")


def init_vit_weights(module: nn.Module) -> None:
    """ViT-style init: truncated normal linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class PatchEmbed(nn.Module):
    """Stem: patch embedding (conv, kernel = stride = patch), class token, learned position embedding.

    Args:
        image_size: input side in pixels.
        patch_size: patch side; image_size must be a multiple of it.
        dim: token width D.
        in_chans: image channels.
    """

    def __init__(self, image_size: int, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed


class Head(nn.Module):
    """Classifier head: LayerNorm, then a linear layer on the class token."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x)[:, 0])


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero each sample with probability `p` while training, scale the kept by 1 / (1 - p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's output with probability `p` while training.

    Args:
        p: drop probability; the kept samples are scaled by 1 / (1 - p).
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---------------------------------------------------------------------------------------------
# the cell and the network


def live_edges(edges: list[tuple[int, int, str]], output: list[int]) -> list[tuple[int, int, str]]:
    """The edges into the intermediate nodes the output depends on (others would be computed for nobody)."""
    live, stack = set(), list(output)
    while stack:
        n = stack.pop()
        if n >= 2 and n not in live:
            live.add(n)
            stack.extend(src for src, dst, _ in edges if dst == n)
    return [e for e in edges if e[1] in live]


class Cell(nn.Module):
    """One searched cell: node j = Σ over its incoming edges (i → j) of op(node i).

    Args:
        edges: (from, to, op) of every edge; only those into a node the output depends on are built.
        output: the nodes whose sum is the cell's output.
        dim: token width D.
        drop_path: stochastic-depth probability of the non-skip edges of this cell.
        head_dim: width of one attention head; default D / heads.
    """

    def __init__(
        self, edges: list[tuple[int, int, str]], output: list[int], dim: int, drop_path: float = 0.0, head_dim=None
    ):
        super().__init__()
        self.edges = live_edges(edges, output)
        self.nodes = sorted({dst for _, dst, _ in self.edges})
        self.output = list(output)
        self.ops = nn.ModuleList(build_op(op, dim, head_dim) for _, _, op in self.edges)
        self.drop = nn.ModuleList(nn.Identity() if op == "skip" else DropPath(drop_path) for _, _, op in self.edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: s0, 1: s1}
        for j in self.nodes:
            terms = [
                drop(op(states[src])) for (src, dst, _), op, drop in zip(self.edges, self.ops, self.drop) if dst == j
            ]
            states[j] = sum(terms[1:], terms[0])
        outs = [states[o] for o in self.output]
        return sum(outs[1:], outs[0])


def cell_edges(genotype: dict[str, Any]) -> list[tuple[int, int, str]]:
    """A genotype's edges, from its JSON, as (from, to, op)."""
    return [(int(e["from"]), int(e["to"]), str(e["op"])) for e in genotype["edges"]]


class Network(nn.Module):
    """Patch embedding, `depth` cells of one genotype, LayerNorm + linear head on the class token.

    Args:
        genotype: the cell every layer repeats, as its genotype JSON (or an object with `to_json()`); with
            `layers` each layer gets its own op on every edge, and `head_dim` fixes the attention head width
            (a FocusFormer architecture, built at its own depth and width).
        depth: number of cells.
        dim: token width D.
        image_size: input side in pixels.
        patch_size: patch side.
        num_classes: classifier outputs.
        drop_path: stochastic-depth rate of the last cell; it rises linearly from 0 in the first.
        in_chans: image channels.
    """

    def __init__(
        self,
        genotype,
        depth: int,
        dim: int,
        image_size: int,
        patch_size: int,
        num_classes: int,
        drop_path: float = 0.0,
        in_chans: int = 3,
    ):
        super().__init__()
        spec = genotype.to_json() if hasattr(genotype, "to_json") else genotype
        if image_size % patch_size:
            raise ValueError(f"the image size ({image_size}) must be a multiple of the patch size ({patch_size})")
        self.genotype = genotype
        edges, layers = cell_edges(spec), spec.get("layers")
        if layers is not None and len(layers) != depth:
            raise ValueError(f"the genotype has {len(layers)} layers; it cannot be built with {depth}")
        self.embed = PatchEmbed(image_size, patch_size, dim, in_chans)
        rates = [drop_path * k / max(depth - 1, 1) for k in range(depth)]
        per_layer = [[(s, d, op) for (s, d, _), op in zip(edges, layer)] for layer in layers] if layers else None
        self.cells = nn.ModuleList(
            Cell(per_layer[k] if per_layer else edges, spec["output"], dim, rates[k], spec.get("head_dim"))
            for k in range(depth)
        )
        self.head = Head(dim, num_classes)
        init_vit_weights(self.cells)
        init_vit_weights(self.head)

    def no_weight_decay(self) -> set[str]:
        """Parameter names AdamW should not decay: position embedding and class token."""
        return {"embed.pos_embed", "embed.cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.embed(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# an exported network: config.json + model.safetensors


def build(config: dict[str, Any], drop_path: float = 0.0) -> Network:
    """The network a `config.json` describes (its genotype and sizes), untrained; `drop_path` as `Network`'s."""
    s = config["sizes"]
    return Network(
        config["genotype"],
        depth=int(s["depth"]),
        dim=int(s["embed_dim"]),
        image_size=int(s["image_size"]),
        patch_size=int(s["patch_size"]),
        num_classes=int(s["num_classes"]),
        drop_path=drop_path,
        in_chans=int(s.get("in_chans", 3)),
    )


def load(folder: str | Path, device: str | torch.device = "cpu") -> Network:
    """The network in `folder` (config.json and model.safetensors), with its weights, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    net = build(json.loads((folder / "config.json").read_text()))
    net.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    return net.to(device).eval()

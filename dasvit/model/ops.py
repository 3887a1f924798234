"""Candidate operations of the search space: zero, skip, multi-head self-attention, MLP.

An op is named in the config and the genotype by a string: `zero`, `skip`, `msa_<heads>` (e.g. `msa_8`),
`mlp_<ratio>` (e.g. `mlp_0.5`, `mlp_4`). `parse_op` turns the name into an `OpSpec`; `build_op` into a
module. MSA and MLP are pre-norm: they normalise their input themselves, and the residual is an edge of
its own (a `skip` beside them), as in the standard ViT block expressed as a genotype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cost import mlp_hidden
from .opspec import OpSpec
from .opspec import parse_op as parse_op


class Zero(nn.Module):
    """The `zero` op: no connection."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Skip(nn.Module):
    """The `skip` op: identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Attention(nn.Module):
    """Pre-norm multi-head self-attention (LayerNorm, QKV, SDPA, output projection).

    Args:
        dim: token width D.
        heads: number of heads h; D must be divisible by h unless `head_dim` is given.
        head_dim: width of one head; default D / h. Given, the QKV width is h × head_dim (AutoFormer's
            elastic heads), and the output projection maps it back to D.
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None):
        super().__init__()
        if head_dim is None and dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads if head_dim is None else head_dim
        inner = self.heads * self.head_dim
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm, Linear(D, rD), GELU, Linear(rD, D).

    Args:
        dim: token width D.
        ratio: hidden width as a multiple r of D.
    """

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = mlp_hidden(dim, ratio)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def build_op(spec: OpSpec, dim: int, head_dim: int | None = None) -> nn.Module:
    """The module of an op at width `dim`; `head_dim` fixes the width of each attention head (default D / h)."""
    if spec.type == "zero":
        return Zero()
    if spec.type == "skip":
        return Skip()
    if spec.type == "msa":
        return Attention(dim, spec.heads, head_dim)
    return Mlp(dim, spec.ratio)


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


def ceil_tokens(ratio: float, n_patches: int) -> int:
    return max(1, math.ceil(ratio * n_patches))

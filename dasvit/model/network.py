"""The discrete network of a genotype: the searched cell, stacked, between the ViT stem and head.

Cell k reads the outputs of cells k-2 and k-1 (nodes 0 and 1; for the first cell both are the patch
embedding). Node j is the sum of its incoming edges, each edge one op applied to its source node; the
cell's output is the sum of the genotype's `output` nodes. Drop-path (stochastic depth) acts on every
edge that is not a `skip`, so the residual paths stay intact, as in a pre-norm ViT block.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .genotype import Genotype, network_sizes
from .ops import Head, PatchEmbed, build_op, init_vit_weights, parse_op


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


def check_sizes(genotype: Genotype, dim: int, image_size: int, patch_size: int) -> None:
    """Raise ConfigError, in one sentence, if the cell cannot be built at these sizes."""
    for key, v in [("width", dim), ("image size", image_size), ("patch size", patch_size)]:
        if v < 1:
            raise ConfigError(f"the {key} must be positive, got {v}.")
    if image_size % patch_size:
        raise ConfigError(f"the image size ({image_size}) must be a multiple of the patch size ({patch_size}).")
    if genotype.head_dim is not None:  # version 2: heads have their own width, any head count fits
        return
    for name, spec in sorted(genotype.ops.items()):
        if spec.type == "msa" and dim % spec.heads:
            raise ConfigError(f"op {name} needs a width divisible by {spec.heads} heads; the width is {dim}.")


class Cell(nn.Module):
    """One searched cell: node j = Σ over its incoming edges (i → j) of op(node i).

    Args:
        genotype: the discrete cell (validated by `genotype_from_json` or a built-in).
        dim: token width D.
        drop_path: stochastic-depth probability of the non-skip edges of this cell.
        head_dim: width of one attention head (version-2 genotypes); default D / heads.
    """

    def __init__(self, genotype: Genotype, dim: int, drop_path: float = 0.0, head_dim: int | None = None):
        super().__init__()
        self.nodes = genotype.live_nodes()
        self.output = list(genotype.output)
        self.edges = [e for e in genotype.edges if e.dst in self.nodes]
        self.ops = nn.ModuleList(build_op(parse_op(e.op), dim, head_dim) for e in self.edges)
        self.drop = nn.ModuleList(nn.Identity() if e.op == "skip" else DropPath(drop_path) for e in self.edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: s0, 1: s1}
        for j in self.nodes:
            terms = [drop(op(states[e.src])) for e, op, drop in zip(self.edges, self.ops, self.drop) if e.dst == j]
            states[j] = sum(terms[1:], terms[0])
        outs = [states[o] for o in self.output]
        return sum(outs[1:], outs[0])


class Network(nn.Module):
    """Patch embedding, `depth` cells of one genotype, LayerNorm + linear head on the class token.

    Args:
        genotype: the cell every layer repeats; a version-2 genotype gives each layer its own op sizes
            (`layers`) and the attention head width (`head_dim`), and must be built at its own depth and width.
        depth: number of cells.
        dim: token width D (`space.embed_dim`).
        image_size: input side in pixels (`data.image_size`).
        patch_size: patch side (`space.patch_size`).
        num_classes: classifier outputs.
        drop_path: stochastic-depth rate of the last cell; it rises linearly from 0 in the first.
        in_chans: image channels.
    """

    def __init__(
        self,
        genotype: Genotype,
        depth: int,
        dim: int,
        image_size: int,
        patch_size: int,
        num_classes: int,
        drop_path: float = 0.0,
        in_chans: int = 3,
    ):
        super().__init__()
        check_sizes(genotype, dim, image_size, patch_size)
        if genotype.layers is not None and (depth, dim) != (genotype.depth, genotype.embed_dim):
            raise ConfigError(
                f"this version-2 genotype is {genotype.depth} cells of width {genotype.embed_dim}; "
                f"it cannot be built as {depth} x {dim}."
            )
        self.genotype = genotype
        self.embed = PatchEmbed(image_size, patch_size, dim, in_chans)
        rates = [drop_path * k / max(depth - 1, 1) for k in range(depth)]
        cells = [genotype.layer_cell(k) if genotype.layers is not None else genotype for k in range(depth)]
        self.cells = nn.ModuleList(Cell(c, dim, r, genotype.head_dim) for c, r in zip(cells, rates))
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


def build_network(
    genotype: Genotype, cfg, num_classes: int, drop_path: float | None = None, in_chans: int | None = None
) -> Network:
    """The network of `genotype` at a config's sizes (`dasvit.genotype.network_sizes`: a version-2 genotype
    brings its own depth and width), with `data.channels` resolved by dasvit.data.image_channels unless
    `in_chans` is given."""
    if in_chans is None:
        from ..train.data import image_channels

        in_chans = image_channels(cfg.data)
    sizes = network_sizes(cfg, genotype)
    return Network(
        genotype,
        depth=sizes["depth"],
        dim=sizes["embed_dim"],
        image_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
        num_classes=num_classes,
        drop_path=cfg.retrain.drop_path if drop_path is None else drop_path,
        in_chans=in_chans,
    )

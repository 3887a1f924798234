"""A genotype's network at a config's sizes: the checks dasvit makes before building one (one sentence for a
size it cannot have), and `build_network`. The network itself is `dasvit.model.network`, plain PyTorch."""

from __future__ import annotations

from ..errors import ConfigError
from .genotype import Genotype, network_sizes
from .network import Network


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


def network(
    genotype: Genotype,
    depth: int,
    dim: int,
    image_size: int,
    patch_size: int,
    num_classes: int,
    drop_path: float = 0.0,
    in_chans: int = 3,
) -> Network:
    """`Network` of a genotype, its sizes checked first (one sentence for one it cannot have)."""
    check_sizes(genotype, dim, image_size, patch_size)
    if genotype.layers is not None and (depth, dim) != (genotype.depth, genotype.embed_dim):
        raise ConfigError(
            f"this version-2 genotype is {genotype.depth} cells of width {genotype.embed_dim}; "
            f"it cannot be built as {depth} x {dim}."
        )
    return Network(genotype, depth, dim, image_size, patch_size, num_classes, drop_path, in_chans)


def build_network(
    genotype: Genotype, cfg, num_classes: int, drop_path: float | None = None, in_chans: int | None = None
) -> Network:
    """The network of `genotype` at a config's sizes (`dasvit.model.genotype.network_sizes`: a version-2
    genotype brings its own depth and width), with `data.channels` resolved by dasvit.train.images.image_channels
    unless `in_chans` is given."""
    if in_chans is None:
        from ..train.images import image_channels

        in_chans = image_channels(cfg.data)
    sizes = network_sizes(cfg, genotype)
    return network(
        genotype,
        sizes.depth,
        sizes.embed_dim,
        sizes.image_size,
        sizes.patch_size,
        num_classes,
        cfg.retrain.drop_path if drop_path is None else drop_path,
        in_chans,
    )

"""Measuring a search stage's memory (`dasvit.reports.memory` holds the estimate and its reading): the
activations autograd saves, measured on the stage's supernet at two small batches in each precision and
variant, and the ops a later stage is assumed to keep (the most expensive). Imports torch lazily, as the
engine's callers already hold it."""

from __future__ import annotations

from .memory import FP32, PRECISIONS, Activations, StageMemory, variant_key


def op_ranking(ops: list[str], dim: int, tokens: int, batch: int) -> list[str]:
    """The ops from most to least expensive at width `dim` on `tokens` tokens per image: 16 bytes per
    parameter (weight, gradient, two moments) plus the activations one op alone saves for `batch` images."""
    import torch

    from ..model.network import build_op
    from .bench import saved_tensor_bytes

    cost = {}
    for o in ops:
        mod = build_op(o, dim)
        params = sum(p.numel() for p in mod.parameters())
        x = torch.randn(1, tokens, dim, requires_grad=True)
        saved = saved_tensor_bytes(lambda mod=mod, x=x: mod(x).sum(), exclude=[x, *mod.parameters()])
        cost[o] = 4 * FP32 * params + saved * batch
    return sorted(ops, key=lambda o: (-cost[o], ops.index(o)))


def assumed_mask(cfg, stage: int):
    """The mask a stage's estimate assumes and its op names: every op at stage 1, else each edge's `keep` most
    expensive ops (None for stage 1)."""
    import torch

    from ..model.opspec import edge_list
    from ..search.supernet import ceil_tokens

    ops = list(cfg.space.ops)
    n_edges = len(edge_list(cfg.space.nodes))
    st = cfg.search.stages[stage]
    if st.keep >= len(ops) and stage == 0:
        return torch.ones(n_edges, len(ops), dtype=torch.bool), None
    patches = (cfg.data.image_size // cfg.space.patch_size) ** 2
    tokens = 1 + (ceil_tokens(cfg.search.pts.ratio, patches) if cfg.search.pts.enabled else patches)
    ranked = op_ranking(ops, cfg.space.embed_dim, tokens, cfg.data.batch_size)
    kept = ranked[: st.keep] if stage > 0 else ops
    mask = torch.tensor([[o in kept for o in ops] for _ in range(n_edges)])
    return mask, [o for o in ops if o in kept]


def measure_saved(net, x, y, precision: str, pts: bool, checkpoint: bool) -> int:
    """Bytes the weight step's forward (and loss) saves for backward on `net` for the batch (x, y)."""
    import torch

    from ..train.loop import cross_entropy
    from .bench import saved_tensor_bytes

    set_variant(net, pts, checkpoint)
    dev = x.device.type
    params = list(net.parameters())

    def forward():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = net(x)
        cross_entropy(logits, y)

    return saved_tensor_bytes(forward, exclude=params)


def set_variant(net, pts: bool, checkpoint: bool) -> None:
    """Partial token selection on or off (a supernet built with selectors) and checkpointed edges on or off."""
    for cell in net.cells:
        cell.use_pts = pts and cell.has_selectors
    net.set_checkpoint_edges(checkpoint)


def estimate_stage(
    net,
    stage: int,
    depth: int,
    keep: int,
    batch: int,
    *,
    num_classes: int,
    in_chans: int,
    image_size: int,
    batches: tuple[int, ...] = (1, 2),
    precisions: tuple[str, ...] = PRECISIONS,
    pts_variants: tuple[bool, ...] = (False, True),
    checkpoint_variants: tuple[bool, ...] = (False, True),
    assumed: list[str] | None = None,
    path: str = "reference",
    pts_ratio: float = 0.5,
) -> StageMemory:
    """Measure a stage's `StageMemory` on `net`, a supernet built with partial token selection (its selectors
    are switched off for the plain-DARTS variants); `net` is left as it was. Inputs come from a private
    generator: the global random state is not touched."""
    import torch

    was = [(cell.use_pts) for cell in net.cells], net.checkpoint_edges, net.training
    dev = next(net.parameters()).device
    g = torch.Generator().manual_seed(0)
    inputs = {
        b: (
            torch.randn(b, in_chans, image_size, image_size, generator=g).to(dev),
            torch.randint(0, num_classes, (b,), generator=g).to(dev),
        )
        for b in batches
    }
    sel = sum(p.numel() for n, p in net.named_parameters() if ".selectors." in n)
    out_edges = [len(rows) for cell in net.cells for rows in cell.leaving]
    params = sum(p.numel() for n, p in net.named_parameters() if n != "alpha") - sel
    acts = {}
    net.train()
    try:
        for precision in precisions:
            for pts in pts_variants:
                for ckpt in checkpoint_variants:
                    points = {b: measure_saved(net, *inputs[b], precision, pts, ckpt) for b in batches}
                    acts[variant_key(precision, pts, ckpt)] = Activations.fit(points)
    finally:
        for cell, use in zip(net.cells, was[0]):
            cell.use_pts = use
        net.set_checkpoint_edges(was[1])
        net.train(was[2])
    return StageMemory(
        stage=stage,
        depth=depth,
        keep=keep,
        batch=batch,
        params=params,
        selector_params=sel,
        alpha=net.alpha.numel(),
        activations=acts,
        assumed=assumed,
        device=dev.type,
        path=path,
        pts_ratio=pts_ratio,
        image_size=image_size,
        dim=net.cells[0].dim if len(net.cells) else 0,
        recompute_fraction=max(out_edges) / sum(out_edges) if out_edges and sum(out_edges) else 0.0,
    )


def build_stage_net(cfg, stage: int, mask, device: str = "cpu"):
    """The supernet a search builds for `stage` with `mask` (partial token selection on, whatever the config,
    so both variants can be measured), on `device`."""
    import torch

    from ..search.supernet import Supernet
    from ..train.data import num_classes
    from ..train.images import image_channels

    sc = cfg.search
    with torch.device(device):
        net = Supernet(
            num_classes(cfg.data) or 1000,
            cfg.data.image_size,
            cfg.space.patch_size,
            cfg.space.embed_dim,
            cfg.space.nodes,
            list(cfg.space.ops),
            sc.stages[stage].depth,
            mask=mask,
            pts_ratio=sc.pts.ratio,
            pts_dim=sc.pts.dim,
            in_chans=image_channels(cfg.data),
        )
    return net


def estimate_config(
    cfg, device: str = "cpu", batches: tuple[int, ...] = (1, 2), say=lambda s: None
) -> list[StageMemory]:
    """Every stage of `cfg` at its batch (see the module's doc), one supernet at a time (freed before the next)."""
    import gc

    from ..train.data import num_classes
    from ..train.images import image_channels

    out = []
    for i, st in enumerate(cfg.search.stages):
        mask, assumed = assumed_mask(cfg, i)
        say(
            f"stage {i + 1}: building the depth-{st.depth} supernet and measuring (batches {', '.join(map(str, batches))})"
        )
        net = build_stage_net(cfg, i, mask, device)
        out.append(
            estimate_stage(
                net,
                i + 1,
                st.depth,
                st.keep,
                cfg.data.batch_size,
                num_classes=num_classes(cfg.data) or 1000,
                in_chans=image_channels(cfg.data),
                image_size=cfg.data.image_size,
                batches=batches,
                assumed=assumed,
                pts_ratio=cfg.search.pts.ratio,
            )
        )
        del net
        gc.collect()
    return out

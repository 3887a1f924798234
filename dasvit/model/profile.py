"""What a network costs: parameters, FLOPs (fvcore's convention) and measured images per second.

fvcore counts one multiply-add as one FLOP and skips any operator it has no handle for — including
`aten::scaled_dot_product_attention`, which every `msa` op runs. `SDPA_HANDLE` counts it: the QKᵀ and the
AV matmuls, B·h·N_q·N_k·d_qk + B·h·N_q·N_k·d_v multiply-adds (the softmax is not counted, as fvcore does
not count the softmax of an explicit attention either).
"""

from __future__ import annotations

import time
import warnings
from math import prod
from typing import Any

import torch
from torch import nn

from ..train.loop import autocast
from .genotype import Genotype
from .network import Network

SDPA_OP = "aten::scaled_dot_product_attention"


def _shape(value: Any) -> list[int]:
    return list(value.type().sizes())


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for `aten::scaled_dot_product_attention(q, k, v, ...)`: QKᵀ plus AV multiply-adds."""
    q, k, v = (_shape(x) for x in inputs[:3])
    *batch, n_q, d_qk = q
    n_k, d_v = k[-2], v[-1]
    return prod(batch) * n_q * n_k * (d_qk + d_v)


SDPA_HANDLE = {SDPA_OP: sdpa_flop_jit}


def _fvcore():
    with warnings.catch_warnings():  # fvcore's import touches deprecated torch.jit APIs
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
    return FlopCountAnalysis


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def input_channels(model: nn.Module) -> int:
    """The channels `model` reads: those of its first convolution (the patch embedding), else 3."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def flop_analysis(model: nn.Module, image_size: int, in_chans: int | None = None):
    """fvcore's FlopCountAnalysis of one image through `model` (eval mode), with the SDPA handle."""
    FlopCountAnalysis = _fvcore()
    in_chans = in_chans or input_channels(model)
    device = next(model.parameters()).device
    x = torch.zeros(1, in_chans, image_size, image_size, device=device)
    was_training = model.training
    model.eval()
    analysis = (
        FlopCountAnalysis(model, (x,))
        .set_op_handle(**SDPA_HANDLE)
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis.total()  # trace now, while eval mode holds
    model.train(was_training)
    return analysis


def count_flops(model: nn.Module, image_size: int, in_chans: int | None = None) -> int:
    """FLOPs of one image (fvcore: one multiply-add is one FLOP; attention included)."""
    return int(flop_analysis(model, image_size, in_chans).total())


def edge_params(model: Network) -> dict[str, int]:
    """Parameters of each edge's op in one cell, keyed `"i->j op"` (an edge may carry two ops)."""
    cell = model.cells[0]
    return {f"{src}->{dst} {op}": count_params(mod) for (src, dst, op), mod in zip(cell.edges, cell.ops)}


def profile_genotype(
    genotype: Genotype, depth: int, dim: int, image_size: int, patch_size: int, num_classes: int, in_chans: int = 3
) -> dict[str, Any]:
    """Params, FLOPs, per-edge params (one cell) and per-layer params and FLOPs (`layers`: one
    {"params", "flops"} per cell) of the discrete network of `genotype` at these sizes, reading images of
    `in_chans` channels.

    Counting needs shapes, not trained values: the network is allocated without its (slow) random
    initialisation and zero-filled.
    """
    with torch.device("meta"):
        model = Network(genotype, depth, dim, image_size, patch_size, num_classes, in_chans=in_chans)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    analysis = flop_analysis(model, image_size)
    by_module = analysis.by_module()
    layers = [
        {"params": count_params(c), "flops": int(by_module.get(f"cells.{k}", 0))} for k, c in enumerate(model.cells)
    ]
    return {
        "params": count_params(model),
        "flops": int(analysis.total()),
        "edge_params": edge_params(model),
        "layers": layers,
    }


@torch.no_grad()
def images_per_second(
    model: nn.Module,
    image_size: int,
    batch_size: int,
    device: torch.device | str,
    steps: int = 10,
    warmup: int = 3,
    in_chans: int | None = None,
) -> float:
    """Inference throughput of `model` (eval mode; bf16 autocast on CUDA), measured, not estimated."""
    device = torch.device(device)
    in_chans = in_chans or input_channels(model)
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, in_chans, image_size, image_size, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with autocast(device):
        for _ in range(warmup):
            model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
        elapsed = time.perf_counter() - t0
    model.train(was_training)
    return steps * batch_size / max(elapsed, 1e-9)

"""The training pieces every engine shares: one seed-mixing rule, one autocast, one learning-rate
schedule, one weight step, one evaluation.

The search (`dasvit.search`, through `dasvit.bilevel`), the retrain, `dasvit bench` and the profile all
call these, so a change here changes what every one of them runs and measures. Nothing here knows about
α: the architecture step is `dasvit.bilevel.arch_step`, on top of `weight_step`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from .runtime import DistInfo, all_reduce_mean, reduce_sum

SEED_MODULUS = 2**31 - 1


def mix_seed(*parts: int) -> int:
    """One seed from several integers (run seed, stage, epoch, rank, ...): distinct tuples give distinct,
    well-spread seeds, and the same tuple always the same seed (which is what makes a resume replay)."""
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p) + 1) % SEED_MODULUS
    return s


def autocast(device: torch.device | str) -> AbstractContextManager:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU autocast to bf16 is slower than fp32 on most CPUs)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def lr_factor(step: int, total: int, warmup: int = 0, floor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based): linear warm-up from
    1/warmup to 1 over `warmup` steps, then a cosine from 1 down to `floor` (min_lr / lr) at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total: int, warmup: int = 0, min_lr: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of every engine, stepped once per optimizer step; its state_dict goes in checkpoints.

    A `LambdaLR` over `lr_factor` rather than `SequentialLR(LinearLR, CosineAnnealingLR)`: the closed form
    gives the same learning rate at step k however the run got there (a resume is exact, with no drift
    from CosineAnnealingLR's recursive update), and `SequentialLR` steps its second scheduler with the
    deprecated epoch argument at the milestone (a warning every stage)."""
    base = optimizer.param_groups[0]["lr"]
    floor = min_lr / base if base > 0 else 0.0
    total = max(1, total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, floor))


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The loss of every step, in fp32 whatever the autocast dtype; `target` holds class indices or
    (Mixup/CutMix) class probabilities."""
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def weight_step(
    model: nn.Module,
    params: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    target: torch.Tensor,
    info: DistInfo,
    *,
    grad_clip: float = 0.0,
    label_smoothing: float = 0.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grads_synced: bool = False,
    skip_unused: bool = False,
    args: tuple = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step of `params` on one batch: forward under autocast, loss, gradients averaged over
    ranks, clipping, step, schedule. Returns the detached (loss, logits). `args` follow the images into the
    forward (a FocusFormer supernet's architecture).

    Gradients come from `torch.autograd.grad` over `params` only, so parameters outside them (a supernet's
    α) are neither touched nor paid for. With `grads_synced` (the model is a DistributedDataParallel) the
    gradients come from `backward()`, which DDP averages as it goes.

    A parameter of `params` the forward did not use gets a zero gradient (the optimizer still decays it and
    its moments still move it), or with `skip_unused` none, so the optimizer leaves it alone: a FocusFormer
    supernet's layers past the drawn depth. Every rank must then use the same parameters (the same arch)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(info.device):
        logits = model(x, *args)
    loss = cross_entropy(logits, target, label_smoothing)
    if grads_synced:
        loss.backward()
    else:
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None and not skip_unused else g
        all_reduce_mean([p.grad for p in params if p.grad is not None], info)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach(), logits.detach()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    info: DistInfo,
    args: tuple = (),
    max_batches: int = 0,
) -> dict[str, float]:
    """Loss, top-1 and top-5 over every rank's share of a validation set (eval mode, then the model's mode
    is restored): {"val_loss", "top1", "top5"}, fractions in [0, 1].

    `args` follow the images into the forward (a FocusFormer supernet's architecture); `max_batches` > 0
    stops after that many batches per rank."""
    was_training = model.training
    model.eval()
    loss_sum = c1 = c5 = n = 0.0
    for i, (x, y) in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
        with autocast(info.device):
            logits = model(x, *args)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        c1 += (top[:, 0] == y).sum().item()
        c5 += (top == y[:, None]).any(dim=1).sum().item()
        n += y.numel()
    loss_sum, c1, c5, n = reduce_sum([loss_sum, c1, c5, n], info)
    model.train(was_training)
    n = max(n, 1.0)
    return {"val_loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n}

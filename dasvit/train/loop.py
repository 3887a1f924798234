"""The training pieces every engine shares: one seed-mixing rule, the random state a checkpoint keeps,
one autocast, one learning-rate schedule, one weight step, one evaluation, and one epoch's running sums
and progress (`EpochSums`).

The search (`dasvit.search`, through `dasvit.search.bilevel`), the retrain, `dasvit bench` and the profile all
call these, so a change here changes what every one of them runs and measures. Nothing here knows about
α: the architecture step is `dasvit.search.bilevel.arch_step`, on top of `weight_step`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingDiverged
from ..run.distributed import DistInfo, all_reduce_mean, reduce_sum
from ..run.runtime import Run, Stopped

SEED_MODULUS = 2**31 - 1


def mix_seed(*parts: int) -> int:
    """One seed from several integers (run seed, stage, epoch, rank, ...): distinct tuples give distinct,
    well-spread seeds, and the same tuple always the same seed (which is what makes a resume replay)."""
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p) + 1) % SEED_MODULUS
    return s


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    supernet's layers past the drawn depth. Every rank must then use the same parameters (the same subnet)."""
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


def check_finite(value: float, what: str) -> None:
    """A loss that is NaN or infinite ends the run with one sentence (TrainingDiverged), not a success."""
    if not math.isfinite(value):
        raise TrainingDiverged.of(what, value)


class EpochSums:
    """One training epoch's running sums and its progress, as every engine's `train_epoch` keeps them.

    The sums (loss x images, correct predictions, images) stay on the device: no host sync per step but
    the progress line's, twice a second. `step` also checks for a stop (agreed across ranks every 16th
    step) and raises `Stopped`; `totals` sums over ranks.
    """

    def __init__(self, run: Run, label: str, steps: int):
        self.run, self.steps, self.label = run, steps, label
        device = run.info.device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.seen = self.images = 0
        run.progress.start_epoch(label, steps)
        self.t0 = self._shown = time.time()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, images: int = 0) -> None:
        """One step's batch: its mean loss, logits and (hard) targets; `images` more that the step used
        (the α step's batch), counted in images/s only."""
        n = target.shape[0]
        self.loss_sum += loss * n
        self.correct += (logits.argmax(1) == target).sum()
        self.seen += n
        self.images += n + images

    def step(self, step: int) -> None:
        """After step `step` (0-based): the progress line, then the stop check."""
        now = time.time()
        if now - self._shown > 0.5 or step + 1 == self.steps:
            self._shown = now
            seen = max(self.seen, 1)
            self.run.progress.step(
                step + 1,
                f"loss {self.loss_sum.item() / seen:.3f} acc {self.correct.item() / seen:.3f} "
                f"{self.images / max(now - self.t0, 1e-9):.0f} img/s",
            )
        if self.run.should_stop(step):
            raise Stopped()

    def totals(self) -> dict[str, float]:
        """train_loss, train_acc (over every rank's images), seconds and images_per_s (the epoch's training)."""
        loss_sum, correct, seen, images = reduce_sum(
            [self.loss_sum.item(), self.correct.item(), self.seen, self.images], self.run.info
        )
        check_finite(loss_sum / max(seen, 1), f"the training loss of {self.label}")
        seconds = time.time() - self.t0
        return {
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "seconds": seconds,
            "images_per_s": images / max(seconds, 1e-9),
        }

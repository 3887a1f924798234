"""The DASViT bi-level step: an architecture step on a batch of the α half, then a weight step on a
batch of the weights half (first-order DARTS).

`BilevelStep` is the one definition: `Searcher.train_epoch` calls it once per step and `dasvit bench`
times it, so the benchmark measures what a search runs. The weight step is the shared
`dasvit.train.loop.weight_step`; only `arch_step` knows about α.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..run.config import FairnessConfig, SearchConfig
from ..run.distributed import DistInfo, all_reduce_mean
from ..train.loop import autocast, cross_entropy, warmup_cosine, weight_step
from .budget import CostObjective
from .fairness import fairness_loss
from .supernet import Supernet


def arch_step(
    net: Supernet,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    info: DistInfo,
    fairness: FairnessConfig | None = None,
    cost: CostObjective | None = None,
) -> torch.Tensor:
    """One step of α on one batch: ∇α of the validation loss (plus the fairness loss when enabled, and the
    cost term with a budget in the objective), averaged over ranks. Only α receives a gradient. Returns the
    detached loss."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(info.device):
        logits = net(x)
    loss = cross_entropy(logits, y)
    if fairness is not None and fairness.enabled:
        loss = loss + fairness_loss(net.arch_weights(), net.ops, fairness)
    if cost is not None:
        loss = loss + cost(net.arch_weights())
    net.alpha.grad = torch.autograd.grad(loss, net.alpha)[0]
    all_reduce_mean([net.alpha.grad], info)
    optimizer.step()
    return loss.detach()


def search_optimizers(
    net: Supernet, sc: SearchConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the weights with a cosine over the stage's `total_steps`, Adam on α (DARTS's betas)."""
    w_opt = torch.optim.AdamW(net.weight_parameters(), lr=sc.lr, weight_decay=sc.weight_decay)
    a_opt = torch.optim.Adam([net.alpha], lr=sc.arch_lr, betas=(0.5, 0.999), weight_decay=sc.arch_weight_decay)
    return w_opt, a_opt, warmup_cosine(w_opt, total_steps, min_lr=sc.min_lr)


@dataclass
class BilevelStep:
    """One search step on a supernet: `step((xw, yw), (xa, ya))` runs the α step (when a batch of the α
    half is given: not during a stage's weights-only warm-up) and then the weight step; returns the weight
    step's detached (loss, logits)."""

    net: Supernet
    w_opt: torch.optim.Optimizer
    a_opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler | None
    info: DistInfo
    fairness: FairnessConfig | None = None
    grad_clip: float = 0.0
    cost: CostObjective | None = None
    params: list[torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.params = self.net.weight_parameters()

    @classmethod
    def for_stage(
        cls, net: Supernet, sc: SearchConfig, total_steps: int, info: DistInfo, cost: CostObjective | None = None
    ) -> BilevelStep:
        """The step a search stage runs, with the config's optimizers, schedule, fairness, clipping and (when
        the budget is in the objective) cost term."""
        w_opt, a_opt, sched = search_optimizers(net, sc, total_steps)
        return cls(net, w_opt, a_opt, sched, info, sc.fairness, sc.grad_clip, cost)

    def __call__(
        self, w_batch: tuple[torch.Tensor, torch.Tensor], a_batch: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if a_batch is not None:
            arch_step(self.net, self.a_opt, *a_batch, self.info, self.fairness, self.cost)
        return weight_step(
            self.net, self.params, self.w_opt, *w_batch, self.info, grad_clip=self.grad_clip, scheduler=self.sched
        )

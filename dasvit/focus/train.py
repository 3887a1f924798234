"""FocusFormer training, as an engine process: the weight-entangled supernet and the budget-aware sampler.

    python -m dasvit.focus --preset focus-demo --run-dir runs/focus [--set k=v ...]
    python -m dasvit.focus --resume runs/focus
    torchrun --nproc_per_node 2 -m dasvit.focus --preset focus-demo --run-dir runs/focus

Each weight step draws a budget bin and an architecture (from the sampler at that budget; uniformly from
the space during `focus.warmup_epochs`, with probability `focus.uniform_mix` after, and always with
`focus.sampler: uniform`, AutoFormer's training) and trains the supernet's shared weights on it. Every
`focus.sampler_every` steps the sampler learns: for a few budgets it draws several architectures, scores
them with inherited weights on a held-out batch, ranks them Pareto-aware and takes a REINFORCE step.
Every rank draws the same architectures (the draws come from generators seeded alike, and the scores are
averaged over ranks), so the ranks never disagree. The run directory follows the search's contract
(dasvit.run.layout), with `kind: "focus"`; checkpoint.pt after every epoch holds supernet, sampler, both
optimizers and the random states, so `--resume` continues exactly.
"""

from __future__ import annotations

import math
import random
import sys
import zlib
from typing import Any

import torch
from torch.utils.data import Subset

from ..errors import ConfigError
from ..fmt import count
from ..run import layout
from ..run.checkpoint import checkpoint_mismatch, fitting_checkpoint, load_checkpoint, save_checkpoint
from ..run.config import Config
from ..run.distributed import DistInfo, all_reduce_mean, barrier, epoch_peak_memory, setup_distributed
from ..run.events import EPOCH, SPACE
from ..run.requests import FocusRequest
from ..run.runtime import Outcome, Run, allocating
from ..train.augment import train_transform
from ..train.data import EpochLoaders, Splits, build_datasets
from ..train.images import image_channels
from ..train.loop import (
    EpochSums,
    autocast,
    cross_entropy,
    mix_seed,
    rng_state,
    set_rng_state,
    warmup_cosine,
    weight_step,
)
from .pareto import pareto_ranks, window_ranks, window_shortfall
from .sampler import SubnetSampler, budget_edges, reinforce_loss
from .scoring import CostTable, EvalBatches, eval_batch, evaluate_subnet
from .space import FocusSpace, Subnet
from .supernet import FocusSupernet

REPORT_DRAWS = 32  # architectures drawn per bin for the sampler's state in each epoch event

# ---------------------------------------------------------------------------------------------
# the trainer


class FocusTrainer:
    """Trains one supernet and its sampler (every rank runs one; only rank 0 writes)."""

    def __init__(self, cfg: Config, run: Run, info: DistInfo, splits: Splits, space: FocusSpace):
        self.cfg, self.run, self.info, self.space = cfg, run, info, space
        f = cfg.focus
        train, self.val_set, self.num_classes = splits.train, splits.selection, splits.num_classes
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(f.seed + 4321)).tolist()
        n_hold = max(1, round(f.holdout * len(train)))
        self.w_set = Subset(train, sorted(perm[n_hold:]))
        self.hold_set = Subset(train, sorted(perm[:n_hold]))
        if f.batch_size % info.world or f.lstm.batch_size % info.world:
            raise ConfigError(
                f"focus.batch_size ({f.batch_size}) and focus.lstm.batch_size ({f.lstm.batch_size}) "
                f"must be divisible by the {info.world} processes."
            )
        self.w_loaders = EpochLoaders(
            self.w_set, f.batch_size // info.world, cfg.data.workers, f.seed, info.rank, info.world
        )
        hold_bs = min(f.lstm.batch_size, len(self.hold_set)) // info.world
        if len(self.w_loaders) == 0 or hold_bs == 0:
            raise ConfigError(
                f"the training set ({len(train)} images, {len(self.hold_set)} held out for the sampler) is too small "
                f"for focus.batch_size {f.batch_size} on {info.world} processes; lower focus.batch_size."
            )
        self.hold_loaders = EpochLoaders(self.hold_set, hold_bs, cfg.data.workers, f.seed + 1, info.rank, info.world)
        self.val_batches = EvalBatches(
            EpochLoaders(
                self.val_set,
                eval_batch(f.batch_size) // info.world,
                cfg.data.workers,
                0,
                info.rank,
                info.world,
                shuffle=False,
                drop_last=False,
            )
        )
        self.steps = len(self.w_loaders) if not f.steps_per_epoch else min(f.steps_per_epoch, len(self.w_loaders))
        chans = image_channels(cfg.data)
        image, patch = cfg.data.image_size, cfg.space.patch_size
        self.cost = CostTable(space, image, patch, self.num_classes, chans)
        self.min_flops, self.min_params = self.cost(space.smallest())
        self.max_flops, self.max_params = self.cost(space.largest())
        self.budgets = budget_edges(self.min_flops, self.max_flops, f.budget_bins)

        torch.manual_seed(mix_seed(f.seed, 999))  # the same initial weights on every rank
        with allocating("the FocusFormer supernet", "focus.embed_dims or focus.depths"):
            self.net = FocusSupernet(space, self.num_classes, image, patch, in_chans=chans, drop_path=f.drop_path)
            self.net = self.net.to(info.device)
        self.params = list(self.net.parameters())
        decay = [p for p in self.params if p.ndim > 1]
        no_decay = [p for p in self.params if p.ndim <= 1]
        self.w_opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": f.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=f.lr
        )
        self.sched = warmup_cosine(self.w_opt, f.epochs * self.steps, f.lr_warmup_epochs * self.steps, f.min_lr)
        self.sampler = SubnetSampler(space, f.budget_bins, f.lstm.hidden)  # tiny: lives on the CPU
        self.s_opt = torch.optim.Adam(self.sampler.parameters(), lr=f.lstm.lr)
        # identical on every rank: which bin, uniform or not, which subnet
        self.rng = random.Random(mix_seed(f.seed, 7))
        self.gen = torch.Generator().manual_seed(mix_seed(f.seed, 8))
        self.sampler_steps = 0
        self.subnet_digest = 0  # a running checksum of every architecture trained (ranks compare them)

    # -- drawing ------------------------------------------------------------------------------
    def uses_sampler(self, epoch: int) -> bool:
        f = self.cfg.focus
        return f.sampler == "pareto" and epoch >= f.warmup_epochs

    def sampler_learns(self) -> bool:
        """The sampler learns from the first epoch on: during the warm-up the training draws uniformly, while
        the sampler learns where each budget's networks lie (which needs no trained weights)."""
        return self.cfg.focus.sampler == "pareto"

    def draw(self, epoch: int) -> tuple[int, Subnet]:
        """The budget bin and architecture of one weight step (the same on every rank)."""
        k = self.rng.randrange(len(self.budgets))
        mix = self.rng.random()
        if not self.uses_sampler(epoch) or mix < self.cfg.focus.uniform_mix:
            return k, self.space.sample(self.rng)
        with torch.no_grad():
            return k, self.sampler(torch.tensor([k]), self.gen).subnets[0]

    # -- one epoch ----------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        f, dev, net, info = self.cfg.focus, self.info.device, self.net, self.info
        torch.manual_seed(mix_seed(f.seed, epoch, info.rank))  # drop-path: a resumed epoch replays exactly
        loader = self.w_loaders.epoch(epoch)
        hold = self._held_out_batches(epoch)
        net.train()
        sums = EpochSums(self.run, f"epoch {epoch + 1}/{f.epochs}", self.steps)
        lr = self.sched.get_last_lr()[0]
        for step, (x, y) in enumerate(loader):
            if step >= self.steps:
                break
            lr = self.sched.get_last_lr()[0]  # this step's
            _, subnet = self.draw(epoch)
            self.subnet_digest = zlib.crc32(repr(subnet).encode(), self.subnet_digest)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            # the layers past the subnet's depth get no gradient, so AdamW leaves them alone (the same on every rank)
            loss, logits = weight_step(
                net,
                self.params,
                self.w_opt,
                x,
                y,
                info,
                grad_clip=f.grad_clip,
                scheduler=self.sched,
                skip_unused=True,
                args=(subnet,),
            )
            sums.add(loss, logits, y)
            if self.sampler_learns() and (step + 1) % f.sampler_every == 0:
                self.sampler_step(next(hold))
            sums.step(step)
        return {**sums.totals(), "lr": lr}

    def _held_out_batches(self, epoch: int):
        """Held-out batches for the sampler steps of `epoch`, endlessly (a fixed order per epoch)."""
        k = 0
        while True:
            yield from self.hold_loaders.epoch(mix_seed(epoch, k))
            k += 1

    # -- the sampler's step ---------------------------------------------------------------------
    def sampler_step(self, batch) -> None:
        """Draw `lstm.archs` architectures for each of `lstm.budgets` bins, score them on a held-out batch with
        inherited weights, rank them Pareto-aware per budget, and take one REINFORCE step."""
        lstm, info = self.cfg.focus.lstm, self.info
        bins = [self.rng.randrange(len(self.budgets)) for _ in range(lstm.budgets)]
        draw = self.sampler(torch.tensor([k for k in bins for _ in range(lstm.archs)]), self.gen)
        x, y = batch[0].to(info.device), batch[1].to(info.device)
        losses = []
        self.net.eval()
        with torch.no_grad(), autocast(info.device):
            for subnet in draw.subnets:
                losses.append(cross_entropy(self.net(x, subnet), y))
        self.net.train()
        losses_t = torch.stack(losses).float()
        all_reduce_mean([losses_t], info)  # every rank ranks the same numbers
        losses_l = losses_t.cpu().tolist()
        total = torch.zeros(())
        for g, k in enumerate(bins):
            sl = slice(g * lstm.archs, (g + 1) * lstm.archs)
            flops = [self.cost.flops(a) for a in draw.subnets[sl]]
            if lstm.rank == "window":
                low = self.budgets[k - 1] if k > 0 else -math.inf
                ranks = window_ranks(flops, losses_l[sl], low, self.budgets[k])
            else:
                ranks = pareto_ranks(flops, losses_l[sl], self.budgets[k])
            total = total + reinforce_loss(
                draw.log_prob[sl], draw.entropy[sl], ranks, lstm.entropy, lstm.entropy_floor, draw.max_entropy[sl]
            )
        total = total / len(bins)
        if lstm.cost_archs:  # where each bin's networks lie: priced analytically, every bin, no evaluation
            every = torch.arange(len(self.budgets)).repeat_interleave(lstm.cost_archs)
            d = self.sampler(every, self.gen)
            span = self.max_flops - self.min_flops
            for k in range(len(self.budgets)):
                sl = slice(k * lstm.cost_archs, (k + 1) * lstm.cost_archs)
                low = self.budgets[k - 1] if k > 0 else -math.inf
                out = window_shortfall([self.cost.flops(a) for a in d.subnets[sl]], low, self.budgets[k], span)
                term = reinforce_loss(
                    d.log_prob[sl], d.entropy[sl], out, lstm.entropy, lstm.entropy_floor, d.max_entropy[sl]
                )
                total = total + term / len(self.budgets)
        self.s_opt.zero_grad(set_to_none=True)
        total.backward()
        self.s_opt.step()
        self.sampler_steps += 1

    # -- what an epoch event reports -------------------------------------------------------------
    @torch.no_grad()
    def sampler_state(self, epoch: int) -> list[dict[str, float]]:
        """Per bin: budget, mean FLOPs of the subnets the training draws at that budget, the fraction within
        budget, and the entropy of the draw (the sampler's; with uniform sampling, the uniform draw's)."""
        gen = torch.Generator().manual_seed(mix_seed(self.cfg.focus.seed, epoch, 55))  # not the training's draws
        rng = random.Random(mix_seed(self.cfg.focus.seed, epoch, 56))
        uniform = None
        out = []
        for k, budget in enumerate(self.budgets):
            if self.sampler_learns():  # during the warm-up too: what it has learnt so far
                d = self.sampler(torch.full((REPORT_DRAWS,), k), gen)
                subnets, entropy = d.subnets, float(d.entropy.mean())
            else:
                if uniform is None:
                    subnets = [self.space.sample(rng) for _ in range(REPORT_DRAWS)]
                    uniform = (subnets, self.uniform_entropy(subnets))
                subnets, entropy = uniform
            flops = [self.cost.flops(a) for a in subnets]
            out.append(
                {
                    "budget_flops": budget,
                    "mean_flops": sum(flops) / len(flops),
                    "feasible": sum(fl <= budget for fl in flops) / len(flops),
                    "entropy": entropy,
                }
            )
        return out

    def uniform_entropy(self, subnets: list[Subnet]) -> float:
        """Mean entropy of the uniform draw over the decisions each subnet uses (nats)."""
        sizes = {name: len(opts) for name, opts in self.space.decisions()}
        total = 0.0
        for a in subnets:
            for name, n in sizes.items():
                layer = int(name[5:].split(".")[0]) if name.startswith("layer") else -1
                if layer < a.depth:
                    total += math.log(n)
        return total / len(subnets)

    def points(self, epoch: int) -> list[dict[str, float]]:
        """One architecture per bin (the sampler's, or uniform under the budget), scored on the validation split."""
        f = self.cfg.focus
        gen = torch.Generator().manual_seed(mix_seed(f.seed, epoch, 57))
        rng = random.Random(mix_seed(f.seed, epoch, 58))
        out = []
        val = self.val_batches
        for k, budget in enumerate(self.budgets):
            if self.uses_sampler(epoch):
                with torch.no_grad():
                    subnet = self.sampler(torch.tensor([k]), gen).subnets[0]
            else:
                subnet = self.space.sample(rng)
                for _ in range(200):
                    if self.cost.flops(subnet) <= budget:
                        break
                    subnet = self.space.sample(rng)
            loss, acc = evaluate_subnet(self.net, subnet, val, self.info, f.eval_batches)
            flops, params = self.cost(subnet)
            out.append({"flops": flops, "params": params, "val_loss": loss, "val_acc": acc, "bin": k})
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self, epoch: int) -> None:
        if not self.info.main:
            return
        save_checkpoint(
            self.run.dir / layout.CHECKPOINT,
            {
                "version": 1,
                "kind": "focus",
                "epoch": epoch,
                "control_offset": self.run.control_offset,
                "model": self.net.state_dict(),
                "w_opt": self.w_opt.state_dict(),
                "sched": self.sched.state_dict(),
                "sampler": self.sampler.state_dict(),
                "s_opt": self.s_opt.state_dict(),
                "sampler_steps": self.sampler_steps,
                "arch_digest": self.subnet_digest,
                "rng": {**rng_state(), "python": self.rng.getstate(), "sampler": self.gen.get_state()},
                "budgets": self.budgets,
                "num_classes": self.num_classes,
            },
            keep_previous=True,
        )

    def restore(self, ckpt: dict[str, Any]) -> int:
        self.net.load_state_dict(ckpt["model"])
        self.w_opt.load_state_dict(ckpt["w_opt"])
        self.sched.load_state_dict(ckpt["sched"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.s_opt.load_state_dict(ckpt["s_opt"])
        self.sampler_steps = ckpt["sampler_steps"]
        self.subnet_digest = ckpt["arch_digest"]
        rng = ckpt["rng"]
        set_rng_state(rng)
        self.rng.setstate(_as_tuple(rng["python"]))
        self.gen.set_state(rng["sampler"])
        self.run.control_offset = ckpt["control_offset"]
        return ckpt["epoch"]

    def check_ranks_agree(self) -> None:
        """Every rank must have trained the same architectures and hold the same sampler and supernet; a
        divergence is a bug."""
        if self.info.world == 1:
            return
        mine = torch.tensor(
            [
                float(sum(p.detach().double().sum() for p in self.sampler.parameters())),
                float(sum(p.detach().double().sum() for p in self.net.parameters())),
                float(self.subnet_digest),
            ],
            dtype=torch.float64,
        )
        gathered = [torch.zeros_like(mine) for _ in range(self.info.world)]
        torch.distributed.all_gather_object(gathered, mine)
        if any(int(g[2]) != self.subnet_digest for g in gathered):
            raise RuntimeError("ranks trained different architectures")
        worst = max(float(((g - mine).abs() / mine.abs().clamp(min=1.0))[:2].max()) for g in gathered)
        if worst > 1e-6:
            raise RuntimeError(
                f"ranks disagree on the architectures, the sampler or the supernet (difference {worst:g})"
            )

    # -- the whole run --------------------------------------------------------------------------
    def train(self, ckpt: dict[str, Any] | None) -> None:
        f = self.cfg.focus
        start = 0
        if ckpt is not None:
            with fitting_checkpoint(self.run.dir):
                start = int(self.restore(ckpt))
            if not 0 <= start <= f.epochs:
                raise checkpoint_mismatch(self.run.dir, f"it stopped after epoch {start} of focus.epochs {f.epochs}")
        if ckpt is None:
            self.run.emit(
                SPACE,
                min_flops=self.min_flops,
                max_flops=self.max_flops,
                min_params=self.min_params,
                max_params=self.max_params,
                budgets=self.budgets,
                decisions=len(self.space.decisions()),
                smallest=self.space.smallest().to_json(),
                largest=self.space.largest().to_json(),
            )
            self.checkpoint(0)  # a stop during the first epoch can still be resumed
        self.run.progress.line(
            f"space: {count(self.min_flops)}-{count(self.max_flops)} FLOPs, "
            f"{count(self.min_params)}-{count(self.max_params)} params; {f.epochs} epochs of {self.steps} "
            f"steps, sampler {f.sampler}"
        )
        for epoch in range(start, f.epochs):
            m = self.train_epoch(epoch)
            bins = self.sampler_state(epoch)
            points = self.points(epoch)
            val = self.val_batches
            largest = evaluate_subnet(self.net, self.space.largest(), val, self.info, f.eval_batches)
            smallest = evaluate_subnet(self.net, self.space.smallest(), val, self.info, f.eval_batches)
            self.checkpoint(epoch + 1)
            extra = epoch_peak_memory(self.info)
            phase = "sampler" if self.uses_sampler(epoch) else "uniform"
            self.run.emit(
                EPOCH,
                stage=1,
                stages=1,
                epoch=epoch + 1,
                epochs=f.epochs,
                **m,
                val_loss=largest[0],
                val_acc=largest[1],
                val_loss_smallest=smallest[0],
                val_acc_smallest=smallest[1],
                phase=phase,
                sampler_steps=self.sampler_steps,
                sampler={"bins": bins},
                points=points,
                **extra,
            )
            feas = " ".join(f"{b['feasible']:.2f}" for b in bins)
            self.run.progress.line(
                f"epoch {epoch + 1}/{f.epochs} [{phase}]  train loss {m['train_loss']:.3f} acc {m['train_acc']:.3f}  "
                f"val acc largest {largest[1]:.3f} smallest {smallest[1]:.3f}  feasible/bin {feas}  "
                f"{m['images_per_s']:.0f} img/s  {m['seconds']:.1f}s"
            )
        self.check_ranks_agree()
        barrier(self.info)


def _as_tuple(x: Any) -> Any:
    """random.Random.setstate wants tuples (a checkpoint may hand back lists)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------------------------
# the process


def main(argv: list[str] | None = None) -> int:
    """`python -m dasvit.focus ARGS` (see `dasvit.run.requests.FocusRequest`)."""
    return run(FocusRequest.parse(argv))


def run(request: FocusRequest) -> int:
    """Run the FocusFormer training a request asks for, in this process (one rank); returns the exit code."""
    with Outcome() as outcome:
        req = request.resolved()  # a bad config, space or run directory: one sentence, before anything starts
        cfg, run_dir, space = req.config, req.run_dir, req.space
        info = setup_distributed()
        tf, _ = train_transform(cfg, "search")  # the search's light augmentation (search.augment)
        splits = build_datasets(cfg.data, train_transform=tf)  # a missing dataset: no run
        torch.set_float32_matmul_precision("high")
        with Run.of(req, info) as run:
            if info.main and not req.resume:
                space.base.save(run_dir / layout.BASE_GENOTYPE)
            if info.main:
                for line in [f"run directory: {run_dir}", splits.describe(), *splits.notes]:
                    run.progress.line(line)
            trainer = FocusTrainer(cfg, run, info, splits, space)
            ckpt = load_checkpoint(run_dir / layout.CHECKPOINT, warn=run.warn) if req.resume else None
            trainer.train(ckpt)
            hint = f"specialize with: dasvit specialize {run_dir} --flops {count((trainer.min_flops + trainer.max_flops) / 2)}"
            run.finished(f"supernet and sampler in {run_dir / layout.CHECKPOINT}; {hint}", f"finished; {hint}")
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())

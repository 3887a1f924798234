"""Specialization: the most accurate architecture of a trained FocusFormer supernet under a budget.

`specialize(run_dir, flops=1.4e9)` evaluates candidates under the budget on the validation split with the
supernet's inherited weights and writes the best as a version-2 genotype, RUN_DIR/specialized/<budget>.json.
Candidates come from one of three methods, each allowed the same number of evaluations:

- `sampler`: the run's budget-conditioned sampler, asked for the budget's bin (its most likely
  architecture first, then draws); FocusFormer's way.
- `evolution`: AutoFormer's evolutionary search (population 50, 20 generations, top-10 parents, half the
  children by mutation, half by crossover), scaled down to the number of evaluations allowed.
- `random`: architectures drawn uniformly from the space, kept if under the budget.

An evaluation is one architecture scored on the whole validation split; architectures over the budget
are rejected by the cost model, for free. Every method returns all it evaluated, the Pareto front of
those (FLOPs against top-1), and after how many evaluations it found its best.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import RunDirError, UserError
from ..fmt import check_budget, count
from ..limits import MAX_SAMPLES
from ..model.genotype import subnet_genotype
from ..run import layout, runstatus
from ..run.checkpoint import load_checkpoint, save_weights
from ..run.config import Config
from ..run.distributed import DistInfo
from ..run.presets import load_run_config
from ..train.data import EpochLoaders, build_datasets
from ..train.images import image_channels
from .pareto import pareto_front
from .sampler import SubnetSampler, bin_for_budget
from .scoring import CostTable, EvalBatches, eval_batch, evaluate_subnet
from .space import FocusSpace, Subnet, space_from_config
from .supernet import FocusSupernet

METHODS = ("sampler", "evolution", "random")


@dataclass
class Candidate:
    """One evaluated architecture: its cost and its inherited-weight accuracy on the validation split."""

    subnet: Subnet
    flops: int
    params: int
    val_loss: float
    top1: float
    order: int  # 1-based: the how-many-th evaluation it was

    def to_json(self) -> dict:
        return {
            "flops": self.flops,
            "params": self.params,
            "val_loss": self.val_loss,
            "top1": self.top1,
            "evaluation": self.order,
            "arch": self.subnet.to_json(),
        }


@dataclass
class Result:
    method: str
    flops_budget: int
    params_budget: int | None
    best: Candidate
    evaluated: list[Candidate]
    front: list[Candidate]
    path: Path | None = None
    preset: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def found_at(self) -> int:
        return self.best.order

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "flops_budget": self.flops_budget,
            "params_budget": self.params_budget,
            "evaluations": len(self.evaluated),
            "found_at": self.found_at,
            "seconds": self.seconds,
            "best": self.best.to_json(),
            "front": [c.to_json() for c in self.front],
            "genotype": str(self.path) if self.path else None,
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------------------------
# a trained run, loaded for evaluation


class FocusRun:
    """A focus run directory's supernet, sampler, space, cost model and validation split."""

    def __init__(self, run_dir: str | Path, device: str | torch.device | None = None):
        run_dir = layout.require_run_dir(Path(run_dir))
        if runstatus.summarize(run_dir).kind != "focus":
            raise RunDirError(f"{run_dir} is not a focus run (dasvit focus writes those); nothing to specialize.")
        if not (run_dir / layout.CHECKPOINT).is_file():
            raise RunDirError(f"{run_dir} has no {layout.CHECKPOINT} yet; let its first epoch finish.")
        self.dir = run_dir
        self.cfg: Config = load_run_config(run_dir / layout.CONFIG)
        self.space: FocusSpace = space_from_config(self.cfg, run_dir)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.info = DistInfo(device=dev)
        ckpt = load_checkpoint(run_dir / layout.CHECKPOINT, map_location=dev)
        self.epoch = ckpt["epoch"]
        splits = build_datasets(self.cfg.data)
        val, num_classes = splits.selection, splits.num_classes
        chans = self.in_chans = image_channels(self.cfg.data)
        image, patch = self.cfg.data.image_size, self.cfg.space.patch_size
        self.num_classes = num_classes
        self.net = FocusSupernet(self.space, num_classes, image, patch, in_chans=chans).to(dev)
        self.net.load_state_dict(ckpt["model"])
        self.net.eval()
        self.sampler = SubnetSampler(self.space, self.cfg.focus.budget_bins, self.cfg.focus.lstm.hidden)
        self.sampler.load_state_dict(ckpt["sampler"])
        self.budgets: list[float] = list(ckpt["budgets"])
        self.cost = CostTable(self.space, image, patch, num_classes, chans)
        self.val = EvalBatches(
            EpochLoaders(
                val, eval_batch(self.cfg.focus.batch_size), self.cfg.data.workers, 0, shuffle=False, drop_last=False
            )
        )

    def evaluate(self, subnet: Subnet) -> tuple[float, float]:
        return evaluate_subnet(self.net, subnet, self.val, self.info)


# ---------------------------------------------------------------------------------------------
# the search under a budget


class Evaluations:
    """Evaluates each architecture once, in order, up to `limit`; `fits` says whether one is under budget."""

    def __init__(
        self,
        run: FocusRun,
        flops: int,
        params: int | None,
        limit: int,
        on_eval: Callable[[Candidate], None] | None = None,
    ):
        self.run, self.flops, self.params, self.limit = run, flops, params, limit
        self.done: dict[Subnet, Candidate] = {}
        self.on_eval = on_eval

    def fits(self, subnet: Subnet) -> bool:
        f, p = self.run.cost(subnet)
        return f <= self.flops and (self.params is None or p <= self.params)

    @property
    def full(self) -> bool:
        return len(self.done) >= self.limit

    def __call__(self, subnet: Subnet) -> Candidate | None:
        """Evaluate `subnet` (None if seen before or out of evaluations)."""
        if subnet in self.done or self.full:
            return None
        loss, top1 = self.run.evaluate(subnet)
        f, p = self.run.cost(subnet)
        c = self.done[subnet] = Candidate(subnet, f, p, loss, top1, len(self.done) + 1)
        if self.on_eval is not None:
            self.on_eval(c)
        return c


def _draws_limit(samples: int) -> int:
    return 200 * samples + 1000  # rejected (over-budget or repeated) draws cost no evaluation, but stop somewhere


def search_sampler(run: FocusRun, ev: Evaluations, rng: random.Random) -> None:
    """The sampler at the budget's bin: its most likely architecture, then draws, evaluating those under budget."""
    k = bin_for_budget(ev.flops, run.budgets)
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    with torch.no_grad():
        first = run.sampler(torch.tensor([k]), greedy=True).subnets[0]
        if ev.fits(first):
            ev(first)
        tries = 0
        while not ev.full and tries < _draws_limit(ev.limit):
            batch = run.sampler(torch.full((64,), k), gen).subnets
            tries += len(batch)
            for subnet in batch:
                if ev.full:
                    break
                if subnet not in ev.done and ev.fits(subnet):
                    ev(subnet)


def search_random(run: FocusRun, ev: Evaluations, rng: random.Random) -> None:
    """Uniform draws from the space, evaluated when under budget."""
    tries = 0
    while not ev.full and tries < _draws_limit(ev.limit):
        tries += 1
        subnet = run.space.sample(rng)
        if subnet not in ev.done and ev.fits(subnet):
            ev(subnet)


def evolution_sizes(samples: int) -> tuple[int, int, int]:
    """AutoFormer's (population 50, 20 generations, top-10 parents), scaled down to `samples` evaluations:
    population and generations shrink alike (both by the square root), parents stay a fifth."""
    if samples >= 1000:
        return 50, samples // 50, 10
    pop = max(4, min(50, round(50 * math.sqrt(samples / 1000))))
    gens = max(1, math.ceil(samples / pop))
    return pop, gens, max(2, round(pop / 5))


def search_evolution(run: FocusRun, ev: Evaluations, rng: random.Random, mutate_prob: float = 0.2) -> None:
    """AutoFormer's evolution: a random population under budget, then each generation the top parents of all
    evaluated so far breed half the population by mutation and half by crossover (under budget, unseen)."""
    pop, gens, top = evolution_sizes(ev.limit)
    space = run.space
    tries = 0
    while len(ev.done) < pop and not ev.full and tries < _draws_limit(pop):
        tries += 1
        subnet = space.sample(rng)
        if subnet not in ev.done and ev.fits(subnet):
            ev(subnet)
    for _ in range(gens - 1):
        if ev.full or not ev.done:
            break
        parents = [c.subnet for c in sorted(ev.done.values(), key=lambda c: -c.top1)[:top]]
        made, tries, cross_tries = 0, 0, 0
        while made < pop and not ev.full and tries < _draws_limit(pop):
            tries += 1
            # half by crossover; when the parents are too alike to give new children (AutoFormer gives up
            # after 10 tries a child), mutation makes the rest, so every method gets its evaluations
            if made < pop // 2 or cross_tries >= 10 * pop or len(parents) < 2:
                child = space.mutate(rng.choice(parents), rng, mutate_prob)
            else:
                cross_tries += 1
                a, b = rng.sample(parents, 2)
                child = space.crossover(a, b, rng)
            if child not in ev.done and ev.fits(child):
                ev(child)
                made += 1
        if made == 0:
            break


SEARCHES = {"sampler": search_sampler, "evolution": search_evolution, "random": search_random}


def budget_label(flops: int, params: int | None) -> str:
    return count(flops) + (f"_{count(params)}" if params is not None else "")


def write_genotype(run: FocusRun, result: Result, path: Path) -> None:
    """The best architecture of `result` as a version-2 genotype at `path`, with what it was found by in meta,
    and its inherited weights beside it (`<budget>.safetensors`: the supernet's slices, `FocusSupernet.extract`),
    which `dasvit export` exports and `dasvit retrain --init inherited` fine-tunes from."""
    best = result.best
    meta = {
        "dataset": run.cfg.data.name,
        "run": str(run.dir),
        "preset": run.cfg.preset,
        "method": result.method,
        "flops": best.flops,
        "params": best.params,
        "top1_inherited": best.top1,
        "val_loss_inherited": best.val_loss,
        "flops_budget": result.flops_budget,
        "params_budget": result.params_budget,
        "evaluations": len(result.evaluated),
        "found_at": best.order,
        "supernet_epoch": run.epoch,
        "image_size": run.cfg.data.image_size,
        "patch_size": run.cfg.space.patch_size,
        "num_classes": run.num_classes,
        "in_chans": run.in_chans,
    }
    weights = layout.inherited_weights_path(path)
    meta["weights"] = weights.name
    save_weights(weights, run.net.extract(best.subnet).state_dict(), metadata={"format": "pt"})
    subnet_genotype(run.space, best.subnet, meta).save(path)


def specialize(
    run: FocusRun | str | Path,
    flops: int,
    params: int | None = None,
    samples: int = 100,
    method: str = "sampler",
    seed: int = 0,
    write: bool = True,
    on_eval: Callable[[Candidate], None] | None = None,
) -> Result:
    """Find the most accurate architecture of `run` under `flops` (and `params`) with `samples` evaluations;
    write it to RUN_DIR/specialized/<budget>.json (<budget>-<method>.json for evolution and random)."""
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}.")
    if not 1 <= samples <= MAX_SAMPLES:
        raise UserError(f"--samples must be between 1 and {MAX_SAMPLES:,}, got {samples:,}.")
    if not isinstance(run, FocusRun):
        run = FocusRun(run)
    if write:
        layout.run_subdir(run.dir, layout.SPECIALIZED)  # before the evaluations: a planted link is refused at once
    smallest = run.space.smallest()
    min_flops, min_params = run.cost(smallest)
    check_budget(flops, min_flops, "--flops", "FLOPs")
    check_budget(params, min_params, "--params", "params")
    t0 = time.time()
    ev = Evaluations(run, flops, params, samples, on_eval)
    SEARCHES[method](run, ev, random.Random(seed))
    notes = []
    if method == "sampler" and (run.cfg.focus.sampler == "uniform" or run.epoch <= run.cfg.focus.warmup_epochs):
        notes.append(
            "this run's sampler was never trained (focus.sampler uniform, or still in its uniform "
            "warm-up); evolution or random suit it better"
        )
    if not ev.done:  # nothing under budget turned up: the smallest architecture always fits
        ev(smallest)
        notes.append(f"{method} found nothing under the budget; the space's smallest architecture is the answer")
    elif len(ev.done) < samples:
        notes.append(f"only {len(ev.done)} distinct architectures under the budget turned up")
    cands = list(ev.done.values())
    best = max(cands, key=lambda c: (c.top1, -c.val_loss, -c.flops))
    front = pareto_front(cands, key=lambda c: (c.flops, c.top1))
    if best not in front:  # a tie on top-1 with a cheaper one, broken by the validation loss
        front = sorted(front + [best], key=lambda c: c.flops)
    result = Result(
        method, flops, params, best, cands, front, preset=run.cfg.preset, seconds=time.time() - t0, notes=notes
    )
    if write:
        name = budget_label(flops, params) + ("" if method == "sampler" else f"-{method}") + ".json"
        path = layout.run_subdir(run.dir, layout.SPECIALIZED) / name
        write_genotype(run, result, path)
        result.path = path
    return result

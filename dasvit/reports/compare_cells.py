"""The networks a comparison trains besides the searched cell and the ViT block, and what each costs: the
matched-FLOPs depth, random cells of the run's space (uniform, or of the searched cell's cost), and the
cells a selection rule takes from the run's supernet."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from ..errors import BudgetError, UserError
from ..fmt import count
from ..model.cost import Cost
from ..model.genotype import Genotype, load_genotype
from ..run import layout
from ..run.config import Config

VIT = "vit_b16"  # the ViT-B/16 block, trained as the baseline
DEFAULT_TOLERANCE = 0.05  # --match-cost: ±5 % of the searched cell's FLOPs and params


def at_depth(cfg: Config, depth: int) -> Config:
    return dataclasses.replace(cfg, retrain=dataclasses.replace(cfg.retrain, depth=depth))


def cost_at_depth(genotype: Genotype, cfg: Config, depth: int, num_classes: int) -> Cost:
    """What the retrained network of `genotype` at `depth` costs (dasvit.model.cost: what fvcore counts)."""
    from ..model.cost import network_cost
    from ..model.genotype import network_sizes
    from ..train.images import image_channels

    sizes = network_sizes(cfg, genotype, num_classes, image_channels(cfg.data))
    return network_cost(genotype, dataclasses.replace(sizes, depth=depth))


def matched_depth(flops_at: Callable[[int], int], budget: int, max_depth: int) -> int | None:
    """The largest depth in 1..max_depth whose FLOPs do not exceed `budget` (None if depth 1 does).

    FLOPs grow by one cell per layer, so two counts give the slope; the guess is then checked exactly.
    """
    if flops_at(1) > budget:
        return None
    slope = flops_at(2) - flops_at(1) if max_depth > 1 else 0
    d = max_depth if slope <= 0 else min(max_depth, 1 + (budget - flops_at(1)) // slope)
    while d > 1 and flops_at(d) > budget:
        d -= 1
    while d < max_depth and flops_at(d + 1) <= budget:
        d += 1
    return d


RANDOM = "random"
MATCHED = "matched"  # random cells of the searched cell's cost (--match-cost)


def is_random(cell: str) -> bool:
    return cell.startswith((RANDOM, MATCHED))


def is_repeated(cell: str) -> bool:
    """Whether `--repeats` retrains this cell again: the searched cells and the ViT block, not random cells."""
    return not is_random(cell)


def random_cell(cfg: Config, k: int, matched: Genotype | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Genotype:
    """The k-th random cell (1-based) of `cfg`'s space, under the derivation's rules and the search's budget;
    with `matched`, the k-th of those whose FLOPs and params lie within ±`tolerance` of that cell's."""
    import random

    from ..model.cost import Cost, edges_cost
    from ..search.budget import space_costs
    from ..search.derivation import random_genotype
    from ..train.loop import mix_seed

    op_costs, budget = space_costs(cfg)
    s = cfg.space
    if matched is None:
        rng = random.Random(mix_seed(cfg.search.seed, 0x5EED, k))
        meta = {"random": k, "seed": cfg.search.seed, "budget": cfg.search.budget}
        return random_genotype(s.ops, s.nodes, s.edges_per_node, rng, op_costs, budget, meta=meta)
    c = edges_cost([e for e in matched.edges if e.dst in set(matched.live_nodes())], op_costs)
    low = Cost(math.ceil(c.flops * (1 - tolerance)), math.ceil(c.params * (1 - tolerance)))
    high = Cost(int(c.flops * (1 + tolerance)), int(c.params * (1 + tolerance)))
    if budget is not None and cfg.search.budget_in != "objective" and c.within(budget):
        high = Cost(min(high.flops, budget.flops), min(high.params, budget.params))  # within it, as the searched
    rng = random.Random(mix_seed(cfg.search.seed, 0x3A7C, k))
    meta = {"matched": k, "seed": cfg.search.seed, "budget": cfg.search.budget, "tolerance": tolerance}
    meta["to"] = {"flops": c.flops, "params": c.params}
    try:
        return random_genotype(s.ops, s.nodes, s.edges_per_node, rng, op_costs, high, meta=meta, floor=low)
    except BudgetError:
        raise UserError(
            f"no random cell of the space costs within ±{100 * tolerance:g} % of the searched cell "
            f"({count(c.flops)} FLOPs, {count(c.params)} params per layer); widen --tolerance."
        ) from None


def selection_cell(run_dir: Path, rule: str, overrides: list[str], say: Callable[[str], None]) -> tuple[str, Genotype]:
    """The cell rule `rule` takes from the run's last stage-end supernet (RUN/derived/<name>.json, taken now
    if it is not there yet) and its name."""
    from ..run.config import parse_selection
    from ..run.presets import load_config
    from ..search.selection import derive_from_run, derived_path, rule_name

    base, implied = parse_selection(rule)
    sel = load_config(str(run_dir / layout.CONFIG), [*overrides, *implied]).search.selection
    name = rule_name(base, sel.max_skips)
    path = derived_path(run_dir, name)
    if path.is_file():
        return name, load_genotype(path)
    say(f"selecting the {name} cell from the run's supernet ...")
    geno, path = derive_from_run(run_dir, rule, overrides, say=say)
    say(f"{name}: written {path}")
    return name, geno

"""The paper's comparison at our scale: the searched cell against the ViT block, same width, recipe and data.

`compare(RUN_DIR)` retrains with the run's config.yaml (and `--set` overrides on top), through the retrain
engine (`RetrainRequest`, `retrain`), up to three networks:

- the searched cell (RUN_DIR/genotype.json) and the ViT block (the `vit_b16` genotype) at `retrain.depth`:
  the comparison at equal depth;
- the searched cell at the largest depth whose FLOPs do not exceed the ViT block's at `retrain.depth`:
  the comparison at matched FLOPs (a searched cell that costs more per layer gets fewer layers);
- with `random_cells` N, N cells drawn at random from the run's own space under the derivation's rules
  (`edges_per_node` inputs per node, a residual path, the first stage's ops, within `search.budget`), at
  `retrain.depth`: the baseline a search has to beat (Li & Talwalkar 2019). The k-th is drawn from
  (search.seed, k), so `--random 3` then `--random 5` adds two and reuses three.

With `repeats` K, the searched cell and the ViT block (the head-to-head comparisons) are each retrained K
times, with `retrain.seed` s, s+1, ..., s+K-1 (s: the recipe's seed); a row holds the mean over its
retrains and each one (`runs`). One retrain is worth about ±0.4 points on Fashion-MNIST (RESULTS.md):
repeats are what make a difference of that size visible. Random cells are retrained once each: the
baseline is their median over N cells, which already averages the retrains' noise, and N more cells say
more about the space than a second retrain of each.

A retrain that already exists with the same cell, depth and recipe is reused: RUN_DIR/retrain (from
`dasvit retrain RUN_DIR`) for the searched cell at `retrain.depth`, and anything under RUN_DIR/compare/
(`<cell>-d<depth>`, `-2`, `-3`, ... when an older one holds another recipe). A stopped retrain resumes.
The result goes to RUN_DIR/compare.json (atomically), written once every retrain has finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BudgetError, RunDirError, UserError
from ..fmt import count
from ..limits import MAX_DEPTH
from ..model.cost import Cost
from ..model.genotype import Genotype, load_genotype, vit_block
from ..run import jsonio, layout, runlock, runstatus
from ..run.config import Config, load_config, load_run_config
from ..run.runtime import EXIT_OK, EXIT_STOPPED, Stopped

COMPARE_JSON = "compare.json"
COMPARE_DIR = "compare"
METRICS = "metrics.json"
VIT = "vit_b16"
DEFAULT_TOLERANCE = 0.05  # --match-cost: ±5 % of the searched cell's FLOPs and params
MAX_DEPTH_FACTOR = 4  # the matched-FLOPs depth is looked for up to 4 x retrain.depth
# config keys that do not change what a retrain learns: a retrain differing only in them is reused (the
# search's and FocusFormer's settings among them: runs made before a default changed share their retrains)
IGNORED_KEYS = {"preset": None, "search": None, "focus": None, "data": ("workers", "download"), "retrain": ("compile",)}


@dataclass
class Entry:
    """One retrain of the comparison: a cell at a depth, where it lives, and what is left to do."""

    cell: str  # "searched", "vit_b16" or "random<k>"
    depth: int
    genotype: Genotype
    cost: Cost  # planned from the network's shapes
    repeat: int = 0  # the retrain seed is the recipe's plus this
    run_dir: Path | None = None
    state: str = "new"  # "done" (metrics.json there), "resume" (a checkpoint there), "new"
    trained: bool = False  # trained (or finished) by this call

    @property
    def key(self) -> str:
        """The network (cell at a depth): its repeats share the key and one row of compare.json."""
        return f"{self.cell}@{self.depth}"


@dataclass
class ComparePlan:
    """What `compare` trains: the retrains (each once, even when two comparisons share it) and the sizes."""

    run_dir: Path
    overrides: list[str]
    cfg: Config  # the run's config with the overrides, at retrain.depth
    num_classes: int
    depth: int
    matched_depth: int | None  # None: the searched cell at depth 1 already costs more than the ViT block
    next_flops: int | None  # FLOPs of the searched cell at matched_depth + 1 (the depth rule's witness)
    entries: list[Entry]
    repeats: int = 1
    match_cost: bool = False
    tolerance: float = DEFAULT_TOLERANCE
    same: dict[str, str] = dataclasses.field(default_factory=dict)  # a selection rule's cell trained as another row

    def entry(self, cell: str, depth: int | None, repeat: int = 0) -> Entry | None:
        return next((e for e in self.entries if (e.cell, e.depth, e.repeat) == (cell, depth, repeat)), None)

    def recipe_for(self, e: Entry) -> Config:
        """The run's config as `e` is retrained with it: at its depth, with its repeat's seed."""
        cfg = at_depth(self.cfg, e.depth)
        return dataclasses.replace(cfg, retrain=dataclasses.replace(cfg.retrain, seed=cfg.retrain.seed + e.repeat))


# ---------------------------------------------------------------------------------------------
# what a network costs, and the matched-FLOPs depth


def at_depth(cfg: Config, depth: int) -> Config:
    return dataclasses.replace(cfg, retrain=dataclasses.replace(cfg.retrain, depth=depth))


def network_cost(genotype: Genotype, cfg: Config, depth: int, num_classes: int) -> Cost:
    """What the retrained network of `genotype` at `depth` costs (dasvit.model.cost: what fvcore counts)."""
    from ..model.cost import network_cost as cost
    from ..model.genotype import network_sizes
    from ..train.data import image_channels

    sizes = network_sizes(cfg, genotype, num_classes, image_channels(cfg.data))
    return cost(genotype, dataclasses.replace(sizes, depth=depth))


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


# ---------------------------------------------------------------------------------------------
# finding retrains to reuse


def _recipe(cfg: Config) -> dict[str, Any]:
    """The parts of a config that decide what a retrain learns."""
    d = cfg.to_dict()
    for section, keys in IGNORED_KEYS.items():
        if keys is None:
            d.pop(section, None)
        else:
            for k in keys:
                d.get(section, {}).pop(k, None)
    return d


def _cell(g: Genotype) -> tuple:
    j = g.to_json()
    return j["nodes"], sorted(json.dumps(e, sort_keys=True) for e in j["edges"]), sorted(j["output"])


def _matches(d: Path, want: Config, genotype: Genotype) -> bool:
    """True if the retrain in `d` trains `genotype` with the recipe of `want`."""
    try:
        return _recipe(load_run_config(d / layout.CONFIG)) == _recipe(want) and _cell(
            load_genotype(d / layout.GENOTYPE)
        ) == _cell(genotype)
    except (OSError, UserError):
        return False


def _state(d: Path) -> str:
    """done (metrics.json there, and whole), resume (a checkpoint there) or new. A damaged metrics.json is
    one sentence before anything trains (dasvit.records)."""
    from ..run.records import DamagedRecord, read_metrics

    if (d / METRICS).exists() or (d / METRICS).is_symlink():
        try:
            read_metrics(d)
        except (FileNotFoundError, DamagedRecord) as e:
            raise RunDirError(f"{e} Remove {jsonio.printable(d, False)} to retrain it.") from None
        return "done"
    return "resume" if (d / layout.CHECKPOINT).is_file() else "new"


def locate(entry: Entry, run_dir: Path, want: Config, depth: int) -> None:
    """Set `entry.run_dir` and `entry.state`: a matching retrain to reuse or resume, else a free directory."""
    if entry.cell == "searched" and entry.depth == depth and entry.repeat == 0:
        d = layout.run_subdir(run_dir, layout.RETRAIN)
        if (d / METRICS).is_file() and _matches(d, want, entry.genotype):
            entry.run_dir, entry.state = d, _state(d)
            return
    repeat = f"-r{entry.repeat}" if entry.repeat else ""
    base = layout.run_subdir(run_dir, COMPARE_DIR) / f"{entry.cell}-d{entry.depth}{repeat}"
    names = [base, *(base.with_name(f"{base.name}-{k}") for k in range(2, 1000))]
    for d in names:
        layout.run_subdir(d.parent, d.name)  # a retrain's own folder a link: rmtree or a retrain would go through it
        if not d.exists():
            entry.run_dir, entry.state = d, "new"
            return
        if (d / layout.CONFIG).is_file() and _matches(d, want, entry.genotype):
            entry.run_dir, entry.state = d, _state(d)
            return
    raise RunDirError(f"{base.parent} holds too many retrains of {entry.key}; remove some.")


# ---------------------------------------------------------------------------------------------
# the plan, the retrains, the result


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
    from ..run.config import load_config, parse_selection
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


def _num_classes(cfg: Config) -> int:
    from ..train.data import build_datasets, num_classes

    return num_classes(cfg.data) or build_datasets(cfg.data).num_classes


def plan_compare(
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    random_cells: int = 0,
    repeats: int = 1,
    match_cost: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    selections: list[str] | tuple[str, ...] = (),
    say: Callable[[str], None] = print,
) -> ComparePlan:
    """Resolve what to retrain and where; every mistake is a one-sentence UserError, before any training."""
    run_dir = layout.require_run_dir(Path(run_dir))
    if runstatus.summarize(run_dir).kind == "retrain":
        raise RunDirError(f"{run_dir} is a retrain run; compare takes the search run directory that holds it.")
    if not (run_dir / layout.GENOTYPE).is_file():
        raise RunDirError(f"{run_dir} has no {layout.GENOTYPE}; compare a search run that has finished.")
    overrides = list(overrides)
    cfg = load_config(str(run_dir / layout.CONFIG), overrides)
    searched, vit = load_genotype(run_dir / layout.GENOTYPE), vit_block()
    if searched.version != 1:
        raise RunDirError(
            f"{run_dir / layout.GENOTYPE} is a version-2 genotype (a network with its own depth and width); compare "
            "takes a search run, whose genotype.json is a cell."
        )
    depth, num_classes = cfg.retrain.depth, _num_classes(cfg)
    costs: dict[int, Cost] = {}

    def searched_cost(d: int) -> Cost:
        if d not in costs:
            costs[d] = network_cost(searched, cfg, d, num_classes)
        return costs[d]

    vit_cost = network_cost(vit, cfg, depth, num_classes)
    entries = [Entry("searched", depth, searched, searched_cost(depth)), Entry(VIT, depth, vit, vit_cost)]
    most = min(MAX_DEPTH_FACTOR * depth, MAX_DEPTH)  # a depth a retrain accepts (dasvit.limits)
    matched = matched_depth(lambda d: searched_cost(d).flops, vit_cost.flops, most)
    if matched is not None and matched != depth:
        entries.append(Entry("searched", matched, searched, searched_cost(matched)))
    next_flops = searched_cost(matched + 1).flops if matched is not None and matched < most else None
    if random_cells < 0:
        raise UserError(f"--random takes a number of random cells (0 or more), got {random_cells}.")
    if not 0 < tolerance <= 1:
        raise UserError(f"--tolerance is a fraction of the searched cell's cost in (0, 1], got {tolerance}.")
    same: dict[str, str] = {}  # a rule's cell that another row already trains: rule name -> that row's cell
    for rule in dict.fromkeys(selections):
        if rule == "argmax" and cfg.search.selection.rule == "argmax":  # the searched cell itself
            continue
        name, g = selection_cell(run_dir, rule, overrides, say)
        twin = next((e.cell for e in entries if e.depth == depth and e.genotype.same_cell(g)), None)
        if twin is not None:
            same[name] = twin
            say(f"{name}: the same cell as {twin}, trained once")
            continue
        entries.append(Entry(name, depth, g, network_cost(g, cfg, depth, num_classes)))
    for k in range(1, random_cells + 1):
        g = random_cell(cfg, k)
        entries.append(Entry(f"{RANDOM}{k}", depth, g, network_cost(g, cfg, depth, num_classes)))
        if match_cost:
            g = random_cell(cfg, k, matched=searched, tolerance=tolerance)
            entries.append(Entry(f"{MATCHED}{k}", depth, g, network_cost(g, cfg, depth, num_classes)))
    if repeats < 1:
        raise UserError(f"--repeats takes a number of retrains per network (1 or more), got {repeats}.")
    # every network once first, then the repeats of the searched cell and the ViT block
    entries += [dataclasses.replace(e, repeat=r) for r in range(1, repeats) for e in entries if is_repeated(e.cell)]
    plan = ComparePlan(
        run_dir, overrides, cfg, num_classes, depth, matched, next_flops, entries, repeats, match_cost, tolerance, same
    )
    for e in entries:
        locate(e, run_dir, plan.recipe_for(e), depth)
        if e.cell not in ("searched", VIT):  # its genotype is kept beside its retrain: a file, or nothing yet
            sidecar = e.run_dir.parent / f"{e.cell}.json"
            if os.path.lexists(sidecar) and not sidecar.is_file():
                raise jsonio.not_regular(sidecar, os.lstat(sidecar).st_mode)
    return plan


class _Signals:
    """Notes every SIGINT / SIGTERM while the retrains run, whoever handles it.

    Each retrain installs its own handler (stop after this step); one that lands while a retrain is
    finishing (last evaluation, metrics) lets it finish, and must still stop the comparison. The wakeup fd
    sees every signal that has a Python handler. Between retrains SIGTERM stops, as SIGINT does.
    """

    def __enter__(self) -> _Signals:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        return self

    @staticmethod
    def _on_term(signum, frame) -> None:
        raise Stopped()

    def fired(self) -> bool:
        try:
            data = self._r.recv(4096)
        except BlockingIOError:
            return False
        return any(b in (signal.SIGINT, signal.SIGTERM) for b in data)

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._old_fd)
        signal.signal(signal.SIGTERM, self._old_term)
        self._r.close()
        self._w.close()


def run_retrains(plan: ComparePlan, say: Callable[[str], None] = print, progress: bool = True) -> int:
    """Train what the plan lacks, one after another, in this process; 0 when all finished, 130 when stopped.

    A stopped retrain keeps its checkpoint; the next call resumes it, and reuses the finished ones.
    """
    with _Signals() as signals:
        for i, e in enumerate(plan.entries, 1):
            seed = f", retrain seed {plan.recipe_for(e).retrain.seed}" if plan.repeats > 1 else ""
            what = (
                f"[{i}/{len(plan.entries)}] {e.cell} at depth {e.depth} "
                f"({count(e.cost.params)} params, {count(e.cost.flops)} FLOPs{seed})"
            )
            if e.state == "done":
                say(f"{what}: reusing {e.run_dir}")
                continue
            say(f"{what}: {'resuming' if e.state == 'resume' else 'training into'} {e.run_dir}")
            rc = _retrain(plan, e, progress)
            if rc != EXIT_OK:
                return rc
            e.state, e.trained = "done", True
            if signals.fired():
                return EXIT_STOPPED
    return EXIT_OK


def _retrain(plan: ComparePlan, e: Entry, progress: bool) -> int:
    """One retrain through the retrain engine: resumed from its checkpoint, or from scratch."""
    from ..run.requests import RetrainRequest
    from ..train.retrain import run as retrain

    if e.state == "resume":
        return retrain(RetrainRequest(resume=e.run_dir, progress=progress))
    if e.run_dir.exists():  # a retrain stopped before its first epoch ended: nothing in it worth keeping
        if runlock.is_live(e.run_dir):
            raise RunDirError(f"{e.run_dir} is in use by a live engine process; wait for it or stop it.")
        shutil.rmtree(e.run_dir)
    if e.cell == "searched":
        source, preset = str(plan.run_dir), None
    elif e.cell == VIT:
        source, preset = e.cell, str(plan.run_dir / layout.CONFIG)
    else:  # a drawn or selected cell, kept beside its retrain
        source, preset = str(e.run_dir.parent / f"{e.cell}.json"), str(plan.run_dir / layout.CONFIG)
        e.genotype.save(source)
    overrides = [*plan.overrides, f"retrain.depth={e.depth}"]
    if e.repeat:
        overrides.append(f"retrain.seed={plan.recipe_for(e).retrain.seed}")
    return retrain(RetrainRequest(source, preset, overrides, e.run_dir, progress=progress))


def _row(plan: ComparePlan, e: Entry) -> dict[str, Any]:
    from ..run.records import read_metrics

    m = read_metrics(e.run_dir)
    rel = e.run_dir.relative_to(plan.run_dir) if e.run_dir.is_relative_to(plan.run_dir) else e.run_dir
    return {
        "cell": e.cell,
        "depth": e.depth,
        "top1": m["top1"],
        "top5": m["top5"],
        "params": m["params"],
        "flops": m["flops"],
        "images_per_s": m.get("images_per_s"),
        "epochs": m.get("epochs"),
        "best_epoch": m.get("best_epoch"),
        "dir": str(rel),
        "trained": e.trained,
        "seed": plan.recipe_for(e).retrain.seed,
    }


def _network_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One network's row: its first retrain's fields, top-1 and top-5 the mean over its retrains (`runs`,
    with their sample std); `dir` is the first retrain's."""
    row = dict(runs[0])
    for k in ("top1", "top5"):
        row[k] = statistics.fmean(r[k] for r in runs)
    row["top1_std"] = statistics.stdev(r["top1"] for r in runs) if len(runs) > 1 else 0.0
    row["trained"] = any(r["trained"] for r in runs)
    row["runs"] = [{k: r[k] for k in ("seed", "top1", "top5", "best_epoch", "dir")} for r in runs]
    return row


def result(plan: ComparePlan) -> dict[str, Any]:
    """compare.json: every retrain's metrics, grouped as the two comparisons."""
    cfg, depth = plan.cfg, plan.depth
    retrains: dict[str, list[dict[str, Any]]] = {}
    for e in plan.entries:
        retrains.setdefault(e.key, []).append(_row(plan, e))
    rows = {key: _network_row(runs) for key, runs in retrains.items()}
    vit = rows[f"{VIT}@{depth}"]
    recipe = dataclasses.asdict(cfg.retrain)
    recipe.pop("depth")
    out: dict[str, Any] = {
        "format": "dasvit-compare",
        "version": 1,
        "run": str(plan.run_dir),
        "time": time.time(),
        "dataset": cfg.data.name,
        "image_size": cfg.data.image_size,
        "patch_size": cfg.space.patch_size,
        "embed_dim": cfg.space.embed_dim,
        "num_classes": plan.num_classes,
        "overrides": plan.overrides,
        "recipe": recipe,
        "repeats": plan.repeats,  # retrains of the searched cell and the ViT block; top1/top5 are their mean
        "models": rows,
        "equal_depth": {"depth": depth, "searched": rows[f"searched@{depth}"], "vit": vit},
        "matched_flops": None,
    }
    if plan.matched_depth is not None:
        out["matched_flops"] = {
            "rule": f"the searched cell's largest depth whose FLOPs do not exceed the ViT block's at depth {depth}",
            "budget_flops": vit["flops"],
            "depth": plan.matched_depth,
            "next_depth_flops": plan.next_flops,
            "searched": rows[f"searched@{plan.matched_depth}"],
            "vit": vit,
        }
    else:
        out["note"] = (
            f"the searched cell costs more at depth 1 than the ViT block at depth {depth}; no matched-FLOPs comparison."
        )
    searched = rows[f"searched@{depth}"]
    randoms = [row for key, row in rows.items() if key.startswith(RANDOM)]
    if randoms:
        out["random"] = _baseline(
            randoms,
            searched["top1"],
            "cells drawn uniformly from the run's space: the derivation's inputs per node, a residual path, "
            "the first stage's ops, within search.budget; same depth and recipe",
        )
        out["random"].update(depth=depth, budget=plan.cfg.search.budget)
    matched = [row for key, row in rows.items() if key.startswith(MATCHED)]
    if matched:
        out["matched_cost"] = _baseline(
            matched,
            searched["top1"],
            f"random cells as above whose FLOPs and params per layer lie within ±{100 * plan.tolerance:g} % of the "
            "searched cell's",
        )
        out["matched_cost"].update(depth=depth, tolerance=plan.tolerance, budget=plan.cfg.search.budget)
    selected = {
        key.split("@")[0]: row
        for key, row in rows.items()
        if row["depth"] == depth and not is_random(row["cell"]) and row["cell"] != VIT
    }
    if plan.same:
        out["same_cell"] = dict(plan.same)  # e.g. {"oneshot": "searched"}: the rule took the searched cell
        selected.update({name: rows[f"{twin}@{depth}"] for name, twin in plan.same.items()})
    if randoms or matched:
        from .ranking import cost_trend

        trend = cost_trend(randoms + matched, {**selected, VIT: vit}, plan.tolerance)
        if trend is not None:
            out["cost_trend"] = trend
    return out


def _baseline(cells: list[dict[str, Any]], searched_top1: float, rule: str) -> dict[str, Any]:
    """A row of random cells: each, their median and best top-1, and the searched cell's rank among them."""
    tops = sorted(r["top1"] for r in cells)
    return {
        "rule": rule,
        "cells": cells,
        "median_top1": statistics.median(tops),
        "best_top1": tops[-1],
        # 1 is the best: how many random cells did better, plus one
        "searched_rank": 1 + sum(t > searched_top1 for t in tops),
        "of": len(tops) + 1,
    }


def ranking(plan: ComparePlan, out: dict[str, Any], say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The supernet's ranking of the networks the comparison retrained at equal depth (dasvit.ranking)."""
    from .ranking import supernet_ranking

    cells = {
        key.split("@")[0]: (e.genotype, out["models"][key]["top1"])
        for key, e in {e.key: e for e in plan.entries}.items()
        if e.depth == plan.depth
    }
    return supernet_ranking(plan.run_dir, plan.cfg, cells, say)


def compare(
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    say: Callable[[str], None] = print,
    progress: bool = True,
    random_cells: int = 0,
    repeats: int = 1,
    match_cost: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    selections: list[str] | tuple[str, ...] = (),
) -> tuple[int, dict[str, Any] | None]:
    """Plan, retrain what is missing, write RUN_DIR/compare.json; (exit code, the result or None if stopped)."""
    plan = plan_compare(run_dir, overrides, random_cells, repeats, match_cost, tolerance, selections, say)
    rc = run_retrains(plan, say, progress)
    if rc != EXIT_OK:
        say(f"stopped; finished retrains are kept: run the same compare again to resume ({plan.run_dir}).")
        return rc, None
    out = result(plan)
    out["ranking"] = ranking(plan, out, say)
    jsonio.atomic_write_text(plan.run_dir / COMPARE_JSON, json.dumps(out, indent=2) + "\n")
    return EXIT_OK, out


def read_compare(run_dir: str | Path) -> dict[str, Any] | None:
    """RUN_DIR/compare.json held to its type (dasvit.records.CompareFile), None if there is none;
    `records.DamagedRecord` (one sentence) if it is not one."""
    from ..run.records import read_compare_file

    return read_compare_file(Path(run_dir))

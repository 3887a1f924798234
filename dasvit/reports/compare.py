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
The retrains the runs lack go to one launcher (`dasvit.run.launcher`: local processes side by side, or a
SLURM job array); each run's result goes to RUN_DIR/compare.json (atomically), written once every retrain
has finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunDirError, UserError
from ..fmt import count
from ..limits import MAX_DEPTH
from ..model.cost import Cost
from ..model.genotype import Genotype, load_genotype, vit_block
from ..run import jsonio, layout, runlock, runstatus
from ..run.config import Config
from ..run.jobs import Job, exit_code, summary
from ..run.launcher import launcher_for, settings_with
from ..run.presets import load_config, load_run_config
from ..run.runtime import EXIT_OK
from .compare_cells import (
    DEFAULT_TOLERANCE,
    MATCHED,
    RANDOM,
    VIT,
    at_depth,
    cost_at_depth,
    is_repeated,
    matched_depth,
    random_cell,
    selection_cell,
)
from .compare_result import ranking, result

COMPARE_JSON = "compare.json"
COMPARE_DIR = "compare"
METRICS = "metrics.json"
MAX_DEPTH_FACTOR = 4  # the matched-FLOPs depth is looked for up to 4 x retrain.depth
# config keys that do not change what a retrain learns: a retrain differing only in them is reused (the
# search's and FocusFormer's settings among them: runs made before a default changed share their retrains)
IGNORED_KEYS = {
    "preset": None,
    "search": None,
    "focus": None,
    "launcher": None,
    "data": ("workers", "download"),
    "retrain": ("compile",),
}


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
    one sentence before anything trains (dasvit.run.records)."""
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
# the plan and the retrains


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
            costs[d] = cost_at_depth(searched, cfg, d, num_classes)
        return costs[d]

    vit_cost = cost_at_depth(vit, cfg, depth, num_classes)
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
        entries.append(Entry(name, depth, g, cost_at_depth(g, cfg, depth, num_classes)))
    for k in range(1, random_cells + 1):
        g = random_cell(cfg, k)
        entries.append(Entry(f"{RANDOM}{k}", depth, g, cost_at_depth(g, cfg, depth, num_classes)))
        if match_cost:
            g = random_cell(cfg, k, matched=searched, tolerance=tolerance)
            entries.append(Entry(f"{MATCHED}{k}", depth, g, cost_at_depth(g, cfg, depth, num_classes)))
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


def retrain_job(plan: ComparePlan, e: Entry, progress: bool) -> Job:
    """One retrain as a job for the launcher: resumed from its checkpoint, or from scratch (a drawn or
    selected cell kept beside its retrain)."""
    from ..run.requests import RetrainRequest

    name = f"{e.cell}@{e.depth}" + (f" (seed {plan.recipe_for(e).retrain.seed})" if e.repeat else "")
    if e.state == "resume":
        return Job(name, RetrainRequest(resume=e.run_dir, progress=progress))
    if e.run_dir.exists():  # a retrain stopped before its first epoch ended: nothing in it worth keeping
        if runlock.is_live(e.run_dir):
            raise RunDirError(f"{e.run_dir} is in use by a live engine process; wait for it or stop it.")
        shutil.rmtree(e.run_dir)
    if e.cell == "searched":
        source, preset = str(plan.run_dir), None
    elif e.cell == VIT:
        source, preset = e.cell, str(plan.run_dir / layout.CONFIG)
    else:
        source, preset = str(e.run_dir.parent / f"{e.cell}.json"), str(plan.run_dir / layout.CONFIG)
        e.genotype.save(source)
    overrides = [*plan.overrides, f"retrain.depth={e.depth}"]
    if e.repeat:
        overrides.append(f"retrain.seed={plan.recipe_for(e).retrain.seed}")
    return Job(name, RetrainRequest(source, preset, overrides, e.run_dir, progress=progress))


def run_retrains(plans: list[ComparePlan], launcher, say: Callable[[str], None] = print, progress: bool = True) -> int:
    """Train what the plans lack, all in one launch (`launcher`: dasvit.run.launcher); 0 when all finished.

    A job that fails is reported and the others go on; a stopped retrain keeps its checkpoint. The next
    call resumes what did not finish and reuses what did."""
    todo: list[tuple[Entry, Job]] = []
    for plan, i, e in ((p, i, e) for p in plans for i, e in enumerate(p.entries, 1)):
        seed = f", retrain seed {plan.recipe_for(e).retrain.seed}" if plan.repeats > 1 else ""
        what = (
            f"[{i}/{len(plan.entries)}] {e.cell} at depth {e.depth} "
            f"({count(e.cost.params)} params, {count(e.cost.flops)} FLOPs{seed})"
        )
        if e.state == "done":
            say(f"{what}: reusing {e.run_dir}")
            continue
        say(f"{what}: {'resuming' if e.state == 'resume' else 'to train into'} {e.run_dir}")
        todo.append((e, retrain_job(plan, e, progress)))
    where = ", ".join(str(plan.run_dir) for plan in plans)
    results = launcher.run([job for _, job in todo], say, what="compare", where=where)
    for (e, _), r in zip(todo, results):
        if r.ok:
            e.state, e.trained = "done", True
    if not all(r.ok for r in results):
        say(summary(results))
    return exit_code(results)


def compare_runs(
    run_dirs: list[str | Path],
    overrides: list[str] | tuple[str, ...] = (),
    say: Callable[[str], None] = print,
    progress: bool = True,
    random_cells: int = 0,
    repeats: int = 1,
    match_cost: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    selections: list[str] | tuple[str, ...] = (),
    launch: dict[str, Any] | None = None,
) -> tuple[int, list[dict[str, Any]] | None]:
    """Plan every run's comparison, retrain what is missing in one launch (the runs' retrains side by side),
    write each RUN_DIR/compare.json; (exit code, the results or None if not all retrains finished).

    `launch`: the command line's launcher flags (jobs, executor, partition, ...) over the first run's
    config's `launcher:` section."""
    plans = [
        plan_compare(d, overrides, random_cells, repeats, match_cost, tolerance, selections, say) for d in run_dirs
    ]
    launcher = launcher_for(settings_with(plans[0].cfg.launcher, **(launch or {})))
    rc = run_retrains(plans, launcher, say, progress)
    if rc != EXIT_OK:
        say("not all retrains finished; finished ones are kept: run the same compare again to go on.")
        return rc, None
    outs = []
    for plan in plans:
        out = result(plan)
        out["ranking"] = ranking(plan, out, say)
        jsonio.atomic_write_text(plan.run_dir / COMPARE_JSON, json.dumps(out, indent=2) + "\n")
        outs.append(out)
    return EXIT_OK, outs


def compare(run_dir: str | Path, *args, **kwargs) -> tuple[int, dict[str, Any] | None]:
    """`compare_runs` of one run: (exit code, its compare.json or None)."""
    rc, outs = compare_runs([run_dir], *args, **kwargs)
    return rc, outs[0] if outs else None

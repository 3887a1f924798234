"""Taking the final cell from a search's supernet (`search.selection.rule`), and what the supernet says of
any cell of its space: its α score and its one-shot accuracy (the ranking diagnostic, dasvit.reports.ranking).

A search ends with the supernet of its last stage; `supernet-stage<k>.pt` keeps every stage's, so a cell
can be taken again by another rule, and any cell scored, without a new search (`dasvit derive`).

The rules; each ends in the derivation's own rules (`derivation.derive_cell`: edges per node, the
budget, an attention edge, a residual path):

- `argmax`: the cell of the largest α weight (DARTS; the paper).
- `skip-limit`: the same with at most M skip edges (`max_skips`; P-DARTS's M): while the cell has more,
  the skip of its weakest skip edge (by α) leaves that edge's candidates and the cell is derived again;
  when no cell with fewer skips fits the budget, the budget wins (`limit_kept` false in the cell's meta).
- `perturbation` (Wang et al., "Rethinking Architecture Selection in Differentiable NAS", ICLR 2021):
  edge by edge in a seeded order, each non-zero op is taken out of the edge's mixture and the supernet's
  validation accuracy measured; the edge keeps the op whose removal costs most, and the supernet's
  weights are tuned for `tune_steps` steps before the next edge. Then, every edge holding its one op, each
  edge is scored by the accuracy lost without it, and the cell of the largest total edge score is derived
  from the edges' kept ops (or, when no cell of the kept ops fits the budget, from every measured op).
- `oneshot`: `candidates` cells sampled from α (per node, edges in proportion to their non-zero weight,
  then each edge's op in proportion to its weight; under the derivation's rules), the argmax cell among
  them; the one the supernet scores best on the validation split wins (SPOS/AutoFormer's evaluation).

One-shot accuracy: the supernet with one op per edge of the cell at weight 1 and every other edge at 0,
its top-1 on the validation split (held out of the training set; never the test split). The α score:
Σ log w[e, op] over the cell's edges; a cell with an op the stage had pruned has none (−inf).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, RunDirError, UserError
from ..model.cost import edges_cost
from ..model.genotype import Edge, Genotype
from ..model.opspec import edge_list, op_type
from ..run import layout
from ..run.checkpoint import load_checkpoint
from ..run.config import Config
from ..run.distributed import DistInfo
from ..train.loop import evaluate, mix_seed, weight_step
from .budget import space_costs
from .derivation import annotate, derive_cell, has_residual_path, mixes_tokens
from .supernet import Supernet

DERIVED = "derived"  # RUN/derived/<name>.json: the cells other rules took from the run's supernet


def rule_name(rule: str, max_skips: int) -> str:
    """The name a rule's cell goes by (its file under derived/, its row in compare.json)."""
    return f"skip-limit-{max_skips}" if rule == "skip-limit" else rule


def stage_files(run_dir: Path) -> dict[int, Path]:
    """The stage-end supernets a search run kept: {stage (from 1): path}."""
    out = {}
    for k in range(1, 1025):
        p = Path(run_dir) / layout.stage_supernet(k)
        if not p.is_file():
            break
        out[k] = p
    return out


def load_stage_supernet(
    run_dir: Path, cfg: Config, stage: int, num_classes: int | None = None, in_chans: int | None = None
) -> Supernet:
    """The supernet search stage `stage` ended with (supernet-stage<k>.pt), on the CPU, in eval mode; the
    classes and channels of the run's data unless given. A file that does not fit the run's config is one
    sentence."""
    from ..train.data import build_datasets
    from ..train.data import num_classes as count_classes
    from ..train.images import image_channels

    if num_classes is None:
        num_classes = count_classes(cfg.data) or build_datasets(cfg.data).num_classes
    if in_chans is None:
        in_chans = image_channels(cfg.data)
    path = Path(run_dir) / layout.stage_supernet(stage)
    state = load_checkpoint(path)
    n_e, n_o = len(edge_list(cfg.space.nodes)), len(cfg.space.ops)
    try:
        mask = state["mask"].bool()
        if tuple(mask.shape) != (n_e, n_o) or not 1 <= stage <= len(cfg.search.stages):
            raise ValueError("its mask or stage does not fit")
        net = Supernet.of_stage(cfg, stage, mask, num_classes, in_chans)
        net.load_state(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"{path} does not fit {Path(run_dir) / layout.CONFIG} ({str(e).splitlines()[0][:200]}); was the config edited?"
        ) from None
    return net.eval()


# ---------------------------------------------------------------------------------------------
# what the supernet says of a cell


def cell_weights(net: Supernet, genotype: Genotype) -> torch.Tensor | None:
    """[edges, ops]: 1 at each live edge's op of the cell, 0 elsewhere; None when the cell uses an op (or an
    edge) the supernet does not have."""
    col = {o: c for c, o in enumerate(net.ops)}
    row = {e: r for r, e in enumerate(net.edge_pairs)}
    w = torch.zeros(len(net.edge_pairs), len(net.ops))
    live = set(genotype.live_nodes())
    for e in genotype.edges:
        if e.dst not in live:
            continue
        r, c = row.get((e.src, e.dst)), col.get(e.op)
        if r is None or c is None or not bool(net.mask[r, c]):
            return None
        w[r, c] = 1.0
    return w.to(net.alpha.device)


def alpha_score(net: Supernet, genotype: Genotype) -> float:
    """Σ log softmax(α)[e, op] over the cell's live edges; −inf when an op is pruned or not in the space."""
    one_hot = cell_weights(net, genotype)
    if one_hot is None:
        return -math.inf
    with torch.no_grad():
        logw = torch.log(net.arch_weights())
    return float((logw * one_hot).nan_to_num(0.0).sum())


def oneshot_accuracy(net: Supernet, genotype: Genotype, batches: Callable[[], Any], info: DistInfo) -> float | None:
    """The supernet's top-1 on `batches()` with only the cell's ops (weight 1); None if it lacks one of them."""
    w = cell_weights(net, genotype)
    if w is None:
        return None
    return evaluate(net, batches(), info, args=(w,))["top1"]


# ---------------------------------------------------------------------------------------------
# the rules


@dataclass
class Selection:
    """What a rule took: the cell, and what it measured on the way (for the genotype's meta)."""

    genotype: Genotype
    notes: dict[str, Any]


class Selector:
    """The rules over one supernet. `val` yields the validation split's batches; `tune_batches` the weight
    half's (perturbation's tuning); both are callables returning a fresh iterator."""

    def __init__(
        self,
        cfg: Config,
        net: Supernet,
        info: DistInfo,
        val: Callable[[], Any] | None = None,
        tune_batches: Callable[[int], Any] | None = None,
        say: Callable[[str], None] = lambda s: None,
    ):
        self.cfg, self.net, self.info, self.say = cfg, net, info, say
        self.val, self.tune_batches = val, tune_batches
        self.op_costs, self.budget = space_costs(cfg)
        self.ops, self.nodes = list(cfg.space.ops), cfg.space.nodes
        self.edges = edge_list(self.nodes)

    def derive(self, w: torch.Tensor, mask: torch.Tensor, meta: dict[str, Any] | None = None) -> Genotype:
        return derive_cell(self.cfg, w.detach().cpu(), mask.cpu(), self.op_costs, self.budget, meta)

    def weights(self) -> torch.Tensor:
        return self.net.arch_weights().detach()

    def select(self, rule: str) -> Selection:
        sel = self.cfg.search.selection
        t0 = time.time()
        if rule == "argmax":
            out = Selection(self.derive(self.weights(), self.net.mask), {})
        elif rule == "skip-limit":
            out = self.skip_limit(sel.max_skips)
        elif rule == "perturbation":
            out = self.perturbation(sel.tune_steps)
        elif rule == "oneshot":
            out = self.oneshot(sel.candidates)
        else:
            raise UserError(
                f"the selection rule must be one of argmax, skip-limit, perturbation, oneshot; got {rule!r}."
            )
        out.genotype.meta["selection"] = {
            "rule": rule,
            "name": rule_name(rule, sel.max_skips),
            **({"max_skips": sel.max_skips} if rule == "skip-limit" else {}),
            "seconds": round(time.time() - t0, 2),
            **out.notes,
        }
        return out

    # -- skip-limit ----------------------------------------------------------------------
    def skip_limit(self, max_skips: int) -> Selection:
        w, mask = self.weights().cpu(), self.net.mask.clone().cpu()
        if "skip" not in self.ops:
            return Selection(self.derive(w, mask), {"removed": []})
        s = self.ops.index("skip")
        row = {e: r for r, e in enumerate(self.edges)}
        removed: list[str] = []
        geno = self.derive(w, mask)
        while True:
            skips = [e for e in geno.edges if e.op == "skip"]
            if len(skips) <= max_skips:
                return Selection(geno, {"removed": removed, "limit_kept": True})
            weakest = min(skips, key=lambda e: (float(w[row[(e.src, e.dst)], s]), e.src, e.dst))
            mask[row[(weakest.src, weakest.dst)], s] = False
            fewer = self.derive(w, mask)
            if fewer.meta.get("over_budget") and not geno.meta.get("over_budget"):
                # no cell with fewer skips fits the budget: the budget wins, and the cell says so
                return Selection(geno, {"removed": removed, "limit_kept": False})
            removed.append(f"{weakest.src}->{weakest.dst}")
            geno = fewer

    # -- perturbation --------------------------------------------------------------------
    def _mixture(self, mask: torch.Tensor) -> torch.Tensor:
        """softmax(α) over `mask`'s ops per edge (an edge with none gives 0: no connection)."""
        a = self.net.alpha.detach().masked_fill(~mask.to(self.net.alpha.device), float("-inf"))
        return torch.softmax(a, dim=-1).nan_to_num(0.0)

    def _accuracy(self, w: torch.Tensor, net: Supernet | None = None) -> float:
        return evaluate(net or self.net, self.val(), self.info, args=(w,))["top1"]

    def _tune(self, net: Supernet, w: torch.Tensor, steps: int, seed: int) -> None:
        if steps <= 0 or self.tune_batches is None:
            return
        params = net.weight_parameters()
        opt = torch.optim.AdamW(params, lr=self.cfg.search.lr, weight_decay=self.cfg.search.weight_decay)
        net.train()
        for i, (x, y) in enumerate(self.tune_batches(seed)):
            if i >= steps:
                break
            x, y = x.to(self.info.device), y.to(self.info.device)
            weight_step(net, params, opt, x, y, self.info, grad_clip=self.cfg.search.grad_clip, args=(w,))
        net.eval()

    def perturbation(self, tune_steps: int) -> Selection:
        """The rule on a copy of the supernet (the tuning changes its weights; the run's stay as they were)."""
        net = copy.deepcopy(self.net)
        mask = self.net.mask.clone().cpu()
        scores = torch.full(mask.shape, -math.inf)
        rng = random.Random(mix_seed(self.cfg.search.seed, 0xDEC1DE))
        order = list(range(len(self.edges)))
        rng.shuffle(order)
        chosen: dict[int, int] = {}
        for step, r in enumerate(order):
            cands = [c for c in range(len(self.ops)) if mask[r, c] and self.ops[c] != "zero"]
            if not cands:
                continue
            base = self._accuracy(self._mixture(mask), net)
            for c in cands:
                without = mask.clone()
                without[r, c] = False
                scores[r, c] = base - self._accuracy(self._mixture(without), net)
            best = max(cands, key=lambda c: (float(scores[r, c]), -c))
            chosen[r] = best
            mask[r] = False
            mask[r, best] = True
            self.say(
                f"perturbation: edge {self.edges[r][0]}->{self.edges[r][1]} keeps {self.ops[best]} "
                f"({step + 1}/{len(order)}; accuracy lost without it {100 * float(scores[r, best]):.2f} points)"
            )
            self._tune(net, self._mixture(mask), tune_steps, mix_seed(self.cfg.search.seed, 0x7E, step))
        # topology: every edge holds one op; score each edge by the accuracy lost without it
        full = self._accuracy(self._mixture(mask), net)
        edge_scores = torch.full(mask.shape, -math.inf)
        for r, c in chosen.items():
            without = mask.clone()
            without[r] = False
            edge_scores[r, c] = full - self._accuracy(self._mixture(without), net)
        geno = self.derive(edge_scores, mask)
        fallback = bool(geno.meta.get("over_budget"))
        if fallback:  # no cell of the kept ops fits the budget: choose among every measured op
            geno = self.derive(scores, scores > -math.inf)
        notes = {
            "op_scores": {
                f"{i}->{j}": {
                    self.ops[c]: round(float(scores[r, c]), 5) for c in range(len(self.ops)) if scores[r, c] > -math.inf
                }
                for r, (i, j) in enumerate(self.edges)
            },
            "edge_scores": {
                f"{self.edges[r][0]}->{self.edges[r][1]}": round(float(edge_scores[r, c]), 5) for r, c in chosen.items()
            },
            "tune_steps": tune_steps,
            "fallback_all_ops": fallback,
        }
        return Selection(geno, notes)

    # -- oneshot -------------------------------------------------------------------------
    def rules_ok(self, geno: Genotype) -> bool:
        """Whether a sampled cell keeps the derivation's rules: within the budget, an attention edge when an
        msa op is active, a residual path when the derivation asks for one and a skip is active."""
        mask = self.net.mask.cpu()
        active = {self.ops[c] for c in range(len(self.ops)) if bool(mask[:, c].any())}
        if any(op_type(o) == "msa" for o in active) and not mixes_tokens(geno):
            return False
        if self.cfg.search.skip_floor > 0 and "skip" in active and not has_residual_path(geno):
            return False
        if self.budget is not None and self.cfg.search.budget_in != "objective":
            return edges_cost(geno.edges, self.op_costs).within(self.budget)
        return True

    def sample(self, n: int, seed: int, tries: int = 100) -> list[Genotype]:
        """Up to `n` distinct cells drawn from α under the rules (`tries` × n draws at most)."""
        w, mask = self.weights().cpu(), self.net.mask.cpu()
        rng = random.Random(seed)
        k = self.cfg.space.edges_per_node
        nonzero = [c for c, o in enumerate(self.ops) if o != "zero"]
        seen: set[tuple] = set()
        out = []
        for _ in range(tries * n):
            if len(out) >= n:
                break
            edges = []
            for j in range(2, self.nodes + 2):
                into = [(r, i) for r, (i, jj) in enumerate(self.edges) if jj == j]
                strength = {r: sum(float(w[r, c]) for c in nonzero if mask[r, c]) for r, _ in into}
                avail = [(r, i) for r, i in into if strength[r] > 0]
                picked = []
                for _ in range(min(k, len(avail))):
                    r, i = rng.choices(avail, weights=[strength[r] for r, _ in avail])[0]
                    avail.remove((r, i))
                    picked.append((r, i))
                for r, i in sorted(picked, key=lambda t: t[1]):
                    cs = [c for c in nonzero if mask[r, c]]
                    c = rng.choices(cs, weights=[float(w[r, c]) for c in cs])[0]
                    edges.append(Edge(i, j, self.ops[c]))
            geno = Genotype(nodes=self.nodes, edges=edges, output=list(range(2, self.nodes + 2)))
            key = tuple(sorted((e.src, e.dst, e.op) for e in edges))
            if key in seen or not self.rules_ok(geno):
                continue
            seen.add(key)
            out.append(geno)
        return out

    def oneshot(self, n: int) -> Selection:
        argmax = self.derive(self.weights(), self.net.mask)
        cands = [argmax, *self.sample(n - 1, mix_seed(self.cfg.search.seed, 0x0E5))]
        unique: dict[tuple, Genotype] = {}
        for g in cands:
            unique.setdefault(tuple(sorted((e.src, e.dst, e.op) for e in g.edges)), g)
        scored = []
        for i, g in enumerate(unique.values()):
            acc = oneshot_accuracy(self.net, g, self.val, self.info)
            scored.append((acc, alpha_score(self.net, g), i, g))
            self.say(f"oneshot: candidate {i + 1}/{len(unique)} one-shot top-1 {100 * acc:.2f}%")
        acc, _, i, best = max(scored, key=lambda t: (t[0], t[1], -t[2]))
        return Selection(
            annotate(self.cfg, best, self.op_costs, self.budget),
            {
                "candidates": len(scored),
                "oneshot_top1": acc,
                "argmax_oneshot_top1": scored[0][0],
                "chosen": i,
            },
        )


# ---------------------------------------------------------------------------------------------
# `dasvit derive RUN --selection RULE`


def derived_path(run_dir: Path, name: str) -> Path:
    return layout.run_subdir(Path(run_dir), DERIVED) / f"{name}.json"


def derive_from_run(
    run_dir: str | Path,
    rule: str,
    overrides: list[str] | tuple[str, ...] = (),
    stage: int | None = None,
    say: Callable[[str], None] = print,
) -> tuple[Genotype, Path]:
    """Take a cell from a finished search run's stage-end supernet by `rule` (config.parse_selection: a rule,
    or skip-limit-<M>; with the run's config and --set overrides of search.selection.*); writes
    RUN/derived/<name>.json and returns (the cell, its path)."""
    from ..run.config import parse_selection
    from ..run.presets import load_config

    rule, implied = parse_selection(rule)
    overrides = [*overrides, *implied]
    from ..train.data import EpochLoaders, build_datasets, split_halves
    from ..train.images import image_channels

    run_dir = layout.require_run_dir(Path(run_dir))
    files = stage_files(run_dir)
    if not files:
        raise RunDirError(
            f"{run_dir} has no stage-end supernet ({layout.stage_supernet(1)}, ...): it was searched by a dasvit that "
            "did not keep them, or has not finished a stage; search again to select by another rule."
        )
    cfg = load_config(str(run_dir / layout.CONFIG), list(overrides))
    stage = max(files) if stage is None else stage
    if stage not in files:
        raise UserError(f"{run_dir} has no supernet for stage {stage}; it has stages {', '.join(map(str, files))}.")
    splits = build_datasets(cfg.data)
    torch.manual_seed(mix_seed(cfg.search.seed, 0x5E1))
    net = load_stage_supernet(run_dir, cfg, stage, splits.num_classes, image_channels(cfg.data))
    info = DistInfo()
    d = cfg.data
    val_loader = EpochLoaders(splits.selection, d.batch_size, d.workers, 0, 0, 1, shuffle=False, drop_last=False)
    w_idx, _ = split_halves(len(splits.train), cfg.search.seed)
    w_set = torch.utils.data.Subset(splits.train, w_idx)
    selector = Selector(
        cfg,
        net,
        info,
        val=lambda: val_loader.epoch(0),
        tune_batches=lambda seed: EpochLoaders(w_set, d.batch_size, d.workers, seed, 0, 1).epoch(0),
        say=say,
    )
    out = selector.select(rule)
    geno = out.genotype
    geno.meta.update({"dataset": cfg.data.name, "run": run_dir.name, "stage": stage, "preset": cfg.preset})
    path = derived_path(run_dir, geno.meta["selection"]["name"])
    path.parent.mkdir(exist_ok=True)
    geno.save(path)
    return geno, path

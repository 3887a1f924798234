"""From α to decisions: the stage-end pruning proposal and the derivation of the discrete cell, both
optionally within a cost budget; and random cells of the same space under the same rules (the baseline a
search must beat).

All functions take the architecture weights w = softmax(α) over active ops ([edges, ops], pruned ops
exactly 0) and the op names of the columns.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import torch

from ..errors import BudgetError
from ..model.cost import Cost, edges_cost
from ..model.genotype import Edge, Genotype
from ..model.opspec import edge_list, edge_name, keep_problem, op_type


def arch_weights_dict(w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int) -> dict[str, dict[str, float]]:
    """{"i->j": {op: weight}} over each edge's active ops (each row sums to 1)."""
    out = {}
    for r, e in enumerate(edge_list(nodes)):
        out[edge_name(e)] = {o: float(w[r, c]) for c, o in enumerate(ops) if mask[r, c]}
    return out


def prune_proposal(
    w: torch.Tensor,
    mask: torch.Tensor,
    ops: list[str],
    nodes: int,
    keep: int,
    zero: str = "compete",
    skip_floor: float = 0.0,
) -> dict[str, list[str]]:
    """Top-`keep` active ops per edge by weight (strongest first); an edge always keeps a non-zero op.

    `zero` (search.prune_zero): "compete" ranks `zero` with the others for the `keep` slots; "free" keeps
    it (where active) outside the slots, last; "drop" removes it and fills the slots with the others.
    `skip_floor` (search.skip_floor): see `keep_one_skip`; 0 is off."""
    proposal = _top_k(w, mask, ops, nodes, keep, zero)
    proposal = keep_one_skip(proposal, w, mask, ops, nodes, skip_floor, zero)
    return keep_one_attention(proposal, w, mask, ops, nodes, zero)


def keep_one_attention(
    proposal: dict[str, list[str]],
    w: torch.Tensor,
    mask: torch.Tensor,
    ops: list[str],
    nodes: int,
    zero: str = "compete",
) -> dict[str, list[str]]:
    """When a proposal would prune every attention (msa) op from every edge, keep the one that weighs most
    relative to its fair share 1/n (n: its edge's active ops), in place of its edge's weakest kept op.

    Without attention the class token never sees the image: the next stage's supernet stays at chance and
    the cell derived from it has no attention (measured: plain DARTS on the fashion preset, seed 2, pruned
    every msa op after stage 2 and its stage 3 sat at 0.10; RESULTS.md N4). The op given way is never the
    only skip left on the edges leaving a cell input (the residual path `keep_one_skip` keeps)."""
    msa = _msa_columns(ops, mask)
    if not msa or any(_is_msa(o) for kept in proposal.values() for o in kept):
        return proposal
    inputs = [edge_name(e) for e in edge_list(nodes) if e[0] <= 1]
    skips_on_inputs = sum("skip" in proposal[name] for name in inputs)
    ranked = sorted(
        (
            (float(w[r, c]) * int(mask[r].sum()), edge_name(e), ops[c])
            for r, e in enumerate(edge_list(nodes))
            for c in msa
            if mask[r, c]
        ),
        key=lambda t: -t[0],
    )
    for _, name, op in ranked:
        kept = list(proposal[name])
        sole_skip = name in inputs and skips_on_inputs == 1
        slots = [
            i for i, o in enumerate(kept) if not (zero == "free" and o == "zero") and not (sole_skip and o == "skip")
        ]
        if slots:
            kept[slots[-1]] = op  # the weakest kept op gives way (the lists are strongest first)
            return {**proposal, name: kept}
    return proposal


def keep_one_skip(
    proposal: dict[str, list[str]],
    w: torch.Tensor,
    mask: torch.Tensor,
    ops: list[str],
    nodes: int,
    floor: float,
    zero: str = "compete",
) -> dict[str, list[str]]:
    """When a proposal would strip `skip` from every edge leaving a cell input (node 0 or 1), keep it on the
    one where it weighs most relative to its fair share 1/n (n: the edge's active ops), in place of that
    edge's weakest kept op, so the cell keeps a residual path to choose; unless even there its weight is
    below `floor` times its fair share: then the data, not a tie, asks for its removal."""
    inputs = [edge_name(e) for e in edge_list(nodes) if e[0] <= 1]
    if floor <= 0 or "skip" not in ops or any("skip" in proposal[name] for name in inputs):
        return proposal
    s = ops.index("skip")
    best: tuple[float, str] | None = None
    for r, e in enumerate(edge_list(nodes)):
        if e[0] <= 1 and mask[r, s]:
            share = float(w[r, s]) * int(mask[r].sum())
            if best is None or share > best[0]:
                best = (share, edge_name(e))
    if best is None or best[0] < floor:
        return proposal
    kept = list(proposal[best[1]])
    slots = [i for i, o in enumerate(kept) if not (zero == "free" and o == "zero")]
    kept[slots[-1]] = "skip"
    return {**proposal, best[1]: kept}


def _top_k(
    w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int, keep: int, zero: str
) -> dict[str, list[str]]:
    proposal = {}
    for r, e in enumerate(edge_list(nodes)):
        ranked = sorted((c for c in range(len(ops)) if mask[r, c]), key=lambda c: -float(w[r, c]))
        if zero != "compete":
            zeros = [c for c in ranked if ops[c] == "zero"]
            ranked = [c for c in ranked if ops[c] != "zero"]
            if zero == "free":
                proposal[edge_name(e)] = [ops[c] for c in ranked[:keep] + zeros]
                continue
        chosen = ranked[:keep]
        if all(ops[c] == "zero" for c in chosen):
            nonzero = [c for c in ranked if ops[c] != "zero"]
            if nonzero:
                chosen = chosen[:-1] + [nonzero[0]] if len(chosen) > 1 else [nonzero[0]]
        proposal[edge_name(e)] = [ops[c] for c in chosen]
    return proposal


def check_keep(keep: Any, mask: torch.Tensor, ops: list[str], nodes: int) -> str | None:
    """Why a user's `keep` cannot be used (None if it can): every edge, only its active ops, ≥ 1 non-zero op
    (`dasvit.model.opspec.keep_problem`, the check a front makes before it sends one)."""
    active = {edge_name(e): [o for c, o in enumerate(ops) if mask[r, c]] for r, e in enumerate(edge_list(nodes))}
    return keep_problem(keep, active)


def derive_genotype(
    w: torch.Tensor,
    mask: torch.Tensor,
    ops: list[str],
    nodes: int,
    edges_per_node: int,
    meta: dict[str, Any] | None = None,
    skip_floor: float = 0.0,
    op_costs: dict[str, Cost] | None = None,
    budget: Cost | None = None,
) -> Genotype:
    """The discrete cell of α: for each intermediate node the `edges_per_node` incoming edges and their
    non-zero ops of the largest total weight; output = all intermediate nodes. Without a budget that is
    each node's strongest edges, ranked by their best non-zero op, each with that op (DARTS).

    With a `budget` (and each op's cost in `op_costs`) the cell of the largest total weight whose cost is
    within it, in FLOPs and in params (`search.budget`): a cell may then take an edge's second-best op, or
    a cheaper edge, to fit. If no cell of the kept ops fits, the cheapest is taken and `meta["over_budget"]`
    says so.

    With `skip_floor` > 0 a cell is not left without a residual path (a chain of `skip` edges from a cell
    input to an output node; stacked without one, the digits network stayed at chance): the edge leaving
    a cell input where `skip` weighs most relative to its fair share 1/n becomes a `skip` edge (taking
    the place of its destination's weaker edge) unless even there skip is below `skip_floor` times its
    fair share; when that edge is the cell's only attention edge, the next-strongest skip takes its place
    on the same terms. A skip costs nothing, so this never breaks a budget.

    A derived cell has at least one attention (msa) edge whenever the kept ops leave one: the class token
    reads the image only through attention, and a cell of skips and MLPs stays at chance (measured: seed 1
    of the fashion preset derived one and its retrain stayed at 10 %). If the best cell has none, the
    best one that has one (within the budget) is taken; `meta["no_attention"]` marks a cell that has none."""
    if budget is None:
        geno = _derive(w, mask, ops, nodes, edges_per_node, meta)
    else:
        if op_costs is None:
            raise ValueError("a budget needs the cost of every op (op_costs)")
        geno = _derive_within(w, mask, ops, nodes, edges_per_node, op_costs, budget, meta)
    if not mixes_tokens(geno):
        if _msa_columns(ops, mask):
            # a cell without attention never lets the class token see the image: the network stays at chance
            geno = _derive_within(
                w, mask, ops, nodes, edges_per_node, op_costs or {o: Cost() for o in ops}, budget, geno.meta, True
            )
        else:  # no attention op is left to take (a user's pruning, or a space without one)
            geno.meta["no_attention"] = True
    if skip_floor <= 0 or "skip" not in ops or has_residual_path(geno):
        return geno
    s = ops.index("skip")
    col = {o: c for c, o in enumerate(ops)}
    row = {e: r for r, e in enumerate(edge_list(nodes))}
    sole_msa = [e for e in geno.edges if _is_msa(e.op)]
    sole_msa = sole_msa[0] if len(sole_msa) == 1 else None  # the cell's only attention edge never gives way
    # edges leaving a cell input, the strongest skip (relative to its fair share) first
    ranked = sorted(
        ((float(w[r, s]) * int(mask[r].sum()), e) for r, e in enumerate(edge_list(nodes)) if e[0] <= 1 and mask[r, s]),
        key=lambda t: -t[0],
    )
    for share, (i, j) in ranked:
        if share < skip_floor:
            break
        into_j = [e for e in geno.edges if e.dst == j]
        same = [e for e in into_j if e.src == i]
        if same:
            out = same[0]
        else:  # the strength of a kept edge is its op's weight; the weaker edge into j gives way to the skip
            keep = [e for e in into_j if e != sole_msa]
            if not keep:
                continue
            out = min(keep, key=lambda e: float(w[row[(e.src, e.dst)], col[e.op]]))
        if out == sole_msa:
            continue
        edges = sorted([e for e in geno.edges if e != out] + [Edge(i, j, "skip")], key=lambda e: (e.dst, e.src))
        return Genotype(nodes=nodes, edges=edges, output=list(geno.output), meta=dict(geno.meta))
    return geno


def derive_cell(
    cfg,
    w: torch.Tensor,
    mask: torch.Tensor,
    op_costs: dict[str, Cost],
    budget: Cost | None,
    meta: dict[str, Any] | None = None,
) -> Genotype:
    """The cell a search with config `cfg` derives from weights w (any score matrix [edges, ops] that is
    larger for the better op) under the config's rules, with its `meta.cost` and `meta.budget`: what a stage
    end writes and what every selection rule (dasvit.search.selection) ends with."""
    sc = cfg.search
    geno = derive_genotype(
        w,
        mask,
        list(cfg.space.ops),
        cfg.space.nodes,
        cfg.space.edges_per_node,
        meta=meta,
        skip_floor=sc.skip_floor,
        op_costs=op_costs,
        budget=budget if sc.budget_in != "objective" else None,  # objective: α alone keeps the budget
    )
    return annotate(cfg, geno, op_costs, budget)


def annotate(cfg, geno: Genotype, op_costs: dict[str, Cost], budget: Cost | None) -> Genotype:
    """Add a derived cell's `meta.cost` (one layer) and, with a budget, `meta.budget` (and `meta.over_budget`
    when the budget binds in the α objective only and the cell is over it)."""
    sc = cfg.search
    cost = edges_cost(geno.edges, op_costs)
    geno.meta["cost"] = {"flops": cost.flops, "params": cost.params}
    if budget is not None:
        geno.meta["budget"] = {"cell": sc.budget, "flops": budget.flops, "params": budget.params, "in": sc.budget_in}
        if sc.budget_in == "objective" and not cost.within(budget):
            geno.meta["over_budget"] = True
    return geno


def _node_options(
    w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int, j: int, k: int, op_costs: dict[str, Cost]
) -> list[tuple[Cost, float, list[Edge]]]:
    """Every way node j can take k incoming edges with one non-zero active op each: (cost, weight, edges)."""
    per_edge = {}
    for r, (i, jj) in enumerate(edge_list(nodes)):
        if jj == j:
            cands = [(float(w[r, c]), ops[c]) for c in range(len(ops)) if mask[r, c] and ops[c] != "zero"]
            if cands:
                per_edge[i] = cands
    options = []
    for srcs in itertools.combinations(sorted(per_edge), min(k, len(per_edge))):
        for choice in itertools.product(*(per_edge[i] for i in srcs)):
            edges = [Edge(i, j, op) for i, (_, op) in zip(srcs, choice)]
            options.append((edges_cost(edges, op_costs), sum(s for s, _ in choice), edges))
    return options


def _is_msa(op: str) -> bool:
    return op_type(op) == "msa"


def _msa_columns(ops: list[str], mask: torch.Tensor) -> list[int]:
    """The columns of the attention ops that are still active on some edge."""
    return [c for c, o in enumerate(ops) if _is_msa(o) and bool(mask[:, c].any())]


def mixes_tokens(genotype: Genotype) -> bool:
    """Whether a live edge of the cell is attention: the only op through which the class token, which the
    head reads, sees the image patches."""
    live = set(genotype.live_nodes())
    return any(_is_msa(e.op) for e in genotype.edges if e.dst in live)


def _pareto(states: list[tuple[Cost, float, list[Edge]]]) -> list[tuple[Cost, float, list[Edge]]]:
    """The states no other state beats: none with as much weight at no more FLOPs and no more params, and
    (when attention is asked for) no less attention: a state without an msa edge never beats one with."""
    kept: list[tuple[Cost, float, list[Edge]]] = []
    for st in sorted(states, key=lambda t: (-t[1], t[0].flops, t[0].params)):
        has = any(_is_msa(e.op) for e in st[2])
        if not any(k[0].within(st[0]) and (any(_is_msa(e.op) for e in k[2]) or not has) for k in kept):
            kept.append(st)
    return kept


def _derive_within(
    w: torch.Tensor,
    mask: torch.Tensor,
    ops: list[str],
    nodes: int,
    k: int,
    op_costs: dict[str, Cost],
    budget: Cost | None,
    meta: dict[str, Any] | None,
    attention: bool = False,
) -> Genotype:
    """The largest-weight cell within `budget` (None: any cost): node by node, keeping only the (cost,
    weight) states that no other beats (the cost adds over edges, so a beaten state never leads to the best
    cell). With `attention`, the best cell that has an msa edge, when one can."""
    options = [_node_options(w, mask, ops, nodes, j, k, op_costs) for j in range(2, nodes + 2)]
    states: list[tuple[Cost, float, list[Edge]]] = [(Cost(), 0.0, [])]
    for node in options:
        grown = [(c + oc, s + os, e + oe) for c, s, e in states for oc, os, oe in node]
        states = _pareto([st for st in grown if budget is None or st[0].within(budget)])
        if not states:
            break
    meta = dict(meta or {})
    meta.pop("no_attention", None)
    if attention:
        with_msa = [st for st in states if any(_is_msa(e.op) for e in st[2])]
        if with_msa:
            states = with_msa
        else:
            meta["no_attention"] = True
    if states:
        _, _, edges = states[0]  # the largest weight (then the cheapest): _pareto sorts so
    else:  # nothing fits: the cheapest cell, node by node (costs add up)
        edges = [e for node in options for e in min(node, key=lambda t: (t[0].flops, t[0].params, -t[1]))[2]]
        meta["over_budget"] = True
    edges = sorted(edges, key=lambda e: (e.dst, e.src))
    return Genotype(nodes=nodes, edges=edges, output=list(range(2, nodes + 2)), meta=meta)


def random_genotype(
    ops: list[str],
    nodes: int,
    edges_per_node: int,
    rng: random.Random,
    op_costs: dict[str, Cost] | None = None,
    budget: Cost | None = None,
    residual: bool = True,
    meta: dict[str, Any] | None = None,
    tries: int = 100_000,
    floor: Cost | None = None,
) -> Genotype:
    """A cell drawn uniformly from the space under the derivation's rules: `edges_per_node` distinct
    incoming edges per node, each with a non-zero op of `ops`; with `residual`, a residual path (when `skip`
    is an op); an attention edge (when msa is an op); within `budget` when one is given, and costing at
    least `floor` (FLOPs and params) when one is given: `budget` and `floor` together draw a cell of a
    matched cost. Rejection sampling: `tries` draws at most."""
    nonzero = [o for o in ops if o != "zero"]
    for _ in range(tries):
        edges = []
        for j in range(2, nodes + 2):
            for i in sorted(rng.sample(range(j), min(edges_per_node, j))):
                edges.append(Edge(i, j, rng.choice(nonzero)))
        geno = Genotype(nodes=nodes, edges=edges, output=list(range(2, nodes + 2)), meta=dict(meta or {}))
        if residual and "skip" in nonzero and not has_residual_path(geno):
            continue
        if any(_is_msa(o) for o in nonzero) and not mixes_tokens(geno):
            continue
        if budget is not None or floor is not None:
            cost = edges_cost(edges, op_costs)
            if (budget is not None and not cost.within(budget)) or (floor is not None and not floor.within(cost)):
                continue
        return geno
    what = "fits the budget" if floor is None else "costs between the two bounds"
    raise BudgetError(f"no cell of the ops {', '.join(nonzero)} {what}; {tries:,} random cells were drawn.")


def has_residual_path(genotype: Genotype) -> bool:
    """Whether a chain of `skip` edges leads from a cell input (node 0 or 1) to an output node."""
    reach = {0, 1}
    for e in sorted(genotype.edges, key=lambda e: e.dst):
        if e.op == "skip" and e.src in reach:
            reach.add(e.dst)
    return any(o in reach for o in genotype.output)


def _derive(
    w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int, edges_per_node: int, meta: dict[str, Any] | None
) -> Genotype:
    edges = edge_list(nodes)
    chosen: list[Edge] = []
    for j in range(2, nodes + 2):
        cands = []
        for r, (i, jj) in enumerate(edges):
            if jj != j:
                continue
            best = max(
                ((float(w[r, c]), ops[c]) for c in range(len(ops)) if mask[r, c] and ops[c] != "zero"),
                default=None,
            )
            if best is not None:
                cands.append((best[0], i, best[1]))
        cands.sort(key=lambda t: (-t[0], t[1]))
        for _, i, op in sorted(cands[:edges_per_node], key=lambda t: t[1]):
            chosen.append(Edge(i, j, op))
    return Genotype(nodes=nodes, edges=chosen, output=list(range(2, nodes + 2)), meta=dict(meta or {}))

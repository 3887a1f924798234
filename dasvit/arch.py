"""What the search does with α: operation fairness regularisation, pruning proposals, derivation.

All functions take the architecture weights w = softmax(α) over active ops ([edges, ops], pruned ops
exactly 0) and the op names of the columns.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import FairnessConfig
from .genotype import Edge, Genotype
from .ops import parse_op
from .supernet import edge_list, edge_name


def fairness_terms(w: torch.Tensor, ops: list[str], cfg: FairnessConfig) -> dict[str, torch.Tensor]:
    """L_skip = mean_e max(0, w_e[skip] − τ/n_e) (τ = skip_threshold, n_e the edge's active ops; τ = 0 is
    the paper's mean_e w_e[skip]);  W_t = mean_e Σ_{o∈t} w_e[o] for t ∈ {msa, mlp};
    L_type = Σ_t λ_up·max(0, W_t − u) + λ_low·max(0, l − W_t);  L_fair = β1·L_skip + β2·L_type."""
    types = [parse_op(o).type for o in ops]
    zero = w.new_zeros(())
    l_skip = zero
    if "skip" in types:
        share = 1.0 / (w > 0).sum(dim=1).clamp(min=1)  # pruned ops have weight exactly 0
        l_skip = torch.relu(w[:, types.index("skip")] - cfg.skip_threshold * share).mean()
    l_type = zero
    for t in ("msa", "mlp"):
        cols = [c for c, ty in enumerate(types) if ty == t]
        if not cols:
            continue
        share = w[:, cols].sum(dim=1).mean()
        l_type = l_type + cfg.lambda_up * torch.relu(share - cfg.upper) + cfg.lambda_low * torch.relu(cfg.lower - share)
    total = cfg.beta_skip * l_skip + cfg.beta_type * l_type
    return {"skip": l_skip, "type": l_type, "total": total}


def fairness_loss(w: torch.Tensor, ops: list[str], cfg: FairnessConfig) -> torch.Tensor:
    return fairness_terms(w, ops, cfg)["total"]


def arch_weights_dict(w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int) -> dict[str, dict[str, float]]:
    """{"i->j": {op: weight}} over each edge's active ops (each row sums to 1)."""
    out = {}
    for r, e in enumerate(edge_list(nodes)):
        out[edge_name(e)] = {o: float(w[r, c]) for c, o in enumerate(ops) if mask[r, c]}
    return out


def skip_fraction(w: torch.Tensor, ops: list[str]) -> float:
    return float(w[:, ops.index("skip")].mean()) if "skip" in ops else 0.0


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
    return keep_one_skip(proposal, w, mask, ops, nodes, skip_floor, zero)


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
    """Why a user's `keep` cannot be used (None if it can): every edge, only its active ops, ≥ 1 non-zero op."""
    if not isinstance(keep, dict):
        return "keep must map every edge 'i->j' to a list of ops"
    active = {edge_name(e): [o for c, o in enumerate(ops) if mask[r, c]] for r, e in enumerate(edge_list(nodes))}
    for name in keep:
        if name not in active:
            return f"keep names edge {name!r}, which is not an edge of this cell"
    for name, act in active.items():
        chosen = keep.get(name)
        if not isinstance(chosen, list) or not chosen:
            return f"keep must give edge {name} at least one op"
        for o in chosen:
            if o not in act:
                return f"keep gives edge {name} op {o!r}, which is not among its active ops {act}"
        if all(o == "zero" for o in chosen):
            return f"keep must give edge {name} an op other than zero"
    return None


def derive_genotype(
    w: torch.Tensor,
    mask: torch.Tensor,
    ops: list[str],
    nodes: int,
    edges_per_node: int,
    meta: dict[str, Any] | None = None,
    skip_floor: float = 0.0,
) -> Genotype:
    """For each intermediate node keep the `edges_per_node` strongest incoming edges, ranked by their best
    non-zero op; each kept edge takes that op. Output = all intermediate nodes.

    With `skip_floor` > 0 a cell is not left without a residual path (a chain of `skip` edges from a cell
    input to an output node; stacked without one, the digits network stayed at chance): the edge leaving
    a cell input where `skip` weighs most relative to its fair share 1/n becomes a `skip` edge (taking
    the place of its destination's weaker edge) unless even there skip is below `skip_floor` times its
    fair share."""
    geno = _derive(w, mask, ops, nodes, edges_per_node, meta)
    if skip_floor <= 0 or "skip" not in ops or has_residual_path(geno):
        return geno
    s = ops.index("skip")
    best = max(
        ((float(w[r, s]) * int(mask[r].sum()), e) for r, e in enumerate(edge_list(nodes)) if e[0] <= 1 and mask[r, s]),
        default=None,
    )
    if best is None or best[0] < skip_floor:
        return geno
    i, j = best[1]
    into_j = [e for e in geno.edges if e.dst == j]
    same = [e for e in into_j if e.src == i]
    # the strength of a kept edge is its op's weight; the weaker edge into j gives way to the skip
    col = {o: c for c, o in enumerate(ops)}
    row = {e: r for r, e in enumerate(edge_list(nodes))}
    out = same[0] if same else min(into_j, key=lambda e: float(w[row[(e.src, e.dst)], col[e.op]]))
    edges = sorted([e for e in geno.edges if e != out] + [Edge(i, j, "skip")], key=lambda e: (e.dst, e.src))
    return Genotype(nodes=nodes, edges=edges, output=list(geno.output), meta=dict(geno.meta))


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

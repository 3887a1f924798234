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
    """L_skip = mean_e w_e[skip];  W_t = mean_e Σ_{o∈t} w_e[o] for t ∈ {msa, mlp};
    L_type = Σ_t λ_up·max(0, W_t − u) + λ_low·max(0, l − W_t);  L_fair = β1·L_skip + β2·L_type."""
    types = [parse_op(o).type for o in ops]
    zero = w.new_zeros(())
    l_skip = w[:, types.index("skip")].mean() if "skip" in types else zero
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


def prune_proposal(w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int, keep: int) -> dict[str, list[str]]:
    """Top-`keep` active ops per edge by weight (strongest first); an edge always keeps a non-zero op."""
    proposal = {}
    for r, e in enumerate(edge_list(nodes)):
        ranked = sorted((c for c in range(len(ops)) if mask[r, c]), key=lambda c: -float(w[r, c]))
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


def derive_genotype(w: torch.Tensor, mask: torch.Tensor, ops: list[str], nodes: int, edges_per_node: int,
                    meta: dict[str, Any] | None = None) -> Genotype:
    """For each intermediate node keep the `edges_per_node` strongest incoming edges, ranked by their best
    non-zero op; each kept edge takes that op. Output = all intermediate nodes."""
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

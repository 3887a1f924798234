"""The search's cost budget: what each op of the space costs and the cell budget (`space_costs`), and the
budget as a term of the α objective (ProxylessNAS's and FBNet's way with a CNN's latency).

The budgeted derivation (`dasvit.search.derivation`, `search.budget_in: derivation`) makes the derived cell
fit `search.budget` after the search; the term makes α itself prefer cells that fit, during the search:

    p_e(o)  = w_e(o) / Σ_{o' ≠ zero} w_e(o')           α's weights on edge e over its non-zero ops
    E_e[c]  = Σ_{o ≠ zero} p_e(o) · c(o) / B_c          the edge's expected cost, relative to the budget
    E[c]    = Σ_j Σ_{e ∈ top_k(j)} E_e[c]                the cell the derivation takes: each node j's k
                                                          strongest edges (by their best non-zero op)
    L_cost  = λ · Σ_{c ∈ {FLOPs, params}} max(0, E[c] − 1)

`zero` is left out because the derivation never takes it (a weight moved onto `zero` would lower an
expectation without lowering the derived cell's cost); which edges are the k strongest is a choice, not a
gradient. λ is `search.cost_weight`; the term is on when `search.budget_in` is objective or both.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, GenotypeError
from ..model.cost import Cost, cell_cost, op_cost, tokens_of
from ..model.genotype import load_genotype
from ..model.opspec import edge_list


class CostObjective:
    """λ · Σ_c max(0, E_α[cell cost]_c / budget_c − 1) for α's weights `w` [edges, ops] (see the module)."""

    def __init__(
        self,
        ops: list[str],
        nodes: int,
        edges_per_node: int,
        op_costs: dict[str, Cost],
        budget: Cost,
        weight: float,
    ) -> None:
        self.weight = weight
        self.k = edges_per_node
        self.nonzero = [c for c, o in enumerate(ops) if o != "zero"]
        # [non-zero ops, 2]: each op's FLOPs and params as a fraction of the budget's
        self.costs = torch.tensor(
            [[op_costs[ops[c]].flops / budget.flops, op_costs[ops[c]].params / budget.params] for c in self.nonzero],
            dtype=torch.float32,
        )
        rows = edge_list(nodes)
        self.into = [[r for r, (_, j) in enumerate(rows) if j == dst] for dst in range(2, nodes + 2)]

    def expected(self, w: torch.Tensor) -> torch.Tensor:
        """E[cell cost] / budget as [FLOPs, params] (differentiable in `w`)."""
        wz = w[:, self.nonzero]
        p = wz / wz.sum(dim=1, keepdim=True).clamp_min(1e-12)
        edge_cost = p @ self.costs.to(device=w.device, dtype=w.dtype)  # [edges, 2]
        strength = wz.detach().max(dim=1).values
        total = w.new_zeros(2)
        for rows in self.into:
            top = sorted(rows, key=lambda r: -float(strength[r]))[: self.k]
            total = total + edge_cost[top].sum(dim=0)
        return total

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.relu(self.expected(w) - 1.0).sum()


def space_costs(cfg) -> tuple[dict[str, Cost], Cost | None]:
    """Each op's cost in `cfg`'s space (width, tokens) and the search's cell budget (`search.budget`: the
    cost of that cell at the same sizes), None without one. A budget that names no cell is one sentence."""
    n, dim = tokens_of(cfg.data.image_size, cfg.space.patch_size), cfg.space.embed_dim
    op_costs = {o: op_cost(o, dim, n) for o in cfg.space.ops}
    if cfg.search.budget == "none":
        return op_costs, None
    try:
        ref = load_genotype(cfg.search.budget)
    except GenotypeError as e:
        raise ConfigError(f"search.budget: {e}") from None
    if ref.layers is not None:
        raise ConfigError(f"search.budget names {cfg.search.budget}, a version-2 genotype; name a cell (version 1).")
    return op_costs, cell_cost(ref, dim, n)

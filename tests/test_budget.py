"""The budget in the α objective (`search.budget_in`): the expected cost is the derived cell's cost when α
is decided, the term pulls an over-budget α under the budget and leaves one within it alone, and a search
with the budget in the objective alone derives its cell without the budgeted derivation."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, events, of_type, schema_problems, sets
from dasvit.model.cost import edges_cost
from dasvit.model.opspec import edge_list
from dasvit.run.presets import load_config
from dasvit.search.budget import CostObjective, space_costs
from dasvit.search.derivation import derive_genotype

OPS = ["zero", "skip", "msa_4", "msa_8", "msa_12", "mlp_0.5", "mlp_2", "mlp_4"]
NODES, K = 3, 2


def costs():
    cfg = load_config("fashion", [])
    return space_costs(cfg)


def alpha_for(favourite: dict[tuple[int, int], str], logit: float = 6.0) -> torch.Tensor:
    """α whose softmax puts almost all of each edge's weight on its favourite op (uniform elsewhere)."""
    rows = edge_list(NODES)
    a = torch.zeros(len(rows), len(OPS))
    for r, e in enumerate(rows):
        if e in favourite:
            a[r, OPS.index(favourite[e])] = logit
    return a


def test_a_decided_alpha_expects_exactly_the_cost_of_the_cell_it_derives():
    op_costs, budget = costs()
    term = CostObjective(OPS, NODES, K, op_costs, budget, weight=1.0)
    chosen = {(0, 2): "msa_12", (1, 2): "mlp_4", (0, 3): "mlp_2", (2, 3): "msa_4", (1, 4): "skip", (3, 4): "mlp_0.5"}
    w = torch.softmax(alpha_for(chosen, logit=40.0), dim=1)
    geno = derive_genotype(w, torch.ones_like(w, dtype=torch.bool), OPS, NODES, K)
    assert {(e.src, e.dst): e.op for e in geno.edges} == chosen
    cell = edges_cost(geno.edges, op_costs)
    flops, params = term.expected(w).tolist()
    assert flops == pytest.approx(cell.flops / budget.flops, rel=1e-4)
    assert params == pytest.approx(cell.params / budget.params, rel=1e-4)


def test_the_term_pulls_an_over_budget_alpha_within_the_budget_and_leaves_one_within_it_alone():
    op_costs, budget = costs()
    term = CostObjective(OPS, NODES, K, op_costs, budget, weight=1.0)
    heavy = {e: "mlp_4" for e in edge_list(NODES)}  # six MLPs of ratio 4: far over the ViT block's cost
    alpha = alpha_for(heavy, logit=2.0).requires_grad_(True)
    mask = torch.ones(len(edge_list(NODES)), len(OPS), dtype=torch.bool)

    def derived_cost():
        geno = derive_genotype(torch.softmax(alpha.detach(), 1), mask, OPS, NODES, K)
        return edges_cost(geno.edges, op_costs)

    assert not derived_cost().within(budget) and float(term(torch.softmax(alpha, 1)).detach()) > 0
    opt = torch.optim.Adam([alpha], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = term(torch.softmax(alpha, 1))
        if float(loss.detach()) == 0:
            break
        loss.backward()
        opt.step()
    assert float(term(torch.softmax(alpha, 1)).detach()) == 0
    assert derived_cost().within(budget)  # the unbudgeted derivation's cell now fits
    # within the budget the term is zero and so is its gradient: α is left to the loss alone
    light = alpha_for({e: "skip" for e in edge_list(NODES)}).requires_grad_(True)
    loss = term(torch.softmax(light, 1))
    loss.backward()
    assert float(loss.detach()) == 0 and float(light.grad.abs().max()) == 0


def test_a_search_with_the_budget_in_the_objective_reports_its_expected_cost(tmp_path):
    from dasvit.model.genotype import load_genotype
    from dasvit.search.searcher import main

    run = tmp_path / "run"
    args = ["--preset", "demo", "--run-dir", str(run), "--no-progress"]
    assert main([*args, *sets([*TINY, "search.budget_in=objective", "search.cost_weight=2"])]) == 0
    assert schema_problems(run) == []
    epochs = of_type(events(run), "epoch")
    assert all(set(e["expected_cost"]) == {"flops", "params"} for e in epochs)
    meta = load_genotype(run / "genotype.json").meta
    assert meta["budget"]["in"] == "objective" and meta["budget"]["cell"] == "vit_b16"
    cell, budget = meta["cost"], meta["budget"]
    assert meta.get("over_budget", False) == (cell["flops"] > budget["flops"] or cell["params"] > budget["params"])


def test_a_budget_in_the_objective_needs_a_budget_and_a_weight_of_0_or_more():
    from dasvit.errors import ConfigError

    with pytest.raises(ConfigError, match="search.budget is none"):
        load_config("demo", ["search.budget_in=objective", "search.budget=none"])
    with pytest.raises(ConfigError, match="search.cost_weight must be 0 or more"):
        load_config("demo", ["search.cost_weight=-1"])

"""Deriving a cell within a cost budget, and random cells of the same space under the same rules."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from dasvit.model.cost import Cost, Sizes, cell_cost, edges_cost, network_cost, op_cost
from dasvit.model.genotype import Edge, Genotype, load_genotype
from dasvit.model.opspec import edge_list
from dasvit.run.presets import load_config
from dasvit.search.budget import space_costs
from dasvit.search.derivation import derive_genotype, has_residual_path, random_genotype

OPS = ["zero", "skip", "msa_4", "mlp_0.5", "mlp_4"]
DIM, TOKENS = 48, 17


def weights(seed: int, nodes: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(len(edge_list(nodes)), len(OPS), generator=g) * 2, dim=1)


def brute_force_best(w: torch.Tensor, costs: dict[str, Cost], budget: Cost, nodes: int = 3):
    """The largest total weight over every cell of two non-zero edges per node within the budget that has
    an attention edge (the derivation's rule), or over all of them when none with attention fits."""
    rows = {e: r for r, e in enumerate(edge_list(nodes))}
    per_node = []
    for j in range(2, nodes + 2):
        opts = []
        for srcs in itertools.combinations(range(j), 2):
            for ops in itertools.product([o for o in OPS if o != "zero"], repeat=2):
                edges = [Edge(i, j, o) for i, o in zip(srcs, ops)]
                opts.append((sum(float(w[rows[(e.src, e.dst)], OPS.index(e.op)]) for e in edges), edges))
        per_node.append(opts)
    best = {True: -1.0, False: -1.0}
    for combo in itertools.product(*per_node):
        edges = [e for _, es in combo for e in es]
        if edges_cost(edges, costs).within(budget):
            att = any(e.op.startswith("msa") for e in edges)
            best[att] = max(best[att], sum(s for s, _ in combo))
    return best[True] if best[True] >= 0 else best[False]


def score(w: torch.Tensor, g: Genotype, nodes: int = 3) -> float:
    rows = {e: r for r, e in enumerate(edge_list(nodes))}
    return sum(float(w[rows[(e.src, e.dst)], OPS.index(e.op)]) for e in g.edges)


def test_the_budgeted_cell_is_the_heaviest_that_fits_and_no_budget_is_darts():
    costs = {o: op_cost(o, DIM, TOKENS) for o in OPS}
    mask = torch.ones(len(edge_list(3)), len(OPS), dtype=torch.bool)
    vit = cell_cost(load_genotype("vit_b16"), DIM, TOKENS)
    for seed in range(2):
        w = weights(seed)
        free = derive_genotype(w, mask, OPS, 3, 2)
        assert free == derive_genotype(w, mask, OPS, 3, 2, op_costs=costs, budget=Cost(10**12, 10**12))
        for budget in (vit, Cost(vit.flops // 2, vit.params // 2)):
            g = derive_genotype(w, mask, OPS, 3, 2, op_costs=costs, budget=budget)
            assert edges_cost(g.edges, costs).within(budget) and "over_budget" not in g.meta
            assert [len(g.incoming(j)) for j in (2, 3, 4)] == [2, 2, 2]
            assert score(w, g) == pytest.approx(brute_force_best(w, costs, budget))
    # a budget nothing fits (skip is pruned everywhere): the cheapest cell, and the genotype says so
    no_skip = mask.clone()
    no_skip[:, OPS.index("skip")] = False
    g = derive_genotype(weights(0), no_skip, OPS, 3, 2, op_costs=costs, budget=Cost(1, 1))
    assert g.meta["over_budget"] and {e.op for e in g.edges} == {"mlp_0.5"}


def test_the_residual_rule_keeps_the_budget():
    costs = {o: op_cost(o, DIM, TOKENS) for o in OPS}
    mask = torch.ones(len(edge_list(3)), len(OPS), dtype=torch.bool)
    w = torch.full((len(edge_list(3)), len(OPS)), 0.01)
    w[:, OPS.index("msa_4")] = 0.9  # every edge wants attention; skip just above its floor on 0->2
    w[0, OPS.index("skip")] = 0.15
    budget = Cost(4 * costs["msa_4"].flops, 4 * costs["msa_4"].params)
    g = derive_genotype(w, mask, OPS, 3, 2, skip_floor=0.5, op_costs=costs, budget=budget)
    assert has_residual_path(g) and edges_cost(g.edges, costs).within(budget)


def test_costs_are_what_fvcore_counts_on_the_built_network():
    from dasvit.model.build import build_network
    from dasvit.model.profile import count_flops, count_params

    for cell in ("vit_b16", "tests/fixtures/searched_cell.json"):
        g = load_genotype(cell)
        for depth in (1, 3):
            net = build_network(g, load_config("digits", [f"retrain.depth={depth}"]), 10)
            assert network_cost(g, Sizes(depth, 48, 16, 4, 1, 10)) == Cost(count_flops(net, 16), count_params(net))


def test_random_cells_follow_the_rules_and_the_budget():
    cfg = load_config("digits")
    costs, budget = space_costs(cfg)
    assert budget == cell_cost(load_genotype("vit_b16"), 48, 17)
    rng = random.Random(0)
    cells = [random_genotype(cfg.space.ops, 3, 2, rng, costs, budget) for _ in range(20)]
    for g in cells:
        assert [len(g.incoming(j)) for j in (2, 3, 4)] == [2, 2, 2]
        assert has_residual_path(g) and "zero" not in {e.op for e in g.edges}
        assert edges_cost(g.edges, costs).within(budget)
    assert len({tuple(g.edges) for g in cells}) > 15  # drawn, not one cell
    assert space_costs(load_config("digits", ["search.budget=none"]))[1] is None


def test_a_derived_cell_keeps_attention_because_without_it_the_image_never_reaches_the_head():
    from dasvit.model.network import Network
    from dasvit.search.derivation import mixes_tokens

    # skips and MLPs weigh most on every edge; attention is still active everywhere
    w = torch.tensor([[0.0, 0.4, 0.1, 0.2, 0.3]] * len(edge_list(3)))
    w[edge_list(3).index((0, 3)), OPS.index("msa_4")] = 0.15  # the least bad place for attention
    mask = torch.ones_like(w, dtype=torch.bool)
    costs = {o: op_cost(o, DIM, TOKENS) for o in OPS}
    vit = cell_cost(load_genotype("vit_b16"), DIM, TOKENS)
    for budget in (None, vit):
        g = derive_genotype(w, mask, OPS, 3, 2, op_costs=costs, budget=budget, skip_floor=0.5)
        assert mixes_tokens(g) and Edge(0, 3, "msa_4") in g.edges and "no_attention" not in g.meta
        assert has_residual_path(g)
        if budget is not None:
            assert edges_cost(g.edges, costs).within(budget)
    # what the rule prevents: the best cell without attention gives every image the same logits
    no_msa = mask.clone()
    no_msa[:, OPS.index("msa_4")] = False
    g = derive_genotype(w, no_msa, OPS, 3, 2)
    assert not mixes_tokens(g) and g.meta["no_attention"]  # none left to take: the cell says so
    net = Network(g, depth=2, dim=DIM, image_size=28, patch_size=7, num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = net(x)
    assert torch.allclose(out[0], out[1])
    keep = Network(derive_genotype(w, mask, OPS, 3, 2), 2, DIM, 28, 7, 10, in_chans=1).eval()
    with torch.no_grad():
        assert not torch.allclose(*keep(x))


def test_random_cells_have_attention_when_the_space_has_it():
    from dasvit.search.derivation import mixes_tokens

    rng = random.Random(0)
    assert all(mixes_tokens(random_genotype(OPS, 3, 2, rng)) for _ in range(200))


def test_the_residual_rule_does_not_take_the_cells_only_attention_edge():
    from dasvit.search.derivation import mixes_tokens

    col = {o: c for c, o in enumerate(OPS)}
    w = torch.zeros(len(edge_list(3)), len(OPS))
    w[:, col["mlp_4"]], w[:, col["skip"]], w[:, col["mlp_0.5"]] = 0.5, 0.2, 0.1
    r02 = edge_list(3).index((0, 2))
    w[r02] = 0.0
    w[r02, col["msa_4"]], w[r02, col["skip"]] = 0.55, 0.4  # attention's only edge is also skip's strongest
    mask = torch.ones_like(w, dtype=torch.bool)
    g = derive_genotype(w, mask, OPS, 3, 2, skip_floor=0.5)
    assert Edge(0, 2, "msa_4") in g.edges and mixes_tokens(g) and has_residual_path(g)


def test_pruning_keeps_one_attention_op_where_the_proposal_would_drop_them_all():
    """Plain DARTS on fashion (seed 2) pruned every msa op after stage 2, and stage 3 sat at chance; the
    proposal keeps the attention op strongest relative to its edge's fair share, in place of the weakest."""
    from dasvit.search.derivation import prune_proposal

    w = torch.tensor([[0.05, 0.35, 0.1, 0.2, 0.3]] * len(edge_list(3)))  # msa_4 last but one on every edge
    w[edge_list(3).index((2, 3)), OPS.index("msa_4")] = 0.12  # the least bad place for attention
    mask = torch.ones_like(w, dtype=torch.bool)
    proposal = prune_proposal(w, mask, OPS, 3, 3)
    kept = {e: ops for e, ops in proposal.items() if "msa_4" in ops}
    assert kept == {"2->3": ["skip", "mlp_4", "msa_4"]}  # mlp_0.5, its weakest kept op, gave way
    assert all(len(ops) == 3 for ops in proposal.values())
    # attention already kept somewhere: the proposal is the plain top-k
    w[edge_list(3).index((0, 2)), OPS.index("msa_4")] = 0.5
    proposal = prune_proposal(w, mask, OPS, 3, 3)
    assert [e for e, ops in proposal.items() if "msa_4" in ops] == ["0->2"]
    # the cell's only residual path is not what gives way: attention is strongest on the one edge that keeps
    # skip, in a one-op stage, so it goes to the next-strongest place
    w = torch.tensor([[0.0, 0.0, 0.1, 0.5, 0.4]] * len(edge_list(3)))
    w[edge_list(3).index((1, 2))] = torch.tensor([0.0, 0.6, 0.3, 0.05, 0.05])
    w[edge_list(3).index((0, 3)), OPS.index("msa_4")] = 0.15
    proposal = prune_proposal(w, mask, OPS, 3, 1)
    assert proposal["1->2"] == ["skip"] and proposal["0->3"] == ["msa_4"]
    assert sum("msa_4" in ops for ops in proposal.values()) == 1

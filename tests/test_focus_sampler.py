"""FocusFormer's budget-conditioned sampler: draws in the space, Pareto-aware ranking, REINFORCE toward the budget."""

from __future__ import annotations

import math

import torch

from dasvit.focus.cost import subnet_cost
from dasvit.focus.pareto import pareto_ranks, window_ranks, window_shortfall
from dasvit.focus.sampler import SubnetSampler, bin_for_budget, budget_edges, reinforce_loss
from dasvit.focus.space import FocusSpace, load_base


def demo_space() -> FocusSpace:
    return FocusSpace(
        load_base("vit_b16"), embed_dims=[16, 24, 32], depths=[2, 3, 4], heads=[1, 2], mlp_ratios=[1, 2, 4], head_dim=8
    )


def flops(space, subnet) -> int:
    return subnet_cost(space, subnet, 16, 4, 4)[0]


def test_draws_are_archs_of_the_space_with_finite_log_prob_and_entropy():
    space = demo_space()
    torch.manual_seed(0)
    sampler = SubnetSampler(space, bins=4, hidden=16)
    draw = sampler(torch.tensor([0, 1, 2, 3] * 4), torch.Generator().manual_seed(0))
    assert len(draw.subnets) == 16 and all(space.contains(a) for a in draw.subnets)
    assert torch.isfinite(draw.log_prob).all() and (draw.log_prob < 0).all()
    assert torch.isfinite(draw.entropy).all() and (draw.entropy > 0).all()
    # only the decisions of layers the depth reaches count: a 2-deep subnet has fewer than a 4-deep one
    per_layer = 2 * math.log(3)  # at most log(options) per decision; two elastic edges of <= 3 options
    for a, h in zip(draw.subnets, draw.entropy.tolist()):
        assert h <= 2 * math.log(3) + a.depth * per_layer + 1e-4
    again = sampler(torch.tensor([0, 1, 2, 3] * 4), torch.Generator().manual_seed(0))
    assert again.subnets == draw.subnets  # a seeded generator gives the same draws (every rank draws alike)


def test_pareto_ranking_puts_feasible_first_then_by_loss_and_infeasible_by_flops():
    flops_ = [50, 200, 80, 300, 90]
    losses = [1.0, 0.1, 0.5, 0.2, 0.9]
    ranks = pareto_ranks(flops_, losses, budget=100)
    # within budget: 80 (loss .5) < 90 (.9) < 50 (1.0); over budget: 200 before 300 whatever their loss
    assert ranks == [2, 3, 0, 4, 1]
    assert reinforce_loss(torch.zeros(5, requires_grad=True), torch.ones(5), ranks, 0.0).requires_grad


def fresh_sampler():
    """The demo space, its 4 budget bins' upper edges, a seeded untrained sampler, its optimizer, a generator."""
    space = demo_space()
    edges = budget_edges(flops(space, space.smallest()), flops(space, space.largest()), 4)
    torch.manual_seed(0)
    sampler = SubnetSampler(space, bins=4, hidden=16)
    return space, edges, sampler, torch.optim.Adam(sampler.parameters(), lr=0.02), torch.Generator().manual_seed(1)


def test_budget_bins_span_the_flops_range():
    edges = budget_edges(100, 500, 4)
    assert edges == [200, 300, 400, 500]
    assert [bin_for_budget(b, edges) for b in (150, 200, 350, 10_000)] == [0, 0, 1, 3]


def test_reinforce_steps_move_the_low_budget_draws_under_the_budget():
    space, edges, sampler, opt, gen = fresh_sampler()

    def feasible() -> float:
        with torch.no_grad():
            subnets = sampler(torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(2)).subnets
        return sum(flops(space, a) <= edges[0] for a in subnets) / len(subnets)

    before = feasible()
    for _ in range(15):
        draw = sampler(torch.zeros(8, dtype=torch.long), gen)
        f = [flops(space, a) for a in draw.subnets]
        # a stand-in for the loss: larger networks fit better (as a trained supernet's do)
        ranks = pareto_ranks(f, [-x for x in f], edges[0])
        opt.zero_grad()
        reinforce_loss(draw.log_prob, draw.entropy, ranks, 0.01).backward()
        opt.step()
    after = feasible()
    assert before < 0.5 and after > before + 0.25, (before, after)


def test_window_ranking_asks_each_bin_for_the_best_network_of_its_own_cost():
    flops_ = [50, 200, 80, 300, 90, 20]
    losses = [1.0, 0.1, 0.5, 0.2, 0.9, 0.05]
    # bin (60, 100]: 80 (loss .5) then 90 (.9) inside; then below, larger first: 50, 20 (however good);
    # then over, smaller first: 200, 300
    assert window_ranks(flops_, losses, 60, 100) == [2, 4, 0, 5, 1, 3]
    assert window_shortfall([50, 80, 130], 60, 100, 100) == [0.1, 0.0, 0.3]


def test_cost_steps_alone_teach_every_bin_where_its_networks_lie():
    space, edges, sampler, opt, gen = fresh_sampler()
    span = edges[-1] - flops(space, space.smallest())  # the FLOPs range the bins cover
    every = torch.arange(4).repeat_interleave(16)

    def state():
        with torch.no_grad():
            d = sampler(torch.arange(4).repeat_interleave(64), torch.Generator().manual_seed(2))
        f = [flops(space, a) for a in d.subnets]
        per = [f[k * 64 : (k + 1) * 64] for k in range(4)]
        return [sum(x <= edges[k] for x in per[k]) / 64 for k in range(4)], [sum(p) / 64 for p in per]

    _, mean0 = state()
    for _ in range(60):
        d = sampler(every, gen)
        loss = 0
        for k in range(4):
            sl = slice(16 * k, 16 * (k + 1))
            low = edges[k - 1] if k else -math.inf
            out = window_shortfall([flops(space, a) for a in d.subnets[sl]], low, edges[k], span)
            loss = loss + reinforce_loss(d.log_prob[sl], d.entropy[sl], out, 0.15)
        opt.zero_grad()
        loss.backward()
        opt.step()
    feasible, mean = state()
    assert mean0[3] < 0.6 * edges[3] and min(feasible) >= 0.8, (mean0, feasible)  # before: all bins alike
    assert all(a < b for a, b in zip(mean, mean[1:])), mean  # larger budgets, larger networks
    assert all(m >= 0.5 * b for m, b in zip(mean, edges)), (mean, edges)

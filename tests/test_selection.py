"""Does the search find anything? The selection rules taken from a recorded supernet, matched-cost random
cells, the ranking diagnostic, and a compare that reports all three (real engines, tiny sizes)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import events, schema_problems, sets
from dasvit.model.cost import Cost, edges_cost
from dasvit.model.genotype import load_genotype
from dasvit.reports.compare_cells import random_cell
from dasvit.reports.ranking import correlation, cost_trend
from dasvit.run.presets import load_run_config
from dasvit.search.budget import space_costs
from dasvit.search.derivation import has_residual_path, mixes_tokens
from dasvit.search.selection import (
    Selector,
    alpha_score,
    cell_weights,
    derive_from_run,
    load_stage_supernet,
    stage_files,
)
from dasvit_tui.cli import app

RECORDED = Path(__file__).parent / "recorded_run"
TINY_RETRAIN = ["retrain.epochs=1", "retrain.steps_per_epoch=2", "data.synthetic_val=32", "retrain.depth=2"]


def keeps_the_rules(g, op_costs, budget) -> bool:
    """Two inputs per node, a residual path, an attention edge, within the budget."""
    per_node = {j: len(g.incoming(j)) for j in range(2, g.nodes + 2)}
    return (
        all(n == 2 for n in per_node.values())
        and has_residual_path(g)
        and mixes_tokens(g)
        and edges_cost(g.edges, op_costs).within(budget)
    )


def test_a_matched_cost_random_cell_is_within_the_tolerance_and_keeps_the_derivation_rules(tiny_search):
    for run in (RECORDED, tiny_search):  # a cell within its budget; one over it (the tiny search fits none)
        cfg = load_run_config(run / "config.yaml")
        op_costs, budget = space_costs(cfg)
        searched = load_genotype(run / "genotype.json")
        target = edges_cost(searched.edges, op_costs)
        for k in range(1, 6):
            g = random_cell(cfg, k, matched=searched, tolerance=0.05)
            c = edges_cost(g.edges, op_costs)
            assert abs(c.flops - target.flops) <= 0.05 * target.flops
            assert abs(c.params - target.params) <= 0.05 * target.params
            assert keeps_the_rules(g, op_costs, budget if target.within(budget) else Cost(10**18, 10**18))
            assert g.meta["matched"] == k and g.meta["to"] == {"flops": target.flops, "params": target.params}
        # the k-th draw is the k-th whatever else was drawn: compare --random 3 then 5 reuses three
        assert random_cell(cfg, 2, matched=searched).same_cell(random_cell(cfg, 2, matched=searched))


def test_kendall_tau_is_one_on_a_monotone_toy_and_near_zero_on_shuffled_scores():
    top1 = [0.5 + 0.01 * i for i in range(40)]
    mono = correlation([i**3 for i in range(40)], top1)
    assert mono["kendall"]["tau"] == pytest.approx(1.0) and mono["spearman"]["rho"] == pytest.approx(1.0)
    assert mono["kendall"]["low"] == pytest.approx(1.0)  # every resample of a monotone set is monotone
    rng = random.Random(0)
    shuffled = [float(i) for i in range(400)]
    rng.shuffle(shuffled)
    noise = correlation(shuffled, [0.5 + 0.001 * i for i in range(400)])
    assert abs(noise["kendall"]["tau"]) < 0.1 and abs(noise["spearman"]["rho"]) < 0.15
    assert noise["kendall"]["low"] < 0 < noise["kendall"]["high"]
    reversed_ = correlation(list(range(40, 0, -1)), top1)
    assert reversed_["kendall"]["tau"] == pytest.approx(-1.0)
    assert correlation([1, 2, 3], [0.1, 0.2, 0.3]) is None  # too few cells to say anything
    assert correlation([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4]) is None


def test_the_cost_trend_sets_a_cell_against_random_cells_of_its_cost():
    randoms = [{"flops": f, "top1": 0.80 + 0.01 * f / 1e6} for f in (1e6, 2e6, 3e6, 4e6)]
    trend = cost_trend(randoms, {"searched": {"flops": 2e6, "top1": 0.83}}, tolerance=0.05)
    cell = trend["cells"]["searched"]
    assert trend["slope_per_mflop"] == pytest.approx(0.01)
    assert cell["trend_top1"] == pytest.approx(0.82) and cell["residual"] == pytest.approx(0.01)
    assert cell["neighbours"] == 1 and cell["neighbour_rank"] == 1  # the 2 MFLOP random cell, beaten


@pytest.mark.parametrize("rule", ["argmax", "skip-limit", "oneshot", "perturbation"])
def test_each_selection_rule_derives_a_valid_cell_from_a_recorded_supernet(tiny_search, tmp_path, rule):
    run = tmp_path / "run"
    shutil.copytree(tiny_search, run)
    assert sorted(stage_files(run)) == [1, 2, 3]  # the search kept every stage's supernet
    over = ["search.selection.candidates=6", "search.selection.tune_steps=2", "search.selection.max_skips=1"]
    g, path = derive_from_run(run, rule, over, say=lambda s: None)
    cfg = load_run_config(run / "config.yaml")
    op_costs, budget = space_costs(cfg)
    assert path.parent == run / "derived" and load_genotype(path).same_cell(g)
    assert g.meta["selection"]["rule"] == rule and g.meta["stage"] == 3
    # the tiny search's last stage keeps no cell within the budget: every rule then says so
    fits = budget if not g.meta.get("over_budget") else Cost(10**18, 10**18)
    assert keeps_the_rules(g, op_costs, fits) or not has_residual_path(g)  # skip-limit may cut the path
    net = load_stage_supernet(run, cfg, 3)
    assert cell_weights(net, g) is not None  # only ops the last stage still had
    if rule == "argmax":
        assert g.same_cell(load_genotype(run / "genotype.json"))  # what the search itself derived
    if rule == "skip-limit":
        assert sum(e.op == "skip" for e in g.edges) <= 1 or not g.meta["selection"]["limit_kept"]


def trained_supernet(tiny_search, steps: int = 160):
    """The recorded run's first-stage supernet (every op on every edge), trained further for `steps` weight
    steps on a larger synthetic set, so that it tells classes apart on a validation split of 256 images held out of 1,024."""
    from dasvit.run.distributed import DistInfo
    from dasvit.run.presets import load_config
    from dasvit.train.data import EpochLoaders, build_datasets
    from dasvit.train.loop import weight_step

    cfg = load_config(str(tiny_search / "config.yaml"), ["data.synthetic_train=1024", "data.holdout=256"])
    splits = build_datasets(cfg.data)
    net = load_stage_supernet(tiny_search, cfg, 1, splits.num_classes)
    info = DistInfo()
    params = net.weight_parameters()
    opt = torch.optim.AdamW(params, lr=3e-3)
    torch.manual_seed(0)
    batches = (b for epoch in range(100) for b in EpochLoaders(splits.train, 32, 0, 0, 0, 1).epoch(epoch))
    net.train()
    for _, (x, y) in zip(range(steps), batches):
        weight_step(net, params, opt, x, y, info)
    net.eval()
    val = EpochLoaders(splits.selection, 64, 0, 0, 0, 1, shuffle=False, drop_last=False)
    return cfg, net, info, val


def test_perturbation_never_keeps_an_op_made_useless(tiny_search):
    """An op whose output is noise (its last layer's bias drawn afresh before every forward) costs the
    supernet accuracy wherever it is mixed in: removing it costs nothing, so no edge keeps it."""
    cfg, net, info, val = trained_supernet(tiny_search)
    trained = Selector(cfg, net, info, val=lambda: val.epoch(0))._accuracy(net.arch_weights())
    assert trained > 0.5  # it tells the classes apart
    useless = next(o for o in net.ops if o.startswith("mlp") and bool(net.mask[:, net.ops.index(o)].any()))
    c = net.ops.index(useless)
    g = torch.Generator().manual_seed(0)

    def fresh_noise(op, args):  # before every forward, tuning's included: nothing to adapt to
        with torch.no_grad():
            op.fc2.bias.copy_(2 * torch.randn(op.fc2.bias.shape, generator=g))

    for cell in net.cells:
        for edge in cell.edges:
            if str(c) in edge.ops:
                edge.ops[str(c)].register_forward_pre_hook(fresh_noise)
    selector = Selector(cfg, net, info, val=lambda: val.epoch(0))
    assert selector._accuracy(net.arch_weights()) < trained - 0.2  # it does harm the supernet
    out = selector.select("perturbation")
    assert useless not in {e.op for e in out.genotype.edges}
    scores = out.genotype.meta["selection"]["op_scores"]
    below = 0
    for r, edge in enumerate(selector.edges):
        name = f"{edge[0]}->{edge[1]}"
        if bool(net.mask[r, c]) and len(scores.get(name, {})) > 1:  # the edge had a choice
            best_other = max(v for o, v in scores[name].items() if o != useless)
            assert scores[name][useless] <= best_other  # never preferred (an edge that no longer matters ties)
            below += scores[name][useless] < best_other
    assert below >= 1


def test_the_alpha_score_is_the_log_weight_of_the_cells_ops_and_none_for_a_pruned_op(tiny_search):
    cfg = load_run_config(tiny_search / "config.yaml")
    net = load_stage_supernet(tiny_search, cfg, 3)
    g = load_genotype(tiny_search / "genotype.json")
    w = net.arch_weights().detach()
    expected = sum(float(torch.log(w[net.edge_pairs.index((e.src, e.dst)), net.ops.index(e.op)])) for e in g.edges)
    assert alpha_score(net, g) == pytest.approx(expected)
    r = net.edge_pairs.index((0, 2))
    pruned = next(o for c, o in enumerate(net.ops) if not bool(net.mask[r, c]) and o != "zero")  # on edge 0->2
    from dasvit.model.genotype import Edge, Genotype

    edges = [Edge(0, 2, pruned), *(e for e in g.edges if (e.src, e.dst) != (0, 2))]
    other = Genotype(nodes=g.nodes, edges=edges, output=list(g.output))
    assert alpha_score(net, other) == float("-inf") and cell_weights(net, other) is None


def test_compare_reports_matched_cost_cells_selection_rules_and_the_supernet_ranking(tiny_search, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_search, run)
    args = ["compare", str(run), "--random", "2", "--match-cost", "--selection", "skip-limit"]
    args += ["--selection", "oneshot", "--format", "json", "--no-progress", *sets(TINY_RETRAIN)]
    args += ["--set", "search.selection.candidates=4", "--set", "search.selection.max_skips=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((run / "compare.json").read_text())
    cfg = load_run_config(run / "config.yaml")
    op_costs, _ = space_costs(cfg)
    target = edges_cost(load_genotype(run / "genotype.json").edges, op_costs)
    assert len(data["matched_cost"]["cells"]) == 2 and data["matched_cost"]["tolerance"] == 0.05
    for row in data["matched_cost"]["cells"]:
        c = edges_cost(load_genotype(run / row["dir"] / "genotype.json").edges, op_costs)
        assert abs(c.flops - target.flops) <= 0.05 * target.flops
    trend = data["cost_trend"]
    assert {"searched", "skip-limit-1", "oneshot", "vit_b16"} <= set(trend["cells"]) and trend["randoms"] == 4
    ranking = data["ranking"]
    assert sorted(ranking["stages"]) == ["1", "2", "3"]
    for name, cell in ranking["cells"].items():
        assert cell["top1"] == data["models"][f"{name}@2"]["top1"]
        for stage, acc in cell["oneshot"].items():
            assert acc is None or 0 <= acc <= 1
            assert (acc is None) == (cell["alpha"][stage] is None)  # scored exactly where its ops are active
    assert ranking["cells"]["searched"]["oneshot"]["3"] is not None  # the last stage can score its own cell
    from dasvit.reports.plot import plot_runs

    written = {p.name for p in plot_runs([run], tmp_path / "figures")}
    assert {"cost.svg", "ranking.svg"} <= written
    assert "matched cost" in (tmp_path / "figures" / "cost.svg").read_text()
    ranking_svg = (tmp_path / "figures" / "ranking.svg").read_text()  # its legend says what each mark is
    for kind in ("searched cell", "ViT block", "random cells, matched cost"):
        assert kind in ranking_svg, kind
    assert "run: does the supernet rank" in ranking_svg
    shown = CliRunner().invoke(app, ["show", str(run)], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "accuracy-FLOPs trend" in shown.output and "can the supernet rank them" in shown.output


def test_a_search_ends_with_the_cell_its_selection_rule_takes(tmp_path):
    from conftest import TINY
    from dasvit.search.searcher import main

    run = tmp_path / "run"
    rule = ["search.selection.rule=oneshot", "search.selection.candidates=3"]
    assert main(["--preset", "demo", "--run-dir", str(run), "--no-progress", *sets([*TINY, *rule])]) == 0
    final, argmax = load_genotype(run / "genotype.json"), load_genotype(run / "genotype-stage3.json")
    assert final.meta["selection"]["rule"] == "oneshot" and "selection" not in argmax.meta
    assert final.meta["selection"]["candidates"] >= 1 and final.same_cell(load_genotype(run / "derived/oneshot.json"))
    genotype_events = [e for e in events(run) if e["type"] == "genotype" and e["stage"] == 3]
    assert [e["genotype"]["meta"].get("selection", {}).get("rule") for e in genotype_events] == [None, "oneshot"]
    assert schema_problems(run) == []

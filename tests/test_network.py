"""The discrete network: a genotype's cell wired as docs/architecture.md says of genotype.json, stacked between
stem and head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dasvit.errors import ConfigError
from dasvit.model.build import network
from dasvit.model.genotype import genotype_from_json, load_genotype
from dasvit.model.network import DropPath, Network
from dasvit.model.profile import count_params

FIXTURES = Path(__file__).parent / "fixtures"


def cell(edges: list[tuple[int, int, str]], output: list[int], nodes: int = 3):
    return genotype_from_json(
        {
            "format": "dasvit-genotype",
            "version": 1,
            "nodes": nodes,
            "edges": [{"from": a, "to": b, "op": op} for a, b, op in edges],
            "output": output,
        }
    )


def tiny(genotype, depth=2, drop_path=0.0) -> Network:
    torch.manual_seed(0)
    return Network(genotype, depth=depth, dim=24, image_size=8, patch_size=4, num_classes=3, drop_path=drop_path).eval()


def test_vit_b16_genotype_is_the_pre_norm_vit_block():
    net = tiny(load_genotype("vit_b16"), depth=3)
    x = torch.randn(2, 3, 8, 8)
    h = net.embed(x)
    for c in net.cells:
        ops = dict(zip(c.edges, c.ops))  # (from, to, op) -> its module
        h = h + ops[(1, 2, "msa_12")](h)  # x = x + attn(norm1(x))
        h = h + ops[(2, 3, "mlp_4")](h)  # x = x + mlp(norm2(x))
    torch.testing.assert_close(net(x), net.head(h))


def test_cell_k_reads_cells_k_minus_2_and_k_minus_1_and_layer_1_reads_the_embedding_twice():
    # node 2 = mlp(c(k-2)), node 3 = mlp(c(k-1)); output node 2 + node 3
    g = cell([(0, 2, "mlp_2"), (1, 3, "mlp_0.5")], output=[2, 3], nodes=2)
    net = tiny(g, depth=3)
    x = torch.randn(2, 3, 8, 8)
    e = net.embed(x)
    outs = [e, e]  # layer 1's two inputs are both the embedding
    for c in net.cells:
        a, b = c.ops  # edges in genotype order: 0->2 mlp_2, 1->3 mlp_0.5
        outs.append(a(outs[-2]) + b(outs[-1]))
    torch.testing.assert_close(net.forward_features(x), outs[-1])


def test_nodes_off_the_path_to_the_output_are_not_built():
    used = cell([(1, 2, "mlp_4"), (0, 3, "msa_4")], output=[2])  # node 3 feeds nothing
    alone = cell([(1, 2, "mlp_4")], output=[2])
    assert [c.nodes for c in tiny(used).cells] == [[2], [2]]
    assert count_params(tiny(used)) == count_params(tiny(alone))


def test_drop_path_acts_on_non_skip_edges_only_and_only_in_training():
    net = tiny(load_genotype("vit_b16"), depth=4, drop_path=0.5)
    kinds = {(e[2], type(d).__name__) for c in net.cells for e, d in zip(c.edges, c.drop)}
    assert kinds == {("skip", "Identity"), ("msa_12", "DropPath"), ("mlp_4", "DropPath")}
    rates = [c.drop[1].p for c in net.cells]
    assert rates == pytest.approx([0.0, 0.5 / 3, 1.0 / 3, 0.5])  # rises linearly to drop_path
    x = torch.randn(8, 3, 8, 8)
    torch.testing.assert_close(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    a = net(x)
    assert not torch.allclose(a, net(x))


def test_drop_path_keeps_the_expectation():
    torch.manual_seed(0)
    d = DropPath(0.25).train()
    y = d(torch.ones(20000, 1, 1))
    assert y.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs(y.mean().item() - 1.0) < 0.03


def test_searched_cell_classifies_a_batch():
    net = tiny(load_genotype(FIXTURES / "searched_cell.json"))
    assert net(torch.randn(5, 3, 8, 8)).shape == (5, 3)


def test_impossible_sizes_are_one_sentence_config_errors():
    g = load_genotype("vit_b16")
    with pytest.raises(ConfigError, match="divisible by 12 heads"):
        network(g, depth=1, dim=20, image_size=8, patch_size=4, num_classes=3)
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        network(g, depth=1, dim=24, image_size=10, patch_size=4, num_classes=3)

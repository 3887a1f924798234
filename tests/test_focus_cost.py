"""FocusFormer's analytic cost model against fvcore's count of the extracted network, and its speed."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from dasvit.focus.cost import subnet_cost
from dasvit.focus.space import FocusSpace, load_base
from dasvit.model.genotype import subnet_genotype
from dasvit.model.profile import profile_genotype

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("base", ["vit_b16", str(FIXTURES / "searched_cell.json")])
def test_cost_matches_fvcore_and_count_params_of_the_network(base):
    space = FocusSpace(
        load_base(base),
        embed_dims=[20, 28, 32],
        depths=[2, 3, 4],
        heads=[1, 2, 3],
        mlp_ratios=[1.5, 2, 2.5],
        head_dim=8,
    )
    rng = random.Random(0)
    for subnet in [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(5)]:
        flops, params = subnet_cost(space, subnet, image_size=16, patch_size=4, num_classes=5, in_chans=3)
        ref = profile_genotype(subnet_genotype(space, subnet), subnet.depth, subnet.embed_dim, 16, 4, 5)
        assert params == ref["params"]
        assert abs(flops - ref["flops"]) <= 0.01 * ref["flops"]


def test_autoformer_ti_extremes_match_fvcore_at_224():
    space = FocusSpace(
        load_base("vit_b16"),
        embed_dims=[192, 216, 240],
        depths=[12, 13, 14],
        heads=[3, 4],
        mlp_ratios=[3.5, 4],
        head_dim=64,
    )
    for subnet in (space.smallest(), space.largest()):
        flops, params = subnet_cost(space, subnet, 224, 16, 1000)
        ref = profile_genotype(subnet_genotype(space, subnet), subnet.depth, subnet.embed_dim, 224, 16, 1000)
        assert params == ref["params"]
        assert abs(flops - ref["flops"]) <= 0.01 * ref["flops"]
    # AutoFormer-Ti's range: about 1.2 to 2.3 GFLOPs, 5 to 11 M params
    low, high = subnet_cost(space, space.smallest(), 224, 16, 1000), subnet_cost(space, space.largest(), 224, 16, 1000)
    assert 1.0e9 < low[0] < high[0] < 2.5e9 and 4e6 < low[1] < high[1] < 12e6


def test_cost_prices_at_least_10k_archs_per_second():
    """The sampler's need; measured at ~240k/s on an idle core, so the bound leaves room for a loaded machine."""
    space = FocusSpace(
        load_base("vit_b16"),
        embed_dims=[192, 216, 240],
        depths=[12, 13, 14],
        heads=[3, 4],
        mlp_ratios=[3.5, 4],
        head_dim=64,
    )
    rng = random.Random(0)
    subnets = [space.sample(rng) for _ in range(2000)]
    subnet_cost(space, subnets[0], 224, 16, 1000)  # tables built once per space and sizes
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for subnet in subnets:
            subnet_cost(space, subnet, 224, 16, 1000)
        best = max(best, len(subnets) / (time.perf_counter() - t0))
    assert best >= 10_000


def test_edges_off_the_path_to_the_output_are_neither_elastic_nor_counted():
    from dasvit.focus.supernet import FocusSupernet
    from dasvit.model.genotype import genotype_from_json

    base = genotype_from_json(
        {
            "format": "dasvit-genotype",
            "version": 1,
            "nodes": 2,
            "output": [2],
            "edges": [
                {"from": 1, "to": 2, "op": "skip"},
                {"from": 1, "to": 2, "op": "mlp_4"},
                {"from": 0, "to": 3, "op": "msa_4"},
            ],
        }
    )
    space = FocusSpace(base, embed_dims=[16, 24], depths=[1, 2], heads=[1, 2], mlp_ratios=[1, 2], head_dim=8)
    assert space.elastic == [1]  # node 3 feeds nothing: its msa keeps the base op and is never built
    supernet = FocusSupernet(space, num_classes=3, image_size=8, patch_size=4)
    for subnet in (space.smallest(), space.largest()):
        assert all(layer[2] == "msa_4" for layer in subnet.layers)
        flops, params = subnet_cost(space, subnet, 8, 4, 3)
        ref = profile_genotype(subnet_genotype(space, subnet), subnet.depth, subnet.embed_dim, 8, 4, 3)
        assert (flops, params) == (ref["flops"], ref["params"])
        assert params == sum(p.numel() for p in supernet.extract(subnet).parameters())

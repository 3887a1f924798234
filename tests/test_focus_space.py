"""FocusFormer's elastic space: AutoFormer-Ti's space from vit_b16, decisions, encode/decode, evolution moves."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dasvit.errors import ConfigError, GenotypeError
from dasvit.focus.space import FocusSpace, Subnet, load_base
from dasvit.model.genotype import load_genotype

FIXTURES = Path(__file__).parent / "fixtures"


def autoformer_ti() -> FocusSpace:
    return FocusSpace(
        load_base("vit_b16"),
        embed_dims=[192, 216, 240],
        depths=[12, 13, 14],
        heads=[3, 4],
        mlp_ratios=[3.5, 4],
        head_dim=64,
    )


def test_vit_b16_with_autoformer_ti_values_is_autoformer_ti_space():
    space = autoformer_ti()
    assert space.elastic == [1, 3]  # the msa and the mlp of the block; the two skips are fixed
    d = space.decisions()
    assert d[0] == ("depth", [12, 13, 14]) and d[1] == ("embed_dim", [192, 216, 240])
    assert len(d) == 2 + 14 * 2
    assert d[2] == ("layer0.edge1", ["msa_3", "msa_4"]) and d[3] == ("layer0.edge3", ["mlp_3.5", "mlp_4"])
    assert space.smallest() == Subnet(192, 12, (("skip", "msa_3", "skip", "mlp_3.5"),) * 12)
    assert space.largest() == Subnet(240, 14, (("skip", "msa_4", "skip", "mlp_4"),) * 14)


def test_searched_cell_has_one_decision_per_elastic_edge_per_layer():
    base = load_base(FIXTURES / "searched_cell.json")
    space = FocusSpace(base, embed_dims=[32, 48], depths=[2, 3], heads=[1, 2], mlp_ratios=[1, 2], head_dim=8)
    kinds = [e.op.split("_")[0] for e in base.edges]
    assert space.elastic == [i for i, k in enumerate(kinds) if k in ("msa", "mlp")]
    assert len(space.decisions()) == 2 + 3 * len(space.elastic)
    subnet = space.sample(random.Random(0))
    for layer in subnet.layers:
        for e, op in enumerate(layer):
            assert op.split("_")[0] == kinds[e]
            if e not in space.elastic:
                assert op == base.edges[e].op


def test_decode_encode_round_trip_and_json():
    space = autoformer_ti()
    rng = random.Random(1)
    for _ in range(50):
        subnet = space.sample(rng)
        assert space.contains(subnet)
        assert len(subnet.layers) == subnet.depth
        assert space.decode(space.encode(subnet)) == subnet
        assert Subnet.from_json(json.loads(json.dumps(subnet.to_json()))) == subnet
    enc = space.encode(space.smallest())
    assert enc == [0] * len(space.decisions())


def test_sample_covers_every_choice():
    space = autoformer_ti()
    rng = random.Random(2)
    seen = [set() for _ in space.decisions()]
    for _ in range(200):
        subnet = space.sample(rng)
        for k, (i, _) in enumerate(zip(space.encode(subnet), seen)):
            if k < 2 + subnet.depth * len(space.elastic):
                seen[k].add(i)
    assert all(s == set(range(len(v))) for s, (_, v) in zip(seen, space.decisions()))


def test_contains_rejects_archs_outside_the_space():
    space = autoformer_ti()
    a = space.smallest()
    assert not space.contains(Subnet(200, a.depth, a.layers))
    assert not space.contains(Subnet(a.embed_dim, 13, a.layers))
    bad_op = (("skip", "msa_5", "skip", "mlp_4"),) + a.layers[1:]
    assert not space.contains(Subnet(a.embed_dim, a.depth, bad_op))
    fixed_changed = (("mlp_4", "msa_3", "skip", "mlp_4"),) + a.layers[1:]
    assert not space.contains(Subnet(a.embed_dim, a.depth, fixed_changed))
    with pytest.raises(ValueError):
        space.encode(Subnet(200, a.depth, a.layers))


def test_mutate_and_crossover_stay_in_the_space():
    space = autoformer_ti()
    rng = random.Random(3)
    a, b = space.smallest(), space.largest()
    assert space.mutate(a, rng, 0.0) == a
    kids = [space.crossover(a, b, rng) for _ in range(30)]
    assert all(space.contains(k) for k in kids)
    assert len({k for k in kids}) > 1
    for k in kids:  # every gene comes from a parent
        assert k.embed_dim in (a.embed_dim, b.embed_dim) and k.depth in (a.depth, b.depth)
        assert all(set(layer) <= set(a.layers[0]) | set(b.layers[0]) for layer in k.layers)
    muts = [space.mutate(a, rng, 0.5) for _ in range(30)]
    assert all(space.contains(m) for m in muts) and any(m != a for m in muts)


def test_bad_choices_and_bad_base_are_one_sentence():
    base = load_base("vit_b16")
    for kwargs, key in [
        ({"embed_dims": []}, "embed_dims"),
        ({"heads": [0, 3]}, "heads"),
        ({"depths": [2, 2]}, "depths"),
        ({"mlp_ratios": ["x"]}, "mlp_ratios"),
        ({"head_dim": 0}, "head_dim"),
    ]:
        args = {"embed_dims": [16], "depths": [1], "heads": [1], "mlp_ratios": [1.0], **kwargs}
        with pytest.raises(ConfigError, match=key):
            FocusSpace(base, **args)
    with pytest.raises(GenotypeError, match="focus.base") as e:
        load_base("no_such_cell")
    assert str(e.value).count(". ") == 0


def test_load_base_from_run_directory(tmp_path):
    (tmp_path / "genotype.json").write_text((FIXTURES / "searched_cell.json").read_text())
    assert load_base(tmp_path).edges == load_genotype(FIXTURES / "searched_cell.json").edges

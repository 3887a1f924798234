"""FocusFormer's supernet: weight entanglement, and extraction into a plain Network that computes the same."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from dasvit.focus.space import FocusSpace, load_base
from dasvit.focus.supernet import FocusSupernet
from dasvit.model.network import Network
from dasvit.model.profile import count_params

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_space(base: str) -> FocusSpace:
    """AutoFormer-like choices at toy sizes: widths not divisible by the heads, fractional ratios."""
    return FocusSpace(
        load_base(base),
        embed_dims=[20, 28, 32],
        depths=[2, 3, 4],
        heads=[1, 2, 3],
        mlp_ratios=[1.5, 2, 2.5],
        head_dim=8,
    )


@pytest.mark.parametrize("base", ["vit_b16", str(FIXTURES / "searched_cell.json")])
def test_extracted_network_computes_what_the_supernet_computes(base):
    space = tiny_space(base)
    torch.manual_seed(0)
    supernet = FocusSupernet(space, num_classes=5, image_size=16, patch_size=4).eval()
    x = torch.randn(3, 3, 16, 16)
    rng = random.Random(0)
    subnets = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(4)]
    outs = []
    for subnet in subnets:
        net = supernet.extract(subnet).eval()
        assert isinstance(net, Network) and len(net.cells) == subnet.depth
        assert net.genotype.layers == [list(layer) for layer in subnet.layers]
        with torch.no_grad():
            y = supernet(x, subnet)
            assert (y - net(x)).abs().max().item() <= 1e-5
        outs.append(y)
    assert not torch.allclose(outs[0], outs[1])  # different sub-networks compute different things


def test_weights_are_entangled_leading_slices():
    space = tiny_space("vit_b16")
    torch.manual_seed(0)
    supernet = FocusSupernet(space, num_classes=5, image_size=16, patch_size=4)
    small, large = space.smallest(), space.largest()
    # the largest weights are stored once: the supernet is exactly as big as its largest sub-network
    assert count_params(supernet) == count_params(supernet.extract(large))
    assert count_params(supernet.extract(small)) < count_params(supernet)
    net = supernet.extract(small)
    assert small.layers[0][1] == "msa_1"  # one head of 8 channels, at width 20
    qkv = supernet.cells[0].ops[1].qkv.weight  # rows: Q (3 heads x 8), K, V of the largest op
    q, k, v = qkv[0:8, :20], qkv[24:32, :20], qkv[48:56, :20]
    torch.testing.assert_close(net.cells[0].ops[1].qkv.weight, torch.cat([q, k, v]))
    torch.testing.assert_close(net.cells[0].ops[3].fc1.weight, supernet.cells[0].ops[3].fc1.weight[:30, :20])
    torch.testing.assert_close(net.embed.pos_embed, supernet.embed.pos_embed[..., :20])


def test_a_training_step_moves_only_the_weights_the_arch_uses():
    space = tiny_space("vit_b16")
    torch.manual_seed(0)
    supernet = FocusSupernet(space, num_classes=5, image_size=16, patch_size=4)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    subnet = space.smallest()  # depth 2 of 4, width 20 of 32
    opt = torch.optim.SGD(supernet.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(
        supernet(torch.randn(4, 3, 16, 16), subnet), torch.tensor([0, 1, 2, 3])
    ).backward()
    opt.step()
    after = supernet.state_dict()
    assert torch.equal(before["cells.3.ops.1.qkv.weight"], after["cells.3.ops.1.qkv.weight"])  # layer past depth
    assert torch.equal(before["embed.proj.weight"][20:], after["embed.proj.weight"][20:])  # channels past width
    assert not torch.equal(before["embed.proj.weight"][:20], after["embed.proj.weight"][:20])
    assert not torch.equal(before["cells.1.ops.3.fc2.weight"], after["cells.1.ops.3.fc2.weight"])


def test_drop_path_draws_match_the_extracted_network():
    space = tiny_space(str(FIXTURES / "searched_cell.json"))
    torch.manual_seed(0)
    supernet = FocusSupernet(space, num_classes=5, image_size=16, patch_size=4, drop_path=0.5).train()
    subnet = space.sample(random.Random(1))
    net = supernet.extract(subnet)
    assert net.training
    x = torch.randn(6, 3, 16, 16)
    torch.manual_seed(7)
    a = supernet(x, subnet)
    torch.manual_seed(7)
    b = net(x)
    assert (a - b).abs().max().item() <= 1e-5

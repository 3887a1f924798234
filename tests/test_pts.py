"""Attention-based partial token selection."""

import math

import torch

from dasvit.search.supernet import MixedEdge, SearchCell, TokenSelector

OPS = ["zero", "skip", "msa_2", "mlp_2"]


def test_selector_keeps_class_token_and_top_ratio():
    torch.manual_seed(0)
    sel = TokenSelector(16, ratio=0.3, qk_dim=8)
    x = torch.randn(3, 1 + 10, 16)
    idx, score = sel(x)
    assert idx.shape == (3, 1 + math.ceil(0.3 * 10))
    assert (idx[:, 0] == 0).all() and (idx[:, 1:] > 0).all()
    # the kept patch tokens are the highest-scoring ones
    h = sel.norm(x)
    full = torch.softmax(sel.wq(h) @ sel.wk(h).transpose(1, 2) * sel.scale, -1).mean(1)[:, 1:]
    assert torch.equal(idx[:, 1:].sort(1).values, (full.topk(3, 1).indices + 1).sort(1).values)


def test_a_mixed_edge_is_the_weighted_sum_of_its_ops():
    torch.manual_seed(0)
    edge = MixedEdge(OPS, [0, 1, 2, 3], 16)
    x, w = torch.randn(2, 5, 16), torch.softmax(torch.randn(4), -1)
    h = torch.nn.functional.layer_norm(x, (16,))  # what the node shares with every op that reads it normalised
    ops = dict(edge.ops.items())
    expected = w[1] * x + w[2] * ops["2"](h) + w[3] * ops["3"](h)  # zero adds nothing; skip reads x itself
    assert torch.allclose(edge(x, h, w), expected, atol=1e-6)
    assert torch.equal(MixedEdge(OPS, [0], 16)(x, h, w), torch.zeros_like(x))  # zero alone: no connection


def test_unselected_tokens_pass_through_and_selector_learns():
    torch.manual_seed(0)
    cell = SearchCell(16, 2, OPS, torch.ones(5, 4, dtype=torch.bool), pts_ratio=0.5, pts_dim=8)
    sel = cell.selectors[0]
    x = torch.randn(2, 9, 16)
    w = torch.softmax(torch.randn(2, 4), -1)  # the rows of node 0's two edges (0->2, 0->3)
    out = cell.leave(x, w, 0)
    idx, _ = sel(x)
    dropped = torch.ones(2, 9, dtype=torch.bool)
    dropped.scatter_(1, idx, False)
    for e in range(2):
        assert torch.equal(out[e][dropped], x[dropped])  # unselected tokens unchanged
        assert not torch.allclose(out[e][~dropped], x[~dropped])
    out.pow(2).sum().backward()
    assert sel.wq.weight.grad is not None and sel.wq.weight.grad.abs().sum() > 0
    assert sel.wk.weight.grad is not None and sel.wk.weight.grad.abs().sum() > 0

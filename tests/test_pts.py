"""Attention-based partial token selection."""

import math

import torch

from dasvit.search.supernet import MixedEdges, TokenSelector

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


def test_unselected_tokens_pass_through_and_selector_learns():
    torch.manual_seed(0)
    ne = MixedEdges(16, OPS, dsts=[2, 3], rows=[0, 1], active=[OPS, OPS])
    sel = TokenSelector(16, ratio=0.5, qk_dim=8)
    x = torch.randn(2, 9, 16)
    w = torch.softmax(torch.randn(2, 4), -1)
    out = ne(x, w, sel)
    idx, _ = sel(x)
    dropped = torch.ones(2, 9, dtype=torch.bool)
    dropped.scatter_(1, idx, False)
    for e in range(2):
        assert torch.equal(out[e][dropped], x[dropped])  # unselected tokens unchanged
        assert not torch.allclose(out[e][~dropped], x[~dropped])
    out.pow(2).sum().backward()
    assert sel.wq.weight.grad is not None and sel.wq.weight.grad.abs().sum() > 0
    assert sel.wk.weight.grad is not None and sel.wk.weight.grad.abs().sum() > 0

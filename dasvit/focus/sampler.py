"""The budget-conditioned architecture sampler (an LSTM) and its REINFORCE step.

FocusFormer's idea (with the details from PNAG and AttentiveNAS): a small LSTM is given a
FLOPs budget as its first input, one of K bins over the space's FLOPs range, and then walks the space's
decisions (depth, embed_dim, then every layer's op sizes), each from its own linear head, feeding the
embedding of each choice to the next step. It learns from architectures it drew and that were scored
with the supernet's inherited weights: ranked Pareto-aware per budget bin (`focus.lstm.rank`: `window`, the
default, `pareto.window_ranks`: the bin's own FLOPs range first, lower loss winning there, then smaller
networks, then over budget; or `cap`, `pareto.pareto_ranks`: within budget beats over budget, lower loss
winning within it), REINFORCE on the standardized ranks with an entropy bonus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .space import FocusSpace, Subnet

_LAYER = re.compile(r"^layer(\d+)\.")


def budget_edges(min_flops: int, max_flops: int, bins: int) -> list[float]:
    """The budget of each of `bins` bins: bin k allows up to min + (k + 1)/K of the range (the last: all)."""
    span = max(max_flops - min_flops, 0)
    return [min_flops + span * (k + 1) / bins for k in range(bins)]


def bin_for_budget(budget: float, edges: list[float]) -> int:
    """The bin to ask for a budget: the largest whose budget does not exceed it (bin 0 below that)."""
    k = 0
    for i, b in enumerate(edges):
        if b <= budget:
            k = i
    return k


@dataclass
class Draw:
    """Architectures drawn for a batch of budget bins, with what REINFORCE needs."""

    subnets: list[Subnet]
    choices: torch.Tensor  # [n, decisions] option index per decision
    log_prob: torch.Tensor  # [n], differentiable; decisions of layers past the depth not counted
    entropy: torch.Tensor  # [n], summed over the counted decisions
    max_entropy: torch.Tensor  # [n], the uniform draw's entropy over the same decisions (log of option counts)


class SubnetSampler(nn.Module):
    """An LSTM that draws architectures of `space` for a budget bin.

    Args:
        space: the elastic space; its `decisions()` are walked in order.
        bins: K, the number of budget bins (the first input is the bin's embedding).
        hidden: width of the LSTM state and of every embedding.
    """

    def __init__(self, space: FocusSpace, bins: int, hidden: int = 64):
        super().__init__()
        self.space = space
        self.bins = bins
        decisions = space.decisions()
        self.budget_embed = nn.Embedding(bins, hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, len(options)) for _, options in decisions)
        self.choice_embed = nn.ModuleList(nn.Embedding(len(options), hidden) for _, options in decisions)
        # which layer a decision belongs to (-1: depth, embed_dim); it counts only if the depth reaches it
        layer = [int(m.group(1)) if (m := _LAYER.match(name)) else -1 for name, _ in decisions]
        self.register_buffer("layer_of", torch.tensor(layer), persistent=False)
        self.register_buffer("depths", torch.tensor([int(d) for d in decisions[0][1]]), persistent=False)
        sizes = torch.tensor([float(len(options)) for _, options in decisions])
        self.register_buffer("log_options", sizes.log(), persistent=False)
        assert decisions[0][0] == "depth", "the space's first decision must be the depth"

    def forward(self, bins: torch.Tensor, generator: torch.Generator | None = None, greedy: bool = False) -> Draw:
        """Draw one architecture per entry of `bins` (a LongTensor of bin indices)."""
        n = bins.shape[0]
        x = self.budget_embed(bins)
        h = torch.zeros(n, self.lstm.hidden_size)
        c = torch.zeros_like(h)
        choices, logps, ents = [], [], []
        for head, embed in zip(self.heads, self.choice_embed):
            h, c = self.lstm(x, (h, c))
            logits = head(h)
            logp_all = torch.log_softmax(logits, dim=-1)
            if greedy:
                pick = logits.argmax(dim=-1)
            else:
                pick = torch.multinomial(logp_all.detach().exp(), 1, generator=generator).squeeze(1)
            choices.append(pick)
            logps.append(logp_all.gather(1, pick[:, None]).squeeze(1))
            ents.append(-(logp_all.exp() * logp_all).sum(-1))
            x = embed(pick)
        choice = torch.stack(choices, 1)
        depth = self.depths[choice[:, 0]]
        counted = (self.layer_of[None, :] < depth[:, None]).float()  # [n, decisions]
        log_prob = (torch.stack(logps, 1) * counted).sum(1)
        entropy = (torch.stack(ents, 1) * counted).sum(1)
        subnets = [self.space.decode(row) for row in choice.tolist()]
        return Draw(subnets, choice, log_prob, entropy, (self.log_options[None, :] * counted).sum(1))


def reinforce_loss(
    log_prob: torch.Tensor,
    entropy: torch.Tensor,
    ranks: list[float],
    entropy_coef: float,
    floor: float = 0.0,
    max_entropy: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE on standardized ranks or costs (lower is better: a larger advantage) with an entropy bonus.
    Equal values give no advantage (all equal: only the entropy bonus). With `floor` > 0 a draw whose entropy
    is below `floor` times the uniform draw's (`max_entropy`) is pushed back up with full weight: the sampler
    concentrates on a budget's networks without collapsing onto a few of them."""
    r = torch.tensor(ranks, dtype=torch.float32)
    advantage = -(r - r.mean()) / (r.std(unbiased=False) + 1e-8)
    loss = -(advantage * log_prob).mean() - entropy_coef * entropy.mean()
    if floor > 0 and max_entropy is not None:
        loss = loss + torch.relu(floor * max_entropy - entropy).mean()
    return loss

"""Operation fairness regularization (the paper's answer to skip-connect collapse).

With w_e = softmax(α_e) over edge e's active ops (pruned ops exactly 0):

    L_skip = mean_e max(0, w_e[skip] − τ / n_e)      τ = search.fairness.skip_threshold, n_e active ops
    W_t    = mean_e Σ_{o ∈ t} w_e[o]                 for each op type t ∈ {msa, mlp}
    L_type = Σ_t λ_up · max(0, W_t − u) + λ_low · max(0, l − W_t)
    L_fair = β_skip · L_skip + β_type · L_type

τ = 0 is the paper's L_skip = mean_e w_e[skip]. `fairness_terms` is the one definition: the α step adds
`fairness_loss` to its loss, and every epoch event carries the terms (`fairness`) and the type shares W_t
(`type_shares`, `dasvit.model.opspec.type_shares` of the epoch's `arch_weights`, which a reader of an older
run works out the same way).
"""

from __future__ import annotations

import torch

from ..model.opspec import parse_op
from ..run.config import FairnessConfig


def fairness_terms(w: torch.Tensor, ops: list[str], cfg: FairnessConfig) -> dict[str, torch.Tensor]:
    """L_skip = mean_e max(0, w_e[skip] − τ/n_e) (τ = skip_threshold, n_e the edge's active ops; τ = 0 is
    the paper's mean_e w_e[skip]);  W_t = mean_e Σ_{o∈t} w_e[o] for t ∈ {msa, mlp};
    L_type = Σ_t λ_up·max(0, W_t − u) + λ_low·max(0, l − W_t);  L_fair = β1·L_skip + β2·L_type."""
    types = [parse_op(o).type for o in ops]
    zero = w.new_zeros(())
    l_skip = zero
    if "skip" in types:
        share = 1.0 / (w > 0).sum(dim=1).clamp(min=1)  # pruned ops have weight exactly 0
        l_skip = torch.relu(w[:, types.index("skip")] - cfg.skip_threshold * share).mean()
    l_type = zero
    for t in ("msa", "mlp"):
        cols = [c for c, ty in enumerate(types) if ty == t]
        if not cols:
            continue
        share = w[:, cols].sum(dim=1).mean()
        l_type = l_type + cfg.lambda_up * torch.relu(share - cfg.upper) + cfg.lambda_low * torch.relu(cfg.lower - share)
    total = cfg.beta_skip * l_skip + cfg.beta_type * l_type
    return {"skip": l_skip, "type": l_type, "total": total}


def fairness_loss(w: torch.Tensor, ops: list[str], cfg: FairnessConfig) -> torch.Tensor:
    return fairness_terms(w, ops, cfg)["total"]


def skip_fraction(w: torch.Tensor, ops: list[str]) -> float:
    return float(w[:, ops.index("skip")].mean()) if "skip" in ops else 0.0

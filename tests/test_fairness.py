"""Operation fairness regularisation against values computed by hand."""

import pytest
import torch

from dasvit.run.config import FairnessConfig
from dasvit.search.fairness import fairness_terms

OPS = ["zero", "skip", "msa_4", "mlp_2"]


def test_fairness_terms_match_hand_computation():
    w = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.0, 0.2, 0.1, 0.7]])
    cfg = FairnessConfig(
        skip_threshold=0.0, beta_skip=2.0, beta_type=3.0, lower=0.25, upper=0.35, lambda_up=1.5, lambda_low=0.5
    )
    t = fairness_terms(w, OPS, cfg)
    # L_skip = mean(0.5, 0.2) = 0.35
    # W_msa = mean(0.3, 0.1) = 0.2 -> below l: 0.5 * (0.25 - 0.2) = 0.025
    # W_mlp = mean(0.1, 0.7) = 0.4 -> above u: 1.5 * (0.4 - 0.35) = 0.075
    # L_type = 0.1; L_fair = 2 * 0.35 + 3 * 0.1 = 1.0
    assert abs(float(t["skip"]) - 0.35) < 1e-6
    assert abs(float(t["type"]) - 0.1) < 1e-6
    assert abs(float(t["total"]) - 1.0) < 1e-6


def test_fairness_is_zero_inside_the_bounds_and_pushes_skip_down():
    w = torch.tensor([[0.0, 0.2, 0.4, 0.4]], requires_grad=True)
    cfg = FairnessConfig(lower=0.2, upper=0.6, skip_threshold=0.0)
    t = fairness_terms(w, OPS, cfg)
    assert t["type"].item() == 0.0
    t["total"].backward()
    assert w.grad[0, 1] > 0  # gradient descent lowers the skip weight


def test_skip_is_penalised_only_above_its_threshold_share_of_the_active_ops():
    cfg = FairnessConfig(skip_threshold=1.0)
    # row 1: 4 active ops, skip 0.5 > 1/4; row 2: zero pruned (weight 0), 3 active ops, skip 0.2 < 1/3
    w = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.0, 0.2, 0.1, 0.7]], requires_grad=True)
    t = fairness_terms(w, OPS, cfg)
    assert abs(t["skip"].item() - (0.5 - 0.25) / 2) < 1e-6
    t["skip"].backward()
    assert w.grad[0, 1] > 0 and w.grad[1, 1] == 0  # no push on skip at or below its fair share


def test_the_skip_chart_reads_the_engines_type_shares_and_works_them_out_only_for_older_runs():
    from dasvit.model.opspec import type_shares
    from dasvit_tui.widgets.skip import type_share

    w = torch.softmax(torch.randn(5, len(OPS)), 1)
    weights = {f"{e}->9": {op: float(w[e, c]) for c, op in enumerate(OPS)} for e in range(5)}
    shares = type_shares(weights)
    msa = [c for c, op in enumerate(OPS) if op.startswith("msa")]
    assert shares["msa"] == pytest.approx(float(w[:, msa].sum(1).mean()))  # W_t = mean_e Σ_{o ∈ t} w_e[o]
    assert type_share({"type_shares": {**shares, "msa": 0.123}, "arch_weights": weights}, "msa") == 0.123
    assert type_share({"arch_weights": weights}, "msa") == pytest.approx(shares["msa"])  # a run without them
    assert type_share({}, "mlp") is None

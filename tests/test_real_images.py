"""The search on real images (scikit-learn's digits) learns, and pruning keeps what weak signal cannot judge.

The reported failure: on real digits the supernet stayed at chance (0.10) in every stage and the
fairness penalty, deciding alone, pruned `skip` from every edge. These tests fail if either comes back.
"""

from __future__ import annotations

import pytest
import torch

from conftest import events, of_type, sets
from dasvit.run.config import DEFAULT_OPS
from dasvit.search.derivation import prune_proposal
from dasvit.search.supernet import edge_list, edge_name

# Three stages on real digits in seconds: native 8 px, patches of 4 px (4 tokens), width 24.
DIGITS_TINY = [
    "data.image_size=8",
    "space.patch_size=4",
    "space.embed_dim=24",
    "search.pts.dim=8",
    "search.stages=[{depth: 1, keep: 8, epochs: 2}, {depth: 2, keep: 4, epochs: 2}, {depth: 2, keep: 2, epochs: 2}]",
    "search.arch_warmup_epochs=1",
    "data.holdout=0",  # all 1,438 training scans: the stages are 2 epochs of about 22 steps
]
CHANCE = 0.1


@pytest.mark.slow  # a whole 3-stage search on real digits: the default suite's longest test (pytest -m slow runs it)
def test_search_on_real_digits_ends_every_stage_well_above_chance(tmp_path):
    from dasvit.search.searcher import main

    run = tmp_path / "digits"
    assert main(["--preset", "digits", "--run-dir", str(run), "--no-progress", *sets(DIGITS_TINY)]) == 0
    epochs = of_type(events(run), "epoch")
    stage_end = {e["stage"]: e["val_acc"] for e in epochs}  # the last epoch of each stage
    assert sorted(stage_end) == [1, 2, 3]
    for stage, acc in stage_end.items():
        assert acc > 2.5 * CHANCE, f"stage {stage} ended at validation accuracy {acc:.3f}"
    assert of_type(events(run), "run_end")[0]["status"] == "finished"


def _weights(skip: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """α weights over the 8 default ops on the 9 edges of a 3-node cell, skip at `skip` on every edge."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(len(edge_list(3)), len(DEFAULT_OPS), generator=g) * 0.02 + 0.12
    w[:, DEFAULT_OPS.index("skip")] = 0.0
    w = w / w.sum(1, keepdim=True) * (1 - skip)
    w[:, DEFAULT_OPS.index("skip")] = skip
    return w, torch.ones_like(w, dtype=torch.bool)


def test_pruning_keeps_one_skip_a_near_tie_would_strip_but_not_one_the_data_pushed_down():
    w, mask = _weights(skip=0.115)  # a hair below the others (1/8 each): top-5 strips it from every edge
    plain = prune_proposal(w, mask, DEFAULT_OPS, 3, 5)
    assert not any("skip" in ops for ops in plain.values())
    kept = prune_proposal(w, mask, DEFAULT_OPS, 3, 5, skip_floor=0.5)
    with_skip = [e for e, ops in kept.items() if "skip" in ops]
    assert len(with_skip) == 1 and with_skip[0].split("->")[0] in ("0", "1")  # leaves a cell input
    assert all(len(ops) == 5 for ops in kept.values())
    low, mask = _weights(skip=0.03)  # a quarter of its fair share: the data asks for its removal
    assert not any("skip" in ops for ops in prune_proposal(low, mask, DEFAULT_OPS, 3, 5, skip_floor=0.5).values())


def test_zero_competes_for_a_slot_or_stays_outside_the_slots_or_goes():
    w, mask = _weights(skip=0.125)
    w[:, DEFAULT_OPS.index("zero")] = 0.5  # zero strongest everywhere
    compete = prune_proposal(w, mask, DEFAULT_OPS, 3, 3)
    free = prune_proposal(w, mask, DEFAULT_OPS, 3, 3, zero="free")
    drop = prune_proposal(w, mask, DEFAULT_OPS, 3, 3, zero="drop")
    for e in map(edge_name, edge_list(3)):
        assert compete[e][0] == "zero" and len(compete[e]) == 3
        assert free[e][-1] == "zero" and len(free[e]) == 4 and "zero" not in free[e][:3]
        assert "zero" not in drop[e] and len(drop[e]) == 3
        assert free[e][:3] == drop[e]  # the same three strongest non-zero ops


def test_derivation_keeps_a_residual_path_unless_the_data_pushed_skip_down():
    from dasvit.search.derivation import derive_genotype, has_residual_path

    w, mask = _weights(skip=0.115)  # every other op outweighs skip: the plain derivation picks no skip
    plain = derive_genotype(w, mask, DEFAULT_OPS, 3, 2)
    assert not has_residual_path(plain)
    kept = derive_genotype(w, mask, DEFAULT_OPS, 3, 2, skip_floor=0.5)
    assert has_residual_path(kept) and sum(e.op == "skip" for e in kept.edges) == 1
    assert all(len(kept.incoming(j)) == 2 for j in (2, 3, 4))  # still two edges into every node
    low, mask = _weights(skip=0.03)
    assert not has_residual_path(derive_genotype(low, mask, DEFAULT_OPS, 3, 2, skip_floor=0.5))

"""`python experiments/focus_claim.py` end to end on a tiny focus-demo: two seeds, both supernets, every method at
every budget, the two sides' picks retrained from scratch, the summary over seeds and the figure.
Heavier than the default suite allows (supernets and retrains in child processes): marked slow."""

from __future__ import annotations

import json

import pytest

TINY = [
    "focus.epochs=2",
    "focus.warmup_epochs=1",
    "focus.steps_per_epoch=3",
    "focus.sampler_every=2",
    "retrain.epochs=1",
    "retrain.warmup_epochs=0",
    "retrain.steps_per_epoch=2",
    "data.synthetic_train=256",
    "data.synthetic_val=64",
]


@pytest.mark.slow
def test_the_claim_compares_both_supernets_over_seeds_and_retrains_the_picks(tmp_path):
    from experiments.focus_claim import RETRAINED, ROWS, main

    out = tmp_path / "claim"
    args = ["--preset", "focus-demo", "--out", str(out), "--seeds", "0,1", "--samples", "3"]
    assert main([*args, *[a for o in TINY for a in ("--set", o)]]) == 0
    result = json.loads((out / "claim.json").read_text())
    assert result["seeds"] == [0, 1] and set(result["per_seed"]) == {"0", "1"}
    for res in result["per_seed"].values():
        assert len(res["rows"]) == len(ROWS) * 3
        for row in res["rows"]:
            assert row["flops"] <= row["budget_flops"] and 1 <= row["found_at"] <= row["evaluations"] <= 3
            if (row["method"], row["supernet"]) in RETRAINED:  # retrained from scratch, reported on the test split
                m = json.loads((out / row["retrain_dir"].split(str(out) + "/")[-1] / "metrics.json").read_text())
                assert m["top1"] == row["retrain_top1"] and m["splits"]["top1"].startswith("test")
    for entry in result["summary"]:
        assert entry["inherited_top1"]["n"] == 2
        assert ("retrain_top1" in entry) == ((entry["method"], entry["supernet"]) in RETRAINED)
    assert (out / "claim.png").stat().st_size > 0 and "mean ± sample std" in (out / "claim.md").read_text()
    # a second call reuses every supernet and retrain: nothing trains again
    logs = sorted(out.rglob("*.log"))
    sizes = {p: p.stat().st_size for p in logs}
    assert main([*args, *[a for o in TINY for a in ("--set", o)]]) == 0
    assert {p: p.stat().st_size for p in logs} == sizes

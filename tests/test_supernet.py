"""The supernet's mixed edges: what dasvit 0.1 wrote still loads, pruned ops have no parameters; the
partial-token memory; the bench."""

import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from dasvit.model.cost import op_cost
from dasvit.reports.bench import BenchPlan, RetrainSizes, SearchSizes, build_supernet, run_bench, saved_tensor_bytes
from dasvit.run.config import DEFAULT_OPS
from dasvit.search.supernet import Supernet, edge_list
from dasvit_tui.commands.bench import print_table

TOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def pruned_mask() -> torch.Tensor:
    """Per edge, a different subset of the 8 ops, down to zero alone and a single msa or mlp."""
    keep = [
        ["zero"],
        ["skip", "msa_8"],
        ["mlp_2"],
        ["zero", "msa_4", "msa_12", "mlp_0.5"],
        ["skip", "mlp_0.5", "mlp_4"],
        DEFAULT_OPS,
        ["msa_12"],
        ["zero", "skip"],
        ["msa_4", "mlp_4"],
    ]
    assert len(keep) == len(edge_list(3))
    return torch.tensor([[o in k for o in DEFAULT_OPS] for k in keep])


def supernet(pts: float | None, mask: torch.Tensor | None) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(10, 16, 4, 24, 3, DEFAULT_OPS, depth=2, mask=mask, pts_ratio=pts, pts_dim=8)
    with torch.no_grad():  # random α and LayerNorm affines, so the folding is really exercised
        net.alpha.normal_()
        for m in net.modules():
            if isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.normal_(1.0, 0.5)
                m.bias.normal_(0.0, 0.5)
    return net


def loss_and_grads(net: Supernet, x, y, wrt: list[torch.Tensor]):
    loss = F.cross_entropy(net(x), y)
    return loss.detach(), torch.autograd.grad(loss, wrt, allow_unused=True)


LEGACY = Path(__file__).parent / "fixtures" / "legacy-supernet.pt"


def test_a_supernet_written_by_dasvit_0_1_loads_and_computes_what_it_computed():
    """dasvit 0.1 stored each node's ops fused (dasvit.search.legacy); its stage supernets still load, and a seed
    still draws the supernet it drew then (the fixture holds both, computed by that version)."""
    old = torch.load(LEGACY, weights_only=True)
    net = Supernet(10, 16, 4, 24, 3, DEFAULT_OPS, depth=2, mask=old["mask"], pts_ratio=0.5, pts_dim=8).eval()
    assert any(".node_edges." in k for k in old["model"])
    net.load_state(old["model"])
    with torch.no_grad():
        assert torch.allclose(net(old["x"]), old["logits"], rtol=0, atol=1e-6)
    torch.manual_seed(old["seed"])
    fresh = Supernet(10, 16, 4, 24, 3, DEFAULT_OPS, depth=2, mask=old["mask"], pts_ratio=0.5, pts_dim=8).eval()
    with torch.no_grad():
        assert torch.allclose(fresh(old["x"]), old["seed_logits"], rtol=0, atol=1e-6)


def test_zero_only_edge_contributes_nothing_and_pruned_ops_have_no_parameters():
    net = supernet(None, pruned_mask())
    cell = net.cells[0]
    x = torch.randn(2, 17, 24)
    w = net.arch_weights()
    assert torch.equal(cell.edges[0](x, None, w[0]), torch.zeros_like(x))  # 0->2 keeps zero alone
    for r, edge in enumerate(cell.edges):  # one module per active op, none for a pruned one
        active = [o for c, o in enumerate(DEFAULT_OPS) if pruned_mask()[r, c]]
        assert [DEFAULT_OPS[int(c)] for c in edge.ops] == active
        # each op's own parameters (dasvit.model.cost), less its LayerNorm affine (none in the search)
        assert sum(p.numel() for p in edge.parameters()) == sum(
            op_cost(o, 24, 17).params - (48 if o[0] == "m" else 0) for o in active
        )


def test_saved_tensor_bytes_counts_distinct_activations_not_parameters():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)
    # linear saves x (and its own weight, a parameter); relu saves its output
    n = saved_tensor_bytes(lambda: torch.relu(lin(x)), exclude=list(lin.parameters()))
    assert n == x.nbytes + 5 * 4 * 4


def test_partial_token_selection_saved_bytes_fall_with_the_ratio():
    sizes = SearchSizes(image_size=32, patch_size=4, dim=24, depth=1, batch=8, pts_dim=8)  # 64 patches
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    saved = {}
    for ratio in (None, 0.5, 0.25):
        net = build_supernet(sizes, torch.device("cpu"), ratio)
        saved[ratio] = saved_tensor_bytes(lambda net=net: F.cross_entropy(net(x), y), exclude=list(net.parameters()))
    assert saved[None] > saved[0.5] > saved[0.25]
    # not quite r: the selector's N×N scores and the node states do not shrink with the kept tokens
    # (measured here: 0.59 / 0.34)
    assert saved[0.5] / saved[None] <= 0.66
    assert saved[0.25] / saved[None] <= 0.42


def test_bench_smoke_measures_every_key_and_prints_the_table(capsys):
    tiny = BenchPlan(SearchSizes(16, 4, 24, 1, 4, pts_dim=8), RetrainSizes(32, 1), repeats=2, warmup=1)
    result = run_bench(True, "cpu", plan=tiny)
    s, r = result["search"], result["retrain"]
    for key in ("images_per_s", "checkpointed_images_per_s", "checkpoint_slowdown", "pts_memory_ratio"):
        assert s[key] > 0, key
    assert set(s["saved_bytes"]) == {"off", "0.5", "0.25"}
    assert set(r["images_per_s"]) == {"ours", "peer"} and r["per_flop_vs_peer"] > 0
    assert r["flops_per_image"]["ours"] == r["flops_per_image"]["peer"]  # both are ViT-B/16
    json.dumps(result)
    print_table(result)
    out = capsys.readouterr().out
    assert "bi-level step images/s" in out and "per-FLOP" in out


def test_bench_refuses_a_device_it_cannot_use():
    device = "tpu" if torch.cuda.is_available() else "cuda"
    res = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "bench", "--device", device],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "--device" in res.stderr and "Traceback" not in res.stderr

"""Fused mixed edges against the per-op reference, partial-token memory, and the bench."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dasvit.model.cost import op_cost
from dasvit.reports.bench import BenchPlan, RetrainSizes, SearchSizes, build_supernet, run_bench, saved_tensor_bytes
from dasvit.run.config import DEFAULT_OPS
from dasvit.search.fused import disable_fused, enable_fused
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


@pytest.mark.parametrize("pts", [None, 0.5], ids=["pts-off", "pts-0.5"])
@pytest.mark.parametrize("pruned", [False, True], ids=["all-ops", "pruned"])
def test_fused_matches_reference_outputs_and_gradients(pts, pruned):
    net = supernet(pts, pruned_mask() if pruned else None)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 4, 7])
    params = [net.alpha] + net.weight_parameters()
    results = {}
    for fused in (False, True):
        (enable_fused if fused else disable_fused)(net)
        logits = net(x)
        full = torch.autograd.grad(F.cross_entropy(logits, y), params, allow_unused=True)
        arch = loss_and_grads(net, x, y, [net.alpha])[1]  # the architecture step: ∂α alone
        weights = loss_and_grads(net, x, y, params[1:])[1]  # the weight step: no ∂α
        results[fused] = (logits.detach(), full, arch, weights)
    ref, fus = results[False], results[True]
    assert rel_err(fus[0], ref[0]) <= TOL
    names = ["alpha"] + [n for n, _ in net.named_parameters() if n != "alpha"]
    for name, g_ref, g_fus in zip(names, ref[1], fus[1]):
        assert (g_ref is None) == (g_fus is None), name
        if g_ref is not None:
            assert rel_err(g_fus, g_ref) <= TOL, name
    assert rel_err(fus[2][0], ref[2][0]) <= TOL
    assert rel_err(fus[2][0], ref[1][0]) <= TOL  # ∂α alone equals ∂α of the full backward
    for g_ref, g_fus in zip(ref[3], fus[3]):
        if g_ref is not None:
            assert rel_err(g_fus, g_ref) <= TOL


def test_zero_only_edge_contributes_nothing_and_pruned_ops_have_no_gradient_path():
    net = supernet(None, pruned_mask())
    enable_fused(net)
    ne = net.cells[0].node_edges[0]  # edges 0->2 (zero only), 0->3, 0->4
    x = torch.randn(2, 17, 24)
    out = ne(x, net.arch_weights()[ne.rows], None)
    assert torch.equal(out[0], torch.zeros_like(x))
    assert ne.op_tensors(0, "zero") == {} and not any(
        (0, o) in ne.msa_slot or (0, o) in ne.mlp_index for o in DEFAULT_OPS
    )
    # parameters only for the active ops: each op's own (dasvit.cost), less its LayerNorm affine (none here)
    active = [o for e in range(ne.n_out) for o in ne.active[e]]
    assert sum(p.numel() for p in ne.parameters()) == sum(
        op_cost(o, 24, 17).params - (48 if o[0] == "m" else 0) for o in active
    )


def test_saved_tensor_bytes_counts_distinct_activations_not_parameters():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)
    # linear saves x (and its own weight, a parameter); relu saves its output
    n = saved_tensor_bytes(lambda: torch.relu(lin(x)), exclude=list(lin.parameters()))
    assert n == x.nbytes + 5 * 4 * 4


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_partial_token_selection_saved_bytes_fall_with_the_ratio(fused):
    sizes = SearchSizes(image_size=32, patch_size=4, dim=24, depth=1, batch=8, pts_dim=8)  # 64 patches
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    saved = {}
    for ratio in (None, 0.5, 0.25):
        net = build_supernet(sizes, torch.device("cpu"), ratio)
        if fused:
            enable_fused(net)
        saved[ratio] = saved_tensor_bytes(lambda net=net: F.cross_entropy(net(x), y), exclude=list(net.parameters()))
    assert saved[None] > saved[0.5] > saved[0.25]
    # not quite r: the selector's N×N scores, the node states and (fused) the folded first-layer
    # weights do not shrink with the kept tokens (measured here: 0.59 / 0.34 reference, 0.63 / 0.38 fused)
    assert saved[0.5] / saved[None] <= 0.66
    assert saved[0.25] / saved[None] <= 0.42


def test_bench_smoke_measures_every_key_and_prints_the_table(capsys):
    tiny = BenchPlan(SearchSizes(16, 4, 24, 1, 4, pts_dim=8), RetrainSizes(32, 1), repeats=2, warmup=1)
    result = run_bench(True, "cpu", plan=tiny)
    s, r = result["search"], result["retrain"]
    for key in ("naive_images_per_s", "fused_images_per_s", "fused_speedup", "checkpoint_slowdown", "pts_memory_ratio"):
        assert s[key] > 0, key
    assert set(s["saved_bytes"]) == {"off", "0.5", "0.25"}
    assert set(r["images_per_s"]) == {"ours", "peer"} and r["per_flop_vs_peer"] > 0
    assert r["flops_per_image"]["ours"] == r["flops_per_image"]["peer"]  # both are ViT-B/16
    json.dumps(result)
    print_table(result)
    out = capsys.readouterr().out
    assert "fused speedup" in out and "per-FLOP" in out


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

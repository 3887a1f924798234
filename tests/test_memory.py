"""Will it fit: the per-stage memory estimate against measured runs, checkpointed edges against stored ones,
`dasvit search --dry-run`, and the estimate a search emits."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dasvit.reports.memory import Activations, MemorySizeError, StageMemory, parse_bytes, variant_key
from dasvit.reports.memory_measure import assumed_mask, build_stage_net, estimate_stage, op_ranking, set_variant
from dasvit.run.config import DEFAULT_OPS
from dasvit.run.distributed import DistInfo
from dasvit.run.presets import load_config
from dasvit.search.bilevel import BilevelStep
from dasvit.search.supernet import Supernet
from dasvit.train.data import num_classes

TINY = [
    "data.image_size=16",
    "space.patch_size=4",
    "space.embed_dim=24",
    "data.batch_size=8",
    "search.pts.dim=8",
    "search.stages=[{depth: 2, keep: 8, epochs: 1}, {depth: 3, keep: 3, epochs: 1}]",
]


def tiny_cfg(*extra: str):
    return load_config("demo", [*TINY, *extra])


def held_after_forward(net, x, y, precision: str) -> int:
    """Bytes allocated during the forward and loss that are still alive after it (what autograd holds for
    backward, and the loss), from the profiler's allocation records: a measurement independent of the
    saved-tensor hooks the estimate uses. The batch is copied inside the window, so it counts when the graph
    holds it (fp32: the stem's conv saves its input; bf16: a bf16 copy of it)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = net(x.clone())
        loss = F.cross_entropy(logits.float(), y)
    held = sum(e.self_cpu_memory_usage for e in prof.key_averages())
    del loss, logits
    return held


@pytest.mark.slow  # 15 s for its two paths: issue 21's acceptance check, run by pytest -m slow
def test_estimated_activations_agree_with_a_measured_run_of_the_stage_within_10_percent():
    cfg = tiny_cfg()
    mask, assumed = assumed_mask(cfg, 0)
    net = build_stage_net(cfg, 0, mask)
    classes = num_classes(cfg.data)
    est = estimate_stage(
        net,
        1,
        2,
        8,
        cfg.data.batch_size,
        num_classes=classes,
        in_chans=3,
        image_size=16,
        batches=(1, 2),
        assumed=assumed,
    )
    batch = cfg.data.batch_size
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, 3, 16, 16, generator=g), torch.randint(0, classes, (batch,), generator=g)
    assert len(est.activations) == 8  # fp32/bf16 x PTS on/off x edges stored/checkpointed
    for precision in ("fp32", "bf16"):
        for pts in (False, True):
            for ckpt in (False, True):
                set_variant(net, pts, ckpt)
                measured = held_after_forward(net, x, y, precision)
                estimate = est.activations[variant_key(precision, pts, ckpt)].at(batch)  # what the forward saves
                assert abs(estimate - measured) <= 0.10 * measured, (precision, pts, ckpt, estimate, measured)
                if ckpt:  # the step's bound adds the node recomputed in backward: its share of the stored edges
                    stored = est.activations[variant_key(precision, pts, False)].at(batch)
                    share = est.recompute_fraction * (stored - estimate)
                    assert est.parts(precision, pts, True)["activations"] == pytest.approx(estimate + share, abs=1)
    # what the estimate says it measured: PTS saves less, bf16 less, checkpointing far less
    at = {k: a.at(batch) for k, a in est.activations.items()}
    assert at["fp32/pts"] < 0.7 * at["fp32/plain"] and at["bf16/plain"] < 0.8 * at["fp32/plain"]
    assert at["fp32/plain/ckpt"] < 0.2 * at["fp32/plain"]
    assert est.recompute_fraction == 3 / 18  # nodes 0 and 1 have 3 of a cell's 9 edges; 2 cells


def test_weights_gradients_and_optimizer_state_are_exact_after_a_real_step():
    cfg = tiny_cfg()
    net = build_stage_net(cfg, 0, None)
    classes = num_classes(cfg.data)
    est = estimate_stage(
        net,
        1,
        2,
        8,
        8,
        num_classes=classes,
        in_chans=3,
        image_size=16,
        precisions=("fp32",),
        checkpoint_variants=(False,),
    )
    step = BilevelStep.for_stage(net, cfg.search, 10, DistInfo(device=torch.device("cpu")))
    batch = (torch.randn(8, 3, 16, 16), torch.randint(0, classes, (8,)))
    step(batch, batch)  # α step and weight step: every gradient and both optimizers' moments exist
    params = list(net.parameters())
    state = [
        t
        for opt in (step.w_opt, step.a_opt)
        for s in opt.state.values()
        for k, t in s.items()
        if k != "step"  # a scalar per parameter
    ]
    assert est.states(True) == {
        "weights": sum(p.nbytes for p in params),
        "gradients": sum(p.grad.nbytes for p in params),
        "optimizer": sum(t.nbytes for t in state),
    }


def test_a_later_stage_assumes_the_most_expensive_ops_per_edge():
    ranked = op_ranking(DEFAULT_OPS, 24, 9, 8)
    assert ranked[0] == "mlp_4" and set(ranked[-2:]) == {"zero", "skip"}
    mask, assumed = assumed_mask(tiny_cfg(), 1)  # stage 2 keeps 3
    assert assumed == [o for o in DEFAULT_OPS if o in ranked[:3]] and mask.sum(1).tolist() == [3] * mask.shape[0]
    assert assumed_mask(tiny_cfg(), 0)[1] is None  # stage 1: every op


def test_largest_batch_and_json_round_trip():
    m = StageMemory(1, 2, 8, 64, params=1000, selector_params=10, alpha=72, activations={})
    m.activations["fp32/pts"] = Activations.fit({1: 1_000_000, 2: 1_500_000})  # 0.5 MB per image over 0.5 MB
    fixed = 16 * (1010 + 72)
    assert m.max_batch("fp32", True, fixed + 500_000 + 10 * 500_000) == 10
    assert m.max_batch("fp32", True, fixed + 500_000 + 10 * 500_000 - 1) == 9
    assert m.max_batch("fp32", True, 100) == 0
    assert StageMemory.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_gpu_mem_sizes():
    assert parse_bytes("24G") == parse_bytes("24GiB") == parse_bytes("24 GB") == 24 * 2**30
    assert parse_bytes("16384M") == 16 * 2**30 and parse_bytes("1.5t") == int(1.5 * 2**40)
    for bad in ("24Q", "", "-3G", "0", "G"):
        with pytest.raises(MemorySizeError):
            parse_bytes(bad)


@pytest.mark.parametrize("pts", [None, 0.5], ids=["pts-off", "pts-0.5"])
def test_checkpointed_edges_give_the_same_outputs_and_gradients(pts):
    torch.manual_seed(0)
    net = Supernet(10, 16, 4, 24, 3, DEFAULT_OPS, depth=2, pts_ratio=pts, pts_dim=8)
    with torch.no_grad():
        net.alpha.normal_()
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 4, 7])
    params = [net.alpha] + net.weight_parameters()
    results = {}
    for ckpt in (False, True):
        net.set_checkpoint_edges(ckpt)
        logits = net(x)
        full = torch.autograd.grad(F.cross_entropy(logits, y), params, allow_unused=True)
        arch = torch.autograd.grad(F.cross_entropy(net(x), y), [net.alpha])  # the architecture step: ∂α alone
        results[ckpt] = (logits.detach(), full, arch)
    assert net.checkpoint_edges
    (l0, g0, a0), (l1, g1, a1) = results[False], results[True]
    assert torch.equal(l0, l1)
    for name, u, v in zip(["alpha"] + [n for n, _ in net.named_parameters() if n != "alpha"], g0, g1):
        assert (u is None) == (v is None), name
        if u is not None:
            assert torch.allclose(u, v, rtol=1e-5, atol=1e-7), name
    assert torch.allclose(a0[0], a1[0], rtol=1e-5, atol=1e-7)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dasvit_tui.cli", *args], capture_output=True, text=True, timeout=300)


def test_dry_run_prints_every_stage_and_writes_json(tmp_path):
    out = tmp_path / "memory.json"
    sets = [a for s in TINY for a in ("--set", s)]
    res = run_cli("search", "--dry-run", "--preset", "demo", *sets, "--gpu-mem", "1G", "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert "stage 1: depth 2, every op on every edge, batch 8" in res.stdout
    assert "stage 2: depth 3, each edge keeps" in res.stdout and "upper bound" in res.stdout
    assert "plain DARTS" in res.stdout and "DASViT (PTS 0.5)" in res.stdout and "largest batch" in res.stdout
    data = json.loads(out.read_text())
    assert data["gpu_mem_bytes"] == 2**30 and [s["stage"] for s in data["stages"]] == [1, 2]
    assert not list(tmp_path.glob("runs*")), "a dry run starts nothing"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--gpu-mem", "24Q"], "--gpu-mem '24Q' is not a memory size"),
        (["--measure-batches", "2"], "--measure-batches '2' must list at least two"),
        (["--set", "search.bogus=1"], "search.bogus"),
    ],
)
def test_dry_run_mistakes_are_one_sentence(args, says):
    res = run_cli("search", "--dry-run", "--preset", "demo", *args)
    assert res.returncode == 2
    assert says in res.stderr and "Traceback" not in res.stderr


def test_a_search_emits_each_stages_estimate_before_it_trains_and_the_monitor_shows_it(tiny_search):
    from conftest import events, of_type
    from dasvit_tui.state import RunState

    evs = events(tiny_search)
    mems = of_type(evs, "memory")
    assert [m["stage"] for m in mems] == [1, 2, 3]
    for m in mems:
        first_epoch = next(i for i, e in enumerate(evs) if e["type"] == "epoch" and e["stage"] == m["stage"])
        assert evs.index(m) < first_epoch  # before the stage's first epoch ends
        parts = m["parts"]
        assert m["estimate_bytes"] == parts["total"] == sum(v for k, v in parts.items() if k != "total")
        assert parts["activations"] > 0 and m["precision"] == "fp32" and m["device"] == "cpu"
        est = StageMemory.from_json(m["estimate"])
        assert est.assumed is None and est.batch == 16  # measured on the stage's real supernet
        for e in of_type(evs, "epoch"):
            if e["stage"] == m["stage"]:
                assert e["memory_estimate_bytes"] == m["estimate_bytes"]
    # later stages keep fewer ops: their weights shrink
    assert mems[2]["parts"]["weights"] < mems[1]["parts"]["weights"]
    state = RunState(tiny_search)
    for ev in evs:
        state.apply(ev)
    assert state.memory_note().startswith("stage 3: memory estimate ") and "peak" not in state.memory_note()  # CPU


def test_memory_figure_from_a_dry_runs_json(tmp_path):
    from dasvit.errors import UserError
    from dasvit.reports.plot_memory import plot_memory

    m = StageMemory(1, 2, 8, 64, params=400_000_000, selector_params=100_000, alpha=72, activations={}, image_size=224)
    for key, per_image in (("fp32/plain", 4e8), ("bf16/plain", 2.4e8), ("fp32/pts", 2.2e8), ("bf16/pts", 1.3e8)):
        m.activations[key] = Activations.fit({1: int(1e8 + per_image), 2: int(1e8 + 2 * per_image)})
    src = tmp_path / "memory.json"
    src.write_text(json.dumps({"preset": "imagenet100", "gpu_mem_bytes": 24 * 2**30, "stages": [m.to_json()]}))
    written = plot_memory(src, tmp_path / "figs")
    assert sorted(p.name for p in written) == ["memory.png", "memory.svg"]
    svg = (tmp_path / "figs" / "memory.svg").read_text()
    assert "plain DARTS, fp32" in svg and "24 GiB card" in svg and "Figure 1" in svg
    src.write_text("{}")
    with pytest.raises(
        UserError, match="is not a memory estimate written by dasvit search --dry-run --json: it lacks stages"
    ):
        plot_memory(src, tmp_path)
    src.write_text('{"stages": [')  # cut short: one sentence, not a traceback
    with pytest.raises(
        UserError, match=r"is not a memory estimate written by dasvit search --dry-run --json \(Expecting value"
    ):
        plot_memory(src, tmp_path)

"""`dasvit bench`: the search and retrain variants side by side, in one process, measured.

- search: the search's bi-level step (`dasvit.search.bilevel.BilevelStep`: α step + weight step) on one
  supernet, one pair of batches and one α, with its edges stored and checkpointed (search.checkpoint_edges;
  with --compile also compiled), interleaved repeat by repeat; medians. Bytes saved for backward
  (`saved_tensors_hooks`) with partial token selection off, at 0.5 and at 0.25; on CUDA also the peak
  memory of each.
- retrain: a training step of the discrete network of `vit_b16` against timm's
  `vit_base_patch16_224` (torchvision's `vit_b_16` without timm), same size and precision; per FLOP
  (fvcore, with the SDPA handle) ours over the peer's.
- on CUDA: the retrain step's MFU against a measured bf16 matmul peak, and the peak memory of one
  paper-scale search step (224 px, patch 16, width 768, depth 6, all 8 ops, batch 64).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..run.config import DEFAULT_OPS, SearchConfig
from ..run.distributed import DistInfo
from ..search.bilevel import BilevelStep
from ..search.supernet import Supernet
from ..train.loop import autocast


@dataclass(frozen=True)
class SearchSizes:
    """A supernet and its batch: stage 1 of a search (all ops on every edge)."""

    image_size: int
    patch_size: int
    dim: int
    depth: int
    batch: int
    pts_dim: int
    nodes: int = 3
    num_classes: int = 10


@dataclass(frozen=True)
class RetrainSizes:
    """ViT-B/16 (depth 12, width 768, 12 heads, MLP 4) at an image size and batch."""

    image_size: int
    batch: int
    num_classes: int = 1000


@dataclass(frozen=True)
class BenchPlan:
    search: SearchSizes
    retrain: RetrainSizes
    repeats: int
    warmup: int


# --quick: the cifar10 presets' tokens (32 px, patch 4: 65) at the demo preset's width; ViT-B/16 at 64 px
QUICK = BenchPlan(SearchSizes(32, 4, 48, 2, 32, pts_dim=16), RetrainSizes(64, 4), repeats=7, warmup=2)
# full: the cifar10 preset's stage-1 supernet and ViT-B/16 at 224 px
FULL = BenchPlan(SearchSizes(32, 4, 384, 2, 64, pts_dim=64), RetrainSizes(224, 64), repeats=10, warmup=3)
PAPER = SearchSizes(224, 16, 768, 6, 64, pts_dim=64, num_classes=100)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each variant, run in turn (A, B, A, B, ...) so drift hits all alike."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------------------------
# search


def build_supernet(s: SearchSizes, device: torch.device, pts_ratio: float | None = 0.5, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(
        s.num_classes,
        s.image_size,
        s.patch_size,
        s.dim,
        s.nodes,
        DEFAULT_OPS,
        s.depth,
        pts_ratio=pts_ratio,
        pts_dim=s.pts_dim,
    ).to(device)


class BenchStep:
    """The search's own step (`dasvit.search.bilevel.BilevelStep`, built as a stage builds it from the default
    search config: fairness on, AdamW with its schedule, gradient clipping, bf16 autocast on CUDA) on one
    fixed pair of batches. α is reset before each call so every variant sees the same α."""

    def __init__(self, net: Supernet, s: SearchSizes, device: torch.device, seed: int = 0):
        self.net, self.device = net, device
        g = torch.Generator().manual_seed(seed)
        batch, size, classes = s.batch, s.image_size, s.num_classes
        self.xa, self.xw = (torch.randn(batch, 3, size, size, generator=g).to(device) for _ in range(2))
        self.ya, self.yw = (torch.randint(0, classes, (batch,), generator=g).to(device) for _ in range(2))
        self.step = BilevelStep.for_stage(net, SearchConfig(), total_steps=1_000_000, info=DistInfo(device=device))
        self.alpha0 = net.alpha.detach().clone()

    def __call__(self) -> torch.Tensor:
        with torch.no_grad():
            self.net.alpha.copy_(self.alpha0)
        return self.step((self.xw, self.yw), (self.xa, self.ya))[0]


def saved_tensor_bytes(fn: Callable[[], object], exclude: list[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves for backward while `fn` runs (parameters excluded)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        # detached: a saved output packed as itself would reference its own grad_fn, a cycle through the
        # autograd graph that nothing frees (measured: every forward's activations leaked)
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def search_memory(s: SearchSizes, device: torch.device) -> dict:
    """Saved-for-backward bytes of the weight step's forward (and on CUDA the peak of a whole step)
    with partial token selection off, at ratio 0.5 and at 0.25."""
    saved, peak = {}, {}
    for key, ratio in (("off", None), ("0.5", 0.5), ("0.25", 0.25)):
        net = build_supernet(s, device, ratio)
        step = BenchStep(net, s, device)

        def forward(net=net, step=step):
            with autocast(device):
                F.cross_entropy(net(step.xw), step.yw)

        saved[key] = saved_tensor_bytes(forward, exclude=list(net.parameters()))
        if device.type == "cuda":
            peak[key] = cuda_peak_bytes(step, device)
        del net, step
    out = {"saved_bytes": saved, "pts_memory_ratio": saved["0.5"] / saved["off"]}
    if peak:
        out["peak_bytes"] = peak
    return out


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    fn()  # optimizer state exists from the second step on
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return int(torch.cuda.max_memory_allocated(device))


def search_speed(plan: BenchPlan, device: torch.device, compile: bool = False) -> dict:
    """Images per second of one bi-level step (2 batches): its edges stored, and checkpointed.

    With `compile`, also `torch.compile` of the supernet as `search.compile` compiles it: `compile_seconds` is
    the first step (compilation included) and `compiled_speedup` the steady-state images/s over the stored
    step's."""
    s = plan.search
    net = build_supernet(s, device)
    step = BenchStep(net, s, device)

    def stored():
        net.set_checkpoint_edges(False)
        step()

    def checkpointed():  # search.checkpoint_edges: what recomputing the edges costs
        net.set_checkpoint_edges(True)
        step()

    variants = {"stored": stored, "checkpointed": checkpointed}
    out = {}
    if compile:
        cnet = build_supernet(s, device)
        cnet.compile()
        variants["compiled"] = BenchStep(cnet, s, device)
        _sync(device)
        t0 = time.perf_counter()
        variants["compiled"]()
        _sync(device)
        out["compile_seconds"] = time.perf_counter() - t0
    times = interleaved(variants, plan.repeats, plan.warmup, device)
    med = {k: statistics.median(v) for k, v in times.items()}
    out.update(
        {
            "images_per_s": 2 * s.batch / med["stored"],
            "checkpointed_images_per_s": 2 * s.batch / med["checkpointed"],
            "checkpoint_slowdown": med["checkpointed"] / med["stored"],
            "step_seconds": {k: [round(t, 5) for t in v] for k, v in times.items()},
        }
    )
    if compile:
        out.update(
            compiled_images_per_s=2 * s.batch / med["compiled"], compiled_speedup=med["stored"] / med["compiled"]
        )
    return out


def profile_search_step(plan: BenchPlan, device: torch.device, steps: int = 3, rows: int = 25) -> str:
    """torch.profiler, op by op: self time per bi-level step."""
    from torch.profiler import ProfilerActivity, profile

    s = plan.search
    step = BenchStep(build_supernet(s, device), s, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for _ in range(2):
        step()
    _sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    table = {e.key: (getattr(e, attr) / steps / 1e3, e.count // steps) for e in prof.key_averages()}
    unit = "device" if device.type == "cuda" else "CPU"
    lines = [f"{'op: self ' + unit + ' ms per bi-level step':58s} {'ms':>9s} {'calls':>6s}"]
    for k in sorted(table, key=lambda k: -table[k][0])[:rows]:
        lines.append(f"{k[:58]:58s} {table[k][0]:9.2f} {table[k][1]:6d}")
    lines.append(f"{'all ops':58s} {sum(v[0] for v in table.values()):9.2f} {sum(v[1] for v in table.values()):6d}")
    return "\n".join(lines)


def paper_step_peak(device: torch.device) -> int:
    """Peak CUDA memory of one bi-level step at paper scale (bf16 autocast)."""
    net = build_supernet(PAPER, device, 0.5)
    peak = cuda_peak_bytes(BenchStep(net, PAPER, device), device)
    del net
    torch.cuda.empty_cache()
    return peak


# ---------------------------------------------------------------------------------------------
# retrain


def build_peer(r: RetrainSizes) -> tuple[nn.Module, str]:
    """timm's vit_base_patch16_224 if timm is installed, else torchvision's vit_b_16, at r's size."""
    try:
        import timm
    except ImportError:
        import torchvision

        model = torchvision.models.vit_b_16(weights=None, image_size=r.image_size, num_classes=r.num_classes)
        return model, "torchvision vit_b_16"
    model = timm.create_model(
        "vit_base_patch16_224", pretrained=False, img_size=r.image_size, num_classes=r.num_classes
    )
    return model, f"timm {timm.__version__} vit_base_patch16_224"


def build_ours(r: RetrainSizes) -> nn.Module:
    from ..model.build import network
    from ..model.genotype import load_genotype

    return network(
        load_genotype("vit_b16"), depth=12, dim=768, image_size=r.image_size, patch_size=16, num_classes=r.num_classes
    )


class TrainStep:
    """Forward, cross-entropy, backward of one batch: a retrain step without data loading.

    The optimizer update is left out: both networks have the same parameter shapes, so it costs both
    the same, and at small batches it would hide the difference between the two implementations.
    """

    def __init__(self, model: nn.Module, r: RetrainSizes, device: torch.device):
        self.model, self.device = model.to(device).train(), device
        self.x = torch.randn(r.batch, 3, r.image_size, r.image_size, device=device)
        self.y = torch.randint(0, r.num_classes, (r.batch,), device=device)

    def __call__(self) -> None:
        self.model.zero_grad(set_to_none=False)  # reuse the gradient buffers, as an optimizer loop would
        with autocast(self.device):
            loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()


def matmul_peak_flops(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    """Measured bf16 matmul FLOP/s (2n³ per product), the MFU denominator."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    times = interleaved({"mm": lambda: a @ b}, reps, 3, device)["mm"]
    return 2 * n**3 / min(times)


def retrain_speed(plan: BenchPlan, device: torch.device) -> dict:
    from ..model.profile import count_flops

    r = plan.retrain
    torch.manual_seed(0)
    peer, peer_name = build_peer(r)
    ours = build_ours(r)
    flops = {"ours": count_flops(ours, r.image_size), "peer": count_flops(peer, r.image_size)}
    steps = {"ours": TrainStep(ours, r, device), "peer": TrainStep(peer, r, device)}
    times = interleaved(steps, plan.repeats, 1, device)
    ips = {k: r.batch / statistics.median(v) for k, v in times.items()}
    out = {
        "peer": peer_name,
        "images_per_s": ips,
        "flops_per_image": flops,  # fvcore: one multiply-add is one FLOP, forward only
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in (("ours", ours), ("peer", peer))},
        "per_flop_vs_peer": (ips["ours"] * flops["ours"]) / (ips["peer"] * flops["peer"]),
        "step_seconds": {k: [round(t, 5) for t in v] for k, v in times.items()},
    }
    if device.type == "cuda":
        peak = matmul_peak_flops(device)
        # a training step is about 3 forwards; fvcore counts multiply-adds, a FLOP is half of one
        achieved = ips["ours"] * 3 * 2 * flops["ours"]
        out.update(mfu=achieved / peak, matmul_peak_flops=peak, peer_mfu=ips["peer"] * 3 * 2 * flops["peer"] / peak)
    return out


# ---------------------------------------------------------------------------------------------
# the whole bench


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_bench(
    quick: bool,
    device: str = "cpu",
    say: Callable[[str], None] = lambda s: None,
    plan: BenchPlan | None = None,
    compile: bool = False,
) -> dict:
    """All measurements as one JSON-ready dict (keys: quick, machine, sizes, search, retrain, seconds)."""
    dev = torch.device(device)
    if plan is None:
        plan = QUICK if quick else FULL
        if dev.type == "cpu" and not quick:  # ViT-B/16 at 224 px trains at a few images/s on a CPU
            plan = replace(plan, retrain=replace(plan.retrain, batch=16), repeats=5, warmup=1)
    t0 = time.time()
    out: dict = {"quick": quick, "machine": machine(dev), "sizes": asdict(plan)}
    say(
        f"search step, edges stored against checkpointed{' and compiled (compiling first)' if compile else ''}: {plan.search}"
    )
    out["search"] = search_speed(plan, dev, compile)
    say("search memory, partial token selection off / 0.5 / 0.25")
    out["search"].update(search_memory(plan.search, dev))
    if dev.type == "cuda":
        say(f"paper-scale search step: {PAPER}")
        out["search"]["paper_step_peak_bytes"] = paper_step_peak(dev)
    say(f"retrain step, ours against the peer: {plan.retrain}")
    out["retrain"] = retrain_speed(plan, dev)
    out["seconds"] = time.time() - t0
    return out

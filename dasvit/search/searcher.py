"""The progressive bi-level DASViT search, as an engine process.

    python -m dasvit.search --preset demo --run-dir runs/demo [--set k=v ...] [--approve auto|manual]
    python -m dasvit.search --resume runs/demo
    torchrun --nproc_per_node 2 -m dasvit.search --preset demo --run-dir runs/demo

Each stage builds a fresh supernet with the ops kept so far, trains weights on one half of the training
set and α on the other (first-order DARTS, weights only during the first `arch_warmup_epochs`), then
proposes the ops to keep, waits for approval when approval is manual, and prunes. Everything the run has
to say goes to the run directory (see dasvit.run.layout); a checkpoint is written after every epoch.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UserError
from ..model.genotype import Genotype
from ..model.opspec import merge_keep, type_shares
from ..reports.memory import StageMemory, gib, summary_line
from ..reports.memory_measure import estimate_stage
from ..run import layout
from ..run.checkpoint import checkpoint_mismatch, fitting_checkpoint, load_checkpoint, save_checkpoint
from ..run.config import Config, compile_stage
from ..run.distributed import DistInfo, barrier, broadcast_object, epoch_peak_memory, setup_distributed
from ..run.events import EPOCH, ERROR, GENOTYPE, MEMORY, PRUNE, PRUNE_PROPOSAL
from ..run.requests import SearchRequest
from ..run.runtime import Outcome, Run, Stopped, allocating, check_fits
from ..train.augment import describe as describe_augment
from ..train.augment import train_transform
from ..train.data import EpochLoaders, Splits, build_datasets, split_halves
from ..train.images import image_channels
from ..train.loop import EpochSums, evaluate, mix_seed, rng_state, set_rng_state
from .bilevel import BilevelStep
from .budget import CostObjective, space_costs
from .derivation import arch_weights_dict, check_keep, derive_cell, prune_proposal
from .fairness import fairness_terms, skip_fraction
from .supernet import Supernet, check_supernet_layout, edge_list, inherit_weights, mask_from_keep, stage_params


@dataclass
class StageState:
    """What a stage is made of: the supernet, its bi-level step (optimizers and schedule) and its length."""

    net: Supernet
    step: BilevelStep
    steps_per_epoch: int

    @property
    def w_opt(self) -> torch.optim.Optimizer:
        return self.step.w_opt

    @property
    def a_opt(self) -> torch.optim.Optimizer:
        return self.step.a_opt

    @property
    def sched(self) -> torch.optim.lr_scheduler.LRScheduler:
        return self.step.sched


class Searcher:
    """Runs the stages of one search run (every rank runs one; only rank 0 writes)."""

    def __init__(self, cfg: Config, run: Run, info: DistInfo, splits: Splits):
        self.cfg, self.run, self.info = cfg, run, info
        self.ops = list(cfg.space.ops)
        self.nodes = cfg.space.nodes
        train, self.val_set, self.num_classes = splits.train, splits.selection, splits.num_classes
        w_idx, a_idx = split_halves(len(train), cfg.search.seed)
        self.w_set = torch.utils.data.Subset(train, w_idx)
        self.a_set = torch.utils.data.Subset(train, a_idx)
        self.op_costs, self.budget = space_costs(cfg)  # a budget naming no cell stops before any work
        sc = cfg.search
        # E_α[cell cost] against the budget: reported every epoch, a term of the α objective when configured
        self.cost = (
            CostObjective(self.ops, self.nodes, cfg.space.edges_per_node, self.op_costs, self.budget, sc.cost_weight)
            if self.budget is not None
            else None
        )
        self.memory: StageMemory | None = None  # the current stage's estimate (rank 0)
        bs = cfg.data.batch_size
        if len(self.w_set) // info.world < bs or len(self.a_set) // info.world < bs:
            raise UserError(
                f"data.batch_size ({bs}) is larger than half the training set per rank "
                f"({len(self.w_set) // info.world} images); lower data.batch_size."
            )

    # -- building -------------------------------------------------------------------------
    def build_stage(self, stage: int, mask: torch.Tensor) -> StageState:
        cfg, sc = self.cfg, self.cfg.search
        st = sc.stages[stage]
        torch.manual_seed(mix_seed(sc.seed, stage, 999))  # fresh weights and α, the same on every rank
        what, lower = f"stage {stage + 1}'s supernet", "space.embed_dim, the stage's depth or space.ops"
        check_fits(stage_params(cfg, stage + 1, mask), what, lower)
        with allocating(what, lower):
            net = Supernet.of_stage(cfg, stage + 1, mask, self.num_classes, image_channels(cfg.data))
            net = net.to(self.info.device)
        net.set_checkpoint_edges(sc.checkpoint_edges)
        if self.info.main:  # before any compilation: two small forwards on the stage's own supernet
            self.memory = self.estimate_memory(stage, net)
        steps = len(self.loaders(stage)[0])
        if sc.steps_per_epoch:
            steps = min(steps, sc.steps_per_epoch)
        if compile_stage(sc, self.info.device.type, steps * st.epochs):
            net.compile()  # in place: parameter names (checkpoints) and attributes stay those of net
        cost = self.cost if sc.budget_in != "derivation" else None
        return StageState(net, BilevelStep.for_stage(net, sc, steps * st.epochs, self.info, cost), steps)

    def estimate_memory(self, stage: int, net: Supernet) -> StageMemory:
        """The stage's memory at its batch (dasvit.reports.memory) as it will run: this device's precision (bf16
        autocast on CUDA), partial token selection and checkpointed edges as configured."""
        cfg, sc = self.cfg, self.cfg.search
        return estimate_stage(
            net,
            stage + 1,
            sc.stages[stage].depth,
            sc.stages[stage].keep,
            cfg.data.batch_size,
            num_classes=self.num_classes,
            in_chans=image_channels(cfg.data),
            image_size=cfg.data.image_size,
            precisions=("bf16" if self.info.device.type == "cuda" else "fp32",),
            pts_variants=(sc.pts.enabled,),
            checkpoint_variants=(False, True) if sc.checkpoint_edges else (False,),  # the recomputed node's share
            pts_ratio=sc.pts.ratio,
        )

    def emit_memory(self, stage: int) -> None:
        """The `memory` event of a stage's start and its progress line."""
        m, sc = self.memory, self.cfg.search
        variant = ("bf16" if self.info.device.type == "cuda" else "fp32", sc.pts.enabled, sc.checkpoint_edges)
        self.run.emit(
            MEMORY,
            stage=stage + 1,
            estimate_bytes=m.total(*variant),
            parts=m.parts(*variant),
            precision=variant[0],
            device=self.info.device.type,
            estimate=m.to_json(),
        )
        self.run.progress.line(summary_line(m, *variant))

    def loaders(self, stage: int) -> tuple[EpochLoaders, EpochLoaders]:
        d, i = self.cfg.data, self.info
        seed = mix_seed(self.cfg.search.seed, stage)
        return (
            EpochLoaders(self.w_set, d.batch_size, d.workers, seed, i.rank, i.world),
            EpochLoaders(self.a_set, d.batch_size, d.workers, seed + 1, i.rank, i.world),
        )

    # -- one epoch ------------------------------------------------------------------------
    def train_epoch(self, stage: int, epoch: int, s: StageState) -> dict[str, float]:
        sc, dev, net = self.cfg.search, self.info.device, s.net
        torch.manual_seed(mix_seed(sc.seed, stage, epoch, self.info.rank))
        w_loader, a_loader = (loader.epoch(epoch) for loader in self.loaders(stage))
        arch_on = epoch >= sc.arch_warmup_epochs
        label = f"stage {stage + 1}/{len(sc.stages)} epoch {epoch + 1}/{sc.stages[stage].epochs}"
        net.train()
        sums = EpochSums(self.run, label, s.steps_per_epoch)
        for step, ((xw, yw), (xa, ya)) in enumerate(zip(w_loader, a_loader)):
            if step >= s.steps_per_epoch:
                break
            xw, yw = xw.to(dev, non_blocking=True), yw.to(dev, non_blocking=True)
            a_batch = None
            if arch_on:  # the architecture step's batch, from the α half
                a_batch = xa.to(dev, non_blocking=True), ya.to(dev, non_blocking=True)
            loss, logits = s.step((xw, yw), a_batch)
            sums.add(loss, logits, yw, images=xa.shape[0] if arch_on else 0)
            sums.step(step)
        return sums.totals()

    def evaluate(self, net: Supernet) -> dict[str, float]:
        d, i = self.cfg.data, self.info
        loader = EpochLoaders(
            self.val_set, d.batch_size, d.workers, 0, i.rank, i.world, shuffle=False, drop_last=False
        ).epoch(0)
        m = evaluate(net, loader, i)
        return {"val_loss": m["val_loss"], "val_acc": m["top1"]}

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, stage: int, epoch: int, phase: str, mask: torch.Tensor, s: StageState | None) -> None:
        if not self.info.main:
            return
        state: dict[str, Any] = {
            "version": 1,
            "stage": stage,
            "epoch": epoch,
            "phase": phase,
            "mask": mask.cpu(),
            "control_offset": self.run.control_offset,
            "rng": rng_state(),
        }
        if s is not None:
            state.update(
                model=s.net.state_dict(),
                w_opt=s.w_opt.state_dict(),
                a_opt=s.a_opt.state_dict(),
                sched=s.sched.state_dict(),
            )
        save_checkpoint(self.run.dir / layout.CHECKPOINT, state, keep_previous=True)

    def save_stage_supernet(self, stage: int, mask: torch.Tensor, net: Supernet) -> None:
        """supernet-stage<k>.pt: the stage's last weights, α and mask (what `dasvit derive` and the ranking
        diagnostic read; the resume checkpoint moves on to the next stage)."""
        if self.info.main:
            state = {"version": 1, "stage": stage, "mask": mask.cpu(), "model": net.state_dict()}
            save_checkpoint(self.run.dir / layout.stage_supernet(stage + 1), state)

    # -- stage end ------------------------------------------------------------------------
    def stage_genotype(self, stage: int, net: Supernet) -> None:
        sc = self.cfg.search
        w = net.arch_weights().detach().cpu()
        meta = {
            "dataset": self.cfg.data.name,
            "run": self.run.dir.name,
            "stage": stage + 1,
            "stage_depths": [st.depth for st in sc.stages],
            "preset": self.cfg.preset,
        }
        geno = derive_cell(self.cfg, w, net.mask.cpu(), self.op_costs, self.budget, meta)
        self.check_ranks_agree(w, stage)
        if self.info.main:
            geno.save(self.run.dir / layout.stage_genotype(stage + 1))
        self.run.emit(GENOTYPE, stage=stage + 1, genotype=geno.to_json())
        if stage == len(sc.stages) - 1:
            if sc.selection.rule != "argmax":
                geno = self.select_final(stage, net, meta)
            if self.info.main:
                geno.save(self.run.dir / layout.GENOTYPE)

    def select_final(self, stage: int, net: Supernet, meta: dict[str, Any]) -> Genotype:
        """The run's cell by search.selection.rule (dasvit.search.selection), taken on rank 0 (the others wait) with
        the validation split and the weights half; also written to derived/<rule>.json."""
        from .selection import Selector, derived_path

        rule = self.cfg.search.selection.rule
        geno = None
        if self.info.main:
            d = self.cfg.data
            val = EpochLoaders(self.val_set, d.batch_size, d.workers, 0, 0, 1, shuffle=False, drop_last=False)
            local = DistInfo(device=self.info.device, threads=self.info.threads)
            selector = Selector(
                self.cfg,
                net,
                local,
                val=lambda: val.epoch(0),
                tune_batches=lambda seed: EpochLoaders(self.w_set, d.batch_size, d.workers, seed, 0, 1).epoch(0),
                say=self.run.progress.line,
            )
            self.run.progress.line(f"selecting the cell by {rule} (search.selection.rule) ...")
            geno = selector.select(rule).genotype
            geno.meta = {**meta, **geno.meta}
            path = derived_path(self.run.dir, geno.meta["selection"]["name"])
            path.parent.mkdir(exist_ok=True)
            geno.save(path)
        geno = broadcast_object(geno, self.info)
        self.run.emit(GENOTYPE, stage=stage + 1, genotype=geno.to_json())
        return geno

    def check_ranks_agree(self, w: torch.Tensor, stage: int) -> None:
        """Every rank must hold the same α; a divergence is a bug, not something to paper over."""
        if self.info.world == 1:
            return
        gathered = [torch.zeros_like(w) for _ in range(self.info.world)]
        torch.distributed.all_gather_object(gathered, w)
        worst = max(float((g - w).abs().max()) for g in gathered)
        if worst > 1e-6:
            raise RuntimeError(f"ranks disagree on α at the end of stage {stage + 1} (max difference {worst:g})")

    def approve(self, stage: int, proposal: dict[str, list[str]], mask: torch.Tensor) -> dict[str, list[str]]:
        """Wait (manual) for an `approve` control line for this stage, or accept at once (auto).

        Only rank 0 reads the control file; the others wait in one broadcast of its answer."""
        keep: dict[str, list[str]] | None = proposal
        by = "auto"
        if self.cfg.search.approval == "manual":
            keep = None
            if self.info.main:
                self.run.progress.line(f"stage {stage + 1}: waiting for approval (dasvit approve {self.run.dir})")
                while keep is None and not self.run.local_stop():
                    keep = self._answer(stage, proposal, mask)
                    if keep is None:
                        time.sleep(0.2)
            keep = broadcast_object(keep, self.info)
            if keep is None:
                raise Stopped()
            by = "user"
        self.run.emit(PRUNE, stage=stage + 1, keep=keep, by=by)
        return keep

    def _answer(self, stage: int, proposal: dict[str, list[str]], mask: torch.Tensor) -> dict[str, list[str]] | None:
        """The first usable `approve` line for this stage, if one arrived (bad ones get an error event with
        the stage). A `keep` naming only some edges keeps the proposal for the others."""
        for cmd in self.run.take_control("approve"):
            if cmd.get("stage") not in (stage + 1, None):
                continue  # an answer to another stage's proposal
            if cmd.get("keep") is None:
                return proposal
            user_keep = merge_keep(cmd["keep"], proposal)
            why = check_keep(user_keep, mask, self.ops, self.nodes)
            if why:
                self.run.emit(
                    ERROR, message=f"approve for stage {stage + 1} ignored: {why}", traceback="", stage=stage + 1
                )
                continue
            return {k: list(v) for k, v in user_keep.items()}
        return None

    # -- the whole run --------------------------------------------------------------------
    def search(self, ckpt: dict[str, Any] | None) -> None:
        sc = self.cfg.search
        mask = torch.ones(len(edge_list(self.nodes)), len(self.ops), dtype=torch.bool)
        start_stage, start_epoch, phase = 0, 0, "train"
        if ckpt is not None:
            start_stage, start_epoch, phase, mask = self.checked(ckpt, mask.shape)
            self.run.control_offset = ckpt["control_offset"]
        prev: StageState | None = None
        for stage in range(start_stage, len(sc.stages)):
            st = sc.stages[stage]
            s = self.build_stage(stage, mask)
            if prev is not None and sc.inherit_weights:
                inherit_weights(s.net, prev.net)
            prev = None
            first = 0
            if ckpt is not None and stage == start_stage:
                with fitting_checkpoint(self.run.dir):
                    check_supernet_layout(ckpt["model"], self.run.dir / layout.CHECKPOINT)
                    s.net.load_state_dict(ckpt["model"])
                    s.w_opt.load_state_dict(ckpt["w_opt"])
                    s.a_opt.load_state_dict(ckpt["a_opt"])
                    s.sched.load_state_dict(ckpt["sched"])
                    set_rng_state(ckpt["rng"])
                first = start_epoch
            else:  # a stop during the stage's first epoch can still be resumed
                self.checkpoint(stage, 0, "train", mask, s)
            if not (ckpt is not None and stage == start_stage and phase == "proposal"):
                if self.info.main:
                    self.emit_memory(stage)
                for epoch in range(first, st.epochs):
                    metrics = self.train_epoch(stage, epoch, s)
                    metrics.update(self.evaluate(s.net))
                    self.checkpoint(stage, epoch + 1, "train", mask, s)
                    self.emit_epoch(stage, epoch, s, metrics)
                self.stage_genotype(stage, s.net)
                self.checkpoint(stage, st.epochs, "proposal", mask, s)
                self.save_stage_supernet(stage, mask, s.net)
            if stage + 1 < len(sc.stages):
                w = s.net.arch_weights().detach().cpu()
                proposal = prune_proposal(
                    w, mask, self.ops, self.nodes, sc.stages[stage + 1].keep, sc.prune_zero, sc.skip_floor
                )
                self.run.emit(
                    PRUNE_PROPOSAL,
                    stage=stage + 1,
                    keep=proposal,
                    weights=arch_weights_dict(w, mask, self.ops, self.nodes),
                    approval=sc.approval,
                )
                keep = self.approve(stage, proposal, mask)
                mask = mask_from_keep(keep, self.ops, self.nodes)
            prev = s
        barrier(self.info)

    def checked(self, ckpt: dict[str, Any], shape: torch.Size) -> tuple[int, int, str, torch.Tensor]:
        """Where the checkpoint stopped (stage, epoch, phase, mask), if the config still has that place."""
        stages = self.cfg.search.stages
        with fitting_checkpoint(self.run.dir):
            stage, epoch, phase, mask = int(ckpt["stage"]), int(ckpt["epoch"]), str(ckpt["phase"]), ckpt["mask"].bool()
            int(ckpt["control_offset"])
        if not 0 <= stage < len(stages) or not 0 <= epoch <= stages[stage].epochs:
            raise checkpoint_mismatch(
                self.run.dir, f"it stopped at stage {stage + 1} epoch {epoch}, which search.stages no longer has"
            )
        if mask.shape != shape:
            raise checkpoint_mismatch(self.run.dir, "space.nodes or space.ops differ")
        return stage, epoch, phase, mask

    def emit_epoch(self, stage: int, epoch: int, s: StageState, m: dict[str, float]) -> None:
        sc = self.cfg.search
        w = s.net.arch_weights().detach().float().cpu()
        terms = {k: float(v) for k, v in fairness_terms(w, self.ops, sc.fairness).items()}
        weights = arch_weights_dict(w, s.net.mask.cpu(), self.ops, self.nodes)
        extra = epoch_peak_memory(self.info)
        if self.info.main and self.memory is not None:
            extra["memory_estimate_bytes"] = self.memory_total()
        if self.cost is not None:
            flops, params = (float(v) for v in self.cost.expected(w))
            extra["expected_cost"] = {"flops": flops, "params": params}
        self.run.emit(
            EPOCH,
            stage=stage + 1,
            stages=len(sc.stages),
            epoch=epoch + 1,
            epochs=sc.stages[stage].epochs,
            depth=sc.stages[stage].depth,
            lr=s.sched.get_last_lr()[0],
            arch_step=epoch >= sc.arch_warmup_epochs,
            **m,
            arch_weights=weights,
            skip_fraction=skip_fraction(w, self.ops),
            fairness={**terms, "enabled": sc.fairness.enabled},
            type_shares=type_shares(weights),
            **extra,
        )
        self.run.progress.line(
            f"stage {stage + 1}/{len(sc.stages)} epoch {epoch + 1}/{sc.stages[stage].epochs}  "
            f"train loss {m['train_loss']:.3f} acc {m['train_acc']:.3f}  "
            f"val loss {m['val_loss']:.3f} acc {m['val_acc']:.3f}  "
            f"skip {skip_fraction(w, self.ops):.3f}  {m['images_per_s']:.0f} img/s  {m['seconds']:.1f}s"
            + (
                f"  peak {gib(extra['peak_mem_bytes'])} (estimate {gib(extra['memory_estimate_bytes'])})"
                if "peak_mem_bytes" in extra and "memory_estimate_bytes" in extra
                else ""
            )
        )

    def memory_total(self) -> int:
        sc = self.cfg.search
        return self.memory.total(
            "bf16" if self.info.device.type == "cuda" else "fp32", sc.pts.enabled, sc.checkpoint_edges
        )


def main(argv: list[str] | None = None) -> int:
    """`python -m dasvit.search ARGS` (see `dasvit.run.requests.SearchRequest`)."""
    return run(SearchRequest.parse(argv))


def run(request: SearchRequest) -> int:
    """Run the search a request asks for, in this process (one rank); returns the exit code."""
    with Outcome() as outcome:
        req = request.resolved()  # a bad config or run directory: one sentence, before anything starts
        cfg, run_dir = req.config, req.run_dir
        info = setup_distributed(long_waits=cfg.search.approval == "manual")
        tf, notes = train_transform(cfg, "search")  # light: search.augment
        splits = build_datasets(cfg.data, train_transform=tf)  # a missing dataset stops first
        torch.set_float32_matmul_precision("high")
        with Run.of(req, info) as run:
            ckpt = load_checkpoint(run_dir / layout.CHECKPOINT, warn=run.warn) if req.resume else None
            if info.main:
                run.progress.line(f"run directory: {run_dir}")
                for line in [splits.describe(), *splits.notes, describe_augment(cfg, "search"), *notes]:
                    run.progress.line(line)
            Searcher(cfg, run, info, splits).search(ckpt)
            if info.main and not (run_dir / layout.GENOTYPE).is_file():  # never report a success it did not have
                raise RuntimeError(f"the search ended without writing {run_dir / layout.GENOTYPE}")
            run.finished(f"genotype written to {run_dir / layout.GENOTYPE}", f"finished: {run_dir / layout.GENOTYPE}")
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())

"""Retrain a genotype from scratch and measure it: top-1, top-5, params, FLOPs, images/s.

`python -m dasvit.train.retrain GENOTYPE|RUN_DIR|BUILTIN [--preset P] [--set k=v ...] [--run-dir DIR]
[--resume DIR] [--no-progress]`, one process per device under torchrun. The recipe is `config.retrain`:
AdamW (no decay on norms, biases, position embedding, class token), linear warm-up then cosine per step,
label smoothing, drop-path, RandAugment / Mixup / CutMix / random erasing, gradient clipping, bf16
autocast on CUDA, optional EMA of the weights (evaluated and saved instead of the raw weights).

The run directory (RUN_DIR/retrain/ for a search run) holds config.yaml, genotype.json, events.jsonl,
checkpoint.pt (each epoch, atomic), best.pt and last.pt (weights of the best and the last epoch) and
metrics.json. The top-1 / top-5 in metrics.json are those of best.pt, which `load_model` returns.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, RunDirError
from ..fmt import count
from ..model.build import build_network
from ..model.genotype import load_genotype, network_sizes
from ..model.network import Network
from ..model.profile import count_flops, count_params, images_per_second
from ..run import jsonio, layout
from ..run.checkpoint import (
    checkpoint_mismatch,
    fitting_checkpoint,
    load_checkpoint,
    load_fitting,
    load_weights,
    save_checkpoint,
)
from ..run.distributed import DistInfo, barrier, broadcast_object, setup_distributed
from ..run.events import EPOCH
from ..run.presets import load_run_config
from ..run.requests import RetrainRequest
from ..run.runtime import Outcome, Run, allocating
from .augment import batch_mixer, train_transform
from .augment import describe as describe_augment
from .data import EpochLoaders, Splits, build_datasets
from .loop import EpochSums, evaluate, mix_seed, warmup_cosine, weight_step

BEST, LAST, METRICS = layout.BEST, layout.LAST, layout.METRICS


# ---------------------------------------------------------------------------------------------
# the recipe


def param_groups(model: Network, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices; not norms, biases, the position embedding or the class token."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resume_state(epoch: int, model: nn.Module, optimizer, sched, ema, best: dict, req: RetrainRequest) -> dict:
    """checkpoint.pt: everything a resumed run needs (plain tensors and numbers: weights-only loadable).

    No RNG state: each epoch reseeds from (seed, epoch, rank), so a resumed epoch replays exactly.
    """
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sched": sched.state_dict(),
        "best": best,
        "genotype": req.genotype.to_json(),
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    return state


def _weights(state: dict, epoch: int, top1: float, top5: float, num_classes: int) -> dict:
    return {"model": state, "epoch": epoch, "top1": top1, "top5": top5, "num_classes": num_classes}


def inherit(model: Network, path: Path) -> None:
    """Load the weights a fine-tune starts from (`retrain.init: inherited`); one sentence if they do not fit."""
    load_fitting(model, load_weights(path, "inherited weights"), f"the inherited weights in {path}")


# ---------------------------------------------------------------------------------------------
# the engine


class Retrainer:
    """Trains one cell from scratch (every rank runs one; only rank 0 writes), shaped like the search's
    `Searcher`: built from its resolved request (its data, network, optimizer, schedule, and where a resumed
    run stopped), then `retrain(run)` runs the epochs and measures the result."""

    def __init__(self, req: RetrainRequest, info: DistInfo, splits: Splits):
        cfg, r = req.config, req.config.retrain
        self.req, self.cfg, self.r, self.info, self.splits = req, cfg, r, info, splits
        if r.batch_size % info.world:
            raise ConfigError(f"retrain.batch_size ({r.batch_size}) must be divisible by the {info.world} processes.")
        self.num_classes = splits.num_classes
        per_rank = r.batch_size // info.world
        self.loaders = EpochLoaders(splits.train, per_rank, cfg.data.workers, r.seed, info.rank, info.world)
        self.val_loader = EpochLoaders(
            splits.selection, per_rank, cfg.data.workers, r.seed, info.rank, info.world, shuffle=False, drop_last=False
        ).epoch(0)
        self.steps = len(self.loaders) if r.steps_per_epoch == 0 else min(r.steps_per_epoch, len(self.loaders))
        if self.steps == 0:
            raise ConfigError(
                f"the training set ({len(splits.train)} images) is smaller than one batch (retrain.batch_size "
                f"{r.batch_size})."
            )
        self.mixer = batch_mixer(cfg, self.num_classes)
        torch.manual_seed(r.seed)
        with allocating("the network", "retrain.depth or space.embed_dim"):
            self.model = build_network(req.genotype, cfg, self.num_classes).to(info.device)
        if req.weights is not None and req.resume is None:  # retrain.init inherited: fine-tune from them
            inherit(self.model, req.weights)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, r.weight_decay), lr=r.lr, betas=(0.9, 0.999))
        self.sched = warmup_cosine(self.optimizer, r.epochs * self.steps, r.warmup_epochs * self.steps, r.min_lr)
        self.ema = None
        if r.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(r.ema_decay), use_buffers=True)
        self.start, self.best = 0, {"top1": -1.0, "top5": 0.0, "epoch": 0}
        if req.resume is not None:
            self.resume()
        self.train_model: nn.Module = self.model
        if info.world > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )
        if r.compile:
            self.train_model = torch.compile(self.train_model)
        self.eval_model = self.ema.module if self.ema is not None else self.model

    def resume(self) -> None:
        """Where the run's checkpoint stopped: the weights, optimizer, schedule, EMA, best epoch so far."""
        run_dir, r = self.req.run_dir, self.r
        quiet = None if self.info.main else (lambda text: None)
        state = load_checkpoint(run_dir / layout.CHECKPOINT, map_location=self.info.device, warn=quiet)
        with fitting_checkpoint(run_dir):
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["sched"])
            if self.ema is not None and "ema" in state:
                self.ema.load_state_dict(state["ema"])
            self.start, self.best = int(state["epoch"]), dict(state["best"])
        if not 0 <= self.start <= r.epochs:
            raise checkpoint_mismatch(run_dir, f"it stopped after epoch {self.start} of retrain.epochs {r.epochs}")

    # -- one epoch ------------------------------------------------------------------------
    def train_epoch(self, run: Run, epoch: int) -> dict[str, float]:
        """One epoch of `steps` steps: train_loss, train_acc, seconds and images_per_s over every rank, and the
        last step's lr."""
        info, r = self.info, self.r
        torch.manual_seed(mix_seed(r.seed, epoch, info.rank))  # resume replays exactly
        lr = r.lr
        params = [p for p in self.model.parameters() if p.requires_grad]
        sums = EpochSums(run, f"epoch {epoch + 1}/{r.epochs}", self.steps)
        for i, (x, y) in enumerate(self.loaders.epoch(epoch)):
            if i == self.steps:
                break
            lr = self.optimizer.param_groups[0]["lr"]
            x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
            target = y
            if self.mixer is not None:
                x, target = self.mixer(x, y)
            loss, logits = weight_step(
                self.train_model,
                params,
                self.optimizer,
                x,
                target,
                info,
                grad_clip=r.grad_clip,
                label_smoothing=r.label_smoothing,
                scheduler=self.sched,
                grads_synced=info.world > 1,
            )
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            sums.add(loss, logits, target.argmax(1) if target.ndim == 2 else target)  # mixed: the larger part
            sums.step(i)
        return {**sums.totals(), "lr": lr}

    def checkpoint(self, epoch: int, top1: float, top5: float) -> None:
        """After epoch `epoch` (from 1), rank 0: best.pt when it is the best on the validation split so far (the
        last epoch without one), and checkpoint.pt."""
        if not self.info.main:
            return
        if top1 > self.best["top1"] or self.splits.val is None:
            self.best = {"top1": top1, "top5": top5, "epoch": epoch}
            weights = _weights(self.eval_model.state_dict(), epoch, top1, top5, self.num_classes)
            save_checkpoint(self.req.run_dir / BEST, weights)
        state = resume_state(epoch, self.model, self.optimizer, self.sched, self.ema, self.best, self.req)
        save_checkpoint(self.req.run_dir / layout.CHECKPOINT, state, keep_previous=True)

    # -- the whole run --------------------------------------------------------------------
    def retrain(self, run: Run) -> dict | None:
        """Every epoch left, then (rank 0) the test split's measurement: metrics.json's figures, or None on
        the other ranks."""
        info, r = self.info, self.r
        for epoch in range(self.start, r.epochs):
            t0 = time.time()
            m = self.train_epoch(run, epoch)
            val = evaluate(self.eval_model, self.val_loader, info)
            fields = dict(
                stage=1,
                epoch=epoch + 1,
                epochs=r.epochs,
                train_loss=m["train_loss"],
                train_acc=m["train_acc"],
                val_loss=val["val_loss"],
                val_acc=val["top1"],
                top1=val["top1"],
                top5=val["top5"],
                lr=m["lr"],
                seconds=time.time() - t0,
                images_per_s=m["images_per_s"],
            )
            if info.device.type == "cuda":
                fields["peak_mem_bytes"] = torch.cuda.max_memory_allocated(info.device)
            self.checkpoint(epoch + 1, val["top1"], val["top5"])
            run.emit(EPOCH, **fields)
            run.progress.line(
                f"epoch {epoch + 1}/{r.epochs} train_loss {m['train_loss']:.4f} val_loss {val['val_loss']:.4f} "
                f"top1 {val['top1']:.2%} top5 {val['top5']:.2%} {m['images_per_s']:.0f} img/s {fields['seconds']:.1f}s"
            )
            barrier(info)
        metrics = None
        if info.main:
            metrics = finish(self.req, self.eval_model, self.best, self.splits, info, count_params(self.model))
        barrier(info)
        return metrics


def finish(req: RetrainRequest, eval_model: nn.Module, best: dict, splits: Splits, info: DistInfo, params: int) -> dict:
    """Write last.pt and metrics.json (rank 0): the test split's top-1 / top-5 of the selected epoch (best.pt:
    the best on the validation split, or the last without one) and of the last, params, FLOPs, images/s."""
    cfg, r = req.config, req.config.retrain
    run_dir = req.run_dir
    local = DistInfo(device=info.device)  # rank 0 alone measures the whole test split
    test = EpochLoaders(splits.test, min(r.batch_size, 256), cfg.data.workers, 0, shuffle=False, drop_last=False)
    last = evaluate(eval_model, test.epoch(0), local)
    save_checkpoint(
        run_dir / LAST, _weights(eval_model.state_dict(), r.epochs, last["top1"], last["top5"], splits.num_classes)
    )
    selected = eval_model
    if best["epoch"] != r.epochs:
        selected = copy.deepcopy(eval_model)
        selected.load_state_dict(torch.load(run_dir / BEST, map_location=info.device, weights_only=True)["model"])
        chosen = evaluate(selected, test.epoch(0), local)
    else:
        chosen = last
    sizes = network_sizes(cfg, req.genotype)
    flops = count_flops(selected, cfg.data.image_size)
    ips = images_per_second(selected, cfg.data.image_size, min(r.batch_size, 64), info.device, steps=3, warmup=1)
    metrics = {
        "top1": chosen["top1"],
        "top5": chosen["top5"],
        "best_epoch": best["epoch"],
        "last_top1": last["top1"],
        "last_top5": last["top5"],
        "val_top1": best["top1"] if splits.val is not None else None,
        "selected_on": "validation split" if splits.val is not None else "last epoch (no validation split)",
        "splits": {
            "top1": f"test ({len(splits.test)} images): the dataset's own test split, never selected on",
            "best_epoch": (
                f"validation ({len(splits.val)} images held out of the training set)"
                if splits.val is not None
                else "the last epoch (data.holdout is 0)"
            ),
            "train": f"{len(splits.train)} images",
        },
        "params": params,
        "flops": flops,
        "images_per_s": ips,
        "image_size": sizes.image_size,
        "patch_size": sizes.patch_size,
        "embed_dim": sizes.embed_dim,
        "depth": sizes.depth,
        "num_classes": splits.num_classes,
        "epochs": r.epochs,
        "init": r.init,
        "init_weights": str(req.weights) if req.weights is not None else None,
        "dataset": cfg.data.name,
        "genotype": req.genotype.to_json(),
    }
    jsonio.atomic_write_text(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------------
# using the result


def load_model(run_dir: str | Path, device: str | torch.device = "cpu", which: str = "best") -> Network:
    """The trained network of a retrain run (RUN_DIR/retrain or the retrain directory), in eval mode.

    `which` is "best" (the weights metrics.json reports) or "last". Loads with `weights_only=True`.
    """
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir)
    if not (run_dir / BEST).is_file() and (run_dir / layout.RETRAIN).is_dir():
        run_dir = run_dir / layout.RETRAIN
    path = run_dir / (BEST if which == "best" else LAST)
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {path.name}; has a retrain epoch finished there?")
    cfg = load_run_config(run_dir / layout.CONFIG)
    state = torch.load(path, map_location=device, weights_only=True)
    model = build_network(
        load_genotype(run_dir / layout.GENOTYPE),
        cfg,
        state["num_classes"],
        drop_path=0.0,
        in_chans=state["model"]["embed.proj.weight"].shape[1],
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def run(request: RetrainRequest) -> int:
    """Train the request's cell from scratch (or resume it), in this process (one rank); returns the exit code
    (0 finished, 2 a user's mistake, 130 stopped)."""
    with Outcome() as outcome:
        req = request.resolved()
        info = setup_distributed()
        req = replace(req, run_dir=Path(broadcast_object(str(req.run_dir), info)))  # rank 0's (runs/<name>-<time>)
        cfg, r = req.config, req.config.retrain
        tf, notes = train_transform(cfg)
        splits = build_datasets(cfg.data, train_transform=tf)
        retrainer = Retrainer(req, info, splits)
        with Run.of(req, info) as run:
            if info.main and req.resume is None:
                req.genotype.save(req.run_dir / layout.GENOTYPE)
            for note in [splits.describe(), *splits.notes, describe_augment(cfg, "retrain"), *notes]:
                run.progress.line(note)
            run.progress.line(
                f"retrain {req.run_dir}: {count(count_params(retrainer.model))} params, {r.epochs} epochs of "
                f"{retrainer.steps} steps, batch {r.batch_size} on {info.world} x {info.device.type}"
            )
            m = retrainer.retrain(run)
            if m is not None:
                run.finished(
                    f"top-1 {m['top1']:.4f}, top-5 {m['top5']:.4f}",
                    f"done: test top-1 {m['top1']:.2%}, top-5 {m['top5']:.2%} (epoch {m['best_epoch']}, "
                    f"{m['selected_on']}); last epoch {m['last_top1']:.2%}; {count(m['params'])} params, "
                    f"{count(m['flops'])} FLOPs",
                )
    return outcome.code


def main(argv: list[str] | None = None) -> int:
    """`python -m dasvit.train.retrain ARGS` (see `dasvit.run.requests.RetrainRequest`)."""
    return run(RetrainRequest.parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())

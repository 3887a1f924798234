"""Retrain a genotype from scratch and measure it: top-1, top-5, params, FLOPs, images/s.

`python -m dasvit.retrain GENOTYPE|RUN_DIR|BUILTIN [--preset P] [--set k=v ...] [--run-dir DIR]
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
from ..run.checkpoint import checkpoint_mismatch, fitting_checkpoint, load_checkpoint, save_checkpoint
from ..run.config import load_run_config
from ..run.events import EPOCH
from ..run.requests import RetrainRequest
from ..run.runtime import DistInfo, Run, allocating, barrier, broadcast_object, drive, run_engine, setup_distributed
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


def train_epoch(
    train_model: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sched,
    ema,
    mixer,
    loader,
    steps: int,
    r,
    run: Run,
    label: str,
) -> dict[str, float]:
    """One epoch of `steps` steps: train_loss, train_acc, seconds and images_per_s over every rank, and the
    last step's lr."""
    info = run.info
    lr = r.lr
    params = [p for p in model.parameters() if p.requires_grad]
    sums = EpochSums(run, label, steps)
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        lr = optimizer.param_groups[0]["lr"]
        x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
        target = y
        if mixer is not None:
            x, target = mixer(x, y)
        loss, logits = weight_step(
            train_model,
            params,
            optimizer,
            x,
            target,
            info,
            grad_clip=r.grad_clip,
            label_smoothing=r.label_smoothing,
            scheduler=sched,
            grads_synced=info.world > 1,
        )
        if ema is not None:
            ema.update_parameters(model)
        sums.add(loss, logits, target.argmax(1) if target.ndim == 2 else target)  # mixed targets: the larger part
        sums.step(i)
    return {**sums.totals(), "lr": lr}


# ---------------------------------------------------------------------------------------------
# the engine


def retrain(req: RetrainRequest) -> int:
    """Train the request's cell from scratch (or resume); returns an exit code (0 finished, 130 stopped)."""
    req = req.resolved()
    info = setup_distributed()
    req = replace(req, run_dir=Path(broadcast_object(str(req.run_dir), info)))  # rank 0's (runs/<name>-<time>)
    cfg, r, resume = req.config, req.config.retrain, req.resume is not None
    if r.batch_size % info.world:
        raise ConfigError(f"retrain.batch_size ({r.batch_size}) must be divisible by the {info.world} processes.")
    tf, notes = train_transform(cfg)
    splits = build_datasets(cfg.data, train_transform=tf)
    train_set, num_classes = splits.train, splits.num_classes
    per_rank = r.batch_size // info.world
    train_loaders = EpochLoaders(train_set, per_rank, cfg.data.workers, r.seed, info.rank, info.world)
    val_loader = EpochLoaders(
        splits.selection, per_rank, cfg.data.workers, r.seed, info.rank, info.world, shuffle=False, drop_last=False
    ).epoch(0)
    steps = len(train_loaders) if r.steps_per_epoch == 0 else min(r.steps_per_epoch, len(train_loaders))
    if steps == 0:
        raise ConfigError(
            f"the training set ({len(train_set)} images) is smaller than one batch (retrain.batch_size {r.batch_size})."
        )
    mixer = batch_mixer(cfg, num_classes)

    torch.manual_seed(r.seed)
    with allocating("the network", "retrain.depth or space.embed_dim"):
        model = build_network(req.genotype, cfg, num_classes).to(info.device)
    optimizer = torch.optim.AdamW(param_groups(model, r.weight_decay), lr=r.lr, betas=(0.9, 0.999))
    sched = warmup_cosine(optimizer, r.epochs * steps, r.warmup_epochs * steps, r.min_lr)
    ema = None
    if r.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(r.ema_decay), use_buffers=True)
    start, best = 0, {"top1": -1.0, "top5": 0.0, "epoch": 0}
    if resume:
        state = load_checkpoint(
            req.run_dir / layout.CHECKPOINT, map_location=info.device, warn=None if info.main else (lambda text: None)
        )
        with fitting_checkpoint(req.run_dir):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["sched"])
            if ema is not None and "ema" in state:
                ema.load_state_dict(state["ema"])
            start, best = int(state["epoch"]), dict(state["best"])
        if not 0 <= start <= r.epochs:
            raise checkpoint_mismatch(req.run_dir, f"it stopped after epoch {start} of retrain.epochs {r.epochs}")
    train_model: nn.Module = model
    if info.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    if r.compile:
        train_model = torch.compile(train_model)
    eval_model = ema.module if ema is not None else model

    def work(run: Run) -> tuple[str, str]:
        nonlocal best
        if info.main and not resume:
            req.genotype.save(req.run_dir / layout.GENOTYPE)
        for note in [splits.describe(), *splits.notes, describe_augment(cfg, "retrain"), *notes]:
            run.progress.line(note)
        params = count_params(model)
        run.progress.line(
            f"retrain {req.run_dir}: {count(params)} params, {r.epochs} epochs of "
            f"{steps} steps, batch {r.batch_size} on {info.world} x {info.device.type}"
        )
        for epoch in range(start, r.epochs):
            torch.manual_seed(mix_seed(r.seed, epoch, info.rank))  # resume replays exactly
            t0 = time.time()
            label = f"epoch {epoch + 1}/{r.epochs}"
            m = train_epoch(
                train_model, model, optimizer, sched, ema, mixer, train_loaders.epoch(epoch), steps, r, run, label
            )
            val = evaluate(eval_model, val_loader, info)
            val_loss, top1, top5 = val["val_loss"], val["top1"], val["top5"]
            fields = dict(
                stage=1,
                epoch=epoch + 1,
                epochs=r.epochs,
                train_loss=m["train_loss"],
                train_acc=m["train_acc"],
                val_loss=val_loss,
                val_acc=top1,
                top1=top1,
                top5=top5,
                lr=m["lr"],
                seconds=time.time() - t0,
                images_per_s=m["images_per_s"],
            )
            if info.device.type == "cuda":
                fields["peak_mem_bytes"] = torch.cuda.max_memory_allocated(info.device)
            if info.main:
                # the epoch is selected on the validation split; without one the last epoch is reported
                if top1 > best["top1"] or splits.val is None:
                    best = {"top1": top1, "top5": top5, "epoch": epoch + 1}
                    save_checkpoint(
                        req.run_dir / BEST, _weights(eval_model.state_dict(), epoch + 1, top1, top5, num_classes)
                    )
                save_checkpoint(
                    req.run_dir / layout.CHECKPOINT,
                    resume_state(epoch + 1, model, optimizer, sched, ema, best, req),
                    keep_previous=True,
                )
            run.emit(EPOCH, **fields)
            run.progress.line(
                f"epoch {epoch + 1}/{r.epochs} train_loss {fields['train_loss']:.4f} val_loss {val_loss:.4f} "
                f"top1 {top1:.2%} top5 {top5:.2%} {fields['images_per_s']:.0f} img/s {fields['seconds']:.1f}s"
            )
            barrier(info)
        message = line = ""
        if info.main:
            metrics = finish(req, eval_model, best, splits, info, params)
            message = f"top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f}"
            line = (
                f"done: test top-1 {metrics['top1']:.2%}, top-5 {metrics['top5']:.2%} "
                f"(epoch {metrics['best_epoch']}, {metrics['selected_on']}); last epoch {metrics['last_top1']:.2%}; "
                f"{count(metrics['params'])} params, {count(metrics['flops'])} FLOPs"
            )
        barrier(info)
        return message, line

    return drive(req, info, work)


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
        "image_size": sizes["image_size"],
        "patch_size": sizes["patch_size"],
        "embed_dim": sizes["embed_dim"],
        "depth": sizes["depth"],
        "num_classes": splits.num_classes,
        "epochs": r.epochs,
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


def run(req: RetrainRequest) -> int:
    """Run the retrain a request asks for, in this process (one rank); returns the exit code."""
    return run_engine(lambda: retrain(req))


def main(argv: list[str] | None = None) -> int:
    """`python -m dasvit.retrain ARGS` (see `dasvit.engine_request.RetrainRequest`)."""
    return run(RetrainRequest.parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())

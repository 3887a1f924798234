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
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import rundir as rd
from .augment import batch_mixer, train_transform
from .augment import describe as describe_augment
from .config import Config, load_config, load_run_config, preset_names
from .data import EpochLoaders, Splits, build_datasets
from .engine_request import RetrainRequest, retrain_run_dir
from .errors import ConfigError, RunDirError, UserError
from .events import EPOCH, RUN_END
from .fmt import count
from .genotype import Genotype, load_genotype
from .network import Network, build_network
from .profile import count_flops, count_params, images_per_second
from .runtime import (
    EXIT_OK,
    EXIT_STOPPED,
    DistInfo,
    Run,
    Stopped,
    barrier,
    broadcast_object,
    checkpoint_mismatch,
    fail_event,
    fitting_checkpoint,
    load_checkpoint,
    reduce_sum,
    run_engine,
    save_checkpoint,
    setup_distributed,
)
from .training import evaluate, mix_seed, warmup_cosine, weight_step

BEST, LAST, METRICS = rd.BEST, rd.LAST, rd.METRICS


# ---------------------------------------------------------------------------------------------
# what to train, with which config, where


@dataclass
class Plan:
    """A resolved retrain: its config, its cell, its run directory, and whether it resumes."""

    cfg: Config
    genotype: Genotype
    run_dir: Path
    resume: bool = False


def _network_sizes(cfg: Config) -> tuple:
    return (
        cfg.retrain.depth,
        cfg.space.embed_dim,
        cfg.space.patch_size,
        cfg.data.name,
        cfg.data.image_size,
        cfg.data.channels,
    )


def _same_cell(a: Genotype, b: Genotype) -> bool:
    return (a.nodes, sorted(a.edges, key=str), sorted(a.output), a.layers, a.embed_dim, a.head_dim) == (
        b.nodes,
        sorted(b.edges, key=str),
        sorted(b.output),
        b.layers,
        b.embed_dim,
        b.head_dim,
    )


def plan_retrain(
    source: str | None,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
) -> Plan:
    """Resolve a retrain's arguments (a `RetrainRequest`'s fields) into a Plan; every mistake is a
    one-sentence UserError.

    The config is `--preset` if given, else the config.yaml of the run the source comes from (a search run
    directory, or a FocusFormer run for its specialized/<budget>.json); `--set` applies on top.
    A search RUN_DIR retrains into RUN_DIR/retrain; anything else into runs/<name>-retrain-<time>.
    `--resume DIR` continues DIR with its own config.yaml and genotype.json (`--set` still applies).
    """
    if resume is not None:
        rdir = Path(resume)
        if rd.is_run_dir(rdir / rd.RETRAIN):  # a search run: resume its retrain
            rdir = rd.run_subdir(rdir, rd.RETRAIN)
        rd.require_run_dir(rdir)
        if rd.summarize(rdir).kind != "retrain":
            raise RunDirError(f"{rdir} is not a retrain run; --resume takes the directory a retrain writes.")
        if preset is not None:
            raise ConfigError(f"--preset cannot change the config of {rdir}, which is being resumed; use --set.")
        if run_dir is not None and Path(run_dir).resolve() != rdir.resolve():
            raise ConfigError("--run-dir and --resume name different directories; --resume alone is enough.")
        if not (rdir / rd.CHECKPOINT).is_file():
            raise RunDirError(f"{rdir} has no {rd.CHECKPOINT} yet; no epoch finished, so start it afresh.")
        cfg = load_config(str(rdir / rd.CONFIG), overrides)
        if _network_sizes(cfg) != _network_sizes(load_run_config(rdir / rd.CONFIG)):
            raise ConfigError(
                "--set cannot change the network or the data of a run being resumed "
                "(retrain.depth, space.embed_dim, space.patch_size, data.name, data.image_size); start a new run instead."
            )
        genotype = load_genotype(rdir / rd.GENOTYPE)
        if source is not None and not _same_cell(load_genotype(source), genotype):
            raise ConfigError(f"{source} is not the cell that {rdir} trains; leave it out to resume.")
        rd.ensure_writable(rdir)
        return Plan(cfg, genotype, rdir, resume=True)
    if source is None:
        raise ConfigError("name what to retrain: a genotype file, a search run directory or a built-in (vit_b16).")
    genotype = load_genotype(source)
    config_dir = rd.config_dir_for(source)  # a run directory, or a file a run wrote (specialized/<budget>.json)
    if preset is None and config_dir is None:
        raise ConfigError(
            f"{source} carries no configuration; pass --preset ({', '.join(preset_names())} or a YAML file)."
        )
    cfg = load_config(preset if preset is not None else str(config_dir / rd.CONFIG), overrides)
    run_dir = rd.check_new_run_dir(Path(run_dir or retrain_run_dir(source)))  # one killed before an epoch: again
    return Plan(cfg, genotype, run_dir)


# ---------------------------------------------------------------------------------------------
# the recipe


def param_groups(model: Network, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices; not norms, biases, the position embedding or the class token."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resume_state(epoch: int, model: nn.Module, optimizer, sched, ema, best: dict, plan: Plan) -> dict:
    """checkpoint.pt: everything a resumed run needs (plain tensors and numbers: weights-only loadable).

    No RNG state: each epoch reseeds from (seed, epoch, rank), so a resumed epoch replays exactly.
    """
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sched": sched.state_dict(),
        "best": best,
        "genotype": plan.genotype.to_json(),
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
    info: DistInfo,
    run: Run,
) -> tuple[float, float, float, float]:
    """One epoch of `steps` steps; returns (loss sum, correct, images) summed over ranks, and the last lr.

    Metrics accumulate on the device: no host sync per step beyond the stop check.
    """
    loss_sum = torch.zeros((), device=info.device)
    correct = torch.zeros((), device=info.device)
    seen, lr, shown = 0, r.lr, ""
    params = [p for p in model.parameters() if p.requires_grad]
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
        hard = target.argmax(1) if target.ndim == 2 else target
        loss_sum += loss * y.numel()
        correct += (logits.argmax(1) == hard).sum()
        seen += y.numel()
        if i % 10 == 0 or i + 1 == steps:
            shown = f"loss {loss.item():.3f} lr {lr:.2e}"
        run.progress.step(i + 1, shown)
        if run.should_stop():
            raise Stopped()
    loss_total, correct_total, seen_total = reduce_sum([loss_sum.item(), correct.item(), float(seen)], info)
    return loss_total, correct_total, seen_total, lr


# ---------------------------------------------------------------------------------------------
# the engine


def retrain(plan: Plan, progress: bool = True) -> int:
    """Train `plan.genotype` from scratch (or resume); returns an exit code (0 finished, 130 stopped)."""
    info = setup_distributed()
    plan.run_dir = Path(broadcast_object(str(plan.run_dir), info))
    cfg, r = plan.cfg, plan.cfg.retrain
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
    model = build_network(plan.genotype, cfg, num_classes).to(info.device)
    optimizer = torch.optim.AdamW(param_groups(model, r.weight_decay), lr=r.lr, betas=(0.9, 0.999))
    sched = warmup_cosine(optimizer, r.epochs * steps, r.warmup_epochs * steps, r.min_lr)
    ema = None
    if r.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(r.ema_decay), use_buffers=True)
    start, best = 0, {"top1": -1.0, "top5": 0.0, "epoch": 0}
    if plan.resume:
        state = load_checkpoint(
            plan.run_dir / rd.CHECKPOINT, map_location=info.device, warn=None if info.main else (lambda text: None)
        )
        with fitting_checkpoint(plan.run_dir):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["sched"])
            if ema is not None and "ema" in state:
                ema.load_state_dict(state["ema"])
            start, best = int(state["epoch"]), dict(state["best"])
        if not 0 <= start <= r.epochs:
            raise checkpoint_mismatch(plan.run_dir, f"it stopped after epoch {start} of retrain.epochs {r.epochs}")
    train_model: nn.Module = model
    if info.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    if r.compile:
        train_model = torch.compile(train_model)
    eval_model = ema.module if ema is not None else model

    with Run(plan.run_dir, cfg, "retrain", info, resume=plan.resume, progress=progress) as run:
        try:
            if info.main and not plan.resume:
                plan.genotype.save(plan.run_dir / rd.GENOTYPE)
            for note in [splits.describe(), *splits.notes, describe_augment(cfg, "retrain"), *notes]:
                run.progress.line(note)
            params = count_params(model)
            run.progress.line(
                f"retrain {plan.run_dir}: {params / 1e6:.2f} M params, {r.epochs} epochs of "
                f"{steps} steps, batch {r.batch_size} on {info.world} x {info.device.type}"
            )
            for epoch in range(start, r.epochs):
                torch.manual_seed(mix_seed(r.seed, epoch, info.rank))  # resume replays exactly
                t0 = time.time()
                run.progress.start_epoch(f"epoch {epoch + 1}/{r.epochs}", steps)
                loss_sum, correct, seen, lr = train_epoch(
                    train_model, model, optimizer, sched, ema, mixer, train_loaders.epoch(epoch), steps, r, info, run
                )
                train_seconds = time.time() - t0
                val = evaluate(eval_model, val_loader, info)
                val_loss, top1, top5 = val["val_loss"], val["top1"], val["top5"]
                fields = dict(
                    stage=1,
                    epoch=epoch + 1,
                    epochs=r.epochs,
                    train_loss=loss_sum / seen,
                    train_acc=correct / seen,
                    val_loss=val_loss,
                    val_acc=top1,
                    top1=top1,
                    top5=top5,
                    lr=lr,
                    seconds=time.time() - t0,
                    images_per_s=seen / max(train_seconds, 1e-9),
                )
                if info.device.type == "cuda":
                    fields["peak_mem_bytes"] = torch.cuda.max_memory_allocated(info.device)
                if info.main:
                    # the epoch is selected on the validation split; without one the last epoch is reported
                    if top1 > best["top1"] or splits.val is None:
                        best = {"top1": top1, "top5": top5, "epoch": epoch + 1}
                        save_checkpoint(
                            plan.run_dir / BEST, _weights(eval_model.state_dict(), epoch + 1, top1, top5, num_classes)
                        )
                    save_checkpoint(
                        plan.run_dir / rd.CHECKPOINT,
                        resume_state(epoch + 1, model, optimizer, sched, ema, best, plan),
                        keep_previous=True,
                    )
                run.emit(EPOCH, **fields)
                run.progress.line(
                    f"epoch {epoch + 1}/{r.epochs} train_loss {fields['train_loss']:.4f} val_loss {val_loss:.4f} "
                    f"top1 {top1:.2%} top5 {top5:.2%} {fields['images_per_s']:.0f} img/s {fields['seconds']:.1f}s"
                )
                barrier(info)
            if info.main:
                metrics = finish(plan, eval_model, best, splits, info, params)
                run.progress.line(
                    f"done: test top-1 {metrics['top1']:.2%}, top-5 {metrics['top5']:.2%} "
                    f"(epoch {metrics['best_epoch']}, {metrics['selected_on']}); last epoch {metrics['last_top1']:.2%}; "
                    f"{count(metrics['params'])} params, {count(metrics['flops'])} FLOPs"
                )
                run.emit(
                    RUN_END, status="finished", message=f"top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f}"
                )
            barrier(info)
        except (Stopped, KeyboardInterrupt):
            run.end("stopped", "stopped; resume with --resume " + str(plan.run_dir))
            return EXIT_STOPPED
        except BaseException as e:
            if isinstance(e, UserError):
                run.end("failed", str(e))
            else:
                fail_event(run, e)
            raise
    return EXIT_OK


def finish(plan: Plan, eval_model: nn.Module, best: dict, splits: Splits, info: DistInfo, params: int) -> dict:
    """Write last.pt and metrics.json (rank 0): the test split's top-1 / top-5 of the selected epoch (best.pt:
    the best on the validation split, or the last without one) and of the last, params, FLOPs, images/s."""
    cfg, r = plan.cfg, plan.cfg.retrain
    run_dir = plan.run_dir
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
        "image_size": cfg.data.image_size,
        "patch_size": cfg.space.patch_size,
        "embed_dim": plan.genotype.embed_dim or cfg.space.embed_dim,
        "depth": plan.genotype.depth or r.depth,
        "num_classes": splits.num_classes,
        "epochs": r.epochs,
        "dataset": cfg.data.name,
        "genotype": plan.genotype.to_json(),
    }
    rd.atomic_write_text(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")
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
    if not (run_dir / BEST).is_file() and (run_dir / rd.RETRAIN).is_dir():
        run_dir = run_dir / rd.RETRAIN
    path = run_dir / (BEST if which == "best" else LAST)
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {path.name}; has a retrain epoch finished there?")
    cfg = load_run_config(run_dir / rd.CONFIG)
    state = torch.load(path, map_location=device, weights_only=True)
    model = build_network(
        load_genotype(run_dir / rd.GENOTYPE),
        cfg,
        state["num_classes"],
        drop_path=0.0,
        in_chans=state["model"]["embed.proj.weight"].shape[1],
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def plan_of(req: RetrainRequest) -> Plan:
    return plan_retrain(req.source, req.preset, req.overrides, req.run_dir, req.resume)


def main(argv: list[str] | None = None) -> int:
    """`python -m dasvit.retrain ARGS` (see `dasvit.engine_request.RetrainRequest`)."""
    req = RetrainRequest.parse(argv)
    return run_engine(lambda: retrain(plan_of(req), progress=req.progress))


if __name__ == "__main__":
    raise SystemExit(main())

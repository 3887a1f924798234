"""Validating a config: every value within what dasvit can do (ranges, the space's ops, the stages, the
augmentation, FocusFormer's space) and every size within `dasvit.limits`; one sentence naming the key.
"""

from __future__ import annotations

import math

from ..errors import ConfigError
from ..model.opspec import parse_op
from .config import AugmentConfig, Config


def _positive(value: float, key: str) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be positive, got {value}.")


def validate(cfg: Config) -> None:
    d, s, se, r = cfg.data, cfg.space, cfg.search, cfg.retrain
    _validate_lengths(cfg)
    _validate_launcher(cfg)
    for key, v in [
        ("data.image_size", d.image_size),
        ("data.batch_size", d.batch_size),
        ("space.embed_dim", s.embed_dim),
        ("space.patch_size", s.patch_size),
        ("space.nodes", s.nodes),
        ("space.edges_per_node", s.edges_per_node),
        ("search.lr", se.lr),
        ("search.arch_lr", se.arch_lr),
        ("retrain.depth", r.depth),
        ("retrain.batch_size", r.batch_size),
        ("retrain.lr", r.lr),
        ("search.pts.dim", se.pts.dim),
    ]:
        _positive(v, key)
    if d.holdout < 0 or math.isnan(d.holdout) or (d.holdout >= 1 and d.holdout != int(d.holdout)):
        raise ConfigError(
            f"data.holdout is a fraction of the training set (0 to < 1) or a whole number of images, got {d.holdout}."
        )
    if d.subset < 0:
        raise ConfigError(f"data.subset is a number of training images (0: all), got {d.subset}.")
    if d.workers < 0:
        raise ConfigError(f"data.workers must be 0 or more, got {d.workers}.")
    if d.name == "synthetic":
        if d.synthetic_classes < 2:
            raise ConfigError(f"data.synthetic_classes must be at least 2, got {d.synthetic_classes}.")
        if d.synthetic_train < 4 or d.synthetic_val < 1:
            raise ConfigError("data.synthetic_train must be at least 4 and data.synthetic_val at least 1.")
    if d.image_size % s.patch_size:
        raise ConfigError(f"data.image_size ({d.image_size}) must be a multiple of space.patch_size ({s.patch_size}).")
    if not s.ops:
        raise ConfigError("space.ops must name at least one operation.")
    seen = set()
    for i, name in enumerate(s.ops):
        op = parse_op(name, key=f"space.ops[{i}]")
        if op.name in seen:
            raise ConfigError(f"space.ops[{i}] repeats {name!r}; each op may appear once.")
        seen.add(op.name)
        if op.type == "msa" and s.embed_dim % op.heads:
            raise ConfigError(
                f"space.ops[{i}] = {name!r}: space.embed_dim ({s.embed_dim}) must be divisible by {op.heads} heads."
            )
    if not se.stages:
        raise ConfigError("search.stages must list at least one stage.")
    prev_keep = len(s.ops)
    for i, st in enumerate(se.stages):
        key = f"search.stages[{i}]"
        if st.depth < 1:
            raise ConfigError(f"{key}.depth must be at least 1, got {st.depth}.")
        if st.epochs < 1:
            raise ConfigError(f"{key}.epochs must be at least 1, got {st.epochs}.")
        if not 1 <= st.keep <= prev_keep:
            raise ConfigError(
                f"{key}.keep must be between 1 and {prev_keep} (the ops left after the previous stage), got {st.keep}."
            )
        prev_keep = st.keep
    if se.skip_floor < 0:
        raise ConfigError(f"search.skip_floor must be 0 (off) or more, got {se.skip_floor}.")
    for key, v in [
        ("search.min_lr", se.min_lr),
        ("search.weight_decay", se.weight_decay),
        ("search.arch_weight_decay", se.arch_weight_decay),
        ("search.grad_clip", se.grad_clip),
        ("retrain.min_lr", r.min_lr),
        ("retrain.weight_decay", r.weight_decay),
        ("retrain.grad_clip", r.grad_clip),
    ]:
        if v < 0:
            raise ConfigError(f"{key} must be 0 or more, got {v}.")
    sel = se.selection
    if sel.max_skips < 0 or sel.tune_steps < 0 or sel.candidates < 1:
        raise ConfigError(
            "search.selection.max_skips and .tune_steps must be 0 or more and .candidates at least 1, got "
            f"{sel.max_skips}, {sel.tune_steps} and {sel.candidates}."
        )
    if se.arch_warmup_epochs < 0:
        raise ConfigError(f"search.arch_warmup_epochs must be 0 or more, got {se.arch_warmup_epochs}.")
    if se.steps_per_epoch < 0 or r.steps_per_epoch < 0:
        raise ConfigError("search.steps_per_epoch and retrain.steps_per_epoch must be 0 (full pass) or more.")
    if not (0 < se.pts.ratio <= 1) or math.isnan(se.pts.ratio):
        raise ConfigError(f"search.pts.ratio must be in (0, 1], got {se.pts.ratio}.")
    if not se.cost_weight >= 0 or math.isinf(se.cost_weight):
        raise ConfigError(f"search.cost_weight must be 0 or more, got {se.cost_weight}.")
    if se.budget_in != "derivation" and se.budget == "none":
        raise ConfigError(f"search.budget_in is {se.budget_in}, but search.budget is none: name a budget cell.")
    f = se.fairness
    if not 0 <= f.lower <= f.upper <= 1:
        raise ConfigError(
            f"search.fairness.lower and .upper must satisfy 0 <= lower <= upper <= 1, got {f.lower} and {f.upper}."
        )
    for key, v in [
        ("skip_threshold", f.skip_threshold),
        ("beta_skip", f.beta_skip),
        ("beta_type", f.beta_type),
        ("lambda_up", f.lambda_up),
        ("lambda_low", f.lambda_low),
    ]:
        if v < 0:
            raise ConfigError(f"search.fairness.{key} must be 0 or more, got {v}.")
    if r.epochs < 1:
        raise ConfigError(f"retrain.epochs must be at least 1, got {r.epochs}.")
    if not 0 <= r.warmup_epochs <= r.epochs:
        raise ConfigError(f"retrain.warmup_epochs must be between 0 and retrain.epochs ({r.epochs}).")
    for key, v in [("label_smoothing", r.label_smoothing), ("drop_path", r.drop_path)]:
        if not 0 <= v < 1:
            raise ConfigError(f"retrain.{key} must be in [0, 1), got {v}.")
    _validate_augment(se.augment, "search.augment")
    _validate_augment(r.augment, "retrain.augment")
    if se.augment.mixup or se.augment.cutmix:
        raise ConfigError(
            "search.augment.mixup and .cutmix must be 0: the search trains on hard labels "
            "(mixing is a retrain option, retrain.augment)."
        )
    if not 0 < r.ema_decay < 1:
        raise ConfigError(f"retrain.ema_decay must be in (0, 1), got {r.ema_decay}.")

    _validate_focus(cfg)
    _validate_sizes(cfg)


def _validate_focus(cfg: Config) -> None:
    f, lstm = cfg.focus, cfg.focus.lstm
    for key, values in [
        ("embed_dims", f.embed_dims),
        ("depths", f.depths),
        ("heads", f.heads),
        ("mlp_ratios", f.mlp_ratios),
    ]:
        if not values:
            raise ConfigError(f"focus.{key} must list at least one value.")
        if len(set(values)) != len(values):
            raise ConfigError(f"focus.{key} repeats a value: {values}; list each choice once.")
        for i, v in enumerate(values):
            if not v > 0:
                raise ConfigError(f"focus.{key}[{i}] must be positive, got {v}.")
    for key, v in [
        ("head_dim", f.head_dim),
        ("epochs", f.epochs),
        ("sampler_every", f.sampler_every),
        ("budget_bins", f.budget_bins),
        ("batch_size", f.batch_size),
        ("lr", f.lr),
        ("lstm.hidden", lstm.hidden),
        ("lstm.lr", lstm.lr),
        ("lstm.archs", lstm.archs),
        ("lstm.budgets", lstm.budgets),
        ("lstm.batch_size", lstm.batch_size),
    ]:
        _positive(v, f"focus.{key}")
    if lstm.archs < 2:
        raise ConfigError(
            f"focus.lstm.archs must be at least 2 (architectures are ranked against each other), got {lstm.archs}."
        )
    for key, v in [("warmup_epochs", f.warmup_epochs), ("lr_warmup_epochs", f.lr_warmup_epochs)]:
        if not 0 <= v <= f.epochs:
            raise ConfigError(f"focus.{key} must be between 0 and focus.epochs ({f.epochs}), got {v}.")
    for key, v in [("uniform_mix", f.uniform_mix), ("drop_path", f.drop_path)]:
        if not 0 <= v <= 1:
            raise ConfigError(f"focus.{key} must be in [0, 1], got {v}.")
    if not 0 < f.holdout < 1:
        raise ConfigError(f"focus.holdout must be in (0, 1), got {f.holdout}.")
    for key, v in [
        ("min_lr", f.min_lr),
        ("weight_decay", f.weight_decay),
        ("grad_clip", f.grad_clip),
        ("steps_per_epoch", f.steps_per_epoch),
        ("eval_batches", f.eval_batches),
        ("lstm.entropy", lstm.entropy),
    ]:
        if v < 0:
            raise ConfigError(f"focus.{key} must be 0 or more, got {v}.")
    if not str(f.base).strip():
        raise ConfigError("focus.base must name a built-in (vit_b16), a genotype.json or a DASViT run directory.")


def _validate_augment(a: AugmentConfig, key: str) -> None:
    if not 0 <= a.crop_padding <= 0.5:
        raise ConfigError(f"{key}.crop_padding is a fraction of the image side in [0, 0.5], got {a.crop_padding}.")
    if not 0 < a.crop_scale <= 1:
        raise ConfigError(f"{key}.crop_scale is a fraction of the image area in (0, 1], got {a.crop_scale}.")
    if not 0 <= a.randaugment_magnitude <= 30:
        raise ConfigError(f"{key}.randaugment_magnitude must be between 0 and 30, got {a.randaugment_magnitude}.")
    if not 0 <= a.random_erasing < 1:
        raise ConfigError(f"{key}.random_erasing is a probability in [0, 1), got {a.random_erasing}.")
    if a.mixup < 0 or a.cutmix < 0:
        raise ConfigError(f"{key}.mixup and {key}.cutmix are Beta alphas: 0 (off) or more.")


def _validate_lengths(cfg: Config) -> None:
    """The config's lists (their items are checked one by one after this)."""
    from ..limits import MAX_CHOICES

    s, f = cfg.space, cfg.focus
    for key, values in [
        ("space.ops", s.ops),
        ("search.stages", cfg.search.stages),
        *((f"focus.{k}", getattr(f, k)) for k in ("embed_dims", "depths", "heads", "mlp_ratios")),
    ]:
        if len(values) > MAX_CHOICES:
            raise ConfigError(f"{key} lists at most {MAX_CHOICES:,} values, got {len(values):,}.")


def _validate_sizes(cfg: Config) -> None:
    """What the config may ask for (dasvit.limits): sizes that would reach the allocator, or never end."""
    from ..limits import (
        MAX_BATCH,
        MAX_BUDGET_BINS,
        MAX_CLASSES,
        MAX_DEPTH,
        MAX_EDGES,
        MAX_EMBED_DIM,
        MAX_EPOCHS,
        MAX_HEADS,
        MAX_IMAGE_SIZE,
        MAX_LSTM_HIDDEN,
        MAX_MLP_RATIO,
        MAX_NODES,
        MAX_SAMPLER_DRAWS,
        MAX_SAMPLES,
        MAX_SEED,
        MAX_STEPS,
        MAX_TOKENS,
        MAX_WORKERS,
        check_at_most,
    )

    d, s, se, r, f = cfg.data, cfg.space, cfg.search, cfg.retrain, cfg.focus
    for key, value, bound in [
        ("data.image_size", d.image_size, MAX_IMAGE_SIZE),
        ("space.embed_dim", s.embed_dim, MAX_EMBED_DIM),
        ("space.nodes", s.nodes, MAX_NODES),
        ("space.edges_per_node", s.edges_per_node, MAX_NODES + 1),
        ("retrain.depth", r.depth, MAX_DEPTH),
        ("focus.head_dim", f.head_dim, MAX_EMBED_DIM),
        ("data.synthetic_classes", d.synthetic_classes, MAX_CLASSES),
        ("search.pts.dim", se.pts.dim, MAX_EMBED_DIM),
        ("data.workers", d.workers, MAX_WORKERS),
        ("data.batch_size", d.batch_size, MAX_BATCH),
        ("retrain.batch_size", r.batch_size, MAX_BATCH),
        ("focus.batch_size", f.batch_size, MAX_BATCH),
        ("focus.lstm.batch_size", f.lstm.batch_size, MAX_BATCH),
        ("focus.lstm.hidden", f.lstm.hidden, MAX_LSTM_HIDDEN),
        ("focus.budget_bins", f.budget_bins, MAX_BUDGET_BINS),
        ("focus.lstm.archs", f.lstm.archs, MAX_SAMPLER_DRAWS),
        ("focus.lstm.budgets", f.lstm.budgets, MAX_SAMPLER_DRAWS),
        ("focus.lstm.cost_archs", f.lstm.cost_archs, MAX_SAMPLER_DRAWS),
        ("search.arch_warmup_epochs", se.arch_warmup_epochs, MAX_EPOCHS),
        ("search.selection.max_skips", se.selection.max_skips, MAX_EDGES),
        ("search.selection.tune_steps", se.selection.tune_steps, MAX_STEPS),
        ("search.selection.candidates", se.selection.candidates, MAX_SAMPLES),
        ("retrain.epochs", r.epochs, MAX_EPOCHS),
        ("focus.epochs", f.epochs, MAX_EPOCHS),
        ("search.steps_per_epoch", se.steps_per_epoch, MAX_STEPS),
        ("retrain.steps_per_epoch", r.steps_per_epoch, MAX_STEPS),
        ("focus.steps_per_epoch", f.steps_per_epoch, MAX_STEPS),
        ("focus.sampler_every", f.sampler_every, MAX_STEPS),
        ("focus.eval_batches", f.eval_batches, MAX_STEPS),
        *((f"search.stages[{i}].depth", st.depth, MAX_DEPTH) for i, st in enumerate(se.stages)),
        *((f"search.stages[{i}].epochs", st.epochs, MAX_EPOCHS) for i, st in enumerate(se.stages)),
        *(("focus.embed_dims", v, MAX_EMBED_DIM) for v in f.embed_dims),
        *(("focus.depths", v, MAX_DEPTH) for v in f.depths),
        *(("focus.heads", v, MAX_HEADS) for v in f.heads),
        *(("focus.mlp_ratios", v, MAX_MLP_RATIO) for v in f.mlp_ratios),
    ]:
        check_at_most(value, bound, key)
    for key, seed in [("data", d.seed), ("search", se.seed), ("retrain", r.seed), ("focus", f.seed)]:
        if abs(seed) > MAX_SEED:
            raise ConfigError(f"{key}.seed is between -{MAX_SEED:,} and {MAX_SEED:,}, got {seed:,}.")
    tokens = (d.image_size // s.patch_size) ** 2 + 1
    if tokens > MAX_TOKENS:
        raise ConfigError(
            f"data.image_size {d.image_size} over space.patch_size {s.patch_size} makes {tokens:,} tokens per image; "
            f"at most {MAX_TOKENS:,} (64 x 64 patches and the class token): raise the patch size."
        )
    if d.name == "synthetic":
        gib = (d.synthetic_train + d.synthetic_val + d.synthetic_classes) * 3 * d.image_size**2 * 4 / 2**30
        if gib > 4:
            raise ConfigError(
                f"the synthetic task (data.synthetic_train + synthetic_val images of {d.image_size} px) would take "
                f"{gib:,.1f} GiB of memory; at most 4 GiB: ask for fewer or smaller images."
            )
    if all(parse_op(o).type == "zero" for o in s.ops):
        raise ConfigError("space.ops must hold an op other than zero: a cell of zero ops computes nothing.")


MAX_JOB_MINUTES = 60 * 24 * 366  # a year: past any partition's limit
MAX_NODES = 4096


def _validate_launcher(cfg: Config) -> None:
    from ..limits import MAX_PROCESSES, MAX_THREADS

    la = cfg.launcher
    for key, v, low, high in [
        ("launcher.jobs", la.jobs, 0, MAX_PROCESSES),
        ("launcher.threads", la.threads, 1, MAX_THREADS),
        ("launcher.time", la.time, 1, MAX_JOB_MINUTES),
        ("launcher.gpus_per_job", la.gpus_per_job, 0, 64),
        ("launcher.cpus_per_job", la.cpus_per_job, 1, MAX_THREADS),
        ("launcher.mem_gb", la.mem_gb, 0, 1 << 20),
        ("launcher.nodes", la.nodes, 1, MAX_NODES),
    ]:
        if not low <= v <= high:
            raise ConfigError(f"{key} must be between {low:,} and {high:,}, got {v:,}.")
    if la.partition != la.partition.strip() or any(c.isspace() for c in la.partition):
        raise ConfigError(
            f"launcher.partition is a partition's name (\"\": the cluster's default), got {la.partition!r:.40}."
        )
    for k, v in la.slurm_options.items():
        if not isinstance(k, str) or not k.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"launcher.slurm_options has the key {k!r:.40}; sbatch options are words (account, qos).")
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(f"launcher.slurm_options.{k} must be a single value (a string or a number).")

"""Configuration: the typed sections with their defaults (the schema of config.yaml and the presets).

A config is plain data (dataclasses). `dasvit.run.presets` builds one from a preset YAML file and dotted
`--set` overrides; `dasvit.run.config_check` validates it. Every mistake a user can make there raises
`ConfigError` with one sentence naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

DEFAULT_OPS = ["zero", "skip", "msa_4", "msa_8", "msa_12", "mlp_0.5", "mlp_2", "mlp_4"]


@dataclass
class DataConfig:
    """Where images come from and how they are batched."""

    name: Literal["cifar10", "cifar100", "imagenet100", "imagefolder", "digits", "fashion-mnist", "synthetic"] = (
        "synthetic"
    )
    root: str = "data"
    image_size: int = 32
    # the validation split, held out of the training set class by class: a fraction (< 1) or a number of
    # images (>= 1). Per-epoch figures and every selection (a retrain's best epoch, a specialization) are
    # made on it; the dataset's own test split is only reported. 0: no validation split (a retrain then
    # reports its last epoch)
    holdout: float = 0.1
    subset: int = 0  # train on this many training images (class by class), 0: all of them
    seed: int = 0  # draws the validation and subset images (and digits' test fifth): the same for every search seed
    # image channels the network reads: auto = the dataset's own (digits 1; imagefolder: 1 if its images
    # are grayscale, else 3; the others 3); 1 or 3 converts explicitly (grayscale <-> RGB)
    channels: Literal["auto", 1, 3] = "auto"
    batch_size: int = 64
    workers: int = 2
    download: bool = True
    # synthetic only: a generated, learnable classification task
    synthetic_classes: int = 10
    synthetic_train: int = 2000
    synthetic_val: int = 500


@dataclass
class AugmentConfig:
    """Augmentation of one phase's training images (`search.augment`, `retrain.augment`).

    Per image: crop, flip, RandAugment, random erasing; per batch: Mixup / CutMix. "auto" resolves from
    what the images are (dasvit.train.augment.resolve_policy: their size and channels, `ImageInfo`), not from
    the dataset's name: `flip` is horizontal where a mirror image keeps its label (colour photographs,
    clothing) and none for digits, grayscale image folders and the synthetic task; `crop` is never applied
    in the search (a ViT's patch grid is not shift-equivariant; RESULTS.md has what a crop cost the
    supernet), and in the retrain is the random-resized crop for images of at least 64 px, pad-and-crop below. The search's default is light
    (a flip at most), the retrain's the strong DeiT recipe (RandAugment m9, Mixup 0.8, CutMix 1.0, random
    erasing 0.25), which presets for small data turn down.
    """

    flip: Literal["auto", "horizontal", "none"] = "auto"
    crop: Literal["auto", "pad", "resized", "none"] = "auto"
    crop_padding: float = 0.125  # pad: zero padding on each side, a fraction of the image side (4 px at 32 px)
    crop_scale: float = 0.08  # resized: the smallest crop, a fraction of the image area
    randaugment: bool = False
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0
    mixup: float = 0.0  # Beta alpha; 0 is off
    cutmix: float = 0.0  # Beta alpha; 0 is off


def strong_augment() -> AugmentConfig:
    """The retrain's default: DeiT's recipe."""
    return AugmentConfig(randaugment=True, random_erasing=0.25, mixup=0.8, cutmix=1.0)


@dataclass
class SpaceConfig:
    """The search space: the cell DAG and its candidate operations."""

    embed_dim: int = 192
    patch_size: int = 4
    nodes: int = 3
    ops: list[str] = field(default_factory=lambda: list(DEFAULT_OPS))
    edges_per_node: int = 2


@dataclass
class StageConfig:
    """One progressive stage: supernet depth, ops kept per edge, epochs."""

    depth: int = 2
    keep: int = 8
    epochs: int = 30


@dataclass
class PTSConfig:
    """Attention-based partial token selection."""

    enabled: bool = True
    ratio: float = 0.5
    dim: int = 64


SELECTIONS = ("argmax", "skip-limit", "perturbation", "oneshot")


def parse_selection(text: str) -> tuple[str, list[str]]:
    """A selection rule as a command takes it: one of SELECTIONS, or skip-limit-<M> (skip-limit with that M);
    (the rule, the config overrides it implies). A misspelt one is one sentence."""
    head, _, m = text.rpartition("-")
    if head == "skip-limit" and m.isdigit() and len(m) <= 4:
        return "skip-limit", [f"search.selection.max_skips={int(m)}"]
    if text in SELECTIONS:
        return text, []
    raise ConfigError(f"a selection rule is one of {', '.join(SELECTIONS)} or skip-limit-<M>, got {text[:80]!r}.")


@dataclass
class SelectionConfig:
    """How the final cell is taken from the last stage's supernet (dasvit.search.selection); every rule keeps the
    derivation's rules (edges per node, the budget, an attention edge, a residual path)."""

    # argmax: the cell of the largest α weight (DARTS, the paper); skip-limit: the same with at most
    # max_skips skip edges (P-DARTS's M); perturbation: per edge the op whose removal costs the supernet most
    # validation accuracy, with a short tune between decisions (Wang et al. 2021); oneshot: the best of
    # `candidates` cells sampled from α, each scored with the supernet's weights on the validation split
    rule: Literal["argmax", "skip-limit", "perturbation", "oneshot"] = "argmax"
    max_skips: int = 2
    tune_steps: int = 20  # perturbation: weight steps on the weights half between two edge decisions
    candidates: int = 32  # oneshot: cells sampled from α (the argmax cell is always one of them)


@dataclass
class FairnessConfig:
    """Operation fairness regularisation: L = beta_skip * L_skip + beta_type * L_type.

    beta_skip defaults to 0.1: α is trained with Adam, which turns a penalty of constant sign into a
    steady push of one lr per step, so at 1.0 the demo search pruned `skip` from every edge (no
    residual path left); at 0.1 skip stays in check (0.15 of the weight) without vanishing.

    skip_threshold: L_skip counts only the skip weight above this multiple of skip's fair share (1/n
    on an edge with n active ops): L_skip = mean_e max(0, w_e[skip] - skip_threshold / n_e). 0 is the
    paper's L_skip = mean_e w_e[skip]. With the paper's term and weak signal (real images, few epochs)
    the penalty, whose sign never changes, decides alone: on digits it pruned skip from every edge.
    """

    enabled: bool = True
    skip_threshold: float = 1.0
    beta_skip: float = 0.1
    beta_type: float = 1.0
    lower: float = 0.2
    upper: float = 0.6
    lambda_up: float = 1.0
    lambda_low: float = 1.0


@dataclass
class SearchConfig:
    """The bi-level progressive search."""

    stages: list[StageConfig] = field(
        default_factory=lambda: [
            StageConfig(depth=2, keep=8, epochs=30),
            StageConfig(depth=4, keep=5, epochs=30),
            StageConfig(depth=6, keep=3, epochs=30),
        ]
    )
    arch_warmup_epochs: int = 5
    pts: PTSConfig = field(default_factory=PTSConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    approval: Literal["auto", "manual"] = "auto"
    # how `zero` takes part in a stage-end pruning: compete (ranked with the others for the stage's `keep`
    # slots, as P-DARTS), free (kept on every edge outside the slots: `keep` counts the other ops), or
    # drop (removed at the first pruning; `keep` counts the other ops). RESULTS.md has how they compared
    prune_zero: Literal["compete", "free", "drop"] = "compete"
    # when a pruning would strip `skip` from every edge, keep it on the edge leaving a cell input where it
    # weighs most, unless even there it is below skip_floor times its fair share 1/n (0: off)
    skip_floor: float = 0.5
    # the derived cell costs no more FLOPs and no more params per layer than this cell does at the same
    # width and tokens: a built-in (vit_b16, the ViT block) or a genotype file; none: no budget. The cell of
    # the largest α weight within it is derived (dasvit.search.derivation.derive_genotype)
    budget: str = "vit_b16"
    # where the budget binds: derivation (the cell of the largest α weight within it is derived), objective
    # (a term of the α objective, cost_weight · Σ max(0, E_α[cell cost] / budget − 1) over FLOPs and params,
    # as ProxylessNAS prices latency; the strongest cell is derived whatever it costs: dasvit.search.budget),
    # or both. Measured on Fashion-MNIST: RESULTS.md, the budget in the α objective against the budgeted derivation
    budget_in: Literal["derivation", "objective", "both"] = "derivation"
    cost_weight: float = 1.0  # λ of the objective's cost term (budget_in objective or both)
    # a stage's supernet starts from the last stage's weights (cell k from cell k mod its depth, the ops still
    # there) instead of afresh (P-DARTS); α starts afresh either way. RESULTS.md has the two compared
    inherit_weights: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # light: crop and flip only
    seed: int = 0
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    steps_per_epoch: int = 0  # 0: a full pass over the weights half
    # activation checkpointing of the mixed edges: each node's edges (with PTS: gather, edges and gate) save only
    # their inputs and are recomputed in backward (torch.utils.checkpoint); see `dasvit search --dry-run`
    checkpoint_edges: bool = False
    # torch.compile of each stage's supernet. It costs a compilation at the start of every stage (what it costs
    # and earns: BENCHMARKS.md), so "auto" compiles only on CUDA and only stages of at least COMPILE_MIN_STEPS
    # steps; true always, false never.
    compile: Literal["auto", True, False] = "auto"


COMPILE_MIN_STEPS = 2000  # search.compile=auto: shorter stages do not earn back a compilation


def compile_stage(sc: SearchConfig, device_type: str, stage_steps: int) -> bool:
    """Whether a search stage of `stage_steps` weight steps compiles its supernet (search.compile)."""
    if sc.compile == "auto":
        return device_type == "cuda" and stage_steps >= COMPILE_MIN_STEPS
    return bool(sc.compile)


@dataclass
class RetrainConfig:
    """Training the discrete network from scratch."""

    depth: int = 12
    epochs: int = 500
    warmup_epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    augment: AugmentConfig = field(default_factory=strong_augment)
    grad_clip: float = 1.0
    ema: bool = False
    ema_decay: float = 0.9998
    compile: bool = False
    steps_per_epoch: int = 0
    seed: int = 0
    # the network's first weights: scratch (initialised as ViT), or inherited: the weights beside the genotype
    # file (<name>.safetensors, as dasvit specialize writes a FocusFormer subnet's), then fine-tuned
    init: Literal["scratch", "inherited"] = "scratch"


@dataclass
class FocusLSTMConfig:
    """The budget-conditioned LSTM sampler and its REINFORCE steps."""

    hidden: int = 64
    lr: float = 1e-3
    # weight of the entropy bonus; at 0.01 the sampler's entropy collapsed from 11 to about 1 nat on digits
    entropy: float = 0.05
    # a draw's entropy is kept above this fraction of the uniform draw's over the same decisions (0: no floor);
    # without it the draws collapsed onto one or two networks per budget (BENCHMARKS.md, the sampler)
    entropy_floor: float = 0.5
    archs: int = 8  # architectures drawn per budget per sampler step
    budgets: int = 2  # budgets per sampler step
    batch_size: int = 64  # held-out images each architecture is scored on
    # how a budget ranks the draws: window (the bin's own FLOPs range first, lower loss winning there) or cap
    # (within budget first, lower loss winning: small networks win at every budget)
    rank: Literal["window", "cap"] = "window"
    # per sampler step, this many draws per bin (every bin) learn only where the bin's FLOPs window lies:
    # priced analytically, no supernet evaluation; 0: off
    cost_archs: int = 32


@dataclass
class FocusConfig:
    """FocusFormer: an elastic space around a base cell, its weight-entangled supernet and the sampler.

    Defaults are AutoFormer-Ti's space around the ViT block, trained with AutoFormer's recipe.
    """

    base: str = "vit_b16"  # a built-in, a genotype.json or a DASViT run directory
    embed_dims: list[int] = field(default_factory=lambda: [192, 216, 240])
    depths: list[int] = field(default_factory=lambda: [12, 13, 14])
    heads: list[int] = field(default_factory=lambda: [3, 4])
    mlp_ratios: list[float] = field(default_factory=lambda: [3.5, 4.0])
    head_dim: int = 64
    sampler: Literal["pareto", "uniform"] = "pareto"
    epochs: int = 500
    warmup_epochs: int = 20  # epochs of uniform sampling before the sampler takes over
    uniform_mix: float = 0.1  # after warm-up, the probability that a step's subnet is drawn uniformly
    sampler_every: int = 10  # weight steps between sampler steps
    budget_bins: int = 8  # K bins over the space's FLOPs range
    lstm: FocusLSTMConfig = field(default_factory=FocusLSTMConfig)  # the sampler's hyperparameters
    holdout: float = 0.1  # fraction of the training set held out to score the sampler's architectures
    batch_size: int = 128
    lr: float = 5e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    lr_warmup_epochs: int = 20
    grad_clip: float = 5.0
    drop_path: float = 0.0
    steps_per_epoch: int = 0  # 0: a full pass over the training part
    eval_batches: int = 0  # validation batches per scored point at epoch end; 0: the whole split
    seed: int = 0


@dataclass
class LauncherConfig:
    """Where independent jobs run (a comparison's retrains, search seeds, FocusFormer's claim): `dasvit.run.launcher`.
    Changes nothing a job computes; command-line flags (--jobs, --executor, --partition, ...) override it."""

    executor: Literal["local", "slurm"] = "local"
    # jobs at once: local, 0 is one a GPU on CUDA, else one a core (each of `threads` threads); slurm, 0 is no cap
    # (the cluster schedules the array), N caps the array's tasks running at once
    jobs: int = 0
    threads: int = 1  # CPU threads of each local job (one a process measured the fastest on small ops)
    # slurm: the partition ("": the cluster's default), minutes a job may run, GPUs and CPUs per job, memory
    partition: str = ""
    time: int = 240
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    mem_gb: int = 0  # 0: the partition's default
    nodes: int = 1  # a search or retrain across nodes: one job of torchrun on every node (DDP over nodes)
    folder: str = "runs/slurm"  # submitit's logs and pickles (on storage every node sees)
    # extra sbatch options, e.g. {account: myproj, qos: high, constraint: a100}
    slurm_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    """A whole run's configuration."""

    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    focus: FocusConfig = field(default_factory=FocusConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

"""Configuration: typed sections with defaults, presets, dotted `--set` overrides, validation.

A config is plain data (dataclasses). It is built from a preset YAML file, then overridden by
`--set dotted.key=VALUE` pairs whose VALUE is parsed as YAML, then validated. Every mistake a user can
make here raises `ConfigError` with one sentence naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from ..model.opspec import parse_op
from .typed_data import build, merge

# presets/ at the top of the repository is the source; dasvit/presets links to it and ships in the package
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"  # dasvit/presets

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
    what the images are (dasvit.augment.resolve_policy: their size and channels, `ImageInfo`), not from
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
    """How the final cell is taken from the last stage's supernet (dasvit.selection); every rule keeps the
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
    # the largest α weight within it is derived (dasvit.derivation.derive_genotype)
    budget: str = "vit_b16"
    # where the budget binds: derivation (the cell of the largest α weight within it is derived), objective
    # (a term of the α objective, cost_weight · Σ max(0, E_α[cell cost] / budget − 1) over FLOPs and params,
    # as ProxylessNAS prices latency; the strongest cell is derived whatever it costs: dasvit.budget),
    # or both. Measured on Fashion-MNIST in RESULTS.md (F7)
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
class Config:
    """A whole run's configuration."""

    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    focus: FocusConfig = field(default_factory=FocusConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# presets and overrides


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str) -> Path:
    """A YAML path (a name ending in .yaml/.yml, or an existing file) or a built-in preset's name.

    A directory that happens to share a built-in's name (a run directory `demo/`, say) does not hide it."""
    p = Path(name_or_path)
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if p.suffix in (".yaml", ".yml") or p.is_file() or (p.exists() and not candidate.is_file()):
        if not p.exists():
            raise ConfigError(f"preset file {p} does not exist.")
        if not p.is_file():
            kind = "a directory" if p.is_dir() else "not a regular file (a device, a FIFO...)"
            raise ConfigError(f"--preset {p} is {kind}; give a built-in preset's name or a YAML file.")
        return p
    if not candidate.is_file():
        raise ConfigError(
            f"unknown preset {name_or_path!r}; built-in presets are {', '.join(preset_names())}, "
            "or give a path to a YAML file."
        )
    return candidate


MAX_YAML_BYTES = 1 << 20  # a config file or preset: a whole search's is under 4 KiB
MAX_YAML_ALIASES = 64  # *aliases in one YAML document: each may stand for a whole tree (an alias bomb)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing more than MAX_YAML_ALIASES aliases: nine levels of nine aliases make a
    billion-node tree from a line of text, which merging and checking it would then walk."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


def yaml_load(text: str) -> Any:
    """Untrusted YAML (a preset, a config.yaml, a --set value) as plain data: the safe loader, few aliases."""
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)


def _read_yaml(path: Path, run_file: bool = False) -> dict[str, Any]:
    """A YAML mapping; a `run_file` (a run directory's config.yaml) is read as one: never through a link, and
    only if it is a regular file (a FIFO would block), else one sentence. At most MAX_YAML_BYTES."""
    try:
        if run_file:
            from .jsonio import open_run_file

            fd = open_run_file(Path(path), os.O_RDONLY)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path} is not a regular file; a config is a YAML file.")
            raw = f.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_YAML_BYTES >> 20} MiB; a config is a few KiB of YAML.")
        data = yaml_load(raw.decode("utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or e}).") from None
    except (yaml.YAMLError, RecursionError) as e:
        why = str(e).splitlines()[0] if isinstance(e, yaml.YAMLError) else "it nests too deep"
        raise ConfigError(f"{path} is not valid YAML: {why}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, not {type(data).__name__}.")
    return data


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=VALUE` → {"a": {"b": {"c": yaml(VALUE)}}}."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like dotted.key=VALUE.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r} has an empty key; write dotted.key=VALUE.")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError) as e:
        why = str(e).splitlines()[0][:120] if isinstance(e, yaml.YAMLError) else "it nests too deep"
        raise ConfigError(f"--set {key}: the value {raw[:80]!r} is not valid YAML ({why}).") from None
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return out


def load_config(preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a validated `Config` from a preset (name or path) and `--set` overrides."""
    data: dict[str, Any] = {}
    name = "custom"
    if preset is not None:
        path = resolve_preset(preset)
        data = _read_yaml(path)
        name = data.pop("preset", None) or path.stem
    for o in overrides:
        data = merge(data, parse_override(o))
    data.setdefault("preset", name)
    cfg = build(Config, _retired(data))
    validate(cfg)
    return cfg


RETIRED = {("search", "fused"): False}  # keys an older version wrote, with the one value that means today's


def _retired(data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the retired keys a run directory's config may still hold: `search.fused` (the fused mixed
    edges, removed: never faster than the per-op path on a CPU, BENCHMARKS.md) is read if false, refused if
    true."""
    for (section, key), value in RETIRED.items():
        part = data.get(section)
        if isinstance(part, dict) and key in part:
            if part[key] != value:
                raise ConfigError(
                    f"{section}.{key} is no longer a setting (the fused mixed edges were removed: they were never "
                    "faster than the per-op path); drop it."
                )
            data = {**data, section: {k: v for k, v in part.items() if k != key}}
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config written by `Config.to_dict` (a run directory's config.yaml)."""
    cfg = build(Config, _retired(data))
    validate(cfg)
    return cfg


def load_run_config(path: Path) -> Config:
    return config_from_dict(_read_yaml(path, run_file=True))


# ---------------------------------------------------------------------------------------------
# validation of values (types are already checked)


def _positive(value: float, key: str) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be positive, got {value}.")


def validate(cfg: Config) -> None:
    d, s, se, r = cfg.data, cfg.space, cfg.search, cfg.retrain
    _validate_lengths(cfg)
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


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


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

"""A cell as `dasvit show` measures it: the sizes to build its network at (and the checks they pass), what it
costs, and the retrains of it a run holds.

Sizes (depth, width, image size, patch, classes, channels) come from, in order: the options; the run's
config.yaml when the source is a run directory or a file inside one; a built-in's own sizes (vit_b16: 12 x
768, 224 px, patch 16, 1000 classes); the config defaults. A version-2 genotype sets its own depth and
width, and its meta may set the image size, patch and classes it was made for, held to the same bounds.

Comparison: a run's finished retrain (RUN_DIR/retrain/metrics.json) beside the ViT-B/16 baseline retrained
with the same recipe (`--baseline DIR`, else RUN_DIR/baseline), each read as untrusted (a damaged file is
passed over with a note).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from .. import limits as lim
from ..errors import ConfigError, RunDirError, UserError
from ..fmt import count
from ..model.cost import Sizes, network_cost
from ..run import layout


def _retrain_metrics(d: Path, notes: list[str] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """metrics.json of a retrain run given as its own directory or as the search run holding it; a damaged
    one is passed over, with a note in `notes` (dasvit.run.records)."""
    from ..run.records import DamagedRecord, read_metrics

    for cand in (d, d / layout.RETRAIN):
        try:
            return cand, read_metrics(cand)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except DamagedRecord as e:
            if notes is not None:
                notes.append(f"not shown: {e}")
    return None


def resolve_sizes(source: str, opts: dict[str, Optional[int]]) -> tuple[Sizes, str]:
    """The sizes to measure at, and where they came from (for the header)."""
    from ..model.genotype import BUILTIN_DIMS, network_sizes
    from ..run.presets import load_config, load_run_config

    run = layout.config_dir_for(source)
    in_chans = 3
    if run is not None:
        from ..train.images import image_channels

        cfg, origin = load_run_config(run / layout.CONFIG), f"{run / layout.CONFIG}"
        in_chans = image_channels(cfg.data)  # digits, a grayscale image folder: 1
        found = _retrain_metrics(run)
        classes = found[1].get("num_classes") if found else None
        if not classes:
            from ..train.data import num_classes

            classes = num_classes(cfg.data)
    else:
        cfg, origin = load_config(None), "config defaults"
        classes = cfg.data.synthetic_classes
    sizes = {**network_sizes(cfg).asdict(), "num_classes": classes, "in_chans": in_chans}
    if run is None and source in BUILTIN_DIMS:
        sizes.update(BUILTIN_DIMS[source], num_classes=1000)
        origin = f"{source}'s own sizes"
    given = {k: v for k, v in opts.items() if v is not None}
    if given:
        origin += " and options"
    sizes.update(given)
    if sizes["num_classes"] is None:
        raise ConfigError(f"the number of classes of {cfg.data.name} at {cfg.data.root} is unknown; pass --classes.")
    for key, option in (("depth", "--depth"), ("num_classes", "--classes")):
        if sizes[key] < 1:
            raise ConfigError(f"{option} must be at least 1, got {sizes[key]}.")
    checked = Sizes(**sizes)
    check_sizes(checked)
    return checked, origin


SIZE_OPTIONS = {
    "depth": ("--depth", lim.MAX_DEPTH),
    "embed_dim": ("--dim", lim.MAX_EMBED_DIM),
    "image_size": ("--image-size", lim.MAX_IMAGE_SIZE),
    "patch_size": ("--patch", lim.MAX_IMAGE_SIZE),
    "num_classes": ("--classes", lim.MAX_CLASSES),
}


def check_sizes(sizes: Sizes) -> None:
    """Sizes within what dasvit builds (dasvit.limits), each bound said in the sentence."""
    for key, (option, bound) in SIZE_OPTIONS.items():
        value = getattr(sizes, key)
        if not 1 <= value <= bound:
            raise ConfigError(f"{option} must be between 1 and {bound:,}, got {value:,}.")
    if sizes.image_size % sizes.patch_size:
        raise ConfigError(
            f"--image-size {sizes.image_size} must be a multiple of --patch {sizes.patch_size}: the patches tile "
            "the image."
        )
    if sizes.tokens > lim.MAX_TOKENS:
        raise ConfigError(
            f"--image-size {sizes.image_size} over --patch {sizes.patch_size} makes {sizes.tokens - 1:,} patches; "
            f"at most {lim.MAX_TOKENS - 1:,}: raise --patch or lower --image-size."
        )


def check_network(genotype, sizes: Sizes) -> None:
    """Refuse, before building it, a network larger than `dasvit show` counts (lim.MAX_SHOW_PARAMS, and a
    module per edge and layer: lim.MAX_SHOW_OPS)."""
    resize = "lower --depth or --dim" if genotype.version == 1 else "it is a version-2 genotype: lower its depth"
    params = network_cost(genotype, sizes).params
    if params > lim.MAX_SHOW_PARAMS:
        raise ConfigError(
            f"this network would have {count(params)} params; dasvit show builds networks of at most "
            f"{count(lim.MAX_SHOW_PARAMS)} params (8 GiB of weights) to count them: {resize}."
        )
    ops = len(genotype.edges) * sizes.depth
    if ops > lim.MAX_SHOW_OPS:
        raise ConfigError(
            f"this network has {ops:,} edges ({len(genotype.edges):,} a layer, {sizes.depth:,} layers); dasvit show "
            f"builds networks of at most {lim.MAX_SHOW_OPS:,} to count them: {resize}."
        )


def comparison(
    source: str, baseline: Optional[Path], compared: bool = False, notes: list[str] | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows (searched retrain, ViT-B/16 baseline) that exist, and a hint when the baseline is missing (none
    when `dasvit compare` has compared the run: its table has the ViT block)."""
    rows: list[dict[str, Any]] = []
    src = Path(source)
    searched = _retrain_metrics(src, notes) if src.is_dir() else None
    # the search run that owns the retrain: SOURCE itself, or its parent when SOURCE is RUN_DIR/retrain
    root = src.parent if searched is not None and searched[0] == src else src
    if searched is not None:
        name = (searched[1].get("genotype") or {}).get("meta", {}).get("builtin") or "searched cell"
        rows.append({"name": f"{name} ({searched[0]})", "dir": str(searched[0]), **_row(searched[1])})
    if baseline is not None:
        base = _retrain_metrics(baseline, notes)
        if base is None:
            raise RunDirError(
                f"--baseline {baseline} holds no finished retrain (no {layout.METRICS} in it or in its retrain/)."
            )
    else:
        base = _retrain_metrics(root / "baseline", notes) if searched is not None else None
    if base is not None:
        rows.append({"name": f"vit_b16 ({base[0]})", "dir": str(base[0]), **_row(base[1])})
    hint = None
    if searched is not None and base is None and not compared:
        hint = (
            f"no ViT-B/16 baseline to compare with: dasvit retrain vit_b16 --headless "
            f"--preset {_preset_of(root, searched[0])} --run-dir {root / 'baseline'}"
        )
    elif searched is not None and base is not None:
        keys = ("dataset", "image_size", "epochs")
        diff = [k for k in keys if searched[1].get(k) != base[1].get(k)]
        if diff:
            hint = f"note: the two retrains differ in {', '.join(diff)}; the comparison is not like for like."
    return rows, hint


def _row(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("params", "flops", "top1", "top5", "dataset", "image_size", "epochs")}


def _preset_of(*runs: Path) -> str:
    """The preset a run was made with, for the hint; P when no run says."""
    from ..run.presets import load_run_config

    for run in runs:
        try:
            return load_run_config(run / layout.CONFIG).preset
        except (OSError, UserError):  # only a hint: a missing or broken config must not hide the rest
            continue
    return "P"


def v2_sizes(genotype, opts: dict[str, Optional[int]], sizes: Sizes, origin: str) -> tuple[Sizes, str]:
    """A version-2 genotype sets its own depth and width; its meta may name the image size, patch and classes
    it was made for (options still win over those), held to the bounds the options have."""
    given = [option for key, option in (("depth", "--depth"), ("embed_dim", "--dim")) if opts.get(key) is not None]
    if given:
        raise ConfigError(
            f"{' and '.join(given)} cannot resize a version-2 genotype; it sets its own depth "
            f"({genotype.depth}) and width ({genotype.embed_dim})."
        )
    sizes = dataclasses.replace(sizes, depth=genotype.depth, embed_dim=genotype.embed_dim)
    named, own = ["depth", "width"], {}
    for key, label in (
        ("image_size", "image size"),
        ("patch_size", "patch"),
        ("num_classes", "classes"),
        ("in_chans", "channels"),
    ):
        v = genotype.meta.get(key)
        if opts.get(key) is None and isinstance(v, int) and not isinstance(v, bool) and v > 0:
            own[key] = v
            named.append(label)
    if own:
        sizes = dataclasses.replace(sizes, **own)
        try:
            check_sizes(sizes)
        except ConfigError as e:
            raise ConfigError(f"the genotype's meta asks for sizes dasvit does not build: {e}") from None
    return sizes, f"{origin}; {', '.join(named)} from the genotype"


def cell_sizes(source: str, genotype, opts: dict[str, Optional[int]]) -> tuple[Sizes, str]:
    """The sizes `dasvit show SOURCE` measures `genotype` at, checked, and where they came from."""
    sizes, origin = resolve_sizes(source, opts)
    if genotype.version == 2:
        sizes, origin = v2_sizes(genotype, opts, sizes, origin)
    check_network(genotype, sizes)
    return sizes, origin


def per_layer(genotype, layer_costs: list[dict[str, int]]) -> list[dict[str, Any]]:
    """Per layer of a version-2 genotype: width, heads of each msa edge and ratio of each mlp edge (in edge
    order), params and FLOPs."""
    from dasvit.model.opspec import parse_op

    out = []
    for layer, cost in zip(genotype.layers, layer_costs):
        specs = [parse_op(op) for op in layer]
        out.append(
            {
                "embed_dim": genotype.embed_dim,
                "heads": [s.heads for s in specs if s.type == "msa"],
                "mlp_ratios": [s.ratio for s in specs if s.type == "mlp"],
                **cost,
            }
        )
    return out

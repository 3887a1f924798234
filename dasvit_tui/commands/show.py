"""`dasvit show`: draw a cell, count what it costs, and compare retrained models.

Sizes (depth, width, image size, patch, classes) come from, in order: the options; the run's
config.yaml when GENOTYPE is a run directory or a file inside one; a built-in's own sizes (vit_b16:
12 x 768, 224 px, patch 16, 1000 classes); the config defaults. A version-2 genotype sets its own depth
and width, and its meta may set the image size, patch and classes it was made for.

Comparison: when the run has a finished retrain (RUN_DIR/retrain/metrics.json), it is shown beside the
ViT-B/16 baseline retrained with the same recipe, found at `--baseline DIR`, else at RUN_DIR/baseline
(train it with `dasvit retrain vit_b16 --headless --preset P --run-dir RUN_DIR/baseline`). When
`dasvit compare RUN_DIR` has written RUN_DIR/compare.json, its table (searched cell vs ViT block at equal
depth and at matched FLOPs) is shown too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from dasvit import limits as lim
from dasvit.errors import ConfigError, RunDirError, UserError
from dasvit.fmt import count
from dasvit.run import jsonio, layout

FORMATS = ("rich", "json", "dot")


def _retrain_metrics(d: Path, notes: list[str] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """metrics.json of a retrain run given as its own directory or as the search run holding it; a damaged
    one is passed over, with a note in `notes` (dasvit.records)."""
    from dasvit.run.records import DamagedRecord, read_metrics

    for cand in (d, d / layout.RETRAIN):
        try:
            return cand, read_metrics(cand)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except DamagedRecord as e:
            if notes is not None:
                notes.append(f"not shown: {e}")
    return None


def sized_network_cost(genotype, sizes: dict[str, int]):
    """The `Cost` of a version-1 genotype's network at the sizes `resolve_sizes` gives."""
    from dasvit.model.cost import network_cost

    keys = ("depth", "embed_dim", "image_size", "patch_size", "in_chans", "num_classes")
    return network_cost(genotype, *(sizes[k] for k in keys))


def resolve_sizes(source: str, opts: dict[str, Optional[int]]) -> tuple[dict[str, int], str]:
    """The sizes to measure at, and where they came from (for the header)."""
    from dasvit.model.genotype import BUILTIN_DIMS, network_sizes
    from dasvit.run.config import load_config, load_run_config

    run = layout.config_dir_for(source)
    in_chans = 3
    if run is not None:
        from dasvit.train.data import image_channels

        cfg, origin = load_run_config(run / layout.CONFIG), f"{run / layout.CONFIG}"
        in_chans = image_channels(cfg.data)  # digits, a grayscale image folder: 1
        found = _retrain_metrics(run)
        classes = found[1].get("num_classes") if found else None
        if not classes:
            from dasvit.train.data import num_classes

            classes = num_classes(cfg.data)
    else:
        cfg, origin = load_config(None), "config defaults"
        classes = cfg.data.synthetic_classes
    sizes = {**network_sizes(cfg), "num_classes": classes, "in_chans": in_chans}
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
    check_sizes(sizes)
    return sizes, origin


SIZE_OPTIONS = {
    "depth": ("--depth", lim.MAX_DEPTH),
    "embed_dim": ("--dim", lim.MAX_EMBED_DIM),
    "image_size": ("--image-size", lim.MAX_IMAGE_SIZE),
    "patch_size": ("--patch", lim.MAX_IMAGE_SIZE),
    "num_classes": ("--classes", lim.MAX_CLASSES),
}


def check_sizes(sizes: dict[str, int]) -> None:
    """Sizes within what dasvit builds (dasvit.limits), each bound said in the sentence."""
    for key, (option, bound) in SIZE_OPTIONS.items():
        if not 1 <= sizes[key] <= bound:
            raise ConfigError(f"{option} must be between 1 and {bound:,}, got {sizes[key]:,}.")
    if sizes["image_size"] % sizes["patch_size"]:
        raise ConfigError(
            f"--image-size {sizes['image_size']} must be a multiple of --patch {sizes['patch_size']}: the patches "
            "tile the image."
        )
    tokens = (sizes["image_size"] // sizes["patch_size"]) ** 2 + 1
    if tokens > lim.MAX_TOKENS:
        raise ConfigError(
            f"--image-size {sizes['image_size']} over --patch {sizes['patch_size']} makes {tokens - 1:,} patches; at "
            f"most {lim.MAX_TOKENS - 1:,}: raise --patch or lower --image-size."
        )


def check_network(genotype, sizes: dict[str, int]) -> None:
    """Refuse, before building it, a network larger than `dasvit show` counts (lim.MAX_SHOW_PARAMS)."""
    from dasvit.model.cost import op_cost, stem_head_cost, tokens_of

    if genotype.version == 2:
        n = tokens_of(sizes["image_size"], sizes["patch_size"])
        live = set(genotype.live_nodes())
        params = stem_head_cost(
            genotype.embed_dim, sizes["image_size"], sizes["patch_size"], sizes["in_chans"], sizes["num_classes"]
        ).params + sum(
            op_cost(op, genotype.embed_dim, n, genotype.head_dim).params
            for layer in genotype.layers
            for e, op in zip(genotype.edges, layer)
            if e.dst in live
        )
    else:
        params = sized_network_cost(genotype, sizes).params
    resize = "lower --depth or --dim" if genotype.version == 1 else "it is a version-2 genotype: lower its depth"
    if params > lim.MAX_SHOW_PARAMS:
        raise ConfigError(
            f"this network would have {count(params)} params; dasvit show builds networks of at most "
            f"{count(lim.MAX_SHOW_PARAMS)} params (8 GiB of weights) to count them: {resize}."
        )
    ops = len(genotype.edges) * sizes["depth"]
    if ops > lim.MAX_SHOW_OPS:
        raise ConfigError(
            f"this network has {ops:,} edges ({len(genotype.edges):,} a layer, {sizes['depth']:,} layers); dasvit show "
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
    from dasvit.run.config import load_run_config

    for run in runs:
        try:
            return load_run_config(run / layout.CONFIG).preset
        except (OSError, UserError):  # only a hint: a missing or broken config must not hide the rest
            continue
    return "P"


def v2_sizes(
    genotype, opts: dict[str, Optional[int]], sizes: dict[str, int], origin: str
) -> tuple[dict[str, int], str]:
    """A version-2 genotype sets its own depth and width; its meta may name the image size, patch and classes
    it was made for (options still win over those)."""
    given = [option for key, option in (("depth", "--depth"), ("embed_dim", "--dim")) if opts.get(key) is not None]
    if given:
        raise ConfigError(
            f"{' and '.join(given)} cannot resize a version-2 genotype; it sets its own depth "
            f"({genotype.depth}) and width ({genotype.embed_dim})."
        )
    sizes = {**sizes, "depth": genotype.depth, "embed_dim": genotype.embed_dim}
    named = ["depth", "width"]
    for key, label in (
        ("image_size", "image size"),
        ("patch_size", "patch"),
        ("num_classes", "classes"),
        ("in_chans", "channels"),
    ):
        v = genotype.meta.get(key)
        if opts.get(key) is None and isinstance(v, int) and not isinstance(v, bool) and v > 0:
            sizes[key] = v
            named.append(label)
    if len(named) > 2:  # the genotype's own sizes: held to the bounds the options have
        try:
            check_sizes(sizes)
        except ConfigError as e:
            raise ConfigError(f"the genotype's meta asks for sizes dasvit does not build: {e}") from None
    return sizes, f"{origin}; {', '.join(named)} from the genotype"


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


def budget_line(meta: dict[str, Any]) -> Optional[str]:
    """What a searched cell costs against the budget its search had (genotype meta, untrusted), or None."""
    cost, budget = meta.get("cost"), meta.get("budget")
    if not (isinstance(cost, dict) and isinstance(budget, dict)):
        return None
    nums = [cost.get("flops"), cost.get("params"), budget.get("flops"), budget.get("params")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in nums):
        return None
    cell = jsonio.printable(str(budget.get("cell", "the budget")), newlines=False)[:40]
    flops, params, b_flops, b_params = nums
    costs = f"one cell costs {count(flops)} FLOPs and {count(params)} params, {cell}'s {count(b_flops)} and {count(b_params)}"
    if flops <= b_flops and params <= b_params:
        return f"within its budget: {costs}."
    if budget.get("in") == "objective":
        why = (
            "search.budget_in: objective keeps the cell α expects within it, not the derived one; both bounds that too"
        )
    else:
        why = "no cell of the ops the last stage kept fits it, so the cheapest was taken"
    return f"over its budget: {costs} ({why})."


def show_main(source: str, opts: dict[str, Optional[int]], fmt: str, baseline: Optional[Path]) -> None:
    from dasvit.model.genotype import load_genotype

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    genotype = load_genotype(source)
    shown = jsonio.printable(source, newlines=False)  # a path may hold escape sequences: never to the terminal
    if fmt == "dot":
        from dasvit_tui.render import elastic_cell, to_dot

        typer.echo(to_dot(elastic_cell(genotype), name=Path(shown).stem), nl=False)
        return
    sizes, origin = resolve_sizes(source, opts)
    if genotype.version == 2:
        sizes, origin = v2_sizes(genotype, opts, sizes, origin)
    check_network(genotype, sizes)
    origin = jsonio.printable(origin, newlines=False)
    from dasvit.model.profile import profile_genotype

    cost = profile_genotype(
        genotype,
        sizes["depth"],
        sizes["embed_dim"],
        sizes["image_size"],
        sizes["patch_size"],
        sizes["num_classes"],
        sizes["in_chans"],
    )
    from dasvit.reports.compare import read_compare
    from dasvit.run.records import DamagedRecord

    compared, notes = None, []
    if Path(source).is_dir():  # `dasvit compare`'s result
        try:
            compared = read_compare(source)
        except DamagedRecord as e:
            notes.append(f"not shown: {e}")
    rows, hint = comparison(source, baseline, compared=compared is not None, notes=notes)
    if fmt == "json":
        out = {**genotype.to_json(), "params": cost["params"], "flops": cost["flops"], **sizes}
        if genotype.version == 2:
            out["per_layer"] = per_layer(genotype, cost["layers"])
        if rows:
            out["comparison"] = [
                {k: v for k, v in r.items() if k != "name"} | {"name": r["name"].split(" (")[0]} for r in rows
            ]
        if compared:
            out["compare"] = compared
        if notes:
            out["notes"] = notes
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.text import Text

    from dasvit_tui.render import comparison_table, render_cell

    console = Console()
    if genotype.version == 2:
        from dasvit_tui.render import elastic_cell, layer_table

        stats = {k: v for k, v in {**sizes, **cost}.items() if k != "edge_params"}  # edge sizes differ per layer
        console.print(render_cell(elastic_cell(genotype), stats, title=f"{shown}  (sizes from {origin})"))
        console.print()
        console.print(layer_table(genotype, cost["layers"]))
    else:
        console.print(render_cell(genotype, {**sizes, **cost}, title=f"{shown}  (sizes from {origin})"))
    line = budget_line(genotype.meta)
    if line:
        console.print(Text(line, style="bold red" if line.startswith("over") else "dim"))
    if rows:
        console.print()
        console.print(comparison_table(rows))
    if hint:
        console.print(Text(jsonio.printable(hint), style="dim"))
    if compared:
        from dasvit_tui.commands.compare import compare_table, standing_table

        console.print()
        console.print(compare_table(compared))
        standing = standing_table(compared)
        if standing is not None:
            console.print(standing)
    for note in notes:
        console.print(Text(jsonio.printable(note), style="dim"))


def show(
    source: str = typer.Argument(
        ...,
        metavar="GENOTYPE|RUN_DIR|BUILTIN",
        help="A genotype.json, a run directory, or a built-in cell (vit_b16).",
    ),
    depth: Optional[int] = typer.Option(None, "--depth", help="Cells stacked (default: the run's retrain.depth)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Token width (default: the run's space.embed_dim)."),
    image_size: Optional[int] = typer.Option(
        None, "--image-size", help="Image side in pixels (default: the run's data.image_size)."
    ),
    patch: Optional[int] = typer.Option(
        None, "--patch", help="Patch side in pixels (default: the run's space.patch_size)."
    ),
    classes: Optional[int] = typer.Option(None, "--classes", help="Classifier outputs (default: the run's dataset's)."),
    fmt: str = typer.Option(
        "rich", "--format", "-f", help="rich (drawing and tables), json, or dot (Graphviz source)."
    ),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", help="A vit_b16 retrain run to compare with (default: RUN_DIR/baseline)."
    ),
) -> None:
    """Draw a searched cell with its parameters and FLOPs; compare retrained models.

    FLOPs follow fvcore (one multiply-add is one FLOP; attention included), for one image.

    Sizes: a run directory (or a file in one) brings its config.yaml's; vit_b16 alone is ViT-B/16's own
    (depth 12, width 768, 224 px, patch 16, 1000 classes); any other file the config defaults (depth 12,
    width 192, 32 px, patch 4, 10 classes). An option overrides each.

    A version-2 genotype (a FocusFormer architecture) brings its own depth and width and adds a per-layer table.

    Example: dasvit show vit_b16 --depth 12 --dim 768 --image-size 224 --patch 16 --classes 1000 --format json
    """
    opts = {"depth": depth, "embed_dim": dim, "image_size": image_size, "patch_size": patch, "num_classes": classes}
    show_main(source, opts, fmt, baseline)

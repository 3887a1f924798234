"""`dasvit show`: draw a cell, what it costs, and the retrained models of a run.

The sizes it is measured at and the retrains beside it are the engine's (`dasvit.reports.cell`: the
options, then the run's config.yaml, a built-in's own sizes or the defaults). When `dasvit compare RUN_DIR`
has written RUN_DIR/compare.json, its tables are shown too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from dasvit.errors import ConfigError
from dasvit.fmt import count
from dasvit.run import jsonio

FORMATS = ("rich", "json", "dot")


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
    from dasvit.model.profile import profile_genotype
    from dasvit.reports.cell import cell_sizes, comparison, per_layer

    sizes, origin = cell_sizes(source, genotype, opts)
    origin = jsonio.printable(origin, newlines=False)
    s = sizes
    cost = profile_genotype(genotype, s.depth, s.embed_dim, s.image_size, s.patch_size, s.num_classes, s.in_chans)
    from dasvit.reports.compare_result import read_compare
    from dasvit.run.records import DamagedRecord

    compared, notes = None, []
    if Path(source).is_dir():  # `dasvit compare`'s result
        try:
            compared = read_compare(source)
        except DamagedRecord as e:
            notes.append(f"not shown: {e}")
    rows, hint = comparison(source, baseline, compared=compared is not None, notes=notes)
    if fmt == "json":
        out = {**genotype.to_json(), "params": cost["params"], "flops": cost["flops"], **sizes.asdict()}
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

        stats = {k: v for k, v in {**sizes.asdict(), **cost}.items() if k != "edge_params"}  # sizes differ per layer
        console.print(render_cell(elastic_cell(genotype), stats, title=f"{shown}  (sizes from {origin})"))
        console.print()
        console.print(layer_table(genotype, cost["layers"]))
    else:
        console.print(render_cell(genotype, {**sizes.asdict(), **cost}, title=f"{shown}  (sizes from {origin})"))
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

"""`dasvit derive`: take the cell again from a finished search's supernet, by another selection rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from dasvit.errors import ConfigError
from dasvit_tui.commands.options import set_option

FORMATS = ("rich", "json")


def derive(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A search run directory that has finished a stage."),
    selection: str = typer.Option(
        "argmax",
        "--selection",
        help="argmax (the largest α weight: what the search derives), skip-limit or skip-limit-M (the same with at "
        "most M skip edges, default search.selection.max_skips), perturbation (per edge, the op whose removal costs the supernet "
        "most validation accuracy) or oneshot (the best of search.selection.candidates cells sampled from α, "
        "scored with the supernet's weights).",
        metavar="RULE",
    ),
    stage: Optional[int] = typer.Option(
        None, "--stage", help="The stage whose supernet to take it from (default: the last one the run kept).", min=1
    ),
    overrides: set_option("search.selection.max_skips=1") = None,
    fmt: str = typer.Option("rich", "--format", "-f", help="rich (the cell drawn) or json (the genotype)."),
) -> None:
    """Take the cell from a search run's stage-end supernet by a selection rule, without a new search.

    A search keeps each stage's last supernet (RUN_DIR/supernet-stage<k>.pt);
    this loads it and applies the rule, with the run's config.yaml (--set
    search.selection.* on top). Every rule keeps the derivation's rules: edges
    per node, the budget, an attention edge, a residual path. Scores come from
    the validation split (held out of the training set); the test split is
    never read. Writes RUN_DIR/derived/<rule>.json (skip-limit-<M>.json); then
    `dasvit compare RUN_DIR --selection RULE` retrains it beside the rest.

    Examples:
      dasvit derive runs/fashion-s0 --selection perturbation
      dasvit derive runs/fashion-s0 --selection skip-limit --set search.selection.max_skips=1
    """
    from dasvit.run.config import parse_selection

    parse_selection(selection)  # a misspelt rule: one sentence before anything loads
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    from dasvit.run.runtime import Outcome
    from dasvit.search.selection import derive_from_run

    say = (lambda s: typer.echo(s, err=True)) if fmt == "json" else typer.echo
    with Outcome() as outcome:
        geno, path = derive_from_run(run_dir, selection, list(overrides or []), stage, say)
    if outcome.code:
        raise typer.Exit(outcome.code)
    if fmt == "json":
        typer.echo(json.dumps(geno.to_json(), indent=2))
        raise typer.Exit(0)
    from rich.console import Console

    from dasvit_tui.commands.show import budget_line
    from dasvit_tui.render import cell_diagram

    sel = geno.meta.get("selection", {})
    typer.echo(
        f"{sel.get('name', selection)} cell of stage {geno.meta.get('stage')} ({path}), in {sel.get('seconds')} s:"
    )
    Console(highlight=False, soft_wrap=True).print(cell_diagram(geno))
    line = budget_line(geno.meta)
    if line:
        typer.echo(line)
    typer.echo(f"next: dasvit show {path} · dasvit compare {run_dir} --selection {selection}")

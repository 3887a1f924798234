"""`dasvit compare`: the searched cell against the ViT block, at equal depth and at matched FLOPs."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import typer

from dasvit.errors import ConfigError

from .render import human, percent

FORMATS = ("rich", "json")
SET_HELP = "Override a key of the retrain recipe, VALUE parsed as YAML; repeatable. Example: --set retrain.epochs=30"


def _delta(row: dict[str, Any], vit: dict[str, Any]) -> str:
    if row is vit:
        return ""
    d = 100 * (row["top1"] - vit["top1"])
    return f"{d:+.2f}"


def _pct(x: float | None) -> str:
    return percent(x).replace(" %", "%")


def compare_table(data: dict[str, Any]):
    """compare.json as a rich table: the two comparisons, each a searched row and the ViT row."""
    from rich import box
    from rich.table import Table

    eq, mf = data["equal_depth"], data.get("matched_flops")
    epochs = eq["vit"].get("epochs")
    title = (
        f"searched cell vs ViT block: {data.get('dataset')}, {data.get('image_size')} px, width "
        f"{data.get('embed_dim')}, {epochs} epoch{'s' if epochs != 1 else ''}"
    )
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col, justify in (
        ("comparison", "left"),
        ("model", "left"),
        ("depth", "right"),
        ("top-1", "right"),
        ("top-5", "right"),
        ("params", "right"),
        ("FLOPs", "right"),
        ("Δ top-1", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)
    groups = [("equal depth", eq)] + ([("matched FLOPs", mf)] if mf else [])
    for g, (name, group) in enumerate(groups):
        for k, (label, row) in enumerate((("searched", group["searched"]), ("ViT block", group["vit"]))):
            table.add_row(
                name if k == 0 else "",
                label,
                str(row["depth"]),
                _pct(row["top1"]),
                _pct(row["top5"]),
                human(row["params"]),
                human(row["flops"]),
                _delta(row, group["vit"]),
                end_section=k == 1 and g < len(groups) - 1,
            )
    notes = ["Δ top-1: percentage points against the ViT block of the same comparison."]
    if mf:
        notes.append(
            f"matched FLOPs: {mf['rule']} ({human(mf['budget_flops'])}); at depth {mf['depth'] + 1} "
            f"it would cost {human(mf.get('next_depth_flops'))}."
        )
    elif data.get("note"):
        notes.append(data["note"])
    notes.append("runs: " + ", ".join(f"{k} {r['dir']}" for k, r in data.get("models", {}).items()))
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A finished search run directory."),
        overrides: list[str] = typer.Option([], "--set", "-s", help=SET_HELP, metavar="KEY=VALUE"),
        fmt: str = typer.Option(
            "rich", "--format", "-f", help="rich (a table) or json (compare.json on stdout; progress on stderr)."
        ),
        no_progress: bool = typer.Option(False, "--no-progress", help="Print no per-epoch progress of the retrains."),
    ) -> None:
        """Retrain the searched cell and the ViT block with the same recipe; compare them.

        With RUN_DIR's config.yaml (width, data, recipe; --set on top) it trains:
          equal depth    the searched cell and the ViT block (vit_b16), retrain.depth
          matched FLOPs  the searched cell at the largest depth whose FLOPs do not
                         exceed the ViT block's at retrain.depth
        Finished retrains are reused (RUN_DIR/retrain when depth and recipe match,
        RUN_DIR/compare/*): a second compare trains nothing; a stopped one resumes.
        Prints top-1, top-5, params and FLOPs side by side and writes
        RUN_DIR/compare.json; `dasvit show RUN_DIR` shows it too.

        Exit codes: 0 finished, 1 failed, 2 bad input, 130 stopped (finished
        retrains are kept).

        Example: dasvit compare runs/digits-20260101-120000 --set retrain.epochs=30
        """
        from dasvit.compare import compare as run_compare
        from dasvit.runtime import run_engine

        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
        out: dict[str, Any] = {}

        def body() -> int:
            # with --format json, stdout carries the JSON alone: progress goes to stderr
            with contextlib.redirect_stdout(sys.stderr) if fmt == "json" else contextlib.nullcontext():
                rc, data = run_compare(run_dir, list(overrides), say=print, progress=not no_progress)
            if data is not None:
                out.update(data)
            return rc

        rc = run_engine(body)
        if rc == 0:
            if fmt == "json":
                typer.echo(json.dumps(out, indent=2))
            else:
                from rich.console import Console

                console = Console()
                console.print(compare_table(out))
                console.print(f"written: {Path(run_dir) / 'compare.json'}")
        raise typer.Exit(rc)

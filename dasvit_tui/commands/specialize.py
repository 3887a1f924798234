"""`dasvit specialize`: the best architecture of a trained FocusFormer supernet under a FLOPs budget."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from dasvit.errors import UserError
from dasvit.fmt import count, parse_count
from dasvit.model.opspec import op_type, parse_op


def _short(op: str) -> str:
    """msa_4 → 4h, mlp_3.5 → 3.5x."""
    spec = parse_op(op)
    return f"{spec.size}h" if spec.type == "msa" else f"{spec.size}x"


def print_result(result) -> None:
    """The front of everything evaluated (FLOPs against inherited-weight top-1), the chosen one marked."""
    from rich.console import Console
    from rich.table import Table

    budget = f"{count(result.flops_budget)} FLOPs" + (
        f", {count(result.params_budget)} params" if result.params_budget is not None else ""
    )
    table = Table(
        title=f"{result.method}: Pareto front of {len(result.evaluated)} architectures evaluated under {budget}"
    )
    for col, just in [
        ("", "left"),
        ("eval #", "right"),
        ("FLOPs", "right"),
        ("params", "right"),
        ("top-1", "right"),
        ("val loss", "right"),
        ("depth", "right"),
        ("embed", "right"),
        ("per layer: heads h, MLP ratio x", "left"),
    ]:
        table.add_column(col, justify=just)
    for c in result.front:
        ops = " ".join(
            "·".join(_short(op) for op in layer if op_type(op) in ("msa", "mlp")) for layer in c.subnet.layers
        )
        table.add_row(
            "*" if c is result.best else "",
            str(c.order),
            count(c.flops),
            count(c.params),
            f"{c.top1:.2%}",
            f"{c.val_loss:.3f}",
            str(c.subnet.depth),
            str(c.subnet.embed_dim),
            ops,
        )
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    b = result.best
    console.print(
        f"best: top-1 {b.top1:.2%} (inherited weights), {count(b.flops)} FLOPs, {count(b.params)} params, "
        f"found at evaluation {b.order} of {len(result.evaluated)} in {result.seconds:.1f} s"
    )
    if result.path is not None:
        console.print(
            f"wrote {result.path}  (draw it: dasvit show {result.path}; train it: "
            f"dasvit retrain {result.path} --headless)"
        )


def json_progress(samples: int) -> Callable:
    """One progress line on stderr per evaluation, the protocol the monitor's specialize dialog reads
    (`dasvit_tui.specialize_job`): {"evaluated": n, "samples": N, "flops": …, "top1": …, "best_top1": …,
    "best_flops": …}."""
    from dasvit_tui.specialize_job import progress_line

    best: list = []

    def on_eval(c) -> None:
        if not best or c.top1 > best[0].top1:
            best[:] = [c]
        print(
            progress_line(c.order, samples, c.flops, c.top1, best[0].top1, best[0].flops), file=sys.stderr, flush=True
        )

    return on_eval


def run_with_bar(samples: int, run: Callable[[Callable | None], object]):
    """`run(on_eval)` with a progress bar on stderr (gone when it ends)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    best = [-1.0]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("loading the supernet and the validation split", total=samples)

        def on_eval(c) -> None:
            best[0] = max(best[0], c.top1)
            bar.update(task, completed=c.order, description=f"evaluating (best top-1 {best[0]:.2%})")

        return run(on_eval)


def specialize(
    run_dir: Path = typer.Argument(..., help="A focus run directory (dasvit focus wrote it)."),
    flops: str = typer.Option(
        ...,
        "--flops",
        "-f",
        help="FLOPs budget, like 1.4G, 900M or 1500000 (fvcore's count: one multiply-add is one FLOP).",
    ),
    params: Optional[str] = typer.Option(None, "--params", help="Also a parameter budget, like 6M."),
    samples: int = typer.Option(100, "--samples", "-n", help="Architectures to evaluate on the validation split."),
    method: str = typer.Option(
        "sampler",
        "--method",
        "-m",
        help="sampler (the run's budget-aware sampler), evolution (AutoFormer's) or random.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
    fmt: str = typer.Option("rich", "--format", help="rich (a table) or json (for scripts)."),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Show the evaluations as they go, on stderr: a bar, or one JSON line each with --format json.",
    ),
) -> None:
    """Find the most accurate architecture of a focus run under a budget.

    Evaluates up to --samples architectures under the budget on the
    validation split with the supernet's inherited weights, prints the
    Pareto front of all it evaluated, and writes the best as a version-2
    genotype RUN_DIR/specialized/<budget>.json (<budget>-<method>.json for
    evolution and random) with its FLOPs, params and inherited-weight
    top-1 in its meta. Train it from scratch with: dasvit retrain
    RUN_DIR/specialized/<budget>.json --headless (data and recipe from the
    run; it trains into RUN_DIR/specialized/<budget>-retrain).

    Example: dasvit specialize runs/focus-demo-20260101-120000 --flops 420K
    """
    from dasvit.focus.specialize import METHODS
    from dasvit.focus.specialize import specialize as run_specialize

    if fmt not in ("rich", "json"):
        raise UserError(f"--format must be rich or json, got {fmt!r}.")
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}.")
    budget = parse_count(flops, "--flops")
    param_budget = parse_count(params, "--params") if params is not None else None
    from dasvit.threads import apply_threads

    threads = apply_threads()  # --threads / DASVIT_THREADS, as every engine

    def run(on_eval):
        return run_specialize(run_dir, budget, param_budget, samples=samples, method=method, seed=seed, on_eval=on_eval)

    if not progress:
        result = run(None)
    elif fmt == "json":
        result = run(json_progress(samples))
    else:
        result = run_with_bar(samples, run)
    if fmt == "json":
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_result(result)
        typer.echo(threads.describe(), err=True)

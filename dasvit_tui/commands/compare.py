"""`dasvit compare`: the searched cell against the ViT block (equal depth, matched FLOPs) and against random
cells of its own space; several runs (search seeds) summarized as mean ± spread with their α agreement."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import typer

from dasvit.errors import ConfigError, UserError
from dasvit.fmt import count_in_table
from dasvit.limits import MAX_RANDOM_CELLS, MAX_REPEATS
from dasvit_tui.commands.options import Executor, GpusPerJob, Jobs, JobTime, Partition, launch_flags
from dasvit_tui.render import percent, plain

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
        f"searched cell vs ViT block: {plain(data.get('dataset'))}, {data.get('image_size')} px, width "
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
                count_in_table(row["params"]),
                count_in_table(row["flops"]),
                _delta(row, group["vit"]),
                end_section=k == 1 and g < len(groups) - 1,
            )
    notes = ["Δ top-1: percentage points against the ViT block of the same comparison."]
    repeats = data.get("repeats", 1)
    if isinstance(repeats, int) and repeats > 1:
        notes.append(
            f"searched and ViT rows: the mean of {repeats} retrains (retrain seeds differ); top-1 spread (sample "
            "std): "
            + ", ".join(
                f"{plain(k)} ±{100 * r.get('top1_std', 0):.2f}"
                for k, r in data.get("models", {}).items()
                if len(r.get("runs", [])) > 1
            )
            + "."
        )
    if mf:
        notes.append(
            f"matched FLOPs: {plain(mf['rule'])} ({count_in_table(mf['budget_flops'])}); at depth {mf['depth'] + 1} "
            f"it would cost {count_in_table(mf.get('next_depth_flops'))}."
        )
    elif data.get("note"):
        notes.append(plain(data["note"]))
    rnd = data.get("random")
    if rnd:
        notes.append(
            f"random cells ({len(rnd['cells'])}, depth {rnd.get('depth')}, within {plain(rnd.get('budget'))}): median "
            f"{_pct(rnd['median_top1'])}, best {_pct(rnd['best_top1'])}, each "
            + " ".join(_pct(c["top1"]) for c in rnd["cells"])
            + f"; the searched cell ranks {rnd['searched_rank']} of {rnd['of']}."
        )
    notes.append("runs: " + ", ".join(f"{plain(k)} {plain(r['dir'])}" for k, r in data.get("models", {}).items()))
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def _pts(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.2f}"


def standing_table(data: dict[str, Any]):
    """Where each searched cell (every selection rule's) and the ViT block stand against the random cells of
    their cost (compare.json's cost_trend), or None when the comparison has no random cells."""
    from rich import box
    from rich.table import Table

    trend = data.get("cost_trend")
    if not isinstance(trend, dict) or not isinstance(trend.get("cells"), dict):
        return None
    table = Table(
        title=f"against the random cells' accuracy-FLOPs trend ({trend.get('randoms')} random cells)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col in ("cell", "top-1", "FLOPs", "trend", "Δ trend", "near", "median", "rank"):
        table.add_column(col, justify="left" if col == "cell" else "right", no_wrap=True)
    same = data.get("same_cell") if isinstance(data.get("same_cell"), dict) else {}
    for name, c in trend["cells"].items():
        n = c.get("neighbours") or 0
        table.add_row(
            f"{plain(name)} (= {plain(same[name])})" if name in same else plain(name),
            _pct(c.get("top1")),
            count_in_table(c.get("flops")),
            _pct(c.get("trend_top1")),
            _pts(c.get("residual")),
            str(n),
            _pct(c.get("neighbour_median_top1")) if n else "",
            f"{c.get('neighbour_rank')}/{n + 1}" if n else "",
        )
    spread = trend.get("residual_std")
    notes = [
        f"trend: least squares of the random cells' top-1 on FLOPs ({100 * trend.get('slope_per_mflop', 0):+.2f} "
        f"points per MFLOP); the random cells scatter about it by ±{100 * spread:.2f} points (std)."
        if isinstance(spread, float)
        else "trend: least squares of the random cells' top-1 on FLOPs.",
        "Δ trend: top-1 minus the trend's at the cell's FLOPs, in points; near: random cells within "
        f"±{100 * trend.get('tolerance', 0):g} % of its FLOPs, their median top-1 and its rank among them (1 is best).",
    ]
    mc = data.get("matched_cost")
    if isinstance(mc, dict):
        notes.append(
            f"matched cost ({len(mc.get('cells', []))} random cells within ±{100 * mc.get('tolerance', 0):g} % of the "
            f"searched cell's FLOPs and params): median {_pct(mc.get('median_top1'))}, best {_pct(mc.get('best_top1'))}; "
            f"the searched cell ranks {mc.get('searched_rank')} of {mc.get('of')}."
        )
    for line in ranking_lines(data.get("ranking")):
        notes.append(line)
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def ranking_lines(ranking: Any) -> list[str]:
    """compare.json's supernet ranking, a line per stage end: Kendall τ and Spearman ρ with their intervals."""
    if not isinstance(ranking, dict) or not isinstance(ranking.get("stages"), dict):
        return []

    def corr(c: Any) -> str:
        if not isinstance(c, dict):
            return "too few cells"
        k, s = c.get("kendall") or {}, c.get("spearman") or {}

        def ci(d: dict) -> str:
            lo, hi = d.get("low"), d.get("high")
            return f" [{lo:+.2f}, {hi:+.2f}]" if isinstance(lo, float) and isinstance(hi, float) else ""

        return f"τ {k.get('tau', 0):+.2f}{ci(k)}, ρ {s.get('rho', 0):+.2f}{ci(s)} (n {c.get('n')})"

    lines = ["can the supernet rank them? its scores against the retrained top-1 (95 % bootstrap intervals):"]
    for stage, st in sorted(ranking["stages"].items()):
        if isinstance(st, dict):
            lines.append(
                f"  stage {stage} (depth {st.get('depth')}): one-shot {corr(st.get('oneshot'))}; α {corr(st.get('alpha'))}"
            )
    return lines


def _pm(ms: dict[str, float] | None, scale: float = 100.0) -> str:
    return "" if not ms else f"{scale * ms['mean']:.2f} ± {scale * ms['std']:.2f}"


def summary_table(summary: dict[str, Any]):
    """Several runs' comparisons: one row per run, then mean ± sample std over them; α agreement per stage."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{len(summary['runs'])} searches, same recipe: top-1 on the test split",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # two-line headers and mean ± std on two lines: the seven columns fit an 80-column terminal
    for col in ("run", "searched", "ViT block", "random\nmedian", "rank", "searched\n− ViT", "searched\n− random"):
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=col != "run")
    for r in summary["runs"]:
        med = r.get("random_median_top1")
        table.add_row(
            plain(Path(r["run"]).name),
            _pct(r["searched_top1"]),
            _pct(r["vit_top1"]),
            _pct(med) if med is not None else "",
            f"{r['searched_rank']}/{r['of']}" if "searched_rank" in r else "",
            f"{100 * (r['searched_top1'] - r['vit_top1']):+.2f}",
            f"{100 * (r['searched_top1'] - med):+.2f}" if med is not None else "",
        )
    keys = ("searched_top1", "vit_top1", "random_median_top1", "", "searched_minus_vit", "searched_minus_random_median")
    table.add_row("mean ± std", *(_pm(summary.get(k)).replace(" ± ", "\n± ") if k else "" for k in keys), style="bold")
    lines = []
    for key, what in (("alpha_agreement", "op weights"), ("alpha_type_agreement", "op-type weights")):
        agree = summary.get(key) or {}
        if agree:
            stages = ", ".join(
                f"stage {s} {a['tau']:.2f} ({a['tau_min']:.2f}–{a['tau_max']:.2f})" for s, a in sorted(agree.items())
            )
            lines.append(
                f"α agreement across seeds, Kendall τ of each edge's {what} at the stage end (mean over edges "
                f"and pairs; range over pairs): {stages}"
            )
    if lines:
        table.caption = "\n".join(lines)
        table.caption_justify = "left"
    return table


def compare(
    run_dirs: list[Path] = typer.Argument(
        ..., metavar="RUN_DIR...", help="Finished search run directories (several: one per search seed)."
    ),
    overrides: list[str] = typer.Option([], "--set", "-s", help=SET_HELP, metavar="KEY=VALUE"),
    random_cells: int = typer.Option(
        0,
        "--random",
        "-r",
        help="Also retrain N random cells of each run's space (same rules, budget, recipe); at most 100.",
        metavar="N",
    ),
    repeats: int = typer.Option(
        1,
        "--repeats",
        "-k",
        help="Retrain the searched cell and the ViT block K times each (retrain.seed, +1, ...) and compare their "
        "means: one retrain's noise (about ±0.4 points on Fashion-MNIST) hides smaller differences. Random cells "
        "are retrained once each (their median over N cells averages that noise). At most 20.",
        metavar="K",
    ),
    match_cost: bool = typer.Option(
        False,
        "--match-cost",
        help="With --random N: also retrain N random cells whose FLOPs and params per layer lie within ±--tolerance "
        "of the searched cell's (same rules, recipe and depth): a baseline the searched cell cannot beat or lose "
        "to by its cost alone.",
    ),
    tolerance: float = typer.Option(
        0.05, "--tolerance", help="--match-cost's band, a fraction of the searched cell's cost.", metavar="FRACTION"
    ),
    selections: list[str] = typer.Option(
        [],
        "--selection",
        help="Also retrain the cell this rule takes from the run's last stage-end supernet: skip-limit (or "
        "skip-limit-M), perturbation or oneshot (argmax is the searched cell); repeatable. The cell is taken first if "
        "RUN_DIR/derived/ lacks it (dasvit derive).",
        metavar="RULE",
    ),
    summary_path: Path = typer.Option(
        None, "--summary", help="With several runs: write their mean ± sample std and α agreement here (JSON)."
    ),
    fmt: str = typer.Option(
        "rich",
        "--format",
        "-f",
        help="rich (tables) or json (compare.json, or the summary, on stdout; progress on stderr).",
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="Print no per-epoch progress of the retrains."),
    jobs: Jobs = None,
    executor: Executor = None,
    partition: Partition = None,
    time: JobTime = None,
    gpus_per_job: GpusPerJob = None,
) -> None:
    """Retrain the searched cell, the ViT block and random cells with one recipe; compare them.

    With each RUN_DIR's config.yaml (width, data, recipe; --set on top) it trains:
      equal depth    the searched cell and the ViT block (vit_b16), retrain.depth
      matched FLOPs  the searched cell at the largest depth whose FLOPs do not
                     exceed the ViT block's at retrain.depth
      random (-r N)  N cells drawn from the run's space under the derivation's
                     rules (inputs per node, a residual path, the first stage's
                     ops, within search.budget), retrain.depth
    With --repeats K the searched cell and the ViT block are retrained K times
    (retrain seeds s..s+K-1) and each row is the mean (the table says ± their
    sample std); random cells are retrained once each.
    top-1 is on the test split; each retrain picks its epoch on the validation
    split (held out of the training set). Finished retrains are reused
    (RUN_DIR/retrain, RUN_DIR/compare/*): a second compare trains nothing; a
    stopped one resumes. Writes RUN_DIR/compare.json; `dasvit show RUN_DIR` and
    `dasvit plot RUN_DIR` show it too. Several RUN_DIRs (one search seed each)
    are compared together, then summarized: mean ± sample std over the runs,
    the searched cell's rank among the random cells, and how much the runs' α
    agree at each stage end (Kendall τ).

    The retrains run side by side: --jobs N processes on this machine (one a
    GPU; on a CPU one a core), each logging to its RUN_DIR/engine.log, or as a
    SLURM job array with --executor slurm (a preempted or timed-out task
    resumes from its checkpoint). A retrain that fails is reported with its
    directory and log while the others go on; the same command again retrains
    only what did not finish.

    Exit codes: 0 finished, 1 failed, 2 bad input, 130 stopped (finished
    retrains are kept).

    Examples:
      dasvit compare runs/fashion-s0 --random 5
      dasvit compare runs/fashion-s0 runs/fashion-s1 runs/fashion-s2 --random 5 --summary results/fashion.json
      dasvit compare runs/fashion-s0 --random 5 --executor slurm --partition gpu --gpus-per-job 1
    """
    launch = launch_flags(jobs, executor, partition, time, gpus_per_job)  # a bad flag: one sentence, now
    if not 0 <= random_cells <= MAX_RANDOM_CELLS:
        raise UserError(f"--random must be between 0 and {MAX_RANDOM_CELLS} cells, got {random_cells:,}.")
    if not 1 <= repeats <= MAX_REPEATS:
        raise UserError(f"--repeats must be between 1 and {MAX_REPEATS} retrains per network, got {repeats:,}.")
    if summary_path is not None:
        if len(run_dirs) < 2:
            raise UserError("--summary summarizes several runs (one per search seed); give two or more RUN_DIRs.")
        from dasvit.run.layout import ensure_writable_file

        ensure_writable_file(summary_path, "--summary")  # before the retrains, not after them
    if match_cost and not random_cells:
        raise UserError("--match-cost draws as many cells as --random N: give --random too.")
    from dasvit.run.config import parse_selection

    for rule in selections:
        parse_selection(rule)  # a misspelt rule: one sentence before anything trains
    from dasvit.reports.compare import compare_runs as run_compare
    from dasvit.run.runtime import Outcome

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    # with --format json, stdout carries the JSON alone: progress goes to stderr
    with Outcome() as outcome, contextlib.redirect_stdout(sys.stderr) if fmt == "json" else contextlib.nullcontext():
        rc, results = run_compare(
            list(run_dirs),
            list(overrides),
            say=print,
            progress=not no_progress,
            random_cells=random_cells,
            repeats=repeats,
            match_cost=match_cost,
            tolerance=tolerance,
            selections=selections,
            launch=launch,
        )
        if rc != 0:
            raise typer.Exit(rc)
    if outcome.code:
        raise typer.Exit(outcome.code)
    summary = None
    if len(run_dirs) > 1:
        from dasvit.reports.replicates import summarize
        from dasvit.run.jsonio import atomic_write_text

        summary = summarize(list(run_dirs))
        if summary_path is not None:
            from dasvit.reports.plot_compare import plot_random

            atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
            plot_random(results, [Path(d).name for d in run_dirs], summary_path.parent, summary_path.stem)
    if fmt == "json":
        typer.echo(json.dumps(summary if summary is not None else results[0], indent=2))
    else:
        from rich.console import Console

        console = Console()
        for run_dir, out in zip(run_dirs, results):
            console.print(compare_table(out))
            standing = standing_table(out)
            if standing is not None:
                console.print(standing)
            console.print(f"written: {Path(run_dir) / 'compare.json'}")
        if summary is not None:
            console.print(summary_table(summary))
            if summary_path is not None:
                console.print(f"written: {summary_path}")
    raise typer.Exit(0)

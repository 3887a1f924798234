"""The tables of RESULTS.md's matched-cost section, from finished comparisons (`dasvit compare RUN --random N
--match-cost --selection ...`): per seed, every selection rule's cell against the ViT block, the random cells
within the budget and the random cells of the searched cell's cost, with each cell's distance from the
random cells' accuracy-against-FLOPs trend; then the supernet's ranking diagnostic per stage end.

    python experiments/selection_table.py RUN_DIR [RUN_DIR ...] [--json OUT.json]

Test top-1 is reported; validation top-1 (what a rule may be chosen by) is beside it. Reads only what
`dasvit compare` wrote (compare.json, each retrain's metrics.json, each cell's genotype).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from dasvit.model.genotype import load_genotype
from dasvit.reports.compare_result import read_compare
from dasvit.run import jsonio
from dasvit.run.records import read_metrics

RULES = ("searched", "skip-limit-1", "skip-limit-2", "perturbation", "oneshot")


def _pct(x) -> str:
    return f"{100 * x:.2f}" if isinstance(x, (int, float)) else "–"


def cell_row(run: Path, data: dict, name: str) -> dict | None:
    """A selection rule's cell: its retrain (or the row it shares), its skips and its trend residual."""
    twin = (data.get("same_cell") or {}).get(name)
    key = next(
        (
            k
            for k, r in data["models"].items()
            if r["cell"] == (twin or name) and r["depth"] == data["equal_depth"]["depth"]
        ),
        None,
    )
    if key is None:
        return None
    row = data["models"][key]
    m = read_metrics(run / row["dir"])
    g = load_genotype(run / row["dir"] / "genotype.json")
    live = [e for e in g.edges if e.dst in set(g.live_nodes())]
    trend = (data.get("cost_trend") or {}).get("cells", {}).get(name) or (data.get("cost_trend") or {}).get(
        "cells", {}
    ).get(twin or "")
    return {
        "cell": name,
        "same_as": twin,
        "top1": row["top1"],
        "val_top1": m.get("val_top1"),
        "flops": row["flops"],
        "params": row["params"],
        "skips": sum(e.op == "skip" for e in live),
        "edges": len(live),
        "ops": " ".join(f"{e.src}{e.dst}:{e.op}" for e in live),
        "residual": trend and trend.get("residual"),
        "neighbour_median": trend and trend.get("neighbour_median_top1"),
        "neighbour_rank": trend and trend.get("neighbour_rank"),
        "neighbours": trend and trend.get("neighbours"),
    }


def summarize(run: Path) -> dict:
    data = read_compare(run)
    if data is None:
        raise SystemExit(f"{run} has no compare.json")
    eq = data["equal_depth"]
    out = {
        "run": str(run),
        "vit": {"top1": eq["vit"]["top1"], "flops": eq["vit"]["flops"]},
        "random": {k: data["random"][k] for k in ("median_top1", "best_top1", "searched_rank", "of")},
        "random_cells": [(c["top1"], c["flops"]) for c in data["random"]["cells"]],
        "matched": {k: data["matched_cost"][k] for k in ("median_top1", "best_top1", "searched_rank", "of")},
        "matched_cells": [(c["top1"], c["flops"]) for c in data["matched_cost"]["cells"]],
        "trend": {k: data["cost_trend"][k] for k in ("slope_per_mflop", "intercept", "residual_std", "randoms")},
        "rules": [r for r in (cell_row(run, data, name) for name in RULES) if r is not None],
        "ranking": data.get("ranking"),
    }
    return out


def markdown(runs: list[dict]) -> str:
    lines = [
        "| seed | cell (rule) | test top-1 | val top-1 | FLOPs | skips / live edges | residual from the trend | matched-cost random median | ViT block |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(runs):
        for c in r["rules"]:
            same = f" (= {c['same_as']})" if c["same_as"] else ""
            res = f"{100 * c['residual']:+.2f}" if isinstance(c["residual"], (int, float)) else "–"
            lines.append(
                f"| {k} | {c['cell']}{same} | {_pct(c['top1'])} | {_pct(c['val_top1'])} | {c['flops'] / 1e6:.2f} M | "
                f"{c['skips']} / {c['edges']} | {res} | {_pct(r['matched']['median_top1'])} | {_pct(r['vit']['top1'])} |"
            )
    lines += [
        "",
        "| seed | stage | α score: τ [95 % CI] | ρ | one-shot: τ [95 % CI] | ρ | cells |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(runs):
        stages = (r["ranking"] or {}).get("stages", {})
        for s, st in sorted(stages.items()):

            def corr(c):
                if not c:
                    return "–", "–"
                kt, sp = c["kendall"], c["spearman"]
                f = lambda v: f"{v:+.2f}" if isinstance(v, (int, float)) else "–"  # noqa: E731
                return f"{f(kt.get('tau'))} [{f(kt.get('low'))}, {f(kt.get('high'))}]", f(sp.get("rho"))

            a, o = corr(st.get("alpha")), corr(st.get("oneshot"))
            n = (st.get("oneshot") or st.get("alpha") or {}).get("n", "–")
            lines.append(f"| {k} | {s} | {a[0]} | {a[1]} | {o[0]} | {o[1]} | {n} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python experiments/selection_table.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    runs = [summarize(r) for r in args.runs]
    print(markdown(runs))
    for name in RULES:
        deltas = [c["top1"] - r["matched"]["median_top1"] for r in runs for c in r["rules"] if c["cell"] == name]
        res = [
            c["residual"] for r in runs for c in r["rules"] if c["cell"] == name and isinstance(c["residual"], float)
        ]
        vit = [c["top1"] - r["vit"]["top1"] for r in runs for c in r["rules"] if c["cell"] == name]
        val = [c["val_top1"] for r in runs for c in r["rules"] if c["cell"] == name and c["val_top1"] is not None]
        if deltas:
            sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
            print(
                f"{name:14s} vs matched median {100 * statistics.fmean(deltas):+.2f} ± {100 * sd(deltas):.2f}  "
                f"residual {100 * statistics.fmean(res) if res else float('nan'):+.2f} ± {100 * sd(res) if res else 0:.2f}  "
                f"vs ViT {100 * statistics.fmean(vit):+.2f} ± {100 * sd(vit):.2f}  val {100 * statistics.fmean(val):.2f}"
            )
    if args.json:
        jsonio.atomic_write_text(args.json, json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

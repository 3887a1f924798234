"""Summarise search run directories side by side: per stage the last epoch's validation accuracy and
skip fraction, how many edges keep `skip` and `zero` after each pruning, and the derived cell's skip edges.

    python scripts/search_table.py runs/plain-s0 runs/dasvit-s0 ...

Reads only events.jsonl and genotype.json (the run-directory contract); prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def residual_path(genotype: dict) -> bool:
    """Whether a chain of `skip` edges leads from a cell input (node 0 or 1) to an output node."""
    reach = {0, 1}
    for e in sorted(genotype["edges"], key=lambda e: e["to"]):
        if e["op"] == "skip" and e["from"] in reach:
            reach.add(e["to"])
    return any(o in reach for o in genotype["output"])


def summarise(run: Path) -> dict:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    last: dict[int, dict] = {}
    for e in events:
        if e["type"] == "epoch":
            last[e["stage"]] = e
    prunes = {e["stage"]: e["keep"] for e in events if e["type"] == "prune"}
    geno = json.loads((run / "genotype.json").read_text()) if (run / "genotype.json").is_file() else None
    return {
        "run": run.name,
        "val_acc": [last[s]["val_acc"] for s in sorted(last)],
        "skip": [last[s]["skip_fraction"] for s in sorted(last)],
        "skip_kept": [sum("skip" in ops for ops in prunes[s].values()) for s in sorted(prunes)],
        "zero_kept": [sum("zero" in ops for ops in prunes[s].values()) for s in sorted(prunes)],
        "edges": len(next(iter(prunes.values()))) if prunes else 0,
        "cell_skip": None if geno is None else sum(e["op"] == "skip" for e in geno["edges"]),
        "residual": None if geno is None else residual_path(geno),
        "cell": None if geno is None else " ".join(f"{e['from']}->{e['to']}:{e['op']}" for e in geno["edges"]),
    }


def main(argv: list[str]) -> None:
    def fmt(xs, spec=".2f"):
        return " / ".join(format(x, spec) for x in xs)

    print(
        "| run | val acc per stage | skip fraction per stage | edges keeping skip after prune 1 / 2 "
        "| keeping zero | skip edges in cell | residual path | cell |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for arg in argv:
        s = summarise(Path(arg))
        print(
            f"| {s['run']} | {fmt(s['val_acc'])} | {fmt(s['skip'], '.3f')} | "
            f"{fmt(s['skip_kept'], 'd')} of {s['edges']} | {fmt(s['zero_kept'], 'd')} | {s['cell_skip']} | "
            f"{ {True: 'yes', False: 'no', None: '-'}[s['residual']] } | {s['cell']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

"""Summarise search run directories side by side: per stage the last epoch's validation accuracy and
skip fraction, how many edges keep `skip` and `zero` after each pruning, and the derived cell's skip edges.

    python experiments/search_table.py runs/plain-s0 runs/dasvit-s0 ...

Reads the runs through dasvit's own readers (the event fold `RunHistory`, the genotype loader); prints a
Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dasvit.model.genotype import load_genotype
from dasvit.run.history import RunHistory
from dasvit.search.derivation import has_residual_path


def summarise(run: Path) -> dict:
    history = RunHistory.read(run)
    last = {s: history.of_stage(s)[-1] for s in history.stage_starts()}
    prunes = {p["stage"]: p["keep"] for p in history.prunes if "stage" in p and "keep" in p}
    geno = load_genotype(run / "genotype.json") if (run / "genotype.json").is_file() else None
    return {
        "run": run.name,
        "val_acc": [last[s].get("val_acc", float("nan")) for s in sorted(last)],
        "skip": [last[s].get("skip_fraction", float("nan")) for s in sorted(last)],
        "skip_kept": [sum("skip" in ops for ops in prunes[s].values()) for s in sorted(prunes)],
        "zero_kept": [sum("zero" in ops for ops in prunes[s].values()) for s in sorted(prunes)],
        "edges": len(next(iter(prunes.values()))) if prunes else 0,
        "cell_skip": None if geno is None else sum(e.op == "skip" for e in geno.edges),
        "residual": None if geno is None else has_residual_path(geno),
        "cell": None if geno is None else " ".join(f"{e.src}->{e.dst}:{e.op}" for e in geno.edges),
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

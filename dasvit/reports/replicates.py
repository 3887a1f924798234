"""Several searches of one space with different seeds: do their decisions agree, and what do their
comparisons say together?

- `stage_end_weights(run)`: each stage's last α (softmax weights per edge), from events.jsonl.
- `alpha_agreement(runs)`: per stage, Kendall's τ between two runs' op weights on an edge (over the ops
  both still have), averaged over edges and over every pair of runs. τ near 1: the seeds rank the ops
  alike; near 0: the ranking is noise, and so is a pruning made from it. `level="type"` ranks the op
  types instead (zero, skip, msa, mlp: each the sum of its ops' weights): whether the seeds agree on what
  kind of op an edge wants even where they disagree on its size.
- `summarize(runs)`: the compare.json of every run as mean ± spread over the seeds (sample standard
  deviation): the searched cell, the ViT block, the median of the random cells, and the margins.

Reads only run-directory files (events.jsonl, compare.json): no torch.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

from ..model.opspec import parse_op
from ..run.history import RunHistory


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's τ-b of two paired lists (scipy.stats); None when either list is constant or shorter than two."""
    import math

    from scipy.stats import kendalltau

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    tau = float(kendalltau(a, b).statistic)
    return tau if math.isfinite(tau) else None


def stage_end_weights(run_dir: Path) -> dict[int, dict[str, dict[str, float]]]:
    """{stage: {edge: {op: weight}}} of the last epoch of every stage a search run finished an epoch of."""
    return RunHistory.read(Path(run_dir)).stage_end_weights()


def _by_type(w: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for edge, ops in w.items():
        types: dict[str, float] = {}
        for op, v in ops.items():
            t = parse_op(op).type
            types[t] = types.get(t, 0.0) + v
        out[edge] = types
    return out


def alpha_agreement(run_dirs: list[Path], level: str = "op") -> dict[int, dict[str, Any]]:
    """Per stage: mean Kendall τ over edges and run pairs, its range over pairs, and how many pairs.
    `level`: "op" ranks the ops of an edge, "type" its op types (see the module docstring)."""
    weights = [stage_end_weights(d) for d in run_dirs]
    if level == "type":
        weights = [{s: _by_type(w) for s, w in ws.items()} for ws in weights]
    stages = sorted(set.intersection(*(set(w) for w in weights))) if weights else []
    out: dict[int, dict[str, Any]] = {}
    for s in stages:
        per_pair = []
        for wa, wb in itertools.combinations([w[s] for w in weights], 2):
            taus = []
            for edge in sorted(set(wa) & set(wb)):
                ops = sorted(set(wa[edge]) & set(wb[edge]))
                t = kendall_tau([wa[edge][o] for o in ops], [wb[edge][o] for o in ops])
                if t is not None:
                    taus.append(t)
            if taus:
                per_pair.append(statistics.fmean(taus))
        if per_pair:
            out[s] = {
                "tau": statistics.fmean(per_pair),
                "tau_min": min(per_pair),
                "tau_max": max(per_pair),
                "pairs": len(per_pair),
            }
    return out


def mean_spread(values: list[float]) -> dict[str, float]:
    """{"mean", "std" (sample; 0 for one value), "n"}."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarize(run_dirs: list[Path]) -> dict[str, Any]:
    """The comparisons of several searches (each run's compare.json) and the agreement of their α."""
    from .compare_result import read_compare

    rows = []
    for d in run_dirs:
        c = read_compare(d)
        if c is None:
            continue
        eq = c["equal_depth"]
        row = {
            "run": str(d),
            "searched_top1": eq["searched"]["top1"],
            "vit_top1": eq["vit"]["top1"],
            "searched_params": eq["searched"]["params"],
            "searched_flops": eq["searched"]["flops"],
            "vit_params": eq["vit"]["params"],
            "vit_flops": eq["vit"]["flops"],
            "depth": eq["depth"],
        }
        if c.get("random"):
            r = c["random"]
            row.update(
                random_median_top1=r["median_top1"],
                random_best_top1=r["best_top1"],
                random_top1=[x["top1"] for x in r["cells"]],
                searched_rank=r["searched_rank"],
                of=r["of"],
            )
        rows.append(row)
    out: dict[str, Any] = {"format": "dasvit-replicates", "version": 1, "runs": rows}
    if rows:
        out["searched_top1"] = mean_spread([r["searched_top1"] for r in rows])
        out["vit_top1"] = mean_spread([r["vit_top1"] for r in rows])
        out["searched_minus_vit"] = mean_spread([r["searched_top1"] - r["vit_top1"] for r in rows])
        with_random = [r for r in rows if "random_median_top1" in r]
        if with_random:
            out["random_median_top1"] = mean_spread([r["random_median_top1"] for r in with_random])
            out["searched_minus_random_median"] = mean_spread(
                [r["searched_top1"] - r["random_median_top1"] for r in with_random]
            )
            every = [t for r in with_random for t in r["random_top1"]]
            out["random_top1_all"] = mean_spread(every)
    dirs = [Path(d) for d in run_dirs]
    out["alpha_agreement"] = {str(k): v for k, v in alpha_agreement(dirs).items()}
    out["alpha_type_agreement"] = {str(k): v for k, v in alpha_agreement(dirs, "type").items()}
    return out

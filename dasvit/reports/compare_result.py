"""compare.json from a finished comparison: one row per network (the mean over its repeats), the two
head-to-head comparisons, the random baselines, the cost trend and the supernet's ranking."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compare_cells import MATCHED, RANDOM, VIT, is_random

if TYPE_CHECKING:
    from .compare import ComparePlan, Entry


def _row(plan: ComparePlan, e: Entry) -> dict[str, Any]:
    from ..run.records import read_metrics

    m = read_metrics(e.run_dir)
    rel = e.run_dir.relative_to(plan.run_dir) if e.run_dir.is_relative_to(plan.run_dir) else e.run_dir
    return {
        "cell": e.cell,
        "depth": e.depth,
        "top1": m["top1"],
        "top5": m["top5"],
        "params": m["params"],
        "flops": m["flops"],
        "images_per_s": m.get("images_per_s"),
        "epochs": m.get("epochs"),
        "best_epoch": m.get("best_epoch"),
        "dir": str(rel),
        "trained": e.trained,
        "seed": plan.recipe_for(e).retrain.seed,
    }


def _network_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One network's row: its first retrain's fields, top-1 and top-5 the mean over its retrains (`runs`,
    with their sample std); `dir` is the first retrain's."""
    row = dict(runs[0])
    for k in ("top1", "top5"):
        row[k] = statistics.fmean(r[k] for r in runs)
    row["top1_std"] = statistics.stdev(r["top1"] for r in runs) if len(runs) > 1 else 0.0
    row["trained"] = any(r["trained"] for r in runs)
    row["runs"] = [{k: r[k] for k in ("seed", "top1", "top5", "best_epoch", "dir")} for r in runs]
    return row


def result(plan: ComparePlan) -> dict[str, Any]:
    """compare.json: every retrain's metrics, grouped as the two comparisons."""
    cfg, depth = plan.cfg, plan.depth
    retrains: dict[str, list[dict[str, Any]]] = {}
    for e in plan.entries:
        retrains.setdefault(e.key, []).append(_row(plan, e))
    rows = {key: _network_row(runs) for key, runs in retrains.items()}
    vit = rows[f"{VIT}@{depth}"]
    recipe = dataclasses.asdict(cfg.retrain)
    recipe.pop("depth")
    out: dict[str, Any] = {
        "format": "dasvit-compare",
        "version": 1,
        "run": str(plan.run_dir),
        "time": time.time(),
        "dataset": cfg.data.name,
        "image_size": cfg.data.image_size,
        "patch_size": cfg.space.patch_size,
        "embed_dim": cfg.space.embed_dim,
        "num_classes": plan.num_classes,
        "overrides": plan.overrides,
        "recipe": recipe,
        "repeats": plan.repeats,  # retrains of the searched cell and the ViT block; top1/top5 are their mean
        "models": rows,
        "equal_depth": {"depth": depth, "searched": rows[f"searched@{depth}"], "vit": vit},
        "matched_flops": None,
    }
    if plan.matched_depth is not None:
        out["matched_flops"] = {
            "rule": f"the searched cell's largest depth whose FLOPs do not exceed the ViT block's at depth {depth}",
            "budget_flops": vit["flops"],
            "depth": plan.matched_depth,
            "next_depth_flops": plan.next_flops,
            "searched": rows[f"searched@{plan.matched_depth}"],
            "vit": vit,
        }
    else:
        out["note"] = (
            f"the searched cell costs more at depth 1 than the ViT block at depth {depth}; no matched-FLOPs comparison."
        )
    searched = rows[f"searched@{depth}"]
    randoms = [row for key, row in rows.items() if key.startswith(RANDOM)]
    if randoms:
        out["random"] = _baseline(
            randoms,
            searched["top1"],
            "cells drawn uniformly from the run's space: the derivation's inputs per node, a residual path, "
            "the first stage's ops, within search.budget; same depth and recipe",
        )
        out["random"].update(depth=depth, budget=plan.cfg.search.budget)
    matched = [row for key, row in rows.items() if key.startswith(MATCHED)]
    if matched:
        out["matched_cost"] = _baseline(
            matched,
            searched["top1"],
            f"random cells as above whose FLOPs and params per layer lie within ±{100 * plan.tolerance:g} % of the "
            "searched cell's",
        )
        out["matched_cost"].update(depth=depth, tolerance=plan.tolerance, budget=plan.cfg.search.budget)
    selected = {
        key.split("@")[0]: row
        for key, row in rows.items()
        if row["depth"] == depth and not is_random(row["cell"]) and row["cell"] != VIT
    }
    if plan.same:
        out["same_cell"] = dict(plan.same)  # e.g. {"oneshot": "searched"}: the rule took the searched cell
        selected.update({name: rows[f"{twin}@{depth}"] for name, twin in plan.same.items()})
    if randoms or matched:
        from .ranking import cost_trend

        trend = cost_trend(randoms + matched, {**selected, VIT: vit}, plan.tolerance)
        if trend is not None:
            out["cost_trend"] = trend
    return out


def _baseline(cells: list[dict[str, Any]], searched_top1: float, rule: str) -> dict[str, Any]:
    """A row of random cells: each, their median and best top-1, and the searched cell's rank among them."""
    tops = sorted(r["top1"] for r in cells)
    return {
        "rule": rule,
        "cells": cells,
        "median_top1": statistics.median(tops),
        "best_top1": tops[-1],
        # 1 is the best: how many random cells did better, plus one
        "searched_rank": 1 + sum(t > searched_top1 for t in tops),
        "of": len(tops) + 1,
    }


def ranking(plan: ComparePlan, out: dict[str, Any], say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The supernet's ranking of the networks the comparison retrained at equal depth (dasvit.reports.ranking)."""
    from .ranking import supernet_ranking

    cells = {
        key.split("@")[0]: (e.genotype, out["models"][key]["top1"])
        for key, e in {e.key: e for e in plan.entries}.items()
        if e.depth == plan.depth
    }
    return supernet_ranking(plan.run_dir, plan.cfg, cells, say)


def read_compare(run_dir: str | Path) -> dict[str, Any] | None:
    """RUN_DIR/compare.json held to its type (dasvit.run.records.CompareFile), None if there is none;
    `records.DamagedRecord` (one sentence) if it is not one."""
    from ..run.records import read_compare_file

    return read_compare_file(Path(run_dir))

"""Does the search find anything? Where a cell stands among random cells of its cost, and whether the
supernet can rank cells at all.

- `cost_trend(cells, others)`: the random cells' top-1 against their network FLOPs as a least-squares
  line; each other cell's distance above or below it (in points), set against the random cells' own
  scatter about the line, and against its matched-cost neighbours (random cells within ±tolerance of its
  FLOPs): the comparison a cheaper cell cannot win or lose by its cost alone.
- `correlation(scores, top1)`: Kendall's τ and Spearman's ρ (scipy.stats) of a supernet's scores of
  cells against their retrained top-1, each with a paired bootstrap 95 % interval (resampling cells). The
  NAS field's diagnostic of a weight-sharing supernet (NASLib reports it): near 0, the supernet cannot
  tell good cells from bad at this scale, and no rule that derives from it can beat random.
- `supernet_ranking(run_dir, cfg, cells)`: for every stage-end supernet a run kept, each cell's α score
  and one-shot accuracy on the validation split (`dasvit.search.selection`), and their correlation with the
  retrained top-1 over the cells that stage can score (a cell whose op the stage had pruned has no score).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

BOOTSTRAP_RESAMPLES = 2000
MIN_CELLS = 4  # fewer scored cells give no correlation


def correlation(
    scores: list[float], top1: list[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any] | None:
    """{"n", "kendall": {"tau", "low", "high"}, "spearman": {"rho", "low", "high"}} of paired lists; None with
    fewer than MIN_CELLS pairs or a constant list. The interval is the 2.5 and 97.5 percentiles of the
    statistic over `resamples` paired resamples of the cells (resamples where it is undefined are left out)."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(scores, dtype=float), np.asarray(top1, dtype=float)
    if len(x) < MIN_CELLS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    out: dict[str, Any] = {"n": len(x)}
    for name, key, fn in (("kendall", "tau", stats.kendalltau), ("spearman", "rho", stats.spearmanr)):
        value = float(fn(x, y).statistic)
        boot = []
        for i in idx:
            xi, yi = x[i], y[i]
            if np.ptp(xi) > 0 and np.ptp(yi) > 0:
                boot.append(float(fn(xi, yi).statistic))
        boot = [b for b in boot if math.isfinite(b)]
        low, high = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) if boot else (None, None)
        out[name] = {key: value, "low": low, "high": high}
    return out


def cost_trend(
    randoms: list[dict[str, Any]], others: dict[str, dict[str, Any]], tolerance: float
) -> dict[str, Any] | None:
    """The random cells' top-1 against network FLOPs (rows with "top1" and "flops"), fitted by least squares;
    for each of `others` (name → row): its residual, its matched-cost neighbours' median and its rank among
    them. None with fewer than two random cells of distinct FLOPs."""
    pts = [(r["flops"], r["top1"]) for r in randoms]
    if len(pts) < 2 or len({f for f, _ in pts}) < 2:
        return None
    fx = statistics.fmean(f for f, _ in pts)
    fy = statistics.fmean(t for _, t in pts)
    sxx = sum((f - fx) ** 2 for f, _ in pts)
    slope = sum((f - fx) * (t - fy) for f, t in pts) / sxx
    intercept = fy - slope * fx
    residuals = [t - (intercept + slope * f) for f, t in pts]
    spread = statistics.stdev(residuals) if len(residuals) > 2 else None
    cells = {}
    for name, row in others.items():
        expected = intercept + slope * row["flops"]
        near = [r["top1"] for r in randoms if abs(r["flops"] - row["flops"]) <= tolerance * row["flops"]]
        cells[name] = {
            "flops": row["flops"],
            "top1": row["top1"],
            "trend_top1": expected,
            "residual": row["top1"] - expected,
            "neighbours": len(near),
            "neighbour_median_top1": statistics.median(near) if near else None,
            "neighbour_rank": 1 + sum(t > row["top1"] for t in near) if near else None,
        }
    return {
        "fit": "top-1 = intercept + slope · FLOPs, least squares over the random cells (both rows)",
        "slope_per_mflop": slope * 1e6,
        "intercept": intercept,
        "residual_std": spread,
        "randoms": len(pts),
        "tolerance": tolerance,
        "cells": cells,
    }


def supernet_ranking(
    run_dir: Path,
    cfg,
    cells: dict[str, tuple[Any, float]],
    say: Callable[[str], None] = lambda s: None,
) -> dict[str, Any] | None:
    """Every stage-end supernet's scores of `cells` (name → (genotype, retrained top-1)) and their
    correlation with the top-1: {"stages": {k: {"depth", "alpha": corr, "oneshot": corr, "scored"}}, "cells":
    {name: {"top1", "alpha": {k: score}, "oneshot": {k: top-1}}}}; None when the run kept no stage supernet."""
    import time

    import torch

    from ..run.distributed import DistInfo
    from ..search.selection import alpha_score, load_stage_supernet, oneshot_accuracy, stage_files
    from ..train.data import EpochLoaders, build_datasets
    from ..train.images import image_channels

    files = stage_files(run_dir)
    if not files:
        return None
    splits = build_datasets(cfg.data)
    d = cfg.data
    loader = EpochLoaders(splits.selection, d.batch_size, d.workers, 0, 0, 1, shuffle=False, drop_last=False)
    info = DistInfo()
    out_cells: dict[str, dict[str, Any]] = {n: {"top1": t, "alpha": {}, "oneshot": {}} for n, (_, t) in cells.items()}
    stages = {}
    for k in sorted(files):
        t0 = time.time()
        with torch.no_grad():
            net = load_stage_supernet(run_dir, cfg, k, splits.num_classes, image_channels(cfg.data))
        for name, (geno, _) in cells.items():
            a = alpha_score(net, geno)
            out_cells[name]["alpha"][str(k)] = a if math.isfinite(a) else None
            out_cells[name]["oneshot"][str(k)] = oneshot_accuracy(net, geno, lambda: loader.epoch(0), info)
        stage: dict[str, Any] = {"depth": cfg.search.stages[k - 1].depth}
        for key in ("alpha", "oneshot"):
            pairs = [(c[key][str(k)], c["top1"]) for c in out_cells.values() if c[key][str(k)] is not None]
            stage[key] = correlation([p for p, _ in pairs], [t for _, t in pairs]) if pairs else None
            stage[f"{key}_scored"] = len(pairs)
        stage["seconds"] = round(time.time() - t0, 1)
        stages[str(k)] = stage
        say(f"ranking: stage {k} scored {stage['oneshot_scored']} of {len(cells)} cells in {stage['seconds']} s")
    return {
        "what": "the supernet's scores of the retrained cells against their test top-1: alpha = Σ log softmax(α) "
        "over the cell's edges, oneshot = the stage's supernet with only the cell's ops, top-1 on the validation "
        "split; Kendall τ and Spearman ρ with a paired bootstrap 95 % interval over the cells",
        "stages": stages,
        "cells": out_cells,
    }

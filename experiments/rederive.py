"""Re-derive the cell of a finished search from the α in its checkpoint, under today's derivation rules.

    python experiments/rederive.py RUN_DIR

Writes RUN_DIR/genotype.json (the old one is kept as genotype-before-rederive.json) when the rules give
another cell; prints both. Used when a rule changed after a search ran (2026-12-02: a derived cell must
have an attention edge), so that the α the search paid for is not thrown away.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from dasvit.model.cost import edges_cost
from dasvit.model.genotype import load_genotype
from dasvit.run import layout
from dasvit.run.presets import load_run_config
from dasvit.search.budget import space_costs
from dasvit.search.derivation import derive_genotype


def main(run: Path) -> int:
    cfg = load_run_config(run / layout.CONFIG)
    ckpt = torch.load(run / layout.CHECKPOINT, map_location="cpu", weights_only=False)
    alpha, mask = ckpt["model"]["alpha"], ckpt["model"]["mask"].bool()
    w = torch.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)
    old = load_genotype(str(run / layout.GENOTYPE))
    op_costs, budget = space_costs(cfg)
    meta = dict(old.meta, rederived="the cell derived again from the stage-end α (an attention edge is required)")
    new = derive_genotype(
        w,
        mask,
        list(cfg.space.ops),
        cfg.space.nodes,
        cfg.space.edges_per_node,
        meta=meta,
        skip_floor=cfg.search.skip_floor,
        op_costs=op_costs,
        budget=budget,
    )
    cost = edges_cost(new.edges, op_costs)
    new.meta["cost"] = {"flops": cost.flops, "params": cost.params}
    show = lambda g: ", ".join(f"{e.src}->{e.dst} {e.op}" for e in g.edges)  # noqa: E731
    print(f"before: {show(old)}\nnow:    {show(new)}  ({cost.flops:,} FLOPs, {cost.params:,} params per cell)")
    if [(e.src, e.dst, e.op) for e in new.edges] == [(e.src, e.dst, e.op) for e in old.edges]:
        print("unchanged")
        return 0
    shutil.copy2(run / layout.GENOTYPE, run / "genotype-before-rederive.json")
    new.save(run / layout.GENOTYPE)
    print(f"wrote {run / layout.GENOTYPE} (the old cell: genotype-before-rederive.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

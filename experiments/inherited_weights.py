"""Are a FocusFormer supernet's inherited weights good enough? One command, three ways to a network.

    python experiments/inherited_weights.py FOCUS_RUN --out OUT [--samples 100] [--finetune-epochs 5]

At three FLOPs budgets (a quarter, half and three quarters of the way through the space's FLOPs range, as
experiments/focus_claim.py) the run's sampler picks a subnet on the validation split (`dasvit specialize`,
`--samples` evaluations), which then reaches the test split three ways:

- inherited: the subnet exported with the supernet's weights (`dasvit export`), no training;
- fine-tuned: `dasvit retrain --init inherited` for `--finetune-epochs` epochs (the run's retrain recipe,
  warm-up 0, learning rate x `--finetune-lr-scale`);
- scratch: `dasvit retrain` with the run's whole retrain recipe, from a ViT initialisation.

The fine-tune recipe is fixed before any figure is seen; nothing here selects on the test split (each
retrain keeps its best epoch on the validation split). OUT/inherited.json and OUT/inherited.md hold the
table; OUT/<budget>-finetune and OUT/<budget>-scratch the retrains (reused when finished, resumed when
stopped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dasvit.fmt import count
from dasvit.focus.specialize import FocusRun, specialize
from dasvit.reports.export import build, resolve
from dasvit.run import jsonio, layout
from dasvit.run.records import read_metrics
from dasvit.run.requests import RetrainRequest
from dasvit.run.runtime import Outcome
from dasvit.train.data import build_datasets
from dasvit.train.retrain import run as retrain

FRACTIONS = (0.25, 0.5, 0.75)


def test_top1(net: torch.nn.Module, focus: FocusRun) -> float:
    """Top-1 of `net` on the run's test split (the dataset's own, never selected on)."""
    test = build_datasets(focus.cfg.data).test
    right = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=256):
            right += (net(x).argmax(1) == y).sum().item()
    return right / len(test)


def trained(genotype: Path, run_dir: Path, overrides: list[str], say) -> dict:
    """A retrain of `genotype` into `run_dir` (reused if finished, resumed if stopped): its metrics."""
    if not (run_dir / layout.METRICS).is_file():
        if (run_dir / layout.CHECKPOINT).is_file():
            request = RetrainRequest(resume=run_dir, progress=False)
        else:
            request = RetrainRequest(str(genotype), None, overrides, run_dir, progress=False)
        t0 = time.time()
        code = retrain(request)
        if code != 0:
            raise SystemExit(code)
        say(f"  {run_dir.name}: {time.time() - t0:.0f} s")
    return dict(read_metrics(run_dir))


def markdown(result: dict) -> str:
    lines = [
        f"Inherited weights against a fine-tune and a retrain from scratch: {result['run']} "
        f"(supernet epoch {result['supernet_epoch']}); test split, top-1 (%).",
        "",
        "| budget | picked (FLOPs, params) | val top-1 inherited | inherited | fine-tuned "
        f"({result['finetune_epochs']} ep) | scratch ({result['scratch_epochs']} ep) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {count(r['budget_flops'])} | {count(r['flops'])}, {count(r['params'])} | {100 * r['val_inherited']:.2f} "
            f"| {100 * r['inherited']:.2f} | {100 * r['finetuned']:.2f} | {100 * r['scratch']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python experiments/inherited_weights.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="a finished focus run directory")
    p.add_argument("--out", type=Path, required=True, help="where the retrains and the table go")
    p.add_argument("--samples", type=int, default=100, help="evaluations per budget (default 100)")
    p.add_argument("--finetune-epochs", type=int, default=5, help="epochs of the fine-tune (default 5)")
    p.add_argument("--finetune-lr-scale", type=float, default=0.5, help="fine-tune lr = recipe lr x this (0.5)")
    p.add_argument("--seed", type=int, default=0, help="the specialization's draws")
    args = p.parse_args(argv)
    with Outcome() as outcome:
        say = print
        focus = FocusRun(args.run, device="cpu")
        lo, hi = focus.cost(focus.space.smallest())[0], focus.cost(focus.space.largest())[0]
        r = focus.cfg.retrain
        finetune = [
            "retrain.init=inherited",
            f"retrain.epochs={args.finetune_epochs}",
            "retrain.warmup_epochs=0",
            f"retrain.lr={r.lr * args.finetune_lr_scale}",
        ]
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for fraction in FRACTIONS:
            budget = round(lo + fraction * (hi - lo))
            say(f"budget {count(budget)}: specializing ({args.samples} evaluations on the validation split)")
            picked = specialize(focus, budget, samples=args.samples, method="sampler", seed=args.seed)
            net = build(resolve(str(picked.path)))
            row = {
                "budget_flops": budget,
                "genotype": str(picked.path),
                "flops": picked.best.flops,
                "params": picked.best.params,
                "val_inherited": picked.best.top1,
                "inherited": test_top1(net, focus),
            }
            name = count(budget)
            tuned = trained(picked.path, out / f"{name}-finetune", finetune, say)
            scratch = trained(picked.path, out / f"{name}-scratch", [], say)
            row.update(
                finetuned=tuned["top1"], finetuned_val=tuned.get("val_top1"), finetuned_epoch=tuned.get("best_epoch")
            )
            row.update(
                scratch=scratch["top1"], scratch_val=scratch.get("val_top1"), scratch_epoch=scratch.get("best_epoch")
            )
            rows.append(row)
            say(
                f"budget {name}: inherited {row['inherited']:.4f}, fine-tuned {row['finetuned']:.4f}, "
                f"scratch {row['scratch']:.4f} (test)"
            )
        result = {
            "run": str(args.run),
            "supernet_epoch": focus.epoch,
            "samples": args.samples,
            "finetune_epochs": args.finetune_epochs,
            "finetune_overrides": finetune,
            "scratch_epochs": r.epochs,
            "command": "python experiments/inherited_weights.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "rows": rows,
        }
        jsonio.atomic_write_text(out / "inherited.json", json.dumps(result, indent=2) + "\n")
        jsonio.atomic_write_text(out / "inherited.md", markdown(result))
        say(markdown(result))
    return outcome.code


if __name__ == "__main__":
    raise SystemExit(main())

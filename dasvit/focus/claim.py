"""FocusFormer's claim, measured in one command: Pareto-aware sampling against AutoFormer's uniform training.

    python -m dasvit.focus.claim --preset focus-digits --out runs/focus-claim [--samples 100] [--set k=v ...]

Trains two supernets that differ only in `focus.sampler` (pareto: FocusFormer; uniform: AutoFormer), same
data, epochs and seed (both at once, one process each; a finished run in OUT is reused, a stopped one
resumed). Then for three FLOPs budgets (a quarter, half and three quarters of the way through the space's
FLOPs range) it searches each supernet with inherited weights on the validation split: the sampler on the
pareto run; evolution (AutoFormer's) and random on both runs; every method with the same number of
evaluations. It prints one table (best top-1, after how many evaluations it was found, the best top-1
after 10 and 25 evaluations, the mean top-1 of all evaluated, and the best architecture's top-1 on the other
supernet; random draws the same architectures on both supernets, a paired comparison), the sampler's state over the epochs (fraction of its draws within budget, and
its entropy) at those budgets, and writes OUT/claim.json and OUT/claim.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .. import rundir as rd
from ..engine_request import FocusRequest
from ..errors import UserError
from ..fmt import count as human
from ..runtime import run_engine
from .sampler import bin_for_budget
from .specialize import FocusRun, specialize

FRACTIONS = (0.25, 0.5, 0.75)
ROWS = [
    ("sampler", "pareto"),
    ("evolution", "uniform"),
    ("random", "uniform"),
    ("evolution", "pareto"),
    ("random", "pareto"),
]
ANYTIME = (10, 25)


def _finished(run_dir: Path) -> bool:
    events, _ = rd.read_events(run_dir) if (run_dir / rd.EVENTS).exists() else ([], [])
    return any(e.get("type") == "run_end" and e.get("status") == "finished" for e in events)


def train_both(preset: str, overrides: list[str], out: Path, say) -> dict[str, Path]:
    """The pareto and uniform supernets, trained side by side (reused when finished, resumed when stopped)."""
    runs = {s: out / s for s in ("pareto", "uniform")}
    procs = {}
    for sampler, run_dir in runs.items():
        if _finished(run_dir):
            say(f"{run_dir}: finished already, reused")
            continue
        if (run_dir / rd.CHECKPOINT).is_file():
            request = FocusRequest(resume=run_dir, progress=False)
        else:
            request = FocusRequest(preset, [*overrides, f"focus.sampler={sampler}"], run_dir, progress=False)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "claim-train.log", "ab") as log:  # the child keeps its own copy of the descriptor
            procs[sampler] = subprocess.Popen(
                [sys.executable, "-m", request.MODULE, *request.argv()], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        say(f"training the {sampler} supernet in {run_dir} (log: {run_dir / 'claim-train.log'})")
    for sampler, proc in procs.items():
        rc = proc.wait()
        if rc != 0:
            raise UserError(
                f"training the {sampler} supernet failed (exit {rc}); see {runs[sampler] / 'claim-train.log'}."
            )
    return runs


def sampler_history(run_dir: Path, budgets: list[float], bins: list[float]) -> list[dict]:
    """Per epoch of the pareto run: phase, and per asked budget the sampler's feasible fraction and entropy."""
    events, _ = rd.read_events(run_dir)
    out = []
    for e in events:
        if e.get("type") != "epoch":
            continue
        state = e["sampler"]["bins"]
        per = []
        for b in budgets:
            s = state[bin_for_budget(b, bins)]
            per.append(
                {
                    "budget_flops": s["budget_flops"],
                    "feasible": s["feasible"],
                    "entropy": s["entropy"],
                    "mean_flops": s["mean_flops"],
                }
            )
        out.append(
            {
                "epoch": e["epoch"],
                "phase": e.get("phase"),
                "val_acc_largest": e["val_acc"],
                "val_acc_smallest": e.get("val_acc_smallest"),
                "bins": per,
            }
        )
    return out


def measure(runs: dict[str, Path], samples: int, seed: int, say) -> dict:
    loaded = {s: FocusRun(p) for s, p in runs.items()}
    lo, hi = (
        loaded["pareto"].cost(loaded["pareto"].space.smallest())[0],
        loaded["pareto"].cost(loaded["pareto"].space.largest())[0],
    )
    budgets = [round(lo + f * (hi - lo)) for f in FRACTIONS]
    table = []
    for budget in budgets:
        for method, sampler in ROWS:
            t0 = time.time()
            r = specialize(loaded[sampler], budget, samples=samples, method=method, seed=seed, write=False)
            order = sorted(r.evaluated, key=lambda c: c.order)
            anytime = {str(n): max(c.top1 for c in order[:n]) for n in ANYTIME if n <= len(order)}
            other = "uniform" if sampler == "pareto" else "pareto"
            row = {
                "budget_flops": budget,
                "method": method,
                "supernet": sampler,
                "evaluations": len(r.evaluated),
                "found_at": r.found_at,
                "top1": r.best.top1,
                "flops": r.best.flops,
                "params": r.best.params,
                "mean_top1": sum(c.top1 for c in order) / len(order),
                "top1_on_other": loaded[other].evaluate(r.best.arch)[1],
                "anytime": anytime,
                "seconds": time.time() - t0,
                "arch": r.best.arch.to_json(),
            }
            table.append(row)
            say(
                f"budget {human(budget)}: {method} on {sampler}: top-1 {r.best.top1:.4f} at evaluation {r.found_at}"
                f"/{len(r.evaluated)}"
            )
    return {
        "budgets": budgets,
        "flops_range": [lo, hi],
        "rows": table,
        "history": sampler_history(runs["pareto"], budgets, loaded["pareto"].budgets),
        "uniform_history": sampler_history(runs["uniform"], budgets, loaded["uniform"].budgets),
    }


def markdown(result: dict) -> str:
    header = (
        "| budget (FLOPs) | method | supernet | evaluations | best top-1 | found at | top-1 @10 | top-1 @25 "
        "| mean top-1 of those evaluated | FLOPs of best | best arch on the other supernet |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        any_ = r["anytime"]
        lines.append(
            f"| {human(r['budget_flops'])} | {r['method']} | {r['supernet']} | {r['evaluations']} | "
            f"{r['top1']:.2%} | {r['found_at']} | {any_.get('10', float('nan')):.2%} | "
            f"{any_.get('25', float('nan')):.2%} | {r['mean_top1']:.2%} | {human(r['flops'])} | "
            f"{r['top1_on_other']:.2%} |"
        )
    caption = (
        "Sampler (pareto run) per epoch at the three budgets: fraction of draws within budget / entropy "
        "(nats); uniform draws for comparison in the last row."
    )
    lines += [
        "",
        caption,
        "",
        "| epoch | phase | largest top-1 | " + " | ".join(human(b) for b in result["budgets"]) + " |",
        "|---|---|---|" + "---|" * len(result["budgets"]),
    ]
    hist = result["history"]
    step = max(1, len(hist) // 12)
    for h in hist[::step] + ([hist[-1]] if (len(hist) - 1) % step else []):
        cells = " | ".join(f"{b['feasible']:.2f} / {b['entropy']:.1f}" for b in h["bins"])
        lines.append(f"| {h['epoch']} | {h['phase']} | {h['val_acc_largest']:.2%} | {cells} |")
    u = result["uniform_history"][-1]
    lines.append(
        f"| uniform draws | - | {u['val_acc_largest']:.2%} (uniform run) | "
        + " | ".join(f"{b['feasible']:.2f} / {b['entropy']:.1f}" for b in u["bins"])
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dasvit.focus.claim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="focus-digits")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/focus-claim", help="folder for the two runs and the results")
    p.add_argument("--samples", type=int, default=100, help="evaluations per method and budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the specialization draws")
    args = p.parse_args(argv)

    def body() -> int:
        from ..config import load_config

        load_config(args.preset, args.overrides)  # a bad config: exit 2 before any work
        out = Path(args.out)

        def say(s: str) -> None:
            print(s, flush=True)

        t0 = time.time()
        runs = train_both(args.preset, args.overrides, out, say)
        result = measure(runs, args.samples, args.seed, say)
        result.update(
            preset=args.preset,
            overrides=args.overrides,
            samples=args.samples,
            seconds=time.time() - t0,
            command="python -m dasvit.focus.claim " + " ".join(argv if argv is not None else sys.argv[1:]),
        )
        rd.atomic_write_text(out / "claim.json", json.dumps(result, indent=2) + "\n")
        md = markdown(result)
        rd.atomic_write_text(out / "claim.md", md)
        print(md)
        print(f"wrote {out / 'claim.json'} and {out / 'claim.md'} ({time.time() - t0:.0f} s)")
        return 0

    return run_engine(body)


if __name__ == "__main__":
    sys.exit(main())

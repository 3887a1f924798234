"""FocusFormer's claim, measured in one command: Pareto-aware sampling against AutoFormer's uniform training.

    python experiments/focus_claim.py --preset focus-fashion --seeds 0,1 --out runs/focus-claim [--samples 100]

For each seed it trains two supernets that differ only in `focus.sampler` (pareto: FocusFormer; uniform:
AutoFormer), same data, epochs and seed (side by side through dasvit's launcher, --jobs / --executor;
a finished run in OUT is reused, a stopped one resumed). Then for three FLOPs budgets (a quarter, half and three quarters of the way
through the space's FLOPs range) it searches each supernet with inherited weights on the validation split
(held out of the training set): the sampler on the pareto run; evolution (AutoFormer's) and random on
both runs; every method with the same number of evaluations. The picks of the sampler (pareto) and of
evolution (uniform) are then retrained from scratch (`retrain` recipe; side by side) and reported on the
test split, which nothing selected on. It writes OUT/claim.json, OUT/claim.md (a summary over the seeds,
mean ± sample std, then each seed's table and the sampler's state over the epochs) and the figure
OUT/claim.png / .svg (the Pareto fronts of everything evaluated on each supernet, and where the sampler's
draws lie against each budget over the epochs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from dasvit.errors import UserError
from dasvit.fmt import count
from dasvit.focus.sampler import bin_for_budget
from dasvit.focus.specialize import FocusRun, specialize, write_genotype
from dasvit.reports.replicates import mean_spread
from dasvit.run import jsonio, jsonl, layout
from dasvit.run.config import LauncherConfig
from dasvit.run.events import EPOCH, RUN_END
from dasvit.run.jobs import Job, summary
from dasvit.run.launcher import launcher_for, settings_with
from dasvit.run.requests import FocusRequest, RetrainRequest
from dasvit.run.runtime import Outcome

FRACTIONS = (0.25, 0.5, 0.75)
ROWS = [
    ("sampler", "pareto"),
    ("evolution", "uniform"),
    ("random", "uniform"),
    ("evolution", "pareto"),
    ("random", "pareto"),
]
RETRAINED = [("sampler", "pareto"), ("evolution", "uniform")]  # the claim's two sides, retrained from scratch
ANYTIME = (10, 25)


def _finished(run_dir: Path) -> bool:
    events, _ = jsonl.read_events(run_dir) if (run_dir / layout.EVENTS).exists() else ([], [])
    return any(e.get("type") == RUN_END and e.get("status") == "finished" for e in events)


def run_parallel(jobs: list[Job], say, launch: LauncherConfig) -> None:
    """The claim's jobs (supernets, retrains) through dasvit's launcher (`--jobs`, `--executor`: the config's
    `launcher:` section with the flags on top); a failure, after the others finished, is one sentence."""
    results = launcher_for(launch, in_process=False).run(jobs, say, what="focus-claim")
    if not all(r.ok for r in results):
        raise UserError(summary(results))


def train_both(preset: str, overrides: list[str], out: Path, say, launch: LauncherConfig) -> dict[str, Path]:
    """The pareto and uniform supernets, trained side by side (reused when finished, resumed when stopped)."""
    runs = {s: out / s for s in ("pareto", "uniform")}
    jobs = []
    for sampler, run_dir in runs.items():
        if _finished(run_dir):
            say(f"{run_dir}: finished already, reused")
            continue
        if (run_dir / layout.CHECKPOINT).is_file():
            request = FocusRequest(resume=run_dir, progress=False)
        else:
            request = FocusRequest(preset, [*overrides, f"focus.sampler={sampler}"], run_dir, progress=False)
        jobs.append(Job(f"the {sampler} supernet", request))
    run_parallel(jobs, say, launch)
    return runs


def sampler_history(run_dir: Path, budgets: list[float], bins: list[float]) -> list[dict]:
    """Per epoch of the pareto run: phase, and per asked budget the sampler's feasible fraction and entropy."""
    events, _ = jsonl.read_events(run_dir)
    out = []
    for e in events:
        if e.get("type") != EPOCH:
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
    picks = {}
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
                "top1_on_other": loaded[other].evaluate(r.best.subnet)[1],
                "anytime": anytime,
                "seconds": time.time() - t0,
                "arch": r.best.subnet.to_json(),
                "evaluated": [[c.flops, c.top1] for c in order],
            }
            table.append(row)
            picks[(budget, method, sampler)] = r
            say(
                f"budget {count(budget)}: {method} on {sampler}: top-1 {r.best.top1:.4f} at evaluation {r.found_at}"
                f"/{len(r.evaluated)}"
            )
    return {
        "budgets": budgets,
        "flops_range": [lo, hi],
        "rows": table,
        "history": sampler_history(runs["pareto"], budgets, loaded["pareto"].budgets),
        "uniform_history": sampler_history(runs["uniform"], budgets, loaded["uniform"].budgets),
        "_picks": picks,
        "_loaded": loaded,
    }


def retrain_picks(result: dict, out: Path, say, launch: LauncherConfig) -> None:
    """Retrain the claim's two sides' picks from scratch (test split), side by side; add `retrain_top1`."""
    loaded, picks = result.pop("_loaded"), result.pop("_picks")
    jobs, where, first = [], {}, {}
    for (budget, method, sampler), r in picks.items():
        if (method, sampler) not in RETRAINED:
            continue
        name = f"{count(budget)}-{method}-{sampler}"
        geno, run_dir = out / "picks" / f"{name}.json", out / "picks" / f"{name}-retrain"
        subnet = json.dumps(r.best.subnet.to_json(), sort_keys=True)
        if subnet in first:  # the same network picked twice (another budget or method): one retrain serves both
            where[(budget, method, sampler)] = first[subnet]
            continue
        first[subnet] = where[(budget, method, sampler)] = run_dir
        if (run_dir / layout.METRICS).is_file():
            say(f"{run_dir}: retrained already, reused")
            continue
        write_genotype(loaded[sampler], r, geno)
        config = str(loaded[sampler].dir / layout.CONFIG)
        if (run_dir / layout.CHECKPOINT).is_file():
            request = RetrainRequest(resume=run_dir, progress=False)
        else:
            if run_dir.exists():  # stopped before its first epoch ended: nothing worth keeping
                import shutil

                shutil.rmtree(run_dir)
            request = RetrainRequest(str(geno), config, run_dir=run_dir, progress=False)
        jobs.append(Job(f"the {method} pick on the {sampler} supernet at {count(budget)}", request))
    run_parallel(jobs, say, launch)
    from dasvit.run.records import read_metrics

    for row in result["rows"]:
        d = where.get((row["budget_flops"], row["method"], row["supernet"]))
        if d is not None:
            m = read_metrics(d)
            row.update(retrain_top1=m["top1"], retrain_dir=str(d), retrain_epoch=m["best_epoch"])


def _pct(x: float | None) -> str:
    return f"{x:.2%}" if x is not None else ""


def summarize(per_seed: dict[int, dict]) -> list[dict]:
    """Per budget fraction and (method, supernet): inherited and retrained top-1 as mean ± std over seeds."""
    out = []
    for k, fraction in enumerate(FRACTIONS):
        for method, sampler in ROWS:
            rows = [
                r
                for res in per_seed.values()
                for r in res["rows"]
                if r["budget_flops"] == res["budgets"][k] and (r["method"], r["supernet"]) == (method, sampler)
            ]
            entry = {
                "fraction": fraction,
                "budgets": [r["budget_flops"] for r in rows],
                "method": method,
                "supernet": sampler,
                "inherited_top1": mean_spread([r["top1"] for r in rows]),
                "flops": mean_spread([r["flops"] for r in rows]),
            }
            if all("retrain_top1" in r for r in rows):
                entry["retrain_top1"] = mean_spread([r["retrain_top1"] for r in rows])
            out.append(entry)
    return out


def _pm(ms: dict | None) -> str:
    return "" if not ms else f"{100 * ms['mean']:.2f} ± {100 * ms['std']:.2f}"


def markdown(result: dict) -> str:
    lines = [
        f"Over {len(result['seeds'])} seed(s) ({', '.join(map(str, result['seeds']))}): mean ± sample std of the "
        "best inherited top-1 on the validation split and, for the picks retrained from scratch, top-1 on the test split.",
        "",
        "| budget | method | supernet | inherited top-1 (validation) | FLOPs of the pick | retrained top-1 (test) |",
        "|---|---|---|---|---|---|",
    ]
    for e in result["summary"]:
        b = statistics.fmean(e["budgets"])
        lines.append(
            f"| {e['fraction']:.2f} of the range ({count(b)}) | {e['method']} | {e['supernet']} | "
            f"{_pm(e['inherited_top1'])} | {count(e['flops']['mean'])} | {_pm(e.get('retrain_top1'))} |"
        )
    for seed, res in result["per_seed"].items():
        lines += ["", f"Seed {seed}:", "", seed_table(res)]
    return "\n".join(lines) + "\n"


def seed_table(result: dict) -> str:
    header = (
        "| budget (FLOPs) | method | supernet | evaluations | best top-1 | found at | top-1 @10 | top-1 @25 "
        "| mean top-1 of those evaluated | FLOPs of best | best arch on the other supernet | retrained (test) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        any_ = r["anytime"]
        retrained = f"{r['retrain_top1']:.2%}" if "retrain_top1" in r else ""
        lines.append(
            f"| {count(r['budget_flops'])} | {r['method']} | {r['supernet']} | {r['evaluations']} | "
            f"{r['top1']:.2%} | {r['found_at']} | {_pct(any_.get('10'))} | "
            f"{_pct(any_.get('25'))} | {r['mean_top1']:.2%} | {count(r['flops'])} | "
            f"{r['top1_on_other']:.2%} | {retrained} |"
        )
    caption = (
        "Sampler (pareto run) per epoch at the three budgets: mean FLOPs of its draws / budget, fraction "
        "within budget, entropy (nats); uniform draws for comparison in the last row."
    )
    lines += [
        "",
        caption,
        "",
        "| epoch | phase | largest top-1 | " + " | ".join(count(b) for b in result["budgets"]) + " |",
        "|---|---|---|" + "---|" * len(result["budgets"]),
    ]
    hist = result["history"]
    step = max(1, len(hist) // 12)
    for h in hist[::step] + ([hist[-1]] if (len(hist) - 1) % step else []):
        cells = " | ".join(
            f"{b['mean_flops'] / b['budget_flops']:.2f} / {b['feasible']:.2f} / {b['entropy']:.1f}" for b in h["bins"]
        )
        lines.append(f"| {h['epoch']} | {h['phase']} | {h['val_acc_largest']:.2%} | {cells} |")
    u = result["uniform_history"][-1]
    lines.append(
        f"| uniform draws | - | {u['val_acc_largest']:.2%} (uniform run) | "
        + " | ".join(
            f"{b['mean_flops'] / b['budget_flops']:.2f} / {b['feasible']:.2f} / {b['entropy']:.1f}" for b in u["bins"]
        )
        + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python experiments/focus_claim.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="focus-fashion", help="a focus preset or YAML file (default: focus-fashion)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key of the runs (both supernets, and so their picks' retrains), VALUE parsed as YAML; repeatable",
    )
    p.add_argument(
        "--out", default="runs/focus-claim", help="folder for the runs and the results (default: runs/focus-claim)"
    )
    p.add_argument("--samples", type=int, default=100, help="evaluations per method and budget (default: 100)")
    p.add_argument(
        "--seeds", default="0", help="comma-separated focus.seed values, one pair of supernets each (default: 0)"
    )
    p.add_argument("--no-retrain", action="store_true", help="skip retraining the picks from scratch")
    p.add_argument(
        "--jobs", type=int, default=None, help="jobs at once (default: the config's launcher.jobs: one a core)"
    )
    p.add_argument(
        "--executor", default=None, help="local (default) or slurm: the supernets and retrains as SLURM jobs"
    )
    args = p.parse_args(argv)

    def body() -> int:
        from dasvit.run.presets import load_config

        cfg = load_config(args.preset, args.overrides)  # a bad config: exit 2 before any work
        launch = settings_with(cfg.launcher, jobs=args.jobs, executor=args.executor)
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--seeds takes comma-separated whole numbers, got {args.seeds!r}.") from None
        if not seeds:
            raise UserError("--seeds must name at least one seed.")
        out = Path(args.out)

        def say(s: str) -> None:
            print(s, flush=True)

        t0 = time.time()
        per_seed = {}
        for seed in seeds:
            folder = out / f"seed{seed}"
            runs = train_both(args.preset, [*args.overrides, f"focus.seed={seed}"], folder, say, launch)
            res = measure(runs, args.samples, seed, say)
            if args.no_retrain:
                res.pop("_picks"), res.pop("_loaded")
            else:
                retrain_picks(res, folder, say, launch)
            per_seed[seed] = res
        result = {
            "preset": args.preset,
            "overrides": args.overrides,
            "samples": args.samples,
            "seeds": seeds,
            "summary": summarize(per_seed),
            "per_seed": per_seed,
            "seconds": time.time() - t0,
            "command": "python experiments/focus_claim.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        jsonio.atomic_write_text(out / "claim.json", json.dumps(result, indent=2) + "\n")
        md = markdown(result)
        jsonio.atomic_write_text(out / "claim.md", md)
        from dasvit.reports.plot_focus import plot_claim

        figures = plot_claim(result, out)
        print(md)
        print(
            f"wrote {out / 'claim.json'}, {out / 'claim.md'} and {', '.join(map(str, figures))} ({time.time() - t0:.0f} s)"
        )
        return 0

    with Outcome() as outcome:
        return body()
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())

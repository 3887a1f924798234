"""`dasvit search` (headless or with the monitor) and `dasvit approve`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from dasvit.errors import RunDirError, UserError
from dasvit.model.opspec import keep_problem, merge_keep, op_type
from dasvit.run import controls, jsonio, jsonl, layout, runlock, runstatus
from dasvit.run.events import ERROR, PRUNE, RUN_END
from dasvit.run.jobs import Job
from dasvit.run.requests import SearchRequest, check_preset_engine, presets_for
from dasvit_tui.commands.launching import Nodes, Seeds, parse_seeds, run_jobs, run_on_slurm, settings
from dasvit_tui.commands.options import (
    Executor,
    GpusPerJob,
    Jobs,
    JobTime,
    NewRunDir,
    NoProgress,
    Nproc,
    Partition,
    Resume,
    launch_flags,
    set_option,
)

VERDICT_SECONDS = 10.0


def search(
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        "-p",
        help=f"Preset name ({', '.join(presets_for('search'))}) or a YAML file. Default: demo. "
        "(focus-* presets train a FocusFormer: dasvit focus.)",
    ),
    overrides: set_option("search.pts.ratio=0.25") = None,
    run_dir: NewRunDir = None,
    headless: bool = typer.Option(
        False,
        "--headless",
        help="Run in the foreground with progress on stdout (for scripts and clusters) instead of opening the monitor.",
    ),
    approve: Optional[str] = typer.Option(
        None,
        "--approve",
        help="Stage pruning: auto (default when headless) or manual (wait for `dasvit approve` or the monitor).",
    ),
    resume: Resume = None,
    nproc: Nproc = 1,
    no_progress: NoProgress = False,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Start nothing: print every stage's memory at its batch (weights, gradients, optimizer state, "
        "saved activations; fp32 and bf16, with and without PTS, edges stored or checkpointed) and the largest "
        "batch that fits --gpu-mem.",
    ),
    gpu_mem: str = typer.Option(
        "24G", "--gpu-mem", help="With --dry-run: the card's memory (24G = 24 GiB).", metavar="SIZE"
    ),
    json_path: Optional[Path] = typer.Option(
        None, "--json", help="With --dry-run: also write the estimate as JSON here (dasvit plot --memory draws it)."
    ),
    measure_batches: str = typer.Option(
        "1,2",
        "--measure-batches",
        help="With --dry-run: the batches measured; the line goes through the first two, the others check it.",
        metavar="B1,B2[,...]",
    ),
    seeds: Optional[str] = Seeds,
    jobs: Jobs = None,
    executor: Executor = None,
    partition: Partition = None,
    time_limit: JobTime = None,
    gpus_per_job: GpusPerJob = None,
    nodes: Optional[int] = Nodes,
) -> None:
    """Search a ViT encoder cell with DASViT; opens the monitor unless --headless.

    Progressive three-stage bi-level search with partial token selection and operation fairness.

    torch.compile: --set search.compile=auto|true|false; auto (default) compiles CUDA stages of 2000+ steps.
    Compiling costs ~200 s per stage on a 2-core CPU (demo: 871 s compiled, 83 s not); see dasvit bench --compile.

    Exit codes: 0 finished, 1 failed, 2 bad input, 130 stopped (Ctrl-C, SIGTERM or a stop request).
    A stopped or killed run continues with --resume RUN_DIR from its last completed epoch.

    Memory: --dry-run prints each stage's estimate before any training (the monitor and the headless run
    print the started stage's, and on CUDA the measured peak beside it); --set search.checkpoint_edges=true
    recomputes the mixed edges in backward instead of storing their activations.

    Several seeds: --seeds 0,1,2 --headless runs one search a seed as independent jobs (--jobs at once;
    --executor slurm: a SLURM job array), each into its own run directory; with --run-dir, a rerun reuses finished
    seeds and resumes stopped ones. --executor slurm alone submits this search (with --nodes N: torchrun on N nodes).

    Example: dasvit search --headless --preset demo --set search.pts.ratio=0.25
    Example: dasvit search --dry-run --preset imagenet100 --gpu-mem 24G
    Example: dasvit search --headless --preset fashion --seeds 0,1,2 --jobs 3
    Example: dasvit search --headless --preset imagenet100 --executor slurm --nodes 2 --nproc 8 --gpus-per-job 8
    """
    if approve not in (None, "auto", "manual"):
        raise UserError(f"--approve must be auto or manual, got {approve!r}.")
    if resume is None:
        check_preset_engine(preset, "search")
    if dry_run:
        raise typer.Exit(dry_run_memory(preset, list(overrides or []), resume, gpu_mem, json_path, measure_batches))
    flags = launch_flags(jobs, executor, partition, time_limit, gpus_per_job) | {"nodes": nodes}
    if seeds is not None:
        if not headless or resume is not None:
            raise UserError("--seeds starts new searches as jobs in the foreground: add --headless (and no --resume).")
        raise typer.Exit(search_seeds(preset, list(overrides or []), run_dir, approve, parse_seeds(seeds), flags))
    request = SearchRequest(preset, list(overrides or []), run_dir, approve, resume, progress=not no_progress)
    if (executor or "") == "slurm":
        request = request.resolved()
        rc = run_on_slurm(request, settings(request, flags), nproc, typer.echo)
        if rc == 0 and (Path(request.run_dir) / layout.GENOTYPE).is_file():
            print_found(Path(request.run_dir))
        raise typer.Exit(rc)
    if not headless:
        if nproc > 1:
            raise UserError(
                "--nproc runs the ranks in the foreground; add --headless (and watch with: dasvit tui RUN_DIR)."
            )
        from dasvit_tui.commands.tui import start_and_monitor

        raise typer.Exit(start_and_monitor(request))
    request = request.resolved()  # every rank writes the same run directory; a bad config stops here
    if nproc > 1:
        from dasvit_tui.launch import run_distributed

        rc = run_distributed(request, nproc)
    else:
        from dasvit.search.searcher import run

        rc = run(request)
    if rc == 0 and (Path(request.run_dir) / layout.GENOTYPE).is_file():
        print_found(Path(request.run_dir))
    raise typer.Exit(rc)


def search_seeds(
    preset: str | None, overrides: list[str], run_dir: Path | None, approve: str | None, seeds: list[int], flags
) -> int:
    """One search a seed as independent jobs: RUN_DIR-s<seed> (default runs/<preset>-s<seed>-<time>); a seed
    whose run finished is reused, one with a checkpoint resumed."""
    requests: dict[int, SearchRequest] = {}
    for k in seeds:
        d = Path(f"{run_dir}-s{k}") if run_dir is not None else layout.default_run_dir(f"{preset or 'demo'}-s{k}")
        if layout.is_run_dir(d) and runstatus.summarize(d).status == "finished":
            typer.echo(f"seed {k}: {d} has finished; reused")
            continue
        if (d / layout.CHECKPOINT).is_file():
            requests[k] = SearchRequest(resume=d, progress=False).resolved()
        else:
            requests[k] = SearchRequest(preset, [*overrides, f"search.seed={k}"], d, approve or "auto", progress=False)
            requests[k] = requests[k].resolved()
    rc = 0
    if requests:
        first = next(iter(requests.values()))
        jobs = [Job(f"seed {k}", r) for k, r in requests.items()]
        rc = run_jobs(jobs, settings(first, flags), typer.echo, "search")
    for k in seeds:
        d = Path(f"{run_dir}-s{k}") if run_dir is not None else (requests[k].run_dir if k in requests else None)
        if d is not None and (Path(d) / layout.GENOTYPE).is_file():
            typer.echo(f"seed {k}: {d}")
    return rc


def approve(
    run_dir: Path = typer.Argument(..., help="The run directory of a search waiting for approval."),
    keep: Optional[str] = typer.Option(
        None,
        "--keep",
        help="JSON (or a JSON file) mapping edges 'i->j' to the ops to keep; edges it does not name keep the "
        "proposal. Default: the proposal as is.",
    ),
    stop: bool = typer.Option(False, "--stop", help="Stop the run instead of approving."),
    wait: float = typer.Option(
        VERDICT_SECONDS, "--wait", min=0, help="Seconds to wait for the engine's verdict (prune or refusal)."
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help="Write the answer and return without a verdict."),
) -> None:
    """Answer a pending stage-pruning proposal from a script.

    --keep is checked against the proposal before anything is written (exit 2 naming the edge and the op);
    then the command waits up to --wait seconds for the engine to prune (exit 0) or refuse (exit 2).

    Example: dasvit approve runs/demo-20260101-120000 --keep '{"0->2": ["msa_4", "mlp_4"]}'
    """
    layout.require_run_dir(run_dir)  # none of its files a link
    shown = jsonio.printable(run_dir, newlines=False)
    parsed = read_keep(keep) if keep is not None and not stop else None  # a malformed answer: said first
    pending = runstatus.pending_proposal(run_dir)
    if stop:
        controls.write_control(run_dir, {"type": "stop"})
        typer.echo(f"stop requested for {shown}")
        return
    if pending is None:
        raise RunDirError(f"{run_dir} has no pruning proposal waiting for approval.")
    stage = pending["stage"]
    cmd: dict = {"type": "approve", "stage": stage}
    if keep is not None:
        cmd["keep"] = checked_keep(parsed, pending)
    live = runlock.is_live(run_dir)
    if not live:
        typer.echo(f"note: no engine is running on {shown}; the approval applies when it is resumed.", err=True)
    tail = jsonl.JsonlTail(run_dir / layout.EVENTS)
    tail.read_new()  # the verdict is an event written after this answer
    controls.write_control(run_dir, cmd)
    if no_wait or not live or wait <= 0:
        typer.echo(f"approval of stage {stage} pruning sent to {shown}")
        return
    verdict = await_verdict(tail, stage, wait)
    if verdict is None:
        typer.echo(
            f"approval of stage {stage} pruning sent to {shown}; the engine has not answered within "
            f"{wait:g} s (dasvit tui {run_dir} shows what it does)."
        )
    elif verdict["type"] == PRUNE:
        asked = cmd.get("keep", pending.get("keep"))
        how = "as approved" if verdict.get("keep") == asked else "by an answer that came before this one"
        typer.echo(f"stage {stage} pruned {how} for {shown}: {keep_summary(verdict.get('keep'))}")
    elif verdict["type"] == ERROR:
        why = str(verdict.get("message", "")).removeprefix(f"approve for stage {stage} ignored: ").rstrip(".")
        raise UserError(f"the engine refused the approval of stage {stage}: {why}.")
    else:
        raise RunDirError(f"the run ended ({verdict.get('status', '?')}) before it pruned stage {stage}.")


def found_cost(run_dir: Path) -> str:
    """What the searched cell costs, in the counts people read (3.1M): one cell, from the genotype's own
    `meta.cost` (the search's cost model at its width and tokens), and the network `dasvit retrain` builds
    at the run's retrain.depth (the same count as `dasvit show`)."""
    from dasvit.fmt import count
    from dasvit.model.cost import network_cost
    from dasvit.model.genotype import load_genotype
    from dasvit.reports.cell import resolve_sizes

    genotype = load_genotype(run_dir)
    sizes, _ = resolve_sizes(str(run_dir), {})
    net = network_cost(genotype, sizes)
    cell = genotype.meta.get("cost") if isinstance(genotype.meta.get("cost"), dict) else None
    parts = []
    if cell and all(isinstance(cell.get(k), int) for k in ("params", "flops")):
        parts.append(f"one cell {count(cell['params'])} params, {count(cell['flops'])} FLOPs")
    parts.append(
        f"the network at depth {sizes.depth} (width {sizes.embed_dim}, {sizes.image_size} px): "
        f"{count(net.params)} params, {count(net.flops)} FLOPs"
    )
    return "; ".join(parts)


def print_found(run_dir: Path) -> None:
    """The end of a headless search: the cell it found, what it costs, and what to do with it."""
    from rich.console import Console

    from dasvit.model.genotype import load_genotype
    from dasvit_tui.commands.show import budget_line
    from dasvit_tui.render import cell_diagram

    genotype = load_genotype(run_dir)
    typer.echo(f"found cell ({run_dir / layout.GENOTYPE}):")
    Console(highlight=False, soft_wrap=True).print(cell_diagram(genotype))
    typer.echo(f"cost: {found_cost(run_dir)}")
    budget = budget_line(genotype.meta)
    if budget:
        typer.echo(budget)
    typer.echo(f"next: dasvit show {run_dir} · dasvit retrain {run_dir} --headless")


def read_keep(keep: str) -> object:
    """--keep: JSON, or a JSON file; read as untrusted input (bounded size and depth)."""
    try:
        if keep.lstrip().startswith(("{", "[", '"')) or keep.strip() in ("null", "true", "false"):
            parsed = jsonio.parse_json(keep.encode())
            if not isinstance(parsed, dict):
                raise UserError(
                    f"--keep {keep[:60]!r} is JSON, but not an object: give edges and the ops each keeps, like "
                    '{"0->2": ["skip", "msa_4"]}.'
                )
            return parsed
        if not Path(keep).is_file():
            raise UserError(f"--keep {keep[:60]!r} is neither JSON nor a JSON file.")
        return jsonio.read_json_file(Path(keep), follow=True, max_bytes=1 << 20)
    except json.JSONDecodeError as e:
        raise UserError(f"--keep is not valid JSON ({e.msg}).") from None
    except ValueError as e:
        raise UserError(f"--keep is not valid JSON ({e}).") from None
    except OSError as e:
        raise UserError(f"--keep {keep[:60]!r} cannot be read ({e.strerror or e}).") from None


def checked_keep(parsed: object, pending: dict) -> dict:
    """--keep completed by the proposal (the edges it does not name keep the proposed ops) and checked
    against the ops each edge still offers (the proposal's `weights`); else one sentence, exit 2."""
    proposal = pending.get("keep") or {}
    weights = pending.get("weights") if isinstance(pending.get("weights"), dict) else {}
    active = {name: list(ops) if isinstance(ops, dict) else None for name, ops in weights.items()}
    merged = merge_keep(parsed, proposal)
    why = keep_problem(merged, active)
    if why:
        raise UserError(f"--keep cannot be used: {why}; nothing was sent.")
    offered = any(op_type(o) == "msa" for ops in active.values() for o in ops or ())
    if offered and not any(op_type(o) == "msa" for ops in merged.values() for o in ops):
        typer.echo(
            "warning: this answer keeps no attention (msa) op on any edge: without one the class token never "
            "sees the image and the next stage stays at chance (the engine's own proposals keep one).",
            err=True,
        )
    return merged


def await_verdict(tail: jsonl.JsonlTail, stage: int, seconds: float) -> dict | None:
    """The engine's answer to an approval of `stage`, read from the events after it was sent: its `prune`,
    the `error` refusing it, or a `run_end`; None after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        for kind, ev in tail.read_new():
            if kind != "ok":
                continue
            if (ev.get("type") in (PRUNE, ERROR) and ev.get("stage") == stage) or ev.get("type") == RUN_END:
                return ev
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def keep_summary(keep: object) -> str:
    """`0->2 msa_4 mlp_4 · 1->2 skip ...`: what each edge keeps, on one line."""
    if not isinstance(keep, dict):
        return "?"
    return " · ".join(f"{name} {' '.join(map(str, ops))}" for name, ops in keep.items())


def dry_run_memory(
    preset: str | None, overrides: list[str], resume: Path | None, gpu_mem: str, json_path: Path | None, batches: str
) -> int:
    """`dasvit search --dry-run`: every stage's memory estimate (dasvit.reports.memory), nothing started."""
    from dasvit.limits import MAX_BATCH
    from dasvit.reports.memory import parse_bytes

    gpu_bytes = parse_bytes(gpu_mem)  # a bad size is one sentence before anything loads
    try:
        measured = tuple(int(b) for b in batches.split(",")) if len(batches) < 200 else ()
    except ValueError:
        measured = ()
    if len(measured) < 2 or len(set(measured)) != len(measured) or min(measured) < 1:
        raise UserError(
            f"--measure-batches {batches[:80]!r} must list at least two different batches, like 1,2 or 1,2,4."
        )
    if max(measured) > MAX_BATCH or len(measured) > 16:
        raise UserError(
            f"--measure-batches lists at most 16 batches of at most {MAX_BATCH:,} images, got {batches[:80]!r}."
        )
    if json_path is not None:
        layout.ensure_writable_file(json_path, "--json")  # before the estimate runs, not after
    cfg = SearchRequest(preset, overrides, resume=resume).load_config()  # a resume's checks: its kind, no --set
    import torch

    from dasvit.reports.memory import report
    from dasvit.reports.memory_measure import estimate_config
    from dasvit.threads import apply_threads

    typer.echo(apply_threads().describe(), err=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    stages = estimate_config(cfg, device, measured, say=lambda s: typer.echo(s, err=True))
    typer.echo(
        f"{cfg.preset}: {len(stages)} stage(s), {cfg.data.image_size} px, patch {cfg.space.patch_size}, width "
        f"{cfg.space.embed_dim}, batch {cfg.data.batch_size} per rank"
    )
    typer.echo(report(stages, gpu_bytes))
    if json_path is not None:
        from dasvit.reports.bench import machine

        out = {
            "preset": cfg.preset,
            "gpu_mem_bytes": gpu_bytes,
            "machine": machine(torch.device(device)),
            "config": {
                "image_size": cfg.data.image_size,
                "patch_size": cfg.space.patch_size,
                "embed_dim": cfg.space.embed_dim,
                "batch_size": cfg.data.batch_size,
                "pts_ratio": cfg.search.pts.ratio,
            },
            "stages": [m.to_json() for m in stages],
        }
        jsonio.atomic_write_text(json_path, json.dumps(out, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")
    return 0

"""`dasvit bench`: search and retrain variants side by side, a table on stdout and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from dasvit.errors import UserError
from dasvit.fmt import count, human_bytes


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, target) rows of a bench result, in reading order."""
    s, r = result["search"], result["retrain"]
    out = [
        ("search: bi-level step images/s", f"{s['images_per_s']:,.1f}", ""),
    ]
    if "checkpoint_slowdown" in s:
        out.append(("search: checkpointed edges, time per step / stored", f"{s['checkpoint_slowdown']:.2f}x", ""))
    if "compiled_speedup" in s:
        out += [
            ("search: compiled images/s (torch.compile)", f"{s['compiled_images_per_s']:,.1f}", ""),
            ("search: compiled speedup over eager", f"{s['compiled_speedup']:.2f}x", ""),
            ("search: compile seconds (first step)", f"{s['compile_seconds']:.1f} s", ""),
        ]
    for k, v in s["saved_bytes"].items():
        out.append((f"search: saved for backward, PTS {k}", human_bytes(v), ""))
    out.append(("search: PTS memory ratio (0.5 / off)", f"{s['pts_memory_ratio']:.3f}", "≤ 0.6"))
    for k, v in s.get("peak_bytes", {}).items():
        out.append((f"search: CUDA peak, PTS {k}", human_bytes(v), ""))
    if "paper_step_peak_bytes" in s:
        out.append(("search: paper-scale step CUDA peak", human_bytes(s["paper_step_peak_bytes"]), "≤ 12 GB"))
    out += [
        ("retrain: ours images/s (vit_b16 genotype)", f"{r['images_per_s']['ours']:,.1f}", ""),
        (f"retrain: peer images/s ({r['peer']})", f"{r['images_per_s']['peer']:,.1f}", ""),
        (
            "retrain: FLOPs/image ours / peer (fvcore)",
            f"{count(r['flops_per_image']['ours'])} / {count(r['flops_per_image']['peer'])}",
            "",
        ),
        ("retrain: per-FLOP speed, ours / peer", f"{r['per_flop_vs_peer']:.3f}", "≥ 0.95"),
    ]
    if "mfu" in r:
        out.append(("retrain: MFU (bf16, measured matmul peak)", f"{100 * r['mfu']:.1f} %", "≥ 40 % H200"))
    return out


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['threads']} threads"
    table = Table(title=f"dasvit bench{' --quick' if result['quick'] else ''} on {m['device']} ({where})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target")
    for name, value, target in rows(result):
        table.add_row(name, value, target)
    console = Console()
    console.print(table)
    console.print(f"medians over interleaved repeats; {result['seconds']:.0f} s in all")


def bench(
    quick: bool = typer.Option(False, "--quick", help="Reduced sizes: about a minute on a 2-core CPU."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here."),
    threads: Optional[str] = typer.Option(
        None,
        "--threads",
        help="CPU threads for torch: auto (one), all (this process's cores) or a number; default: as every engine "
        "(dasvit --threads).",
        metavar="auto|all|N",
    ),
    profile: bool = typer.Option(False, "--profile", help="Also print torch.profiler's op table of a search step."),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="Also time the torch.compile'd search step (search.compiled_speedup, search.compile_seconds). Compiling costs about 200 s on a 2-core CPU.",
    ),
) -> None:
    """Measure the search step (its edges stored and checkpointed, and compiled with --compile), partial-token
    memory, and the retrained ViT-B/16 cell against timm's (or torchvision's) ViT-B/16, side by side in
    one process. The search step timed is the one a search runs (dasvit.search.bilevel.BilevelStep).

    Example: dasvit bench --quick --json bench.json
    """
    import torch

    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu.")
    import os

    from dasvit.threads import ENV, apply_threads, parse_threads

    if threads is not None:
        parse_threads(threads)  # a bad value is one sentence
        os.environ[ENV] = threads.strip()
    typer.echo(apply_threads().describe(), err=True)
    from dasvit.reports.bench import FULL, QUICK, profile_search_step, run_bench
    from dasvit.run import jsonio, layout

    if json_path is not None:
        layout.ensure_writable_file(json_path, "--json")  # before the benchmark runs, not after
    result = run_bench(quick, device, say=lambda s: typer.echo(s, err=True), compile=compile)
    print_table(result)
    if profile:
        typer.echo(profile_search_step(QUICK if quick else FULL, torch.device(device)))
    if json_path is not None:
        jsonio.atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")

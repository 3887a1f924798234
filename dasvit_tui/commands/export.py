"""`dasvit export`: a found network as a folder any PyTorch program loads without dasvit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dasvit_tui.commands.options import set_option


def export(
    source: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help="A retrain run directory (its weights), a search run directory (the cell, no weights), a genotype "
        "file or vit_b16 (with --preset), a FOCUS_RUN/specialized/<budget>.json (its inherited weights), or a "
        "folder dasvit export wrote.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", metavar="DIR", help="The folder to write (new, empty, or an earlier export)."
    ),
    last: bool = typer.Option(
        False, "--last", help="A retrain's last epoch's weights instead of its best (selected) epoch's."
    ),
    no_weights: bool = typer.Option(False, "--no-weights", help="The architecture only: model.py and config.json."),
    onnx: bool = typer.Option(
        False, "--onnx", help="Also model.onnx (dynamic batch), checked with onnxruntime where installed."
    ),
    torch_export: bool = typer.Option(False, "--torch-export", help="Also model.pt2 (torch.export, dynamic batch)."),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        "-p",
        help="Sizes and data for a genotype file or vit_b16. Default: the source's run's config.yaml.",
    ),
    overrides: set_option("retrain.depth=8") = None,
    name: Optional[str] = typer.Option(
        None, "--name", help="The model's name (a Python identifier; timm registers it). Default: from the source."
    ),
) -> None:
    """Export a network with its weights: plain PyTorch, no dasvit needed to load it.

    DIR gets model.py (dasvit's own network code, one file of plain PyTorch,
    with load(folder) and, where timm is installed, timm.create_model(NAME)),
    config.json (genotype, sizes, input normalisation, class names, where it
    came from: run, epoch, split, top-1, params, FLOPs), model.safetensors and
    README.md (a model card). Each file is checked: model.py is loaded back
    and must give dasvit's logits.

    Load it anywhere:

      import sys; sys.path.insert(0, "DIR"); import model
      net = model.load("DIR")

    Examples:
      dasvit export runs/fashion-s0/retrain --out exported/fashion-s0 --onnx
      dasvit export runs/focus-fashion/specialized/2.23M.json --out exported/focus-2.2M
      dasvit export vit_b16 --preset fashion --out exported/vit-arch
    """
    from dasvit.reports.export import export as run_export
    from dasvit.run.runtime import Outcome

    with Outcome() as outcome:
        run_export(
            source,
            out,
            preset,
            list(overrides or []),
            which="last" if last else "best",
            weights=not no_weights,
            onnx=onnx,
            torch_export=torch_export,
            name=name,
            say=typer.echo,
        )
    if outcome.code:
        raise typer.Exit(outcome.code)
    typer.echo(f"load it: import sys; sys.path.insert(0, {str(out)!r}); import model; net = model.load({str(out)!r})")

"""`dasvit`: the command line. The commands are module-level functions in `dasvit_tui.commands` (one module
per command group); this module registers them on the Typer app and runs it.

User mistakes (`dasvit.errors.UserError`) become one sentence on stderr and exit code 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from dasvit.errors import UserError
from dasvit.run.jsonio import printable
from dasvit_tui.commands import (
    bench,
    compare,
    derive,
    export,
    focus,
    plot,
    retrain,
    search,
    show,
    specialize,
    tensorboard,
    tui,
)

app = typer.Typer(
    name="dasvit",
    help=(
        "Differentiable architecture search for Vision Transformers (DASViT).\n\n"
        "Search a ViT encoder cell, watch and steer the search in a terminal UI, then retrain the cell "
        "from scratch and compare it with ViT-B/16. Try: dasvit search --headless --preset demo"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    threads: str = typer.Option(
        None,
        "--threads",
        help="CPU threads of every engine this command runs: auto (one a process: measured the fastest, or within "
        "1.2x of it, on small ops, idle or beside other jobs), all (this process's cores, shared by the ranks of "
        "--nproc) or a number. Default: $DASVIT_THREADS, else $OMP_NUM_THREADS, else auto. With more than one, "
        "idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the environment says otherwise.",
        metavar="auto|all|N",
    ),
) -> None:
    """Differentiable architecture search for Vision Transformers (DASViT)."""
    import os

    from dasvit.threads import ENV, parse_threads

    if threads is not None:
        parse_threads(threads)  # a bad value is one sentence, before any work
        os.environ[ENV] = threads  # engines in this process and every child (detached runs, torchrun) read it


COMMANDS = (
    search.search,
    search.approve,
    retrain.retrain,
    show.show,
    tui.tui,
    bench.bench,
    plot.plot,
    compare.compare,
    derive.derive,
    focus.focus,
    specialize.specialize,
    export.export,
    tensorboard.tensorboard,
)
"""Every command, in the order `dasvit --help` lists them; each takes its name from its function."""

for _command in COMMANDS:
    app.command()(_command)


def _click_exceptions() -> tuple[type, ...]:
    """Typer ≥ 0.24 bundles its own click (typer._click); older ones use the click package."""
    found: list[type] = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except ImportError:
            pass
    return tuple(found)


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # click returns (not raises) a command's typer.Exit code here
    except UserError as e:
        print(f"dasvit: {printable(e)}", file=sys.stderr)  # it may quote a path or a file: no escapes
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # usage errors (unknown option, bad value) are user mistakes too
        if isinstance(e, _click_exceptions()):
            e.show()
            sys.exit(2)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()

"""A run's checkpoint files: written atomically with the previous epoch's kept beside them, read back with
weights only (a file that names code to run is refused), and the sentences for a damaged checkpoint or one
that no longer fits its run's config."""

from __future__ import annotations

import io
import pickle
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..errors import CheckpointError, DiskFullError, UserError
from . import jsonio, layout


def save_checkpoint(path: Path, state: dict[str, Any], keep_previous: bool = False) -> None:
    """torch.save to a temp file, then rename: a crash leaves the previous checkpoint intact.

    `keep_previous` (the resume checkpoint) also keeps the file it replaces as `<stem>.prev.pt`, which
    `load_checkpoint` falls back on when the last one is damaged. A full disk is one sentence
    (`DiskFullError`) that says which file, how much space it needed, and that --resume goes on."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        jsonio.atomic_write_bytes(path, buf.getvalue(), previous=previous_checkpoint(path) if keep_previous else None)
    except DiskFullError:
        raise DiskFullError(
            f"no space left on the device for {path} ({buf.tell() / 2**20:.1f} MiB needed); the checkpoint of the "
            f"last good epoch is intact: free some space and --resume {path.parent} continues from it."
        ) from None


def previous_checkpoint(path: Path) -> Path:
    """A run's checkpoint.pt -> checkpoint.prev.pt beside it (`layout.CHECKPOINT_PREV`): the epoch before,
    kept by `save_checkpoint(keep_previous=True)`."""
    return Path(path).with_name(layout.CHECKPOINT_PREV)


class _Damaged(Exception):
    """A checkpoint file that does not load (truncated, corrupt): the reason, for one sentence."""


def _read_checkpoint(path: Path, map_location: Any) -> dict[str, Any]:
    """The checkpoint at `path`; CheckpointError if it names code to run (a pickled global: hostile), _Damaged
    if it does not load for any other reason (truncated, random bytes, bit flips: unreadable)."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a damaged file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # weights_only refused a global: the file holds pickled code
            raise CheckpointError(
                f"{path} holds pickled code, which dasvit refuses to load (its own checkpoints hold only tensors "
                f"and numbers); resume from a checkpoint this run wrote."
            ) from None
        raise _Damaged("it is not a checkpoint torch can read") from None
    except Exception as e:  # whatever else a damaged file makes torch raise
        raise _Damaged(jsonio.printable(str(e).splitlines()[0][:120], False) if str(e) else type(e).__name__) from None
    if not isinstance(state, dict):
        raise _Damaged(f"it holds a {type(state).__name__}, not a checkpoint")
    return state


def load_checkpoint(path: Path, map_location: Any = "cpu", warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The checkpoint at `path`; if it is damaged (a truncated write, a bad disk), the previous epoch's
    (`checkpoint.prev.pt`) with a warning; otherwise one sentence saying the checkpoint is damaged."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; the run has no completed epoch to resume from.")
    try:
        return _read_checkpoint(path, map_location)
    except _Damaged as e:
        why = e
    prev = previous_checkpoint(path)
    try:
        state = _read_checkpoint(prev, map_location) if prev.is_file() else None
    except _Damaged:
        state = None
    if state is None:
        raise CheckpointError(
            f"{path} is damaged ({why}) and no earlier checkpoint is left to fall back on; start the run again."
        )
    (warn or (lambda text: print(f"warning: {text}", file=sys.stderr)))(
        f"{path} is damaged ({why}); resuming from {prev.name}, one epoch earlier."
    )
    return state


def checkpoint_mismatch(run_dir: Path, why: str) -> CheckpointError:
    """The sentence for a checkpoint its run's config.yaml no longer fits (edited between two runs)."""
    return CheckpointError(
        f"{Path(run_dir) / layout.CHECKPOINT} does not fit {Path(run_dir) / layout.CONFIG} ({why}); the config was changed "
        "since the run started: put it back (the run_start event in events.jsonl holds it) or start a new run."
    )


@contextmanager
def fitting_checkpoint(run_dir: Path) -> Iterator[None]:
    """Around restoring a checkpoint (load_state_dict, its fields): what does not fit is `checkpoint_mismatch`."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        why = f"it has no {e}" if isinstance(e, KeyError) else mismatch_reason(e)
        raise checkpoint_mismatch(run_dir, jsonio.printable(why[:200], False)) from None


def mismatch_reason(e: Exception) -> str:
    """The line of a load_state_dict error that says what does not fit (torch's first line is a heading)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
    why = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # torch: "Error(s) in ...:"
    return jsonio.printable(why[:200], False)


def load_fitting(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """`model.load_state_dict(state)` (strict); one sentence (CheckpointError) naming `what` if they do not fit."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{what} do not fit the network they are loaded into ({mismatch_reason(e)}).") from None


# ---------------------------------------------------------------------------------------------
# weights that leave a run: safetensors (no code, no pickle: any program reads them)


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A network's weights as a safetensors file, written atomically (a full disk is one sentence)."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata=metadata)
    jsonio.atomic_write_bytes(Path(path), data)


def load_weights(path: Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; one sentence (CheckpointError) if it is not one: truncated, damaged,
    or holding something other than floating-point tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{jsonio.printable(path, False)} does not exist; the {what} are not there.")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        why = jsonio.printable(str(e).splitlines()[0][:160], False) if str(e) else type(e).__name__
        raise CheckpointError(
            f"{jsonio.printable(path, False)} is not a safetensors file that can be read ({why}); it may be truncated: "
            f"write the {what} again."
        ) from None
    odd = next((k for k, t in state.items() if not t.is_floating_point()), None)
    if odd is not None:
        raise CheckpointError(
            f"{jsonio.printable(path, False)} holds {jsonio.printable(odd, False)[:80]} as {state[odd].dtype}; "
            f"the {what} of a network are floating-point tensors."
        )
    return state


def read_weights_file(path: Path) -> dict[str, Any]:
    """A retrain's best.pt / last.pt (weights only, as `load_checkpoint` reads); one sentence if damaged."""
    try:
        return _read_checkpoint(Path(path), "cpu")
    except _Damaged as e:
        raise CheckpointError(f"{jsonio.printable(path, False)} is damaged ({e}); retrain to write it again.") from None

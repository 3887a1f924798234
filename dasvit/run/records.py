"""The JSON files a run keeps beside its events, as types (dasvit.run.schema), and their one reader.

dasvit writes them; it reads them back as untrusted input all the same (another version, a hand edit, a
neighbour on a shared box, a full disk): `read_record(path, Type)` reads through `jsonio.read_json_file`
(bounded, never through a link, every number finite) and holds the document to its type. A file that does
not hold it is a `DamagedRecord`, one sentence that names the file and what is wrong, which a command
either says (exit 2) or notes while it shows the rest.

- `Metrics`: a retrain's metrics.json (`dasvit.train.retrain.finish`).
- `CompareFile`: compare.json (`dasvit.reports.compare_result`).
- `MemoryFile`: what `dasvit search --dry-run --json` writes (`dasvit plot --memory` draws it).

Fields a later version adds are allowed (`extensible`); a field this version knows must be of its type.
"""

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from ..errors import RunDirError, UserError
from ..limits import MAX_DEPTH, MAX_IMAGE_SIZE
from . import jsonio, layout
from .schema import Count, Finite, Fraction, extensible, problem

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # typing_extensions comes with torch
    from typing_extensions import NotRequired, TypedDict


def _positive(v: Any) -> bool:
    return 1 <= v


Positive = Annotated[int, _positive]
Depth = Annotated[int, lambda v: 1 <= v <= MAX_DEPTH]
Pixels = Annotated[int, lambda v: 1 <= v <= MAX_IMAGE_SIZE]


class DamagedRecord(RunDirError):
    """A run file that does not hold what its type says: one sentence naming it and the first thing wrong."""


@extensible
class GenotypeDoc(TypedDict):
    """A genotype as a run file quotes it (dasvit.model.genotype checks it whole where it builds one)."""

    meta: NotRequired[dict[str, Any]]


@extensible
class Metrics(TypedDict):
    """metrics.json of a finished retrain: the test split's figures of the selected epoch."""

    top1: Fraction
    top5: Fraction
    params: Count
    flops: Count
    best_epoch: NotRequired[int]
    last_top1: NotRequired[Fraction]
    last_top5: NotRequired[Fraction]
    val_top1: NotRequired[Fraction | None]
    selected_on: NotRequired[str]
    splits: NotRequired[dict[str, str]]
    images_per_s: NotRequired[Finite]
    image_size: NotRequired[Pixels]
    patch_size: NotRequired[Pixels]
    embed_dim: NotRequired[Positive]
    depth: NotRequired[Depth]
    num_classes: NotRequired[Positive]
    epochs: NotRequired[Positive]
    dataset: NotRequired[str]
    genotype: NotRequired[GenotypeDoc]


@extensible
class RetrainRun(TypedDict):
    seed: int
    top1: Fraction
    top5: Fraction
    best_epoch: int | None
    dir: str


@extensible
class CompareRow(TypedDict):
    """One network of a comparison: a cell at a depth, the mean of its retrains."""

    cell: str
    depth: Depth
    top1: Fraction
    top5: Fraction
    params: Count
    flops: Count
    dir: str
    images_per_s: NotRequired[Finite | None]
    epochs: NotRequired[int | None]
    best_epoch: NotRequired[int | None]
    trained: NotRequired[bool]
    seed: NotRequired[int]
    top1_std: NotRequired[Finite]
    runs: NotRequired[list[RetrainRun]]


@extensible
class EqualDepth(TypedDict):
    depth: Depth
    searched: CompareRow
    vit: CompareRow


@extensible
class MatchedFlops(EqualDepth):
    rule: str
    budget_flops: Count
    next_depth_flops: Count | None


@extensible
class Baseline(TypedDict):
    """Random cells (within the budget, or of the searched cell's cost) and where the searched cell ranks."""

    rule: str
    cells: list[CompareRow]
    median_top1: Fraction
    best_top1: Fraction
    searched_rank: Positive
    of: Positive
    depth: NotRequired[Depth]
    budget: NotRequired[str]
    tolerance: NotRequired[Fraction]


@extensible
class TrendCell(TypedDict):
    flops: Finite
    top1: Fraction
    trend_top1: Finite
    residual: Finite
    neighbours: Count
    neighbour_median_top1: Fraction | None
    neighbour_rank: Positive | None


@extensible
class CostTrend(TypedDict):
    slope_per_mflop: Finite
    intercept: Finite
    residual_std: Finite | None
    randoms: Count
    tolerance: Fraction
    cells: dict[str, TrendCell]
    fit: NotRequired[str]


@extensible
class Interval(TypedDict):
    low: Finite | None
    high: Finite | None


@extensible
class Correlation(TypedDict):
    n: Count
    kendall: dict[str, Finite | None]  # tau, low, high
    spearman: dict[str, Finite | None]  # rho, low, high


@extensible
class StageRanking(TypedDict):
    depth: Depth
    alpha: Correlation | None
    oneshot: Correlation | None
    alpha_scored: NotRequired[Count]
    oneshot_scored: NotRequired[Count]
    seconds: NotRequired[Finite]


@extensible
class RankedCell(TypedDict):
    top1: Fraction
    alpha: dict[str, Finite | None]  # stage -> Σ log softmax(α) over the cell's edges
    oneshot: dict[str, Fraction | None]  # stage -> the supernet's top-1 with the cell's ops


@extensible
class Ranking(TypedDict):
    stages: dict[str, StageRanking]
    cells: dict[str, RankedCell]
    what: NotRequired[str]


@extensible
class CompareFile(TypedDict):
    """compare.json: the searched cell against the ViT block (equal depth, matched FLOPs) and random cells."""

    format: Literal["dasvit-compare"]
    version: Literal[1]
    run: str
    time: Finite
    dataset: str
    image_size: Pixels
    patch_size: Pixels
    embed_dim: Positive
    num_classes: Positive
    overrides: list[str]
    recipe: dict[str, Any]
    models: dict[str, CompareRow]
    equal_depth: EqualDepth
    matched_flops: MatchedFlops | None
    repeats: NotRequired[Positive]
    note: NotRequired[str]
    random: NotRequired[Baseline]
    matched_cost: NotRequired[Baseline]
    same_cell: NotRequired[dict[str, str]]
    cost_trend: NotRequired[CostTrend]
    ranking: NotRequired[Ranking | None]


@extensible
class ActivationFit(TypedDict):
    intercept: Finite
    per_image: Finite
    points: dict[str, Count]  # batch -> saved bytes, measured


MAX_MEMORY_STAGES = 64  # stages one estimate file may hold (`plot --memory` draws a panel each)


@extensible
class StageEstimate(TypedDict):
    """One stage's memory estimate (dasvit.reports.memory.StageMemory.to_json)."""

    stage: Positive
    depth: Depth
    keep: Positive
    batch: Positive
    params: Count
    selector_params: Count
    alpha: Count
    activations: dict[str, ActivationFit]
    assumed: list[str] | None
    device: str
    path: str
    pts_ratio: Fraction
    image_size: Count
    dim: Count
    recompute_fraction: Fraction


@extensible
class MemoryFile(TypedDict):
    stages: Annotated[list[StageEstimate], lambda v: 1 <= len(v) <= MAX_MEMORY_STAGES]
    preset: NotRequired[str]
    gpu_mem_bytes: NotRequired[Count | None]
    machine: NotRequired[dict[str, Any]]
    config: NotRequired[dict[str, Any]]


def read_record(path: Path, kind: type, what: str, follow: bool = False) -> Any:
    """The document in `path`, held to the type `kind` (a TypedDict above); `what` names it in the sentence
    (e.g. "a retrain's metrics"). FileNotFoundError when there is none; DamagedRecord for anything else."""
    path = Path(path)
    try:
        data = jsonio.read_json_file(path, follow=follow)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, UserError) as e:
        raise DamagedRecord(f"{jsonio.printable(path, False)} is not {what} ({_reason(e)}).") from None
    why = problem(data, kind)
    if why:
        raise DamagedRecord(f"{jsonio.printable(path, False)} is not {what}: {why}.")
    return data


def _reason(e: Exception) -> str:
    text = str(e).rstrip(".")
    return jsonio.printable(text[:200], False) if text else type(e).__name__


def read_metrics(run_dir: Path) -> Metrics:
    """A finished retrain's metrics.json (FileNotFoundError when it has none; DamagedRecord)."""
    return read_record(Path(run_dir) / layout.METRICS, Metrics, "a retrain's metrics (metrics.json)")


def read_compare_file(run_dir: Path) -> CompareFile | None:
    """A search run's compare.json, None when it has none; DamagedRecord when it is not one."""
    try:
        return read_record(Path(run_dir) / layout.COMPARE_JSON, CompareFile, "a comparison written by dasvit compare")
    except FileNotFoundError:
        return None

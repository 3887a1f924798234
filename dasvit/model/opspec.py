"""Op names and their parsing, free of torch so that configs and genotypes validate without loading it.

`zero`, `skip`, `msa_<heads>` (e.g. `msa_8`), `mlp_<ratio>` (e.g. `mlp_0.5`, `mlp_4`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..errors import ConfigError, UserError
from ..limits import MAX_HEADS, MAX_MLP_RATIO

OP_TYPES = ("zero", "skip", "msa", "mlp")
_MSA = re.compile(r"^msa_(\d{1,12})$")
_MLP = re.compile(r"^mlp_(\d{1,12}(?:\.\d{1,12})?)$")


@dataclass(frozen=True)
class OpSpec:
    """A parsed op name. `heads` is set for msa, `ratio` for mlp."""

    name: str
    type: str
    heads: int = 0
    ratio: float = 0.0

    @property
    def size(self) -> str:
        """The size as the name writes it: '8' for msa_8, '0.5' for mlp_0.5; '' for zero and skip."""
        return self.name[len(self.type) + 1 :]

    def to_json(self) -> dict:
        if self.type == "msa":
            return {"type": "msa", "heads": self.heads}
        if self.type == "mlp":
            return {"type": "mlp", "ratio": self.ratio}
        return {"type": self.type}


def parse_op(name: object, key: str = "op", error: type[UserError] = ConfigError) -> OpSpec:
    """Parse an op name; raise `error` naming `key` if it is not one of the four forms."""
    allowed = "zero, skip, msa_<heads> (e.g. msa_8) or mlp_<ratio> (e.g. mlp_4, mlp_0.5)"
    if not isinstance(name, str):
        raise error(f"{key} must be an op name ({allowed}), got {str(name)[:80]!r}.")
    if len(name) > 40:
        raise error(f"{key} = {name[:40]!r}... is not an op; use {allowed}.")
    if name in ("zero", "skip"):
        return OpSpec(name, name)
    m = _MSA.match(name)
    if m:
        heads = int(m.group(1))
        if heads < 1:
            raise error(f"{key} = {name!r}: an msa op needs at least one head.")
        if heads > MAX_HEADS:
            raise error(f"{key} = {name!r}: an msa op has at most {MAX_HEADS} heads.")
        return OpSpec(name, "msa", heads=heads)
    m = _MLP.match(name)
    if m:
        ratio = float(m.group(1))
        if ratio <= 0:
            raise error(f"{key} = {name!r}: an mlp ratio must be positive.")
        if ratio > MAX_MLP_RATIO:
            raise error(f"{key} = {name!r}: an mlp ratio is at most {MAX_MLP_RATIO}.")
        return OpSpec(name, "mlp", ratio=ratio)
    raise error(f"{key} = {name!r} is not an op; use {allowed}.")


def msa_name(heads: int) -> str:
    """msa_8: the name of an attention op with `heads` heads."""
    return f"msa_{heads}"


def mlp_name(ratio: float) -> str:
    """mlp_4, mlp_0.5: the name of an MLP op of hidden ratio `ratio`."""
    return f"mlp_{ratio:g}"


def elastic_name(op_type: str) -> str:
    """`msa_*`, `mlp_*`: how a drawing names an edge of that type whose size each layer chooses (a version-2
    genotype's cell); no op of a config or genotype has such a name."""
    return f"{op_type}_*"


_ELASTIC = {elastic_name(t): t for t in ("msa", "mlp")}


def read_op(name: object) -> OpSpec | None:
    """`parse_op` for a name that may be anything (read from a run file, or drawn): None where it is no op."""
    try:
        return parse_op(name)
    except UserError:
        return None


@functools.lru_cache(maxsize=256)
def _type_of(name: str) -> str | None:
    spec = read_op(name)
    return spec.type if spec else _ELASTIC.get(name)


def op_type(name: object) -> str | None:
    """zero, skip, msa or mlp: the type an op name (or an `elastic_name`) names; None where it names none."""
    return _type_of(name) if isinstance(name, str) else None


# ---------------------------------------------------------------------------------------------
# edges of a cell: node i -> node j, named "i->j" in events, genotypes' displays and --keep


def type_shares(weights: dict[str, dict[str, float]]) -> dict[str, float]:
    """W_t = mean_e Σ_{o ∈ t} w_e[o] for every op type t in the weights ({edge: {op: weight}}: an epoch
    event's `arch_weights`): what every epoch reports (`type_shares`), and what a reader of a run written
    before it did works out from the weights."""
    rows = [w for w in weights.values() if isinstance(w, dict)]
    types = dict.fromkeys(t for w in rows for t in map(op_type, w) if t is not None)
    return {t: sum(sum(v for o, v in w.items() if op_type(o) == t) for w in rows) / len(rows) for t in types}


def edge_list(nodes: int) -> list[tuple[int, int]]:
    """Every edge (i, j), i < j, j >= 2, ordered by destination then source: the rows of α."""
    return [(i, j) for j in range(2, nodes + 2) for i in range(j)]


def edge_name(edge: tuple[int, int]) -> str:
    return f"{edge[0]}->{edge[1]}"


def parse_edge_name(name: str) -> tuple[int, int] | None:
    """ "i->j" -> (i, j); None for anything else."""
    src, sep, dst = name.partition("->")
    try:
        return (int(src), int(dst)) if sep else None
    except ValueError:
        return None


def edge_order(name: str) -> tuple[int, int, str]:
    """Sort key of an edge name: by destination, then source (the order of α's rows, `edge_list`); names that
    are no edge last, by name."""
    parsed = parse_edge_name(name)
    return (parsed[1], parsed[0], "") if parsed else (1 << 62, 0, name)


# ---------------------------------------------------------------------------------------------
# an answer to a stage's pruning proposal: {"i->j": [op, ...]}, checked here so that a front (the CLI)
# can say what is wrong before it writes anything, and the engine says the same when it reads one


def merge_keep(keep: object, proposal: dict[str, list[str]]) -> object:
    """A partial answer completed by the proposal: the edges `keep` does not name keep the proposed ops.
    Anything but a mapping is returned as it is (`keep_problem` says what is wrong with it)."""
    if not isinstance(keep, dict):
        return keep
    return {**{name: list(ops) for name, ops in proposal.items()}, **keep}


def keep_problem(keep: object, active: dict[str, list[str] | None]) -> str | None:
    """Why an answer cannot be used, as a clause naming the edge and the op (None if it can): it must map
    edges of this cell (`active`: each edge's active ops, None where unknown) to lists of their active ops,
    every edge given at least one op other than zero."""
    if not isinstance(keep, dict):
        return "it must map edges 'i->j' to lists of ops"
    for name in keep:
        if name not in active:
            return f"{name!r} is not an edge of this cell (its edges: {', '.join(active)})"
    for name, act in active.items():
        chosen = keep.get(name)
        if not isinstance(chosen, list) or not chosen:
            return f"edge {name} must keep a list of at least one op, got {str(chosen)[:60]!r}"
        for o in chosen:
            if act is not None and o not in act:
                return f"edge {name} does not offer op {str(o)[:40]!r} (its active ops: {', '.join(act)})"
        if len(set(map(str, chosen))) != len(chosen):
            return f"edge {name} lists an op twice ({', '.join(map(str, chosen))[:120]}); name each op once"
        if all(o == "zero" for o in chosen):
            return f"edge {name} must keep an op other than zero"
    return None

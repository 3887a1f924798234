"""Op names and their parsing, free of torch so that configs and genotypes validate without loading it.

`zero`, `skip`, `msa_<heads>` (e.g. `msa_8`), `mlp_<ratio>` (e.g. `mlp_0.5`, `mlp_4`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError, UserError

OP_TYPES = ("zero", "skip", "msa", "mlp")
_MSA = re.compile(r"^msa_(\d+)$")
_MLP = re.compile(r"^mlp_(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class OpSpec:
    """A parsed op name. `heads` is set for msa, `ratio` for mlp."""

    name: str
    type: str
    heads: int = 0
    ratio: float = 0.0

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
        raise error(f"{key} must be an op name ({allowed}), got {name!r}.")
    if name in ("zero", "skip"):
        return OpSpec(name, name)
    m = _MSA.match(name)
    if m:
        heads = int(m.group(1))
        if heads < 1:
            raise error(f"{key} = {name!r}: an msa op needs at least one head.")
        return OpSpec(name, "msa", heads=heads)
    m = _MLP.match(name)
    if m:
        ratio = float(m.group(1))
        if ratio <= 0:
            raise error(f"{key} = {name!r}: an mlp ratio must be positive.")
        return OpSpec(name, "mlp", ratio=ratio)
    raise error(f"{key} = {name!r} is not an op; use {allowed}.")

"""What `dasvit tensorboard` writes as text: a run's config, cells and FocusFormer space as markdown (the
text tab), and its config's scalars flat for the HParams table. Every value is untrusted: made printable,
`|` escaped, strings cut to MAX_TEXT."""

from __future__ import annotations

import json
import math
from typing import Any

from ..limits import MAX_BUDGET_BINS, MAX_CHOICES, MAX_EDGES
from ..run import jsonio

MAX_HPARAMS = 300  # config scalars in the HParams table
MAX_TEXT = 200  # characters of one config string in the HParams table


def is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def md_cell(v: Any) -> str:
    """A value in a markdown table cell: on one line, without the characters a terminal acts on, `|` escaped."""
    return jsonio.printable(v, newlines=False).replace("|", "\\|")


def code_block(text: str) -> list[str]:
    """`text` as an indented markdown code block (no fence an untrusted string could close)."""
    return [""] + ["    " + line for line in jsonio.printable(text).splitlines()] + [""]


def genotype_text(genotype: dict[str, Any], title: str) -> str:
    """A genotype as markdown: its edges as a table (a version-2 genotype's layers as well), its output
    nodes, then the whole document."""
    lines = [f"**{md_cell(title)}**", ""]
    edges = genotype.get("edges")
    if isinstance(edges, list) and edges:
        lines += ["| from | to | op |", "|---|---|---|"]
        for e in edges[:MAX_EDGES]:
            if isinstance(e, dict):
                lines.append(
                    f"| {md_cell(e.get('from', '?'))} | {md_cell(e.get('to', '?'))} | {md_cell(e.get('op', '?'))} |"
                )
        lines.append("")
    output = genotype.get("output")
    if isinstance(output, list):
        lines.append(f"output: nodes {md_cell(', '.join(str(n) for n in output))}  ")
    layers = genotype.get("layers")
    if isinstance(layers, list):
        for k, layer in enumerate(layers, 1):
            if isinstance(layer, list):
                lines.append(f"layer {k}: {md_cell(' '.join(str(op) for op in layer))}  ")
    lines += code_block(json.dumps(genotype, indent=2))
    return "\n".join(lines)


def config_text(config: dict[str, Any], title: str) -> str:
    """A run's config as markdown: a YAML code block under a title."""
    import yaml

    return "\n".join([f"**{md_cell(title)}**", *code_block(yaml.safe_dump(config, sort_keys=False))])


def space_text(space: dict[str, Any]) -> str:
    """A FocusFormer run's elastic space as markdown: its FLOPs and params range and the bins' budgets."""
    lines = ["**FocusFormer space**", ""]
    for what in ("flops", "params"):
        lo, hi = space.get(f"min_{what}"), space.get(f"max_{what}")
        if is_number(lo) and is_number(hi):
            lines.append(f"{what}: {lo:,.0f} to {hi:,.0f}  ")
    budgets = space.get("budgets")
    if isinstance(budgets, list):
        shown = [f"{b:,.0f}" for b in budgets[:MAX_BUDGET_BINS] if is_number(b)]
        lines.append(f"bin budgets (FLOPs): {', '.join(shown)}  ")
    if is_number(space.get("decisions")):
        lines.append(f"decisions: {space['decisions']}  ")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# hparams


def _flatten(value: Any, key: str, out: dict[str, Any]) -> None:
    """The scalars under `key` into `out`: dicts as key.sub, lists of dicts as key.1.sub, lists of scalars as
    one comma-separated string; bools as "true"/"false" (torch would write them as numbers)."""
    if len(out) >= MAX_HPARAMS:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{key}.{k}", out)
    elif isinstance(value, list):
        if all(isinstance(v, (str, int, float, bool)) for v in value):
            out[key] = ",".join(str(v).lower() if type(v) is bool else str(v) for v in value)[:MAX_TEXT]
        else:
            for k, v in enumerate(value[:MAX_CHOICES], 1):
                _flatten(v, f"{key}.{k}", out)
    elif type(value) is bool:
        out[key] = str(value).lower()
    elif is_number(value):
        out[key] = value
    elif isinstance(value, str):
        out[key] = jsonio.printable(value, newlines=False)[:MAX_TEXT]


def hparams_of(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """The HParams table's row of a run: its kind, its preset and the scalars of the config's data, space and
    `kind` sections, flat (`search.lr`, `search.stages.1.depth`, `space.ops`)."""
    out: dict[str, Any] = {"kind": kind}
    if isinstance(config.get("preset"), str):
        out["preset"] = jsonio.printable(config["preset"], newlines=False)[:MAX_TEXT]
    for section in ("data", "space", kind):
        if isinstance(config.get(section), dict):
            _flatten(config[section], section, out)
    return out

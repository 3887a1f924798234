"""The searched cell as plain, versioned JSON (`genotype.json`), its validation, and built-ins.

Nodes 0 and 1 are the cell's inputs (outputs of layers k-2 and k-1), nodes 2.. are intermediate. An edge
goes from a lower to a higher node and carries one op. The cell output is the sum of the `output` nodes.

Version 2 (a FocusFormer architecture) is the version-1 cell plus the network's sizes: `embed_dim`,
`depth`, `head_dim` (width of one attention head) and `layers`: per layer, the op name of every edge of
the cell in edge order (same op types as the cell's edges, sizes of its own, e.g. `msa_3`, `mlp_3.5`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GenotypeError
from ..limits import MAX_DEPTH, MAX_EDGES, MAX_EMBED_DIM, MAX_NODES
from .cost import Sizes
from .opspec import OpSpec, mlp_name, msa_name, parse_op

FORMAT = "dasvit-genotype"
VERSION = 1
VERSIONS = (1, 2)


@dataclass(frozen=True)
class Edge:
    src: int
    dst: int
    op: str


@dataclass
class Genotype:
    """A discrete cell: `nodes` intermediate nodes over 2 inputs, edges with one op each.

    Version 2 adds the network: `embed_dim`, `depth`, `head_dim` and `layers` (per layer, the op name of
    every edge); a version-1 genotype leaves them None and is sized by the config.
    """

    nodes: int
    edges: list[Edge]
    output: list[int]
    meta: dict[str, Any] = field(default_factory=dict)
    inputs: int = 2
    embed_dim: int | None = None
    depth: int | None = None
    head_dim: int | None = None
    layers: list[list[str]] | None = None

    @property
    def version(self) -> int:
        return 1 if self.layers is None else 2

    @property
    def ops(self) -> dict[str, OpSpec]:
        names = [e.op for e in self.edges] + [op for layer in self.layers or () for op in layer]
        return {name: parse_op(name, error=GenotypeError) for name in names}

    def cell(self) -> Genotype:
        """The version-1 cell alone (a version-2 genotype without its sizes)."""
        return Genotype(nodes=self.nodes, edges=list(self.edges), output=list(self.output), meta=dict(self.meta))

    def layer_cell(self, k: int) -> Genotype:
        """Layer k's cell of a version-2 genotype: the cell with that layer's op on every edge."""
        edges = [Edge(e.src, e.dst, op) for e, op in zip(self.edges, self.layers[k])]
        return Genotype(nodes=self.nodes, edges=edges, output=list(self.output), meta=dict(self.meta))

    def same_cell(self, other: Genotype) -> bool:
        """The same network (edges, output, and a version-2 genotype's sizes), whatever the meta and order."""

        def key(g: Genotype) -> tuple:
            return g.nodes, sorted(g.edges, key=str), sorted(g.output), g.layers, g.embed_dim, g.head_dim

        return key(self) == key(other)

    def incoming(self, node: int) -> list[Edge]:
        return [e for e in self.edges if e.dst == node]

    def live_nodes(self) -> list[int]:
        """The intermediate nodes the cell output depends on, ascending (others are built by nobody)."""
        return feeding_nodes(self.output, self.edges)

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "version": self.version,
            "inputs": self.inputs,
            "nodes": self.nodes,
            "edges": [{"from": e.src, "to": e.dst, "op": e.op} for e in self.edges],
            "output": list(self.output),
        }
        if self.layers is not None:
            out.update(
                embed_dim=self.embed_dim,
                depth=self.depth,
                head_dim=self.head_dim,
                layers=[list(layer) for layer in self.layers],
            )
        out.update(ops={name: spec.to_json() for name, spec in sorted(self.ops.items())}, meta=dict(self.meta))
        return out

    def save(self, path: str | Path) -> None:
        from ..run.jsonio import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=2) + "\n")


def network_sizes(cfg, genotype: Genotype | None = None, num_classes: int = 1000, in_chans: int = 3) -> Sizes:
    """The sizes a cell's network is built at under a config: `retrain.depth` cells of width `space.embed_dim`
    (a version-2 genotype brings its own depth and width), on `data.image_size` images cut into
    `space.patch_size` patches. The one place these sizes are read (the network, a retrain's metrics, a
    resume's check, `dasvit show`, `dasvit compare`)."""
    depth, dim = cfg.retrain.depth, cfg.space.embed_dim
    if genotype is not None and genotype.layers is not None:
        depth, dim = genotype.depth, genotype.embed_dim
    return Sizes(depth, dim, cfg.data.image_size, cfg.space.patch_size, in_chans, num_classes)


def feeding_nodes(output: list[int], edges: list[Edge]) -> list[int]:
    """The intermediate nodes (2..) that `output` depends on through `edges`, ascending."""
    live, stack = set(), list(output)
    while stack:
        n = stack.pop()
        if n < 2 or n in live:
            continue
        live.add(n)
        stack.extend(e.src for e in edges if e.dst == n)
    return sorted(live)


def _short(v: Any) -> str:
    """A value for a sentence: its repr, cut (a hostile file may hold a huge one); JSON's null, which is also
    what a number too large to hold reads as (dasvit.run.jsonio.parse_json)."""
    if v is None:
        return "null (or a number too large)"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(obj: dict, key: str, where: str) -> int:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise GenotypeError(f"{where}: {key!r} must be an integer, got {_short(v)}.")
    return v


def genotype_from_json(data: Any, source: str = "genotype") -> Genotype:
    """Validate a parsed genotype document; every problem is one sentence naming what is wrong."""
    if not isinstance(data, dict):
        raise GenotypeError(f"{source}: a genotype must be a JSON object, got {type(data).__name__}.")
    if data.get("format") != FORMAT:
        raise GenotypeError(f"{source}: 'format' must be {FORMAT!r}, got {_short(data.get('format'))}.")
    if data.get("version") not in VERSIONS or isinstance(data.get("version"), bool):
        raise GenotypeError(
            f"{source}: version {_short(data.get('version'))} is not supported; this dasvit reads versions 1 and 2."
        )
    inputs = data.get("inputs", 2)
    if inputs != 2:
        raise GenotypeError(f"{source}: 'inputs' must be 2 (the outputs of layers k-2 and k-1), got {_short(inputs)}.")
    nodes = _int(data, "nodes", source)
    if not 1 <= nodes <= MAX_NODES:
        raise GenotypeError(f"{source}: 'nodes' must be between 1 and {MAX_NODES}, got {nodes:.3g}.")
    last = nodes + 1
    raw_edges = data.get("edges")
    if not isinstance(raw_edges, list) or not raw_edges:
        raise GenotypeError(f"{source}: 'edges' must be a non-empty list.")
    if len(raw_edges) > MAX_EDGES:
        raise GenotypeError(f"{source}: 'edges' lists {len(raw_edges):,} edges; a cell has at most {MAX_EDGES:,}.")
    declared = data.get("ops", {})
    if not isinstance(declared, dict):
        raise GenotypeError(f"{source}: 'ops' must be an object mapping op names to their parameters.")
    if len(declared) > MAX_EDGES:
        raise GenotypeError(f"{source}: 'ops' declares {len(declared):,} ops; a genotype has at most {MAX_EDGES:,}.")
    edges: list[Edge] = []
    for i, e in enumerate(raw_edges):
        where = f"{source}: edge {i}"
        if not isinstance(e, dict):
            raise GenotypeError(f"{where} must be an object with 'from', 'to' and 'op'.")
        src, dst = _int(e, "from", where), _int(e, "to", where)
        spec = parse_op(e.get("op"), key=f"{where} op", error=GenotypeError)
        if spec.type == "zero":
            raise GenotypeError(f"{where} ({src}->{dst}) has op 'zero'; leave the edge out instead.")
        if not 0 <= src <= last or not 0 <= dst <= last:
            raise GenotypeError(f"{where} ({src}->{dst}) names a node outside 0..{last}.")
        if dst == src:
            raise GenotypeError(f"{where} ({src}->{dst}) goes from a node to itself.")
        if dst < src:
            raise GenotypeError(f"{where} ({src}->{dst}) goes backwards; edges go from a lower to a higher node.")
        if dst < 2:
            raise GenotypeError(f"{where} ({src}->{dst}) ends at a cell input; edges end at nodes 2..{last}.")
        if spec.name in declared and declared[spec.name] != spec.to_json():
            raise GenotypeError(
                f"{source}: ops[{spec.name!r}] is {_short(declared[spec.name])} but the name means {spec.to_json()!r}."
            )
        edges.append(Edge(src, dst, spec.name))
    for name in declared:
        parse_op(name, key=f"{source}: ops key", error=GenotypeError)
    if len({(e.src, e.dst, e.op) for e in edges}) != len(edges):
        raise GenotypeError(f"{source}: the same edge and op appear twice.")
    output = data.get("output")
    if (
        not isinstance(output, list)
        or not output
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in output)
    ):
        raise GenotypeError(f"{source}: 'output' must be a non-empty list of node numbers.")
    if len(output) > nodes:
        raise GenotypeError(
            f"{source}: 'output' lists {len(output):,} nodes; a cell of {nodes} intermediate nodes has at most {nodes}."
        )
    for o in output:
        if not 2 <= o <= last:
            raise GenotypeError(f"{source}: output node {o} does not exist; intermediate nodes are 2..{last}.")
    # every node that feeds the output must have an input
    for n in feeding_nodes(output, edges):
        if not any(e.dst == n for e in edges):
            raise GenotypeError(f"{source}: node {n} has no incoming edge.")
    for n in range(2, last + 1):
        if not any(e.dst == n for e in edges) and any(e.src == n for e in edges):
            raise GenotypeError(f"{source}: node {n} has no incoming edge.")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise GenotypeError(f"{source}: 'meta' must be an object.")
    if data["version"] == 2:
        network = _network_from_json(data, edges, source)
        return Genotype(nodes=nodes, edges=edges, output=list(output), meta=meta, **network)
    return Genotype(nodes=nodes, edges=edges, output=list(output), meta=meta)


def _positive(data: dict, key: str, source: str) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise GenotypeError(f"{source}: {key!r} must be a positive integer, got {_short(v)}.")
    return v


def _network_from_json(data: dict, edges: list[Edge], source: str) -> dict[str, Any]:
    """The version-2 fields, validated against the cell: sizes, and per layer one op per edge of the same type."""
    sizes = {key: _positive(data, key, source) for key in ("embed_dim", "depth", "head_dim")}
    for key, bound in (("embed_dim", MAX_EMBED_DIM), ("depth", MAX_DEPTH), ("head_dim", MAX_EMBED_DIM)):
        if sizes[key] > bound:
            raise GenotypeError(f"{source}: {key!r} is at most {bound:,}, got {sizes[key]:.3g}.")
    layers = data.get("layers")
    if not isinstance(layers, list) or len(layers) != sizes["depth"]:
        got = f"{len(layers)} layers" if isinstance(layers, list) else _short(layers)
        raise GenotypeError(
            f"{source}: 'layers' must be a list of {sizes['depth']} layers (one per cell, 'depth'), got {got}."
        )
    types = [parse_op(e.op, error=GenotypeError).type for e in edges]
    for k, layer in enumerate(layers):
        if not isinstance(layer, list) or len(layer) != len(edges):
            raise GenotypeError(
                f"{source}: layers[{k}] must list {len(edges)} op names, one per edge of the cell, got {_short(layer)}."
            )
        for i, name in enumerate(layer):
            spec = parse_op(name, key=f"{source}: layers[{k}][{i}]", error=GenotypeError)
            if spec.type != types[i]:
                e = edges[i]
                raise GenotypeError(
                    f"{source}: layers[{k}][{i}] = {name!r} but edge {i} ({e.src}->{e.dst}) is a "
                    f"{types[i]} edge; a layer may resize an edge's op, not change its type."
                )
    return {**sizes, "layers": [list(layer) for layer in layers]}


def subnet_genotype(space, subnet, meta: dict[str, Any] | None = None) -> Genotype:
    """The version-2 genotype of FocusFormer architecture `subnet` (a `dasvit.focus.space.Subnet`) in `space`."""
    base = space.base
    return Genotype(
        nodes=base.nodes,
        edges=list(base.edges),
        output=list(base.output),
        meta=dict(meta or {}),
        embed_dim=subnet.embed_dim,
        depth=subnet.depth,
        head_dim=space.head_dim,
        layers=[list(layer) for layer in subnet.layers],
    )


# ---------------------------------------------------------------------------------------------
# built-ins


def vit_block(heads: int = 12, ratio: float = 4.0) -> Genotype:
    """The standard pre-norm ViT block: node 2 = skip(1) + msa(1), node 3 = skip(2) + mlp(2)."""
    return Genotype(
        nodes=2,
        edges=[Edge(1, 2, "skip"), Edge(1, 2, msa_name(heads)), Edge(2, 3, "skip"), Edge(2, 3, mlp_name(ratio))],
        output=[3],
        meta={"builtin": "vit_b16" if (heads, ratio) == (12, 4.0) else "vit_block"},
    )


BUILTINS = {
    "vit_b16": lambda: vit_block(12, 4.0),
    "vit_block": lambda: vit_block(12, 4.0),
}

# The dimensions each built-in is normally used at (for `show` and `retrain` defaults).
BUILTIN_DIMS = {"vit_b16": {"depth": 12, "embed_dim": 768, "patch_size": 16, "image_size": 224}}


MAX_FILE_BYTES = 16 << 20  # a genotype file: a version-2 one of 1024 layers is ~0.1 MiB


def load_genotype(ref: str | Path) -> Genotype:
    """Load a genotype from a built-in name, a genotype JSON file, or a run directory."""
    ref_s = str(ref)
    if ref_s in BUILTINS:
        return BUILTINS[ref_s]()
    path = Path(ref_s)
    in_run = path.is_dir()
    if path.is_dir():
        if not (path / "genotype.json").is_file():
            raise GenotypeError(f"{path} is a directory without genotype.json; is the search finished?")
        path = path / "genotype.json"
    if not path.exists():
        hint = f" (built-ins: {', '.join(sorted(BUILTINS))})" if path.suffix != ".json" else ""
        raise GenotypeError(f"{ref_s} is neither a genotype file nor a run directory nor a built-in{hint}.")
    from ..run.jsonio import read_json_file

    try:  # a file the user named may be a link; a run directory's genotype.json may not
        data = read_json_file(path, follow=not in_run, max_bytes=MAX_FILE_BYTES)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    except UnicodeDecodeError:
        raise GenotypeError(f"{path} is not UTF-8 text; a genotype is a JSON file.") from None
    except ValueError as e:
        raise GenotypeError(f"{path} is not a genotype: {e}.") from None
    except OSError as e:
        raise GenotypeError(f"{path} cannot be read: {e.strerror or e}.") from None
    return genotype_from_json(data, source=str(path))

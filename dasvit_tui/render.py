"""Drawing a genotype: a rich cell diagram, an edge table, figures, comparisons, and Graphviz dot.

Nothing here computes a model: a genotype is plain data (`dasvit.model.genotype.Genotype`: `nodes`, `edges`
with `src`/`dst`/`op`, `output`), and figures (params, FLOPs, accuracy) come in as numbers. The monitor
reuses `render_cell` for its genotype screen.

The cell reads top to bottom, each node with the edges that feed it, each edge labelled with its op:

    c(k-2)     output of cell k-2
    c(k-1)     output of cell k-1
    node 2  ◀─┬─ skip ─────── c(k-1)
              └─ msa_12 ───── c(k-1)
    node 3  ◀─┬─ skip ─────── node 2
              └─ mlp_4 ────── node 2
    c(k)    ◀─── Σ node 3
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dasvit.fmt import count_in_table
from dasvit.model.opspec import edge_name, elastic_name, op_type, parse_op
from dasvit.run.jsonio import printable

OP_STYLES = {"msa": "bold magenta", "mlp": "bold cyan", "skip": "green", "zero": "dim"}
OP_WIDTH = 12  # longest usual op name (mlp_0.5, msa_12) plus the rule after it


def node_label(n: int) -> str:
    return {0: "c(k-2)", 1: "c(k-1)"}.get(n, f"node {n}")


def cell_diagram(genotype) -> Text:
    """The cell as text: inputs, each intermediate node with its labelled incoming edges, the output."""
    live = set(genotype.live_nodes()) | {0, 1}
    t = Text(no_wrap=True, overflow="ellipsis")
    for n, what in ((0, "output of cell k-2"), (1, "output of cell k-1")):
        t.append(f"{node_label(n):<8}", style="bold")
        t.append(f"   {what}" + ("" if n in live else "  (unused)"), style="dim")
        t.append("\n")
    for j in range(2, genotype.nodes + 2):
        ins = [e for e in genotype.edges if e.dst == j]
        t.append(f"{node_label(j):<8}", style="bold" if j in live else "dim")
        if not ins:
            t.append("   (no input)\n", style="dim")
            continue
        for i, e in enumerate(ins):
            if i:
                t.append(" " * 8)
            branch = "─" if len(ins) == 1 else ("┬" if i == 0 else ("└" if i == len(ins) - 1 else "├"))
            t.append(" ◀─" + branch + "─ " if i == 0 else "   " + branch + "─ ")
            t.append(e.op, style=OP_STYLES.get(op_type(e.op), ""))
            t.append(" " + "─" * max(2, OP_WIDTH - len(e.op)) + " ", style="dim")
            t.append(node_label(e.src))
            if j not in live:
                t.append("  (unused: not on a path to the output)", style="dim")
            t.append("\n")
    t.append(f"{'c(k)':<8}", style="bold")
    t.append(" ◀─── Σ ")
    t.append(" + ".join(node_label(o) for o in genotype.output))
    return t


def edge_table(genotype, edge_params: dict[str, int] | None = None) -> Table:
    """One row per edge: its name `i->j`, the op and its type, and its parameters per cell if known."""
    table = Table(title="edges", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for col in ("edge", "from", "to", "op", "type"):
        table.add_column(col)
    if edge_params is not None:
        table.add_column("params / cell", justify="right")
    for e in sorted(genotype.edges, key=lambda e: (e.dst, e.src, e.op)):
        style = OP_STYLES.get(op_type(e.op), "")
        row = [edge_name((e.src, e.dst)), node_label(e.src), node_label(e.dst), Text(e.op, style=style), op_type(e.op)]
        if edge_params is not None:
            row.append(f"{edge_params.get(edge_key(e), 0):,}")
        table.add_row(*row)
    return table


def edge_key(e) -> str:
    """How per-edge figures are keyed: `"i->j op"` (one edge may carry two ops, as in the ViT block)."""
    return f"{edge_name((e.src, e.dst))} {e.op}"


def plain(x: Any) -> str:
    """A string read from a file or a path, for a Rich string: printable on one line, its [markup] literal."""
    from rich.markup import escape

    return escape(printable(str(x), newlines=False))


def percent(x: float | None) -> str:
    return "–" if x is None or x < 0 else f"{100 * x:.2f} %"


def stats_table(stats: dict[str, Any]) -> Table:
    """Params, FLOPs and the sizes they were measured at."""
    table = Table(title="cost", title_justify="left", box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("params", count_in_table(stats.get("params"))),
        ("FLOPs / image", count_in_table(stats.get("flops"))),
        ("depth (cells)", stats.get("depth")),
        ("width", stats.get("embed_dim")),
        ("image size", stats.get("image_size")),
        ("patch", stats.get("patch_size")),
        ("classes", stats.get("num_classes")),
        ("channels", stats.get("in_chans") if stats.get("in_chans") not in (None, 3) else None),
    ]
    for k, v in rows:
        if v is not None:
            table.add_row(k, str(v))
    return table


def comparison_table(rows: Iterable[dict[str, Any]]) -> Table:
    """Retrain results side by side: name, params, FLOPs, top-1, top-5 (rows from metrics.json)."""
    table = Table(title="retrained", title_justify="left", header_style="bold")
    table.add_column("model")
    for col in ("params", "FLOPs", "top-1", "top-5"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            Text(printable(r.get("name", "?"), newlines=False)),  # a run's path: no markup, no escapes
            count_in_table(r.get("params")),
            count_in_table(r.get("flops")),
            percent(r.get("top1")),
            percent(r.get("top5")),
        )
    return table


def render_cell(genotype, stats: dict[str, Any] | None = None, title: str | None = None) -> Group:
    """The whole picture of a cell: diagram, edge table and, when `stats` is given, its cost.

    `stats` may hold params, flops, depth, embed_dim, image_size, patch_size, num_classes, and
    `edge_params` ({"i->j op": parameters of that op in one cell}).
    """
    parts: list[Any] = []
    if title:
        parts.append(Text(title, style="bold underline"))
    parts += [cell_diagram(genotype), Text(""), edge_table(genotype, (stats or {}).get("edge_params"))]
    if stats:
        parts += [Text(""), stats_table(stats)]
    return Group(*parts)


def elastic_cell(genotype):
    """A version-2 genotype's cell for drawing: each msa/mlp edge labelled `msa_*` / `mlp_*`, as its size is
    chosen per layer (`layer_table`); a version-1 genotype is returned as it is."""
    if getattr(genotype, "layers", None) is None:
        return genotype
    from dasvit.model.genotype import Edge, Genotype

    edges = [
        Edge(e.src, e.dst, e.op if op_type(e.op) not in ("msa", "mlp") else elastic_name(op_type(e.op)))
        for e in genotype.edges
    ]
    return Genotype(nodes=genotype.nodes, edges=edges, output=list(genotype.output), meta=dict(genotype.meta))


def layer_table(genotype, layer_costs: list[dict[str, Any]] | None = None) -> Table:
    """A version-2 genotype layer by layer: width, the heads of each msa edge and the ratio of each mlp edge
    (columns named by edge), and each layer's params and FLOPs when `layer_costs` gives them."""
    table = Table(
        title=f"layers ({genotype.depth} cells, width {genotype.embed_dim}, head width {genotype.head_dim})",
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("layer", justify="right")
    table.add_column("width", justify="right")
    sized = [(i, e) for i, e in enumerate(genotype.edges) if op_type(e.op) in ("msa", "mlp")]
    for _, e in sized:
        what = "heads" if op_type(e.op) == "msa" else "ratio"
        table.add_column(f"{e.src}->{e.dst} {what}", justify="right", style=OP_STYLES[op_type(e.op)])
    if layer_costs is not None:
        table.add_column("params", justify="right")
        table.add_column("FLOPs", justify="right")
    for k, layer in enumerate(genotype.layers):
        row = [str(k + 1), str(genotype.embed_dim)] + [parse_op(layer[i]).size for i, _ in sized]
        if layer_costs is not None:
            row += [count_in_table(layer_costs[k]["params"]), count_in_table(layer_costs[k]["flops"])]
        table.add_row(*row)
    return table


def _dot_id(n: int) -> str:
    return {0: "c_km2", 1: "c_km1"}.get(n, f"n{n}")


def to_dot(genotype, name: str = "cell") -> str:
    """Graphviz source of the cell (render with `dot -Tsvg`); no Graphviz needed to produce it."""
    safe = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "cell"
    lines = [
        f"digraph {safe} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        '  c_km2 [label="c(k-2)", shape=box, style=filled, fillcolor="#dddddd"];',
        '  c_km1 [label="c(k-1)", shape=box, style=filled, fillcolor="#dddddd"];',
    ]
    for j in range(2, genotype.nodes + 2):
        lines.append(f'  {_dot_id(j)} [label="{j}", shape=circle];')
    lines.append('  c_k [label="c(k)", shape=box, style=filled, fillcolor="#cce5ff"];')
    colours = {"msa": "#b0409f", "mlp": "#1f8fa6", "skip": "#3a9a3a"}
    for e in sorted(genotype.edges, key=lambda e: (e.dst, e.src, e.op)):
        colour = colours.get(op_type(e.op), "black")
        lines.append(
            f'  {_dot_id(e.src)} -> {_dot_id(e.dst)} [label="{e.op}", color="{colour}", fontcolor="{colour}"];'
        )
    for o in genotype.output:
        lines.append(f"  {_dot_id(o)} -> c_k;")
    lines.append("}")
    return "\n".join(lines) + "\n"

"""The code's layout holds to its own rules (docs/architecture.md): no import cycle (imports inside functions
included), the engine free of the front, attention written once, modules of a readable size, and the concept
table naming files that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dasvit", "dasvit_tui")
MAX_LINES = 500
MAX_TOP_MODULES = 10


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            rel = p.relative_to(ROOT).with_suffix("")
            out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement, inside functions too; those under `if TYPE_CHECKING:` never run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                deps.add(full if full in mods else base)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        colour[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if colour.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in colour and (found := visit(w)):
                return found
        colour[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in colour and (found := visit(v)):
            return found
    return None


def test_the_graph_sees_a_cycle_through_an_import_inside_a_function(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from b import f\n")
    b.write_text("def f():\n    from a import g\n")
    c = tmp_path / "c.py"
    c.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import g\n")
    graph = _graph({"a": a, "b": b, "c": c})
    assert _cycle(graph) == ["a", "b", "a"] and graph["c"] == set()


def test_no_import_cycle():
    cycle = _cycle(_graph(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_engine_imports_nothing_of_the_front():
    graph = _graph(_modules())
    front = {"textual", "typer", "dasvit_tui"}
    for name, path in _modules().items():
        if not name.startswith("dasvit."):
            continue
        for node in _imports(ast.parse(path.read_text())):
            roots = (
                [a.name.split(".")[0] for a in node.names]
                if isinstance(node, ast.Import)
                else [(node.module or "").split(".")[0]]
            )
            assert not front & set(roots) or node.level, f"{path.relative_to(ROOT)} imports the front ({roots})"
    assert graph  # the walk found the modules


def test_no_module_past_the_line_limit():
    long = {
        str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules past {MAX_LINES} lines: {long}"


def test_few_modules_directly_in_the_engine_package():
    top = sorted(p.name for p in (ROOT / "dasvit").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_attention_is_computed_in_one_model_module():
    calls = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "scaled_dot_product_attention":
                calls.append(name)
    assert calls == ["dasvit.model.network"], calls


def _names_a_module(dotted: str, mods: dict[str, Path]) -> bool:
    """`dasvit.run.layout` or `dasvit.run.layout.CONFIG`: a module, or a module and one of its names."""
    head, _, tail = dotted.rpartition(".")
    return dotted in mods or (head in mods and head.count(".") >= 1 and tail.isidentifier())


def test_the_architecture_doc_names_files_that_exist():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    files = set(re.findall(r"`((?:dasvit|dasvit_tui|experiments|tests)/[\w/]+\.py)`", doc))
    dotted = set(re.findall(r"`(dasvit(?:_tui)?(?:\.\w+)+)`", doc))
    assert len(files) + len(dotted) >= 20, "the doc's concept table names the files"
    missing = sorted(f for f in files if not (ROOT / f).is_file())
    mods = _modules()
    missing += sorted(d for d in dotted if not _names_a_module(d, mods))
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"

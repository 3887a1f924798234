"""`dasvit show`: the ViT-B/16 figures, the SDPA FLOP handle, bad genotypes, drawings and comparisons."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from conftest import REPO, engine_env
from dasvit.model.genotype import load_genotype
from dasvit.model.network import Network
from dasvit.model.profile import SDPA_OP, count_flops, flop_analysis
from dasvit.run.presets import dump_config, load_config

FIXTURES = Path(__file__).parent / "fixtures"
CELL = FIXTURES / "searched_cell.json"


def dasvit(*args: str, cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dasvit_tui.cli", *map(str, args)],
        cwd=cwd,
        env=engine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_vit_b16_params_and_flops_match_the_published_figures():
    rc, out, err = finish(
        dasvit(
            "show",
            "vit_b16",
            "--depth",
            "12",
            "--dim",
            "768",
            "--image-size",
            "224",
            "--patch",
            "16",
            "--classes",
            "1000",
            "--format",
            "json",
        )
    )
    assert rc == 0, err
    d = json.loads(out)
    assert abs(d["params"] / 86.57e6 - 1) < 0.005, d["params"]
    assert abs(d["flops"] / 17.58e9 - 1) < 0.01, d["flops"]  # without attention it would be 16.87 G
    assert (d["depth"], d["embed_dim"], d["image_size"]) == (12, 768, 224)
    assert d["format"] == "dasvit-genotype" and d["output"] == [3]


def test_attention_flops_are_counted_through_the_sdpa_handle():
    net = Network(load_genotype("vit_b16"), depth=1, dim=48, image_size=16, patch_size=4, num_classes=4)
    analysis = flop_analysis(net, 16)
    assert SDPA_OP not in analysis.unsupported_ops()
    tokens, dim = 17, 48
    assert analysis.by_operator()["scaled_dot_product_attention"] == 2 * tokens * tokens * dim  # QKᵀ and AV
    linear = tokens * (dim * 3 * dim + dim * dim + 2 * dim * 4 * dim) + dim * 4
    assert analysis.by_operator()["linear"] == linear
    assert count_flops(net, 16) == sum(analysis.by_operator().values())


def _bad(tmp: Path) -> dict[str, tuple[str, str]]:
    """name → (argument, words the one-line message must contain)."""
    base = {
        "format": "dasvit-genotype",
        "version": 1,
        "nodes": 2,
        "edges": [{"from": 1, "to": 2, "op": "msa_8"}, {"from": 2, "to": 3, "op": "mlp_4"}],
        "output": [3],
    }

    def doc(**changes) -> str:
        return json.dumps({**base, **changes})

    files = {
        "bad_json": ('{"format": "dasvit-genotype", "version": 1,', "not valid JSON"),
        "wrong_format": (doc(format="darts"), "'format' must be"),
        "wrong_version": (doc(version=3), "version 3 is not supported"),
        "unknown_op": (doc(edges=[{"from": 1, "to": 2, "op": "conv_3x3"}], output=[2]), "'conv_3x3' is not an op"),
        "backwards": (doc(edges=[{"from": 3, "to": 2, "op": "skip"}]), "backwards"),
        "to_itself": (doc(edges=[{"from": 2, "to": 2, "op": "skip"}], output=[2]), "to itself"),
        "no_input": (doc(edges=[{"from": 1, "to": 2, "op": "skip"}], output=[3]), "node 3 has no incoming edge"),
        "missing_output": (doc(output=[9]), "output node 9 does not exist"),
    }
    cases = {}
    for name, (text, words) in files.items():
        (tmp / f"{name}.json").write_text(text)
        cases[name] = (str(tmp / f"{name}.json"), words)
    cases["missing_file"] = (str(tmp / "nowhere.json"), "nowhere.json is neither a genotype file")
    cases["unknown_builtin"] = ("vit_b99", "built-ins: vit_b16")
    return cases


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory) -> dict[str, tuple[tuple[int, str, str], str]]:
    """Every bad case through the real CLI, the processes started together (2 cores, ~10 startups)."""
    cases = _bad(tmp_path_factory.mktemp("bad"))
    procs = {name: (dasvit("show", arg), words) for name, (arg, words) in cases.items()}
    return {name: (finish(p), words) for name, (p, words) in procs.items()}


@pytest.mark.parametrize(
    "case",
    [
        "bad_json",
        "wrong_format",
        "wrong_version",
        "unknown_op",
        "backwards",
        "to_itself",
        "no_input",
        "missing_output",
        "missing_file",
        "unknown_builtin",
    ],
)
def test_bad_genotype_exits_2_with_one_sentence(bad_results, case):
    (rc, out, err), words = bad_results[case]
    assert rc == 2, err
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dasvit: ") and lines[0].endswith("."), err
    assert words in lines[0]


def test_cell_drawing_labels_every_edge_and_fits_80_columns():
    from dasvit_tui.render import render_cell

    g = load_genotype(CELL)
    console = Console(width=80, record=True, color_system=None)
    console.print(render_cell(g, {"params": 123456, "flops": 7890123, "depth": 4}))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "c(k-2)" in text and "c(k-1)" in text
    for e in g.edges:  # each edge appears as "op ── source" under its target node
        src = {0: "c(k-2)", 1: "c(k-1)"}.get(e.src, f"node {e.src}")
        assert any(e.op in line and line.rstrip().endswith(src) for line in text.splitlines()), e
    assert "Σ node 2 + node 3 + node 4" in text and "123.46 k" in text and "7.89 M" in text


def test_dot_output_is_graphviz_source_with_one_arrow_per_edge():
    from dasvit_tui.render import to_dot

    g = load_genotype(CELL)
    dot = to_dot(g)
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    arrows = [line for line in dot.splitlines() if "->" in line and "label=" in line]
    assert sorted(a.split('label="')[1].split('"')[0] for a in arrows) == sorted(e.op for e in g.edges)
    assert dot.count("-> c_k;") == len(g.output)


def _search_run(root: Path) -> Path:
    """A finished search run directory as the search engine leaves it (the contract, written by hand)."""
    run = root / "search"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config("demo")))
    (run / "genotype.json").write_text(CELL.read_text())
    (run / "events.jsonl").write_text('{"v": 1, "type": "run_start", "time": 1.0, "kind": "search"}\n')
    return run


def _metrics(d: Path, top1: float, params: int, builtin: str | None = None) -> None:
    d.mkdir(parents=True)
    geno = json.loads(CELL.read_text()) | ({"meta": {"builtin": builtin}} if builtin else {})
    (d / "metrics.json").write_text(
        json.dumps(
            {
                "top1": top1,
                "top5": 1.0,
                "params": params,
                "flops": 2 * params,
                "image_size": 16,
                "epochs": 6,
                "dataset": "synthetic",
                "num_classes": 4,
                "genotype": geno,
            }
        )
    )


def test_run_dir_gives_the_sizes_and_the_comparison_with_the_baseline(tmp_path):
    run = _search_run(tmp_path)
    _metrics(run / "retrain", 0.8125, 151_000)
    _metrics(run / "baseline", 0.7500, 117_000, builtin="vit_b16")
    rc, out, err = finish(dasvit("show", run, "--format", "json"))
    assert rc == 0, err
    d = json.loads(out)
    assert (d["depth"], d["embed_dim"], d["image_size"], d["patch_size"], d["num_classes"]) == (4, 48, 16, 4, 4)
    net = Network(load_genotype(CELL), depth=4, dim=48, image_size=16, patch_size=4, num_classes=4)
    assert d["params"] == sum(p.numel() for p in net.parameters())
    assert [(c["name"], c["top1"]) for c in d["comparison"]] == [("searched cell", 0.8125), ("vit_b16", 0.75)]


def test_rich_comparison_table_and_missing_baseline_hint(tmp_path):
    from typer.testing import CliRunner

    from dasvit_tui.cli import app

    run = _search_run(tmp_path)
    _metrics(run / "retrain", 0.8125, 151_000)
    runner = CliRunner()
    alone = runner.invoke(app, ["show", str(run)], env={"COLUMNS": "100"})
    assert alone.exit_code == 0, alone.output
    assert "81.25 %" in alone.output and "dasvit retrain vit_b16 --headless --preset demo" in alone.output
    _metrics(tmp_path / "elsewhere", 0.75, 117_000, builtin="vit_b16")
    both = runner.invoke(app, ["show", str(run), "--baseline", str(tmp_path / "elsewhere")], env={"COLUMNS": "100"})
    assert both.exit_code == 0, both.output
    assert "81.25 %" in both.output and "75.00 %" in both.output and "151.00 k" in both.output
    assert "no ViT-B/16 baseline" not in both.output


OVER = {"cost": {"flops": 565_488, "params": 28_512}}
WITHIN = {"cost": {"flops": 420_240, "params": 21_480}}
VIT = {"cell": "vit_b16", "flops": 505_920, "params": 28_272}


@pytest.mark.parametrize(
    "meta, said",
    [
        ({**OVER, "budget": {**VIT, "in": "derivation"}}, "over its budget: .* the cheapest was taken"),
        ({**OVER, "budget": {**VIT, "in": "objective"}}, "over its budget: .* keeps the cell α expects within it"),
        ({**WITHIN, "budget": {**VIT, "in": "derivation"}}, "within its budget: one cell costs 420K FLOPs"),
        ({"cost": {"flops": "many", "params": None}, "budget": ["vit_b16"]}, None),  # damaged: nothing said, no crash
    ],
)
def test_show_says_whether_a_searched_cell_is_within_its_search_budget(tmp_path, meta, said):
    from typer.testing import CliRunner

    from dasvit_tui.cli import app

    geno = json.loads(CELL.read_text())
    geno["meta"] = {**geno.get("meta", {}), **meta}
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(geno))
    result = CliRunner().invoke(app, ["show", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    if said:
        text = " ".join(result.output.split())
        assert re.search(said, text) and "vit_b16's 506K and 28.3K" in text, text
    else:
        assert "budget" not in result.output

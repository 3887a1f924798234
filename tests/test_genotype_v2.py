"""Genotype version 2 (a FocusFormer architecture): round trip, validation, `dasvit show` and `dasvit retrain`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from conftest import REPO, engine_env
from dasvit.errors import ConfigError, GenotypeError
from dasvit.focus.space import FocusSpace, Subnet, load_base
from dasvit.model.build import network
from dasvit.model.genotype import genotype_from_json, load_genotype, subnet_genotype
from dasvit.model.network import Network
from dasvit.model.profile import profile_genotype

FIXTURES = Path(__file__).parent / "fixtures"
CELL = FIXTURES / "searched_cell.json"
META = {"image_size": 16, "patch_size": 4, "num_classes": 4}


def dasvit(*args, cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dasvit_tui.cli", *map(str, args)],
        cwd=cwd,
        env=engine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def space() -> FocusSpace:
    return FocusSpace(
        load_base(CELL), embed_dims=[20, 24], depths=[2, 3], heads=[1, 2, 3], mlp_ratios=[1.5, 2], head_dim=8
    )


def v2_doc() -> dict:
    s = space()
    return subnet_genotype(s, s.sample(random.Random(5)), META).to_json()


def test_v2_round_trips_and_v1_stays_v1(tmp_path):
    s = space()
    subnet = s.sample(random.Random(5))
    g = subnet_genotype(s, subnet, META)
    g.save(tmp_path / "a.json")
    back = load_genotype(tmp_path / "a.json")
    assert back.version == 2 and back.to_json() == g.to_json()
    assert (back.embed_dim, back.depth, back.head_dim) == (subnet.embed_dim, subnet.depth, 8)
    assert Subnet(back.embed_dim, back.depth, tuple(map(tuple, back.layers))) == subnet
    d = json.loads((tmp_path / "a.json").read_text())
    assert d["version"] == 2 and set(d["ops"]) >= {op for layer in d["layers"] for op in layer}
    v1 = load_genotype(CELL)
    assert v1.version == 1 and v1.to_json() == json.loads(CELL.read_text())  # v1 files load and save as before
    assert "layers" not in v1.to_json()


def test_v2_network_has_the_file_sizes_and_per_layer_ops():
    g = genotype_from_json(v2_doc())
    net = Network(g, g.depth, g.embed_dim, 16, 4, 4)
    assert len(net.cells) == g.depth
    for cell, layer in zip(net.cells, g.layers):
        assert [op for _, _, op in cell.edges] == layer
        for (_, _, name), op in zip(cell.edges, cell.ops):
            if name.startswith("msa_"):  # head width fixed: QKV width = heads x head_dim, not the width
                assert op.qkv.weight.shape == (3 * int(name[4:]) * g.head_dim, g.embed_dim)
    with pytest.raises(ConfigError, match="version-2"):
        network(g, g.depth + 1, g.embed_dim, 16, 4, 4)
    # a version-1 cell is built as before: heads split the width (QKV width = D)
    v1 = Network(load_genotype(CELL), 2, 24, 16, 4, 4)
    assert v1.cells[0].ops[0].qkv.weight.shape == (3 * 24, 24) and v1.cells[0].ops[0].head_dim == 24 // 4


def _mutations() -> dict[str, tuple[dict, str]]:
    d = v2_doc()
    n = len(d["edges"])
    wrong_type = [list(layer) for layer in d["layers"]]
    wrong_type[0][0] = "mlp_2"  # edge 0 is msa
    return {
        "embed_dim": ({**d, "embed_dim": 0}, "'embed_dim' must be a positive integer"),
        "head_dim_missing": ({k: v for k, v in d.items() if k != "head_dim"}, "'head_dim' must be a positive integer"),
        "depth_vs_layers": ({**d, "depth": d["depth"] + 1}, "'layers' must be a list of"),
        "layer_length": ({**d, "layers": [layer[:-1] for layer in d["layers"]]}, f"layers[0] must list {n} op names"),
        "op_type": ({**d, "layers": wrong_type}, "layers[0][0] = 'mlp_2' but edge 0 (0->2) is a msa edge"),
        "unknown_op": ({**d, "layers": [["conv"] * n] * d["depth"]}, "layers[0][0] = 'conv' is not an op"),
        "version_3": ({**d, "version": 3}, "version 3 is not supported"),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_malformed_v2_is_one_sentence_naming_the_field(case):
    doc, words = _mutations()[case]
    with pytest.raises(GenotypeError) as e:
        genotype_from_json(doc, source="g.json")
    assert words in str(e.value) and str(e.value).endswith(".")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[tuple[int, str, str], Path]]:
    """Every CLI run of this file, started together (2 cores, ~5 startups): bad files through show and retrain,
    a good one through `show --format json` and a tiny `retrain --preset demo`."""
    tmp = tmp_path_factory.mktemp("v2")
    muts = _mutations()
    for case in ("op_type", "depth_vs_layers"):
        (tmp / f"{case}.json").write_text(json.dumps(muts[case][0]))
    (tmp / "good.json").write_text(json.dumps(v2_doc()))
    procs = {
        "show_op_type": dasvit("show", tmp / "op_type.json"),
        "show_depth_vs_layers": dasvit("show", tmp / "depth_vs_layers.json"),
        "retrain_op_type": dasvit(
            "retrain", tmp / "op_type.json", "--headless", "--preset", "demo", "--run-dir", tmp / "bad"
        ),
        "show_json": dasvit("show", tmp / "good.json", "--format", "json"),
        "retrain": dasvit(
            "retrain",
            tmp / "good.json",
            "--headless",
            "--no-progress",
            "--preset",
            "demo",
            "--run-dir",
            tmp / "retrain",
            "--set",
            "retrain.epochs=1",
            "--set",
            "retrain.steps_per_epoch=3",
            "--set",
            "data.synthetic_val=64",
        ),
    }
    return {name: (finish(p, timeout=300), tmp) for name, p in procs.items()}


@pytest.mark.parametrize("run", ["show_op_type", "show_depth_vs_layers", "retrain_op_type"])
def test_malformed_v2_exits_2_from_show_and_retrain(cli_runs, run):
    (rc, _out, err), _ = cli_runs[run]
    words = _mutations()[run.split("_", 1)[1]][1]
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("dasvit: ") and words in lines[0], err


def test_show_draws_the_cell_once_and_a_table_per_layer(cli_runs):
    from dasvit.reports.cell import per_layer
    from dasvit_tui.render import elastic_cell, layer_table, render_cell

    g = genotype_from_json(v2_doc())
    cost = profile_genotype(g, g.depth, g.embed_dim, 16, 4, 4)
    assert sum(c["params"] for c in cost["layers"]) < cost["params"]
    console = Console(width=80, record=True, color_system=None)
    console.print(render_cell(elastic_cell(g), {k: v for k, v in cost.items() if k != "edge_params"}))
    console.print(layer_table(g, cost["layers"]))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "msa_*" in text and "mlp_*" in text and "msa_12" not in text  # sizes live in the table, not the cell
    rows = [line.split() for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(rows) == g.depth
    table = per_layer(g, cost["layers"])
    for k, (row, layer) in enumerate(zip(rows, table)):
        heads = [int(op[4:]) for op in g.layers[k] if op.startswith("msa_")]
        assert layer["heads"] == heads and layer["embed_dim"] == g.embed_dim
        assert row[0] == str(k + 1) and row[1] == str(g.embed_dim)

    (rc, out, err), _ = cli_runs["show_json"]
    assert rc == 0, err
    d = json.loads(out)
    assert (d["depth"], d["embed_dim"], d["image_size"], d["num_classes"]) == (g.depth, g.embed_dim, 16, 4)
    assert d["flops"] == cost["flops"] and d["params"] == cost["params"]
    assert [layer["params"] for layer in d["per_layer"]] == [c["params"] for c in cost["layers"]]


def test_retrain_trains_a_v2_genotype_at_its_own_sizes(cli_runs):
    from dasvit.train.retrain import load_model

    g = genotype_from_json(v2_doc())
    (rc, _out, err), tmp = cli_runs["retrain"]
    run = tmp / "retrain"
    assert rc == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert (m["depth"], m["embed_dim"]) == (g.depth, g.embed_dim)  # from the file, not the preset (4 x 48)
    from dasvit.run.presets import load_config

    classes = load_config("demo").data.synthetic_classes  # the classifier reads the preset's data
    assert m["num_classes"] == classes
    assert m["params"] == profile_genotype(g, g.depth, g.embed_dim, 16, 4, classes)["params"]
    assert load_genotype(run / "genotype.json").to_json() == g.to_json()
    net = load_model(run)
    assert [[op for _, _, op in c.edges] for c in net.cells] == g.layers


def test_show_sizes_a_specialized_genotype_from_its_run_config(tmp_path):
    from dasvit.reports.cell import resolve_sizes, v2_sizes
    from dasvit.run.presets import dump_config, load_config

    run = tmp_path / "focus-run"
    (run / "specialized").mkdir(parents=True)
    cfg = load_config("demo", ["data.synthetic_classes=7", "data.image_size=24"])
    (run / "config.yaml").write_text(dump_config(cfg))
    doc = v2_doc()
    doc["meta"] = {}
    path = run / "specialized" / "400K.json"
    path.write_text(json.dumps(doc))
    opts = dict.fromkeys(("depth", "embed_dim", "image_size", "patch_size", "num_classes"))
    sizes, origin = v2_sizes(genotype_from_json(doc), opts, *resolve_sizes(str(path), opts))
    assert str(run / "config.yaml") in origin
    assert (sizes.num_classes, sizes.image_size) == (7, 24)
    assert (sizes.depth, sizes.embed_dim) == (doc["depth"], doc["embed_dim"])

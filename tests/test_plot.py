"""`dasvit plot`: figures of a recorded demo run (and two runs overlaid), as valid PNG and SVG."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import events, of_type
from dasvit.errors import UserError
from dasvit.plot import load_series, plot_runs

RECORDED = Path(__file__).parent / "recorded_run"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def svg_text(path: Path) -> str:
    """All text of an SVG (it must parse as XML: a broken file fails here)."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return " ".join(t for el in root.iter() for t in (el.text, el.tail) if t)


def check_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    h, w, _ = matplotlib.image.imread(path).shape
    assert h > 200 and w > 400


def recorded_edges_and_ops() -> tuple[list[str], set[str]]:
    epochs = of_type(events(RECORDED), "epoch")
    edges = list(epochs[0]["arch_weights"])
    ops = {op for e in epochs for w in e["arch_weights"].values() for op in w}
    return edges, ops


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("figures")
    return out, plot_runs([RECORDED], out)


def test_a_search_run_gives_curves_op_weights_skip_and_its_retrain_as_png_and_svg(figures):
    out, written = figures
    assert sorted(p.name for p in written) == sorted(
        f"{stem}.{ext}" for stem in ("curves", "op_weights", "skip", "retrain") for ext in ("png", "svg")
    )
    assert sorted(out.iterdir()) == sorted(written)  # nothing else (no temp files left behind)
    umask = os.umask(0o022)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in written)  # readable as any file, not 0600
    for p in written:
        if p.suffix == ".png":
            check_png(p)
        else:
            svg_text(p)


def test_op_weights_has_a_panel_per_edge_and_a_legend_entry_per_op(figures):
    out, _ = figures
    text = svg_text(out / "op_weights.svg")
    edges, ops = recorded_edges_and_ops()
    assert len(edges) == 9
    for edge in edges:
        assert f"edge {edge}" in text
    for op in ops:
        assert op in text
    curves = svg_text(out / "curves.svg")
    assert all(f"stage {k}" in curves for k in (1, 2, 3))  # stage boundaries are named
    assert "top-5" in svg_text(out / "retrain.svg")


def test_series_numbers_epochs_across_stages_and_knows_what_each_prune_dropped():
    s = load_series(RECORDED)
    assert s.kind == "search" and s.stage_starts == {1: 0, 2: 3, 3: 6}
    assert [e["x"] for e in s.epochs] == list(range(1, 10))
    prunes = {e["stage"]: e["keep"] for e in of_type(events(RECORDED), "prune")}
    for stage, keep in prunes.items():
        last = s.of_stage(stage)[-1]["arch_weights"]
        for edge, ops in last.items():
            assert sorted(s.pruned[stage][edge]) == sorted(set(ops) - set(keep[edge]))
            assert all(op not in s.of_stage(stage + 1)[0]["arch_weights"][edge] for op in s.pruned[stage][edge])


def test_two_runs_are_overlaid_with_their_labels(tmp_path):
    other = tmp_path / "plain"
    shutil.copytree(RECORDED, other, ignore=shutil.ignore_patterns("retrain"))
    out = tmp_path / "figs"
    from typer.testing import CliRunner

    from dasvit_tui.cli import app

    result = CliRunner().invoke(
        app, ["plot", str(RECORDED), str(other), "--labels", "DASViT,plain DARTS", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    printed = [Path(line) for line in result.output.split()]
    assert all(p.is_file() for p in printed) and len(printed) == len(set(printed))
    names = {p.name for p in printed}
    assert {"op_weights-DASViT.svg", "op_weights-plain_DARTS.png", "skip_edges.svg", "skip.png", "curves.svg"} <= names
    edges, _ = recorded_edges_and_ops()
    text = svg_text(out / "skip_edges.svg")
    assert all(f"edge {e}" in text for e in edges)
    for name in ("skip", "curves", "skip_edges"):
        assert "DASViT" in svg_text(out / f"{name}.svg") and "plain DARTS" in svg_text(out / f"{name}.svg")
    check_png(out / "skip_edges.png")


def test_a_retrain_run_gives_its_curves_and_mistakes_are_one_sentence(tmp_path):
    written = plot_runs([RECORDED / "retrain"], tmp_path / "r")
    assert [p.name for p in written] == ["retrain.png", "retrain.svg"]
    with pytest.raises(UserError, match="cannot overlay"):
        plot_runs([RECORDED, RECORDED / "retrain"], tmp_path / "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text((RECORDED / "config.yaml").read_text())
    (empty / "events.jsonl").write_text(json.dumps(events(RECORDED)[0]) + "\n")  # run_start only
    with pytest.raises(UserError, match="no finished epoch"):
        plot_runs([empty], tmp_path / "y")

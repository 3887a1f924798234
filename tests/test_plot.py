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
from dasvit.reports.plot import plot_runs
from dasvit.reports.plot_curves import load_series

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


def test_op_weights_pruned_marks_never_cover_each_other():
    """At stage 1's end every op weighs about 1/8, so the ops pruned there sit at nearly the same height: each
    gets its own mark, at its weight, none over another (the recorded run drops 3 ops an edge there)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from dasvit.reports.figures import STYLE
    from dasvit.reports.plot_search import PRUNED_MS, op_colours, op_weights_figure

    s = load_series(RECORDED)
    with plt.rc_context(STYLE):
        fig = op_weights_figure(s, op_colours(s.ops()))
    try:
        fig.canvas.draw()
        size = PRUNED_MS * fig.dpi / 72
        panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("edge ")]
        crowded = 0
        for ax in panels:
            edge = ax.get_title().removeprefix("edge ")
            marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
            dropped = [(st, op) for st, by_edge in s.pruned.items() for op in by_edge[edge]]
            assert len(marks) == len(dropped)
            weights = sorted(s.of_stage(st)[-1]["arch_weights"][edge][op] for st, op in dropped)
            assert sorted(float(ln.get_ydata()[0]) for ln in marks) == weights  # each at its op's weight
            px = [ax.transData.transform((ln.get_xdata()[0], ln.get_ydata()[0])) for ln in marks]
            for i, (x1, y1) in enumerate(px):
                for x2, y2 in px[i + 1 :]:
                    assert abs(x1 - x2) >= size or abs(y1 - y2) >= size, f"edge {edge}: two marks overlap"
            stage1 = sorted(s.of_stage(1)[-1]["arch_weights"][edge][op] for op in s.pruned[1][edge])
            gaps = [(b - a) * ax.bbox.height / ax.get_ylim()[1] for a, b in zip(stage1, stage1[1:])]
            crowded += min(gaps) < size
        assert crowded >= 6  # the case this is about: at their weights, two of those marks would touch
    finally:
        plt.close(fig)


def test_retrains_whose_top5_lines_meet_at_100_percent_all_show_there(tmp_path):
    """`dasvit compare` on a task of few classes: every retrain's top-5 is 1.0 at every epoch (here the same
    recorded retrain three times, so every line meets the others). The dotted line at 1.0 shows each run's
    colour, not the last run's alone."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.image
    import matplotlib.pyplot as plt
    import numpy as np

    from dasvit.reports.figures import STYLE
    from dasvit.reports.plot_curves import RUN_COLOURS, plot_curves

    runs = [load_series(RECORDED / "retrain", label) for label in ("searched, depth 4", "ViT, depth 4", "searched, 6")]
    assert all(e["top5"] == 1.0 for e in runs[0].epochs)
    with plt.rc_context(STYLE):
        png = next(p for p in plot_curves(runs, tmp_path, "compare", "compare") if p.suffix == ".png")
    image = matplotlib.image.imread(png)[..., :3]
    h, w, _ = image.shape
    panel = image[: int(h * 0.8), w // 2 :]  # the accuracy panel, above the legend
    tops = []
    for colour in RUN_COLOURS[:3]:
        rgb = np.array(matplotlib.colors.to_rgb(colour))
        rows = np.nonzero((np.abs(panel - rgb).max(axis=2) < 0.12).any(axis=1))[0]
        assert rows.size, f"{colour} is nowhere in the accuracy panel"
        tops.append(rows[0])
    assert max(tops) - min(tops) <= 3  # each run's colour is on the one line at 1.0


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

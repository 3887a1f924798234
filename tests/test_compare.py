"""`dasvit compare`: searched cell vs ViT block at equal depth and matched FLOPs, on a recorded demo run,
with 1-epoch retrains of a few steps; the matched-FLOPs depth rule; reuse of finished retrains."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dasvit.errors import RunDirError
from dasvit.model.genotype import load_genotype
from dasvit.model.profile import profile_genotype
from dasvit.reports.compare import plan_compare
from dasvit_tui.cli import app, main

RECORDED = Path(__file__).parent / "recorded_run"
TINY = ["retrain.epochs=1", "retrain.steps_per_epoch=2", "data.synthetic_val=32"]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A copy of the recorded demo search (its retrain/ is a 6-epoch demo retrain at depth 4)."""
    run = tmp_path_factory.mktemp("compare") / "run"
    shutil.copytree(RECORDED, run)
    return run


@pytest.fixture(scope="module")
def first(run) -> dict:
    """`dasvit compare RUN --format json` with tiny retrains: the JSON it prints."""
    result = CliRunner().invoke(app, ["compare", str(run), "--format", "json", "--no-progress", *sets(TINY)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads((run / "compare.json").read_text())
    return printed


def test_compare_json_holds_both_comparisons_with_measured_metrics(first, run):
    depth = 4  # the demo preset's retrain.depth
    eq, mf = first["equal_depth"], first["matched_flops"]
    assert first["format"] == "dasvit-compare" and first["dataset"] == "synthetic" and first["embed_dim"] == 48
    assert first["recipe"]["epochs"] == 1 and first["overrides"] == TINY
    assert (eq["depth"], eq["searched"]["depth"], eq["vit"]["depth"]) == (depth, depth, depth)
    assert (eq["searched"]["cell"], eq["vit"]["cell"]) == ("searched", "vit_b16")
    assert mf["vit"] == eq["vit"] and mf["searched"]["depth"] == mf["depth"]
    for row in first["models"].values():
        m = json.loads((run / row["dir"] / "metrics.json").read_text())
        measured = ("top1", "top5", "params", "flops")
        assert [row[k] for k in measured] == [m[k] for k in measured]
        assert (m["epochs"], m["depth"]) == (1, row["depth"]) and row["trained"]
        assert 0 <= row["top1"] <= row["top5"] <= 1
        assert row["dir"].startswith("compare/")  # retrain/ holds a 6-epoch recipe: not this one
    # the ViT block is the ViT block: same params as the built-in vit_b16 cell at these sizes
    assert eq["vit"]["params"] == profile_genotype(load_genotype("vit_b16"), depth, 48, 16, 4, 4)["params"]


def test_matched_flops_depth_is_the_largest_that_fits_the_vit_budget(first, run):
    mf = first["matched_flops"]
    searched = load_genotype(run / "genotype.json")
    d, budget = mf["depth"], mf["vit"]["flops"]
    assert mf["searched"]["flops"] <= budget
    deeper = profile_genotype(searched, d + 1, 48, 16, 4, 4)["flops"]
    assert deeper > budget and deeper == mf["next_depth_flops"]
    # the recorded cell costs more per layer than the ViT block: fewer layers at matched FLOPs
    assert d < first["equal_depth"]["depth"] and first["equal_depth"]["searched"]["flops"] > budget


def test_a_second_compare_reuses_every_retrain(first, run):
    dirs = [run / r["dir"] for r in first["models"].values()]
    before = {p: p.stat().st_mtime_ns for d in dirs for p in d.iterdir()}
    result = CliRunner().invoke(app, ["compare", str(run), "--no-progress", *sets(TINY)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert result.output.count("reusing") == 3 and "training into" not in result.output
    assert {p: p.stat().st_mtime_ns for d in dirs for p in d.iterdir()} == before
    assert "matched FLOPs" in result.output and "equal depth" in result.output
    again = json.loads((run / "compare.json").read_text())
    assert again["models"].keys() == first["models"].keys()
    assert not any(r["trained"] for r in again["models"].values())
    shown = CliRunner().invoke(app, ["show", str(run)], env={"COLUMNS": "120"})  # `dasvit show` shows it too
    assert shown.exit_code == 0 and "matched FLOPs" in shown.output
    assert "no ViT-B/16 baseline" not in shown.output  # the compare table above has the ViT block


def test_plot_draws_the_compared_retrains(first, run, tmp_path):
    from dasvit.reports.plot import compare_series
    from dasvit.reports.plot_curves import plot_curves

    series = compare_series(run, first)
    names = {"vit_b16": "ViT block", "searched": "searched cell"}
    assert sorted(s.label for s in series) == sorted(
        f"{names[r['cell']]}, depth {r['depth']}" for r in first["models"].values()
    )
    written = plot_curves(series, tmp_path, "compare")
    text = (tmp_path / "compare.svg").read_text()
    assert len(written) == 2 and all(s.label in text for s in series)


def test_a_finished_retrain_with_the_same_recipe_is_reused_and_another_recipe_is_not(first, run):
    same = plan_compare(run)  # the recorded retrain/ used the run's own recipe at retrain.depth
    e = same.entry("searched", 4)
    assert (e.run_dir, e.state) == (run / "retrain", "done")
    other = plan_compare(run, ["retrain.epochs=2", "retrain.steps_per_epoch=2"])
    assert all(e.state == "new" and e.run_dir.parent == run / "compare" for e in other.entries)
    assert other.entry("vit_b16", 4).run_dir.name == "vit_b16-d4-2"  # vit_b16-d4 holds the 1-epoch recipe
    # the search's and FocusFormer's settings do not change what a retrain learns: still reused
    unrelated = plan_compare(run, [*TINY, "search.seed=7", "search.budget_in=objective", "focus.lstm.entropy=0.2"])
    assert all(e.state == "done" for e in unrelated.entries)


def test_a_run_without_genotype_or_a_retrain_run_is_a_one_sentence_error(tmp_path, monkeypatch, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(RECORDED, bare, ignore=shutil.ignore_patterns("genotype*.json", "retrain"))
    with pytest.raises(RunDirError, match="no genotype.json"):
        plan_compare(bare)
    with pytest.raises(RunDirError, match="is a retrain run"):
        plan_compare(RECORDED / "retrain")
    monkeypatch.setattr(sys, "argv", ["dasvit", "compare", str(bare)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_random_cells_of_the_same_space_are_retrained_and_ranked(first, run, tmp_path):
    from dasvit.model.cost import Cost, edges_cost
    from dasvit.run.presets import load_run_config
    from dasvit.search.budget import space_costs
    from dasvit.search.derivation import has_residual_path

    result = CliRunner().invoke(
        app, ["compare", str(run), "--random", "2", "--format", "json", "--no-progress", *sets(TINY)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rnd = data["random"]
    assert len(rnd["cells"]) == 2 and rnd["of"] == 3 and rnd["depth"] == data["equal_depth"]["depth"]
    op_costs, budget = space_costs(load_run_config(run / "config.yaml"))
    for row in rnd["cells"]:
        g = load_genotype(run / row["dir"] / "genotype.json")
        assert has_residual_path(g) and edges_cost(g.edges, op_costs).within(budget or Cost(10**18, 10**18))
        assert row["top1"] == json.loads((run / row["dir"] / "metrics.json").read_text())["top1"]
    searched = data["equal_depth"]["searched"]["top1"]
    assert rnd["searched_rank"] == 1 + sum(r["top1"] > searched for r in rnd["cells"])
    from dasvit.reports.plot import plot_runs

    written = plot_runs([run], tmp_path / "figures")
    assert tmp_path / "figures" / "random.svg" in written
    assert "random cells" in (tmp_path / "figures" / "random.svg").read_text()
    # two runs: each compared, then summarized; a copy of a run agrees with it completely
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    summary = tmp_path / "summary.json"
    result = CliRunner().invoke(
        app,
        ["compare", str(run), str(twin), "-r", "2", "--summary", str(summary), "--no-progress", *sets(TINY)],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    s = json.loads(summary.read_text())
    assert len(s["runs"]) == 2 and s["searched_top1"]["std"] == 0.0 and s["searched_top1"]["n"] == 2
    assert all(a["tau"] == pytest.approx(1.0) for a in s["alpha_agreement"].values())
    assert "mean ± std" in result.output and "Kendall" in result.output
    from rich.console import Console

    from dasvit_tui.commands.compare import summary_table

    narrow = Console(width=80, record=True, file=io.StringIO())
    narrow.print(summary_table(s))
    text = narrow.export_text()
    assert "…" not in text and "run" in text and "− random" in text  # every column whole at 80 columns


def test_repeats_retrain_each_network_with_other_seeds_and_report_their_mean(first, run, monkeypatch, capsys):
    """--repeats 2: the searched cell and the ViT block trained again with retrain.seed + 1 (the first
    retrains reused), a random cell once; a row is the mean of its retrains, each listed with its seed and
    metrics."""
    result = CliRunner().invoke(
        app, ["compare", str(run), "--repeats", "2", "-r", "1", "--format", "json", "--no-progress", *sets(TINY)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["repeats"] == 2
    seed = data["recipe"]["seed"]
    random1 = data["models"].pop(f"random1@{data['equal_depth']['depth']}")
    assert [r["seed"] for r in random1["runs"]] == [seed] and random1["top1"] == random1["runs"][0]["top1"]
    assert data["random"]["cells"] == [random1]
    for key, row in data["models"].items():
        runs = row["runs"]
        assert [r["seed"] for r in runs] == [seed, seed + 1], key
        assert runs[0]["dir"] == first["models"][key]["dir"]  # the first compare's retrain, reused
        metrics = [json.loads((run / r["dir"] / "metrics.json").read_text()) for r in runs]
        assert [m["top1"] for m in metrics] == [r["top1"] for r in runs]
        assert row["top1"] == pytest.approx(sum(m["top1"] for m in metrics) / 2)
        cfg = (run / runs[1]["dir"] / "config.yaml").read_text()
        assert f"seed: {seed + 1}" in cfg
    eq = data["equal_depth"]
    assert eq["searched"]["top1"] == data["models"][f"searched@{eq['depth']}"]["top1"]
    monkeypatch.setattr(sys, "argv", ["dasvit", "compare", str(run), "--repeats", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "--repeats must be between 1 and" in capsys.readouterr().err


def test_the_random_figure_names_each_mark_even_when_the_first_run_lacks_it(tmp_path):
    from dasvit.reports.plot_compare import plot_random

    def compare(matched_depth: int) -> dict:
        eq = {"depth": 4, "searched": {"top1": 0.85}, "vit": {"top1": 0.84, "epochs": 30}}
        return {
            "dataset": "fashion-mnist",
            "embed_dim": 48,
            "equal_depth": eq,
            "matched_flops": {"depth": matched_depth, "searched": {"top1": 0.86}},
            "random": {"cells": [{"top1": t} for t in (0.83, 0.84, 0.85)]},
        }

    # the first run's matched-FLOPs depth is its equal depth (no hollow star); the second's is deeper
    written = plot_random([compare(4), compare(5)], ["s0", "s1"], tmp_path)
    svg = next(p for p in written if p.suffix == ".svg").read_text()
    assert svg.count("searched cell, matched FLOPs (deeper)") == 1  # its legend entry, once
    assert svg.count("median of the random cells") == 1

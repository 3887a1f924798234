"""Hostile input, second round (issue 31): every file dasvit reads back is untrusted (metrics.json,
compare.json, the memory estimate, events' numbers), every number is finite, every write is atomic, and a
user's mistake is one sentence found before the work it would spoil.

The fuzz tests damage real files of a real (tiny) comparison field by field with a seeded generator and run
the real commands on them: each is a clean refusal (one sentence, exit 2) or the rest shown with a note,
never a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from test_hostile import RECORDED, cli, copy, fill, mount_tmpfs, one_sentence

from conftest import sets
from dasvit.run import jsonio, layout

TINY_RETRAIN = ["retrain.epochs=1", "retrain.steps_per_epoch=2", "data.synthetic_val=32"]
HOSTILE_VALUES = [
    {},
    [],
    [1, 2],
    "high",
    None,
    True,
    -1,
    1.5,
    "[/bold]",
    "$\\frac$",
    {"cells": 5},
    "x" * 5000,
]
HUGE_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "1" + "0" * 400]


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """A copy of the recorded demo search with a finished tiny comparison (one random cell)."""
    run = tmp_path_factory.mktemp("reads") / "run"
    shutil.copytree(RECORDED, run)
    from typer.testing import CliRunner

    from dasvit_tui.cli import app

    result = CliRunner().invoke(app, ["compare", str(run), "--random", "1", "--no-progress", *sets(TINY_RETRAIN)])
    assert result.exit_code == 0, result.output
    return run


def paths_of(doc, prefix=()):
    """Every key path of a JSON document (objects and lists), the document itself first."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from paths_of(v, (*prefix, i))


def replaced(doc, path, value):
    if not path:
        return value
    out = json.loads(json.dumps(doc))
    cur = out
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return out


def variants(doc, seed: int, n: int):
    """`n` damaged copies of `doc` as JSON text: a field replaced by a hostile value or a number JSON cannot
    hold as a finite float or a 64-bit integer, or the whole file garbage."""
    rng = random.Random(seed)
    paths = list(paths_of(doc))
    yield b"\x00\xff not json"
    yield b"[1, 2]"
    yield b"{}"
    yield b"[" * 100 + b"]" * 100
    for _ in range(n):
        path = rng.choice(paths)
        if rng.random() < 0.3 and path:
            marker = "__HUGE__"
            text = json.dumps(replaced(doc, path, marker)).replace(f'"{marker}"', rng.choice(HUGE_NUMBERS))
            yield text.encode()
        else:
            yield json.dumps(replaced(doc, path, rng.choice(HOSTILE_VALUES))).encode()


def clean_outcome(code: int, err: str) -> None:
    """A reader's answer to a damaged file: done (the rest shown, the damage noted) or one sentence."""
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        one_sentence(err)


def render(data) -> str:
    """compare.json's tables as `dasvit show` and `dasvit compare` print them, into a string."""
    from rich.console import Console

    from dasvit_tui.commands.compare import compare_table, standing_table

    console = Console(width=120, record=True, file=open(os.devnull, "w"))
    console.print(compare_table(data))
    table = standing_table(data)
    if table is not None:
        console.print(table)
    return console.export_text()


def test_fuzzed_metrics_and_compare_json_are_read_whole_or_refused_in_one_sentence(compared, tmp_path, capsys):
    """Each reader a damaged file reached before (compare's metrics and compare.json readers, show's
    metrics reader, plot's compare.json reader), on 108 damaged copies; then the commands end to end."""
    from dasvit.reports.plot_compare import plot_cost, plot_random, plot_ranking
    from dasvit.run.records import DamagedRecord, read_compare_file, read_metrics

    run = copy(compared, tmp_path / "run")
    metrics = run / "compare" / "searched-d4" / layout.METRICS
    compare_json = run / layout.COMPARE_JSON
    read = {metrics: lambda: read_metrics(metrics.parent), compare_json: lambda: read_compare_file(run)}
    outcomes = {"read": 0, "refused": 0}
    for path in (metrics, compare_json):
        original, doc = path.read_bytes(), json.loads(path.read_text())
        for text in variants(doc, seed=len(path.name), n=50):
            path.write_bytes(text)
            try:
                data = read[path]()
            except DamagedRecord as e:
                assert str(path) in str(e) and "\n" not in str(e)
                outcomes["refused"] += 1
                continue
            outcomes["read"] += 1
            if path == compare_json:  # what was read whole is drawn whole
                assert "Traceback" not in render(data)
                for draw in (plot_cost, plot_ranking):
                    draw(data, "run", tmp_path / "fig")
                plot_random([data], ["run"], tmp_path / "fig")
        path.write_bytes(original)
    assert outcomes["refused"] >= 55 and outcomes["read"] >= 8
    # end to end: the damage is one sentence (compare) or a note beside the rest (show, plot)
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "top1": "high"}))
    code, _, err = cli(capsys, "compare", run, "--random", "1", "--no-progress", *sets(TINY_RETRAIN))
    assert code == 2 and "searched-d4" in one_sentence(err) and "retrain it" in err
    (run / "retrain" / layout.METRICS).write_text(json.dumps({"top1": 0.5, "genotype": {"meta": [1]}}))
    compare_json.write_text(json.dumps({"format": "dasvit-compare", "dataset": "[/bold]"}))
    code, out, err = cli(capsys, "show", run)
    flat = " ".join(out.split())  # rich wraps long paths at the terminal's width
    assert code == 0 and flat.count("not shown") == 2 and "compare.json" in "".join(out.split()), out
    assert "Traceback" not in err
    code, out, err = cli(capsys, "plot", run, "--out", tmp_path / "fig")
    assert code == 0 and "note: no comparison figures" in err and "Traceback" not in err


def test_a_metrics_file_that_is_a_link_or_huge_is_refused_and_never_read_through(compared, tmp_path, capsys):
    run = copy(compared, tmp_path / "run")
    metrics = run / "compare" / "vit_b16-d4" / layout.METRICS
    big = tmp_path / "sparse"
    with open(big, "wb") as f:
        f.truncate(3 << 30)  # a 3 GB sparse file: read unbounded it was a MemoryError
    metrics.unlink()
    metrics.symlink_to(big)
    code, _, err = cli(capsys, "compare", run, "--random", "1", "--no-progress", *sets(TINY_RETRAIN))
    assert code == 2 and "symbolic link" in one_sentence(err)
    metrics.unlink()
    shutil.copyfile(__file__, metrics)  # text, not JSON
    code, _, err = cli(capsys, "compare", run, "--random", "1", "--no-progress", *sets(TINY_RETRAIN))
    assert code == 2 and "vit_b16-d4" in one_sentence(err)
    shutil.copyfile(compared / "compare" / "vit_b16-d4" / layout.METRICS, metrics)
    (run / "compare" / "random1.json").unlink()
    (run / "compare" / "random1.json").mkdir()  # where the drawn cell is kept
    code, _, err = cli(capsys, "compare", run, "--random", "1", "--no-progress", *sets(TINY_RETRAIN))
    assert code == 2 and "random1.json is a directory" in one_sentence(err)


@pytest.fixture(scope="module")
def memory_file(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from dasvit_tui.cli import app

    path = tmp_path_factory.mktemp("memory") / "m.json"
    args = ["search", "--dry-run", "--preset", "demo", "--set", "search.stages=[{depth: 1, keep: 8, epochs: 1}]"]
    result = CliRunner().invoke(app, [*args, "--json", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_fuzzed_memory_estimates_are_drawn_or_refused_in_one_sentence(memory_file, tmp_path, capsys):
    doc = json.loads(memory_file.read_text())
    path = tmp_path / "m.json"
    for text in variants(doc, seed=7, n=40):
        path.write_bytes(text)
        code, _, err = cli(capsys, "plot", "--memory", path, "--out", tmp_path / "fig")
        clean_outcome(code, err)
    doc["stages"] = doc["stages"] * 3000  # 10 MB of stages: past 120 s before
    path.write_text(json.dumps(doc))
    start = time.monotonic()
    code, _, err = cli(capsys, "plot", "--memory", path, "--out", tmp_path / "fig")
    assert code == 2 and "memory estimate" in one_sentence(err) and time.monotonic() - start < 10


def test_event_numbers_beyond_a_64_bit_integer_or_a_finite_float_are_read_as_absent(tmp_path, capsys):
    from dasvit.run.events import clean_event

    run = copy(RECORDED, tmp_path / "run")
    lines = (run / layout.EVENTS).read_text().splitlines()
    epoch = next(i for i, ln in enumerate(lines) if '"type":"epoch"' in ln.replace(" ", ""))
    ev = json.loads(lines[epoch])
    for key, huge in (("epoch", "1" + "0" * 400), ("val_acc", "1e400"), ("train_loss", "NaN"), ("lr", "-Infinity")):
        text = json.dumps({**ev, key: "__X__"}).replace('"__X__"', huge)
        read = clean_event(jsonio.parse_line(text.encode()))
        assert key not in read and read["stage"] == ev["stage"]
        lines.append(text)
    (run / layout.EVENTS).write_text("\n".join(lines) + "\n")
    code, _, err = cli(capsys, "plot", run, "--out", tmp_path / "fig")
    assert code == 0 and "Traceback" not in err


def float_keys() -> list[str]:
    """Every float key of the config (its dataclasses' float fields), dotted."""
    import dataclasses
    import typing

    from dasvit.run.config import Config

    out = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif tp is float:
                out.append(f"{prefix}{f.name}")

    walk(Config, "")
    return out


def test_every_float_config_key_refuses_nan_and_infinity_in_one_sentence(capsys, tmp_path):
    keys = float_keys()
    assert len(keys) >= 30 and "search.fairness.beta_skip" in keys and "data.holdout" in keys
    for key in keys:
        for value in (".nan", ".inf", "-.inf"):
            code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--set", f"{key}={value}")
            assert code == 2 and "finite number" in one_sentence(err) and key in err, (key, value, err)
    code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--set", "retrain.min_lr=-0.5")
    assert code == 2 and "retrain.min_lr must be 0 or more" in one_sentence(err)


def test_a_loss_that_diverges_ends_the_run_failed_with_one_sentence_naming_the_epoch(tmp_path, capsys):
    run = tmp_path / "div"
    over = ["retrain.epochs=2", "retrain.steps_per_epoch=2", "retrain.lr=1.0e+20", "retrain.grad_clip=0"]
    code, out, err = cli(capsys, "retrain", RECORDED, "--headless", "--no-progress", "--run-dir", run, *sets(over))
    line = one_sentence(err)
    assert code == 2 and "the training loss of epoch 1/2 is nan" in line
    last = json.loads((run / layout.EVENTS).read_text().splitlines()[-1])
    assert last["type"] == "run_end" and last["status"] == "failed" and "nan" in last["message"]
    assert not (run / layout.METRICS).exists()


def test_a_yaml_alias_bomb_is_refused_at_once_and_the_sentence_stays_short(capsys):
    bomb = (
        "["
        + ", ".join(
            ["&a [1, 2]"]
            + [f"&{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]" for p, c in zip("abcdefgh", "bcdefghi")]
        )
        + ", *i]"
    )
    for value in (bomb, "&a [1] "):
        start = time.monotonic()
        code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--set", f"space.ops={value}")
        assert code == 2 and time.monotonic() - start < 5 and len(one_sentence(err)) < 400
    six = "[" + ", ".join(["&a [1, 2, 3]"] + [f"&{c} [*{p}, *{p}, *{p}, *{p}]" for p, c in zip("abcde", "bcdef")]) + "]"
    code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--set", f"data.name={six}")
    assert code == 2 and len(one_sentence(err)) < 400


def test_dry_run_refuses_a_bad_json_path_or_batch_before_the_estimate_and_writes_atomically(tmp_path, capsys, mounts):
    one = "search.stages=[{depth: 1, keep: 8, epochs: 1}]"
    for target, words in ((tmp_path, "is a directory"), (Path("/proc/nope/m.json"), "cannot write")):
        start = time.monotonic()
        code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--set", one, "--json", target)
        assert code == 2 and words in one_sentence(err) and time.monotonic() - start < 3
    code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--measure-batches", "1,1000000000")
    assert code == 2 and "at most 65,536" in one_sentence(err)
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1m")
    mounts.append(disk)
    (disk / "m.json").write_text('{"earlier": "estimate"}')
    fill(disk)
    code, _, err = cli(capsys, "search", "--dry-run", "--preset", "demo", "--set", one, "--json", disk / "m.json")
    last = err.strip().splitlines()[-1]  # after the estimate's own progress lines
    assert code == 2 and last.startswith("dasvit: no space left on the device") and "Traceback" not in err
    assert (disk / "m.json").read_text() == '{"earlier": "estimate"}'  # the earlier estimate is whole


def test_a_full_disk_under_plot_or_compare_is_one_sentence(compared, tmp_path, capsys, mounts):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "64m")
    mounts.append(disk)
    run = copy(compared, disk / "run")
    shutil.rmtree(run / "figures", ignore_errors=True)
    fill(disk)
    code, _, err = cli(capsys, "plot", run)
    assert code == 2 and "no space left on the device" in one_sentence(err)
    code, _, err = cli(capsys, "compare", run, "--random", "1", "--no-progress", *sets(TINY_RETRAIN))
    assert code == 2 and "no space left on the device" in one_sentence(err) and "compare.json" in err


def test_compare_refuses_while_planning_what_it_would_refuse_after_training(compared, tmp_path, capsys):
    from dasvit.limits import MAX_DEPTH
    from dasvit.reports.compare import plan_compare

    plan = plan_compare(compared, [*TINY_RETRAIN, "retrain.depth=1000"], say=lambda s: None)
    assert all(e.depth <= MAX_DEPTH for e in plan.entries)
    run = copy(compared, tmp_path / "v2")
    g = json.loads((run / "genotype.json").read_text())
    g.update(version=2, embed_dim=48, depth=2, head_dim=12, layers=[[e["op"] for e in g["edges"]]] * 2)
    (run / "genotype.json").write_text(json.dumps(g))
    code, _, err = cli(capsys, "compare", run, "--no-progress", *sets(TINY_RETRAIN))
    assert code == 2 and "version-2 genotype" in one_sentence(err)
    code, _, err = cli(capsys, "compare", compared, "--summary", tmp_path / "s.json", *sets(TINY_RETRAIN))
    assert code == 2 and "two or more" in one_sentence(err)
    start = time.monotonic()
    code, _, err = cli(capsys, "compare", compared, compared, "--summary", tmp_path, *sets(TINY_RETRAIN))
    assert code == 2 and "is a directory" in one_sentence(err) and time.monotonic() - start < 5
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_preset_that_is_a_directory_fifo_or_device_says_what_it_is(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "dir.yaml").mkdir()
    for preset, words in (
        (tmp_path / "dir.yaml", "is a directory"),
        (tmp_path / "fifo.yaml", "not a regular file"),
        ("/dev/zero", "not a regular file"),
    ):
        start = time.monotonic()
        code, _, err = cli(capsys, "search", "--dry-run", "--preset", preset)
        assert code == 2 and words in one_sentence(err) and time.monotonic() - start < 5


def test_approve_keep_says_what_a_json_non_object_or_a_repeated_op_is(tmp_path, capsys):
    code, _, err = cli(capsys, "approve", RECORDED, "--keep", "[1, 2]")
    assert code == 2 and "is JSON, but not an object" in one_sentence(err)
    from dasvit.model.opspec import keep_problem

    why = keep_problem({"0->2": ["msa_4"] * 7}, {"0->2": ["msa_4", "skip"]})
    assert why is not None and "lists an op twice" in why


def test_show_says_divisibility_and_holds_a_v2_genotypes_own_sizes_to_the_bounds(tmp_path, capsys):
    code, _, err = cli(capsys, "show", "vit_b16", "--image-size", "100", "--patch", "7")
    assert code == 2 and "must be a multiple of --patch 7" in one_sentence(err)
    g = json.loads((RECORDED / "genotype.json").read_text())
    v2 = {**g, "version": 2, "embed_dim": 48, "depth": 2, "head_dim": 12, "layers": [[e["op"] for e in g["edges"]]] * 2}
    for meta, words in (({"image_size": 4096, "patch_size": 1}, "patches"), ({"image_size": 10**30}, "")):
        path = tmp_path / "v2.json"
        path.write_text(json.dumps({**v2, "meta": meta}))
        start = time.monotonic()
        code, _, err = cli(capsys, "show", path)
        assert time.monotonic() - start < 10 and "Traceback" not in err
        if words:
            assert code == 2 and words in one_sentence(err) and "lower --depth or --dim" not in err
    wide = {**v2, "edges": [{"from": 0, "to": 2, "op": "skip"}] * 560, "depth": 1024}
    wide["layers"] = [["skip"] * 560] * 1024
    path.write_text(json.dumps({**wide, "meta": {}}))
    start = time.monotonic()
    code, _, err = cli(capsys, "show", path)
    assert code == 2 and time.monotonic() - start < 20 and "Traceback" not in err


def test_an_idx_gzip_bomb_is_refused_without_decompressing_it_all(tmp_path):
    from dasvit.errors import DataError
    from dasvit.train.datasets import read_idx

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(header)
        zeros = b"\0" * (1 << 20)
        for _ in range(64 * 60000 * 784 // len(zeros) // 32):  # more than the header promises
            f.write(zeros)
    start = time.monotonic()
    with pytest.raises(DataError, match="damaged"):
        read_idx(bomb)
    assert time.monotonic() - start < 10

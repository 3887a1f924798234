"""Hostile input (issue 18): a user's mistake is one sentence and exit 2, a damaged run file never crashes a
reader nor wedges the engine, nothing asks for an unbounded size or loop, no planted link is written through,
no escape sequence read from a run directory or a path reaches the terminal.

Every test runs the real code on real files: tiny in-process searches, real mounts (as root) for a full or
read-only disk, the real Textual app under a pilot. The fuzz tests draw their lines from a seeded generator.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import events, of_type, sets
from dasvit.run import jsonl, layout, runlock, runstatus

HERE = Path(__file__).parent
RECORDED, RECORDED_FOCUS = HERE / "recorded_run", HERE / "recorded_focus_run"

# a search of two one-epoch stages of one step: a second of work
MINI = [
    "search.stages=[{depth: 1, keep: 8, epochs: 1}, {depth: 1, keep: 4, epochs: 1}]",
    "search.steps_per_epoch=1",
    "search.arch_warmup_epochs=0",
    "data.synthetic_train=64",
    "data.synthetic_val=16",
    "data.batch_size=16",
    "data.workers=0",
    "space.embed_dim=24",
    "search.pts.dim=8",
]
ONE_STAGE = "search.stages=[{depth: 1, keep: 8, epochs: 1}]"
ESCAPES = ("\x1b", "\x07", "\x9b", "\r")


def search(*args: str) -> int:
    from dasvit.search.searcher import main

    return main([*map(str, args), "--no-progress"])


def cli(capsys, *args) -> tuple[int, str, str]:
    """`dasvit ARGS` in this process, through the CLI's own error handling: (exit code, stdout, stderr)."""
    from dasvit_tui.cli import main

    capsys.readouterr()
    old = sys.argv
    sys.argv = ["dasvit", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dasvit: ") and "Traceback" not in err, err
    return lines[0]


def lines_of(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]


def parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """A finished MINI search the tests below copy and damage."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    assert search("--preset", "demo", "--run-dir", run, *sets(MINI)) == 0
    return run


def copy(run: Path, dst: Path) -> Path:
    return shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")


def fill(disk: Path) -> None:
    """Write zeros until the file system has not one byte left."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# the hostile lines: fixed cases of the issue, and a seeded generator of more


FIXED_LINES = [
    b"[" * 100_000 + b"]" * 100_000,  # nesting that kills json's recursion
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"[" * 70 + b"]" * 70,  # past MAX_JSON_DEPTH, within json's recursion
    bytes(b for b in range(256) if b != 10),  # binary
    b"\xff\xfe{}",  # not UTF-8
    b"{}",
    b"null",
    b"[1, 2]",
    b'"a string"',
    b"1e999",
    b'{"type": "epoch", "stage": ' + b"9" * 5000 + b"}",  # an integer Python will not parse
    b'{"type":"epoch","stage":[1],"epoch":"3","epochs":"x","arch_weights":"zzz","train_loss":"0.5","top1":"1"}',
    b'{"type":"epoch","stage":1,"epoch":1,"epochs":2,"train_loss":NaN,"val_loss":Infinity,"val_acc":-Infinity,'
    b'"time":1e999,"arch_weights":{"0->2":{"skip":NaN,"mlp_4":1e308},"1->2":{"msa_4":-1e308,"zero":2}}}',
    b'{"type":"run_start","kind":"search","config":{"search":{"stages":"zzz","fairness":{"lower":"a","upper":[1]}},'
    b'"space":{"ops":7}}}',
    b'{"type":"run_start","kind":"search","config":{"search":{"stages":[{"depth":"x","keep":[],"epochs":"9"}]}}}',
    b'{"type":"run_start","kind":[1],"config":[1,2],"pid":"x","time":-1e999}',
    b'{"type":"run_end","status":"\\u001b]0;pwned\\u0007[/bold]","message":"\\ud800\\u009b31m [red]x"}',
    b'{"type":"error","message":[1],"traceback":{"x":1}}',
    b'{"type":"error","message":"\\u001b[2J\\u001b[H","traceback":"\\u001b]0;t\\u0007\\nline"}',
    b'{"type":"prune_proposal","stage":"1","keep":{"0->2":"zzz"}}',
    b'{"type":"prune_proposal","stage":1,"keep":{"0->2":[1]},"weights":{"0->2":{"skip":"x"}}}',
    b'{"type":"prune","stage":1,"keep":[],"by":5}',
    b'{"type":"epoch","stage":1,"epoch":100000000000000000000000,"epochs":-5,"time":1e17}',
    b'{"type":"space","budgets":["a",NaN],"min_flops":1e308,"max_flops":-1e308,"min_params":"x"}',
    b'{"type":"epoch","stage":1,"epoch":2,"epochs":3,"points":[1,{"flops":NaN,"val_acc":"x"},'
    b'{"flops":1e300,"val_acc":1e300},{"flops":1e299,"val_acc":-1e299}],"sampler":{"bins":[1,'
    b'{"budget_flops":0,"mean_flops":NaN},{"budget_flops":1,"mean_flops":1e308,"feasible":"x","entropy":NaN}]}}',
    b'{"type":"epoch","stage":1,"epoch":3,"epochs":3,"sampler":{"bins":[{"budget_flops":"x","mean_flops":"y"}]}}',
    b'{"type":"genotype","stage":1,"genotype":{"format":"dasvit-genotype","edges":[1,{"to":[2]}],"output":"x"}}',
    b'{"type":"epoch","stage":1,"epoch":1,"epochs":1,"fairness":{"skip":"x","total":NaN},"skip_fraction":[1]}',
    b'{"type": "approve"}',  # a control line in the event log
    b'{"type":"run_start","kind":"search","preset":"[/bold]","device":"\\u001b]0;dev\\u0007","config":{}}',  # Rich raised
]
TOO_LONG = b"x" * ((8 << 20) + 10)  # longer than a line may be (8 MiB)
NOT_OBJECTS = 10  # of FIXED_LINES: no JSON object within the bounds (too deep, too long, not JSON, not an object)
STRINGS = ["\x1b]0;pwned\x07", "\x9b31m", "[/bold]", "[red]x[/]", "\ud800", "", "x" * 300, "0.5", "NaN", "->"]
NUMBERS = [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10**30, -1, 0, 1, 0.5, True, False]
FIELDS = [  # what events hold, and what their parts hold
    *("type", "v", "time", "kind", "preset", "device", "pid", "config", "resumed", "stage", "stages", "epoch"),
    *("epochs", "depth", "train_loss", "val_loss", "train_acc", "val_acc", "top1", "top5", "lr", "seconds"),
    *("images_per_s", "skip_fraction", "peak_mem_bytes", "arch_weights", "weights", "keep", "fairness", "status"),
    *("message", "traceback", "genotype", "points", "sampler", "budgets", "min_flops", "max_flops", "by", "phase"),
    *("x", "0->2", "bins", "flops", "budget_flops", "mean_flops", "val_acc", "lower", "upper", "search", "space"),
]
TYPES = ["run_start", "epoch", "prune_proposal", "prune", "genotype", "run_end", "error", "space", "approve"]


def hostile_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.35:
        return rng.choice(NUMBERS + STRINGS + [None])
    if r < 0.55:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if r < 0.8:
        return {rng.choice(FIELDS + STRINGS): hostile_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    # the shape of arch weights or a keep, with hostile leaves
    ops = rng.sample(["zero", "skip", "msa_4", "mlp_4", "\x1b[1m", "[b]"], 3)
    return {e: ({o: rng.choice(NUMBERS) for o in ops} if rng.random() < 0.5 else ops) for e in ("0->2", "1->2")}


def hostile_lines(seed: int, n: int, too_long: bool = False) -> list[bytes]:
    """FIXED_LINES (and TOO_LONG) and `n` more: objects of real event types whose fields hold any type, bytes
    cut anywhere."""
    rng = random.Random(seed)
    out = [*FIXED_LINES, *([TOO_LONG] if too_long else [])]
    for _ in range(n):
        ev = {"type": rng.choice(TYPES + [1, None, ["epoch"], {"t": 1}])}
        for key in rng.sample(FIELDS, rng.randrange(1, 8)):
            ev[key] = hostile_value(rng)
        line = json.dumps(ev, allow_nan=True).encode()
        if rng.random() < 0.1:  # cut short, or with a byte flipped
            line = line[: rng.randrange(1, len(line))]
        elif rng.random() < 0.1:
            i = rng.randrange(len(line))
            line = line[:i] + bytes([line[i] ^ 0x80]) + line[i + 1 :]
        out.append(line)
    return out


def with_hostile_lines(src: Path, dst: Path, seed: int, n: int = 150, too_long: bool = False) -> Path:
    run = copy(src, dst)
    with open(run / layout.EVENTS, "ab") as f:
        f.write(b"\n".join(hostile_lines(seed, n, too_long)) + b"\n")
    return run


def well_formed_command(obj) -> bool:
    """What a control line must be for the engine to act on it (the issue's rule, written out here)."""
    if not isinstance(obj, dict) or obj.get("type") not in ("approve", "stop") or not isinstance(obj["type"], str):
        return False
    t, stage, keep = obj.get("time", 0), obj.get("stage"), obj.get("keep")
    return (
        type(t) in (int, float)
        and abs(t) < 1e18
        and (stage is None or type(stage) is int)
        and (keep is None or (isinstance(keep, dict) and all(isinstance(v, list) for v in keep.values())))
        and all(isinstance(o, str) for v in (keep or {}).values() for o in v)
    )


# ---------------------------------------------------------------------------------------------
# the engine: control lines, checkpoints, a run killed early, a changed config


def test_hostile_control_lines_appended_to_a_live_run_each_get_an_error_event_and_the_run_finishes(tmp_path):
    """The deeply nested line of the issue killed the engine (RecursionError), and every --resume again."""
    run = tmp_path / "run"
    hostile = [
        *FIXED_LINES[:11],
        TOO_LONG,
        b'{"type": [1]}',
        b'{"type": "stop", "time": "now"}',
        b'{"type": "stop", "time": NaN}',
        b'{"type": "approve", "stage": "1"}',
        b'{"type": "approve", "keep": {"0->2": "zzz"}}',
    ]

    def append_when_waiting() -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if (run / layout.EVENTS).exists() and b'"prune_proposal"' in (run / layout.EVENTS).read_bytes():
                with open(run / layout.CONTROL, "ab") as f:
                    f.write(b"\n".join([*hostile, b'{"type": "approve"}']) + b"\n")
                return
            time.sleep(0.05)

    writer = threading.Thread(target=append_when_waiting, daemon=True)
    writer.start()
    assert search("--preset", "demo", "--run-dir", run, "--approve", "manual", *sets(MINI)) == 0
    writer.join()
    evs = events(run)
    ignored = [e for e in of_type(evs, "error") if "ignored a malformed control line" in e["message"]]
    assert len(ignored) == len(hostile) and all(not e["traceback"] for e in ignored)
    assert of_type(evs, "prune")[0]["by"] == "user" and of_type(evs, "run_end")[-1]["status"] == "finished"


def test_fuzzed_control_lines_never_raise_in_the_engine_and_each_malformed_one_is_an_error_event(tmp_path):
    from dasvit.run.distributed import DistInfo
    from dasvit.run.presets import load_config
    from dasvit.run.runtime import Run

    run_dir = tmp_path / "run"
    with Run(run_dir, load_config("demo"), "search", DistInfo(), progress=False) as run:
        lines = hostile_lines(seed=18, n=300, too_long=True)
        with open(run_dir / layout.CONTROL, "ab") as f:
            f.write(b"\n".join(lines) + b"\n")
        run.poll_control()
        taken = run.take_control("approve") + run.take_control("stop")
    malformed = [ln for ln in lines if not well_formed_command(_json_or_none(ln))]
    errors = [e for e in of_type(events(run_dir), "error") if "malformed control line" in e["message"]]
    assert len(errors) == len(malformed) and len(taken) == len(lines) - len(malformed)
    assert not any(ch in e["message"] for e in errors for ch in ESCAPES)


def _json_or_none(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again_on_a_fresh_line(mini, tmp_path):
    """Resume said "no checkpoint.pt yet; start it again", starting again "already holds a run". Now it starts,
    its run_start on a line of its own after the cut one, the temporary files of the kill removed."""
    run = copy(mini, tmp_path / "run")
    for name in (
        "checkpoint.pt",
        "checkpoint.prev.pt",
        "genotype.json",
        "genotype-stage1.json",
        "genotype-stage2.json",
    ):
        (run / name).unlink()
    first, second = lines_of(run / layout.EVENTS)[:2]
    (run / layout.EVENTS).write_bytes(first + b"\n" + second[:40])  # killed mid-write
    (run / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (run / ".checkpoint.prev.pt.4242.tmp").write_bytes(b"a link being rotated")
    assert search("--preset", "demo", "--run-dir", run, *sets(MINI), "--set", ONE_STAGE) == 0
    lines = lines_of(run / layout.EVENTS)
    assert [ln for ln in lines if not parses(ln)] == [second[:40]]
    assert [json.loads(ln)["type"] for ln in lines if parses(ln)][-1] == "run_end"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")] and (run / "genotype.json").is_file()


def test_a_resume_after_a_truncated_event_line_starts_on_a_fresh_line_and_cleans_leftovers(mini, tmp_path):
    run = copy(mini, tmp_path / "run")
    data = (run / layout.EVENTS).read_bytes()
    (run / layout.EVENTS).write_bytes(data[:-25])  # a full disk cut the last line
    (run / ".checkpoint.pt.abcd.tmp").write_bytes(b"x")
    assert search("--resume", run) == 0
    lines = lines_of(run / layout.EVENTS)
    assert sum(not parses(ln) for ln in lines) == 1
    resumed = [json.loads(ln) for ln in lines if parses(ln) and json.loads(ln)["type"] == "run_start"][-1]
    assert resumed["resumed"] is True and not (run / ".checkpoint.pt.abcd.tmp").exists()


def test_only_dasvits_own_temporary_files_are_removed_as_leftovers(tmp_path):
    """remove_leftovers deleted any `.*.tmp` of the run directory, someone else's too."""
    import tempfile

    ours = [".checkpoint.pt.k1ll3d.tmp", ".checkpoint.prev.pt.4242.tmp", ".genotype-stage3.json.x_7q2m0a.tmp"]
    ours += [".config.yaml.abcdefgh.tmp", ".metrics.json.12345678.tmp", ".best.pt.00000000.tmp"]
    for name in ("checkpoint.pt", "events.jsonl"):  # what atomic_write_bytes' mkstemp really names them
        fd, made = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=tmp_path)
        os.close(fd)
        ours.append(Path(made).name)
    theirs = [".notes.tmp", ".my-data.abc.tmp", ".checkpoint.pt.tmp", ".checkpoint.pt.a.b.tmp", ".tmp", "x.tmp"]
    theirs += [".genotype-stage.json.abc.tmp", ".checkpoint.pt.UPPER.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    (tmp_path / ".genotype.json.dir.tmp").mkdir()  # not a file: kept
    assert sorted(layout.remove_leftovers(tmp_path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, ".genotype.json.dir.tmp"])


def test_a_checkpoint_of_random_bytes_is_damaged_not_hostile_and_the_previous_one_is_used(mini, tmp_path, capsys):
    run = copy(mini, tmp_path / "run")
    (run / "checkpoint.pt").write_bytes(random.Random(1).randbytes(50_000))
    assert search("--resume", run) == 0
    err = capsys.readouterr().err
    assert "is damaged" in err and "checkpoint.prev.pt" in err and "pickled code" not in err
    assert of_type(events(run), "run_end")[-1]["status"] == "finished"


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c["search"].update(stages=c["search"]["stages"][:1]), "search.stages no longer has"),
        (lambda c: c["space"].update(embed_dim=48), "size mismatch"),
        (lambda c: c["space"].update(nodes=2), "space.nodes or space.ops differ"),
    ],
    ids=["stages cut", "width changed", "nodes changed"],
)
def test_a_config_edited_so_the_checkpoint_no_longer_fits_is_one_sentence_never_a_success(
    mini, tmp_path, capsys, edit, words
):
    """Cutting search.stages printed "finished: genotype written to ..." and wrote none; a new width was a
    traceback from load_state_dict."""
    run = copy(mini, tmp_path / "run")
    (run / "genotype.json").unlink()
    cfg = yaml.safe_load((run / layout.CONFIG).read_text())
    edit(cfg)
    (run / layout.CONFIG).write_text(yaml.safe_dump(cfg))
    assert search("--resume", run) == 2
    line = one_sentence(capsys.readouterr().err)
    assert "does not fit" in line and words in line and "config.yaml" in line
    assert not (run / "genotype.json").exists()
    assert of_type(events(run), "run_end")[-1]["status"] != "finished"


@pytest.fixture(scope="module")
def tiny_retrain(tmp_path_factory) -> Path:
    """A finished retrain of two one-step epochs of a one-layer ViT block: a second."""
    from dasvit.train.retrain import main

    run = tmp_path_factory.mktemp("hostile-retrain") / "run"
    tiny = ["retrain.epochs=2", "retrain.warmup_epochs=0", "retrain.depth=1", "retrain.steps_per_epoch=1"]
    tiny += ["retrain.batch_size=16", "data.synthetic_train=64", "data.synthetic_val=16", "space.embed_dim=24"]
    assert main(["vit_b16", "--preset", "demo", "--run-dir", str(run), "--no-progress", *sets(tiny)]) == 0
    return run


@pytest.mark.parametrize(
    "engine, edit, words",
    [
        ("retrain", lambda c: c["space"].update(embed_dim=48), "size mismatch"),
        ("retrain", lambda c: c["retrain"].update(depth=2), "Missing key"),
        ("retrain", lambda c: c["retrain"].update(epochs=1), "it stopped after epoch 2 of retrain.epochs 1"),
        ("focus", lambda c: c["focus"].update(embed_dims=[16, 24, 48]), "size mismatch"),
        ("focus", lambda c: c["focus"]["lstm"].update(hidden=8), "size mismatch"),
        ("focus", lambda c: c["focus"].update(budget_bins=3), "size mismatch"),
    ],
    ids=["retrain width", "retrain depth", "retrain epochs cut", "focus widths", "focus lstm.hidden", "focus bins"],
)
def test_a_config_edited_so_a_retrain_or_focus_checkpoint_no_longer_fits_is_one_sentence(
    request, tmp_path, capsys, engine, edit, words
):
    run = copy(request.getfixturevalue(f"tiny_{engine}"), tmp_path / "run")
    cfg = yaml.safe_load((run / layout.CONFIG).read_text())
    edit(cfg)
    (run / layout.CONFIG).write_text(yaml.safe_dump(cfg))
    before = len(lines_of(run / layout.EVENTS))
    start = time.monotonic()
    code, _, err = cli(capsys, engine, "--headless", "--resume", run)
    line = one_sentence(err)
    assert code == 2 and "does not fit" in line and words in line and "config.yaml" in line, line
    assert time.monotonic() - start < 5
    assert not any(e["type"] == "epoch" for e in events(run)[before:])  # nothing trained on the edited config


def test_a_space_that_cannot_make_a_cell_is_refused_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    stages = "search.stages=[{depth: 1, keep: 1, epochs: 1}]"
    assert search("--preset", "demo", "--run-dir", run, *sets(MINI), "--set", stages, "--set", "space.ops=[zero]") == 2
    assert "an op other than zero" in one_sentence(capsys.readouterr().err) and not run.exists()


# ---------------------------------------------------------------------------------------------
# user mistakes: one sentence, exit 2, the bound said; nothing unbounded


@pytest.mark.parametrize(
    "args, words",
    [
        (["search", "--headless", "--set", "space.ops=[skip, mlp_100000000]"], "at most 64"),
        (["search", "--headless", "--set", "space.embed_dim=999999984"], "at most 8,192"),
        (["search", "--headless", "--set", "space.nodes=1000000000"], "at most 32"),
        (["search", "--headless", "--set", "data.image_size=4096", "--set", "space.patch_size=2"], "at most 4,097"),
        (["search", "--headless", "--set", "data.synthetic_train=100000000"], "at most 4 GiB"),
        (["retrain", "vit_b16", "--headless", "--preset", "demo", "--set", "retrain.depth=100000"], "at most 1,024"),
        (["show", "vit_b16", "--dim", "120000000"], "between 1 and 8,192"),
        (["show", "vit_b16", "--depth", "1000000"], "between 1 and 1,024"),  # ran on
        (["show", "vit_b16", "--depth", "200", "--dim", "4096"], "at most 2G params"),
        (["show", "vit_b16", "--image-size", "8192", "--patch", "1"], "between 1 and 4,096"),
        (["specialize", RECORDED_FOCUS, "--flops", "1e999"], "at most 1e+18"),  # OverflowError
        (["specialize", RECORDED_FOCUS, "--flops", "1e99999999999"], "at most 1e+18"),  # computed 10**exp
        (["specialize", RECORDED_FOCUS, "--flops", "1M", "--samples", "10000000"], "between 1 and 100,000"),
        (["compare", RECORDED, "--random", "1000000"], "between 0 and 100 cells"),
        (["search", "--headless", "--nproc", "100000"], "between 1 and 256"),
        (["bench", "--threads", "100000"], "between 1 and 1024"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(map(str, v))[:60],
)
def test_sizes_and_counts_beyond_their_bound_are_one_sentence_naming_it(tmp_path, capsys, args, words):
    start = time.monotonic()
    code, _, err = cli(capsys, *args, *(["--run-dir", tmp_path / "run"] if args[0] in ("search", "retrain") else []))
    assert code == 2 and words in one_sentence(err) and time.monotonic() - start < 5
    assert not (tmp_path / "run").exists()


# every integer key of the config that reached the allocator, a loop or a fork (and the others, bounded alike)
BIG = 10**12
CONFIG_BOUNDS = [
    ("search", "search.pts.dim", 10**9, "at most 8,192"),  # RuntimeError in supernet.py, the run dir left
    ("search", "data.workers", BIG, "at most 256"),  # forked loader workers until killed
    ("search", "data.batch_size", BIG, "at most 65,536"),
    ("search", "search.arch_warmup_epochs", BIG, "at most 1,000,000"),
    ("search", "search.steps_per_epoch", BIG, "at most 1,000,000,000"),
    ("search", "search.stages=[{depth: 1, keep: 8, epochs: 1000000000000}]", None, "at most 1,000,000"),
    ("search", "search.seed", 10**30, "between -4,294,967,295 and 4,294,967,295"),
    ("search", "data.seed", -(10**30), "between -4,294,967,295 and 4,294,967,295"),  # ValueError: Overflow
    ("search", "space.ops=[" + ", ".join(f"mlp_{1 + i / 100:g}" for i in range(300)) + "]", None, "at most 256 values"),
    ("retrain", "retrain.epochs", BIG, "at most 1,000,000"),
    ("retrain", "retrain.batch_size", BIG, "at most 65,536"),
    ("retrain", "retrain.steps_per_epoch", BIG, "at most 1,000,000,000"),
    ("retrain", "retrain.seed", 10**30, "between -4,294,967,295"),
    ("focus", "focus.lstm.hidden", BIG, "at most 4,096"),  # OOM at 23 GB
    ("focus", "focus.budget_bins", BIG, "at most 256"),  # OOM
    ("focus", "focus.lstm.archs", BIG, "at most 4,096"),  # OOM
    ("focus", "focus.lstm.budgets", BIG, "at most 4,096"),  # MemoryError
    ("focus", "focus.lstm.cost_archs", BIG, "at most 4,096"),  # RuntimeError from the allocator
    ("focus", "focus.lstm.batch_size", BIG, "at most 65,536"),
    ("focus", "focus.batch_size", BIG, "at most 65,536"),  # refused only after the run dir was made
    ("focus", "focus.epochs", BIG, "at most 1,000,000"),
    ("focus", "focus.sampler_every", BIG, "at most 1,000,000,000"),
    ("focus", "focus.eval_batches", BIG, "at most 1,000,000,000"),
    ("focus", "focus.seed", 10**30, "between -4,294,967,295"),  # ValueError: Overflow
    ("focus", "focus.embed_dims=[" + ", ".join(map(str, range(8, 2408, 8))) + "]", None, "at most 256 values"),
]
ENGINE_ARGS = {
    "search": ["search", "--headless", "--preset", "demo"],
    "retrain": ["retrain", "vit_b16", "--headless", "--preset", "demo"],
    "focus": ["focus", "--headless", "--preset", "focus-demo"],
}


@pytest.mark.parametrize("engine, key, value, words", CONFIG_BOUNDS, ids=[c[1][:30] for c in CONFIG_BOUNDS])
def test_config_sizes_beyond_their_bound_are_one_sentence_before_any_run_dir(
    tmp_path, capsys, engine, key, value, words
):
    setting = key if value is None else f"{key}={value}"
    start = time.monotonic()
    code, _, err = cli(capsys, *ENGINE_ARGS[engine], "--set", setting, "--run-dir", tmp_path / "run")
    line = one_sentence(err)
    assert code == 2 and words in line and key.split("=")[0] in line and time.monotonic() - start < 5
    assert not (tmp_path / "run").exists()


def test_a_genotype_asking_for_1e30_nodes_is_refused_at_once(tmp_path, capsys):
    """Its validation looped over every node; an output of 100,000 nodes was a MemoryError in `show`."""
    g = json.loads((RECORDED / "genotype.json").read_text())
    cases = [
        ("nodes", 10**30, "'nodes' must be an integer, got null (or a number too large)"),
        ("nodes", 10**1000, "'nodes' must be an integer, got null (or a number too large)"),
        ("nodes", 33, "'nodes' must be between 1 and 32"),
        ("edges", [g["edges"][0]] * 5000, "at most 4,096"),
        ("output", [2] * 100_000, "'output' lists 100,000 nodes; a cell of 3 intermediate nodes has at most 3"),
        (
            "ops",
            {f"mlp_{1 + i / 1000:g}": {"type": "mlp", "ratio": 1 + i / 1000} for i in range(5000)},
            "at most 4,096",
        ),
    ]
    for key, value, words in cases:
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({**g, key: value}))
        start = time.monotonic()
        code, _, err = cli(capsys, "show", path)
        assert code == 2 and words in one_sentence(err) and time.monotonic() - start < 5
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = cli(capsys, "show", deep)
    assert code == 2 and "nests deeper than 64" in one_sentence(err)


def test_a_preset_that_is_not_utf8_is_one_sentence(tmp_path, capsys):
    preset = tmp_path / "latin1.yaml"
    preset.write_bytes("data:\n  name: synthétique\n".encode("latin-1"))
    code, _, err = cli(capsys, "search", "--headless", "--preset", preset, "--run-dir", tmp_path / "run")
    assert code == 2 and "is not UTF-8" in one_sentence(err) and str(preset) in err


def test_approve_stop_and_plot_on_a_read_only_run_dir_are_one_sentence(mini, tmp_path, mounts, capsys):
    disk = tmp_path / "ro"
    mount_tmpfs(disk, "8m")
    mounts.append(disk)
    run = copy(mini, disk / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    code, _, err = cli(capsys, "approve", run, "--stop")
    assert code == 2 and "cannot write" in one_sentence(err) and "control.jsonl" in err
    code, _, err = cli(capsys, "plot", run)
    assert code == 2 and "cannot write the figures folder" in one_sentence(err) and "--out" in err


@pytest.mark.parametrize("resume", [False, True], ids=["start", "resume"])
def test_a_disk_full_before_a_run_starts_or_resumes_is_one_sentence(mini, tmp_path, mounts, capsys, resume):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "4m")
    mounts.append(disk)
    run = copy(mini, disk / "run") if resume else disk / "run"
    fill(disk)
    rc = search("--resume", run) if resume else search("--preset", "demo", "--run-dir", run, *sets(MINI))
    line = one_sentence(capsys.readouterr().err)
    assert rc == 2 and "no space left on the device" in line and f"--resume {run}" in line
    assert not runlock.is_live(run)  # the lock is let go: once there is room, the same process may go on


# ---------------------------------------------------------------------------------------------
# planted links and escape sequences


def test_planted_links_in_a_run_dir_are_refused_and_their_targets_untouched(mini, tmp_path, capsys):
    """A .lock link had its target truncated on start and resume; a control.jsonl link had `approve --stop`
    append to its target."""
    victim = tmp_path / "someone-elses-file"
    victim.write_text("precious\n")
    run = copy(mini, tmp_path / "run")
    (run / layout.LOCK).symlink_to(victim)
    assert search("--resume", run) == 2
    assert ".lock is a symbolic link" in one_sentence(capsys.readouterr().err)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / layout.LOCK).symlink_to(victim)
    assert search("--preset", "demo", "--run-dir", fresh, *sets(MINI)) == 2
    assert "symbolic link" in one_sentence(capsys.readouterr().err)
    (run / layout.LOCK).unlink()
    (run / layout.CONTROL).unlink()
    (run / layout.CONTROL).symlink_to(victim)
    code, _, err = cli(capsys, "approve", run, "--stop")
    assert code == 2 and "control.jsonl is a symbolic link" in one_sentence(err)
    code, _, err = cli(capsys, "plot", run)
    assert code == 2 and "symbolic link" in one_sentence(err)
    assert victim.read_text() == "precious\n"


@pytest.fixture(scope="module")
def tiny_focus(tmp_path_factory) -> Path:
    """A FocusFormer run of one step (a checkpoint to specialize): a second and a half."""
    from dasvit.focus.train import main

    run = tmp_path_factory.mktemp("hostile-focus") / "run"
    tiny = ["focus.epochs=1", "focus.warmup_epochs=0", "focus.lr_warmup_epochs=0", "focus.steps_per_epoch=1"]
    tiny += ["focus.batch_size=16", "focus.lstm.batch_size=16", "focus.eval_batches=1"]
    tiny += ["data.synthetic_train=64", "data.synthetic_val=16"]
    assert main(["--preset", "focus-demo", "--run-dir", str(run), "--no-progress", *sets(tiny)]) == 0
    return run


@pytest.mark.parametrize("folder", ["figures", "retrain", "compare", "specialized"])
def test_a_run_dirs_subfolder_that_is_a_link_is_refused_and_its_target_untouched(request, tmp_path, capsys, folder):
    """`ln -s /victimdir RUN/figures; dasvit plot RUN` overwrote files in the target; retrain, compare and
    specialize wrote into theirs likewise."""
    victim = tmp_path / "victim"
    (victim / "searched-d4").mkdir(parents=True)
    (victim / "precious.txt").write_text("precious\n")
    before = sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))
    src = request.getfixturevalue("tiny_focus" if folder == "specialized" else "mini")
    run = copy(src, tmp_path / "run")
    shutil.rmtree(run / folder, ignore_errors=True)
    (run / folder).symlink_to(victim, target_is_directory=True)
    args = {
        "figures": ["plot", run],
        "retrain": ["retrain", run, "--headless", "--set", "retrain.epochs=1", "--set", "retrain.depth=1"],
        "compare": ["compare", run, "--set", "retrain.epochs=1"],
        "specialized": ["specialize", run, "--flops", "1G", "--samples", "2"],
    }[folder]
    start = time.monotonic()
    code, _, err = cli(capsys, *args)
    assert code == 2 and f"{folder} is a symbolic link" in one_sentence(err) and time.monotonic() - start < 5
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before
    assert (victim / "precious.txt").read_text() == "precious\n"


@pytest.mark.timeout(60)  # a FIFO blocked the open for good
@pytest.mark.parametrize(
    "name, kind, command",
    [
        ("config.yaml", "a FIFO", "search --headless --resume RUN"),  # hung reading it
        ("control.jsonl", "a FIFO", "approve RUN --stop"),  # hung: the O_WRONLY open blocks
        (".lock", "a FIFO", "search --headless --resume RUN"),  # OSError (ftruncate) traceback
        (".lock", "a directory", "search --headless --resume RUN"),  # IsADirectoryError traceback
        ("events.jsonl", "a directory", "approve RUN --stop"),
    ],
)
def test_a_run_file_that_is_a_fifo_or_a_directory_is_one_sentence_never_a_hang(
    mini, tmp_path, capsys, name, kind, command
):
    run = copy(mini, tmp_path / "run")
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name) if kind == "a FIFO" else (run / name).mkdir()
    start = time.monotonic()
    code, _, err = cli(capsys, *(run if arg == "RUN" else arg for arg in command.split()))
    assert code == 2 and f"{name} is {kind}; a run directory's files are regular files" in one_sentence(err)
    assert time.monotonic() - start < 5


def test_escape_sequences_in_a_run_dir_name_or_its_files_never_reach_show(mini, tmp_path, capsys):
    run = copy(mini, tmp_path / "r\x1b]0;pwned\x07[/bold]\x9b2J")
    meta = json.loads((run / "genotype.json").read_text())
    meta["meta"]["run"] = "\x1b]0;title\x07"
    (run / "genotype.json").write_text(json.dumps(meta))
    code, out, err = cli(capsys, "show", run, "--depth", "1")
    assert code == 0, err
    assert "[/bold]" in out and not any(ch in out + err for ch in ESCAPES)  # the name shown literally, cleaned


# ---------------------------------------------------------------------------------------------
# image folders


def _image_folder(root: Path, images: dict[str, int]) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for cls, n in images.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(root / split / cls / f"{i}.png")
    return root


def _data(root: Path, **kw):
    from dasvit.run.config import DataConfig

    return DataConfig(name="imagefolder", root=str(root), image_size=8, holdout=0, workers=0, **kw)


def test_a_symlink_loop_in_an_image_folder_is_read_once(tmp_path):
    """A class folder holding a link to its parent trained on 41x duplicates."""
    from dasvit.train.data import build_datasets

    root = _image_folder(tmp_path / "images", {"cat": 3, "dog": 2})
    (root / "train" / "cat" / "loop").symlink_to("..")  # train/cat/loop -> train/
    (root / "train" / "dog" / "self").symlink_to(".")
    (root / "train" / "dog" / "more").mkdir()  # a real subfolder still counts
    shutil.copy(root / "train" / "dog" / "0.png", root / "train" / "dog" / "more" / "x.png")
    splits = build_datasets(_data(root))
    assert len(splits.train) == 6 and sorted(y for _, y in splits.train) == [0, 0, 0, 1, 1, 1]
    assert any("skipped 2 directory link(s)" in n for n in splits.notes)


def test_a_link_to_an_ancestor_of_the_data_folder_is_skipped_even_when_that_ancestor_is_the_root(tmp_path, monkeypatch):
    """A class folder's link resolving to / was walked: its check read `top.startswith("//")`, so the whole
    file system would be listed. A link to an ancestor of the data folder, as it is and then with that
    ancestor seen as / (realpath answering as in a container whose data lies at the root)."""
    from dasvit.train import images

    root = _image_folder(tmp_path / "images", {"cat": 3, "dog": 2})
    cat = root / "train" / "cat"
    (cat / "up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()  # the rest of the "file system"
    shutil.copy(cat / "0.png", tmp_path / "elsewhere" / "not-a-cat.png")
    assert images._walk_images(str(cat), lambda f: f.endswith(".png")) == ([str(cat / f"{i}.png") for i in range(3)], 1)
    real, base = os.path.realpath, os.path.realpath(tmp_path)

    def with_tmp_path_as_root(path, *args, **kw):
        rel = os.path.relpath(real(path, *args, **kw), base)
        return real(path, *args, **kw) if rel.startswith("..") else "/" if rel == "." else "/" + rel

    monkeypatch.setattr(images.os.path, "realpath", with_tmp_path_as_root)
    files, skipped = images._walk_images(str(cat), lambda f: f.endswith(".png"))
    assert files == [str(cat / f"{i}.png") for i in range(3)] and skipped == 1


def test_unreadable_images_are_skipped_with_a_warning_naming_them_and_a_damaged_folder_is_one_sentence(
    tmp_path, capsys
):
    from dasvit.errors import DataError
    from dasvit.train.data import EpochLoaders, build_datasets

    root = _image_folder(tmp_path / "images", {"cat": 3, "dog": 3})
    (root / "train" / "cat" / "1.png").write_bytes(b"")  # zero bytes
    (root / "train" / "dog" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    splits = build_datasets(_data(root))
    items = [splits.train[i] for i in range(len(splits.train))]
    assert [y for _, y in items] == [0, 0, 0, 1, 1, 1] and all(tuple(x.shape) == (3, 8, 8) for x, _ in items)
    err = capsys.readouterr().err
    assert "cat/1.png is not an image that can be read" in err and "dog/2.png is not an image" in err
    for f in (root / "train" / "dog").iterdir():
        f.write_bytes(b"not an image")
    with pytest.raises(DataError) as e:  # through a loader worker, as in training: still the sentence
        next(iter(EpochLoaders(build_datasets(_data(root)).train, 6, 1, 0, shuffle=False).epoch(0)))
    msg = str(e.value)
    assert "\n" not in msg and "looks damaged" in msg and "dog/0.png" in msg and "Traceback" not in msg


# ---------------------------------------------------------------------------------------------
# the readers of a run directory under fuzzed event logs: approve, plot, the runs list, the monitor


ODD_NAME = "r\x1b]0;pwned\x07[bold]x\x9b2J"  # escape sequences and markup in a run's name


def hostile_runs(root: Path) -> list[Path]:
    """Under `root`: a search (with its retrain) and a FocusFormer run with hostile lines appended to their
    event logs, a retrain named with escapes and markup whose log also holds an over-long line, a dangling
    link and a stray file."""
    runs = [
        with_hostile_lines(RECORDED, root / "search", seed=1),
        with_hostile_lines(RECORDED_FOCUS, root / "focus", seed=2),
        with_hostile_lines(RECORDED / "retrain", root / ODD_NAME, seed=3, n=40, too_long=True),
    ]
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "a-file").write_text("not a run")
    return runs


def test_fuzzed_event_logs_never_raise_in_approve_plot_or_the_run_readers(mini, tmp_path, capsys):
    """`plot` of a FocusFormer run raised on a sampler bin that is not an object, or whose numbers are strings."""
    runs = hostile_runs(tmp_path / "runs")
    for run in runs:
        evs, bad = jsonl.read_events(run)
        assert len(bad) >= NOT_OBJECTS and all(isinstance(e, dict) for e in evs)
        assert not any(ch in json.dumps(evs, ensure_ascii=False) for ch in ESCAPES)
        assert isinstance(runstatus.summarize(run).status, str)
        code, _, err = cli(capsys, "approve", run)  # a proposal may be pending, or none: never a traceback
        assert code in (0, 2) and (code == 0 or one_sentence(err))
        code, _, err = cli(capsys, "approve", run, "--stop")
        assert code == 0, err
    assert len(list(runstatus.iter_runs(tmp_path / "runs"))) == 4  # the search's retrain too; not the link nor the file
    code, out, err = cli(capsys, "plot", small_search(mini, tmp_path / "plotted"), "--out", tmp_path / "figures")
    assert code == 0, err
    assert {Path(p).name for p in out.split()} >= {"curves.png", "op_weights.svg", "skip.png"}
    code, out, err = cli(capsys, "plot", runs[1], "--out", tmp_path / "focus-figures")  # the focus run
    assert code == 0, err
    assert {Path(p).name for p in out.split()} >= {"curves.png", "sampler.png", "sampler.svg"}


def small_search(mini: Path, dst: Path) -> Path:
    """A search's event log cut down to one edge of two ops (a figure panel per edge: plotting stays quick),
    then hostile lines."""
    run = copy(mini, dst)
    evs = []
    for ev in events(run):
        if "arch_weights" in ev:
            ev["arch_weights"] = {"0->2": {"skip": 0.4, "mlp_4": 0.6}}
        if ev["type"] in ("prune_proposal", "prune"):
            ev["keep"] = {"0->2": ["mlp_4"]}
            ev.pop("weights", None)
        evs.append(json.dumps(ev).encode())
    (run / layout.EVENTS).write_bytes(b"\n".join([*evs, *hostile_lines(seed=5, n=40)]) + b"\n")
    return run


async def until(pilot, condition, timeout: float = 15.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


def test_the_runs_list_and_every_monitor_stay_up_on_hostile_runs(tmp_path):
    """One damaged run crashed the whole runs list; an epoch with "stage": [1] crashed `dasvit tui RUN_DIR`;
    a run name with markup raised in Rich; 1e999 typed in the budget dialog crashed the monitor."""
    from textual.widgets import DataTable, Input

    from dasvit_tui.app import DasvitApp
    from dasvit_tui.screens.monitor import MonitorScreen
    from dasvit_tui.screens.runs import RunsScreen
    from dasvit_tui.screens.specialize import SpecializeScreen
    from dasvit_tui.widgets.header import header_text
    from dasvit_tui.widgets.log import EngineLog

    root = tmp_path / "runs"
    runs = hostile_runs(root)
    seen: list[str] = []

    async def scenario():
        app = DasvitApp(runs_root=root, poll_interval=0.05)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            assert set(runs) <= {s.path for s in app.screen.summaries}
            table = app.screen.query_one(DataTable)
            seen.extend(str(c) for r in range(table.row_count) for c in table.get_row_at(r))
            for run in runs:
                app.open_run(run)
                await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.caught_up)
                await pilot.pause(0.1)
                monitor = app.screen
                seen.append(header_text(monitor.state).plain)
                seen.extend(strip.text for strip in monitor.query_one(EngineLog).lines)
                if run.name == "focus":
                    await pilot.press("b")
                    await until(pilot, lambda: isinstance(app.screen, SpecializeScreen))
                    app.screen.query_one("#spec-flops", Input).value = "1e999"
                    await pilot.press("enter")
                    status = app.screen.query_one("#spec-status")
                    await until(pilot, lambda status=status: "at most" in str(status.render()))
                    await pilot.press("escape")
                    await until(pilot, lambda monitor=monitor: app.screen is monitor)
                await pilot.press("escape")
                await until(pilot, lambda: isinstance(app.screen, RunsScreen))

    asyncio.run(scenario())
    text = "\n".join(seen)
    assert "[/bold]" in text and "[bold]x" in text  # names and presets shown as they are, never as markup
    assert not any(ch in text for ch in ESCAPES)


def waiting_run(mini: Path, dst: Path) -> Path:
    """A copy of `mini` cut just after its first prune_proposal: a run that waits for an answer."""
    run = copy(mini, dst)
    lines = lines_of(run / layout.EVENTS)
    cut = next(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "prune_proposal")
    (run / layout.EVENTS).write_bytes(b"\n".join(lines[: cut + 1]) + b"\n")
    return run


def test_the_monitor_stays_up_when_its_answer_or_stop_cannot_be_written(mini, tmp_path):
    """A live run whose control.jsonl is a link: `a` in the prune modal and `s` `y` in the monitor raised
    RunDirError out of the app (controls.write_control). Now each is its sentence in the log and a notification."""
    from dasvit_tui.app import DasvitApp
    from dasvit_tui.screens.monitor import MonitorScreen
    from dasvit_tui.screens.prune import KeepGrid, PruneScreen
    from dasvit_tui.widgets.log import EngineLog

    victim = tmp_path / "someone-elses-file"
    victim.write_text("precious\n")
    run = waiting_run(mini, tmp_path / "run")
    (run / layout.CONTROL).unlink(missing_ok=True)
    (run / layout.CONTROL).symlink_to(victim)
    lock = runlock.RunLock(run)  # the engine's lock, held here: the run is live
    lock.acquire()
    logged: list[str] = []

    async def scenario():
        app = DasvitApp(run_dir=run, poll_interval=0.05)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PruneScreen) and bool(app.screen.query(KeepGrid)))
            monitor = app.screen_stack[-2]
            assert isinstance(monitor, MonitorScreen)
            await pilot.press("a")
            await until(pilot, lambda: app.screen is monitor)
            await pilot.press("s")
            await until(pilot, lambda: app.screen is not monitor)
            await pilot.press("y")
            await until(pilot, lambda: app.screen is monitor)
            await pilot.pause(0.1)
            logged.extend(text.plain for text in monitor.query_one(EngineLog)._entries)  # the lines unwrapped
            assert app.is_running and monitor.state.status == "waiting"

    try:
        asyncio.run(scenario())
    finally:
        lock.release()
    refused = [line for line in logged if "not sent" in line]
    assert [line.split(":")[0] for line in refused] == ["approve not sent", "stop not sent"], logged
    assert all("control.jsonl is a symbolic link" in line for line in refused)
    assert victim.read_text() == "precious\n"

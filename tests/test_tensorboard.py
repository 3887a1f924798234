"""`dasvit tensorboard`: the recorded demo search and FocusFormer run as TensorBoard event files, read back with
TensorBoard's own reader and held to what the project's readers (RunHistory) make of the same events."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import typer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from typer.testing import CliRunner

from dasvit.errors import RunDirError
from dasvit.reports.tensorboard import FINAL_METRIC, HPARAMS_RUN, RETRAIN_METRIC, convert_runs, tag_part
from dasvit.run.history import RunHistory
from dasvit.run.jsonl import read_events
from dasvit.run.runlock import RunLock
from dasvit_tui.commands.tensorboard import tensorboard

TESTS = Path(__file__).parent
RECORDED = TESTS / "recorded_run"  # a demo search: 3 stages of 3 epochs
RECORDED_FOCUS = TESTS / "recorded_focus_run"  # a FocusFormer run: 6 epochs, 4 budget bins


def read_back(folder: Path) -> EventAccumulator:
    """Everything TensorBoard reads from one run folder (no sampling: every point kept)."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def points(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(s.step, s.value) for s in acc.Scalars(tag)]


def texts(acc: EventAccumulator, tag: str) -> list[tuple[int, str]]:
    return [(t.step, t.tensor_proto.string_val[0].decode()) for t in acc.Tensors(f"{tag}/text_summary")]


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Copies of the recorded runs converted into one logdir: {kind: (run directory, TensorBoard folder)}."""
    root = tmp_path_factory.mktemp("tensorboard")
    search, focus = root / "demo-search", root / "focus-run"
    shutil.copytree(RECORDED, search)
    shutil.copytree(RECORDED_FOCUS, focus)
    folders = convert_runs([search, focus], root / "tb", say=lambda line: None)
    assert folders == [root / "tb" / "demo-search", root / "tb" / "focus-run"]
    return {"search": (search, folders[0]), "focus": (focus, folders[1])}


def test_val_acc_is_one_point_per_epoch_on_one_step_axis_across_the_stages(converted):
    run, folder = converted["search"]
    epochs = RunHistory.read(run).ordered()
    assert [e["stage"] for e in epochs] == [1] * 3 + [2] * 3 + [3] * 3
    acc = read_back(folder)
    got = points(acc, "val_acc")
    assert [step for step, _ in got] == list(range(1, 10))  # stage 2 goes on at 4, stage 3 at 7: no gap, no restart
    assert got == [(e["x"], pytest.approx(e["val_acc"], rel=1e-6)) for e in epochs]
    for tag in ("train_loss", "train_acc", "val_loss", "lr", "seconds", "images_per_s", "skip_fraction"):
        assert points(acc, tag) == [(e["x"], pytest.approx(e[tag], rel=1e-6)) for e in epochs], tag
    assert points(acc, "fairness/total") == [(e["x"], pytest.approx(e["fairness"]["total"], rel=1e-6)) for e in epochs]


def test_alpha_of_every_edge_and_op_is_written_and_right_at_each_stage_end(converted):
    run, folder = converted["search"]
    history = RunHistory.read(run)
    acc = read_back(folder)
    assert "alpha/0-2/msa_4" in acc.Tags()["scalars"]  # the edge "0->2" as a tag part
    ends = history.stage_end_weights()
    assert sorted(ends) == [1, 2, 3]
    for stage, weights in ends.items():
        end = max(e["x"] for e in history.of_stage(stage))
        for edge, ops in weights.items():
            for op, weight in ops.items():
                at = dict(points(acc, f"alpha/{tag_part(edge)}/{tag_part(op)}"))
                assert at[end] == pytest.approx(weight, rel=1e-6), (stage, edge, op)
    # an op pruned at a stage's end has no point after it: pruned ops are no longer weighed
    pruned = history.pruned()
    edge, ops = next((e, o) for e, o in pruned[1].items() if o)
    assert max(step for step, _ in points(acc, f"alpha/{tag_part(edge)}/{tag_part(ops[0])}")) == 3


def test_the_genotype_and_the_config_are_text(converted):
    run, folder = converted["search"]
    history = RunHistory.read(run)
    acc = read_back(folder)
    genotypes = texts(acc, "genotype")
    assert [step for step, _ in genotypes] == [3, 6, 9]  # each stage's cell at its last epoch
    step, last = genotypes[-1]
    assert "cell of stage 3" in last
    for edge in history.genotype["edges"]:
        assert f"| {edge['from']} | {edge['to']} | {edge['op']} |" in last
    config = texts(acc, "config")
    assert len(config) == 1 and config[0][0] == 0 and "arch_warmup_epochs: 1" in config[0][1]  # at the run's start
    ((step, end),) = texts(acc, "run_end")
    assert step == 9 and "finished" in end


def test_the_hparams_tab_gets_the_config_and_the_final_accuracy(converted):
    run, folder = converted["search"]
    session = read_back(folder / HPARAMS_RUN)
    content = session.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["kind"].string_value == "search"
    assert start.hparams["search.lr"].number_value == pytest.approx(0.002)
    assert start.hparams["search.stages.2.depth"].number_value == 4
    last = RunHistory.read(run).ordered()[-1]
    assert points(session, FINAL_METRIC) == [(9, pytest.approx(last["val_acc"]))]
    top1 = json.loads((run / "retrain" / "metrics.json").read_text())["top1"]
    assert points(session, RETRAIN_METRIC) == [(9, pytest.approx(top1))]  # the search's finished retrain


def test_a_focus_run_gets_its_sampler_bins_and_smallest_architecture(converted):
    run, folder = converted["focus"]
    epochs = RunHistory.read(run).ordered()
    acc = read_back(folder)
    assert [step for step, _ in points(acc, "val_acc")] == list(range(1, 7))
    assert points(acc, "val_acc_smallest") == [(e["x"], pytest.approx(e["val_acc_smallest"])) for e in epochs]
    for k in range(1, 5):
        bins = [(e["x"], e["sampler"]["bins"][k - 1]) for e in epochs]
        assert points(acc, f"sampler/bin{k}/feasible") == [(x, pytest.approx(b["feasible"])) for x, b in bins]
        assert points(acc, f"sampler/bin{k}/entropy") == [(x, pytest.approx(b["entropy"])) for x, b in bins]
        ratio = [(x, pytest.approx(b["mean_flops"] / b["budget_flops"])) for x, b in bins]
        assert points(acc, f"sampler/bin{k}/mean_flops_over_budget") == ratio
    assert "sampler/bin5/feasible" not in acc.Tags()["scalars"]
    assert "FocusFormer space" in texts(acc, "space")[0][1]


def test_converting_again_replaces_the_last_conversion(converted, tmp_path):
    run, _ = converted["focus"]
    for _ in range(2):
        (folder,) = convert_runs([run], tmp_path / "tb", say=lambda line: None)
    assert len(event_files(folder)) == 2  # the run's and its hparams sub-run's, once each
    assert [step for step, _ in points(read_back(folder), "val_acc")] == list(range(1, 7))


def test_follow_writes_a_live_run_as_it_grows_each_epoch_once(tmp_path):
    run = tmp_path / "live"
    run.mkdir()
    shutil.copy(RECORDED / "config.yaml", run)
    lines = (RECORDED / "events.jsonl").read_bytes().splitlines(keepends=True)
    (run / "events.jsonl").write_bytes(b"".join(lines[:4]))  # run_start and stage 1's epochs
    lock = RunLock(run)
    lock.acquire()  # the test is the run's live engine
    said: list[str] = []
    follower = threading.Thread(
        target=convert_runs,
        args=([run], tmp_path / "tb"),
        kwargs={"follow": True, "say": said.append, "poll_seconds": 0.05},
    )
    follower.start()
    try:
        deadline = time.monotonic() + 20
        while not any(line.startswith("following") for line in said) and time.monotonic() < deadline:
            time.sleep(0.02)
        rest = b"".join(lines[4:])
        with open(run / "events.jsonl", "ab") as f:  # the engine goes on: a line cut in two, then the rest
            f.write(rest[:100])
            f.flush()
            time.sleep(0.2)
            f.write(rest[100:])
    finally:
        lock.release()
        follower.join(timeout=30)
    assert not follower.is_alive()
    assert any("+6 epoch(s)" in line for line in said) and said[-1].endswith("finished"), said
    acc = read_back(tmp_path / "tb" / "live")
    expected = [(e["x"], pytest.approx(e["val_acc"])) for e in RunHistory.of_events(read_events(run)[0]).ordered()]
    assert points(acc, "val_acc") == expected
    assert [step for step, _ in texts(acc, "genotype")] == [3, 6, 9]


def test_fields_that_are_absent_or_of_the_wrong_type_are_skipped(tmp_path):
    run = tmp_path / "odd"
    run.mkdir()
    shutil.copy(RECORDED / "config.yaml", run)
    odd = [
        {"v": 1, "type": "run_start", "time": 1.0, "kind": "search"},  # no config
        {"v": 1, "type": "epoch", "time": 2.0, "stage": 1, "epoch": 1, "val_acc": "0.5", "train_loss": 1.5},
        {"v": 1, "type": "epoch", "time": 3.0, "epoch": 2, "val_acc": 0.5, "arch_weights": {"1->2": {"skip": 0.3}}},
        {"v": 1, "type": "epoch", "stage": 1, "epoch": "3", "val_acc": 0.9},  # no whole-number epoch: no step
        {"v": 1, "type": "epoch", "stage": 1, "epoch": 4, "arch_weights": {"0->2": "x"}, "fairness": [0.1]},
        {
            "v": 1,
            "type": "epoch",
            "stage": 1,
            "epoch": 5,
            "sampler": {"bins": [1, {"feasible": 0.5, "budget_flops": 0}]},
        },
        {"v": 1, "type": "genotype", "stage": 1, "genotype": [1, 2]},
        {"v": 1, "type": "run_end"},
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in odd) + "not json\n")
    notes: list[str] = []
    (folder,) = convert_runs([run], tmp_path / "tb", say=lambda line: None, note=notes.append)
    acc = read_back(folder)
    assert points(acc, "val_acc") == [(2, 0.5)]
    assert points(acc, "train_loss") == [(1, 1.5)]
    assert points(acc, "alpha/1-2/skip") == [(2, pytest.approx(0.3))]
    assert points(acc, "sampler/bin2/feasible") == [(5, 0.5)]
    assert not [
        t for t in acc.Tags()["scalars"] if t.startswith(("alpha/0-2", "fairness", "sampler/bin1")) or "over" in t
    ]
    assert texts(acc, "run_end") == [(5, "**ended**")] and "genotype/text_summary" not in acc.Tags()["tensors"]
    assert "1 malformed line(s)" in notes[0]


def run_command(*args: str):
    app = typer.Typer()
    app.command()(tensorboard)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_user_mistakes_are_one_sentence_and_exit_code_2(converted, tmp_path):
    run, _ = converted["search"]
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = {
        "is not a dasvit run directory": (not_a_run, "--logdir", tmp_path / "tb"),
        "does not exist": (tmp_path / "missing", "--logdir", tmp_path / "tb"),
        "cannot write the TensorBoard log directory": (run, "--logdir", a_file / "tb"),
        "is inside the run directory": (run, "--logdir", run / "tb"),
    }
    for says, args in cases.items():
        result = run_command(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("dasvit: ") and says in result.stderr
    assert not (tmp_path / "tb").exists() and not (run / "tb").exists()  # nothing written before the checks
    with pytest.raises(RunDirError, match="is not a dasvit run directory"):
        convert_runs([not_a_run], tmp_path / "tb")


def test_the_command_converts_and_says_how_to_look(converted, tmp_path):
    run, _ = converted["focus"]
    result = run_command(run, "--logdir", tmp_path / "tb")
    assert result.exit_code == 0, result.output
    assert "6 epoch(s)" in result.stdout and f"tensorboard --logdir {tmp_path / 'tb'}" in result.stdout

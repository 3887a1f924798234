"""Failures that lose nothing and say one sentence: an unwritable run directory, a full disk during a
checkpoint, a damaged checkpoint (resumed from the epoch before), a checkpoint holding pickled code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import TINY, events, of_type, sets
from dasvit.errors import DiskFullError
from dasvit.run.checkpoint import load_checkpoint, save_checkpoint


def _search(*args: str) -> int:
    from dasvit.search.searcher import main

    return main([*args, "--no-progress"])


def _one_sentence(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("dasvit: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny search whose checkpoints the tests below damage (each on its own copy)."""
    run = tmp_path_factory.mktemp("failures") / "run"
    assert _search("--preset", "demo", "--run-dir", str(run), *sets(TINY)) == 0
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB file system (tmpfs): room for a run's config and events, not for a checkpoint."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_unwritable_run_dir_is_one_sentence_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = blocker / "run"
    assert _search("--preset", "demo", "--run-dir", str(bad)) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert str(bad) in line and "--run-dir" in line

    from dasvit.train.retrain import main as retrain_main

    assert retrain_main(["vit_b16", "--preset", "demo", "--run-dir", str(bad), "--no-progress"]) == 2
    assert str(bad) in _one_sentence(capsys.readouterr().err)


def test_checkpoints_rotate_and_a_damaged_one_resumes_from_the_epoch_before(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    last, prev = run / "checkpoint.pt", run / "checkpoint.prev.pt"
    assert torch.load(prev, weights_only=True)["phase"] == "train"  # the epoch before the final proposal
    last.write_bytes(last.read_bytes()[:1000])  # a write cut short
    assert _search("--resume", str(run)) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and str(last) in err and "checkpoint.prev.pt" in err
    assert of_type(events(run), "run_end")[-1]["status"] == "finished"
    assert torch.load(last, weights_only=True)["phase"] == "proposal"  # written whole again


def test_damaged_checkpoint_without_an_earlier_one_is_one_sentence(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    (run / "checkpoint.prev.pt").unlink()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    assert _search("--resume", str(run)) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "checkpoint.pt is damaged" in line and "start the run again" in line


class NotWeights:
    """Stands for code smuggled into a checkpoint: torch.load(weights_only=True) must refuse it."""


def test_checkpoint_holding_pickled_code_is_refused_in_one_sentence(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    torch.save({"epoch": 1, "payload": NotWeights()}, run / "checkpoint.pt")
    assert _search("--resume", str(run)) == 2
    assert "pickled code" in _one_sentence(capsys.readouterr().err)


def test_a_checkpoint_of_dasvit_0_1_is_refused_in_one_sentence(finished, tmp_path, capsys):
    """A search checkpoint of dasvit 0.1, whose supernet stored each node's ops fused (its optimizer state
    belongs to those tensors), is named for what it is, not taken for a changed config."""
    run = _copy(finished, tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["model"] = {k.replace(".edges.", ".node_edges."): v for k, v in state["model"].items()}
    torch.save(state, run / "checkpoint.pt")
    assert _search("--resume", str(run)) == 2
    assert "fused parameter layout of dasvit 0.1" in _one_sentence(capsys.readouterr().err)


def test_full_disk_keeps_the_last_good_checkpoint_and_says_how_much_was_needed(tiny_disk):
    path = tiny_disk / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.zeros(1000)}, keep_previous=True)
    with pytest.raises(DiskFullError) as e:
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(200_000)}, keep_previous=True)
    msg = str(e.value)
    assert str(path) in msg and "0.8 MiB needed" in msg and f"--resume {tiny_disk}" in msg
    assert load_checkpoint(path)["epoch"] == 1
    assert not [p for p in tiny_disk.iterdir() if p.name.endswith(".tmp")]  # no partial file left behind


def test_search_on_a_full_disk_ends_in_one_sentence(tiny_disk, capsys):
    run = tiny_disk / "run"
    assert _search("--preset", "demo", "--run-dir", str(run), *sets(TINY)) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "no space left" in line and "checkpoint.pt" in line and "--resume" in line
    assert of_type(events(run), "run_end")[-1]["status"] == "failed"


@pytest.mark.parametrize(
    "engine, recorded, kind",
    [("dasvit.search.searcher", "recorded_focus_run", "search"), ("dasvit.focus.train", "recorded_run", "focus")],
)
def test_resuming_a_run_with_the_other_engine_is_one_sentence(engine, recorded, kind, tmp_path, capsys):
    """`dasvit search --resume` of a FocusFormer run (and the reverse) names the mistake; nothing is written."""
    import importlib

    run_dir = shutil.copytree(Path(__file__).parent / recorded, tmp_path / "run")
    before = (run_dir / "events.jsonl").read_bytes()
    assert importlib.import_module(engine).main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"is not a {kind} run" in err
    assert (run_dir / "events.jsonl").read_bytes() == before


@pytest.mark.slow  # torchrun starts two torch processes: 10 s of the default suite's 5 min (pytest -m slow runs it)
def test_a_user_mistake_under_torchrun_is_still_one_sentence_and_exit_2(tmp_path):
    """torchrun reports a rank's exit 2 as its own failure (exit 1 and a page of traceback); the launcher
    says the rank's sentence instead, so --nproc 2 fails like --nproc 1 does."""
    cmd = ["dasvit", "search", "--headless", "--nproc", "2", "--preset", "demo", "--run-dir", str(tmp_path / "run")]
    cmd += ["--set", "data.name=imagefolder", "--set", f"data.root={tmp_path / 'nowhere'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("dasvit: the train split of imagefolder was not found in ") and last.endswith(
        "set data.root."
    )

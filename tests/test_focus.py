"""FocusFormer end to end: the run directory contract, resume after SIGKILL, Ctrl-C, 2 ranks, specialization,
and a DASViT search's cell as the base of a focus run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_FOCUS, engine_env, events, of_type, schema_problems, sets, start_engine, wait_for
from dasvit.model.genotype import load_genotype


def focus_main(*args: str) -> int:
    from dasvit.focus.train import main

    return main(list(args))


@pytest.fixture(scope="module")
def tiny_focus(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("focus") / "run"
    assert focus_main("--preset", "focus-demo", "--run-dir", str(run_dir), "--no-progress", *sets(TINY_FOCUS)) == 0
    return run_dir


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`dasvit ARGS` in this process: (exit code, stdout, stderr)."""
    from dasvit_tui.cli import main

    monkeypatch.setattr(sys, "argv", ["dasvit", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_focus_run_follows_the_run_directory_contract(tiny_focus):
    assert schema_problems(tiny_focus) == []  # every event as dasvit.run.events defines the focus engine's
    evs = events(tiny_focus)
    start = of_type(evs, "run_start")[0]
    assert start["kind"] == "focus" and start["preset"] == "focus-demo" and start["world_size"] == 1
    space = of_type(evs, "space")[0]
    assert 0 < space["min_flops"] < space["max_flops"] and space["budgets"][-1] == space["max_flops"]
    epochs = of_type(evs, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and [e["phase"] for e in epochs] == [
        "uniform",
        "sampler",
        "sampler",
    ]
    assert epochs[-1]["sampler_steps"] == 6  # three epochs of 4 steps, one sampler step every 2 (from the start)
    for e in epochs:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"):
            assert isinstance(e[key], float), key
        bins = e["sampler"]["bins"]
        assert [b["budget_flops"] for b in bins] == space["budgets"]
        for b in bins:
            assert 0 <= b["feasible"] <= 1 and b["entropy"] >= 0 and b["mean_flops"] >= space["min_flops"]
        assert [p["bin"] for p in e["points"]] == list(range(len(bins)))
        for p in e["points"]:
            assert 0 <= p["val_acc"] <= 1 and space["min_flops"] <= p["flops"] <= space["max_flops"] and p["params"] > 0
    assert evs[-1]["type"] == "run_end" and evs[-1]["status"] == "finished"
    ckpt = torch.load(tiny_focus / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and {"model", "sampler", "w_opt", "s_opt", "rng"} <= set(ckpt)
    assert (
        load_genotype(tiny_focus / "base-genotype.json").to_json()["edges"]
        == load_genotype("vit_b16").to_json()["edges"]
    )


def _final(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def _assert_same_state(a: dict, b: dict) -> None:
    for part in ("model", "sampler"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.allclose(a[part][k], b[part][k], atol=1e-6, rtol=0), (part, k)


def test_sigkill_then_resume_ends_with_the_same_sampler_and_supernet(tmp_path, tiny_focus):
    run = tmp_path / "killed"
    cfg = [*TINY_FOCUS, "focus.steps_per_epoch=6"]
    ref = tmp_path / "ref"
    assert focus_main("--preset", "focus-demo", "--run-dir", str(ref), "--no-progress", *sets(cfg)) == 0
    proc = start_engine("dasvit.focus", "--preset", "focus-demo", "--run-dir", str(run), "--no-progress", *sets(cfg))
    # kill after epoch 2 (the first sampler epoch) ended, during epoch 3
    wait_for(
        lambda: (run / "events.jsonl").exists() and len(of_type(events(run), "epoch")) >= 2, timeout=120, interval=0.02
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not of_type(events(run), "run_end")
    assert focus_main("--resume", str(run), "--no-progress") == 0
    _assert_same_state(_final(run), _final(ref))
    assert [e["status"] for e in of_type(events(run), "run_end")] == ["finished"]


def test_a_damaged_checkpoint_resumes_from_the_epoch_before_and_ends_the_same(tmp_path, tiny_focus, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_focus, run, ignore=shutil.ignore_patterns(".lock", "specialized"))
    last = run / "checkpoint.pt"
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["epoch"] == 2
    last.write_bytes(last.read_bytes()[:1000])  # a write cut short
    assert focus_main("--resume", str(run), "--no-progress") == 0
    err = capsys.readouterr().err
    assert "warning:" in err and str(last) in err and "checkpoint.prev.pt" in err
    _assert_same_state(_final(run), _final(tiny_focus))  # epoch 3 replayed from epoch 2's checkpoint


def test_unwritable_run_dir_is_one_sentence_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert focus_main("--preset", "focus-demo", "--run-dir", str(blocker / "run"), "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(blocker / "run") in err and "--run-dir" in err


def test_ctrl_c_stops_with_exit_130_and_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = start_engine(
        "dasvit.focus",
        "--preset",
        "focus-demo",
        "--run-dir",
        str(run),
        "--no-progress",
        *sets([*TINY_FOCUS, "focus.epochs=500"]),
    )
    wait_for(lambda: (run / "events.jsonl").exists() and of_type(events(run), "space"), timeout=120, interval=0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert events(run)[-1]["type"] == "run_end" and events(run)[-1]["status"] == "stopped"
    assert (run / "checkpoint.pt").is_file()


@pytest.mark.slow  # two torch processes under torchrun with gloo: the heaviest focus test (pytest -m slow runs it)
def test_two_ranks_with_gloo_train_the_same_architectures(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dasvit.focus",
        "--preset",
        "focus-demo",
        "--run-dir",
        str(run),
        "--no-progress",
        *sets([*TINY_FOCUS, "focus.epochs=2"]),
    ]
    proc = subprocess.run(cmd, env=engine_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evs = events(run)
    assert of_type(evs, "run_start")[0]["world_size"] == 2 and len(of_type(evs, "run_start")) == 1
    # at the end every rank compares a checksum of the architectures it trained, its sampler and its
    # supernet with the others', and fails the run on any difference: it finished
    assert evs[-1]["status"] == "finished" and of_type(evs, "epoch")[-1]["sampler_steps"] == 4


def test_specialize_writes_a_v2_genotype_under_the_budget(tiny_focus):
    from dasvit.focus.specialize import FocusRun, specialize

    space = of_type(events(tiny_focus), "space")[0]
    budget = (space["min_flops"] + space["max_flops"]) // 2
    run = FocusRun(tiny_focus)
    results = {m: specialize(run, budget, samples=6, method=m) for m in ("sampler", "evolution", "random")}
    for method, r in results.items():
        assert len(r.evaluated) == 6, method  # the same number of evaluations for every method
        assert all(c.flops <= budget for c in r.evaluated)
        assert r.best.top1 == max(c.top1 for c in r.evaluated) and r.best in r.front
        geno = load_genotype(r.path)
        assert geno.version == 2 and geno.depth == r.best.subnet.depth and geno.embed_dim == r.best.subnet.embed_dim
        assert geno.meta["flops"] <= budget and geno.meta["top1_inherited"] == r.best.top1
        assert geno.meta["method"] == method and geno.meta["evaluations"] == 6
    assert results["sampler"].path.name.endswith(".json") and "-" not in results["sampler"].path.stem
    # with a parameter budget too: everything evaluated fits both
    params = (space["min_params"] + space["max_params"]) // 2
    r = specialize(run, budget, params, samples=4, method="random", write=False)
    assert all(c.flops <= budget and c.params <= params for c in r.evaluated)


def test_specialize_cli_json_and_bad_budgets_exit_2(tiny_focus, monkeypatch, capsys):
    space = of_type(events(tiny_focus), "space")[0]
    code, out, err = cli(
        monkeypatch,
        capsys,
        "specialize",
        str(tiny_focus),
        "--flops",
        str(space["max_flops"]),
        "--samples",
        "3",
        "--format",
        "json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["evaluations"] == 3 and result["best"]["flops"] <= space["max_flops"]
    assert Path(result["genotype"]).is_file()
    code, out, err = cli(
        monkeypatch, capsys, "specialize", str(tiny_focus), "--flops", str(space["max_flops"]), "-n", "2"
    )
    assert code == 0 and "threads: 1 (DASVIT_THREADS=1" in err  # it honours the thread setting and says so
    for flops, words in [(str(space["min_flops"] - 1), "smallest"), ("1.4X", "1.4G")]:
        code, _, err = cli(monkeypatch, capsys, "specialize", str(tiny_focus), "--flops", flops)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_budget_strings_parse():
    from dasvit.errors import UserError
    from dasvit.fmt import parse_count

    assert [parse_count(s) for s in ("1.4G", "900M", "6m", "500K", "2.5e9", "1200000")] == [
        1_400_000_000,
        900_000_000,
        6_000_000,
        500_000,
        2_500_000_000,
        1_200_000,
    ]
    for bad in ("", "G", "1.4 GB", "-3M", "0"):
        with pytest.raises(UserError):
            parse_count(bad)


def test_bad_focus_config_is_one_sentence_and_exit_2(tmp_path, monkeypatch, capsys):
    for override, words in [
        ("focus.base=no/such/cell.json", "focus.base"),
        ("focus.depths=[]", "focus.depths"),
        ("focus.lstm.archs=1", "focus.lstm.archs"),
    ]:
        code, _, err = cli(
            monkeypatch, capsys, "focus", "--headless", "--run-dir", str(tmp_path / "r"), "--set", override
        )
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_a_dasvit_search_cell_becomes_a_focus_space_then_a_specialized_network(tmp_path):
    """DASViT → FocusFormer: the recorded demo search's cell is the base; specialize; retrain the result."""
    from dasvit.focus.specialize import specialize

    search = REPO / "tests" / "recorded_run"
    run = tmp_path / "focus"
    assert (
        focus_main(
            "--preset",
            "focus-demo",
            "--run-dir",
            str(run),
            "--no-progress",
            *sets([*TINY_FOCUS, "focus.epochs=2", f"focus.base={search}"]),
        )
        == 0
    )
    base = load_genotype(run / "base-genotype.json")
    assert base.to_json()["edges"] == load_genotype(search / "genotype.json").to_json()["edges"]
    space = of_type(events(run), "space")[0]
    result = specialize(run, (space["min_flops"] + space["max_flops"]) // 2, samples=4)
    geno = load_genotype(result.path)
    assert geno.version == 2 and [(e.src, e.dst) for e in geno.edges] == [(e.src, e.dst) for e in base.edges]
    from dasvit.train.retrain import main as retrain_main

    assert (
        retrain_main(
            [
                str(result.path),  # no --preset: the data and recipe come from the focus run's config.yaml
                "--run-dir",
                str(tmp_path / "retrain"),
                "--no-progress",
                "--set",
                "retrain.epochs=1",
                "--set",
                "retrain.steps_per_epoch=2",
                "--set",
                "data.synthetic_train=128",
                "--set",
                "data.synthetic_val=32",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())
    assert metrics["params"] == result.best.params
    assert metrics["flops"] == result.best.flops


def test_show_counts_a_specialized_grayscale_network_as_specialize_did(tmp_path, monkeypatch, capsys):
    """digits are one-channel images: `dasvit show` of what `dasvit specialize` wrote must count the
    one-channel patch embedding, as specialize (and retrain) do, not an RGB one."""
    from dasvit.focus.specialize import specialize

    run = tmp_path / "focus-digits"
    tiny = [*TINY_FOCUS, "focus.epochs=1", "data.image_size=16"]
    assert focus_main("--preset", "focus-digits", "--run-dir", str(run), "--no-progress", *sets(tiny)) == 0
    space = of_type(events(run), "space")[0]
    result = specialize(run, space["max_flops"], samples=2)
    assert load_genotype(result.path).meta["in_chans"] == 1
    code, out, err = cli(monkeypatch, capsys, "show", str(result.path), "--format", "json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["params"], shown["flops"], shown["in_chans"]) == (result.best.params, result.best.flops, 1)

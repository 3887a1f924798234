"""The search engine end to end: run directory contract, resume after SIGKILL, stop, approval, 2 ranks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, engine_cmd, engine_env, events, of_type, schema_problems, sets, start_engine, wait_for
from dasvit.fmt import count
from dasvit.model.cost import Sizes, network_cost
from dasvit.model.genotype import load_genotype
from dasvit.run import controls, jsonl, runlock
from dasvit.run.events import make_event
from dasvit.run.presets import load_config
from dasvit.search.supernet import edge_list, edge_name

EDGES = {edge_name(e) for e in edge_list(3)}


def test_run_directory_follows_the_contract(tiny_search):
    assert schema_problems(tiny_search) == []  # every event as dasvit.run.events defines the search's
    evs = events(tiny_search)
    for e in evs:
        assert e["v"] == 1 and isinstance(e["time"], float)
    start = of_type(evs, "run_start")[0]
    assert start["kind"] == "search" and start["preset"] == "demo" and start["world_size"] == 1
    epochs = of_type(evs, "epoch")
    assert [(e["stage"], e["epoch"]) for e in epochs] == [(s, k) for s in (1, 2, 3) for k in (1, 2)]
    for e in epochs:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"):
            assert isinstance(e[key], float), key
        assert 0 <= e["val_acc"] <= 1
        assert set(e["arch_weights"]) == EDGES
        for ops in e["arch_weights"].values():
            assert abs(sum(ops.values()) - 1) < 1e-5
        assert set(e["fairness"]) >= {"skip", "type", "total"}
        skip = [ops.get("skip", 0.0) for ops in e["arch_weights"].values()]
        assert abs(e["skip_fraction"] - sum(skip) / len(skip)) < 1e-6
    # stage 2 runs on the 4 ops per edge that stage 1's pruning kept, stage 3 on 2
    prunes = of_type(evs, "prune")
    assert [p["stage"] for p in prunes] == [1, 2] and all(p["by"] == "auto" for p in prunes)
    assert [len(ops) for ops in prunes[0]["keep"].values()] == [4] * len(EDGES)
    for e in epochs:
        if e["stage"] == 2:
            assert {k: sorted(v) for k, v in e["arch_weights"].items()} == {
                k: sorted(v) for k, v in prunes[0]["keep"].items()
            }
    assert [g["stage"] for g in of_type(evs, "genotype")] == [1, 2, 3]
    assert evs[-1]["type"] == "run_end" and evs[-1]["status"] == "finished"
    geno = load_genotype(tiny_search / "genotype.json")
    assert geno.to_json() == of_type(evs, "genotype")[-1]["genotype"]
    assert all(len(geno.incoming(j)) == 2 for j in (2, 3, 4))
    assert (tiny_search / "genotype-stage1.json").is_file()


def _final_alpha(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]["alpha"]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, capsys, monkeypatch):
    from dasvit.search.searcher import main
    from dasvit_tui import cli

    cfg = [*TINY, "search.steps_per_epoch=6"]
    ref = tmp_path / "ref"
    # the uninterrupted run is `dasvit search --headless`, which ends by saying what it found and its cost
    argv = ["dasvit", "search", "--headless", "--preset", "demo", "--run-dir", str(ref), *sets(cfg)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    said = capsys.readouterr().out.split(f"found cell ({ref / 'genotype.json'}):\n")[1]
    found = load_genotype(ref / "genotype.json")
    assert all(e.op in said for e in found.edges) and "c(k)" in said
    cost = found.meta["cost"]
    demo = load_config("demo")  # TINY's width (24) on the demo's images and classes, at its retrain depth
    net = network_cost(found, Sizes(demo.retrain.depth, 24, demo.data.image_size, demo.space.patch_size, 3, 10))
    assert f"one cell {count(cost['params'])} params, {count(cost['flops'])} FLOPs" in said
    assert demo.data.synthetic_classes == 10
    assert f"the network at depth 4 (width 24, 16 px): {count(net.params)} params, {count(net.flops)} FLOPs" in said
    assert f"its budget: one cell costs {count(cost['flops'])} FLOPs" in said  # within or over it, and why

    run = tmp_path / "killed"
    proc = start_engine("dasvit.search", "--preset", "demo", "--run-dir", str(run), "--no-progress", *sets(cfg))
    # let stage 2 complete one epoch, then kill during its next epoch
    wait_for(
        lambda: (run / "events.jsonl").exists() and any(e["type"] == "epoch" and e["stage"] == 2 for e in events(run)),
        timeout=120,
        interval=0.02,
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not any(e["type"] == "run_end" for e in events(run))
    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert (
        load_genotype(run / "genotype.json").to_json()["edges"]
        == load_genotype(ref / "genotype.json").to_json()["edges"]
    )
    assert torch.allclose(_final_alpha(run), _final_alpha(ref), atol=1e-6, rtol=0)
    assert [e["status"] for e in of_type(events(run), "run_end")] == ["finished"]


@pytest.mark.slow  # a real search stopped by SIGINT twice over: 15 s (pytest -m slow runs it; the SIGKILL-resume test stays)
def test_sigint_stops_with_checkpoint_and_exit_130_and_live_run_is_refused(tmp_path):
    run = tmp_path / "run"
    proc = start_engine(
        "dasvit.search",
        "--preset",
        "demo",
        "--run-dir",
        str(run),
        "--no-progress",
        *sets([*TINY, "search.steps_per_epoch=40", "data.synthetic_train=1600"]),
    )
    wait_for(lambda: (run / "events.jsonl").exists() and of_type(events(run), "epoch"), timeout=120, interval=0.05)
    # the run is live: a second engine on the same directory is refused before any work
    second = subprocess.run(
        engine_cmd("dasvit.search", "--resume", str(run)),
        env=engine_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2 and "live engine" in second.stderr and "Traceback" not in second.stderr
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    evs = events(run)
    assert evs[-1]["type"] == "run_end" and evs[-1]["status"] == "stopped"
    assert (run / "checkpoint.pt").is_file()


def test_manual_approval_waits_and_applies_user_choice(tmp_path):
    """`dasvit approve` checks an answer against the proposal before it writes it, completes a partial one
    with the proposal and reports the engine's verdict; the engine completes a partial answer from any front
    and refuses a bad one with an error event naming the stage."""
    from typer.testing import CliRunner

    from dasvit_tui.cli import app

    run = tmp_path / "run"
    stages = "search.stages=[{depth: 1, keep: 8, epochs: 2}, {depth: 1, keep: 5, epochs: 1}, " + (
        "{depth: 2, keep: 4, epochs: 1}, {depth: 2, keep: 2, epochs: 1}]"
    )
    proc = start_engine(
        "dasvit.search",
        "--preset",
        "demo",
        "--run-dir",
        str(run),
        "--no-progress",
        "--approve",
        "manual",
        *sets([stages, "search.steps_per_epoch=2", *TINY[2:]]),
    )
    try:
        proposal = wait_for(
            lambda: of_type(events(run), "prune_proposal") if (run / "events.jsonl").exists() else None, timeout=120
        )[0]
        assert proposal["stage"] == 1 and set(proposal["keep"]) == EDGES
        # a malformed line is reported, not fatal; the run keeps waiting
        with open(run / "control.jsonl", "a") as f:
            f.write("{not json\n")
        wait_for(lambda: any("malformed" in e.get("message", "") for e in of_type(events(run), "error")), timeout=30)
        assert proc.poll() is None and not of_type(events(run), "prune")
        control = (run / "control.jsonl").read_text()
        # an op the edge does not offer: one sentence naming the edge and the op, exit 2, nothing sent
        refused = subprocess.run(
            [sys.executable, "-m", "dasvit_tui.cli", "approve", str(run), "--keep", '{"0->2": ["msa_16"]}'],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "edge 0->2 does not offer op 'msa_16'" in refused.stderr and "nothing was sent" in refused.stderr
        assert (run / "control.jsonl").read_text() == control
        # a partial answer: the one edge it names changes, the others keep the proposal; the verdict is printed
        chosen = [o for o in proposal["weights"]["0->2"] if o != "zero"][:2]
        result = CliRunner().invoke(app, ["approve", str(run), "--keep", json.dumps({"0->2": chosen})])
        assert result.exit_code == 0, result.output
        assert "stage 1 pruned as approved" in result.output and f"0->2 {' '.join(chosen)}" in result.output
        prune = of_type(events(run), "prune")[0]
        assert prune["by"] == "user" and prune["keep"] == {**proposal["keep"], "0->2": chosen}
        stage2 = wait_for(lambda: [e for e in of_type(events(run), "epoch") if e["stage"] == 2], timeout=60)[0]
        assert {k: sorted(v) for k, v in stage2["arch_weights"].items()} == {
            k: sorted(v) for k, v in prune["keep"].items()
        }
        # another front's answers, written as they come: a bad one is refused with the stage named, a
        # partial one is completed by the proposal
        second = wait_for(lambda: of_type(events(run), "prune_proposal")[1:], timeout=60)[0]
        controls.write_control(run, {"type": "approve", "stage": 2, "keep": {"1->2": ["mlp_16"]}})
        error = wait_for(lambda: [e for e in of_type(events(run), "error") if e.get("stage") == 2], timeout=30)[0]
        assert "edge 1->2 does not offer op 'mlp_16'" in error["message"]
        one = [o for o in second["weights"]["1->2"] if o != "zero"][:1]
        controls.write_control(run, {"type": "approve", "stage": 2, "keep": {"1->2": one}})
        prune2 = wait_for(lambda: of_type(events(run), "prune")[1:], timeout=30)[0]
        assert prune2["keep"] == {**second["keep"], "1->2": one}
        # stop while waiting for the third approval
        wait_for(lambda: len(of_type(events(run), "prune_proposal")) == 3, timeout=60)
        assert CliRunner().invoke(app, ["approve", str(run), "--stop"]).exit_code == 0
        assert proc.wait(timeout=30) == 130
        assert events(run)[-1]["status"] == "stopped"
    finally:
        proc.kill()
    # resuming does not obey the old stop line again; it finishes
    from dasvit.search.searcher import main

    assert main(["--resume", str(run), "--approve", "auto", "--no-progress"]) == 0
    assert events(run)[-1]["status"] == "finished"
    assert [p["stage"] for p in of_type(events(run), "prune")] == [1, 2, 3]
    assert schema_problems(run) == []  # also a user's prune, a refused approval's error, a stop, a resume


def test_approve_reports_the_engines_refusal_and_says_when_no_verdict_came(tmp_path):
    """The verdict `dasvit approve` waits for, on the recorded demo run cut at its first proposal (its lock held
    as a waiting engine holds it). An answer the command's own check lets through (the proposal's `weights`
    are made to offer an op) and the engine refuses: the engine's refusal is what the command reports (exit 2);
    with no answer it says so after --wait."""
    import shutil
    import threading
    from pathlib import Path

    from typer.testing import CliRunner

    from dasvit.errors import UserError
    from dasvit_tui.cli import app

    run = shutil.copytree(Path(__file__).parent / "recorded_run", tmp_path / "run")
    lines = (run / "events.jsonl").read_text().splitlines()
    cut = next(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "prune_proposal")
    proposal = json.loads(lines[cut])
    proposal["weights"]["0->2"]["mlp_16"] = 0.0  # offered in the proposal: only the (fake) engine refuses it
    (run / "events.jsonl").write_text("\n".join([*lines[:cut], json.dumps(proposal)]) + "\n")
    (run / "control.jsonl").unlink()
    lock = runlock.RunLock(run)
    lock.acquire()
    try:
        # unknown edges are still refused before anything is written
        result = CliRunner().invoke(app, ["approve", str(run), "--keep", '{"0->9": ["skip"]}'])
        assert isinstance(result.exception, UserError) and "'0->9' is not an edge" in str(result.exception)
        assert not (run / "control.jsonl").exists()
        # nobody reads the answer: sent, and said so after --wait
        result = CliRunner().invoke(app, ["approve", str(run), "--wait", "0.3"])
        assert result.exit_code == 0 and "has not answered within 0.3 s" in result.output

        def engine() -> None:  # what the engine does with an answer naming an op the edge does not offer
            wait_for(lambda: len((run / "control.jsonl").read_text().splitlines()) == 2)  # after the first answer
            why = "edge 0->2 does not offer op 'mlp_16' (its active ops: zero, skip, msa_4)"
            jsonl.append_jsonl(
                run / "events.jsonl",
                make_event("error", message=f"approve for stage 1 ignored: {why}", traceback="", stage=1),
            )

        answerer = threading.Thread(target=engine)
        answerer.start()
        result = CliRunner().invoke(app, ["approve", str(run), "--keep", '{"0->2": ["mlp_16"]}'])
        answerer.join()
        assert isinstance(result.exception, UserError)
        assert str(result.exception) == (
            "the engine refused the approval of stage 1: edge 0->2 does not offer op 'mlp_16' "
            "(its active ops: zero, skip, msa_4)."
        )
    finally:
        lock.release()


@pytest.mark.slow  # two torch processes under torchrun with gloo: the heaviest search test (pytest -m slow runs it)
def test_two_ranks_with_gloo_agree_on_the_genotype(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dasvit.search",
        "--preset",
        "demo",
        "--run-dir",
        str(run),
        "--no-progress",
        *sets(TINY),
    ]
    proc = subprocess.run(cmd, env=engine_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evs = events(run)
    assert of_type(evs, "run_start")[0]["world_size"] == 2
    assert len(of_type(evs, "run_start")) == 1  # only rank 0 writes
    assert evs[-1]["status"] == "finished"
    # the engine all-gathers α at every stage end and fails the run if ranks differ; it finished
    assert len(of_type(evs, "genotype")) == 3
    load_genotype(run / "genotype.json")


def test_ablation_plain_darts_runs_without_either_mechanism(tmp_path):
    from dasvit.search.searcher import main

    run = tmp_path / "darts"
    overrides = [
        *TINY[:1],
        "search.steps_per_epoch=2",
        *TINY[2:],
        "search.pts.enabled=false",
        "search.fairness.enabled=false",
    ]
    assert main(["--preset", "demo", "--run-dir", str(run), "--no-progress", *sets(overrides)]) == 0
    epochs = of_type(events(run), "epoch")
    assert epochs and all(e["fairness"]["enabled"] is False for e in epochs)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert not any("selectors" in k and "wq" in k for k in ckpt["model"])  # no token selector at all


def test_a_stage_can_start_from_the_last_stages_weights():
    from dasvit.search.supernet import Supernet, inherit_weights, mask_from_keep

    ops = ["zero", "skip", "msa_4", "mlp_2"]
    torch.manual_seed(0)
    old = Supernet(4, 16, 4, 24, 3, ops, 2, pts_dim=8)
    keep = {edge_name(e): ["skip", "msa_4"] for e in edge_list(3)}
    new = Supernet(4, 16, 4, 24, 3, ops, 4, mask=mask_from_keep(keep, ops, 3), pts_dim=8)
    alpha = new.alpha.detach().clone()
    assert inherit_weights(new, old) > 0
    assert torch.equal(new.alpha, alpha)  # α starts afresh
    w_old, w_new = dict(old.named_parameters()), dict(new.named_parameters())
    for name, p in w_new.items():
        if name.startswith("cells."):  # cell k is cell k mod 2 of the last stage; an op is (edge row, α column)
            k = int(name.split(".")[1])
            assert torch.equal(p, w_old[name.replace(f"cells.{k}.", f"cells.{k % 2}.", 1)]), name
        elif name != "alpha":
            assert torch.equal(p, w_old[name]), name
    msa = ops.index("msa_4")
    assert all(str(msa) in edge.ops for cell in new.cells for edge in cell.edges)  # kept: it has weights
    # the same depth and ops with the same α: the same network
    twin = Supernet(4, 16, 4, 24, 3, ops, 2, pts_dim=8)
    inherit_weights(twin, old)
    with torch.no_grad():
        twin.alpha.copy_(old.alpha)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(twin(x), old(x))


def test_approve_warns_when_the_answer_keeps_no_attention_anywhere(tmp_path):
    """An answer that prunes every msa op is sent (it is the user's call) with a warning that the next
    stage cannot see the image; one that keeps an msa op somewhere gets none."""
    import shutil
    from pathlib import Path

    from typer.testing import CliRunner

    from dasvit.model.opspec import op_type
    from dasvit_tui.cli import app

    run = shutil.copytree(Path(__file__).parent / "recorded_run", tmp_path / "run")
    lines = (run / "events.jsonl").read_text().splitlines()
    cut = next(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "prune_proposal")
    proposal = json.loads(lines[cut])
    (run / "events.jsonl").write_text("\n".join(lines[: cut + 1]) + "\n")
    (run / "control.jsonl").unlink()
    no_msa = {e: [o for o in ops if op_type(o) not in ("msa", "zero")] for e, ops in proposal["weights"].items()}
    assert all(no_msa.values())
    warned = CliRunner().invoke(app, ["approve", str(run), "--keep", json.dumps(no_msa)])
    assert warned.exit_code == 0, warned.output
    assert "keeps no attention (msa) op on any edge" in warned.output
    assert json.loads((run / "control.jsonl").read_text().splitlines()[-1])["keep"] == no_msa  # sent all the same
    one = {**no_msa, "0->2": [o for o in proposal["weights"]["0->2"] if op_type(o) == "msa"][:1]}
    quiet = CliRunner().invoke(app, ["approve", str(run), "--keep", json.dumps(one)])
    assert quiet.exit_code == 0 and "attention" not in quiet.output

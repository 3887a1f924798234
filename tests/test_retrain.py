"""`dasvit retrain`: the run directory, resume after a stop, two gloo ranks, load_model, the recipe."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, engine_env, events, of_type, schema_problems, sets, start_engine, wait_for
from dasvit.run.presets import dump_config, load_config

CELL = Path(__file__).parent / "fixtures" / "searched_cell.json"
# on top of the search run's demo config: 4 short epochs of a 2-cell network, on 4 of the generated classes
# (the demo's 10 are too many for 24 steps to rise clearly above chance)
TINY = ["retrain.epochs=4", "retrain.steps_per_epoch=6", "retrain.depth=2", "data.synthetic_val=128"]
TINY.append("data.synthetic_classes=4")
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "top1", "top5", "lr", "seconds", "images_per_s")


def cli(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dasvit_tui.cli", *map(str, args)],
        cwd=REPO,
        env=engine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A finished demo search run directory, as the search engine leaves it (config, genotype, events)."""
    run = tmp_path_factory.mktemp("retrain") / "search"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config("demo")))
    (run / "genotype.json").write_text(CELL.read_text())
    (run / "events.jsonl").write_text('{"v": 1, "type": "run_start", "time": 1.0, "kind": "search"}\n')
    return run


@pytest.fixture(scope="module")
def reference(search_run) -> Path:
    """`dasvit retrain RUN_DIR --headless`, uninterrupted: the run every other test compares with."""
    proc = cli("retrain", search_run, "--headless", *sets(TINY))  # progress: plain lines into a pipe
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (search_run / "cli-output.txt").write_text(out + err)
    return search_run / "retrain"


def test_retrain_of_a_search_run_writes_the_contract_into_run_dir_retrain(reference, search_run):
    assert sorted(p.name for p in reference.iterdir() if not p.name.startswith(".")) == [
        "best.pt",
        "checkpoint.prev.pt",
        "checkpoint.pt",
        "config.yaml",
        "control.jsonl",
        "events.jsonl",
        "genotype.json",
        "last.pt",
        "metrics.json",
    ]
    assert schema_problems(reference) == []  # every event as dasvit.run.events defines the retrain's
    evs = events(reference)
    start = of_type(evs, "run_start")[0]
    assert start["kind"] == "retrain" and start["preset"] == "demo" and start["world_size"] == 1
    assert start["config"]["retrain"]["depth"] == 2  # the search run's config with --set on top
    epochs = of_type(evs, "epoch")
    assert [(e["stage"], e["epoch"], e["epochs"]) for e in epochs] == [(1, k, 4) for k in (1, 2, 3, 4)]
    for e in epochs:
        assert all(isinstance(e[k], float) for k in EPOCH_KEYS)
        assert 0 <= e["top1"] <= e["top5"] <= 1
    assert evs[-1]["type"] == "run_end" and evs[-1]["status"] == "finished"
    m = json.loads((reference / "metrics.json").read_text())
    # the epoch is chosen on the validation split (the epochs' top1), the figures reported on the test split
    best = max(epochs, key=lambda e: e["top1"])
    assert (m["val_top1"], m["best_epoch"], m["selected_on"]) == (best["top1"], best["epoch"], "validation split")
    assert m["splits"]["top1"].startswith("test (128 images)") and "held out" in m["splits"]["best_epoch"]
    assert m["top1"] > 0.25 + 0.1  # 4 classes: well above chance
    assert (m["image_size"], m["epochs"], m["depth"]) == (16, 4, 2)
    assert m["genotype"]["edges"] == json.loads(CELL.read_text())["edges"]
    assert 0 < m["flops"] and 0 < m["params"] and m["images_per_s"] > 0
    # what a person reads: counts as the count formatter writes them (a 350K-FLOP network was "0.000 GFLOPs")
    from dasvit.fmt import count

    done = next(ln for ln in (search_run / "cli-output.txt").read_text().splitlines() if ln.startswith("done:"))
    assert done.endswith(f"{count(m['params'])} params, {count(m['flops'])} FLOPs") and "GFLOPs" not in done


def test_load_model_classifies_the_test_split_as_metrics_json_says(reference, search_run):
    import dasvit
    from dasvit.run.presets import load_run_config
    from dasvit.train.data import build_datasets

    model = dasvit.load_model(search_run)  # the search run directory: its retrain/ is found
    assert not model.training
    cfg = load_run_config(reference / "config.yaml")
    splits = build_datasets(cfg.data)
    val, classes = splits.test, splits.num_classes
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert pred.shape == (len(val),) and int(pred.max()) < classes
    assert (pred == y).float().mean().item() == pytest.approx(
        json.loads((reference / "metrics.json").read_text())["top1"]
    )


def test_stopped_retrain_resumes_to_the_same_result_as_an_uninterrupted_one(reference, search_run, tmp_path):
    from dasvit.train.retrain import main

    run = tmp_path / "stopped"
    proc = start_engine("dasvit.train.retrain", str(search_run), "--run-dir", str(run), "--no-progress", *sets(TINY))
    wait_for(lambda: (run / "events.jsonl").exists() and of_type(events(run), "epoch"), timeout=120, interval=0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    done = len(of_type(events(run), "epoch"))
    assert 1 <= done < 4 and of_type(events(run), "run_end")[-1]["status"] == "stopped"
    assert not (run / "metrics.json").exists()

    assert main(["--resume", str(run), "--no-progress"]) == 0
    evs = events(run)
    assert [e["resumed"] for e in of_type(evs, "run_start")] == [False, True]
    assert [e["epoch"] for e in of_type(evs, "epoch")] == [*range(1, done + 1), *range(done + 1, 5)]
    got, want = of_type(evs, "epoch")[-1], of_type(events(reference), "epoch")[-1]
    for k in ("train_loss", "val_loss", "top1", "top5", "lr"):
        assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-7), k
    assert (
        json.loads((run / "metrics.json").read_text())["top1"]
        == json.loads((reference / "metrics.json").read_text())["top1"]
    )


@pytest.mark.slow  # two torch processes under torchrun with gloo (pytest -m slow runs it)
def test_two_gloo_ranks_train_like_one_process_with_the_same_global_batch(reference, search_run, tmp_path):
    run = tmp_path / "ddp"
    # epoch 1 is warm-up only, so a 1-epoch run follows the reference's first epoch exactly
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dasvit.train.retrain",
        str(search_run),
        "--run-dir",
        str(run),
        "--no-progress",
        *sets([*TINY, "retrain.epochs=1"]),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evs = events(run)
    assert of_type(evs, "run_start")[0]["world_size"] == 2 and len(of_type(evs, "run_start")) == 1  # rank 0 writes
    got, want = of_type(evs, "epoch")[0], of_type(events(reference), "epoch")[0]
    for k in ("train_loss", "train_acc", "val_loss", "top1", "lr"):
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), k
    assert (run / "metrics.json").is_file()


def test_user_mistakes_exit_2_with_one_sentence(reference, search_run):
    procs = {
        "no config": (cli("retrain", "vit_b16", "--headless"), "pass --preset"),
        "taken": (cli("retrain", search_run, "--headless"), "already holds a run"),
    }
    for name, (proc, words) in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and words in err, (name, err)


def test_resume_keeps_the_network_of_the_run_it_continues(reference, search_run):
    from dasvit.errors import ConfigError, RunDirError
    from dasvit.run.requests import RetrainRequest

    req = RetrainRequest(resume=search_run, overrides=["retrain.epochs=8"]).resolved()  # the search run → its retrain/
    assert req.run_dir == reference and req.config.retrain.epochs == 8
    with pytest.raises(ConfigError, match="cannot change the network"):
        RetrainRequest(resume=reference, overrides=["retrain.depth=3"]).resolved()
    with pytest.raises(ConfigError, match="--preset cannot change"):
        RetrainRequest(preset="demo", resume=reference).resolved()
    with pytest.raises(ConfigError, match="is not the cell"):
        RetrainRequest("vit_b16", resume=reference).resolved()
    with pytest.raises(RunDirError, match="not a retrain run"):
        RetrainRequest(resume=_search_only(search_run)).resolved()


def _search_only(search_run: Path) -> Path:
    """A copy of the search run without its retrain/."""
    import shutil

    other = search_run.parent / "search-only"
    if not other.exists():
        shutil.copytree(search_run, other, ignore=shutil.ignore_patterns("retrain", "baseline"))
    return other


def test_the_whole_recipe_runs_ema_mixup_cutmix_erasing_drop_path(tmp_path):
    from dasvit.train.retrain import BEST, main

    run = tmp_path / "recipe"
    rc = main(
        [
            "vit_b16",
            "--preset",
            "demo",
            "--run-dir",
            str(run),
            "--no-progress",
            *sets(
                [
                    "retrain.epochs=1",
                    "retrain.steps_per_epoch=2",
                    "retrain.depth=1",
                    "data.synthetic_val=32",
                    "retrain.ema=true",
                    "retrain.ema_decay=0.5",
                    "retrain.augment.mixup=0.8",
                    "retrain.augment.cutmix=1.0",
                    "retrain.augment.random_erasing=0.5",
                    "retrain.drop_path=0.1",
                    "retrain.label_smoothing=0.1",
                ]
            ),
        ]
    )
    assert rc == 0
    best = torch.load(run / BEST, weights_only=True)["model"]
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "ema" in raw
    # best.pt holds the EMA weights, which differ from the raw weights after two steps
    assert not torch.equal(best["head.fc.weight"], raw["model"]["head.fc.weight"])
    assert torch.equal(best["head.fc.weight"], raw["ema"]["module.head.fc.weight"])
    assert of_type(events(run), "run_end")[0]["status"] == "finished"


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    from dasvit.train.loop import warmup_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total=100, warmup=10, min_lr=0.01)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.3]) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] > 0.01


def test_augmentation_is_switchable_from_the_config():
    import torchvision.transforms.v2 as T

    from dasvit.train.augment import batch_mixer, train_transform

    full, _ = train_transform(load_config("cifar10", ["retrain.augment.random_erasing=0.25"]))
    kinds = [type(t) for t in full.transforms]
    assert kinds.index(T.RandAugment) < kinds.index(T.ToDtype) < kinds.index(T.RandomErasing)
    plain, _ = train_transform(
        load_config("cifar10", ["retrain.augment.randaugment=false", "retrain.augment.random_erasing=0"])
    )
    assert T.RandAugment not in map(type, plain.transforms) and T.RandomErasing not in map(type, plain.transforms)
    _, notes = train_transform(load_config("demo", ["retrain.augment.randaugment=true"]))
    assert "RandAugment does not apply" in notes[0]

    assert batch_mixer(load_config("demo"), 4) is None
    mixer = batch_mixer(load_config("demo", ["retrain.augment.mixup=0.8", "retrain.augment.cutmix=1.0"]), 4)
    x, y = mixer(torch.rand(8, 3, 16, 16), torch.arange(8) % 4)
    assert y.shape == (8, 4) and torch.allclose(y.sum(1), torch.ones(8))

"""`dasvit export`: a retrained network and a FocusFormer subnet leave dasvit as plain PyTorch (model.py +
model.safetensors), ONNX and torch.export, computing what dasvit computes; `retrain --init inherited`
fine-tunes from a subnet's inherited weights; what comes back to dasvit damaged is one sentence."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_FOCUS, engine_env, events, of_type, sets
from dasvit.run.presets import dump_config, load_config

CELL = Path(__file__).parent / "fixtures" / "searched_cell.json"
TINY_RETRAIN = ["retrain.epochs=1", "retrain.steps_per_epoch=3", "retrain.depth=2", "data.synthetic_val=64"]


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`dasvit ARGS` in this process: (exit code, stdout, stderr)."""
    from dasvit_tui.cli import main

    monkeypatch.setattr(sys, "argv", ["dasvit", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def images(n: int, chans: int, size: int) -> torch.Tensor:
    return torch.randn(n, chans, size, size, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> Path:
    """A finished tiny retrain (the retrain engine, in this process)."""
    from dasvit.train.retrain import main

    run = tmp_path_factory.mktemp("export") / "search"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config("demo")))
    (run / "genotype.json").write_text(CELL.read_text())
    (run / "events.jsonl").write_text('{"v": 1, "type": "run_start", "time": 1.0, "kind": "search"}\n')
    assert main([str(run), "--no-progress", *sets(TINY_RETRAIN)]) == 0
    return run / "retrain"


def test_an_exported_retrain_computes_dasvits_logits_without_dasvit(retrained, tmp_path, monkeypatch, capsys):
    import dasvit

    out = tmp_path / "exported"
    code, said, err = cli(monkeypatch, capsys, "export", retrained, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.py", "model.safetensors"]
    doc = json.loads((out / "config.json").read_text())
    x, want = inputs_and_logits(retrained, doc)
    torch.save(x, tmp_path / "x.pt")

    # model.py + model.safetensors in a process where `import dasvit` fails
    blocked = tmp_path / "blocked" / "dasvit"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('dasvit is not installed here')\n")
    script = f"""
import sys, torch
try:
    import dasvit
except ImportError:
    pass
else:
    raise SystemExit("dasvit was importable")
sys.path.insert(0, {str(out)!r})
import model
net = model.load({str(out)!r})
assert not any(m == "dasvit" or m.startswith("dasvit.") for m in sys.modules), "model.py imported dasvit"
with torch.no_grad():
    torch.save(net(torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)), {str(tmp_path / "y.pt")!r})
"""
    env = dict(engine_env(), PYTHONPATH=str(blocked.parent))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (torch.load(tmp_path / "y.pt", weights_only=True) - want).abs().max().item() <= 1e-5

    # model.py is dasvit's own network code, then the export's footer
    network_py = Path(dasvit.__file__).parent / "model" / "network.py"
    assert (out / "model.py").read_text().startswith(network_py.read_text())

    # config.json says what it is and where it came from
    metrics = json.loads((retrained / "metrics.json").read_text())
    assert doc["source"]["kind"] == "retrain" and doc["source"]["top1"] == metrics["top1"]
    assert doc["source"]["params"] == metrics["params"] and doc["source"]["flops"] == metrics["flops"]
    channels = doc["sizes"]["in_chans"]
    assert doc["input"]["channels"] == channels and len(doc["input"]["mean"]) == channels
    assert "model.load" in (out / "README.md").read_text()


def inputs_and_logits(retrained: Path, doc: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Five images of the exported network's input and dasvit's own logits for them."""
    import dasvit

    s = doc["sizes"]
    x = images(5, s["in_chans"], s["image_size"])
    with torch.no_grad():
        return x, dasvit.load_model(retrained)(x)


def test_onnx_and_torch_export_files_compute_dasvits_logits(retrained, tmp_path, monkeypatch, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "exported"
    code, said, err = cli(monkeypatch, capsys, "export", retrained, "--out", out, "--onnx", "--torch-export")
    assert code == 0, err
    assert {"model.onnx", "model.pt2", "model.py", "model.safetensors"} <= {p.name for p in out.iterdir()}
    x, want = inputs_and_logits(retrained, json.loads((out / "config.json").read_text()))
    # the same logits at another batch size than the traced one
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"images": x.numpy()})
    assert (torch.from_numpy(y) - want).abs().max().item() <= 1e-5
    program = torch.export.load(str(out / "model.pt2")).module()
    with torch.no_grad():
        assert (program(x) - want).abs().max().item() <= 1e-5
        assert (program(x[:1]) - want[:1]).abs().max().item() <= 1e-5


def test_timm_creates_the_exported_network_by_name(retrained, tmp_path):
    timm = pytest.importorskip("timm")
    from dasvit.reports.export import export

    out = tmp_path / "exported"
    doc = export(str(retrained), out, name="dasvit_test_export", say=lambda _: None)
    spec = importlib.util.spec_from_file_location("exported_model", out / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    net = timm.create_model("dasvit_test_export", pretrained=True)
    s = doc["sizes"]
    x = images(3, s["in_chans"], s["image_size"])
    with torch.no_grad():
        assert (net(x) - module.load(out)(x)).abs().max().item() == 0
    data = timm.data.resolve_data_config({}, model=net)
    assert data["input_size"] == (s["in_chans"], s["image_size"], s["image_size"])
    assert list(data["mean"]) == pytest.approx(doc["input"]["mean"])


def test_a_search_run_exports_its_architecture_only(tiny_search, tmp_path, monkeypatch, capsys):
    out = tmp_path / "arch"
    code, said, err = cli(monkeypatch, capsys, "export", tiny_search, "--out", out)
    assert code == 0, err
    assert not (out / "model.safetensors").exists()
    doc = json.loads((out / "config.json").read_text())
    assert doc["source"]["weights"] is None and doc["source"]["kind"] == "search"
    spec = importlib.util.spec_from_file_location("arch_model", out / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    net = module.create(pretrained=False)
    s = doc["sizes"]
    assert net(images(2, s["in_chans"], s["image_size"])).shape == (2, s["num_classes"])


@pytest.fixture(scope="module")
def specialized(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny FocusFormer run and the subnet `specialize` picked at its largest budget (genotype + weights)."""
    from dasvit.focus.specialize import specialize
    from dasvit.focus.train import main

    run = tmp_path_factory.mktemp("focus") / "run"
    assert main(["--preset", "focus-demo", "--run-dir", str(run), "--no-progress", *sets(TINY_FOCUS)]) == 0
    space = of_type(events(run), "space")[0]
    result = specialize(run, space["max_flops"], samples=4, method="random")
    return run, result.path


def _accuracy(net: torch.nn.Module, run: Path) -> float:
    """Top-1 of `net` on the focus run's validation split, as specialize scores a subnet."""
    from dasvit.run.presets import load_run_config
    from dasvit.train.data import build_datasets

    val = build_datasets(load_run_config(run / "config.yaml").data).selection
    loader = torch.utils.data.DataLoader(val, batch_size=32)
    right = total = 0
    with torch.no_grad():
        for x, y in loader:
            right += (net(x).argmax(1) == y).sum().item()
            total += len(y)
    return right / total


def test_an_exported_focusformer_subnet_has_its_inherited_accuracy(specialized, tmp_path, monkeypatch, capsys):
    run, genotype = specialized
    assert genotype.with_suffix(".safetensors").is_file()  # specialize keeps the subnet's inherited weights
    out = tmp_path / "subnet"
    code, said, err = cli(monkeypatch, capsys, "export", genotype, "--out", out)
    assert code == 0, err
    spec = importlib.util.spec_from_file_location("subnet_model", out / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    meta = json.loads(genotype.read_text())["meta"]
    assert _accuracy(module.load(out), run) == meta["top1_inherited"]
    doc = json.loads((out / "config.json").read_text())
    assert doc["source"]["kind"] == "specialized" and doc["source"]["weights"] == "inherited"


def test_retrain_init_inherited_starts_from_the_subnets_weights(specialized, tmp_path, monkeypatch, capsys):
    """With a learning rate too small to move them, a fine-tune's test top-1 is the inherited network's."""
    from dasvit.reports.export import build, resolve
    from dasvit.run.presets import load_run_config
    from dasvit.train.data import build_datasets

    run, genotype = specialized
    finetune = tmp_path / "finetune"
    frozen = ["retrain.epochs=1", "retrain.steps_per_epoch=1", "retrain.lr=1e-12", "retrain.min_lr=0"]
    frozen += ["retrain.warmup_epochs=0", "retrain.drop_path=0", "retrain.ema=false"]
    code, said, err = cli(
        monkeypatch, capsys, "retrain", genotype, "--init", "inherited", "--headless", "--no-progress",
        "--run-dir", finetune, *sets(frozen),
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((finetune / "metrics.json").read_text())
    assert metrics["init"] == "inherited"
    net = build(resolve(str(genotype)))
    test = build_datasets(load_run_config(run / "config.yaml").data).test
    right = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=32):
            right += (net(x).argmax(1) == y).sum().item()
    assert metrics["top1"] == pytest.approx(right / len(test))


def test_damaged_exports_and_weights_are_one_sentence(retrained, specialized, tmp_path, monkeypatch, capsys):
    from dasvit.reports.export import export

    good = tmp_path / "good"
    export(str(retrained), good, say=lambda _: None)
    weights = (good / "model.safetensors").read_bytes()
    cases = {
        "not json": lambda d: (d / "config.json").write_text("{nope"),
        "huge depth": lambda d: (d / "config.json").write_text(
            (good / "config.json").read_text().replace('"depth": 2', '"depth": 10000000')
        ),
        "no genotype": lambda d: (d / "config.json").write_text(
            json.dumps({**json.loads((good / "config.json").read_text()), "genotype": [1, 2]})
        ),
        "truncated weights": lambda d: (d / "model.safetensors").write_bytes(weights[: len(weights) // 2]),
        "garbage weights": lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64),
    }
    for what, damage in cases.items():
        d = tmp_path / what.replace(" ", "-")
        d.mkdir()
        for f in good.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        damage(d)
        code, _, err = cli(monkeypatch, capsys, "export", d, "--out", tmp_path / f"again-{d.name}")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (what, err)
    # a truncated inherited-weights file is one sentence before a fine-tune starts
    run, genotype = specialized
    broken = genotype.with_name("broken.json")
    broken.write_text(genotype.read_text())
    broken.with_suffix(".safetensors").write_bytes(genotype.with_suffix(".safetensors").read_bytes()[:100])
    code, _, err = cli(monkeypatch, capsys, "retrain", broken, "--init", "inherited", "--headless")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.safetensors" in err, err
    # an export never writes over a folder of other files
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = cli(monkeypatch, capsys, "export", retrained, "--out", tmp_path / "busy")
    assert code == 2 and (tmp_path / "busy" / "notes.txt").read_text() == "mine"

"""Configuration: presets, --set overrides parsed as YAML, and one-sentence errors with exit code 2."""

import subprocess
import sys

import pytest

from dasvit.errors import ConfigError
from dasvit.run.presets import load_config, preset_names
from dasvit_tui.cli import main


def test_presets_load_with_paper_settings():
    assert {"demo", "cifar10", "cifar100", "imagenet100"} <= set(preset_names())
    cfg = load_config("imagenet100")
    assert (cfg.data.image_size, cfg.space.patch_size, cfg.space.embed_dim, cfg.data.batch_size) == (224, 16, 768, 64)
    assert [(s.depth, s.keep, s.epochs) for s in cfg.search.stages] == [(2, 8, 30), (4, 5, 30), (6, 3, 30)]
    assert len(cfg.space.ops) == 8


def test_set_values_are_yaml():
    cfg = load_config(
        "demo",
        [
            "search.stages=[{depth: 2, keep: 8, epochs: 1}]",
            "search.pts.enabled=false",
            "search.fairness.upper=0.7",
            "data.root=/tmp/x",
        ],
    )
    assert [(s.depth, s.keep, s.epochs) for s in cfg.search.stages] == [(2, 8, 1)]
    assert cfg.search.pts.enabled is False and cfg.search.fairness.upper == 0.7 and cfg.data.root == "/tmp/x"


@pytest.mark.parametrize(
    "override, words",
    [
        ("data.bogus=1", ["data.bogus", "allowed"]),
        ("search.pts.ratio=0", ["search.pts.ratio", "(0, 1]"]),
        ("search.pts.ratio=1.5", ["search.pts.ratio", "(0, 1]"]),
        ("search.stages=[{depth: 2, keep: 9, epochs: 1}]", ["keep", "between 1 and 8"]),
        (
            "search.stages=[{depth: 2, keep: 3, epochs: 1}, {depth: 4, keep: 5, epochs: 1}]",
            ["stages[1].keep", "1 and 3"],
        ),
        ("space.ops=[skip, conv_3x3]", ["space.ops[1]", "conv_3x3"]),
        ("space.embed_dim=abc", ["space.embed_dim", "integer"]),
        ("search.approval=sometimes", ["search.approval", "auto", "manual"]),
        ("data.image_size=30", ["data.image_size", "multiple"]),
        ("search.fairness.lower=0.9", ["lower", "upper"]),
    ],
)
def test_bad_config_is_one_sentence_and_exit_2(override, words, capsys, monkeypatch, tmp_path):
    with pytest.raises(ConfigError):
        load_config("demo", [override])
    monkeypatch.setattr(
        sys,
        "argv",
        ["dasvit", "search", "--headless", "--preset", "demo", "--run-dir", str(tmp_path / "r"), "--set", override],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err
    assert not (tmp_path / "r").exists()  # stopped before any work


def test_console_script_exit_code_for_unknown_preset():
    proc = subprocess.run(
        [sys.executable, "-m", "dasvit_tui.cli", "search", "--headless", "--preset", "nope"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dasvit: unknown preset 'nope'")
    assert "Traceback" not in proc.stderr


def test_missing_dataset_is_one_sentence_exit_2_and_no_run_dir(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dasvit_tui.cli",
            "search",
            "--headless",
            "--preset",
            "imagenet100",
            "--set",
            f"data.root={tmp_path / 'nothing'}",
            "--run-dir",
            str(run),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "imagenet100 was not found in" in proc.stderr and str(tmp_path / "nothing") in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not run.exists()


def test_a_directory_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """A run directory `demo/` in the working directory (what `--run-dir demo` leaves) is not a preset file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert load_config("demo").preset == "demo"
    (tmp_path / "mine.yaml").write_text("preset: mine\ndata: {image_size: 24}\n")
    assert load_config("mine.yaml").data.image_size == 24
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("missing.yaml")


@pytest.mark.parametrize(
    "command, preset, short, right",
    [
        (
            "search",
            "focus-demo",
            "search.stages=[{depth: 1, keep: 8, epochs: 1}]",
            "dasvit focus --headless --preset focus-demo",
        ),
        ("focus", "demo", "focus.epochs=1", "dasvit search --headless --preset demo"),
    ],
)
def test_a_preset_for_the_other_engine_is_refused_naming_the_right_command(
    command, preset, short, right, capsys, monkeypatch, tmp_path
):
    """`dasvit focus --preset demo` would train 500 epochs, `dasvit search --preset focus-demo` 30 a stage
    (`short` keeps the run short if it were not refused: --set does not change which engine a preset names)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dasvit", command, "--headless", "--preset", preset, "--set", short])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.endswith(right)
    assert not (tmp_path / "runs").exists()


def test_search_help_lists_every_search_preset(capsys, monkeypatch):
    from dasvit.run.presets import preset_names
    from dasvit.run.requests import preset_engine

    monkeypatch.setenv("COLUMNS", "400")  # no preset name broken over two lines
    monkeypatch.setattr(sys, "argv", ["dasvit", "search", "--help"])
    with pytest.raises(SystemExit):
        main()
    out = capsys.readouterr().out
    searches = [p for p in preset_names() if preset_engine(p) == "search"]
    assert {"demo", "digits", "fashion", "cifar10", "imagenet100"} <= set(searches)
    assert f"({', '.join(searches)})" in out


def test_scientific_notation_is_a_number_in_presets_and_overrides():
    """PyYAML alone reads 1e-4 as a string; a learning rate written so must still be the number."""
    from dasvit.run.presets import load_config, yaml_load

    cfg = load_config("demo", ["retrain.lr=1e-4", "search.arch_lr=3E-4"])
    assert cfg.retrain.lr == 1e-4 and cfg.search.arch_lr == 3e-4
    assert yaml_load("{a: 1.5e3, b: 1e, c: e5}") == {"a": 1500.0, "b": "1e", "c": "e5"}


def test_yaml_is_read_as_plain_data_only(tmp_path):
    """A preset or --set value cannot build Python objects: a python/* tag is refused in one sentence."""
    from dasvit.errors import ConfigError
    from dasvit.run.presets import load_config

    marker = tmp_path / "ran"
    with pytest.raises(ConfigError):
        load_config("demo", [f"retrain.lr=!!python/object/apply:os.system ['touch {marker}']"])
    preset = tmp_path / "evil.yaml"
    preset.write_text(f"retrain: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_config(str(preset))
    assert not marker.exists()

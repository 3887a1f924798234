"""What an engine process is asked to do: one typed request per engine, and its command line.

A front (the CLI, the TUI) builds a request; `argv()` is the engine's command line and `parse()` reads it
back in the engine (`python -m dasvit.search`, `dasvit.retrain`, `dasvit.focus`, or the same under torchrun), so
the argument list is written in one place and read in one place. `resolved()` fixes what every rank and
the watching front must agree on before the engine starts: the run directory. A new engine adds a request
class here and an entry in `REQUESTS`.

This module imports no torch: the launcher uses it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from . import rundir as rd


def _common(p: argparse.ArgumentParser, presets: str = "demo, cifar10, ...") -> None:
    p.add_argument("--preset", default=None, help=f"preset name ({presets}) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-dir", dest="run_dir", type=Path, default=None)
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress lines on stdout")


def _argv_common(
    preset: str | None, overrides: list[str], run_dir: Path | None, resume: Path | None, progress: bool
) -> list[str]:
    argv: list[str] = []
    if preset is not None:
        argv += ["--preset", preset]
    for o in overrides:
        argv += ["--set", o]
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    if resume is not None:
        argv += ["--resume", str(resume)]
    if not progress:
        argv.append("--no-progress")
    return argv


@dataclass
class SearchRequest:
    """A DASViT search: a new one from `preset` + `overrides` into `run_dir`, or `resume` an existing run."""

    KIND: ClassVar[str] = "search"
    MODULE: ClassVar[str] = "dasvit.search"

    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    approve: str | None = None  # auto | manual; None: the config's (presets: auto)
    resume: Path | None = None
    progress: bool = True

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=f"python -m {cls.MODULE}", description="The search engine process; users run `dasvit search`."
        )
        _common(p)
        p.add_argument("--approve", choices=["auto", "manual"], default=None)
        return p

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> SearchRequest:
        return cls(**vars(cls.parser().parse_args(argv)))

    def argv(self) -> list[str]:
        argv = _argv_common(self.preset, self.overrides, self.run_dir, self.resume, self.progress)
        return argv + (["--approve", self.approve] if self.approve else [])

    def resolved(self, root: Path = Path("runs")) -> SearchRequest:
        """The run directory fixed (a resumed run's own; else runs/<preset>-<time>); the config is checked
        first, so a mistake is one sentence before any directory exists."""
        if self.resume is not None:
            return replace(self, run_dir=Path(self.resume))
        from .config import load_config

        cfg = load_config(self.preset or "demo", self.overrides)
        return replace(self, run_dir=Path(self.run_dir or rd.default_run_dir(cfg.preset, root)))


@dataclass
class RetrainRequest:
    """Retrain a cell: `source` is a search run directory, a genotype file or a built-in (vit_b16); or
    `resume` a retrain run."""

    KIND: ClassVar[str] = "retrain"
    MODULE: ClassVar[str] = "dasvit.retrain"

    source: str | None = None
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=f"python -m {cls.MODULE}", description="The retrain engine process; users run `dasvit retrain`."
        )
        p.add_argument("source", nargs="?", help="genotype.json, a search run directory, or a built-in (vit_b16)")
        _common(p)
        return p

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> RetrainRequest:
        return cls(**vars(cls.parser().parse_args(argv)))

    def argv(self) -> list[str]:
        head = [self.source] if self.source is not None else []
        return head + _argv_common(self.preset, self.overrides, self.run_dir, self.resume, self.progress)

    def resolved(self, root: Path = Path("runs")) -> RetrainRequest:
        """The run directory fixed: a resumed run's own, else `retrain_run_dir`. A source that names an
        existing file or directory is made absolute (a detached engine may start elsewhere)."""
        source = self.source
        if source is not None and Path(source).exists():
            source = str(Path(source).absolute())
        if self.resume is not None:
            return replace(self, source=source, run_dir=self.run_dir or Path(self.resume))
        return replace(self, source=source, run_dir=Path(self.run_dir or retrain_run_dir(source, root)))


def retrain_run_dir(source: str | None, root: Path = Path("runs")) -> Path:
    """Where a retrain of `source` goes by default: SEARCH_RUN/retrain for a search run directory,
    FOCUS_RUN/specialized/<budget>-retrain for a genotype `dasvit specialize` wrote there, else
    runs/<name>-retrain-<time>."""
    if source is not None and Path(source).is_dir() and (Path(source) / rd.CONFIG).is_file():
        return rd.run_subdir(Path(source), rd.RETRAIN)
    focus_run = rd.specialized_run(source) if source is not None and Path(source).is_file() else None
    if focus_run is not None:
        return rd.run_subdir(focus_run, rd.SPECIALIZED, f"{Path(source).stem}-retrain")
    return rd.default_run_dir(f"{Path(source or 'custom').stem}-retrain", root)


@dataclass
class FocusRequest:
    """A FocusFormer training (supernet and sampler): a new one from `preset` + `overrides` into `run_dir`,
    or `resume` an existing run."""

    KIND: ClassVar[str] = "focus"
    MODULE: ClassVar[str] = "dasvit.focus"
    DEFAULT_PRESET: ClassVar[str] = "focus-demo"

    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=f"python -m {cls.MODULE}", description="The FocusFormer engine process; users run `dasvit focus`."
        )
        _common(p, presets="focus-demo, focus-cifar100, ...")
        return p

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> FocusRequest:
        return cls(**vars(cls.parser().parse_args(argv)))

    def argv(self) -> list[str]:
        return _argv_common(self.preset, self.overrides, self.run_dir, self.resume, self.progress)

    def resolved(self, root: Path = Path("runs")) -> FocusRequest:
        """The run directory fixed (a resumed run's own; else runs/<preset>-<time>); the config and the
        elastic space around its base cell are checked first, so a mistake is one sentence before any
        directory exists."""
        if self.resume is not None:
            return replace(self, run_dir=Path(self.resume))
        from .config import load_config
        from .focus.space import space_from_config

        cfg = load_config(self.preset or self.DEFAULT_PRESET, self.overrides)
        space_from_config(cfg)
        return replace(self, run_dir=Path(self.run_dir or rd.default_run_dir(cfg.preset, root)))


def preset_engine(preset: str | None) -> str:
    """Which engine a preset is meant for: "focus" when its YAML sets a top-level `focus:` section (the
    focus-* presets, or a user's file that configures a FocusFormer), else "search". Every config has focus
    defaults, so only a section written in the preset itself names the engine; `--set focus.x=...` does not."""
    if preset is None:
        return "search"

    from .config import _read_yaml, resolve_preset
    from .errors import ConfigError

    try:
        raw = _read_yaml(resolve_preset(preset))
    except ConfigError:
        return "search"  # load_config reports the bad file in one sentence when the request is resolved
    return "focus" if isinstance(raw, dict) and isinstance(raw.get("focus"), dict) else "search"


def presets_for(engine: str) -> list[str]:
    """The built-in presets meant for an engine ("search" or "focus"; see `preset_engine`)."""
    from .config import preset_names

    return [name for name in preset_names() if preset_engine(name) == engine]


def check_preset_engine(preset: str | None, engine: str) -> None:
    """Refuse, in one sentence (exit 2), a new run of `engine` from a preset meant for the other one: a
    focus preset's search (or a search preset's FocusFormer training) would run for hours on settings
    made for something else."""
    if preset is None or preset_engine(preset) == engine:
        return
    from .errors import ConfigError

    if engine == "search":
        raise ConfigError(
            f"preset {preset} is a FocusFormer preset (its YAML has a focus: section), not a search; "
            f"train it with: dasvit focus --headless --preset {preset}"
        )
    raise ConfigError(
        f"preset {preset} is a search preset (its YAML has no focus: section), not a FocusFormer training; "
        f"search with: dasvit search --headless --preset {preset}"
    )


def request_for_preset(preset: str | None, overrides: list[str] = ()) -> SearchRequest | FocusRequest:
    """A new run of the engine `preset` names (`preset_engine`): a FocusRequest or a SearchRequest."""
    cls = FocusRequest if preset_engine(preset) == "focus" else SearchRequest
    return cls(preset, list(overrides))


REQUESTS: dict[str, type] = {r.KIND: r for r in (SearchRequest, RetrainRequest, FocusRequest)}
EngineRequest = SearchRequest | RetrainRequest | FocusRequest

"""What an engine process is asked to do: one typed request per engine, and its command line.

A front (the CLI, the TUI) builds a request; `argv()` is the engine's command line and `parse()` reads it
back in the engine (`python -m dasvit.search`, `dasvit.train.retrain`, `dasvit.focus`, or the same under torchrun), so
the argument list is written in one place and read in one place. `resolved()` is the one place a run is
resolved, in the front and in the engine alike: it loads and checks the config (and the cell or space the
engine builds on) and fixes the run directory, which every rank and the watching front must agree on before
the engine starts. A new engine adds a request class here and an entry in `REQUESTS`.

This module imports no torch: the launcher uses it.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import RunDirError
from . import layout, runlock, runstatus

if TYPE_CHECKING:
    from ..focus.space import FocusSpace
    from ..model.genotype import Genotype
    from .config import Config


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


class _EngineRequest:
    """What the three requests share: their engine's parser, `parse`, and the config resolution of an
    engine that either starts a run from a preset or resumes one with its own config (search, focus)."""

    KIND: ClassVar[str]
    COMMAND: ClassVar[str]  # the user's command, as the engine's "resume with" line says it
    MODULE: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    DEFAULT_PRESET: ClassVar[str | None] = None
    PRESETS: ClassVar[str] = "demo, cifar10, ..."

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=f"python -m {cls.MODULE}", description=cls.DESCRIPTION)
        cls._arguments(p)
        return p

    @classmethod
    def _arguments(cls, p: argparse.ArgumentParser) -> None:
        _common(p, cls.PRESETS)

    @classmethod
    def parse(cls, argv: list[str] | None = None):
        return cls(**vars(cls.parser().parse_args(argv)))

    def command(self) -> list[str]:
        """The engine's whole command line: this Python, `-m MODULE`, then `argv()`."""
        return [sys.executable, "-m", self.MODULE, *self.argv()]

    def _config(self) -> tuple[Config, Path | None]:
        """The run's config and, when resuming, its checked run directory: a resumed run's own config.yaml
        (no --preset or --set), else the preset (or the default) with the overrides."""
        from .presets import load_config, load_run_config

        if self.resume is not None:
            run_dir = resume_run_dir(self.resume, self.KIND, self.preset, self.overrides)
            return load_run_config(run_dir / layout.CONFIG), run_dir
        return load_config(self.preset or self.DEFAULT_PRESET, self.overrides), None

    def load_config(self) -> Config:
        """The config this request would run with, every check of `resolved()` on it (a resumed run's kind,
        its --preset and --set refused), without fixing a new run directory: `dasvit search --dry-run`."""
        return self._config()[0]

    def _new_run_dir(self, cfg: Config, root: Path) -> Path:
        """A new run's directory, checked: --run-dir, else runs/<preset>-<time>."""
        return check_new_run_dir(Path(self.run_dir or layout.default_run_dir(cfg.preset, root)))


# Set by `resolved()` only, so neither on the command line nor in comparisons of requests.
_RESOLVED = {"default": None, "kw_only": True, "compare": False, "repr": False}


@dataclass
class SearchRequest(_EngineRequest):
    """A DASViT search: a new one from `preset` + `overrides` into `run_dir`, or `resume` an existing run."""

    KIND: ClassVar[str] = "search"
    COMMAND: ClassVar[str] = "dasvit search"
    MODULE: ClassVar[str] = "dasvit.search"
    DESCRIPTION: ClassVar[str] = "The search engine process; users run `dasvit search`."
    DEFAULT_PRESET: ClassVar[str] = "demo"

    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    approve: str | None = None  # auto | manual; None: the config's (presets: auto)
    resume: Path | None = None
    progress: bool = True
    config: Config | None = field(**_RESOLVED)  # the resolved config, --approve applied

    @classmethod
    def _arguments(cls, p: argparse.ArgumentParser) -> None:
        _common(p)
        p.add_argument("--approve", choices=["auto", "manual"], default=None)

    def argv(self) -> list[str]:
        argv = _argv_common(self.preset, self.overrides, self.run_dir, self.resume, self.progress)
        return argv + (["--approve", self.approve] if self.approve else [])

    def resolved(self, root: Path = Path("runs")) -> SearchRequest:
        """The config loaded and checked, and the run directory fixed and checked (a resumed run's own; else
        --run-dir or runs/<preset>-<time>, which must not hold a run): a mistake is one sentence before any
        directory exists. A resolved request is returned as it is."""
        if self.config is not None:
            return self
        cfg, run_dir = self._config()
        if self.approve:
            cfg.search.approval = self.approve
        return replace(self, run_dir=run_dir or self._new_run_dir(cfg, root), config=cfg)


@dataclass
class RetrainRequest(_EngineRequest):
    """Retrain a cell: `source` is a search run directory, a genotype file or a built-in (vit_b16); or
    `resume` a retrain run."""

    KIND: ClassVar[str] = "retrain"
    COMMAND: ClassVar[str] = "dasvit retrain"
    MODULE: ClassVar[str] = "dasvit.train.retrain"
    DESCRIPTION: ClassVar[str] = "The retrain engine process; users run `dasvit retrain`."

    source: str | None = None
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True
    genotype: Genotype | None = field(**_RESOLVED)  # the cell to train
    config: Config | None = field(**_RESOLVED)
    weights: Path | None = field(**_RESOLVED)  # retrain.init inherited: the weights it starts from

    @classmethod
    def _arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("source", nargs="?", help="genotype.json, a search run directory, or a built-in (vit_b16)")
        _common(p)

    def argv(self) -> list[str]:
        head = [self.source] if self.source is not None else []
        return head + _argv_common(self.preset, self.overrides, self.run_dir, self.resume, self.progress)

    def resolved(self, root: Path = Path("runs")) -> RetrainRequest:
        """The config, the cell and the run directory, each checked (a mistake is one sentence, before any
        directory exists). A resolved request is returned as it is.

        The config is `--preset` if given, else the config.yaml of the run the source comes from (a search run
        directory, or a FocusFormer run for its specialized/<budget>.json); `--set` applies on top. A new run
        goes to --run-dir, else `retrain_run_dir`. `--resume DIR` (a search run: its retrain/) continues DIR
        with its own config.yaml and genotype.json; `--set` still applies, but not to the network or the data.
        A source that names an existing file or directory is made absolute (a detached engine may start
        elsewhere)."""
        if self.config is not None:
            return self
        from ..errors import ConfigError
        from ..model.genotype import load_genotype
        from .presets import load_config, preset_names

        source = self.source
        if source is not None and Path(source).exists():
            source = str(Path(source).absolute())
        if self.resume is not None:
            run_dir, cfg, genotype = self._resumed()
            return replace(self, source=source, run_dir=run_dir, config=cfg, genotype=genotype)
        if source is None:
            raise ConfigError("name what to retrain: a genotype file, a search run directory or a built-in (vit_b16).")
        genotype = load_genotype(self.source)
        # the run directory, or the run of a file it wrote (specialized/<budget>.json)
        config_dir = layout.config_dir_for(self.source)
        if self.preset is None and config_dir is None:
            raise ConfigError(
                f"{self.source} carries no configuration; pass --preset ({', '.join(preset_names())} or a YAML file)."
            )
        cfg = load_config(self.preset if self.preset is not None else str(config_dir / layout.CONFIG), self.overrides)
        weights = inherited_weights(self.source) if cfg.retrain.init == "inherited" else None
        # a run killed before its first epoch may start again in its directory
        default = retrain_run_dir(self.source, root, "finetune" if weights is not None else "retrain")
        run_dir = check_new_run_dir(Path(self.run_dir or default))
        return replace(self, source=source, run_dir=run_dir, config=cfg, genotype=genotype, weights=weights)

    def _resumed(self) -> tuple[Path, Config, Genotype]:
        """The retrain run `--resume` names, checked, with its config (--set on top) and its cell."""
        from ..errors import ConfigError, RunDirError
        from ..model.genotype import load_genotype
        from .presets import load_config, load_run_config

        rdir = Path(self.resume)
        if layout.is_run_dir(rdir / layout.RETRAIN):  # a search run: resume its retrain
            rdir = layout.run_subdir(rdir, layout.RETRAIN)
        layout.require_run_dir(rdir)
        if runstatus.summarize(rdir).kind != "retrain":
            raise RunDirError(f"{rdir} is not a retrain run; --resume takes the directory a retrain writes.")
        if self.preset is not None:
            raise ConfigError(f"--preset cannot change the config of {rdir}, which is being resumed; use --set.")
        if self.run_dir is not None and Path(self.run_dir).resolve() != rdir.resolve():
            raise ConfigError("--run-dir and --resume name different directories; --resume alone is enough.")
        if not (rdir / layout.CHECKPOINT).is_file():
            raise RunDirError(f"{rdir} has no {layout.CHECKPOINT} yet; no epoch finished, so start it afresh.")
        cfg = load_config(str(rdir / layout.CONFIG), self.overrides)
        if _resume_sizes(cfg) != _resume_sizes(load_run_config(rdir / layout.CONFIG)):
            raise ConfigError(
                "--set cannot change the network or the data of a run being resumed "
                "(retrain.depth, space.embed_dim, space.patch_size, data.name, data.image_size); start a new run instead."
            )
        genotype = load_genotype(rdir / layout.GENOTYPE)
        if self.source is not None and not load_genotype(self.source).same_cell(genotype):
            raise ConfigError(f"{self.source} is not the cell that {rdir} trains; leave it out to resume.")
        layout.ensure_writable(rdir)
        return rdir, cfg, genotype


def _resume_sizes(cfg: Config) -> tuple:
    """What a resumed retrain's --set must leave alone: the network's sizes and the data."""
    from ..model.genotype import network_sizes

    return network_sizes(cfg), cfg.data.name, cfg.data.channels


def retrain_run_dir(source: str | None, root: Path = Path("runs"), what: str = "retrain") -> Path:
    """Where a retrain of `source` goes by default: SEARCH_RUN/retrain for a search run directory,
    FOCUS_RUN/specialized/<budget>-retrain for a genotype `dasvit specialize` wrote there, else
    runs/<name>-retrain-<time>; `what` "finetune" (retrain.init inherited) names them <budget>-finetune."""
    if source is not None and Path(source).is_dir() and (Path(source) / layout.CONFIG).is_file():
        return layout.run_subdir(Path(source), layout.RETRAIN)
    focus_run = layout.specialized_run(source) if source is not None and Path(source).is_file() else None
    if focus_run is not None:
        return layout.run_subdir(focus_run, layout.SPECIALIZED, f"{Path(source).stem}-{what}")
    return layout.default_run_dir(f"{Path(source or 'custom').stem}-{what}", root)


def inherited_weights(source: str) -> Path:
    """The weights `retrain.init: inherited` starts from: those beside the genotype file (`<name>.safetensors`,
    as `dasvit specialize` writes a FocusFormer subnet's), read once here so that a damaged file is one
    sentence before anything starts."""
    from ..errors import ConfigError
    from .checkpoint import load_weights

    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"retrain.init inherited takes a genotype file with its weights beside it (<name>.safetensors, as dasvit "
            f"specialize writes them); {source} is not a file."
        )
    weights = layout.inherited_weights_path(path).absolute()
    if not weights.is_file():
        raise ConfigError(
            f"retrain.init inherited starts from {weights.name} beside {path.name}, which is not there; specialize "
            "again (dasvit specialize writes the subnet's weights) or train from scratch."
        )
    load_weights(weights, "inherited weights")
    return weights


@dataclass
class FocusRequest(_EngineRequest):
    """A FocusFormer training (supernet and sampler): a new one from `preset` + `overrides` into `run_dir`,
    or `resume` an existing run."""

    KIND: ClassVar[str] = "focus"
    COMMAND: ClassVar[str] = "dasvit focus --headless"
    MODULE: ClassVar[str] = "dasvit.focus"
    DESCRIPTION: ClassVar[str] = "The FocusFormer engine process; users run `dasvit focus`."
    DEFAULT_PRESET: ClassVar[str] = "focus-demo"
    PRESETS: ClassVar[str] = "focus-demo, focus-cifar100, ..."

    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True
    space: FocusSpace | None = field(**_RESOLVED)  # the elastic space around the run's base cell
    config: Config | None = field(**_RESOLVED)

    def argv(self) -> list[str]:
        return _argv_common(self.preset, self.overrides, self.run_dir, self.resume, self.progress)

    def resolved(self, root: Path = Path("runs")) -> FocusRequest:
        """The config, the elastic space around its base cell (a resumed run's own copy of the cell) and the
        run directory, each checked (a mistake is one sentence, before any directory exists). A resolved
        request is returned as it is."""
        if self.config is not None:
            return self
        from ..focus.space import space_from_config

        cfg, run_dir = self._config()
        space = space_from_config(cfg, run_dir)
        return replace(self, run_dir=run_dir or self._new_run_dir(cfg, root), config=cfg, space=space)


def preset_engine(preset: str | None) -> str:
    """Which engine a preset is meant for: "focus" when its YAML sets a top-level `focus:` section (the
    focus-* presets, or a user's file that configures a FocusFormer), else "search". Every config has focus
    defaults, so only a section written in the preset itself names the engine; `--set focus.x=...` does not."""
    if preset is None:
        return "search"

    from ..errors import ConfigError
    from .presets import read_yaml, resolve_preset

    try:
        raw = read_yaml(resolve_preset(preset))
    except ConfigError:
        return "search"  # load_config reports the bad file in one sentence when the request is resolved
    return "focus" if isinstance(raw, dict) and isinstance(raw.get("focus"), dict) else "search"


def presets_for(engine: str) -> list[str]:
    """The built-in presets meant for an engine ("search" or "focus"; see `preset_engine`)."""
    from .presets import preset_names

    return [name for name in preset_names() if preset_engine(name) == engine]


def check_preset_engine(preset: str | None, engine: str) -> None:
    """Refuse, in one sentence (exit 2), a new run of `engine` from a preset meant for the other one: a
    focus preset's search (or a search preset's FocusFormer training) would run for hours on settings
    made for something else."""
    if preset is None or preset_engine(preset) == engine:
        return
    from ..errors import ConfigError

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


def check_new_run_dir(run_dir: Path) -> Path:
    """A run directory a new run may use: writable, and holding no run that has done some work (a run
    killed before its first checkpoint may be started again); else one sentence (exit 2)."""
    run_dir = Path(run_dir)
    if runlock.is_live(run_dir):
        raise RunDirError(f"{run_dir} is in use by a live engine process; stop it first or use another run directory.")
    if any(os.path.lexists(run_dir / name) for name in layout.WORK_FILES):
        raise RunDirError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir.")
    return layout.ensure_writable(layout.check_no_links(run_dir))


def resume_run_dir(resume: Path, kind: str, preset: str | None, overrides: list[str]) -> Path:
    """The run directory `--resume` names, checked: a `kind` run with a checkpoint, resumed with its own
    config (no --preset/--set), writable; else one sentence (exit 2)."""
    run_dir = layout.require_run_dir(Path(resume))
    if preset or overrides:
        raise RunDirError("--resume continues a run with its own config.yaml; drop --preset and --set.")
    if runstatus.summarize(run_dir).kind != kind:
        raise RunDirError(f"{run_dir} is not a {kind} run; resume it with the command that started it.")
    if not (run_dir / layout.CHECKPOINT).is_file():
        raise RunDirError(f"{run_dir} has no {layout.CHECKPOINT} yet; start it again instead of resuming.")
    return layout.ensure_writable(run_dir)

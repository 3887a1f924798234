"""Where a config comes from: a preset (a built-in's name or a YAML file), dotted `--set` overrides parsed as
YAML, or a run directory's config.yaml; each read as untrusted input (bounded size, few YAML aliases),
then built (`typed_data.build`) and validated (`config_check.validate`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .config import Config
from .config_check import validate
from .typed_data import build, merge

# presets/ at the top of the repository is the source; dasvit/presets links to it and ships in the package
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"  # dasvit/presets


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str) -> Path:
    """A YAML path (a name ending in .yaml/.yml, or an existing file) or a built-in preset's name.

    A directory that happens to share a built-in's name (a run directory `demo/`, say) does not hide it."""
    p = Path(name_or_path)
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if p.suffix in (".yaml", ".yml") or p.is_file() or (p.exists() and not candidate.is_file()):
        if not p.exists():
            raise ConfigError(f"preset file {p} does not exist.")
        if not p.is_file():
            kind = "a directory" if p.is_dir() else "not a regular file (a device, a FIFO...)"
            raise ConfigError(f"--preset {p} is {kind}; give a built-in preset's name or a YAML file.")
        return p
    if not candidate.is_file():
        raise ConfigError(
            f"unknown preset {name_or_path!r}; built-in presets are {', '.join(preset_names())}, "
            "or give a path to a YAML file."
        )
    return candidate


MAX_YAML_BYTES = 1 << 20  # a config file or preset: a whole search's is under 4 KiB
MAX_YAML_ALIASES = 64  # *aliases in one YAML document: each may stand for a whole tree (an alias bomb)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing more than MAX_YAML_ALIASES aliases: nine levels of nine aliases make a
    billion-node tree from a line of text, which merging and checking it would then walk."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


# YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every user read it as a number: so does dasvit
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*|[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Untrusted YAML (a preset, a config.yaml, a --set value) as plain data: what yaml.safe_load does, with
    the bounded subclass of its SafeLoader (plain tags only, few aliases, 1e-3 a number)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Path, run_file: bool = False) -> dict[str, Any]:
    """A YAML mapping; a `run_file` (a run directory's config.yaml) is read as one: never through a link, and
    only if it is a regular file (a FIFO would block), else one sentence. At most MAX_YAML_BYTES."""
    try:
        if run_file:
            from .jsonio import open_run_file

            fd = open_run_file(Path(path), os.O_RDONLY)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path} is not a regular file; a config is a YAML file.")
            raw = f.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_YAML_BYTES >> 20} MiB; a config is a few KiB of YAML.")
        data = yaml_load(raw.decode("utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or e}).") from None
    except (yaml.YAMLError, RecursionError) as e:
        why = str(e).splitlines()[0] if isinstance(e, yaml.YAMLError) else "it nests too deep"
        raise ConfigError(f"{path} is not valid YAML: {why}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, not {type(data).__name__}.")
    return data


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=VALUE` → {"a": {"b": {"c": yaml(VALUE)}}}."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like dotted.key=VALUE.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r} has an empty key; write dotted.key=VALUE.")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError) as e:
        why = str(e).splitlines()[0][:120] if isinstance(e, yaml.YAMLError) else "it nests too deep"
        raise ConfigError(f"--set {key}: the value {raw[:80]!r} is not valid YAML ({why}).") from None
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return out


def load_config(preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a validated `Config` from a preset (name or path) and `--set` overrides."""
    data: dict[str, Any] = {}
    name = "custom"
    if preset is not None:
        path = resolve_preset(preset)
        data = read_yaml(path)
        name = data.pop("preset", None) or path.stem
    for o in overrides:
        data = merge(data, parse_override(o))
    data.setdefault("preset", name)
    cfg = build(Config, _retired(data))
    validate(cfg)
    return cfg


RETIRED = {("search", "fused"): False}  # keys an older version wrote, with the one value that means today's


def _retired(data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the retired keys a run directory's config may still hold: `search.fused` (the fused mixed
    edges, removed: never faster than the per-op path on a CPU, BENCHMARKS.md) is read if false, refused if
    true."""
    for (section, key), value in RETIRED.items():
        part = data.get(section)
        if isinstance(part, dict) and key in part:
            if part[key] != value:
                raise ConfigError(
                    f"{section}.{key} is no longer a setting (the fused mixed edges were removed: they were never "
                    "faster than the per-op path); drop it."
                )
            data = {**data, section: {k: v for k, v in part.items() if k != key}}
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config written by `Config.to_dict` (a run directory's config.yaml)."""
    cfg = build(Config, _retired(data))
    validate(cfg)
    return cfg


def load_run_config(path: Path) -> Config:
    return config_from_dict(read_yaml(path, run_file=True))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

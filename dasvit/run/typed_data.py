"""Typed dataclasses from plain data (parsed YAML): the mechanism behind `dasvit.run.config`.

Annotations supported: bool, int, float (an int is taken; it must be finite), str (a number is taken as
its text), Literal[...], list[...] and nested dataclasses; each leaf is checked by `dasvit.run.schema.check`,
the checker the events use. A value of the wrong type or an unknown key is a ConfigError naming the dotted
key.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from typing import Any, Literal

from ..errors import ConfigError
from .schema import check

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 60, 60, 2, 4, 4


def short(value: Any) -> str:
    """A value for a sentence: its repr, cut short however large or deep it is (a YAML alias tree)."""
    return _SHORT.repr(value)


def _yaml_word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(_yaml_word(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return "a list of mappings" if dataclasses.is_dataclass(inner) else f"a list of {_type_name(inner)}"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` (dasvit.run.schema's checker, as the events use it); return it
    converted (int→float, a number→str, dict→dataclass)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {short(value)}.")
        return build(tp, value, key)
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {short(value)}.")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {tp} for {key}")
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads a bare 42 or 1.5 as a number
    if not check(tp)(value):
        if typing.get_origin(tp) is Literal:
            raise ConfigError(f"{key} must be {_type_name(tp)}; got {short(value)}.")
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {short(value)}.")
    return float(value) if tp is float else value


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of the dataclass `cls` from a mapping: every key known, every value of its annotated type
    (nested dataclasses from nested mappings); else a ConfigError naming the dotted key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in hints:
            raise ConfigError(f"unknown config key {key!r}; allowed here: {', '.join(names)}.")
        kwargs[k] = _coerce(v, hints[k], key)
    return cls(**kwargs)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, mappings merged key by key (what a `--set` does to a preset)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out

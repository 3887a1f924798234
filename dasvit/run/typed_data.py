"""Typed dataclasses from plain data (parsed YAML): the mechanism behind `dasvit.config`.

Annotations supported: bool, int, float (an int is taken), str, Literal[...], list[...] and nested
dataclasses. A value of the wrong type or an unknown key is a ConfigError naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from typing import Any, Literal

from ..errors import ConfigError

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
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (int→float, dict→dataclass)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {short(value)}.")
        return build(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise ConfigError(f"{key} must be one of {', '.join(map(_yaml_word, allowed))}; got {short(value)}.")
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {short(value)}.")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {tp} for {key}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {short(value)}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {short(value)}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {short(value)}.")
        if not math.isfinite(value) or abs(value) > 1e300:
            raise ConfigError(f"{key} must be a finite number, got {short(value)}.")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {short(value)}.")
        return str(value)
    raise TypeError(f"unsupported annotation {tp} for {key}")


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

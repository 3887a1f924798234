"""Plain JSON checked against Python annotations: the one checker behind the events (`dasvit.run.events`), the
files a run keeps (`dasvit.run.records`: metrics.json, compare.json, the memory estimate) and the config
(`dasvit.run.typed_data`). Imports no torch.

Types mean what JSON holds: `int` a whole number, `float` any number (an int too; never a bool), `str`,
`bool`, `Literal[...]` one of the values, `X | None` X or null, `dict[str, X]` an object whose values are
all X, `list[X]`, a `TypedDict` an object with those fields, `Any` anything; `Annotated[X, predicate, ...]`
X for which every predicate holds (`Fraction`, `Count`). What `dasvit.run.jsonio.parse_json` reads is already
finite: a number it cannot hold as a finite float or a 64-bit integer is read as null.

- `check(ann, strict)`: a predicate built once per annotation. Not `strict` (a reader's first look), a
  TypedDict part is only checked to be an object and a list of parts only to be a list; `strict` checks all
  of it, and a TypedDict part must have its required keys and no others unless `extra` allows them.
- `problem(value, ann)`: None, or where and how the value breaks the annotation, for one sentence.
- `reader(ann)`: what a reader keeps of a value (the value itself, `DROP`, or an object cleaned field by
  field): `dasvit.run.events.clean_event`'s mechanism.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Annotated, Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    from typing import NotRequired, Required
else:  # typing_extensions comes with torch
    from typing_extensions import NotRequired, Required

MAX_INT = 2**63  # what a JSON integer of a run may be (a larger one is read as null)


def _finite(v: Any) -> bool:
    return math.isfinite(v)


def _fraction(v: Any) -> bool:
    return 0.0 <= v <= 1.0


def _count(v: Any) -> bool:
    return 0 <= v < MAX_INT


Fraction = Annotated[float, _fraction]  # an accuracy, a share: in [0, 1]
Count = Annotated[int, _count]  # params, FLOPs, bytes, images: 0 or more
Finite = Annotated[float, _finite]


def extensible(cls: type) -> type:
    """Mark a TypedDict as open: fields it does not name are allowed (a file a later version wrote)."""
    cls.__extra_fields__ = True
    return cls


def hints(cls: type) -> dict[str, Any]:
    """A TypedDict's fields and their annotations (NotRequired/Required taken off)."""
    out = {}
    for name, ann in get_type_hints(cls, include_extras=True).items():
        while get_origin(ann) in (Required, NotRequired):
            ann = get_args(ann)[0]
        out[name] = ann
    return out


def is_typeddict(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, dict) and hasattr(ann, "__required_keys__")


# the JSON types a plain annotation admits, checked as `type(v) in ...` (a set lookup, no call): what check
# accepts of what json.loads makes; anything else (a float subclass...) still goes through the full check
PLAIN_TYPES = {int: frozenset({int}), float: frozenset({int, float}), bool: frozenset({bool}), str: frozenset({str})}


def _is_union(ann: Any) -> bool:
    return get_origin(ann) in (Union, types.UnionType)


def check(ann: Any, strict: bool = True) -> Callable[[Any], bool]:
    """A predicate: does a value hold what `ann` says? Build it once per field (see the module)."""
    if ann is Any:
        return lambda v: True
    if ann is None or ann is type(None):
        return lambda v: v is None
    if get_origin(ann) is Annotated:
        base, *preds = get_args(ann)
        inner = check(base, strict)
        return lambda v: inner(v) and all(p(v) for p in preds)
    if get_origin(ann) is Literal:
        allowed = get_args(ann)
        return lambda v: any(v == a and type(v) is type(a) for a in allowed)
    if _is_union(ann):
        options = [check(a, strict) for a in get_args(ann)]
        return lambda v: any(o(v) for o in options)
    if ann is bool:
        return lambda v: v is True or v is False
    if ann is int:  # read JSON holds 64-bit ones (parse_json); a config's have their own bounds (dasvit.limits)
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if ann is float:
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ann is str:
        return lambda v: isinstance(v, str)
    if is_typeddict(ann):
        if not strict:
            return lambda v: isinstance(v, dict)
        fields = {k: check(a, strict) for k, a in hints(ann).items()}
        required = ann.__required_keys__
        extra = getattr(ann, "__extra_fields__", False)
        return lambda v: (
            isinstance(v, dict)
            and required <= v.keys()
            and all(fields[k](x) if k in fields else extra for k, x in v.items())
        )
    origin, args = get_origin(ann), get_args(ann)
    if origin is list:
        if not strict and is_typeddict(args[0]):
            return lambda v: isinstance(v, list)
        item = check(args[0], strict)
        if not strict and args[0] in PLAIN_TYPES:  # read numbers are finite and bounded: no call per item
            allowed = PLAIN_TYPES[args[0]]
            return lambda v: isinstance(v, list) and all(type(x) in allowed or item(x) for x in v)
        return lambda v: isinstance(v, list) and all(item(x) for x in v)
    if origin is dict:
        key, value = (check(a, strict) for a in args)
        if not strict and args[0] is str and args[1] in PLAIN_TYPES:  # the same (an edge's α)
            allowed = PLAIN_TYPES[args[1]]
            return lambda v: (
                isinstance(v, dict)
                and all(isinstance(k, str) for k in v)
                and all(type(x) in allowed or value(x) for x in v.values())
            )
        return lambda v: isinstance(v, dict) and all(key(k) and value(x) for k, x in v.items())
    raise TypeError(f"schema: no check for the annotation {ann!r}")


def describe(ann: Any) -> str:
    """An annotation in words of JSON, for a sentence."""
    if get_origin(ann) is Annotated:
        base, *preds = get_args(ann)
        if _fraction in preds:
            return "a number from 0 to 1"
        if _count in preds:
            return "a whole number, 0 or more"
        return describe(base)
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(ann))
    if _is_union(ann):
        return " or ".join(describe(a) for a in get_args(ann))
    if ann is None or ann is type(None):
        return "null"
    if is_typeddict(ann):
        return "an object"
    named = {int: "a whole number", float: "a finite number", bool: "true or false", str: "a string", Any: "anything"}
    if ann in named:
        return named[ann]
    origin, args = get_origin(ann), get_args(ann)
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"an object of {describe(args[1]).removeprefix('a ').removeprefix('an ')}s"
    return str(ann).replace("typing.", "")


def problem(value: Any, ann: Any, where: str = "") -> str | None:
    """None when `value` holds what `ann` says (strictly), else the first place it does not and what was
    expected there, as a clause: "its models.searched@4.top1 is not a number from 0 to 1"."""
    if check(ann, strict=True)(value):
        return None
    if is_typeddict(ann) and isinstance(value, dict):
        fields = hints(ann)
        missing = sorted(ann.__required_keys__ - value.keys())
        if missing:
            return f"{_at(where)}lacks {', '.join(missing)}"
        for k, v in value.items():
            if k not in fields:
                if not getattr(ann, "__extra_fields__", False):
                    return f"{_at(where)}has no field {str(k)[:40]!r}"
                continue
            why = problem(v, fields[k], f"{where}.{k}" if where else str(k))
            if why:
                return why
    origin, args = get_origin(ann), get_args(ann)
    if origin is list and isinstance(value, list):
        for i, v in enumerate(value):
            why = problem(v, args[0], f"{where}[{i}]")
            if why:
                return why
    if origin is dict and isinstance(value, dict):
        for k, v in value.items():
            why = problem(v, args[1], f"{where}.{str(k)[:40]}")
            if why:
                return why
    return f"its {where or 'content'} is not {describe(ann)}"


def _at(where: str) -> str:
    return f"its {where} " if where else "it "


DROP = object()  # a reader's answer for a value that is not even of its field's kind


def _has_parts(ann: Any) -> bool:
    return is_typeddict(ann) or (get_origin(ann) is list and is_typeddict(get_args(ann)[0]))


class Fields:
    """How a reader cleans an object of named fields (an event, or a part of one such as a sampler bin):
    each field checked against its annotation, one of a wrong type dropped, a part cleaned within (`reader`).
    Fields it does not know pass as they are."""

    def __init__(self, field_hints: dict[str, Any]):
        self.plain = {k: (PLAIN_TYPES[a], check(a, strict=False)) for k, a in field_hints.items() if a in PLAIN_TYPES}
        self.other = {k: reader(a) for k, a in field_hints.items() if k not in self.plain}
        # the fast pass: field -> the types it admits outright (the plain fields) or never (the others). The
        # numbers parse_json reads are finite and bounded already, so a plain type is the whole check there
        self.fast = {**{k: t for k, (t, _) in self.plain.items()}, **dict.fromkeys(self.other, frozenset())}

    def clean(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` itself when nothing is to be dropped or cleaned (no copy), else a cleaned copy."""
        admits, read_other = self.fast.get, self.other.get
        for k, v in obj.items():  # the fast pass: nothing to drop or clean, nothing copied
            allowed = admits(k)
            if allowed is None or type(v) in allowed:
                continue
            read = read_other(k)
            if read is None or read(v) is not v:
                return self._clean(obj)
        return obj

    def _clean(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = None
        for k, v in obj.items():
            if k in self.plain:
                if self.plain[k][1](v):
                    continue
                keep = DROP
            elif k in self.other:
                keep = self.other[k](v)
                if keep is v:
                    continue
            else:
                continue
            out = dict(obj) if out is None else out
            if keep is DROP:
                del out[k]
            else:
                out[k] = keep
        return obj if out is None else out


def reader(ann: Any) -> Callable[[Any], Any]:
    """What a reader keeps of a value for `ann`: the value itself when it holds what `ann` says (no copy),
    else DROP; but a TypedDict part is kept as an object of its fields that are of their type (recursively,
    other keys as they are), and a list of such parts as a list of them, an item that is not an object read
    as {} (so that positions, a sampler's bins, stay)."""
    if is_typeddict(ann):
        clean = Fields(hints(ann)).clean
        return lambda v: clean(v) if isinstance(v, dict) else DROP
    if _has_parts(ann):
        clean = Fields(hints(get_args(ann)[0])).clean

        def parts(v: Any) -> Any:
            if not isinstance(v, list):
                return DROP
            for x in v:
                if not isinstance(x, dict) or clean(x) is not x:
                    return [clean(y) if isinstance(y, dict) else {} for y in v]
            return v

        return parts
    ok = check(ann, strict=False)
    return lambda v: v if ok(v) else DROP

"""Transformation functions of the transformer process, one per ``TransformationType``.

Each built-in compiles to ``value -> value`` and raises ``StageError`` for a value
of the wrong shape. ``TransformMap`` and folds over an executable need exec
effects; they compile to an ``ExecTransform`` that the transformer drives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agglo_core import regex as regex_engine
from agglo_core.errors import StageError
from agglo_core.paths import json_type

ValueFn = Callable[[Any], Any]


def _num(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _numbers(v: Any, what: str) -> list:
    if type(v) is not list or not all(_num(x) for x in v):
        raise StageError(f"{what} needs a list of numbers, got {json_type(v)}")
    return v


def _sum(v: Any) -> Any:
    return sum(_numbers(v, "TransformSum"))


def _count(v: Any) -> int:
    if type(v) is list or type(v) is dict:
        return len(v)
    raise StageError(f"TransformCount needs a list or a map, got {json_type(v)}")


def _pop(index: int, what: str) -> ValueFn:
    def pop(v: Any) -> Any:
        if type(v) is not list:
            raise StageError(f"{what} needs a list, got {json_type(v)}")
        return v[index] if v else None

    return pop


def _elementwise(fn: Callable[[Any], Any], what: str) -> ValueFn:
    """Apply ``fn`` to a number, to each element of a list, or to each value of a map."""

    def apply(v: Any) -> Any:
        if _num(v):
            return fn(v)
        if type(v) is list and all(_num(x) for x in v):
            return [fn(x) for x in v]
        if type(v) is dict and all(_num(x) for x in v.values()):
            return {k: fn(x) for k, x in v.items()}
        raise StageError(f"{what} needs a number, or a list or map of numbers, got {json_type(v)}")

    return apply


_GO_REF = re.compile(r"\$(\$|\{([^}]*)\}|([A-Za-z0-9_]+))")


def go_template_problem(template: str, groups: int, names: set[str]) -> str | None:
    """Why a Go-style replacement (``$1``, ``${name}``) refers to a group the regex lacks, if it does."""
    for m in _GO_REF.finditer(template):
        ref = m.group(2) if m.group(2) is not None else m.group(3)
        if ref is None:
            continue
        if ref.isdigit() and int(ref) > groups:
            return f"${ref} refers to group {ref}, but the regex has {groups} group(s)"
        if not ref.isdigit() and ref not in names:
            return f"${{{ref}}} names no group of the regex"
    return None


def go_replacement(template: str) -> regex_engine.Replacement:
    """Go's ``Regexp.Expand`` syntax (``$1``, ``${name}``, ``$$``) as a replacement for ``Regex.sub``.

    A template without group references stays a string, used as is;
    one with references becomes a function of the match, much cheaper than
    ``re``'s own template expansion. An unmatched group gives "", as in Go.
    """
    pieces: list[tuple[str, int | str | None]] = []  # (literal, None) or ("", group)
    pos = 0
    for m in _GO_REF.finditer(template):
        pieces.append((template[pos:m.start()], None))
        ref = m.group(2) if m.group(2) is not None else m.group(3)
        pieces.append(("$", None) if m.group(1) == "$" else ("", int(ref) if ref.isdigit() else ref))
        pos = m.end()
    pieces.append((template[pos:], None))
    pieces = [p for p in pieces if p != ("", None)]
    if all(g is None for _, g in pieces):
        return "".join(lit for lit, _ in pieces)
    if len(pieces) == 1:
        group = pieces[0][1]
        assert group is not None
        return lambda m: m.group(group) or ""
    return lambda m: "".join([lit if g is None else (m.group(g) or "") for lit, g in pieces])


REMEMBERED_TEXTS = 1024
"""Replacements a ``TransformMapRegex`` remembers (then it starts again): field values it rewrites (paths, names,
vocabularies) mostly repeat, and a lookup costs a fraction of a replacement."""
REMEMBERED_TEXT_CHARS = 256
"""Longer texts are not remembered: the memory stays bounded (about 1024 × 2 × 256 characters at most)."""


class MapRegex:
    """``TransformMapRegex``: every match in a string (or in each string of a list or map) replaced."""

    __slots__ = ("_sub", "_template", "_seen", "_entries", "_chars")

    def __init__(self, regex: str, replace: str, remember: int = REMEMBERED_TEXTS,
                 remember_chars: int = REMEMBERED_TEXT_CHARS) -> None:
        self._sub = regex_engine.compile(regex).sub
        self._template = go_replacement(replace)
        self._seen: dict[str, str] = {}
        self._entries, self._chars = remember, remember_chars

    def on_text(self, text: str) -> str:
        """The replacement in one string (what generated code calls for a string)."""
        out = self._seen.get(text)
        if out is None:
            out = self._sub(self._template, text)
            if len(text) <= self._chars:
                if len(self._seen) >= self._entries:
                    self._seen.clear()
                self._seen[text] = out
        return out

    def __call__(self, v: Any) -> Any:
        if type(v) is str:
            return self.on_text(v)
        on_text = self.on_text
        if type(v) is list and all(type(x) is str for x in v):
            return [on_text(x) for x in v]
        if type(v) is dict and all(type(x) is str for x in v.values()):
            return {k: on_text(x) for k, x in v.items()}
        raise StageError(f"TransformMapRegex needs a string, or a list or map of strings, got {json_type(v)}")


def _concat(a: Any, b: Any) -> Any:
    if type(a) is str and type(b) is str:
        return a + b
    if type(a) is list and type(b) is list:
        return a + b
    raise StageError(f"concat needs strings or lists, got {json_type(a)} and {json_type(b)}")


def _numeric(fn: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_num(a) and _num(b)):
            raise StageError(f"{name} needs numbers, got {json_type(a)} and {json_type(b)}")
        return fn(a, b)

    return apply


BUILTIN_REDUCERS: dict[str, Callable[[Any, Any], Any]] = {
    "sum": _numeric(lambda a, b: a + b, "sum"),
    "count": lambda acc, _: acc,  # special-cased in _fold: the number of elements
    "min": _numeric(min, "min"),
    "max": _numeric(max, "max"),
    "concat": _concat,
}


def _fold(reducer_name: str, right: bool) -> ValueFn:
    reducer = BUILTIN_REDUCERS[reducer_name]
    what = "TransformRightFold" if right else "TransformLeftFold"

    def fold(v: Any) -> Any:
        if type(v) is not list:
            raise StageError(f"{what} needs a list, got {json_type(v)}")
        if not v:
            return None
        if reducer_name == "count":
            return len(v)
        items = v[::-1] if right else v
        acc = items[0]
        for x in items[1:]:
            acc = reducer(x, acc) if right else reducer(acc, x)
        return acc

    return fold


@dataclass(frozen=True, slots=True)
class ExecTransform:
    """A transformation that runs an executable: per element or map value, or per fold step."""

    kind: str  # "map" | "leftfold" | "rightfold"
    path: str


_ARGS_OF = {"TransformMapAdd": "mapAddArgs", "TransformMapMult": "mapMultArgs", "TransformMapRegex": "mapRegexArgs",
            "TransformLeftFold": "leftFoldArgs", "TransformRightFold": "rightFoldArgs"}


def transformation_of(t: Mapping[str, Any]) -> ValueFn | ExecTransform:
    """A transformation of the IR (its params as data): a function, or an ``ExecTransform`` to drive."""
    ttype = t["transformationType"]
    field = _ARGS_OF.get(ttype)
    builtin = builtin_transformation(ttype, t[field] if field else None)
    if builtin is not None:
        return builtin
    if ttype == "TransformMap":
        return ExecTransform("map", t["mapArgs"]["path"])
    assert field is not None and ttype in _FOLDS, f"unvalidated transformation type {ttype}"
    return ExecTransform("rightfold" if ttype == "TransformRightFold" else "leftfold", t[field]["path"])


def builtin_transformation(ttype: str, args: Mapping[str, Any] | None) -> ValueFn | None:
    """The function of a transformation that runs no executable, from its type and arguments (as data).

    None: it runs an executable (a map, or a fold over a path that is no built-in reducer).
    """
    if ttype == "TransformCopy":
        return _copy
    if ttype == "TransformSum":
        return _sum
    if ttype == "TransformCount":
        return _count
    if ttype == "TransformPopHead":
        return _pop(0, ttype)
    if ttype == "TransformPopTail":
        return _pop(-1, ttype)
    assert args is not None or ttype == "TransformMap", f"unvalidated transformation {ttype}"
    if ttype == "TransformMapAdd":
        add = args["value"]  # type: ignore[index]
        return _elementwise(lambda x: x + add, ttype)
    if ttype == "TransformMapMult":
        mult = args["value"]  # type: ignore[index]
        return _elementwise(lambda x: x * mult, ttype)
    if ttype == "TransformMapRegex":
        return MapRegex(args["regex"], args["replace"])  # type: ignore[index]
    if ttype in ("TransformLeftFold", "TransformRightFold") and args["path"] in BUILTIN_REDUCERS:  # type: ignore[index]
        return _fold(args["path"], ttype == "TransformRightFold")  # type: ignore[index]
    return None


def _copy(v: Any) -> Any:
    return v


_FOLDS = {"TransformLeftFold": "leftFoldArgs", "TransformRightFold": "rightFoldArgs"}


def executable_of(t: Any) -> tuple[str, str] | None:
    """(args field, path) of the executable a transformation runs, or None.

    The one rule for what runs an executable: a map always does; a fold does unless its path names a built-in
    reducer.
    """
    ttype = t.transformationType.value
    if ttype == "TransformMap" and t.mapArgs is not None:
        return "mapArgs", t.mapArgs.path
    field = _FOLDS.get(ttype)
    args = getattr(t, field) if field else None
    if args is not None and args.path not in BUILTIN_REDUCERS:
        return field, args.path  # type: ignore[return-value]
    return None

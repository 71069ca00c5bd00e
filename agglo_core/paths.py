"""Dotted paths into JSON events: ``a.b.0.c``.

Getters are compiled once per config path. Setters never mutate their input:
they copy the containers along the path (copy-on-write), so an event handed to
an effect, or shared by several pipelines, is never changed behind its back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agglo_core.errors import StageError


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""Returned by getters for a path that is not in the event (distinct from JSON null)."""


class PathError(StageError):
    """A path cannot be written because a value on the way is not a container."""


def split_path(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def is_index(seg: str) -> bool:
    """A path segment that can index a list: ASCII digits only."""
    return seg.isascii() and seg.isdigit()


def _step(node: Any, seg: str) -> Any:
    if isinstance(node, dict):
        return node.get(seg, MISSING)
    if isinstance(node, list) and is_index(seg):
        i = int(seg)
        return node[i] if i < len(node) else MISSING
    return MISSING


def compile_getter(path: str) -> Callable[[dict], Any]:
    """A function event -> value at ``path`` or MISSING; specialised for short paths."""
    segs = split_path(path)
    if len(segs) == 1:
        key = segs[0]
        return lambda event: event.get(key, MISSING)
    if len(segs) == 2 and not is_index(segs[1]):
        first, second = segs

        def get2(event: dict) -> Any:
            node = event.get(first, MISSING)
            if type(node) is dict:
                return node.get(second, MISSING)
            return MISSING

        return get2

    def get(event: dict) -> Any:
        node: Any = event
        for seg in segs:
            node = _step(node, seg)
            if node is MISSING:
                return MISSING
        return node

    return get


def get_path(event: dict, path: str) -> Any:
    node: Any = event
    for seg in split_path(path):
        node = _step(node, seg)
        if node is MISSING:
            break
    return node


def set_path(event: dict, segs: tuple[str, ...], value: Any) -> dict:
    """A copy of ``event`` with ``value`` at ``segs``; missing maps on the way are created."""
    if len(segs) == 1:
        out = event.copy()
        out[segs[0]] = value
        return out
    out = _assoc(event, segs, 0, value)
    assert type(out) is dict
    return out


def _assoc(node: Any, segs: tuple[str, ...], i: int, value: Any) -> Any:
    seg = segs[i]
    last = i == len(segs) - 1
    if isinstance(node, dict):
        out = node.copy()
        if last:
            out[seg] = value
        else:
            child = node.get(seg, MISSING)
            out[seg] = _assoc({} if child is MISSING else child, segs, i + 1, value)
        return out
    if isinstance(node, list) and is_index(seg):
        idx = int(seg)
        if idx <= len(node):
            out_list = list(node)
            if idx == len(node):
                out_list.append(value if last else _assoc({}, segs, i + 1, value))
            else:
                out_list[idx] = value if last else _assoc(out_list[idx], segs, i + 1, value)
            return out_list
        raise PathError(f"cannot set '{'.'.join(segs)}': index {idx} is past the end of the list")
    where = ".".join(segs[:i]) or "the event"
    raise PathError(f"cannot set '{'.'.join(segs)}': '{where}' is {json_type(node)}, not a map")


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__

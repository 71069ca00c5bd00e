"""Records in, outcomes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isfinite
from typing import Any, TypeVar, dataclass_transform

from orjson import JSONEncodeError, dumps, loads

from agglo_core.errors import RecordError

_Class = TypeVar("_Class", bound=type)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value_class(cls: _Class) -> _Class:
    """A small immutable value (a record, an effect, an effect's answer) made at least once per record.

    Type checkers hold it frozen (assigning a field is an error); at run time it is a slotted dataclass
    without the frozen check, hashed by its fields as a frozen one is: a frozen dataclass's ``__init__``
    sets each field through ``object.__setattr__``, which made it three times as costly to create.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)  # type: ignore[return-value]


@value_class
class Record:
    """One event with an id that is stable across redelivery (see DESIGN: Records and identity)."""

    id: str
    payload: Any
    source: str = ""
    proof: object = field(default=None, compare=False, repr=False)
    """``PARSED_JSON`` when ``parsed_record`` made the payload from JSON text (the core then skips its entry
    check, see there); None otherwise."""


PARSED_JSON = object()
"""The proof ``parsed_record`` gives: the payload is what ``orjson.loads`` made of a text with fewer open
brackets than JSON output may nest, so it can be written as JSON again."""


def parse_json(text: bytes | str) -> tuple[Any, object]:
    """``orjson.loads(text)`` (``orjson.JSONDecodeError`` when it is not JSON) and the proof a record of it
    may carry: ``PARSED_JSON`` when it can be written as JSON again, else None.

    What ``orjson.loads`` makes can always be written again, but for nesting: it refuses NaN, infinities
    and lone surrogates, its keys are strings, and integers beyond 64 bits come out as floats. Nesting
    deeper than ``MAX_DEPTH`` needs more than that many ``[`` or ``{`` in the text, so counting them
    (bytes in strings too: a text with many counts only as unproven) proves the payload writable without
    serialising it at entry, the one ``orjson.dumps`` per record the check costs. The payload must not be
    changed before the record is run (the core never changes one).
    """
    return loads(text), json_proof(text)


def json_proof(text: bytes | str) -> object:
    """``PARSED_JSON`` when what ``orjson.loads`` makes of ``text`` (JSON) can be written again (see
    ``parse_json``), else None."""
    opened = text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
    return PARSED_JSON if opened <= MAX_DEPTH else None


def parsed_record(record_id: str, text: bytes | str, source: str = "") -> Record:
    """A record of the JSON ``text``, parsed here, with the proof ``parse_json`` gives."""
    payload, proof = parse_json(text)
    return Record(record_id, payload, source, proof)


@dataclass(slots=True)
class Outcome:
    """What became of one record: an output per pipeline that ran to the end, an error per failed one."""

    record: Record
    outputs: list[tuple[str, dict]] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# What orjson (every body, output and state item goes through it) can write: nesting up to 254 containers,
# integers from -2**63 to 2**64 - 1, finite floats (it writes inf and nan as null, silently).
MAX_DEPTH = 254
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def number_problem(value: Any) -> str | None:
    """Why a number cannot be written as JSON (None: it can, or it is not a number)."""
    kind = type(value)
    if kind is float:
        return None if isfinite(value) else f"{value} is not a finite number"
    if kind is int and not INT_MIN <= value <= INT_MAX:
        return f"{int_text(value)} is outside the 64-bit integer range"
    return None


def unwritable(value: Any, at: str = "", nesting: int = 0) -> str | None:
    """Why ``value`` cannot be written as JSON, naming where in it (None: it can).

    ``at`` is where the value sits (a dotted path) and ``nesting`` how many containers hold it there.
    One ``orjson.dumps`` decides in the common case; only a value it refuses, or whose JSON has a null
    (maybe a nan or inf written as null), is walked to say what and where.
    """
    if nesting > MAX_DEPTH:
        return f"{at or 'the value'}: nested deeper than {MAX_DEPTH} levels"
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return None
    if kind is int or kind is float:
        problem = number_problem(value)
        return None if problem is None else f"{at or 'the value'}: {problem}"
    wrapped = value
    for _ in range(nesting):
        wrapped = (wrapped,)
    try:
        data = dumps(wrapped)
    except JSONEncodeError as err:
        return find_problem(value, at, nesting) or f"{at or 'the event'}: {err}"
    if b"null" in data:
        return find_problem(value, at, nesting)
    return None


Where = tuple[str, "Where"] | None
"""A path as a linked list (last segment first), so walking a deep value builds no long strings."""


def _path(at: str, where: Where, limit: int = 6) -> str:
    segs: list[str] = []
    while where is not None:
        segs.append(where[0])
        where = where[1]
    segs.reverse()
    if len(segs) > limit:  # a nesting problem: the way in says enough
        segs = [*segs[:limit], "…"]
    return ".".join([at, *segs] if at else segs) or "the event"


def find_problem(value: Any, at: str = "", depth: int = 0) -> str | None:
    """The first thing in ``value`` JSON cannot hold, with its path (iterative: depth is the problem)."""
    stack: list[tuple[Any, Where, int]] = [(value, None, depth)]
    while stack:
        v, where, d = stack.pop()
        kind = type(v)
        if kind is dict or kind is list or kind is tuple:
            if d + 1 > MAX_DEPTH:
                return f"{_path(at, where)}: nested deeper than {MAX_DEPTH} levels"
            for k, x in (v.items() if kind is dict else enumerate(v)):
                if kind is dict and type(k) is not str:
                    return f"{_path(at, where)}: the key {k!r} is not a string"
                stack.append((x, (str(k), where), d + 1))
        elif kind is str:
            try:
                v.encode()
            except UnicodeEncodeError:
                return f"{_path(at, where)}: the string is not valid UTF-8 (a lone surrogate)"
        elif (problem := number_problem(v)) is not None:
            return f"{_path(at, where)}: {problem}"
        elif not (kind is bool or v is None or kind is int or kind is float):
            return f"{_path(at, where)}: a {kind.__name__} is not a JSON value"
    return None


def int_text(n: int) -> str:
    """An integer for a message (Python refuses to print integers of thousands of digits)."""
    return str(n) if n.bit_length() <= 128 else f"an integer of {n.bit_length()} bits"

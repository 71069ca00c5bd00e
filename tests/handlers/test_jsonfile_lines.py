"""JSON lines, read a chunk at a time, are exactly what reading them one line at a time gives."""

from __future__ import annotations

import hashlib
import io

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core.records import MAX_DEPTH, PARSED_JSON
from handlers.sources import Unreadable
from handlers.sources.jsonfile import Limits, read_records

LIMIT = 40
LINES = st.sampled_from([
    b'{"a": 1}', b'{"b": "x\\u00e9"}', b'  {"c": [1, 2]}\r', b"", b"   ", b"\r", b"{not json", b'"a string"',
    b'{"d": "\xff"}', b'{"long": "' + b"x" * 50 + b'"}', b"[1, 2]", b"7",
])


def one_at_a_time(data: bytes, limit: int) -> list[tuple[int, object, str]]:
    """The reference: each line on its own (the input does not open with ``[`` or ``{``-then-a-document)."""
    out = []
    for n, line in enumerate(data.split(b"\n"), start=1):
        text = line.strip()
        if not text:
            continue
        digest = hashlib.blake2b(text, digest_size=8).hexdigest()
        if len(line) > limit:
            out.append((n, "too long", digest))
            continue
        try:
            out.append((n, orjson.loads(text), digest))
        except orjson.JSONDecodeError:
            out.append((n, "not JSON", digest))
    return out


def summary(payload: object) -> object:
    if isinstance(payload, Unreadable):
        return "too long" if "longer than" in payload.message else "not JSON"
    return payload


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, min_size=1, max_size=60), st.booleans())
def test_lines_read_in_chunks_are_lines_read_one_by_one(lines, final_newline):
    data = b'7\n' + b"\n".join(lines) + (b"\n" if final_newline else b"")  # "7": the input is JSON lines
    got = [(e.position, summary(e.payload), e.digest)
           for e in read_records(io.BufferedReader(io.BytesIO(data)), Limits(max_line_bytes=LIMIT))]
    assert got == one_at_a_time(data, LIMIT)


NESTED = st.recursive(st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3) | st.none(),
                      lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
                      max_leaves=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NESTED, st.integers(0, 300)), min_size=1, max_size=20))
def test_a_json_line_is_proven_writable_exactly_when_it_has_few_enough_open_brackets(values):
    # Each line: a value wrapped in ``depth`` lists, so some lines nest (or only bracket) past what may be written.
    lines = [b"[" * depth + orjson.dumps(v) + b"]" * depth for v, depth in values]
    data = b'7\n' + b"\n".join(lines) + b"\n"
    events = list(read_records(io.BufferedReader(io.BytesIO(data)), Limits()))[1:]
    assert len(events) == len(lines)
    for event, line in zip(events, lines, strict=True):
        proven = line.count(b"[") + line.count(b"{") <= MAX_DEPTH
        assert (event.proof is PARSED_JSON) == proven
        if proven:  # what the core then does not serialise at entry can be written
            orjson.dumps(event.payload)

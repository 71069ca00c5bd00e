"""JSON lines, read a chunk at a time, are exactly what reading them one line at a time gives."""

from __future__ import annotations

import hashlib
import io

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

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

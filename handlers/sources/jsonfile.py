"""Events from a file or stream: JSON lines, a JSON array, or one JSON document; gzip or not.

JSON lines are streamed; a JSON array or a multi-line document is read whole.
Each event comes with its position (the line, or the element of an array,
counting from 1); a line that is not JSON comes as ``Unreadable`` in place of
the event, so the others still run.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from typing import IO, Any

import orjson

from handlers.sources import Unreadable

GZIP_MAGIC = b"\x1f\x8b"


def open_events(raw: IO[bytes]) -> IO[bytes]:
    """``raw`` as a buffered stream, gunzipped if it starts with gzip's magic bytes."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered)  # type: ignore[return-value]
    return buffered


def _parse(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return Unreadable(f"not valid JSON: {e}")


def read_events(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """(position, event or Unreadable) for every event in ``stream``."""
    lines = iter(stream)
    first_no, first = 0, b""
    for first in lines:
        first_no += 1
        if first.strip():
            break
    else:
        return
    head = first.lstrip()
    if head.startswith(b"["):
        whole = _parse(first + stream.read())
        if isinstance(whole, Unreadable):
            yield 1, whole
        elif isinstance(whole, list):
            yield from enumerate(whole, 1)
        return
    parsed = _parse(first)
    if isinstance(parsed, Unreadable) and head.startswith(b"{"):
        # Perhaps one pretty-printed document rather than JSON lines.
        rest = stream.read()
        whole = _parse(first + rest)
        if not isinstance(whole, Unreadable):
            yield first_no, whole
            return
        lines = iter(io.BytesIO(rest))
    yield first_no, parsed
    loads, malformed = orjson.loads, orjson.JSONDecodeError
    for n, line in enumerate(lines, first_no + 1):
        try:
            event = loads(line)
        except malformed:
            if line.strip():
                yield n, _parse(line)
            continue
        yield n, event

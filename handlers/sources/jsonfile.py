"""Events from a file or stream: JSON lines, a JSON array, or one JSON document; gzip or not.

Everything is streamed in chunks, in bounded memory, and nothing in the input can
take another record down with it:

* JSON lines: each line is read on its own (at most ``max_line_bytes``; a longer
  line is skipped without being held and is that line's error). A line that is
  not JSON, or not UTF-8, is that line's error; the other lines run.
* A file whose first non-blank character is ``[`` is one JSON array, streamed
  element by element (each at most ``max_line_bytes``), unless that array is the
  whole first line and more follows: then the file is JSON lines whose first line
  happens to be an array. A truncated array yields its complete elements and one
  error for the rest; where an array breaks, the lines after the break are read
  as JSON lines, so JSON lines behind a broken first line still run.
* A first line that starts with ``{`` but is not JSON by itself may be one
  pretty-printed document (at most ``max_line_bytes``); if it is not, the file is
  JSON lines after all.
* gzip is recognised by its magic bytes and decompressed as it is read (at most
  ``max_decompressed_bytes``); damaged gzip data is one error after the records
  decoded before it. A UTF-8 byte order mark at the start is skipped.

Each event comes with its position (the line, or the element of an array,
counting from 1) and a short hash of its bytes; what cannot be read comes as
``Unreadable`` in place of the event, so the others still run.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

import orjson

from agglo_core.records import json_proof
from handlers.sources import Unreadable

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 16
DEFAULT_MAX_LINE_BYTES = 8 << 20
DEFAULT_MAX_DECOMPRESSED_BYTES = 4 << 30
MAX_LINE_ENV = "AGGLO_MAX_LINE_BYTES"
MAX_DECOMPRESSED_ENV = "AGGLO_MAX_DECOMPRESSED_BYTES"

_BLANK = re.compile(rb"[ \t\r\n]*")
_STRUCTURE = re.compile(rb'["\[\]{}]')
_STRING_END = re.compile(rb'["\\]')
_SCALAR_END = re.compile(rb'[ \t\r\n,\]}\[{"]')


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one record (a line, an array element, a document) and one decompressed input may hold."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """``AGGLO_MAX_LINE_BYTES`` and ``AGGLO_MAX_DECOMPRESSED_BYTES``, or the defaults; ValueError if not whole numbers."""
        return cls(_positive(environ, MAX_LINE_ENV, DEFAULT_MAX_LINE_BYTES),
                   _positive(environ, MAX_DECOMPRESSED_ENV, DEFAULT_MAX_DECOMPRESSED_BYTES))


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a whole number of bytes, 1 or more, got {text!r}")
    return int(text)


class Event(NamedTuple):
    """One record read from the input: where it is, the event (or ``Unreadable``), a short hash of its bytes,
    and for a JSON line the proof that its event can be written as JSON again (``records.json_proof``)."""

    position: int
    payload: Any
    digest: str
    proof: object = None


class _Broken(Exception):
    """The input cannot be read further (damaged gzip data, too much decompressed data).

    ``complete``: what came before the break is whole (trailing garbage after the last gzip member).
    """

    def __init__(self, message: str, complete: bool = False) -> None:
        super().__init__(message)
        self.complete = complete


def _digest(data: bytes | bytearray) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _parse(text: bytes | bytearray) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return Unreadable(f"not valid JSON: {e}")


def _reader(raw: IO[bytes]) -> io.BufferedReader:
    return raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]


def _read1(stream: io.BufferedReader) -> bytes:
    """What is there to read (at most a chunk), without waiting for a whole chunk on a pipe."""
    return stream.read1(CHUNK)


def _plain(stream: io.BufferedReader) -> Iterator[bytes]:
    while chunk := _read1(stream):
        yield chunk


def _gunzipped(stream: io.BufferedReader, limit: int) -> Iterator[bytes]:
    """The decompressed bytes of every gzip member in ``stream``, at most ``limit`` of them, a chunk at a time."""
    total = 0
    pending = b""
    while True:
        member = zlib.decompressobj(wbits=31)
        # A member that breaks before giving a byte breaks at a boundary: what came before it is whole.
        boundary = total > 0
        while not member.eof:
            if not pending and not (pending := _read1(stream)):
                raise _Broken(f"the gzip data ends early, after {total} decompressed bytes (truncated?)",
                              complete=boundary)
            try:
                out = member.decompress(pending, CHUNK)
            except zlib.error as e:
                raise _Broken(f"the gzip data is damaged after {total} decompressed bytes: {e}",
                              complete=boundary) from None
            pending = member.unconsumed_tail if not member.eof else b""
            if total + len(out) > limit:
                yield out[:limit - total]  # the records before the limit still run
                raise _Broken(f"the input decompresses to more than {limit} bytes (the maximum decompressed size)")
            total += len(out)
            if out:
                boundary = False
                yield out
        pending = member.unused_data
        # Another member may follow; zero bytes (padding) may end the file; anything else is garbage.
        while len(pending) < 2 and (more := _read1(stream)):
            pending += more
        if pending[:2] == GZIP_MAGIC:
            continue
        while pending:
            if pending.strip(b"\0"):
                raise _Broken(f"garbage after the gzip data (after {total} decompressed bytes)", complete=True)
            pending = _read1(stream)
        return


def _content(raw: IO[bytes], limits: Limits) -> Iterator[bytes]:
    """The bytes of ``raw``, gunzipped if they start with gzip's magic, without a leading byte order mark."""
    stream = _reader(raw)
    chunks = _gunzipped(stream, limits.max_decompressed_bytes) if stream.peek(2)[:2] == GZIP_MAGIC \
        else _plain(stream)
    head, broken = b"", None
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= len(BOM):
                break
    except _Broken as e:  # a break this early still comes after the bytes before it
        broken = e
    if head := head.removeprefix(BOM):
        yield head
    if broken is not None:
        raise broken
    yield from chunks


class _Input:
    """The content of one input in a sliding buffer, with the line number of the read position.

    What was read is dropped from the buffer as it goes, except from ``pin`` on (a
    first line or document that may have to be read again another way).
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.buf = bytearray()
        self.pos = 0
        self.line = 1
        self.eof = False
        self.broken: _Broken | None = None
        self.pin: int | None = None

    def fill(self) -> bool:
        """One more chunk into the buffer; False at the end of the input (or where it breaks)."""
        if self.eof:
            return False
        try:
            chunk = next(self._chunks, b"")
        except _Broken as e:
            self.broken, chunk = e, b""
        if not chunk:
            self.eof = True
            return False
        keep = self.pos if self.pin is None else min(self.pin, self.pos)
        if keep > CHUNK:
            del self.buf[:keep]
            self.pos -= keep
            if self.pin is not None:
                self.pin -= keep
        self.buf += chunk
        return True

    def skip_blank(self) -> bool:
        """Past blank space and lines (at C speed: a flood of them costs no records); False at the end."""
        while True:
            end = _BLANK.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            self.line += self.buf.count(b"\n", self.pos, end)
            self.pos = end
            if end < len(self.buf):
                return True
            if not self.fill():
                return False

    def next_line(self, limit: int) -> tuple[bytearray | None, str, bool]:
        """The line at the read position: (its bytes, or None when longer than ``limit``; digest; whole).

        Not ``whole``: the input broke in the middle of the line, which is then part of that error.
        """
        searched = 0
        while True:
            nl = self.buf.find(b"\n", self.pos + searched)
            end = nl if nl >= 0 else len(self.buf)
            if end - self.pos > limit:
                return self._skip_line()
            if nl >= 0:
                line = self.buf[self.pos:nl]
                self.pos, self.line = nl + 1, self.line + 1
                return line, _digest(line.strip()), True
            searched = len(self.buf) - self.pos
            if not self.fill():
                line = self.buf[self.pos:]
                self.pos = len(self.buf)
                return line, _digest(line.strip()), self._whole()

    def _skip_line(self) -> tuple[None, str, bool]:
        """Past the rest of an over-long line, hashing it as it goes rather than holding it."""
        self.pin = None
        digest = hashlib.blake2b(digest_size=8)
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl >= 0:
                digest.update(self.buf[self.pos:nl])
                self.pos, self.line = nl + 1, self.line + 1
                return None, digest.hexdigest(), True
            digest.update(self.buf[self.pos:])
            self.pos = len(self.buf)
            if not self.fill():
                return None, digest.hexdigest(), self._whole()

    def _whole(self) -> bool:
        return self.broken is None or self.broken.complete

    def scan_value(self, limit: int, skip_long: bool = True) -> tuple[bytearray | None, str, str]:
        """One JSON value from the read position (not blank), found by its structure: (bytes, digest, status).

        ``status`` is ``ok``, ``long`` (more than ``limit`` bytes: skipped when ``skip_long``, else the caller
        rewinds to its ``pin``), ``end`` (the input ends inside it) or ``syntax`` (a closing bracket with
        nothing open). orjson checks the bytes afterwards; this only finds where the value ends.
        """
        scalar = self.buf[self.pos] not in b'{["'
        depth, in_string, off = 0, False, 0
        long_digest: Any = None
        while True:
            i = self.pos + off
            end = -1
            if scalar:
                m = _SCALAR_END.search(self.buf, i)
                end = m.start() if m else -1
                off = len(self.buf) - self.pos if m is None else off
            elif in_string:
                m = _STRING_END.search(self.buf, i)
                if m is None:
                    off = len(self.buf) - self.pos
                elif self.buf[m.start()] == ord("\\"):
                    if m.start() + 1 < len(self.buf):
                        off = m.start() + 2 - self.pos
                    else:  # the escaped character is in the next chunk: scan the backslash again then
                        off, m = m.start() - self.pos, None
                else:
                    in_string, off = False, m.end() - self.pos
                    end = m.end() if depth == 0 else -1
            else:
                m = _STRUCTURE.search(self.buf, i)
                if m is None:
                    off = len(self.buf) - self.pos
                else:
                    c, off = self.buf[m.start()], m.end() - self.pos
                    if c == ord('"'):
                        in_string = True
                    elif c in b"[{":
                        depth += 1
                    else:
                        depth -= 1
                        if depth < 0:
                            return None, "", "syntax"
                        end = m.end() if depth == 0 else -1
            if end >= 0:
                value = self.buf[self.pos:end]
                if long_digest is None and len(value) > limit and not skip_long:
                    return None, "", "long"
                self.line += value.count(b"\n")
                self.pos = end
                if long_digest is not None or len(value) > limit:
                    long_digest = long_digest or hashlib.blake2b(digest_size=8)
                    long_digest.update(value)
                    return None, long_digest.hexdigest(), "long"
                return value, _digest(value), "ok"
            if m is not None and off < len(self.buf) - self.pos:
                continue  # more structure in what is already read
            off = min(off, len(self.buf) - self.pos)
            if off > limit and long_digest is None:
                if not skip_long:
                    return None, "", "long"
                long_digest, self.pin = hashlib.blake2b(digest_size=8), None
            if long_digest is not None:  # drop what was scanned: only the scanner's state is kept
                scanned = self.buf[self.pos:self.pos + off]
                long_digest.update(scanned)
                self.line += scanned.count(b"\n")
                self.pos += off
                off = 0
            if not self.fill():  # even a scalar: without what follows it, it may be cut short (``[1, 2``)
                return None, "", "end"


def _ended(inp: _Input, position: int, what: str) -> Iterator[Event]:
    """The one error for the rest of an input that broke (damaged gzip…) or ``what`` ended too early."""
    if inp.broken is not None:
        yield Event(position, Unreadable(str(inp.broken)), "")
    elif what:
        yield Event(position, Unreadable(what), "")


def _too_long(limit: int, what: str) -> Unreadable:
    return Unreadable(f"{what} is longer than {limit} bytes (the maximum line size)")


def _lines(inp: _Input, limits: Limits, after: int = 0) -> Iterator[Event]:
    """JSON lines, each at its line number, but never at a position below ``after``: lines read after an
    array broke must not take the positions (and so the record ids) of its elements."""
    limit, blake2b, loads, proof = limits.max_line_bytes, hashlib.blake2b, orjson.loads, json_proof
    new = tuple.__new__  # an Event without NamedTuple's slower constructor: this loop runs once a line
    while inp.skip_blank():
        last = inp.buf.rfind(b"\n", inp.pos)
        if last > inp.pos:
            # The common case, at speed: every whole line already in the buffer, split at once.
            n = inp.line
            lines = bytes(inp.buf[inp.pos:last]).split(b"\n")
            inp.pos, inp.line = last + 1, n + len(lines)
            if after <= n and max(map(len, lines)) <= limit:
                # Positions are line numbers and every line fits: one comprehension for the lot, parsed without
                # a call per line; a line that is not JSON sends the chunk the careful way below.
                try:
                    events = [new(Event, (n + i, loads(text), blake2b(text, digest_size=8).hexdigest(), proof(text)))
                              for i, line in enumerate(lines) if (text := line.strip())]
                except orjson.JSONDecodeError:
                    pass
                else:
                    yield from events
                    continue
            for line in lines:
                if text := line.strip():
                    at = max(n, after)
                    yield new(Event, (at, _parse(text) if len(line) <= limit else _too_long(limit, "the line"),
                                      blake2b(text, digest_size=8).hexdigest(), proof(text)))
                    after = at + 1
                n += 1
            continue
        n = inp.line
        one, digest, whole = inp.next_line(limit)  # a line longer than the buffer, or the last one
        if not whole:
            break
        at = max(n, after)
        yield Event(at, _parse(one) if one is not None else _too_long(limit, "the line"), digest)
        after = at + 1
    yield from _ended(inp, max(inp.line, after), "")


def _array_or_lines(inp: _Input, limits: Limits) -> Iterator[Event]:
    """At a ``[`` that begins the content: a JSON array streamed element by element, or JSON lines."""
    limit = limits.max_line_bytes
    first_line = inp.line
    inp.pin = inp.pos
    held: list[Event] | None = []  # elements, while the array may yet be the first of JSON lines
    n, expect_value, problem, broke_at = 0, True, "", (0, 0)
    inp.pos += 1
    while True:
        if held is not None and (inp.pin is None or inp.line != first_line or inp.pos - inp.pin > limit):
            yield from held  # the array is more than a first line: a JSON array file
            held, inp.pin = None, None
        if not inp.skip_blank():
            problem = "end"
            break
        c = inp.buf[inp.pos]
        if c == ord("]"):
            inp.pos += 1
            break
        if c == ord(",") and not expect_value:
            inp.pos, expect_value = inp.pos + 1, True
            continue
        if not expect_value or c in b",}":
            problem, broke_at = "syntax", (inp.line, inp.pos)
            break
        at = (inp.line, inp.pos)
        value, digest, status = inp.scan_value(limit)
        if status in ("end", "syntax"):
            problem, broke_at = status, at
            break
        n += 1
        event = Event(n, _parse(value) if value is not None else _too_long(limit, f"element {n}"), digest)
        if held is None:
            yield event
        else:
            held.append(event)
        expect_value = False
    if held is not None and inp.pin is not None and problem != "end":
        # The array closed, or broke, on its first line: JSON lines if more follows that line.
        inp.pos, inp.line = inp.pin, first_line
        line, digest, whole = inp.next_line(limit)
        inp.pin = None
        if line is not None and whole and inp.skip_blank():
            yield Event(first_line, _parse(line), digest)
            yield from _lines(inp, limits)
            return
        yield from held
        if problem:
            yield Event(n + 1, Unreadable(f"the JSON array breaks on line {first_line}: the rest of that line "
                                          "is not read"), "")
            yield from _lines(inp, limits, n + 2)
        else:
            yield from _ended(inp, n + 1, "")
        return
    if held is not None:
        yield from held
    inp.pin = None
    if problem == "end":
        yield from _ended(inp, n + 1, f"the input ends inside the JSON array, after {n} complete element(s)")
        return
    if problem == "syntax":
        line_no, pos = broke_at
        yield Event(n + 1, Unreadable(f"the JSON array breaks on line {line_no}: the lines after it are read as "
                                      "JSON lines"), "")
        starts_line = pos == 0 or not inp.buf[inp.buf.rfind(b"\n", 0, pos) + 1:pos].strip()
        inp.pos, inp.line = pos, line_no
        if not starts_line:
            inp.next_line(limit)
        n += 1
    yield from _lines(inp, limits, n + 1)


def _document_or_lines(inp: _Input, limits: Limits) -> Iterator[Event]:
    """At a ``{`` that begins the content: JSON lines, or one document pretty-printed over many lines."""
    limit = limits.max_line_bytes
    first_line = inp.line
    inp.pin = inp.pos
    line, digest, whole = inp.next_line(limit)
    first = _parse(line) if line is not None else _too_long(limit, "the line")
    if isinstance(first, Unreadable) and line is not None and whole and inp.pin is not None:
        # Perhaps one document over many lines: read it again from its start, as one value.
        inp.pos, inp.line = inp.pin, first_line
        value, digest, status = inp.scan_value(limit, skip_long=False)
        document = _parse(value) if status == "ok" and value is not None and inp.line != first_line else first
        if isinstance(document, Unreadable):  # JSON lines after all, from the first line again
            inp.pos, inp.line, inp.pin = inp.pin, first_line, None
            yield from _lines(inp, limits)
            return
        first = document
    inp.pin = None
    if whole:
        yield Event(first_line, first, digest)
    yield from _lines(inp, limits, first_line + 1 if whole else 0)


def read_records(raw: IO[bytes], limits: Limits | None = None) -> Iterator[Event]:
    """Every record of ``raw`` (gzipped or not) as an ``Event``, streamed within ``limits``."""
    limits = limits or Limits()
    inp = _Input(_content(raw, limits))
    if not inp.skip_blank():
        yield from _ended(inp, inp.line, "")
        return
    first = inp.buf[inp.pos]
    if first == ord("["):
        yield from _array_or_lines(inp, limits)
    elif first == ord("{"):
        yield from _document_or_lines(inp, limits)
    else:
        yield from _lines(inp, limits)


def open_events(raw: IO[bytes]) -> IO[bytes]:
    """``raw`` as a buffered stream (``read_records`` recognises gzip by itself)."""
    return _reader(raw)


def read_events(stream: IO[bytes], limits: Limits | None = None) -> Iterator[tuple[int, Any]]:
    """(position, event or Unreadable) for every record in ``stream``."""
    for event in read_records(stream, limits):
        yield event.position, event.payload

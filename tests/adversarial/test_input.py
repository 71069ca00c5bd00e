"""Hostile and careless input: whatever is wrong with one record, every other record runs, exactly as in a
clean run, and the bad one is one error; no traceback, bounded time and memory.

The reader (``handlers.sources.jsonfile``) is driven with generated inputs; ``agglo run`` in a subprocess,
and the S3 (moto) and GCS (emulator) object readers, with one example of each class.
"""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import random
import string
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from builders import config, external
from e2e._servers import json_lines, run_agglo, write_config
from gcp.conftest import gcs_emulator  # noqa: F401 - the fixture, for the GCS reader below
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.sources import Unreadable
from handlers.sources.jsonfile import Event, Limits, read_records

LIMIT = 4096
LIMITS = Limits(max_line_bytes=LIMIT, max_decompressed_bytes=1 << 20)

events = st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=6),
                         st.integers(-10**6, 10**6) | st.text(max_size=8) | st.booleans(), max_size=4)

# One bad line of each class: each is exactly one record's error wherever it stands.
BAD_LINES = {
    "not JSON": b"not json",
    "a broken object": b'{"a": 1',
    "an unterminated string": b'{"a": "x',
    "invalid UTF-8": b'{"a": "\xff\xfe"}',
    "an encoded surrogate": b'{"a": "\xed\xa0\x80"}',
    "control bytes": b"\x00\x01\x02",
    "two documents on one line": b'{"a": 1} {"b": 2}',
    "a closing brace too many": b'{"a": 1}}',
    "an array line": b"[1, 2]",
    "an array of events": b'[{"a": 1}, {"b": 2}]',
    "nesting deeper than the parser takes": b"[" * 1500 + b"]" * 1500,
    "a string": b'"just a string"',
    "a number": b"42",
    "a line over the limit": b'{"a": "' + b"x" * (LIMIT + 10) + b'"}',
}


# A last line that does not compress: cutting a few bytes off the gzip data cuts only into it.
INCOMPRESSIBLE = b'{"x": "%s"}\n' % random.Random(0).randbytes(500).hex().encode()


def read(data: bytes, limits: Limits = LIMITS) -> list[Event]:
    return list(read_records(io.BytesIO(data), limits))


def is_error(event: Event) -> bool:
    """What a record fails on before it runs: unreadable, or not a JSON object."""
    return isinstance(event.payload, Unreadable) or not isinstance(event.payload, dict)


def good_and_errors(got: list[Event]) -> tuple[list[tuple[int, Any]], list[Event]]:
    return [(e.position, e.payload) for e in got if not is_error(e)], [e for e in got if is_error(e)]


def dumps(event: dict) -> bytes:
    return json.dumps(event).encode()


# --- JSON lines ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(good=st.lists(events, min_size=1, max_size=12), bad=st.sampled_from(sorted(BAD_LINES)),
       at=st.integers(0, 12), blanks=st.lists(st.integers(0, 3), min_size=13, max_size=13),
       newline=st.sampled_from([b"\n", b"\r\n"]), bom=st.booleans(), gzipped=st.booleans())
def test_one_bad_line_anywhere_is_one_error_and_every_other_line_runs(good, bad, at, blanks, newline, bom,
                                                                      gzipped):
    lines = [dumps(e) for e in good]
    at = min(at, len(lines))
    lines.insert(at, BAD_LINES[bad])
    data, expected, bad_line, line_no = b"", [], 0, 1
    for i, line in enumerate(lines):
        data += newline * blanks[i]
        line_no += blanks[i]
        data += line + newline
        if i == at:
            bad_line = line_no
        else:
            expected.append((line_no, good[i if i < at else i - 1]))
        line_no += 1
    data = (b"\xef\xbb\xbf" if bom else b"") + data
    got = read(gzip.compress(data) if gzipped else data)
    ran, errors = good_and_errors(got)
    assert ran == expected
    assert [e.position for e in errors] == [bad_line]


@settings(max_examples=100, deadline=None)
@given(good=st.lists(events, min_size=1, max_size=8), flood=st.integers(0, 5000))
def test_blank_lines_cost_no_records_and_keep_line_numbers(good, flood):
    data = b"\n" * flood + b"\n".join(dumps(e) for e in good) + b" \t\r\n" * flood
    assert [(e.position, e.payload) for e in read(data)] == [(flood + i, e) for i, e in enumerate(good, 1)]


FRAGMENTS = [b"[", b"]", b"{", b"}", b",", b'"', b"\\", b"\n", b" ", b"1", b'{"a": 1}', b"x", b"\xff",
             b"\xef\xbb\xbf"]


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=60), gzipped=st.booleans(),
       limit=st.sampled_from([8, 64, 4096]))
def test_any_input_reads_to_its_end_with_a_distinct_position_for_each_record(parts, gzipped, limit):
    """Whatever the bytes, reading ends without an exception, and no two records share a position (record ids
    are made of it: two records under one id would be one record to the dedupe marks)."""
    data = b"".join(parts)
    got = read(gzip.compress(data) if gzipped else data, Limits(max_line_bytes=limit))
    positions = [e.position for e in got]
    assert positions == sorted(set(positions))
    assert len(got) <= data.count(b"\n") + data.count(b",") + 2


def test_a_broken_array_opening_json_lines_loses_no_line():
    """``[1,`` on the first line looks like an array that goes on: its elements are errors, not the lines after."""
    good = [{"n": i} for i in range(5)]
    for first in (b"[1,", b"[1, 2", b"[", b"[[1], 2,"):
        got = read(first + b"\n" + b"\n".join(dumps(e) for e in good) + b"\n")
        ran, errors = good_and_errors(got)
        assert [e for _, e in ran] == good and errors, first
        assert len(errors) <= 3, first  # the elements of the broken line, and where the array breaks


# --- JSON arrays -----------------------------------------------------------------------------


def array_file(good: list[dict], layout: str) -> tuple[bytes, list[int]]:
    """``good`` as a JSON array laid out as ``layout``; with the offset just after each element."""
    opening, separator, closing = {"one line": (b"[", b", ", b"]"), "one per line": (b"[\n", b",\n", b"\n]\n"),
                                   "pretty": (b"[\n  ", b",\n  ", b"\n]\n")}[layout]
    data, ends = opening, []
    for i, e in enumerate(good):
        data += (separator if i else b"") + (json.dumps(e, indent=2).replace("\n", "\n  ").encode()
                                             if layout == "pretty" else dumps(e))
        ends.append(len(data))
    return data + closing, ends


@settings(max_examples=300, deadline=None)
@given(good=st.lists(events, min_size=1, max_size=10), layout=st.sampled_from(["one line", "one per line", "pretty"]),
       cut=st.floats(0, 1), gzipped=st.booleans())
def test_a_truncated_array_yields_its_complete_elements_and_one_error(good, layout, cut, gzipped):
    whole, ends = array_file(good, layout)
    assert [e.payload for e in read(whole)] == good
    k = int(cut * len(whole))
    data = whole[:k]
    got = read(gzip.compress(data) if gzipped else data)
    complete = sum(1 for end in ends if end <= k)
    closed = k > whole.rindex(b"]")
    ran, errors = good_and_errors(got)
    assert ran == list(enumerate(good[:complete], 1))
    assert len(errors) == (0 if closed or not data.strip() else 1)


def test_json_lines_whose_first_line_is_an_array_are_lines():
    assert [(e.position, e.payload) for e in read(b'[1, 2]\n{"a": 1}\n{"b": 2}\n')] == [
        (1, [1, 2]), (2, {"a": 1}), (3, {"b": 2})]
    assert [(e.position, e.payload) for e in read(b'[{"a": 1}, {"b": 2}]\n\n')] == [(1, {"a": 1}), (2, {"b": 2})]


def test_an_array_element_over_the_limit_is_its_error_and_the_array_goes_on():
    got = read(b'[{"a": 1}, {"big": "' + b"x" * (3 * LIMIT) + b'"}, {"b": 2}]')
    assert [(e.position, e.payload if not is_error(e) else "error") for e in got] == [
        (1, {"a": 1}), (2, "error"), (3, {"b": 2})]
    assert "element 2 is longer than 4096 bytes" in got[1].payload.message


def test_a_one_line_array_bigger_than_a_line_is_still_streamed():
    good = [{"n": i, "pad": "y" * 100} for i in range(200)]  # ~24 KiB on one line, more than LIMIT
    assert [e.payload for e in read(dumps(good))] == good  # type: ignore[arg-type]


def test_a_pretty_printed_document_is_one_record_and_a_broken_one_is_json_lines():
    assert [e.payload for e in read(json.dumps({"a": {"b": [1, 2]}}, indent=2).encode())] == [{"a": {"b": [1, 2]}}]
    ran, errors = good_and_errors(read(b'{"a": 1,\n{"b": 2}\n{"c": 3}\n'))
    assert ran == [(2, {"b": 2}), (3, {"c": 3})] and [e.position for e in errors] == [1]


# --- gzip --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(good=st.lists(events, min_size=1, max_size=30), cut=st.floats(0, 1))
def test_truncated_gzip_runs_what_came_before_and_is_one_error(good, cut):
    whole = gzip.compress(b"".join(dumps(e) + b"\n" for e in good))
    data = whole[:int(cut * len(whole))]
    ran, errors = good_and_errors(read(data))
    assert ran == list(enumerate(good[:len(ran)], 1))
    assert len(errors) == (0 if data in (whole, b"") else 1)
    assert not errors or errors[0] == read(data)[-1]


@settings(max_examples=100, deadline=None)
@given(good=st.lists(events, min_size=1, max_size=10), garbage=st.binary(min_size=1, max_size=64),
       final_newline=st.booleans())
def test_garbage_after_gzip_data_is_one_error_after_every_record(good, garbage, final_newline):
    text = b"\n".join(dumps(e) for e in good) + (b"\n" if final_newline else b"")
    got = read(gzip.compress(text) + garbage)
    ran, errors = good_and_errors(got)
    assert ran == list(enumerate(good, 1))
    assert len(errors) == (1 if garbage.strip(b"\0") else 0)


@pytest.mark.parametrize("text", [b'{"a": 1}', b'{"a": 1}\n{"b": 2}', b'[{"a": 1}]'])
@pytest.mark.parametrize("after", [b"\x1f\x8b", b"\x1f\x8b\x08", b"\x1f\x8bxx", b"junk"])
def test_a_break_after_a_whole_gzip_member_keeps_its_last_line(text, after):
    """What breaks after a member ended (a cut second member, garbage) cannot take the member's last line."""
    got = read(gzip.compress(text) + after)
    ran, errors = good_and_errors(got)
    assert [payload for _, payload in ran] == [e.payload for e in read(text)]
    assert len(errors) == 1
    positions = [e.position for e in got]
    assert len(set(positions)) == len(positions)


def test_gzip_magic_that_is_not_gzip_is_one_error():
    [event] = read(b"\x1f\x8b this is not gzip\n{\"a\": 1}\n")
    assert isinstance(event.payload, Unreadable) and "gzip data is damaged" in event.payload.message


def test_concatenated_gzip_members_are_one_input():
    assert [e.payload for e in read(gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"b": 2}\n'))] == [
        {"a": 1}, {"b": 2}]


# --- bounded memory and time --------------------------------------------------------------------


class Endless(io.RawIOBase):
    """A stream made up as it is read: ``head``, then ``size`` bytes of ``fill``, then ``tail``."""

    def __init__(self, head: bytes, fill: bytes, size: int, tail: bytes) -> None:
        self.parts: Iterator[bytes] = iter([head, *self._filler(fill, size), tail])
        self.pending = b""

    @staticmethod
    def _filler(fill: bytes, size: int) -> Iterator[bytes]:
        block = fill * ((1 << 20) // len(fill))
        while size > 0:
            yield block[:size]
            size -= len(block)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            self.pending = next(self.parts, b"")
            if not self.pending:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def bounded(stream: io.RawIOBase, limits: Limits) -> tuple[list[Event], int, float]:
    """The records of ``stream``, the peak memory reading them took, and the seconds."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        got = list(read_records(io.BufferedReader(stream), limits))
        return got, tracemalloc.get_traced_memory()[1], time.monotonic() - started
    finally:
        tracemalloc.stop()


def test_a_huge_line_is_skipped_in_constant_memory():
    size = 512 << 20
    got, peak, _ = bounded(Endless(b'{"a": 1}\n{"huge": "', b"x", size, b'"}\n{"b": 2}\n'),
                           Limits(max_line_bytes=1 << 20))
    assert [(e.position, e.payload if not is_error(e) else "error") for e in got] == [
        (1, {"a": 1}), (2, "error"), (3, {"b": 2})]
    assert peak < 8 << 20


def test_a_flood_of_blank_lines_costs_linear_time_and_no_records():
    got, peak, seconds = bounded(Endless(b'{"a": 1}\n', b"\n", 256 << 20, b'{"b": 2}\n'), Limits())
    assert [(e.position, e.payload) for e in got] == [(1, {"a": 1}), (2 + (256 << 20), {"b": 2})]
    assert peak < 8 << 20 and seconds < 60


def gzip_bomb(head: bytes, zeros: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(head)]
    parts += [packer.compress(block) for _ in range(zeros >> 20)]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_is_one_error_after_the_records_before_it_in_constant_memory():
    bomb = gzip_bomb(b'{"a": 1}\n{"b": 2}\n', 1 << 30)
    assert len(bomb) < 2 << 20
    got, peak, _ = bounded(io.BytesIO(bomb), Limits(1 << 20, 64 << 20))  # type: ignore[arg-type]
    assert [e.payload for e in got[:2]] == [{"a": 1}, {"b": 2}]
    [error] = got[2:]
    assert "decompresses to more than 67108864 bytes" in error.payload.message
    assert peak < 8 << 20  # a line's limit and a chunk, not what the bomb decompresses to


def test_limits_from_the_environment():
    assert Limits.from_environment({}) == Limits()
    assert Limits.from_environment({"AGGLO_MAX_LINE_BYTES": "10", "AGGLO_MAX_DECOMPRESSED_BYTES": "20"}) == \
        Limits(10, 20)
    for bad in ("0", "-1", "ten", "1.5"):
        with pytest.raises(ValueError, match="AGGLO_MAX_LINE_BYTES must be a whole number"):
            Limits.from_environment({"AGGLO_MAX_LINE_BYTES": bad})


# --- agglo run: the good records' outputs are those of a clean run --------------------------------


GOOD = [{"n": i, "kind": "even" if i % 2 == 0 else "odd"} for i in range(40)]


def clean_lines() -> bytes:
    return b"".join(dumps(e) + b"\n" for e in GOOD)


def hostile_inputs() -> dict[str, tuple[bytes, list[str]]]:
    """Each class of bad input: (the file, extra options); the good records are GOOD, the bad one is one error."""
    lines = [dumps(e) for e in GOOD]
    between = b"\n".join(lines[:20]) + b"\n%s\n" + b"\n".join(lines[20:]) + b"\n"
    array = dumps(GOOD)  # type: ignore[arg-type]
    whole = gzip.compress(clean_lines())
    return {
        "not JSON": (between % b"not json", []),
        "invalid UTF-8": (between % b'{"n": "\xff"}', []),
        "an array as the first line of JSON lines": (b"[1, 2]\n" + clean_lines(), []),
        "a truncated array": (array[:-1] + b', {"n": ', []),
        "a line over --max-line-bytes": (between % (b'{"x": "' + b"x" * 5000 + b'"}'), ["--max-line-bytes", "1000"]),
        "truncated gzip": (gzip.compress(clean_lines() + INCOMPRESSIBLE)[:-40], []),
        "garbage after gzip": (whole + b"garbage", []),
        "a gzip bomb": (gzip_bomb(clean_lines(), 64 << 20), ["--max-decompressed-bytes", str(1 << 20)]),
        "a BOM and CRLF (no error)": (b"\xef\xbb\xbf" + clean_lines().replace(b"\n", b"\r\n"), []),
    }


@pytest.fixture(scope="module")
def two_pipelines(tmp_path_factory) -> tuple[pathlib.Path, list[Any]]:
    """A config of two pipelines, and its outputs for a clean run of GOOD."""
    second = {"name": "Second", "processes": [{"name": "OnlyEven"}, {"name": "MarkSecond"}]}
    cfg = config({"annotator": {"name": "MarkFirst", "annotations": [{"fieldKey": "seen", "value": "first"}]}},
                 {"continuation": {"name": "OnlyEven", "condition": {"expression": {"comparator": {
                     "lhs": {"variable": {"name": "kind"}}, "rhs": {"literal": "even"}, "op": "Equal"}}}}},
                 {"annotator": {"name": "MarkSecond", "annotations": [{"fieldKey": "second", "value": "yes"}]}},
                 order=["MarkFirst"], pipeline="First", extra_pipelines=(second,))
    directory = tmp_path_factory.mktemp("two")
    path = write_config(directory / "two.json", cfg)
    clean = run_agglo(["run", "-c", str(path)], directory, stdin=clean_lines(), timeout=60)
    assert clean.returncode == 0, clean.stderr
    return path, json_lines(clean.stdout)


@pytest.mark.parametrize("case", sorted(hostile_inputs()))
def test_agglo_run_runs_every_good_record_as_a_clean_run_would(case, two_pipelines, tmp_path):
    path, clean_outputs = two_pipelines
    data, options = hostile_inputs()[case]
    (tmp_path / "events").write_bytes(data)
    for args, stdin in ((["-i", "events"], None), ([], data)):
        proc = run_agglo(["run", "-c", str(path), *args, *options], tmp_path, stdin=stdin, timeout=120)
        assert b"Traceback" not in proc.stderr
        assert json_lines(proc.stdout) == clean_outputs
        errors = json_lines(proc.stderr)
        if "no error" in case:
            assert proc.returncode == 0 and errors == []
        else:
            assert proc.returncode == 1
            [error] = errors
            assert error["pipeline"] is None and error["error"], error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.sampled_from(sorted(BAD_LINES)), at=st.integers(0, len(GOOD)), gzipped=st.booleans())
def test_agglo_run_with_a_generated_bad_line_matches_the_clean_run(bad, at, gzipped, two_pipelines):
    from handlers import local
    from handlers.runtime.boot import build_runtime

    path, clean_outputs = two_pipelines
    lines = [dumps(e) for e in GOOD]
    lines.insert(at, BAD_LINES[bad])
    data = b"\n".join(lines) + b"\n"
    out, err = io.BytesIO(), io.StringIO()
    status = local.run(build_runtime(str(path), None, 30.0), io.BytesIO(gzip.compress(data) if gzipped else data),
                       "file:/generated", out, err, limits=LIMITS)
    assert status == 1
    assert json_lines(out.getvalue()) == clean_outputs
    assert [e["line"] for e in json_lines(err.getvalue())] == [at + 1]


# --- the object readers of the functions -------------------------------------------------------


def s3_event(bucket: str, *keys: str) -> dict:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket}, "object": {"key": key}}} for key in keys]}


def test_a_damaged_s3_object_runs_its_records_and_dead_letters_one(aws, monkeypatch, tmp_path):
    from handlers import aws_lambda
    from handlers.connectors.aws import client

    s3 = client("s3")
    for bucket in ("input", "out"):
        s3.create_bucket(Bucket=bucket)
    cfg = config({"tee": {"name": "Keep", "outputConnectorRef": "Out"}},
                 externals=(external("ExternalObjectStore", "Out", "s3:bucketName=out,prefix=kept/"),
                            external("ExternalObjectStore", "Dead", "s3:bucketName=out,prefix=dead/")))
    monkeypatch.setenv("AGGLO_CONFIG", str(write_config(tmp_path / "cfg.json", cfg)))
    monkeypatch.setenv("AGGLO_DEAD_LETTER", "Dead")
    monkeypatch.setenv("AGGLO_MAX_LINE_BYTES", "1000")
    good = [{"n": i} for i in range(30)]
    body = b"".join(dumps(e) + b"\n" for e in good)
    s3.put_object(Bucket="input", Key="cut.jsonl.gz", Body=gzip.compress(body + INCOMPRESSIBLE)[:-30])
    s3.put_object(Bucket="input", Key="long.jsonl",
                  Body=b"".join([*map(dumps, good[:2]), b'{"x": "' + b"x" * 5000 + b'"}', *map(dumps, good[2:])])
                  .replace(b"}{", b"}\n{"))
    aws_lambda.reset()
    for key in ("cut.jsonl.gz", "long.jsonl"):
        result = aws_lambda.handler(s3_event("input", key), None)
        assert result == {"records": len(good) + 1, "failed": 1, "deadLettered": 1}
        kept = [json.loads(s3.get_object(Bucket="out", Key=o["Key"])["Body"].read())
                for o in s3.list_objects_v2(Bucket="out", Prefix="kept/")["Contents"]]
        assert sorted(e["n"] for e in kept) == [e["n"] for e in good]
        for o in s3.list_objects_v2(Bucket="out", Prefix="kept/")["Contents"]:
            s3.delete_object(Bucket="out", Key=o["Key"])
    dead = [json.loads(s3.get_object(Bucket="out", Key=o["Key"])["Body"].read())
            for o in s3.list_objects_v2(Bucket="out", Prefix="dead/")["Contents"]]
    assert sorted(d["errors"][0]["error"].split(",")[0] for d in dead) == [
        "the gzip data ends early", "the line is longer than 1000 bytes (the maximum line size)"]


def test_a_damaged_gcs_object_runs_its_records_and_fails_one(gcs_emulator, monkeypatch):  # noqa: F811
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from handlers.gcp_functions import CloudFunctionApp

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = storage.Client(project="agglo-test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"input-{uuid.uuid4().hex[:8]}")
    good = [{"n": i} for i in range(30)]
    blob = bucket.blob("cut.jsonl.gz")
    blob.upload_from_string(gzip.compress(b"".join(dumps(e) + b"\n" for e in good) + INCOMPRESSIBLE)[:-20])
    blob.reload()
    items = [i for chunk in CloudFunctionApp._gcs_chunks(bucket.name, "cut.jsonl.gz", str(blob.generation))
             for i in chunk]
    readable = [i.payload for i in items if not isinstance(i.payload, Unreadable)]
    assert readable == good
    [bad] = [i for i in items if isinstance(i.payload, Unreadable)]
    assert bad is items[-1] and "the gzip data ends early" in bad.payload.message
    assert len({i.id for i in items}) == len(items)

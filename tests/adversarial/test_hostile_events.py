"""Hostile events beside good ones, through every adapter: the good records' outputs are those of a clean run.

Hypothesis generates the hostile events (deep nesting, numbers at the edges of what JSON, orjson and the
stores can hold, arithmetic that overflows, invalid UTF-8, duplicate keys, long strings). Each run mixes them
with good events; every record aggregates into its own group, so a good record's output does not depend on its
neighbours and must be exactly what it is when the good events run alone. A hostile record either runs (and
then no number in its output has turned into ``null``) or fails with its own error; nothing crashes, nothing
prints a traceback, and no run takes long.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from builders import config, external, kv, without_uuids
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "e2e"))
from _servers import Server, request, run_agglo, write_config  # noqa: E402

PIPELINE = "Hostile"
TIMEOUT_S = 60
# Each example starts processes or servers: shrinking one would take minutes; the failing example is printed.
NO_SHRINK = (Phase.explicit, Phase.generate)


def hostile_config() -> dict:
    """Annotate, do arithmetic, aggregate per record (grouped by ``id``), rewrite a string, tee to files.

    Paths are relative to the working directory, so outputs from different directories compare equal.
    """
    return config(
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
        {"transformer": {"name": "Arithmetic", "forwardInputFields": True, "specs": [
            {"sourceField": "nums", "targetField": "numsSum",
             "transformation": {"transformationType": "TransformSum"}},
            {"sourceField": "x", "targetField": "xTimes",
             "transformation": {"transformationType": "TransformMapMult", "mapMultArgs": {"value": 1e300}}},
            {"sourceField": "x", "targetField": "xPlus",
             "transformation": {"transformationType": "TransformMapAdd", "mapAddArgs": {"value": 9e18}}},
            {"sourceField": "s", "targetField": "sCut",
             "transformation": {"transformationType": "TransformMapRegex",
                                "mapRegexArgs": {"regex": "(a+)+$", "replace": "<$1>"}}}]}},
        {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                        "aggregation": {"key": "n", "aggregationType": "AggSum", "groupByKeys": ["id"]}}},
        {"tee": {"name": "Out", "outputConnectorRef": "Files"}},
        externals=(kv("State", "sqlite:state.db"), external("ExternalLocalFile", "Files", "tee")),
        pipeline=PIPELINE)


# --- the events --------------------------------------------------------------------------------------------

def good_events(n: int = 12) -> list[dict]:
    return [{"id": f"good-{i}", "n": i * 1.5, "nums": [i, 2 * i], "x": i, "s": "b" + "a" * i,
             "nested": {"k": [i, {"deeper": str(i)}]}} for i in range(n)]


def nested(depth: int) -> bytes:
    """``depth`` objects inside one another, as JSON text (orjson writes at most 254 levels, reads far more)."""
    return b'{"d":' * depth + b"1" + b"}" * depth


EDGE_NUMBERS = st.sampled_from([
    1e308, -1e308, 1.7976931348623157e308, 5e-324, 9.999e125, 1e126, 2**63 - 1, -(2**63), 2**64 - 1,
    2**63, 0.1, -0.0, 0])
HOSTILE_FIELDS = st.one_of(
    st.fixed_dictionaries({"n": EDGE_NUMBERS}),
    st.fixed_dictionaries({"nums": st.lists(EDGE_NUMBERS, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"x": EDGE_NUMBERS}),
    st.fixed_dictionaries({"s": st.integers(20, 3000).map(lambda k: "a" * k + "!")}),
    st.fixed_dictionaries({"s": st.text(min_size=0, max_size=50)}),
    st.fixed_dictionaries({"n": st.floats(allow_nan=False, allow_infinity=False)}),
    st.fixed_dictionaries({"n": st.integers(-(2**63), 2**64 - 1)}),  # beyond: the "huge-int" lines
)


@st.composite
def hostile_lines(draw: Any) -> list[bytes]:
    """Raw JSON lines: hostile events as text (so numbers beyond 64 bits stay as written), and broken bytes."""
    lines = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["fields", "fields", "fields", "deep", "bad-utf8", "duplicate-keys", "huge-int"]))
        rid = f"hostile-{i}"
        if kind == "bad-utf8":
            lines.append(b'{"id": "' + rid.encode() + b'", "s": "\xff\xfe"}')
        elif kind == "duplicate-keys":
            lines.append(b'{"id": "' + rid.encode() + b'", "n": 1, "n": 2}')
        elif kind == "deep":
            lines.append(b'{"id": "' + rid.encode() + b'", "deep": ' + nested(draw(st.integers(240, 900))) + b"}")
        elif kind == "huge-int":
            sign = draw(st.sampled_from([b"", b"-"]))
            lines.append(b'{"id": "' + rid.encode() + b'", "n": ' + sign + b"1" + b"0" * draw(st.integers(19, 400)) + b"}")
        else:
            fields = draw(HOSTILE_FIELDS)
            lines.append(orjson.dumps({"id": rid, **fields}))
    return lines


def mixed(good: list[dict], hostile: list[bytes]) -> list[bytes]:
    """The good events with the hostile lines spread among them."""
    lines = [orjson.dumps(e) for e in good]
    step = max(1, len(lines) // (len(hostile) + 1))
    for k, line in enumerate(hostile):
        lines.insert(min(len(lines), (k + 1) * step + k), line)
    return lines


# --- what every adapter must show --------------------------------------------------------------------------

def by_id(outputs: list[dict]) -> dict[str, dict]:
    return {o["id"]: without_uuids(o) for o in outputs if isinstance(o, dict) and "id" in o}


def has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return False


def assert_good_unharmed(clean: dict[str, dict], outputs: list[dict], hostile_ids: set[str]) -> None:
    got = by_id(outputs)
    for rid, expected in clean.items():
        assert got.get(rid) == expected, f"good record {rid} changed beside hostile ones"
    for rid in hostile_ids & got.keys():
        # The hostile events hold no null, so a null in the output is a number that could not be written.
        assert not has_null(got[rid]), f"{rid}: a value turned into null: {got[rid]}"


# --- agglo run ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> dict[str, dict]:
    workdir = tmp_path_factory.mktemp("clean")
    path = write_config(workdir / "c.json", hostile_config())
    proc = run_agglo(["run", "-c", str(path)], workdir, stdin=b"\n".join(orjson.dumps(e) for e in good_events()),
                     timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr.decode()
    outputs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(outputs) == len(good_events())
    return by_id(outputs)


@settings(max_examples=12, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=hostile_lines())
def test_agglo_run_keeps_good_records(hostile, clean_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    path = write_config(workdir / "c.json", hostile_config())
    proc = run_agglo(["run", "-c", str(path)], workdir, stdin=b"\n".join(mixed(good_events(), hostile)) + b"\n",
                     timeout=TIMEOUT_S)
    stderr = proc.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    assert proc.returncode in (0, 1), stderr
    outputs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert_good_unharmed(clean_run, outputs, {f"hostile-{i}" for i in range(len(hostile))})
    errors = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    failed_lines = {e["line"] for e in errors}
    # Every error names one line, and a line either failed or gave an output: none vanished.
    assert len(outputs) + len(failed_lines) == len(good_events()) + len(hostile), (outputs, errors)
    assert (proc.returncode == 1) == bool(errors)


# --- the Lambda handler (direct invocation and SQS) ----------------------------------------------------------

@contextlib.contextmanager
def fresh_lambda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, pathlib.Path]]:
    """The Lambda handler at cold start, on fresh state in a directory of its own (one per example)."""
    from handlers import aws_lambda

    workdir = tmp_path_factory.mktemp("lambda")
    path = write_config(workdir / "c.json", hostile_config())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGGLO_CONFIG", str(path))
        mp.chdir(workdir)
        aws_lambda.reset()
        try:
            yield aws_lambda, workdir
        finally:
            aws_lambda.reset()


def parseable(hostile: list[bytes]) -> list[bytes]:
    """The hostile lines a JSON platform payload can carry (a direct invocation is already parsed JSON)."""
    out = []
    for line in hostile:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        out.append(line)
    return out


@settings(max_examples=15, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=hostile_lines())
def test_lambda_direct_keeps_good_records(hostile, clean_run, tmp_path_factory):
    events = [orjson.loads(line) for line in mixed(good_events(), parseable(hostile))]
    with fresh_lambda(tmp_path_factory) as (aws_lambda, _):
        result = aws_lambda.handler(events, SimpleNamespace(aws_request_id="req-1"))
    assert_good_unharmed(clean_run, result["outputs"], {f"hostile-{i}" for i in range(len(hostile))})
    assert len(result["outputs"]) + len({e["record"] for e in result["errors"]}) == len(events)


@settings(max_examples=15, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=hostile_lines())
def test_lambda_sqs_fails_only_hostile_records(hostile, tmp_path_factory):
    lines = mixed(good_events(), hostile)
    records = [{"messageId": f"m-{i}", "receiptHandle": "r", "body": line.decode("utf-8", errors="replace"),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "awsRegion": "us-east-1"}
               for i, line in enumerate(lines)]
    with fresh_lambda(tmp_path_factory) as (aws_lambda, workdir):
        answer = aws_lambda.handler({"Records": records}, SimpleNamespace(aws_request_id="req"))
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    good_ids = {f"m-{i}" for i, line in enumerate(lines) if line.startswith(b'{"id":"good-')}
    assert not failed & good_ids, f"good records reported failed: {failed & good_ids}"
    # Every good record's event reached the tee, exactly as in a clean run.
    teed = {json.loads(p.read_text())["id"] for p in (workdir / "tee").rglob("*") if p.is_file()}
    assert {e["id"] for e in good_events()} <= teed


# --- agglo serve (stateless) --------------------------------------------------------------------------------

@settings(max_examples=8, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=hostile_lines())
def test_serve_answers_every_hostile_request_cleanly(hostile, clean_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serve")
    server = Server(write_config(workdir / "c.json", hostile_config()), workdir, log_name="hostile").start()
    outputs: list[dict] = []
    try:
        for line in mixed(good_events(), hostile):
            status, body = request(server.port, "POST", "/binge", line, timeout=TIMEOUT_S)
            assert status != 500 and status < 503, (status, body, line[:200])
            if line.startswith(b'{"id":"good-'):
                assert status == 200, (status, body)
            if status == 200:
                outputs.extend(body["outputs"])
    finally:
        server.stop()
    assert_good_unharmed(clean_run, outputs, {f"hostile-{i}" for i in range(len(hostile))})
    assert "Traceback" not in server.logs()

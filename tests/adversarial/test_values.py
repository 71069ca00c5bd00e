"""Values agglo cannot write, numbers at the edges, sums past what state can hold, and the collector's pause.

Every bad record fails alone with one clear error, before any effect is performed for it; every other record
of its batch gives exactly what a clean run gives, in every store and adapter.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import pathlib
import sqlite3
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from builders import config, external, kv
from e2e._servers import Server, json_lines, post_json, request, run_agglo, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo_core import ApplyDeltas, DeltasApplied, EffectFailed, Record, compile_plan
from agglo_core.config import External
from agglo_core.records import INT_MAX, INT_MIN, MAX_DEPTH, unwritable
from agglo_core.state import STATE_INT_MAX, STATE_LIMIT
from handlers.connectors import default_registry
from handlers.runtime.driver import CollectorPause, Runtime

# --- hostile values ------------------------------------------------------------------------------------


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` containers, maps and lists in turn, around ``leaf``."""
    value = leaf
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def nested_text(depth: int) -> str:
    """The same as JSON text (orjson parses up to 1024 levels, but writes only 254)."""
    return '{"a":' * depth + "1" + "}" * depth


scalars = (st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=5)
           | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
bad_numbers = (st.integers(min_value=INT_MAX + 1) | st.integers(max_value=INT_MIN - 1)
               | st.sampled_from([math.inf, -math.inf, math.nan]))
bad_leaves = bad_numbers | st.sampled_from(["\ud800", "a\udfffb"])


@st.composite
def hostile_events(draw: st.DrawFn) -> tuple[dict, str]:
    """An event no output could hold, and where in it the problem is."""
    kind = draw(st.sampled_from(["deep", "leaf"]))
    if kind == "deep":
        return {"x": 1, "deep": nested(draw(st.integers(MAX_DEPTH, 1000)))}, "deep"
    path = draw(st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=4))
    value: Any = draw(bad_leaves)
    for key in reversed(path):
        value = {key: value}
    return {"x": 1, **value}, ".".join(path)


def oracle(value: Any, depth: int = 0) -> bool:
    """Whether JSON can hold ``value``, by the rules written out (no orjson)."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return INT_MIN <= value <= INT_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if depth + 1 > MAX_DEPTH:
        return False
    children = value.values() if isinstance(value, dict) else value
    return all(oracle(v, depth + 1) for v in children)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, json_values.map(lambda v: {"v": v, "bad": [1]}), hostile_events().map(lambda h: h[0]),
                 st.tuples(json_values, st.integers(0, 300)).map(lambda t: nested(t[1], t[0]))))
def test_writable_means_what_json_can_hold(value):
    problem = unwritable(value)
    assert (problem is None) == oracle(value), problem
    if problem is None:  # and what it accepts comes back as it went in: no nan or inf written as null
        assert orjson.loads(orjson.dumps(value)) == value


def test_a_problem_names_where_it_is():
    assert unwritable({"a": {"b": [1, math.inf]}}) == "a.b.1: inf is not a finite number"
    assert unwritable({"a": 2**64}) == "a: 18446744073709551616 is outside the 64-bit integer range"
    assert unwritable({"a": nested(MAX_DEPTH)}) == "a.a.0.a.0.a.…: nested deeper than 254 levels"
    assert unwritable(nested(MAX_DEPTH - 2), "t.u", 2) is None
    assert unwritable(nested(MAX_DEPTH - 1), "t.u", 2) is not None  # the target path's maps count too
    assert unwritable({"a": None, "b": "null"}) is None  # a real null is fine
    assert "bits" in unwritable(10**5000)  # too long for Python to print, still named


# --- the core and the runtime, in memory -----------------------------------------------------------------


def values_config(state: str = "mem:state", tees: str = "mem:tees", tee_type: str = "ExternalObjectStore") -> dict:
    """y = m * 10, then a running sum of x forwarded on the event, then a tee."""
    return config(
        {"transformer": {"name": "Times10", "forwardInputFields": True, "specs": [{
            "sourceField": "m", "targetField": "y",
            "transformation": {"transformationType": "TransformMapMult", "mapMultArgs": {"value": 10}}}]}},
        {"aggregator": {"name": "SumX", "stateStore": "State", "forwardState": True,
                        "aggregation": {"key": "x", "aggregationType": "AggSum"}}},
        {"tee": {"name": "Out", "outputConnectorRef": "Tees"}},
        externals=(kv("State", state), external(tee_type, "Tees", tees)))


# Events that are fine on the way in, but whose numbers the pipeline cannot make or keep.
ARITHMETIC = [
    ({"m": 1.5e308}, "Times10", "inf"),  # m * 10 overflows the float range
    ({"m": INT_MAX // 2}, "Times10", "64-bit"),  # m * 10 leaves the 64-bit range
    ({"x": 2 * STATE_LIMIT}, "SumX", "2e+125, beyond the bounds"),  # a sum beyond what state keeps
    ({"x": STATE_INT_MAX}, "SumX", "9223372036854775808, beyond the bounds"),  # the sum with the others leaves signed 64 bits
    ({"x": INT_MAX}, "SumX", f"{INT_MAX + 1}, beyond the bounds"),  # an input unsigned 64-bit integer: beyond what state keeps
]
# Integer sums are bounded while they stay integers: the last two are fine after a float (they become floats).
ALWAYS_BAD = ARITHMETIC[:3]


class Counting:
    """Every effect the runtime performs, by record id where the effect names one."""

    def __init__(self, runtime: Runtime) -> None:
        self.effects: list[Any] = []
        inner = runtime.perform

        def perform(effects, budget=None):
            self.effects.extend(effects)
            return inner(effects, budget)

        runtime.perform = perform  # type: ignore[method-assign]


def run_batch(events: list[dict], dedupe: bool) -> tuple[list, Runtime]:
    runtime = Runtime.build(compile_plan(values_config()), default_registry(), dedupe=dedupe)
    return runtime.process([Record(f"r{i}", e) for i, e in enumerate(events)]), runtime


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.lists(st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6), min_size=1, max_size=6),
       bad=st.lists(hostile_events() | st.sampled_from(ALWAYS_BAD).map(lambda a: (a[0], a[1])), min_size=1,
                    max_size=4),
       where=st.randoms(use_true_random=False), dedupe=st.booleans())
def test_bad_records_fail_alone_before_any_effect(good, bad, where, dedupe):
    from handlers.connectors import memory

    good_events = [{"x": x, "m": x, "n": i} for i, x in enumerate(good)]
    mixed = [(e, True) for e in good_events] + [(e, False) for e, _ in bad]
    where.shuffle(mixed)
    memory.reset()
    clean, _ = run_batch([e for e, ok in mixed if ok], dedupe)  # the good records alone, in the same order
    clean_state = dict(memory.store("kv", "state").data)
    memory.reset()
    runtime = Runtime.build(compile_plan(values_config()), default_registry(), dedupe=dedupe)
    seen = Counting(runtime)
    records = [Record(f"m{i}", e) for i, (e, _) in enumerate(mixed)]
    outcomes = runtime.process(records)

    by_n = {o.record.payload["n"]: o for o in clean}
    tees = memory.store("object", "tees").data
    for (event, is_good), outcome in zip(mixed, outcomes, strict=True):
        if is_good:
            want = by_n[event["n"]]
            assert outcome.errors == []
            got = [(p, {k: v for k, v in e.items() if k != "internal:tee:output"}) for p, e in outcome.outputs]
            assert got == [(p, {k: v for k, v in e.items() if k != "internal:tee:output"})
                           for p, e in want.outputs]
        else:
            assert outcome.outputs == [] and len(outcome.errors) == 1, outcome
            assert not outcome.errors[0].transient
        for _, out in outcome.outputs:
            orjson.dumps(out)  # every output can be written
    # Only the good records reached the store and the tee; the state is the clean run's.
    assert len(tees) == len(good_events)
    bad_ids = {r.record.id for r, (_, ok) in zip(outcomes, mixed, strict=True) if not ok}
    assert not any(getattr(e, "key", "").endswith(tuple(bad_ids)) for e in seen.effects)
    state = [v for k, v in memory.store("kv", "state").data.items() if not k.startswith("mark/")]
    assert state == [v for k, v in clean_state.items() if not k.startswith("mark/")]


@pytest.mark.parametrize("event, process, says", ARITHMETIC)
def test_numbers_the_pipeline_makes_are_checked_where_they_are_made(event, process, says):
    outcomes, _ = run_batch([{"x": 1}, event, {"x": 2}], dedupe=True)
    assert [len(o.outputs) for o in outcomes] == [1, 0, 1]
    [error] = outcomes[1].errors
    assert error.process == process and says in error.message, error


def test_copying_the_event_into_itself_too_deep_fails_that_record():
    copy = {"transformer": {"name": "Nest", "forwardInputFields": True, "specs": [{
        "sourceField": "", "targetField": "inner.copy", "transformation": {"transformationType": "TransformCopy"}}]}}
    plan = compile_plan(config(copy))
    shallow, deep = {"a": nested(10)}, {"a": nested(MAX_DEPTH - 2)}  # 253 levels: 255 once copied 2 deep
    outcomes = plan.run([Record("s", shallow), Record("d", deep)], 0, lambda effects: [])
    assert outcomes[0].ok and outcomes[0].outputs[0][1]["inner"]["copy"]["a"] == nested(10)
    [error] = outcomes[1].errors
    assert error.process == "Nest" and "inner.copy" in error.message and "deeper than 254" in error.message


def test_a_join_value_too_deep_to_show_in_the_completed_event_fails_before_the_join_changes():
    join = {"completer": {"name": "Join", "stateStore": "State",
                          "completion": {"joinKeys": ["a", "b"], "timeoutMs": 60_000}}}
    runtime = Runtime.build(compile_plan(config(join, externals=(kv(),))), default_registry())
    seen = Counting(runtime)
    # {"a": value}: the value sits one level down; the completed event holds it two levels down.
    outcomes = runtime.process([Record("ok", {"a": 1}), Record("deep", {"a": nested(MAX_DEPTH - 1)}),
                                Record("ok2", {"b": 1})])
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "deeper than 254" in outcomes[1].errors[0].message
    assert outcomes[2].outputs[0][1]["internal:completion:Join"] == "complete"
    assert len(seen.effects) == 2  # the two good records' joins only


@pytest.mark.parametrize("process", [
    {"spawner": {"name": "Ask", "doSync": True, "job": {"runnable": {"pathToExec": "/opt/tool"}}}},
    {"transformer": {"name": "Ask", "forwardInputFields": True, "specs": [{
        "sourceField": "q", "targetField": "answer",
        "transformation": {"transformationType": "TransformMap", "mapArgs": {"path": "/opt/tool"}}}]}},
])
def test_an_executables_answer_that_cannot_be_written_fails_that_record(process):
    plan = compile_plan(config(process))
    answers = {1: {"ok": True}, 2: nested(MAX_DEPTH), 3: [1, 2]}

    def perform(effects: list) -> list:
        return [answers[e.input["q"] if isinstance(e.input, dict) else e.input] for e in effects]

    outcomes = plan.run([Record(f"r{q}", {"q": q}) for q in (1, 2, 3)], 0, perform)
    assert [o.ok for o in outcomes] == [True, False, True]
    [error] = outcomes[1].errors
    assert error.process == "Ask" and "deeper than 254" in error.message
    for o in (outcomes[0], outcomes[2]):
        orjson.dumps(o.outputs)


def test_an_annotation_no_event_could_hold_is_a_config_problem():
    from agglo_core.errors import ConfigError

    deep_key = ".".join(["k"] * (MAX_DEPTH + 1))
    with pytest.raises(ConfigError, match="no event could hold this annotation"):
        compile_plan(config({"annotator": {"name": "Deep", "annotations": [{"fieldKey": deep_key, "value": "v"}]}}))


# --- every store: one bound, refused atomically ------------------------------------------------------------


def ext(kind: str, cs: str, name: str = "X") -> External:
    return External.model_validate({"externalType": kind, "name": name, "connectionString": cs})


STORES = ["mem", "sqlite", "redis", "dynamo", "firestore"]


def state_cs(store: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> tuple[str, Any]:
    """A connection string for a fresh store of this kind, and the registry that builds it."""
    if store == "mem":
        return "mem:state", default_registry()
    if store == "sqlite":
        return f"sqlite:{tmp_path}/state.db", default_registry()
    if store == "redis":
        return request.getfixturevalue("redis_kv_url"), default_registry()
    if store == "firestore":

        request.getfixturevalue("monkeypatch").setenv("FIRESTORE_EMULATOR_HOST",
                                                      request.getfixturevalue("firestore_emulator"))
        return f"firestore:project=agglo-test,collection=state-{uuid.uuid4().hex[:8]}", default_registry()
    request.getfixturevalue("aws")
    from handlers.connectors.aws import client

    client("dynamodb").create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    return "dynamo:tableName=state", default_registry()


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    cs, registry = state_cs(request.param, request, tmp_path)
    return SimpleNamespace(name=request.param, cs=cs, registry=registry,
                           connector=registry.build(ext("ExternalKVStore", cs)))


def change(key: str, amount: Any, mark: str = "") -> ApplyDeltas:
    deltas = {"value": ("add", amount)}
    return ApplyDeltas("s", key, deltas, marks=((mark, deltas),) if mark else ())


@pytest.mark.parametrize("marked", [False, True])
@pytest.mark.parametrize("start, more", [(0.9 * STATE_LIMIT, 0.2 * STATE_LIMIT), (-0.9 * STATE_LIMIT, -0.2 * STATE_LIMIT),
                                         (2**62, 2**62), (-(2**62), -(2**62) - 2**20)])
def test_every_store_refuses_a_sum_past_the_bound_and_keeps_the_state(store, marked, start, more):
    kv_store = store.connector
    [first] = kv_store.perform([change("k", start, "m1" if marked else "")])
    assert isinstance(first, DeltasApplied)
    refused, neighbour = kv_store.perform([change("k", more, "m2" if marked else ""),
                                           change("other", 1, "m3" if marked else "")])
    assert isinstance(refused, EffectFailed) and not refused.transient, refused
    assert "'value'" in refused.message and "beyond the bounds every state store keeps" in refused.message
    assert isinstance(neighbour, DeltasApplied)
    assert kv_store.get("k") == {"value": start} and kv_store.get("other") == {"value": 1}
    assert type(kv_store.get("k")["value"]) is type(start)  # a large whole float stays a float (DynamoDB too)
    # Within the bound it still adds, and a refused mark was never remembered: the change may come again.
    [ok] = kv_store.perform([change("k", -start / 2 if isinstance(start, float) else -(start // 2),
                                    "m2" if marked else "")])
    assert isinstance(ok, DeltasApplied) and not ok.duplicates


@pytest.mark.parametrize("dedupe", [False, True])
def test_a_sum_past_the_bound_fails_only_its_record_in_every_store(store, dedupe):
    runtime = Runtime.build(compile_plan(values_config(store.cs)), store.registry, dedupe=dedupe)
    first = runtime.process([Record("a", {"x": 0.6 * STATE_LIMIT})])
    assert first[0].ok
    # Together the batch passes the bound; only the middle record does so on its own.
    outcomes = runtime.process([Record("b", {"x": 1.0}), Record("c", {"x": 0.5 * STATE_LIMIT}),
                                Record("d", {"x": 2.0})])
    assert [o.ok for o in outcomes] == [True, False, True]
    [error] = outcomes[1].errors
    assert error.process == "SumX" and not error.transient and "bound" in error.message
    sums = [o.outputs[0][1]["internal:aggregation:P"]["x:AggSum"]["value"] for o in (outcomes[0], outcomes[2])]
    assert sums == [0.6 * STATE_LIMIT + 1.0, 0.6 * STATE_LIMIT + 1.0 + 2.0]
    key = next(k for k, _ in _scan(store.connector) if k.startswith("agg/"))
    assert store.connector.get(key) == {"value": 0.6 * STATE_LIMIT + 3.0}


def _scan(connector: Any) -> list[tuple[str, Any]]:
    return list(connector.scan(""))


# --- the collector's pause under overlapping batches -----------------------------------------------------


def test_the_collector_runs_while_batches_keep_overlapping():
    pause = CollectorPause(max_pause_s=0.05, max_batches=1_000_000)
    collections: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with pause:
                time.sleep(0.002)

    assert gc.isenabled()
    gc.callbacks.append(count)
    try:
        with pause:  # one long batch: the pause depth never reaches 0 while the others run
            threads = [threading.Thread(target=worker) for _ in range(8)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while len(collections) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not gc.isenabled()  # still paused: every collection seen was one the pause ran
            stop.set()
            for t in threads:
                t.join(timeout=10)
    finally:
        gc.callbacks.remove(count)
    assert len(collections) >= 3 and pause.forced >= 3
    assert gc.isenabled()


def test_the_collector_runs_after_a_bounded_number_of_overlapping_batches():
    now = [0.0]
    pause = CollectorPause(max_pause_s=3600, max_batches=10, clock=lambda: now[0])
    with pause:
        for _ in range(35):
            with pause:
                pass
    assert pause.forced == 3 and gc.isenabled()


# --- adapters -------------------------------------------------------------------------------------------


edge_numbers = st.sampled_from([INT_MAX, INT_MIN, STATE_INT_MAX, 1.7976931348623157e308, -1.7976931348623157e308,
                                5e-324, 0.1, -0.0])


@st.composite
def line_pairs(draw: st.DrawFn) -> list[tuple[str, str | None]]:
    """(the line in a hostile file, the same record's line in a clean file, or None for a bad line).

    Good lines carry any JSON value, numbers at the edges, and sometimes a duplicate key (the last one wins,
    so its clean twin is the line without the first one). Bad lines parse, but cannot be written or make
    numbers no output or state can hold.
    """
    pairs: list[tuple[str, str | None]] = []
    for n in range(draw(st.integers(1, 6))):
        event = {"x": n, "m": n, "n": n, "v": draw(json_values | edge_numbers)}
        text = orjson.dumps(event).decode()
        twin = text
        if draw(st.booleans()):  # an earlier duplicate of "v" that the later one replaces
            text = '{"v": ' + orjson.dumps(draw(json_values)).decode() + ", " + text[1:]
        pairs.append((text, twin))
    bad = [nested_text(draw(st.integers(MAX_DEPTH + 1, 1000))),
           '{"m": ' + str(draw(st.integers(INT_MAX // 10 + 1, INT_MAX))) + "}",  # m * 10 leaves 64 bits
           '{"m": ' + repr(draw(st.floats(1.8e307, 1.7e308))) + "}",  # m * 10 is inf
           '{"x": ' + repr(draw(st.floats(1.01e125, 1e300))) + "}"]  # past the state bound
    pairs += [(text, None) for text in draw(st.lists(st.sampled_from(bad), min_size=1, max_size=4))]
    return draw(st.permutations(pairs))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=line_pairs())
def test_agglo_run_gives_the_clean_outputs_and_one_error_per_bad_line(tmp_path_factory, pairs):
    tmp = tmp_path_factory.mktemp("run")
    cfg = write_config(tmp / "c.json", values_config())
    (tmp / "clean.jsonl").write_text("".join(twin + "\n" for _, twin in pairs if twin is not None))
    (tmp / "mixed.jsonl").write_text("".join(text + "\n" for text, _ in pairs))
    clean = run_agglo(["run", "-c", str(cfg), "-i", "clean.jsonl"], tmp, timeout=60)
    mixed = run_agglo(["run", "-c", str(cfg), "-i", "mixed.jsonl"], tmp, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert mixed.returncode == 1 and b"Traceback" not in mixed.stderr, mixed.stderr

    def without_ids(out: bytes) -> list[dict]:  # tee ids are per line number
        return [{k: v for k, v in e.items() if k != "internal:tee:output"} for e in json_lines(out)]

    assert without_ids(mixed.stdout) == without_ids(clean.stdout)
    errors = json_lines(mixed.stderr)
    assert sorted(e["line"] for e in errors) == [i + 1 for i, (_, twin) in enumerate(pairs) if twin is None]


@pytest.fixture
def lambda_stack(aws, monkeypatch, tmp_path):
    from handlers import aws_lambda

    path = tmp_path / "config.json"
    path.write_text(json.dumps(values_config()))
    monkeypatch.setenv("AGGLO_CONFIG", str(path))
    aws_lambda.reset()
    yield aws_lambda
    aws_lambda.reset()


def lambda_context() -> SimpleNamespace:
    return SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name="agglo", memory_limit_in_mb=512,
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:agglo",
                           get_remaining_time_in_millis=lambda: 30_000)


def fresh_lambda(aws_lambda: Any) -> None:
    from handlers.connectors import memory

    memory.reset()
    aws_lambda.reset()


def strip_tee_ids(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "internal:tee:output"} for e in events]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(hostile_events(), min_size=1, max_size=3), where=st.randoms(use_true_random=False))
def test_lambda_direct_invocation_answers_one_error_per_bad_event(lambda_stack, bad, where):
    # A direct invocation arrives parsed by Lambda's own JSON reader: big integers, NaN and Infinity included.
    good = [{"x": n, "m": n, "n": n} for n in range(4)]
    mixed = good + [e for e, _ in bad]
    where.shuffle(mixed)
    fresh_lambda(lambda_stack)
    clean = lambda_stack.handler([e for e in mixed if e in good], lambda_context())  # in the same order
    fresh_lambda(lambda_stack)
    answer = lambda_stack.handler(mixed, lambda_context())
    assert strip_tee_ids(answer["outputs"]) == strip_tee_ids(clean["outputs"])
    assert len(answer["errors"]) == len(bad)
    assert all(e["pipeline"] is None and "cannot be written as JSON" in e["error"] for e in answer["errors"])
    orjson.dumps(answer)  # the answer itself can always be written


def test_lambda_sqs_reports_exactly_the_messages_it_cannot_write(lambda_stack):
    from handlers.connectors import memory

    bodies = ['{"x": 1, "m": 1}', nested_text(MAX_DEPTH + 7), '{"x": 2, "m": 2}', '{"m": 1.5e308}',
              '{"x": 2e125}', '{"x": 3, "m": 3}']
    records = [{"messageId": f"m-{i}", "receiptHandle": f"rh-{i}", "body": body, "md5OfBody": "x",
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "x",
                               "ApproximateFirstReceiveTimestamp": "1"},
                "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:input"} for i, body in enumerate(bodies)]
    fresh_lambda(lambda_stack)
    response = lambda_stack.handler({"Records": records}, lambda_context())
    assert response == {"batchItemFailures": [{"itemIdentifier": f"m-{i}"} for i in (1, 3, 4)]}
    assert len(memory.store("object", "tees").data) == 3
    [total] = [v for k, v in memory.store("kv", "state").data.items() if k.startswith("agg/")]
    assert total == {"value": 6}


def apigw(body: str) -> dict:
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": {},
            "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "r", "stage": "$default"},
            "body": body, "isBase64Encoded": False}


@pytest.mark.parametrize("body, says", [
    (nested_text(MAX_DEPTH + 1), "deeper than 254"),
    ('{"m": 1.5e308}', "inf"),
    ('{"m": ' + str(INT_MAX // 2) + "}", "64-bit"),
])
def test_api_gateway_answers_422_for_an_event_it_cannot_write(lambda_stack, body, says):
    fresh_lambda(lambda_stack)
    bad = lambda_stack.handler(apigw(body), lambda_context())
    assert bad["statusCode"] == 422 and says in bad["body"], bad
    good = lambda_stack.handler(apigw('{"x": 3, "m": 3}'), lambda_context())
    assert good["statusCode"] == 200
    [output] = json.loads(good["body"])["outputs"]
    assert output["y"] == 30 and output["internal:aggregation:P"]["x:AggSum"] == {"value": 3}


def test_cloud_function_http_answers_422_for_an_event_it_cannot_write(tmp_path, monkeypatch):
    import flask

    from handlers import gcp_functions

    path = tmp_path / "config.json"
    path.write_text(json.dumps(values_config()))
    monkeypatch.setenv("AGGLO_CONFIG", str(path))
    gcp_functions.reset()
    app = flask.Flask("t")
    answers = []
    agglo_log = logging.getLogger("agglo")
    kept = list(agglo_log.handlers), agglo_log.propagate, agglo_log.level  # a cold start adds Cloud Logging
    try:
        for body in (nested_text(MAX_DEPTH + 1), '{"m": 1.5e308}', '{"x": 4}'):
            with app.test_request_context("/", method="POST", data=body, content_type="application/json"):
                answers.append(gcp_functions.app().http(flask.request))
    finally:
        gcp_functions.reset()
        agglo_log.handlers[:], agglo_log.propagate, agglo_log.level = kept
    statuses = [a[1] if isinstance(a, tuple) else a.status_code for a in answers]
    assert statuses == [422, 422, 200]
    assert b"Traceback" not in b"".join(orjson.dumps(a[0]) if isinstance(a, tuple) else a.get_data()
                                        for a in answers)


@pytest.mark.parametrize("durable", [False, True])
def test_serve_and_the_durable_queue_answer_one_error_per_bad_event(tmp_path, durable):
    cfg = write_config(tmp_path / "c.json", values_config(f"sqlite:{tmp_path}/state.db", str(tmp_path / "tee"),
                                                          "ExternalLocalFile"))
    queue = tmp_path / "queue"
    server = Server(cfg, tmp_path, *(["--durable", str(queue), "--workers", "1"] if durable else []),
                    log_name="values").start()
    try:
        bad = [request(server.port, "POST", "/binge", nested_text(MAX_DEPTH + 1 + k).encode()) for k in range(3)]
        bad.append(request(server.port, "POST", "/binge", b'{"m": 1.5e308}'))
        good = [post_json(server.port, {"x": n, "n": n}) for n in range(3)]
        if durable:
            # Too deep to queue: refused at once; the overflow is found when a worker runs it.
            assert [status for status, _ in bad + good] == [422] * 3 + [202] * 4
            assert all("nested deeper than 254" in body["errors"][0]["error"] for _, body in bad[:3])
            deadline = time.monotonic() + 30
            while (counts := request(server.port, "GET", "/maintenance/queue")[1])["unprocessed"] or \
                    counts["inflight"]:
                assert time.monotonic() < deadline, counts
                time.sleep(0.1)
            assert counts["failed"] == 1
        else:
            assert [status for status, _ in bad] == [422] * 4, bad
            assert [status for status, _ in good] == [200] * 3
            sums = [body["outputs"][0]["internal:aggregation:P"]["x:AggSum"]["value"] for _, body in good]
            assert sums == [0, 1, 3]
        assert request(server.port, "GET", "/healthz")[0] == 200
    finally:
        server.stop()
    assert b"Traceback" not in server.stderr_path.read_bytes()
    written = sorted(json.loads(p.read_text())["n"] for p in (tmp_path / "tee").glob("*.json"))
    assert written == [0, 1, 2]  # only the good records reached the tee
    if durable:
        conn = sqlite3.connect(queue / "queue.db")
        try:
            errors = [orjson.loads(e) for (e,) in conn.execute("SELECT errors FROM failed").fetchall()]
        finally:
            conn.close()
        assert [len(e) for e in errors] == [1]

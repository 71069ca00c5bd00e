"""Fault injection around the real connectors, the platforms' ways of redelivering, and the comparison.

A scenario runs one batch through one adapter on one KV backend while a fault
fires at the k-th effect the runtime hands to a connector:

* ``before``: effect k is not performed (the effects before it were), and the
  connector call fails: the runtime sees its effects fail;
* ``after``: effect k was performed (committed) and then the call fails: the
  write succeeded, but the caller saw an error (the classic source of duplicates);
* ``crash``: effect k was performed and then the process dies (a ``BaseException``
  that nothing in agglo catches): the platform redelivers the whole batch.

Two more modes plant the bugs the comparison must catch (``test_the_comparison``):
``twice`` performs effect k a second time, ``skip`` answers it as done without
performing it.

The platform then redelivers as it does (only ``batchItemFailures``, from the
lowest failed sequence number, one message, the in-flight queue rows, the whole
file) until every record went through, and the final state, outputs and
completions are compared with a run where nothing failed.

The wrapper sits around the connector objects the runtime calls, its executable
runner and its ticker client (the extended config, see ``_world``); production
code has no test hooks.
"""

from __future__ import annotations

import base64
import io
import os
import pathlib
import shutil
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from _world import (
    ENV_CALL,
    ENV_EXEC_LOG,
    ENV_OBJECTS,
    EXECUTABLES,
    Call,
    World,
    chain_findings,
    chain_of,
    exec_findings,
    exec_runs,
    extended_definitions,
)
from builders import config, external, kv

from agglo_core import EffectFailed, compile_plan
from agglo_core.effects import Put
from handlers.connectors import Registry
from handlers.connectors.ticker import TickerClient
from handlers.runtime.driver import Runtime
from handlers.runtime.execs import ExecRunner

NOW_S = 1_700_000_000.0
TIMEOUT_MS = 3_600_000
MODES = ("before", "after", "crash")
PLANTED = ("twice", "skip")
ENV_STATE, ENV_FILES = "AGGLO_FAULTS_STATE", "AGGLO_FAULTS_FILES"


class InjectedError(Exception):
    """A connector call failed."""


class Crash(BaseException):
    """The process died here (kill -9, a Lambda timeout): nothing in agglo may catch it."""


# --- the fault -----------------------------------------------------------------------------------

@dataclass
class Fault:
    k: int = 0  # 0: never fire (the once-only run, counting effects)
    mode: str = "after"
    seen: int = 0
    fired: bool = False
    kinds: list[str] = field(default_factory=list)  # "<effect> <target>" of every effect, in order


class Faulty:
    """Wraps the connector the runtime calls; fires ``fault`` at the k-th effect across all connectors."""

    def __init__(self, inner: Any, fault: Fault) -> None:
        self.inner, self.fault = inner, fault

    def perform(self, effects: list[Any]) -> list[Any]:
        f = self.fault
        start = f.seen
        f.seen += len(effects)
        f.kinds.extend(f"{type(e).__name__} {getattr(e, 'target', None) or getattr(e, 'store', '')}" for e in effects)
        if f.fired or not (start < f.k <= f.seen):
            return self.inner.perform(effects)
        j = f.k - start
        if f.mode in PLANTED:
            f.fired = True
            if f.mode == "twice":
                return self._perform(effects[:j])[:j - 1] + self._perform(effects[j - 1:])
            return [*self._perform(effects[:j - 1]), None, *self._perform(effects[j:])]
        done = effects[:j] if f.mode != "before" else effects[:j - 1]
        if done:
            answers = self.inner.perform(done)
            assert not any(isinstance(a, EffectFailed) for a in answers), answers
        f.fired = True
        if f.mode == "crash":
            raise Crash(f"killed after effect {f.k}")
        raise InjectedError(f"injected {f.mode} effect {f.k}")

    def _perform(self, effects: list[Any]) -> list[Any]:
        return self.inner.perform(effects) if effects else []


class Sink:
    """``rec:NAME`` (an ``ExternalPubSub``): every message published, as a queue or stream keeps them."""

    sinks: dict[str, Sink] = {}

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def perform(self, effects: list[Any]) -> list[Any]:
        assert all(isinstance(e, Put) for e in effects)
        self.messages.extend((e.key, orjson.loads(orjson.dumps(e.body))) for e in effects)
        return [None] * len(effects)

    @classmethod
    def register(cls, registry: Registry) -> Registry:
        registry.register("ExternalPubSub", "rec", lambda ext: cls.sinks.setdefault(
            ext.connection_string.split(":", 1)[1], cls()))
        return registry


# --- the pipeline and the batch ------------------------------------------------------------------

def fault_config(retries: int = 0, world: World | None = None) -> dict:
    """Sum, count and max per group, a join on a / b, and tees to the state store, files and a queue.

    With a ``world``: a spawner and an exec transform first, entwine last (``_world``).
    """
    def agg(name: str, kind: str, groups: tuple[str, ...] = ()) -> dict:
        return {"aggregator": {"name": name, "stateStore": "State", "forwardState": True,
                               "aggregation": {"key": "n", "aggregationType": kind, "groupByKeys": list(groups)}}}

    first: tuple[dict, ...] = ()
    last: tuple[dict, ...] = ()
    more: tuple[dict, ...] = ()
    if world is not None:
        added, more = extended_definitions(world)
        first, last = added[:2], added[2:]
    return config(
        *first, agg("SumN", "AggSum", ("g",)), agg("CountN", "AggCount"), agg("MaxN", "AggMax", ("g",)),
        {"completer": {"name": "Join", "stateStore": "State",
                       "completion": {"joinKeys": ["a", "b"], "timeoutMs": TIMEOUT_MS}}},
        {"tee": {"name": "ToKV", "outputConnectorRef": "State"}},
        {"tee": {"name": "ToFiles", "outputConnectorRef": "Files"}},
        {"tee": {"name": "ToQueue", "outputConnectorRef": "Queue"}}, *last,
        externals=(kv("State", f"${{{ENV_STATE}}}"), external("ExternalLocalFile", "Files", f"${{{ENV_FILES}}}"),
                   external("ExternalPubSub", "Queue", "rec:out"), *more), retries=retries)


BATCH = [
    {"n": 3, "g": "x", "a": "j1"},
    {"n": 5, "g": "y", "b": "j2"},
    {"n": 2, "g": "x", "b": "j1"},  # completes j1
    {"n": 7, "g": "y", "a": "j2"},  # completes j2
    {"n": 1, "g": "x"},
    {"n": 4, "g": "y", "a": "j2"},  # a new j2
    {"n": 6, "g": "x", "a": "j3"},  # stays open
    {"n": 2, "g": "y", "b": "j2"},  # completes the new j2
]
SMALL_BATCH = [{"n": 3, "g": "x", "a": "j1"}, {"n": 5, "g": "y", "a": "j2"}, {"n": 2, "g": "x", "b": "j1"}]


def numbered(events: list[dict]) -> list[dict]:
    """The events with their position as ``i``: how the extended config's executables name the record."""
    return [{**e, "i": i} for i, e in enumerate(events)]


def check_reference(result: Result, events: list[dict], completions: int, open_joins: dict[str, list[str]]) -> None:
    """The once-only run itself, against what one delivery must give worked out by hand."""
    sums: dict[str, int] = {}
    tops: dict[str, int] = {}
    for e in events:
        sums[e["g"]] = sums.get(e["g"], 0) + e["n"]
        tops[e["g"]] = max(tops.get(e["g"], e["n"]), e["n"])
    state = result.state

    def values(process: str) -> dict[str, Any]:
        return {k.rsplit("/", 1)[1]: v["value"] for k, v in state.items() if k.startswith("agg/") and f"/{process}/" in k}

    assert values("SumN") == {f'n:AggSum["{g}"]': n for g, n in sums.items()}, state
    assert values("CountN") == {"n:AggCount": len(events)}, state
    assert values("MaxN") == {f'n:AggMax["{g}"]': n for g, n in tops.items()}, state
    joins = {k.rsplit("/", 1)[1]: v["join"] for k, v in state.items() if k.startswith("join/")}
    assert joins == open_joins, joins
    assert result.completions() == completions
    assert len(result.files) == len(events) and len(result.messages) == len(events)
    assert sum(1 for k in state if not k.startswith(("agg/", "join/", "entwine/"))) == len(events)  # the KV tee
    if result.chain is not None:
        assert sorted(r[1:] for r in result.exec_runs) == sorted((w, i) for w in EXECUTABLES
                                                                  for i in range(len(events))), result.exec_runs
        assert result.chain["broken"] is None and len(result.chain["messages"]) == len(events), result.chain
        assert all(b.get("tenfold") == 10 * b["i"] and b["internal:spawn:output"] == [{"Spawn": {"spawned": b["i"]}}]
                   for b in result.files.values()), result.files


# --- backends ------------------------------------------------------------------------------------

@dataclass
class Backend:
    """A KV backend: a fresh empty store's connection string per scenario, and a dump of what it holds."""

    name: str
    registry: Callable[[], Registry]
    fresh: Callable[[pathlib.Path], str]
    dump: Callable[[Any], dict[str, Any]]  # the built connector -> {key: value} without dedupe marks


def _join(members: Any, deadline: Any) -> dict:
    return {"join": sorted(members), "deadline": int(deadline)}


def _plain(key: str, value: Any) -> Any:
    if key.startswith("join/"):
        return _join(value["members"], value["deadline"])
    return orjson.loads(orjson.dumps(value))


def dump_memory(store: Any) -> dict[str, Any]:
    return {k: _plain(k, v) for k, v in store.data.items() if not k.startswith("mark/")}


def dump_sqlite(store: Any) -> dict[str, Any]:
    rows = store._connect().execute("SELECT key, value FROM kv WHERE key NOT LIKE 'mark/%'").fetchall()
    return {k: _plain(k, orjson.loads(v)) for k, v in rows}


def dump_redis(store: Any) -> dict[str, Any]:
    from handlers.connectors.redis_kv import number_from_redis as _number

    out: dict[str, Any] = {}
    client = store.client
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        if "|mark|" in key:
            continue
        if client.type(raw) == b"hash":
            fields = {k.decode(): v for k, v in client.hgetall(raw).items()}
            if key.startswith("join/"):
                out[key] = _join([f[2:] for f in fields if f.startswith("m:")], fields["deadline"])
            else:
                out[key] = {f: _number(v) for f, v in fields.items()}
        else:
            out[key] = orjson.loads(client.get(raw))
    return out


def dump_dynamo(store: Any) -> dict[str, Any]:
    from handlers.connectors.dynamo import fields_from_item as _fields

    out: dict[str, Any] = {}
    for page in store._client.get_paginator("scan").paginate(TableName=store.table, ConsistentRead=True):
        for item in page["Items"]:
            key = item["pk"]["S"]
            if key.startswith("mark/"):
                continue
            if "json" in item:
                out[key] = orjson.loads(item["json"]["S"])
            elif "members" in item:
                out[key] = _join(item["members"]["SS"], item["deadline"]["N"])
            else:
                out[key] = _fields(item)
    return out


def dump_firestore(store: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for doc in store.client.collection(store.collection).stream():
        key = urllib.parse.unquote(doc.id)
        if key.startswith("mark/"):
            continue
        data = doc.to_dict()
        out[key] = orjson.loads(data["json"]) if "json" in data else _plain(key, data)
    return out


# --- time ---------------------------------------------------------------------------------------

@dataclass
class MovingClock:
    """Time that moves ``step_s`` before every delivery (every ``Runtime.process`` call), from ``NOW_S``.

    The runtime, the ticker and the key-value stores' dedupe marks all read it (``connector_time``), so a
    redelivery comes later than the delivery that failed: join deadlines pass and marks expire in between.
    """

    step_s: float
    now_s: float = NOW_S

    def now(self) -> float:
        return self.now_s

    def advance(self) -> None:
        self.now_s += self.step_s

    def connector_time(self) -> SimpleNamespace:
        """Stands in for the ``time`` module of the connectors that stamp and expire marks."""
        return SimpleNamespace(time=self.now, monotonic=time.monotonic, sleep=time.sleep)


# --- the platforms' ways of delivering -----------------------------------------------------------

class Delivery:
    """Delivers ``events`` through an adapter until every record went through; counts invocations and
    keeps every ``Runtime.process`` call (which records it delivered, which it settled)."""

    def __init__(self, runtime: Runtime, events: list[dict], tmp: pathlib.Path,
                 clock: MovingClock | None = None) -> None:
        self.runtime, self.events, self.tmp = runtime, events, tmp
        self.invocations = 0
        self.calls: list[Call] = []
        process = runtime.process

        def recorded(records: Any, *args: Any, **kw: Any) -> Any:
            call = Call([r.payload.get("i", -1) if isinstance(r.payload, dict) else -1 for r in records])
            os.environ[ENV_CALL] = str(len(self.calls))  # the executables log the call they ran in
            if clock:
                clock.advance()
            self.calls.append(call)
            outcomes = process(records, *args, **kw)
            call.settled = {i for i, o in zip(call.records, outcomes, strict=True) if o.ok}
            return outcomes

        runtime.process = recorded  # type: ignore[method-assign]

    def invoked(self) -> None:
        self.invocations += 1
        assert self.invocations <= 4 * len(self.events) + 10, "redelivery does not converge"


def lambda_context() -> SimpleNamespace:
    return SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name="agglo", memory_limit_in_mb=512,
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:agglo",
                           get_remaining_time_in_millis=lambda: 30_000)


def deliver_sqs(d: Delivery) -> None:
    """Lambda and SQS: only the ``batchItemFailures`` come back; after a crash the whole batch does."""
    from handlers import aws_lambda

    app = aws_lambda.LambdaApp(d.runtime)
    pending = list(range(len(d.events)))
    while pending:
        d.invoked()
        event = {"Records": [{
            "messageId": f"m-{i}", "receiptHandle": f"rh-{i}", "body": orjson.dumps(d.events[i]).decode(),
            "md5OfBody": "x", "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"},
            "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:input"} for i in pending]}
        try:
            response = app(event, lambda_context())
        except Crash:
            continue
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        pending = [i for i in pending if f"m-{i}" in failed]


def deliver_kinesis(d: Delivery) -> None:
    """Lambda and Kinesis: the batch again from the lowest failed sequence number; after a crash, all of it."""
    from handlers import aws_lambda

    app = aws_lambda.LambdaApp(d.runtime)
    start = 0
    while start < len(d.events):
        d.invoked()
        event = {"Records": [{
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": f"4959{i:020d}",
                        "data": base64.b64encode(orjson.dumps(d.events[i])).decode(),
                        "approximateArrivalTimestamp": 1.5},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:4959{i:020d}",
            "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/in"} for i in range(start, len(d.events))]}
        try:
            response = app(event, lambda_context())
        except Crash:
            continue
        failed = [int(f["itemIdentifier"][4:]) for f in response["batchItemFailures"]]
        start = min(failed) if failed else len(d.events)


def deliver_pubsub(d: Delivery) -> None:
    """Cloud Functions and Pub/Sub: one message per invocation; an error (or a crash) redelivers it."""
    from cloudevents.http import CloudEvent

    from handlers import gcp_functions
    from handlers.sources.gcp import PUBSUB_PUBLISHED

    app = gcp_functions.CloudFunctionApp(d.runtime, None)
    for i, e in enumerate(d.events):
        message = {"data": base64.b64encode(orjson.dumps(e)).decode(), "messageId": f"ps-{i}",
                   "publishTime": "2024-01-01T00:00:00Z", "attributes": {}}
        while True:
            d.invoked()
            event = CloudEvent({"type": PUBSUB_PUBLISHED, "source": "//pubsub.googleapis.com/t", "id": f"ps-{i}"},
                               {"message": message, "subscription": "projects/p/subscriptions/s"})
            try:
                app.cloud_event(event)
                break
            except (gcp_functions.TransientFailure, Crash):
                continue  # not acknowledged: Pub/Sub delivers it again


def deliver_queue(d: Delivery) -> None:
    """The durable daemon: failed records are tried again; after a crash a restart replays what was in flight."""
    from handlers.daemons.queue import DurableQueue

    directory = str(d.tmp / "queue")
    queue = DurableQueue(directory, backoff_s=0)
    for i, e in enumerate(d.events):
        queue.put(f"http:evt-{i}", orjson.dumps(e))
    try:
        while queue.counts()["unprocessed"]:
            d.invoked()
            try:
                queue.work_once(d.runtime)
            except Crash:
                queue.close()
                queue = DurableQueue(directory, backoff_s=0)  # the restarted daemon
        assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 0}
    finally:
        queue.close()


def deliver_run(d: Delivery) -> None:
    """``agglo run --dedupe``: a run that failed (or died) is run again on the whole file."""
    from handlers import local

    data = b"\n".join(orjson.dumps(e) for e in d.events) + b"\n"
    while True:
        d.invoked()
        try:
            if local.run(d.runtime, io.BytesIO(data), "events.jsonl", io.BytesIO(), io.StringIO()) == 0:
                return
        except Crash:
            continue


ADAPTERS: dict[str, Callable[[Delivery], None]] = {
    "agglo run --dedupe": deliver_run, "durable queue": deliver_queue, "Lambda SQS": deliver_sqs,
    "Lambda Kinesis": deliver_kinesis, "Cloud Functions Pub/Sub": deliver_pubsub}


# --- a scenario and its comparison ---------------------------------------------------------------

@dataclass
class Result:
    state: dict[str, Any]
    files: dict[str, Any]
    messages: list[tuple[str, dict]]
    effects: int
    invocations: int
    fired: bool
    kinds: list[str]
    calls: list[Call] = field(default_factory=list)
    exec_runs: list[tuple[int, str, int]] = field(default_factory=list)
    chain: dict[str, Any] | None = None  # the entwine substream (``_world.chain_of``)

    def completions(self) -> int:
        return sum(1 for body in self.files.values() if body.get("internal:completion:Join") == "complete")


@dataclass(frozen=True)
class Setup:
    """What a sweep runs besides the batch: the plan, with the world its executables and entwine need, and
    a moving clock (or the fixed ``NOW_S``); ``label`` names it in the tally."""

    plan: Any = None
    world: World | None = None
    clock: MovingClock | None = None
    label: str = ""


def run_scenario(backend: Backend, adapter: str, events: list[dict], tmp: pathlib.Path, fault: Fault,
                 setup: Setup) -> Result:
    from handlers.connectors import memory

    plan, world, clock = setup.plan, setup.world, setup.clock

    tmp.mkdir(parents=True)
    memory.reset()
    Sink.sinks.clear()
    env = {ENV_STATE: backend.fresh(tmp), ENV_FILES: str(tmp / "files"), ENV_OBJECTS: str(tmp / "objects"),
           ENV_EXEC_LOG: str(tmp / "execs.log"), ENV_CALL: "-1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        registry = Sink.register(backend.registry())
        execs = ExecRunner(world.executables.allowed) if world else None
        if clock:
            clock.now_s = NOW_S
        runtime = Runtime.build(plan or PLAN, registry, execs, clock=clock.now if clock else lambda: NOW_S,
                                sleep=lambda s: None)
        state = runtime.connectors["State"]
        runtime.connectors = {name: Faulty(c, fault) for name, c in runtime.connectors.items()}
        runtime.execs = Faulty(runtime.execs, fault)  # type: ignore[assignment]
        runtime.tickers = Faulty(TickerClient(), fault)
        if world:
            world.ticker.fresh(tmp, (lambda: int(clock.now() * 1000)) if clock else None)
        delivery = Delivery(runtime, events, tmp, clock)
        ADAPTERS[adapter](delivery)
    files = {p.name: orjson.loads(p.read_bytes()) for p in (tmp / "files").glob("*.json")}
    chain = None
    if world:
        chain = chain_of(state, runtime.connectors["Objects"].inner, world.key, world.ticker.app.signer.public_pem)
    return Result(backend.dump(state), files, list(Sink.sinks["out"].messages), fault.seen, delivery.invocations,
                  fault.fired, fault.kinds, delivery.calls, exec_runs(tmp / "execs.log"), chain)


PLAN = compile_plan(fault_config())
RETRYING_PLAN = compile_plan(fault_config(retries=1))  # every process retries a failed effect once


@dataclass
class Findings:
    """What differs from the once-only run: lost, duplicated (double-counted) and otherwise different results."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    resent: int = 0  # messages sent again under the same id and with the same body (consumers drop them)
    reruns: int = 0  # executables run again for a record whose earlier delivery failed

    def __bool__(self) -> bool:
        return bool(self.lost or self.duplicated or self.different)


def _compare_map(what: str, want: dict, got: dict, f: Findings) -> None:
    for key in want.keys() - got.keys():
        f.lost.append(f"{what} {key} missing")
    for key in got.keys() - want.keys():
        f.duplicated.append(f"{what} {key} extra: {got[key]}")
    for key in want.keys() & got.keys():
        if want[key] == got[key]:
            continue
        counted = key.startswith("agg/") and ("AggSum" in key or "AggCount" in key)
        if counted and got[key]["value"] > want[key]["value"]:
            f.duplicated.append(f"{what} {key}: {got[key]} instead of {want[key]}")
        elif counted:
            f.lost.append(f"{what} {key}: {got[key]} instead of {want[key]}")
        else:
            f.different.append(f"{what} {key}: {got[key]} instead of {want[key]}")


def compare(want: Result, got: Result) -> Findings:
    f = Findings()
    _compare_map("state", _kv(want.state), _kv(got.state), f)
    _compare_map("file", want.files, got.files, f)
    _compare_messages(want.messages, got.messages, f)
    if got.completions() < want.completions():
        f.lost.append(f"{got.completions()} completions instead of {want.completions()}")
    _compare_world(want, got, f)
    return f


def _compare_messages(want: list[tuple[str, dict]], got: list[tuple[str, dict]], f: Findings) -> None:
    sent = dict(want)
    assert len(sent) == len(want), "the once-only run sent a message twice"
    seen: set[str] = set()
    for key, body in got:
        if key not in sent:
            f.duplicated.append(f"message {key} extra")
        elif body != sent[key]:
            f.different.append(f"message {key} sent again with another body: {body}")
        elif key in seen:
            f.resent += 1
        seen.add(key)
    f.lost.extend(f"message {key} never sent" for key in sent.keys() - seen)


def _compare_world(want: Result, got: Result, f: Findings) -> None:
    """More completions than once, the executables' runs and the substream."""
    if got.completions() > want.completions():
        f.duplicated.append(f"{got.completions()} completions instead of {want.completions()}")
    if want.chain is not None and got.chain is not None:
        lost, duplicated, f.reruns = exec_findings(got.calls, got.exec_runs, len(want.files))
        f.lost += lost
        f.duplicated += duplicated
        lost, duplicated, different = chain_findings(want.chain, got.chain)
        f.lost += lost
        f.duplicated += duplicated
        f.different += different


def compare_moving(want: Result, got: Result) -> Findings:
    """``compare`` under a moving clock. A record redelivered after a join's deadline may meet a join that
    timed out where the once-only run completed it: only the completer's fields may differ, and only by
    closing fewer joins. No record's answer may change between its deliveries: what was sent for it once
    (after its join add was remembered with its mark) is what every later delivery sends."""
    f = Findings()
    _compare_map("state", _timeless(_kv(want.state)), _timeless(_kv(got.state)), f)
    _compare_map("file", _timeless(want.files), _timeless(got.files), f)
    first: dict[str, dict] = {}
    for key, body in got.messages:
        if first.setdefault(key, body) != body:
            f.different.append(f"message {key} answered differently on redelivery: {body} after {first[key]}")
    _compare_messages([(k, _without_completion(b)) for k, b in want.messages],
                      [(k, _without_completion(b)) for k, b in got.messages], f)
    _compare_world(want, got, f)
    return f


def _without_completion(body: dict) -> dict:
    return {k: v for k, v in body.items() if not k.startswith("internal:completion:")}


def _timeless(values: dict[str, Any]) -> dict[str, Any]:
    """Join state and the completer's fields dropped: under a moving clock they depend on when a record came."""
    return {k: _without_completion(v) if isinstance(v, dict) else v for k, v in values.items()
            if not k.startswith("join/")}


def _kv(state: dict[str, Any]) -> dict[str, Any]:
    """The state without entwine's substream, which ``chain_findings`` compares (its order may differ)."""
    return {k: v for k, v in state.items() if not k.startswith("entwine/")}


# --- the tally the report quotes -----------------------------------------------------------------

@dataclass
class Tally:
    scenarios: int = 0
    faults: int = 0
    records: int = 0  # records delivered, over all scenarios
    invocations: int = 0
    lost: int = 0
    duplicated: int = 0
    different: int = 0
    resent: int = 0
    reruns: int = 0
    timedout: int = 0  # scenarios in which a join timed out (a moving clock's deadlines passed)

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


TALLY: dict[tuple[str, str], Tally] = {}


def some_effects(kinds: list[str]) -> list[int]:
    """For slow backends: the first and last effect of each kind (and target), not every one."""
    firsts = {kind: kinds.index(kind) + 1 for kind in kinds}
    lasts = {kind: len(kinds) - kinds[::-1].index(kind) for kind in kinds}
    return sorted(set(firsts.values()) | set(lasts.values()))


def scratch(tmp: pathlib.Path) -> pathlib.Path:
    """Scenario directories in memory where the machine has /dev/shm: thousands of small files and fsyncs."""
    shm = pathlib.Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return pathlib.Path(tempfile.mkdtemp(prefix="agglo-faults-", dir=shm))
    return tmp


def sweep(backend: Backend, adapter: str, events: list[dict], tmp: pathlib.Path, completions: int,
          open_joins: dict[str, list[str]], modes: tuple[str, ...] = MODES, every_effect: bool = True,
          plan: Any = None, world: World | None = None, clock: MovingClock | None = None, label: str = "") -> Tally:
    """A fault at every effect k (or some, see ``some_effects``) in every mode; every scenario against the
    once-only run (``compare``, or ``compare_moving`` under a moving clock). ``plan`` and ``world`` go
    together for the extended config; ``label`` names the config in the tally."""
    root = scratch(tmp)
    setup = Setup(plan, world, clock, label or (" + retries" if plan is RETRYING_PLAN else ""))
    try:
        return _sweep(backend, adapter, events, root, completions, open_joins, modes, every_effect, setup)
    finally:
        if root != tmp:
            shutil.rmtree(root, ignore_errors=True)


def _sweep(backend: Backend, adapter: str, events: list[dict], tmp: pathlib.Path, completions: int,
           open_joins: dict[str, list[str]], modes: tuple[str, ...], every_effect: bool, setup: Setup) -> Tally:
    plan = setup.plan
    reference = run_scenario(backend, adapter, events, tmp / "once", Fault(), setup)
    check_reference(reference, events, completions, open_joins)
    tally = TALLY.setdefault((backend.name, adapter + setup.label), Tally())
    failures = []
    ks = range(1, reference.effects + 1) if every_effect else some_effects(reference.kinds)
    for k in ks:
        for mode in modes:
            got = run_scenario(backend, adapter, events, tmp / f"{mode}-{k}", Fault(k, mode), setup)
            if plan is RETRYING_PLAN and mode != "crash":
                assert got.invocations == 1, f"effect {k} ({mode}): the runtime's retry did not absorb it"
            assert got.fired, f"the fault at effect {k} never fired"
            found = (compare_moving if setup.clock else compare)(reference, got)
            tally.add(Tally(scenarios=1, faults=1, records=len(events), invocations=got.invocations,
                            lost=len(found.lost), duplicated=len(found.duplicated), different=len(found.different),
                            resent=found.resent, reruns=found.reruns,
                            timedout=int(any(b.get("internal:completion:Join") == "timedout"
                                             for b in got.files.values()))))
            if found:
                failures.append(f"fault {mode} effect {k}/{reference.effects}: lost {found.lost[:3]}, "
                                f"duplicated {found.duplicated[:3]}, different {found.different[:3]}")
    assert not failures, f"{len(failures)} scenario(s) differ from the once-only run:\n" + "\n".join(failures[:5])
    return tally


COLUMNS = ("faults", "records", "invocations", "lost", "duplicated", "different", "resent", "reruns")


def summary_lines() -> list[str]:
    """The tally as a table, one row per backend and adapter, and one closing line the README quotes."""
    if not TALLY:
        return []
    rows = [("backend", "adapter", *COLUMNS[:-2], "resent (same id)", "exec reruns")]
    total = Tally()
    for (backend, adapter), t in sorted(TALLY.items()):
        rows.append((backend, adapter, *(str(getattr(t, c)) for c in COLUMNS)))
        total.add(t)
    rows.append(("all", "", *(str(getattr(total, c)) for c in COLUMNS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"fault injection: {total.faults} faults injected over {total.records} records, {total.lost} lost "
                 f"and {total.duplicated} duplicated results found ({total.different} otherwise different)")
    return lines

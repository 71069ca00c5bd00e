"""Property tests of the compiled plan: determinism, totality, effect failures, no mutation, batching.

Every run answers effects with ``tests.fakes.MemoryWorld``. Outcomes and effects
are compared through ``repr`` so that types, key order and float values (even
``nan``) must match exactly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from builders import BINGE, lit, num, var
from fakes import MemoryWorld
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agglo_core import (
    ApplyDeltas,
    Effect,
    Exec,
    JoinAdd,
    Outcome,
    Put,
    Record,
    RecordError,
    compile_plan,
)
from agglo_core.ids import IdMaker

PARTITION = "0b3c8a4e-5f61-4d2a-9e7b-1c2d3e4f5a6b"

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- config builders ------------------------------------------------------------------------------------


def comparator(lhs: dict, op: str, rhs: dict) -> dict:
    """An Expression."""
    return {"comparator": {"lhs": lhs, "rhs": rhs, "op": op}}


def logical(lhs: dict, op: str, rhs: dict) -> dict:
    return {"logical": {"lhs": {"expression": lhs}, "rhs": {"expression": rhs}, "op": op}}


def when(expression: dict) -> dict:
    """A Condition from an Expression."""
    return {"expression": expression}


def exists(*ops: tuple[str, str]) -> dict:
    return {"exists": {"ops": [{"key": k, "op": o} for k, o in ops]}}


def spec(source: str, target: str, ttype: str, condition: dict | None = None, **args: Any) -> dict:
    t: dict[str, Any] = {"transformationType": ttype, **args}
    if condition is not None:
        t["condition"] = condition
    return {"sourceField": source, "targetField": target, "transformation": t}


def aggregator(name: str, key: str, kind: str, groups: list[str], forward: bool = True,
               condition: dict | None = None) -> dict:
    body: dict[str, Any] = {"name": name, "stateStore": "kv", "forwardState": forward,
                            "aggregation": {"key": key, "aggregationType": kind, "groupByKeys": groups}}
    if condition is not None:
        body["condition"] = condition
    return {"aggregator": body}


def completer(name: str, keys: list[str], timeout: int = 60_000, condition: dict | None = None) -> dict:
    body: dict[str, Any] = {"name": name, "stateStore": "kv",
                            "completion": {"joinKeys": keys, "timeoutMs": timeout}}
    if condition is not None:
        body["condition"] = condition
    return {"completer": body}


def config(pipelines: dict[str, list[str]], processes: list[dict]) -> dict:
    return {
        "partitionUuid": PARTITION,
        "pipelines": [{"name": n, "processes": [{"name": p} for p in procs]} for n, procs in pipelines.items()],
        "processDefinitions": processes,
        "externalSystems": [
            {"name": "kv", "externalType": "ExternalKVStore", "connectionString": "mem:state"},
            {"name": "hook", "externalType": "ExternalHttp",
             "connectionString": "https://user:pw@example.com/hook?token=abc"},
            {"name": "bucket", "externalType": "ExternalObjectStore",
             "connectionString": "s3:bucket=b,secretKey=zzz"},
            {"name": "topic", "externalType": "ExternalPubSub", "connectionString": "pubsub:topic=t"},
        ],
    }


# Every process type but entwine, with conditions of every shape.
KITCHEN = config(
    {
        "enrich": ["annotate", "drop-secret", "shape", "tee-http"],
        "aggregates": ["agg-sum", "agg-max", "agg-min", "agg-avg", "agg-count", "agg-hist", "tee-bucket"],
        "joins": ["join", "only-done", "spawn-sync", "spawn-async"],
        "execs": ["keep-some", "exec-shape", "tee-exec"],
    },
    [
        {"annotator": {"name": "annotate", "annotations": [
            {"fieldKey": "seen", "value": "yes", "condition": exists(("someNum", "Exists"))},
            {"fieldKey": "stamp", "value": "derived:currentTime"},
            {"fieldKey": "meta.big", "value": "big", "condition": when(logical(
                comparator({"expression": {"binary": {"lhs": var("someNum"), "rhs": num(2), "op": "Multiply"}}},
                           "GreaterThan", num(5)),
                "LogicalAnd",
                comparator(var("author"), "RegexMatch", lit("^[a-m]"))))},
            {"fieldKey": "flags.vocab", "value": "buzz",
             "condition": when(comparator(var("someVocab"), "RegexMatch", lit("^buzz/")))},
            {"fieldKey": "neg", "value": "negative", "condition": when(comparator(
                {"expression": {"unary": {"op": "Negation", "rhs": var("someNum")}}}, "GreaterThan", num(0)))},
            {"fieldKey": "foobar", "value": "found",
             "condition": when(comparator(var("someDict.someFixed"), "Equal", lit("foobar")))},
        ]}},
        {"filter": {"name": "drop-secret", "regex": "^secret", "keepMatched": False}},
        {"transformer": {"name": "shape", "forwardInputFields": True, "specs": [
            spec("someNum", "numPlus", "TransformMapAdd", mapAddArgs={"value": 1}),
            spec("someNum", "numTimes", "TransformMapMult", mapMultArgs={"value": 2.5}),
            spec("list", "listSum", "TransformSum"),
            spec("list", "listCount", "TransformCount"),
            spec("list", "listHead", "TransformPopHead"),
            spec("list", "listTail", "TransformPopTail"),
            spec("list", "listMax", "TransformLeftFold", leftFoldArgs={"path": "max"}),
            spec("list", "listConcat", "TransformRightFold", rightFoldArgs={"path": "concat"}),
            spec("author", "authorInitial", "TransformMapRegex",
                 mapRegexArgs={"regex": "^(\\w)\\w*", "replace": "$1."}),
            spec("someDict.someFixed", "nested.fixed", "TransformCopy",
                 condition=exists(("someDict.someFixed", "Exists"))),
            spec("someDict", "", "TransformCopy",
                 condition=when(comparator(var("doTest"), "Equal", lit("true")))),
            spec("", "numFields", "TransformCount"),
        ]}},
        {"transformer": {"name": "tee-body", "specs": [
            spec("author", "who", "TransformCopy"),
            spec("someNum", "n", "TransformCopy"),
        ]}},
        {"tee": {"name": "tee-http", "outputConnectorRef": "hook", "transformerRef": "tee-body",
                 "additionalBody": {"routed": True, "nested": {"x": 1}},
                 "condition": when(logical(comparator(var("doTest"), "Equal", lit("true")), "LogicalOr",
                                           comparator(var("someNum"), "GreaterThanOrEqual", num(0))))}},
        aggregator("agg-sum", "someNum", "AggSum", ["author"]),
        aggregator("agg-max", "someNum", "AggMax", ["author", "someVocab"]),
        aggregator("agg-min", "someNum", "AggMin", ["someDict.someFixed"]),
        aggregator("agg-avg", "someNum", "AggAvg", ["author"]),
        aggregator("agg-count", "author", "AggCount", ["someVocab"], forward=False),
        aggregator("agg-hist", "someVocab", "AggDiscreteHistogram", ["author"],
                   condition=exists(("author", "Exists"))),
        {"tee": {"name": "tee-bucket", "outputConnectorRef": "bucket"}},
        completer("join", ["hash", "githash"]),
        {"continuation": {"name": "only-done", "condition": when(logical(
            comparator(var("internal:completion:join"), "NotEqual", lit("triggered")), "LogicalOr",
            comparator(var("doTest"), "Equal", lit("true"))))}},
        {"spawner": {"name": "spawn-sync", "doSync": True, "condition": exists(("githash", "Exists")),
                     "job": {"runnable": {"pathToExec": "/bin/echo-json", "cmdArgs": ["-x", "githash"]}}}},
        {"spawner": {"name": "spawn-async", "doSync": False, "delayInMs": 25,
                     "job": {"runnable": {"pathToExec": "/bin/notify"}}}},
        {"filter": {"name": "keep-some", "regex": "^(some|list|author)", "keepMatched": True}},
        {"transformer": {"name": "exec-shape", "forwardInputFields": True, "specs": [
            spec("list", "mapped", "TransformMap", mapArgs={"path": "/bin/double"}),
            spec("list", "leftFolded", "TransformLeftFold", leftFoldArgs={"path": "/bin/pair"}),
            spec("list", "rightFolded", "TransformRightFold", rightFoldArgs={"path": "/bin/pair"}),
        ]}},
        {"tee": {"name": "tee-exec", "outputConnectorRef": "topic", "transformerRef": "exec-shape",
                 "additionalBody": {"via": "exec"}}},
    ],
)

# Every effect here can be traced back to the record that caused it (see ``attribute``).
FAILURES = config(
    {
        "plain-pipe": ["f-annotate", "f-shape"],
        "tee-pipe": ["f-mark", "f-tee-hook", "f-tee-bucket"],
        "agg-pipe": ["f-agg-sum", "f-agg-hist", "f-agg-count", "f-agg-avg"],
        "spawn-pipe": ["f-spawn-sync", "f-spawn-async", "f-spawn-sync2"],
        "self-pipe": ["f-join-self"],
        "pair-pipe": ["f-join-pair"],
    },
    [
        {"annotator": {"name": "f-annotate", "annotations": [
            {"fieldKey": "plain", "value": "yes"}, {"fieldKey": "stamp", "value": "derived:currentTime"}]}},
        {"transformer": {"name": "f-shape", "forwardInputFields": True, "specs": [
            spec("someNum", "numPlus", "TransformMapAdd", mapAddArgs={"value": 1})]}},
        {"annotator": {"name": "f-mark", "annotations": [{"fieldKey": "teed", "value": "yes"}]}},
        {"tee": {"name": "f-tee-hook", "outputConnectorRef": "hook", "additionalBody": {"x": 1}}},
        {"transformer": {"name": "f-body", "specs": [spec("author", "who", "TransformCopy"),
                                                     spec("rid", "rid", "TransformCopy")]}},
        {"tee": {"name": "f-tee-bucket", "outputConnectorRef": "bucket", "transformerRef": "f-body"}},
        aggregator("f-agg-sum", "someNum", "AggSum", ["rid"]),
        aggregator("f-agg-hist", "author", "AggDiscreteHistogram", ["rid", "author"]),
        aggregator("f-agg-count", "rid", "AggCount", ["rid"]),
        aggregator("f-agg-avg", "someNum", "AggAvg", ["rid"]),
        {"spawner": {"name": "f-spawn-sync", "doSync": True,
                     "job": {"runnable": {"pathToExec": "/bin/echo-json"}}}},
        {"spawner": {"name": "f-spawn-async", "doSync": False,
                     "job": {"runnable": {"pathToExec": "/bin/notify"}}}},
        {"spawner": {"name": "f-spawn-sync2", "doSync": True,
                     "job": {"runnable": {"pathToExec": "/bin/echo-json2"}}}},
        completer("f-join-self", ["rid"], timeout=1000),
        completer("f-join-pair", ["hash", "githash"], timeout=1000),
    ],
)
EXEC_PROCESS = {"/bin/echo-json": "f-spawn-sync", "/bin/notify": "f-spawn-async", "/bin/echo-json2": "f-spawn-sync2"}
TEES = {("tee-pipe", "f-tee-hook"), ("tee-pipe", "f-tee-bucket")}

AGGREGATES = config(
    {
        "grouped": ["b-sum", "b-max", "b-min", "b-avg", "b-count", "b-hist", "b-tee"],
        "ungrouped": ["b-sum-positive", "b-hist-nested", "b-sum", "b-tee"],
    },
    [
        aggregator("b-sum", "someNum", "AggSum", ["author"]),
        aggregator("b-max", "someNum", "AggMax", ["author", "someVocab"]),
        aggregator("b-min", "someNum", "AggMin", ["someVocab"]),
        aggregator("b-avg", "someNum", "AggAvg", ["author"]),
        aggregator("b-count", "author", "AggCount", ["someVocab"]),
        aggregator("b-hist", "someVocab", "AggDiscreteHistogram", ["author"], forward=True),
        aggregator("b-sum-positive", "someNum", "AggSum", [],
                   condition=when(comparator(var("someNum"), "GreaterThan", num(0)))),
        aggregator("b-hist-nested", "someDict.someFixed", "AggDiscreteHistogram", ["someDict.kind"]),
        {"tee": {"name": "b-tee", "outputConnectorRef": "bucket"}},
    ],
)
AGG_STAGES = 7  # the longest pipeline of AGGREGATES: a batch crosses at most once per effectful stage

JOINS = config(
    {
        "pairs": ["c-pair", "c-tee"],
        "chained": ["c-triple", "c-single", "c-tee"],
        "mixed": ["c-sum-by-hash", "c-pair", "c-tee"],
        "forever": ["c-forever", "c-tee"],
    },
    [
        completer("c-pair", ["hash", "githash"], timeout=5000),
        completer("c-forever", ["githash", "hash"], timeout=-1),  # binge's "no deadline"
        completer("c-triple", ["a", "b", "c"], timeout=5000,
                  condition=when(comparator(var("author"), "NotEqual", lit("skip")))),
        completer("c-single", ["author"], timeout=5000),
        aggregator("c-sum-by-hash", "someNum", "AggSum", ["hash"]),
        {"tee": {"name": "c-tee", "outputConnectorRef": "topic"}},
    ],
)

CONFIGS: dict[str, str] = {
    **{name: (BINGE / f"{name}.json").read_text() for name in
       ("basic__basic_pipeline", "test-basic_pipeline", "traffic-bifurcate__traffic-bifurcate")},
    **{name: json.dumps(c) for name, c in
       (("kitchen", KITCHEN), ("failures", FAILURES), ("aggregates", AGGREGATES), ("joins", JOINS))},
}
PLANS = {name: compile_plan(text) for name, text in CONFIGS.items()}


def final_tees(text: str) -> dict[str, IdMaker]:
    """pipeline -> the ids its last process, an unconditional tee, gives records (if it ends in one)."""
    cfg = json.loads(text)
    defs = {next(iter(d.values()))["name"]: d for d in cfg["processDefinitions"]}
    out = {}
    for p in cfg["pipelines"]:
        last = defs[p["processes"][-1]["name"]]
        if "tee" in last and not last["tee"].get("condition"):
            out[p["name"]] = IdMaker(cfg["partitionUuid"], p["name"], last["tee"]["name"], "tee")
    return out


FINAL_TEES = {name: final_tees(text) for name, text in CONFIGS.items()}

# --- the world ------------------------------------------------------------------------------------------

PROGRAMS: dict[str, Callable[[Any, tuple[str, ...]], Any]] = {
    "/bin/echo-json": lambda inp, args: {"args": list(args), "fields": len(inp) if type(inp) is dict else None},
    "/bin/echo-json2": lambda inp, args: ["ok", type(inp).__name__],
    "/bin/notify": lambda inp, args: None,
    "/bin/double": lambda inp, args: [inp, inp],
    "/bin/pair": lambda inp, args: {"l": inp["acc"], "r": inp["value"]},
    "../../../bin/printvals": lambda inp, args: {"printed": list(args)},
}
RESPONSES = {"hook": {"status": 200}, "ServiceA": {"ok": True}, "ServiceB": {"ok": False, "n": [1, 2]}}


def make_world(fail: Callable[[Effect], str | None] | None = None) -> MemoryWorld:
    world = MemoryWorld(programs=dict(PROGRAMS), responses=dict(RESPONSES))
    if fail is not None:
        world.fail = fail
    return world


class Recorder:
    """Wraps a world's ``perform``, keeping the ``repr`` of every crossing's effects and results."""

    def __init__(self, world: MemoryWorld) -> None:
        self.world = world
        self.log: list[str] = []
        self.effects: list[tuple[Effect, str]] = []

    def perform(self, effects: list[Effect]) -> list[Any]:
        assert effects, "the plan must not cross the effect protocol with nothing to do"
        self.log.append(repr(effects))
        self.effects.extend((e, repr(e)) for e in effects)
        results = self.world.perform(effects)
        self.log.append(repr(results))
        return results


def view(outcomes: list[Outcome]) -> list[tuple]:
    return [(o.record.id, list(o.outputs), [e.to_dict() for e in o.errors]) for o in outcomes]


def by_pipeline(outcome: Outcome) -> dict[str, tuple]:
    """pipeline -> ("out", event) | ("err", process, message); a pipeline that stopped is absent."""
    out: dict[str, tuple] = {}
    for p, event in outcome.outputs:
        assert p not in out, f"two outputs for pipeline {p}"
        out[p] = ("out", event)
    for e in outcome.errors:
        if e.pipeline is not None:
            assert e.pipeline not in out, f"record {e.record_id}: pipeline {e.pipeline} has an output and {e}"
            out[e.pipeline] = ("err", e.process, e.message)
    return out


def records_of(payloads: list[Any]) -> list[Record]:
    return [Record(f"r{i}", p) for i, p in enumerate(payloads)]


# --- strategies ------------------------------------------------------------------------------------------


def json_values(huge: bool = True) -> st.SearchStrategy[Any]:
    if huge:
        ints = st.integers() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400) | st.sampled_from(
            [2 ** 63, -(2 ** 63) - 1, 2 ** 64, 10 ** 309])
        floats = st.floats(allow_nan=False, allow_infinity=False)
    else:
        ints = st.integers(min_value=-(2 ** 53), max_value=2 ** 53)
        floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
    scalars = st.none() | st.booleans() | ints | floats | st.text(max_size=6)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                      max_size=3),
                        max_leaves=5)


INTERESTING: dict[str, list[Any]] = {
    "someNum": [0, 1, 7, -3, 2.5, -0.0, 1e300, "5", None],
    "someDict": [{"someFixed": "foobar"}, {"someFixed": 1, "kind": "k"}, {}, "notadict"],
    "someVocab": ["buzz/word", "buzz/", "fizz/x", "buzz", 3],
    "author": ["alice", "bob", "mallory", "", None, 1],
    "hash": ["h1", "h2", 1], "githash": ["h1", "h2", 1],
    "version-control": ["git-dev", "svn"],
    "doTest": ["true", "false", True],
    "list": [[1, 2, 3], [], ["a", "b"], [1.5, -2], [[1], [2]]],
    "secretKey": ["s3cr3t"],
    "foobar": ["already"], "seen": ["already"], "stamp": ["already"], "meta": ["not a map", {"big": 1}, {}, {"small": 1}],
    "flags": [{}, {"other": [1]}], "nested": [{}, {"kept": {"x": 1}}],  # maps that nested annotations write into
    "deploy": ["x"],
    "internal:tee:output": [[{"uuid": "x"}], "junk"],
    "internal:aggregation:aggregates": [{"x": 1}, "junk"],
    "internal:spawn:output": [["x"], 3],
    "internal:completion:join": ["complete"],
    "internal:name": ["spoof"],
}
FIELD_NAMES = sorted(INTERESTING)
_VALUES = {huge: json_values(huge) for huge in (True, False)}
_FIELDS = {
    huge: {k: st.sampled_from(v) | _VALUES[huge] for k, v in INTERESTING.items()} for huge in (True, False)
}
HUGE = [2 ** 64, -(2 ** 63) - 1, 10 ** 308, 10 ** 400, -(10 ** 309)]
"""Integers past 64 bits, and past what a float can hold."""
for _k in ("someNum", "author", "someVocab", "hash", "githash", "list", "someDict"):
    _FIELDS[True][_k] |= st.sampled_from(HUGE) | st.lists(st.sampled_from(HUGE) | st.floats(-10, 10), max_size=3)
_FIELDS[True]["someDict"] |= st.fixed_dictionaries(
    {}, optional={"someFixed": st.just("foobar") | _VALUES[True], "kind": _VALUES[True]})


@st.composite
def events(draw: st.DrawFn, huge: bool = True) -> dict:
    """A JSON object with some of the fields the configs look at (any JSON values) and some others."""
    keys = draw(st.lists(st.sampled_from(FIELD_NAMES) | st.text(max_size=5), max_size=7, unique=True))
    fields = _FIELDS[huge]
    return {k: draw(fields[k] if k in fields else _VALUES[huge]) for k in keys}


RICH = {"someNum": 7, "author": "alice", "someVocab": "buzz/x", "someDict": {"someFixed": "foobar", "kind": "k"},
        "meta": {}, "flags": {}, "nested": {}, "list": [1, 2.5, 3], "hash": "h1", "githash": "h1", "doTest": "true",
        "version-control": "git-dev"}
"""An event that meets most conditions of the configs, so that most code paths run."""


def rich_events(huge: bool = True) -> st.SearchStrategy[dict]:
    """RICH with some fields dropped and some replaced by arbitrary values."""
    return st.builds(lambda drop, extra: {**{k: v for k, v in copy.deepcopy(RICH).items() if k not in drop}, **extra},
                     st.sets(st.sampled_from(sorted(RICH))), events(huge))


def any_events(huge: bool = True) -> st.SearchStrategy[dict]:
    return events(huge) | rich_events(huge)


now_ms = st.integers(min_value=0, max_value=4_102_444_800_000)


def run_capturing(plan: Any, batches: list[list[Record]], now: int, recorder: Recorder) -> list[Any]:
    """Each batch's outcomes, or the exception it raised (as type and text), in order."""
    results: list[Any] = []
    for batch in batches:
        try:
            results.append(view(plan.run(batch, now, recorder.perform)))
        except Exception as e:  # compared between runs; raising is reported by other tests
            results.append(("raised", type(e).__name__, str(e)))
    return results


# --- determinism ------------------------------------------------------------------------------------------


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), payloads=st.lists(st.lists(any_events(), min_size=1, max_size=4),
                                                                  min_size=1, max_size=3), now=now_ms)
def test_same_input_same_outcomes_and_effects(name: str, payloads: list[list[dict]], now: int) -> None:
    batches, n = [], 0
    for chunk in payloads:
        batches.append([Record(f"r{n + i}", p) for i, p in enumerate(chunk)])
        n += len(chunk)
    first, second = Recorder(make_world()), Recorder(make_world())
    a = run_capturing(compile_plan(CONFIGS[name]), batches, now, first)
    b = run_capturing(compile_plan(CONFIGS[name]), batches, now, second)
    assert repr(a) == repr(b)
    assert first.log == second.log
    assert repr(sorted(first.world.kv.items(), key=repr)) == repr(sorted(second.world.kv.items(), key=repr))


def test_determinism_covers_every_process_type_but_entwine() -> None:
    kinds = {next(iter(d)) for text in CONFIGS.values() for d in json.loads(text)["processDefinitions"]}
    assert kinds == {"annotator", "filter", "transformer", "aggregator", "completer", "tee", "spawner",
                     "continuation"}
    agg_types = {d["aggregator"]["aggregation"]["aggregationType"] for d in KITCHEN["processDefinitions"]
                 if "aggregator" in d}
    assert agg_types == {"AggSum", "AggMax", "AggMin", "AggAvg", "AggCount", "AggDiscreteHistogram"}


# --- totality --------------------------------------------------------------------------------------------


def check_outcomes(name: str, records: list[Record], outcomes: list[Outcome]) -> None:
    pipelines = {p.name: [s.name for s in p.stages] for p in PLANS[name].pipelines}
    assert len(outcomes) == len(records)
    for record, o in zip(records, outcomes, strict=True):
        assert o.record is record
        for e in o.errors:
            assert isinstance(e, RecordError)
            assert e.record_id == record.id
            assert e.message
            if e.pipeline is not None:
                assert e.process in pipelines[e.pipeline], e
        for p, event in o.outputs:
            assert p in pipelines
            assert type(event) is dict
            assert event["internal:name"] == p
            if p in FINAL_TEES[name]:  # an output has been through every stage, the last one included
                entries = event.get("internal:tee:output")
                assert type(entries) is list and entries and entries[-1].get("uuid") == FINAL_TEES[name][p](
                    record.id), f"record {record.id}: the output of {p} skipped its last stage: {event}"
        by_pipeline(o)  # at most one output or error per pipeline


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), payloads=st.lists(any_events(), min_size=1, max_size=5), now=now_ms)
# Regressions: integers beyond 64 bits (or beyond a float) as group, histogram and join values and as numbers.
@example(name="aggregates", payloads=[{"someVocab": 2 ** 64}], now=0)
@example(name="joins", payloads=[{"hash": -(2 ** 63) - 1}], now=0)
@example(name="aggregates", payloads=[{"author": "a", "someNum": 10 ** 400}], now=0)
@example(name="aggregates", payloads=[{"author": "a", "someNum": 2 ** 1024}, {"author": "a", "someNum": 0.5}],
         now=0)
@example(name="kitchen", payloads=[{"someNum": 10 ** 400}], now=0)
@example(name="aggregates", payloads=[{"author": "a", "someNum": 10 ** 308}] * 2 + [{"author": "a", "someNum": 0.5}],
         now=0)
@example(name="kitchen", payloads=[{"list": [10 ** 400, 0.5]}], now=0)
def test_arbitrary_events_never_raise(name: str, payloads: list[dict], now: int) -> None:
    records = records_of(payloads)
    outcomes = PLANS[name].run(records, now, make_world().perform)
    check_outcomes(name, records, outcomes)


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)),
       payloads=st.lists(json_values(huge=False).filter(lambda v: type(v) is not dict) | any_events(huge=False),
                         min_size=1, max_size=5),
       now=now_ms)
def test_non_object_payloads_are_record_errors(name: str, payloads: list[Any], now: int) -> None:
    records = records_of(payloads)
    outcomes = PLANS[name].run(records, now, make_world().perform)
    check_outcomes(name, records, outcomes)
    for o in outcomes:
        if type(o.record.payload) is not dict:
            assert o.outputs == []
            assert len(o.errors) == 1
            e = o.errors[0]
            assert (e.record_id, e.pipeline, e.process) == (o.record.id, None, None)
            assert "JSON object" in e.message
    # The objects among them are processed exactly as without the others.
    objects = [r for r in records if type(r.payload) is dict]
    alone = PLANS[name].run(objects, now, make_world().perform)
    assert repr(view(alone)) == repr(view([o for o in outcomes if type(o.record.payload) is dict]))


# --- effect failures ----------------------------------------------------------------------------------------


class Failing:
    """Fails the effects whose ``repr`` hashes (with ``salt``) below ``rate`` percent, naming each failure."""

    def __init__(self, salt: int, rate: int) -> None:
        self.salt, self.rate = salt, rate
        self.failed: list[tuple[str, Effect]] = []

    def __call__(self, effect: Effect) -> str | None:
        if zlib.crc32(f"{self.salt}:{effect!r}".encode()) % 100 >= self.rate:
            return None
        reason = f"injected#{len(self.failed)}!"
        self.failed.append((reason, effect))
        return reason


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), payloads=st.lists(any_events(huge=False), min_size=1, max_size=5),
       now=now_ms, salt=st.integers(0, 2 ** 32), rate=st.integers(0, 100))
def test_effect_failures_never_raise(name: str, payloads: list[dict], now: int, salt: int, rate: int) -> None:
    records = records_of(payloads)
    fail = Failing(salt, rate)
    outcomes = PLANS[name].run(records, now, make_world(fail).perform)
    check_outcomes(name, records, outcomes)
    messages = [e.message for o in outcomes for e in o.errors]
    for reason, effect in fail.failed:
        if isinstance(effect, Exec) and not effect.wait:
            assert not any(reason in m for m in messages), f"fire-and-forget {effect} failed a record"
    if any(not (isinstance(e, Exec) and not e.wait) for _, e in fail.failed):
        assert any("injected#" in m for m in messages), f"failed effects {fail.failed} left no error"


def render(value: Any) -> str:
    return value if type(value) is str else json.dumps(value)


def join_value(payload: dict, keys: tuple[str, ...]) -> tuple[str, str] | None:
    """(member, rendered value) of the first join key present in ``payload``."""
    for k in keys:
        if k in payload:
            return k, render(payload[k])
    return None


def attribute(effect: Effect, records: list[Record]) -> tuple[str, str, set[str], set[str], bool]:
    """(pipeline, process, records that must fail, records whose pipeline outcome may change, one_suffices)."""
    ids = {r.id: r for r in records}
    if isinstance(effect, Put):
        for pipeline, tee in TEES:
            maker = IdMaker(PARTITION, pipeline, tee, "tee")
            for rid in ids:
                if maker(rid) == effect.key:
                    return pipeline, tee, {rid}, {rid}, False
        raise AssertionError(f"no record made {effect}")
    if isinstance(effect, Exec):
        pipeline, rid = effect.input["internal:name"], effect.input["rid"]
        if not effect.wait:
            return pipeline, EXEC_PROCESS[effect.path], set(), set(), False
        return pipeline, EXEC_PROCESS[effect.path], {rid}, {rid}, False
    if isinstance(effect, ApplyDeltas):
        _, _, pipeline, process, rest = effect.key.split("/", 4)
        rid = json.loads(rest[rest.index("["):])[0]
        return pipeline, process, {rid}, {rid}, False
    assert isinstance(effect, JoinAdd)
    _, _, pipeline, process, value = effect.key.split("/", 4)
    if process == "f-join-self":
        return pipeline, process, {value}, {value}, False
    group = {r.id for r in records if (jv := join_value(r.payload, ("hash", "githash"))) and jv[1] == value}
    marks = IdMaker(PARTITION, pipeline, process, "join")
    sender = {rid for rid in ids if marks(rid) == effect.mark}  # each record's add carries its own mark
    return pipeline, process, sender, group, False


def failure_payload(rid: str) -> st.SearchStrategy[dict]:
    safe = json_values(huge=False)
    fields = {
        "someNum": st.integers(-50, 50) | st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from(["x", None]),
        "author": st.sampled_from(["alice", "bob", 3, None]) | st.text(max_size=4),
        "hash": st.sampled_from(["h1", "h2", "h3"]),
        "githash": st.sampled_from(["h1", "h2", "h3"]),
        "other": safe,
    }
    return st.fixed_dictionaries({"rid": st.just(rid)}, optional=fields)


@st.composite
def failure_batches(draw: st.DrawFn) -> list[Record]:
    n = draw(st.integers(1, 6))
    return [Record(f"r{i}", draw(failure_payload(f"r{i}"))) for i in range(n)]


@SETTINGS
@given(records=failure_batches(), now=now_ms, salt=st.integers(0, 2 ** 32), rate=st.integers(0, 100))
def test_failed_effects_fail_their_records_only(records: list[Record], now: int, salt: int, rate: int) -> None:
    plan = PLANS["failures"]
    reference = plan.run(records, now, make_world().perform)
    fail = Failing(salt, rate)
    outcomes = plan.run(records, now, make_world(fail).perform)
    check_outcomes("failures", records, outcomes)
    got = {o.record.id: by_pipeline(o) for o in outcomes}
    want = {o.record.id: by_pipeline(o) for o in reference}

    affected: set[tuple[str, str]] = set()
    for reason, effect in fail.failed:
        pipeline, process, must, may_change, one_suffices = attribute(effect, records)
        affected |= {(rid, pipeline) for rid in may_change}
        failed_here = {rid for rid in must if got[rid].get(pipeline, ("",))[0] == "err"
                       and got[rid][pipeline][1] == process and "injected#" in got[rid][pipeline][2]}
        if one_suffices:
            named = {rid for rid in failed_here if reason in got[rid][pipeline][2]}
            assert named, f"{effect} failed ({reason}) but no record of {sorted(must)} has an error saying so"
        else:
            assert failed_here == must, (
                f"{effect} failed ({reason}): records {sorted(must - failed_here)} have no error from "
                f"{pipeline} / {process}: {[got[r].get(pipeline) for r in sorted(must - failed_here)]}")
            if len(must) == 1:
                (rid,) = must
                assert reason in got[rid][pipeline][2], (rid, got[rid][pipeline])
    for rid in got:
        for pipeline in ("plain-pipe", "tee-pipe", "agg-pipe", "spawn-pipe", "self-pipe", "pair-pipe"):
            if (rid, pipeline) not in affected:
                assert repr(got[rid].get(pipeline)) == repr(want[rid].get(pipeline)), (
                    f"record {rid} in {pipeline} was not touched by a failed effect, yet its outcome changed")
    assert all(repr(got[rid].get("plain-pipe")) == repr(want[rid].get("plain-pipe")) for rid in got)


# --- no mutation ----------------------------------------------------------------------------------------------


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), payloads=st.lists(any_events(), min_size=1, max_size=4),
       share=st.booleans(), now=now_ms, salt=st.integers(0, 2 ** 32), rate=st.sampled_from([0, 0, 30]))
def test_payloads_are_never_mutated(name: str, payloads: list[dict], share: bool, now: int, salt: int,
                                    rate: int) -> None:
    if share:  # the same objects in several records and inside each other
        payloads = payloads + [payloads[0], {"inner": payloads[-1], "someDict": payloads[0]}]
    records = records_of(payloads)
    before = copy.deepcopy(payloads)
    before_repr = repr(payloads)
    recorder = Recorder(make_world(Failing(salt, rate)))
    with contextlib.suppress(Exception):  # raising is test_arbitrary_events_never_raise's concern
        PLANS[name].run(records, now, recorder.perform)
    assert repr(payloads) == before_repr
    assert payloads == before
    assert all(r.payload is p for r, p in zip(records, payloads, strict=True))
    # Nor is anything handed to the world (Put bodies, Exec inputs) changed after it was handed over.
    for effect, seen in recorder.effects:
        assert repr(effect) == seen


# --- batching -------------------------------------------------------------------------------------------------


def batch_payload() -> st.SearchStrategy[dict]:
    pool = st.sampled_from
    fields = {
        "author": pool(["ann", "bob", "cy", "skip", 1, None, True]),
        "someNum": st.integers(-100, 100) | st.floats(-1e6, 1e6, allow_nan=False)
        | pool(["x", None, [1], {"a": 1}, True]),
        "someVocab": pool(["buzz/a", "buzz/b", "q", 2, None, [1]]),
        "someDict": st.fixed_dictionaries({}, optional={"someFixed": pool(["foo", "bar", 1, None]),
                                                        "kind": pool(["k1", "k2", 3])}) | pool([None, "s"]),
        **{k: pool(["j1", "j2", "j3", 1]) for k in ("hash", "githash", "a", "b", "c")},
    }
    return st.fixed_dictionaries({}, optional=fields)


def canonical_state(world: MemoryWorld) -> str:
    def norm(v: Any) -> Any:
        return (sorted(v[0]), v[1]) if type(v) is tuple else v

    return repr(sorted(((k, norm(v)) for k, v in world.kv.items()), key=repr))


@SETTINGS
@given(name=st.sampled_from(["aggregates", "joins"]), payloads=st.lists(batch_payload(), min_size=1, max_size=8),
       now=now_ms)
def test_one_batch_equals_one_at_a_time(name: str, payloads: list[dict], now: int) -> None:
    plan = PLANS[name]
    records = records_of(payloads)
    together = make_world()
    batched = plan.run(records, now, together.perform)
    alone = make_world()
    single = [plan.run([r], now, alone.perform)[0] for r in records]
    for b, s in zip(batched, single, strict=True):
        assert repr(view([b])) == repr(view([s]))
    assert canonical_state(together) == canonical_state(alone)
    if name == "aggregates":
        assert together.crossings <= AGG_STAGES, together.crossings


@pytest.mark.parametrize("name", ["aggregates", "joins"])
def test_batching_examples_exercise_state(name: str) -> None:
    """Guards the property above against vacuity: these configs do forward state that depends on order."""
    payloads = [{"author": "ann", "someNum": 2, "someVocab": "q", "hash": "j1", "a": "j1"},
                {"author": "ann", "someNum": 5, "someVocab": "q", "githash": "j1", "b": "j1"},
                {"author": "ann", "someNum": 1, "someVocab": "q", "c": "j1"}]
    outcomes = PLANS[name].run(records_of(payloads), 0, make_world().perform)
    assert all(o.ok for o in outcomes)
    if name == "aggregates":
        sums = [dict(o.outputs)["grouped"]["internal:aggregation:grouped"]["someNum:AggSum"] for o in outcomes]
        assert sums == [{"ann": {"value": 2}}, {"ann": {"value": 7}}, {"ann": {"value": 8}}]
    else:
        status = [dict(o.outputs)["pairs"]["internal:completion:c-pair"] for o in outcomes[:2]]
        assert status == ["triggered", "complete"]
        triple = [dict(o.outputs)["chained"]["internal:completion:c-triple"] for o in outcomes]
        assert triple == ["triggered", "triggered", "complete"]
        forever = [dict(o.outputs)["forever"] for o in outcomes[:2]]
        assert [f["internal:completion:c-forever"] for f in forever] == ["triggered", "complete"]
        assert forever[1]["internal:completion:state:c-forever"] == {
            "value": "j1", "resolved": {"githash": True, "hash": True}}  # no deadline to show

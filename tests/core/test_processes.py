"""Every process type, through whole plans, with effects answered by an in-memory world.

Cases marked "binge:" reproduce binge's own tests (its ``*_test.go`` and
``processes.md``); "binge bug:" cases pin what binge's docs meant where its code
did otherwise.
"""

from __future__ import annotations

import copy
import uuid

import pytest
from builders import BINGE, NOW_MS, PARTITION, cmp, config, exists, external, kv, lit, num, var
from fakes import MemoryWorld

from agglo_core import ApplyDeltas, ConfigError, JoinAdd, Put, Record, compile_plan
from agglo_core.effects import Exec
from agglo_core.ids import NAMESPACE

# binge's test.TestJson() fixture
TJ = {"a": 1, "b": {"c": "hello", "d": [3, 4, 5]}, "e": [6], "f": {"g": {"h": 7}}, "i": [{"j": [8, 9]}, "k"]}
INTERNAL = {"internal:partitionID": PARTITION, "internal:name": "P"}


def run(cfg: dict, *events: dict, world: MemoryWorld | None = None, now: int = NOW_MS, first_id: int = 0):
    world = world or MemoryWorld()
    records = [Record(f"r{i}", e) for i, e in enumerate(events, first_id)]
    return compile_plan(cfg).run(records, now, world.perform), world


def out(cfg: dict, event: dict, **kw) -> dict:
    [outcome], _ = run(cfg, event, **kw)
    assert outcome.errors == [], outcome.errors
    [(_, result)] = outcome.outputs
    return result


def public(event: dict) -> dict:
    return {k: v for k, v in event.items() if not k.startswith("internal:")}


# --- annotator -------------------------------------------------------------------

def annotator(*annotations: dict, name: str = "Ann") -> dict:
    return {"annotator": {"name": name, "annotations": list(annotations)}}


def ann(key: str, value: str, condition: dict | None = None) -> dict:
    return {"fieldKey": key, "value": value, **({"condition": condition} if condition else {})}


def test_annotator_binge_conditions_on_list_elements():
    # binge: annotator_test 1
    cfg = config(annotator(ann("foo", "bar", cmp(var("b.d.0"), "Equal", num(3))),
                           ann("fizz", "buzz", cmp(var("b.d.1"), "Equal", num(2)))))
    result = out(cfg, TJ)
    assert result["foo"] == "bar"
    assert "fizz" not in result
    assert public(result) == {**TJ, "foo": "bar"}


def test_annotator_existing_field_fails_the_record():
    # binge: annotator_test 2
    [outcome], _ = run(config(annotator(ann("a", "bar", cmp(var("b.d.0"), "Equal", num(3))))), TJ)
    assert outcome.outputs == []
    [error] = outcome.errors
    assert (error.pipeline, error.process) == ("P", "Ann")
    assert "'a'" in error.message and "already" in error.message


def test_annotator_processes_md_example():
    cfg = config(annotator(ann("foo", "bar", cmp(var("bizz"), "Equal", lit("buzz")))))
    event = {"bizz": "buzz", "name": "frank", "someMap": {"hi": "hello", "someNum": 1}}
    assert public(out(cfg, event)) == {"foo": "bar", **event}


def test_annotations_see_earlier_annotations_and_set_dotted_paths():
    cfg = config(annotator(ann("x.y", "1"), ann("z", "2", exists("x.y")), ann("w", "3", exists("nope"))))
    result = out(cfg, {"x": {"keep": True}})
    assert result["x"] == {"keep": True, "y": "1"}
    assert result["z"] == "2"
    assert "w" not in result


def test_annotator_current_time_is_the_invocation_time():
    result = out(config(annotator(ann("created", "derived:currentTime"))), {}, now=1_614_540_154_123)
    assert result["created"] == "2021-02-28T19:22:34.123Z"


# --- filter ----------------------------------------------------------------------

def filt(regex: str, keep: bool = False) -> dict:
    return {"filter": {"name": "F", "regex": regex, "keepMatched": keep}}


@pytest.mark.parametrize(("regex", "keep", "event", "expected"), [
    # binge: filter_test 1-4 (a key list becomes an unanchored alternation, as binge builds it)
    ("^f.*", True, {"foo": 1, "fi:zz": "bar", "baz": "foo"}, {"foo": 1, "fi:zz": "bar"}),
    ("^f.*", False, {"foo": 1, "fi:zz": "bar", "baz": "foo"}, {"baz": "foo"}),
    ("foo|baz", True, {"foo": 1, "fizz": "bar", "baz": "foo"}, {"foo": 1, "baz": "foo"}),
    ("foo|baz|booze", True,
     {"foo": 1, "fizz": "bar", "baz": "foo", "booze": {"foo": 25, "bizz": "hi"}, "blaze": {"foo": "hi"}},
     {"foo": 1, "baz": "foo", "booze": {"foo": 25}}),
    # processes.md example
    ("foo.*", False, {"fooBar": 1, "name": "frank", "someMap": {"hi": "hello", "someNum": 1}},
     {"name": "frank", "someMap": {"hi": "hello", "someNum": 1}}),
    # nested maps and maps inside lists are filtered too
    ("^secret", False, {"a": {"secret": 1, "b": 2}, "l": [{"secret": 1, "c": 3}, "s", [{"secretive": 0}]]},
     {"a": {"b": 2}, "l": [{"c": 3}, "s", [{}]]}),
])
def test_filter(regex, keep, event, expected):
    result = out(config(filt(regex, keep)), event)
    assert public(result) == expected


def test_filter_never_drops_internal_keys():
    for keep in (True, False):
        result = out(config(filt("internal|name", keep)), {"name": 1})
        assert result["internal:name"] == "P" and result["internal:partitionID"] == PARTITION


# --- transformer ---------------------------------------------------------------------

def transformer(*specs: dict, forward: bool = False, name: str = "T") -> dict:
    return {"transformer": {"name": name, "specs": list(specs), "forwardInputFields": forward}}


def spec(src: str, dst: str, ttype: str = "TransformCopy", condition: dict | None = None, **args) -> dict:
    t = {"transformationType": ttype, **args}
    if condition:
        t["condition"] = condition
    return {"sourceField": src, "targetField": dst, "transformation": t}


@pytest.mark.parametrize(("specs", "expected"), [
    # binge: transformer_test 1-5
    ([spec("", "")], TJ),
    ([spec("a", "foo"), spec("b", "bar")], {"foo": 1, "bar": {"c": "hello", "d": [3, 4, 5]}}),
    ([spec("", ""), spec("b.d", "bSum", "TransformSum")], {**TJ, "bSum": 12}),
    ([spec("a", "foo"), spec("b", "bar"), spec("b.d", "bSum", "TransformSum")],
     {"foo": 1, "bar": {"c": "hello", "d": [3, 4, 5]}, "bSum": 12}),
    ([spec("b.d", "bSum", "TransformSum"), spec("b.d", "bMax", "TransformRightFold", rightFoldArgs={"path": "max"}),
      spec("e", "eCount", "TransformLeftFold", leftFoldArgs={"path": "count"})],
     {"bSum": 12, "bMax": 5, "eCount": 1}),
])
def test_transformer_binge_cases(specs, expected):
    result = out(config(transformer(*specs)), TJ)
    assert public(result) == expected
    assert result["internal:name"] == "P"  # carried over without forwardInputFields


@pytest.mark.parametrize(("ttype", "args", "value", "expected"), [
    # binge: transformation_test
    ("TransformMapAdd", {"mapAddArgs": {"value": 5}}, {"foo": 1, "bar": 5, "baz": 7}, {"foo": 6, "bar": 10, "baz": 12}),
    ("TransformMapAdd", {"mapAddArgs": {"value": 5}}, [2, 4, 6], [7, 9, 11]),
    ("TransformMapAdd", {"mapAddArgs": {"value": 5}}, 7, 12),
    ("TransformMapMult", {"mapMultArgs": {"value": 5}}, {"foo": 1, "bar": 5, "baz": 7}, {"foo": 5, "bar": 25, "baz": 35}),
    ("TransformMapMult", {"mapMultArgs": {"value": 0.5}}, [2, 3], [1.0, 1.5]),
    ("TransformMapRegex", {"mapRegexArgs": {"regex": ".*zz", "replace": "********"}},
     {"foo": "fizz", "bar": "buzz", "baz": "butt"}, {"foo": "********", "bar": "********", "baz": "butt"}),
    ("TransformMapRegex", {"mapRegexArgs": {"regex": "buzz/(.*)", "replace": "$1"}}, "buzz/bar", "bar"),
    ("TransformMapRegex", {"mapRegexArgs": {"regex": "(?P<w>[a-z]+)-(\\d+)", "replace": "${2}:${w}$$"}},
     ["ab-1 cd-22", "x"], ["1:ab$ 22:cd$", "x"]),
    ("TransformMapRegex", {"mapRegexArgs": {"regex": "a(x)?b", "replace": "[$1]\\n"}}, "ab", "[]\\n"),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "count"}}, [1, 5, 7], 3),
    ("TransformRightFold", {"rightFoldArgs": {"path": "count"}}, [1, 5, 7], 3),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "min"}}, [1, 5, 7], 1),
    ("TransformRightFold", {"rightFoldArgs": {"path": "min"}}, [1, 5, 7], 1),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "max"}}, [1, 5, 7], 7),
    ("TransformRightFold", {"rightFoldArgs": {"path": "max"}}, [1, 5, 7], 7),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "sum"}}, [1, 5, 7.5], 13.5),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "concat"}}, ["a", "b", "c"], "abc"),
    ("TransformRightFold", {"rightFoldArgs": {"path": "concat"}}, [[1], [2], [3]], [1, 2, 3]),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "sum"}}, [], None),
    ("TransformSum", {}, [10, 5, 7], 22),
    ("TransformSum", {}, [], 0),
    ("TransformCount", {}, [], 0),
    ("TransformCount", {}, ["x", {"y": 1}], 2),
    ("TransformCopy", {}, ["hello", 5, 7], ["hello", 5, 7]),
    ("TransformPopHead", {}, [{"hello": 5}, {"hi": 5}, {"hey": 7}], {"hello": 5}),
    ("TransformPopTail", {}, ["hello", 5, 7], 7),
    ("TransformPopHead", {}, [], None),
    ("TransformPopTail", {}, [], None),
])
def test_transformations(ttype, args, value, expected):
    result = out(config(transformer(spec("v", "r", ttype, **args))), {"v": value})
    assert result["r"] == expected


@pytest.mark.parametrize(("ttype", "args", "value"), [
    ("TransformSum", {}, ["x"]),
    ("TransformSum", {}, 3),
    ("TransformMapAdd", {"mapAddArgs": {"value": 1}}, "3"),
    ("TransformMapRegex", {"mapRegexArgs": {"regex": "a", "replace": "b"}}, 3),
    ("TransformPopTail", {}, {"a": 1}),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "max"}}, [1, "x"]),
    ("TransformCount", {}, "abc"),
])
def test_transformation_of_the_wrong_shape_fails_the_record(ttype, args, value):
    [outcome], _ = run(config(transformer(spec("v", "r", ttype, **args))), {"v": value})
    [error] = outcome.errors
    assert error.process == "T" and "needs" in error.message


def test_transformer_spec_rules():
    cfg = config(transformer(
        spec("missing", "m"),                                              # missing source: skipped
        spec("a", "onlyIfB", condition=exists("b")),                        # condition on the *input*
        spec("a", "notIfX", condition=exists("x")),
        spec("m", ""),                                                     # empty target merges a map
        spec("a", "deep.er.path"),
        forward=True))
    result = out(cfg, {"a": 1, "b": 2, "m": {"merged": True}})
    assert public(result) == {"a": 1, "b": 2, "m": {"merged": True}, "onlyIfB": 1, "merged": True,
                              "deep": {"er": {"path": 1}}}


def test_transformer_empty_target_needs_a_map():
    [outcome], _ = run(config(transformer(spec("a", ""))), {"a": 1})
    assert "merges a map" in outcome.errors[0].message


def test_exec_map_and_exec_fold_run_through_exec_effects():
    world = MemoryWorld(programs={
        "/bin/double": lambda x, args: x * 2,
        "/bin/join": lambda x, args: f"{x['acc']}+{x['value']}",
    })
    cfg = config(transformer(
        spec("l", "doubled", "TransformMap", mapArgs={"path": "/bin/double"}),
        spec("m", "doubledMap", "TransformMap", mapArgs={"path": "/bin/double"}),
        spec("s", "left", "TransformLeftFold", leftFoldArgs={"path": "/bin/join"}),
        spec("s", "right", "TransformRightFold", rightFoldArgs={"path": "/bin/join"})))
    outcomes, world = run(cfg, {"l": [1, 2], "m": {"k": 3}, "s": ["a", "b", "c"]}, {"l": [5], "s": []},
                          world=world)
    first, second = (public(o.outputs[0][1]) for o in outcomes)
    assert first == {"doubled": [2, 4], "doubledMap": {"k": 6}, "left": "a+b+c", "right": "c+b+a"}
    assert second == {"doubled": [10], "left": None, "right": None}
    assert all(e.path in ("/bin/double", "/bin/join") for e in world.execs)


def test_exec_transform_failure_fails_only_that_record():
    world = MemoryWorld(programs={"/bin/inv": lambda x, args: 1 / x})
    cfg = config(transformer(spec("l", "r", "TransformMap", mapArgs={"path": "/bin/inv"})))
    world.fail = lambda e: "boom" if isinstance(e, Exec) and e.input == 0 else None
    outcomes, _ = run(cfg, {"l": [1, 0]}, {"l": [4]}, world=world)
    assert "boom" in outcomes[0].errors[0].message
    assert outcomes[1].outputs[0][1]["r"] == [0.25]


# --- aggregator --------------------------------------------------------------------

def aggregator(key: str, agg: str, groups: tuple[str, ...] = (), name: str = "Agg", forward: bool = True,
               condition: dict | None = None, store: str = "State") -> dict:
    body = {"name": name, "stateStore": store, "forwardState": forward,
            "aggregation": {"key": key, "aggregationType": agg, "groupByKeys": list(groups)}}
    if condition:
        body["condition"] = condition
    return {"aggregator": body}


NAMES = [("kevin", 2), ("bob", 1), ("alice", 10), ("bob", 4), ("alice", 2), ("kevin", 12), ("alice", 2), ("bob", 1)]


@pytest.mark.parametrize(("agg", "expected"), [
    # binge: aggregation_test with groupBy ["name"]
    ("AggMin", {"kevin": 2, "alice": 2, "bob": 1}),
    ("AggMax", {"kevin": 12, "alice": 10, "bob": 4}),
    ("AggCount", {"kevin": 2, "alice": 3, "bob": 3}),
    ("AggSum", {"kevin": 14, "alice": 14, "bob": 6}),
])
def test_aggregator_group_by(agg, expected):
    cfg = config(aggregator("num", agg, ("name",)), externals=(kv(),))
    outcomes, world = run(cfg, *({"name": n, "num": v} for n, v in NAMES))
    final = {}
    for o in outcomes:
        state = o.outputs[0][1]["internal:aggregation:P"][f"num:{agg}"]
        [(name, leaf)] = state.items()
        final[name] = leaf["value"]
    assert final == expected
    # one state write per distinct group, not per record
    assert sum(isinstance(e, ApplyDeltas) for e in world.performed) == 3


@pytest.mark.parametrize("agg", ["AggSum", "AggMax", "AggMin", "AggAvg", "AggCount", "AggDiscreteHistogram"])
def test_aggregator_running_state_matches_one_at_a_time(agg):
    # binge: aggregator_test — the forwarded state after event i reflects events 0..i
    values = [3, -7, 12.5, -1, 0, 8] if agg != "AggDiscreteHistogram" else ["a", "b", "a", "c", "a", "b"]
    outcomes, _ = run(config(aggregator("foo.bar.baz", agg), externals=(kv(),)),
                      *({"foo": {"bar": {"baz": v}}} for v in values))
    for i, o in enumerate(outcomes):
        leaf = o.outputs[0][1]["internal:aggregation:P"][f"foo.bar.baz:{agg}"]
        seen = values[: i + 1]
        if agg == "AggSum":
            assert leaf == {"value": sum(seen)}
        elif agg == "AggMax":
            assert leaf == {"value": max(seen)}  # binge bug: its max started at 0
        elif agg == "AggMin":
            assert leaf == {"value": min(seen)}
        elif agg == "AggAvg":
            assert leaf == {"sum": sum(seen), "num": len(seen), "value": sum(seen) / len(seen)}
        elif agg == "AggCount":
            assert leaf == {"value": len(seen)}
        else:
            assert leaf == {"buckets": {v: seen.count(v) for v in set(seen)}}


def test_processes_md_aggregation_example_sum_and_histogram_in_one_pipeline():
    cfg = config(aggregator("someMap.someNum", "AggSum", name="Sum"),
                 aggregator("name", "AggDiscreteHistogram", name="Hist"), externals=(kv(),),
                 pipeline="PipelineName")
    outcomes, _ = run(cfg, {"name": "frank", "someMap": {"hi": "hello", "someNum": 1}},
                      {"name": "jane", "someMap": {"hi": "hello", "someNum": 4}})
    states = [o.outputs[0][1]["internal:aggregation:PipelineName"] for o in outcomes]
    assert states == [
        {"someMap.someNum:AggSum": {"value": 1}, "name:AggDiscreteHistogram": {"buckets": {"frank": 1}}},
        {"someMap.someNum:AggSum": {"value": 5}, "name:AggDiscreteHistogram": {"buckets": {"frank": 1, "jane": 1}}},
    ]


def test_histogram_buckets_any_scalar():
    # binge bug: numeric histograms always failed
    cfg = config(aggregator("v", "AggDiscreteHistogram"), externals=(kv(),))
    outcomes, _ = run(cfg, {"v": 3}, {"v": True}, {"v": "x"}, {"v": 2.5}, {"v": None}, {"v": 3})
    assert outcomes[-1].outputs[0][1]["internal:aggregation:P"]["v:AggDiscreteHistogram"]["buckets"] == {
        "3": 2, "true": 1, "x": 1, "2.5": 1, "null": 1}


def test_aggregator_skips_missing_or_non_numeric_values_and_honours_its_condition():
    cfg = config(aggregator("n", "AggSum", condition=cmp(var("kind"), "Equal", lit("yes"))), externals=(kv(),))
    events = [{"kind": "yes", "n": 2}, {"kind": "yes", "n": "3"}, {"kind": "yes"}, {"kind": "no", "n": 5},
              {"kind": "yes", "n": True}, {"kind": "yes", "n": 4}]
    outcomes, _ = run(cfg, *events)
    for event, o in zip(events, outcomes, strict=True):
        assert o.errors == []
        result = o.outputs[0][1]
        if event.get("kind") == "yes" and type(event.get("n")) is int:
            assert "internal:aggregation:P" in result
        else:
            assert public(result) == event and "internal:aggregation:P" not in result
    assert outcomes[-1].outputs[0][1]["internal:aggregation:P"]["n:AggSum"] == {"value": 6}


def test_missing_group_value_is_nil_and_nested_groups_nest():
    cfg = config(aggregator("n", "AggCount", ("a", "b.c")), externals=(kv(),))
    outcomes, _ = run(cfg, {"n": 1, "a": "x"}, {"n": 1, "a": "x", "b": {"c": 7}})
    states = [o.outputs[0][1]["internal:aggregation:P"]["n:AggCount"] for o in outcomes]
    assert states == [{"x": {"nil": {"value": 1}}}, {"x": {"7": {"value": 1}}}]


def test_without_forward_state_the_event_is_unchanged_but_state_is_kept():
    cfg = config(aggregator("n", "AggSum", forward=False), externals=(kv(),))
    outcomes, world = run(cfg, {"n": 1}, {"n": 2})
    assert [public(o.outputs[0][1]) for o in outcomes] == [{"n": 1}, {"n": 2}]
    [(store_key, state)] = world.states().items()
    assert store_key[0] == "State" and state == {"value": 3}


def test_aggregator_state_failure_fails_those_records_only():
    cfg = config(aggregator("n", "AggSum", ("g",)), externals=(kv(),))
    world = MemoryWorld(fail=lambda e: "dynamo down" if isinstance(e, ApplyDeltas) and "bad" in e.key else None)
    outcomes, _ = run(cfg, {"n": 1, "g": "bad"}, {"n": 2, "g": "good"}, world=world)
    assert "dynamo down" in outcomes[0].errors[0].message
    assert outcomes[1].outputs[0][1]["internal:aggregation:P"]["n:AggSum"] == {"good": {"value": 2}}


# --- completer ---------------------------------------------------------------------

def completer(*join_keys: str, timeout: int = 3_600_000, condition: dict | None = None) -> dict:
    body = {"name": "Join", "stateStore": "State", "completion": {"joinKeys": list(join_keys), "timeoutMs": timeout}}
    if condition:
        body["condition"] = condition
    return {"completer": body}


def statuses(outcomes) -> list:
    return [o.outputs[0][1].get("internal:completion:Join") for o in outcomes]


def test_completer_processes_md_example():
    cfg = config(completer("head", "cicdVcsHash"), externals=(kv(),))
    outcomes, world = run(cfg, {"repo": "agglo", "head": "deadbeef", "state": "passed"},
                          {"workflow": "agglo", "cicdVcsHash": "deadbeef", "state": "passed"})
    assert statuses(outcomes) == ["triggered", "complete"]
    state = outcomes[1].outputs[0][1]["internal:completion:state:Join"]
    assert state == {"value": "deadbeef", "resolved": {"head": True, "cicdVcsHash": True},
                     "deadline": NOW_MS + 3_600_000}
    assert world.states() == {}  # completed joins are removed


def test_completer_binge_pipeline_commits_and_deploys():
    commits = [{"author": a, "hash": h} for a, h in [("kevin", "abcd"), ("bob", "deff"), ("jane", "beef"),
                                                      ("kevin", "f00d")]]
    deploys = [{"user": "deploybot", "githash": "abcd"}, {"user": "deploybot", "githash": "beef"}]
    outcomes, _ = run(config(completer("hash", "githash"), externals=(kv(),)), *commits, *deploys)
    assert statuses(outcomes) == ["triggered"] * 4 + ["complete", "complete"]


def test_completer_timeout_then_a_new_join():
    cfg = config(completer("a", "b", timeout=100), externals=(kv(),))
    world = MemoryWorld()
    outcomes, _ = run(cfg, {"a": 1}, world=world, now=NOW_MS)
    assert statuses(outcomes) == ["triggered"]
    outcomes, _ = run(cfg, {"b": 1}, world=world, now=NOW_MS + 101, first_id=1)
    assert statuses(outcomes) == ["timedout"]
    assert world.states() == {}  # binge bug: its timed-out state lived forever
    outcomes, _ = run(cfg, {"a": 1}, {"b": 1}, world=world, now=NOW_MS + 200, first_id=2)
    assert statuses(outcomes) == ["triggered", "complete"]


def test_completer_never_completes_with_an_absent_key_and_ignores_events_without_join_keys():
    cfg = config(completer("a", "b", "never"), externals=(kv(),))
    outcomes, _ = run(cfg, {"a": "v"}, {"b": "v"}, {"c": "v"})
    assert statuses(outcomes) == ["triggered", "triggered", None]
    assert public(outcomes[2].outputs[0][1]) == {"c": "v"}


def test_completer_honours_its_condition():
    # binge bug: the completer ignored its condition
    cfg = config(completer("a", "b", condition=cmp(var("ok"), "Equal", lit("yes"))), externals=(kv(),))
    outcomes, _ = run(cfg, {"a": 1, "ok": "no"}, {"a": 1, "ok": "yes"}, {"b": 1, "ok": "yes"})
    assert statuses(outcomes) == [None, "triggered", "complete"]


def test_two_instances_completing_one_join_emit_one_complete():
    cfg = config(completer("a", "b"), externals=(kv(),))
    world = MemoryWorld()
    run(cfg, {"a": "x"}, world=world)
    gens = [compile_plan(cfg).process([Record(f"b{i}", {"b": "x"})], NOW_MS) for i in range(2)]
    adds = [next(g) for g in gens]                       # both instances send their add at once
    assert all(isinstance(e, JoinAdd) and e.required == ("a", "b") for batch in adds for e in batch)
    results = []
    for g, batch in zip(gens, adds, strict=True):        # the store applies them one after the other
        with pytest.raises(StopIteration) as stop:
            g.send(world.perform(batch))
        results.append(stop.value.value[0].outputs[0][1]["internal:completion:Join"])
    assert sorted(results) == ["complete", "triggered"]  # the add that completed the join also closed it


def test_a_redelivered_completer_record_gets_its_first_answer_and_starts_no_new_join():
    cfg = config(completer("a", "b"), externals=(kv(),))
    world = MemoryWorld()
    first, _ = run(cfg, {"a": "x"}, {"b": "x"}, world=world)
    assert statuses(first) == ["triggered", "complete"] and world.states() == {}
    again, _ = run(cfg, {"a": "x"}, {"b": "x"}, world=world, now=NOW_MS + 5)  # the whole batch, redelivered
    assert [o.outputs for o in again] == [o.outputs for o in first]
    assert world.states() == {}  # binge restarted the join here, and it waited for a partner forever
    only_b = compile_plan(cfg).run([Record("r1", {"b": "x"})], NOW_MS + 9, world.perform)  # only the last one
    assert only_b[0].outputs == first[1].outputs and world.states() == {}
    new = compile_plan(cfg).run([Record("r9", {"b": "x"})], NOW_MS + 9, world.perform)  # a new record: a new join
    assert statuses(new) == ["triggered"] and len(world.states()) == 1


def test_when_an_add_fails_the_later_events_of_its_join_wait_for_the_redelivery():
    cfg = config(completer("a", "b"), externals=(kv(),))
    broken = {"r0"}
    world = MemoryWorld(fail=lambda e: "down" if isinstance(e, JoinAdd) and e.member == "a" and broken else None)
    records = [Record("r0", {"a": "x"}), Record("r1", {"b": "x"}), Record("r2", {"a": "x"}), Record("r3", {"b": "y"})]
    first = compile_plan(cfg).run(records, NOW_MS, world.perform)
    assert [bool(o.errors) for o in first] == [True, True, True, False]  # r1, r2 not applied before r0
    assert "earlier event of this join" in first[1].errors[0].message and first[1].errors[0].transient
    broken.clear()
    again = compile_plan(cfg).run(records[:3], NOW_MS, world.perform)  # only the failed ones come back
    assert statuses(again) == ["triggered", "complete", "triggered"]  # as one delivery would have it


def test_without_dedupe_a_completer_record_counts_as_new():
    cfg = config(completer("a", "b"), externals=(kv(),))
    world = MemoryWorld()
    plan = compile_plan(cfg)
    records = [Record("r0", {"a": "x"}), Record("r1", {"b": "x"})]
    plan.run(records, NOW_MS, world.perform, dedupe=False)
    again = plan.run(records, NOW_MS, world.perform, dedupe=False)
    assert statuses(again) == ["triggered", "complete"] and world.kv == {}


# --- tee -------------------------------------------------------------------------------

def tee(target: str, transformer_ref: str = "", extra: dict | None = None, condition: dict | None = None,
        name: str = "Tee") -> dict:
    body = {"name": name, "outputConnectorRef": target, "transformerRef": transformer_ref,
            "additionalBody": extra or {}}
    if condition:
        body["condition"] = condition
    return {"tee": body}


HTTP = external("ExternalHttp", "Web", "https://user:hunter2@example.com/hook?token=abc&x=1")


def test_tee_sends_the_event_and_notes_where_it_went():
    world = MemoryWorld(responses={"Web": {"foo": "bar", "bizz": "buzz"}})
    outcomes, world = run(config(tee("Web"), externals=(HTTP,)), TJ, world=world)
    result = outcomes[0].outputs[0][1]
    [put] = world.puts
    assert public(put.body) == TJ and put.target == "Web"
    [entry] = result["internal:tee:output"]
    assert entry == {"uuid": put.key, "outputType": "web",
                     "connectionString": "https://user:***@example.com/hook?token=***&x=1",
                     "response": {"foo": "bar", "bizz": "buzz"}}
    assert public(result) == TJ


def test_tee_additional_body_transformer_and_condition():
    cfg = config(tee("Out", "Shape", {"routed": True, "nested": {"b": 2}}, cmp(var("doTest"), "Equal", lit("true"))),
                 transformer(spec("someNum", "newNum"), spec("nested", "nested"), forward=True, name="Shape"),
                 externals=(external("ExternalKVStore", "Out", "mem:out"),), order=["Tee"])
    outcomes, world = run(cfg, {"doTest": "true", "someNum": 7, "nested": {"a": 1}}, {"doTest": "false"})
    [put] = world.puts
    assert public(put.body) == {"doTest": "true", "someNum": 7, "newNum": 7, "nested": {"a": 1, "b": 2},
                                "routed": True}
    assert outcomes[0].outputs[0][1]["internal:tee:output"][0]["outputType"] == "kvstore"
    assert "internal:tee:output" not in outcomes[1].outputs[0][1]


def test_tee_uuid_is_deterministic_per_record_pipeline_and_process():
    cfg = config(tee("Out", name="A"), tee("Out", name="B"),
                 externals=(external("ExternalLocalFile", "Out", "/tmp/x"),))
    first, _ = run(cfg, {"n": 1}, {"n": 2})
    again, _ = run(cfg, {"n": 1}, {"n": 2})
    ids = [[e["uuid"] for e in o.outputs[0][1]["internal:tee:output"]] for o in first]
    assert ids == [[e["uuid"] for e in o.outputs[0][1]["internal:tee:output"]] for o in again]
    assert len({i for pair in ids for i in pair}) == 4
    assert ids[0][0] == str(uuid.uuid5(NAMESPACE, f"{PARTITION}/P/A/tee/r0"))
    assert first[0].outputs[0][1]["internal:tee:output"][0]["outputType"] == "localfile"


def test_tee_failure_fails_the_record():
    world = MemoryWorld(fail=lambda e: "503 from hook" if isinstance(e, Put) else None)
    [outcome], _ = run(config(tee("Web"), externals=(HTTP,)), {"a": 1}, world=world)
    [error] = outcome.errors
    assert error.process == "Tee" and "503 from hook" in error.message
    assert "hunter2" not in error.message


# --- spawner ---------------------------------------------------------------------------

def spawner(sync: bool = True, delay: int = 0, condition: dict | None = None) -> dict:
    body = {"name": "Spawn", "delayInMs": delay, "doSync": sync,
            "job": {"runnable": {"pathToExec": "/bin/tool", "cmdArgs": ["-x", "1"]}}}
    if condition:
        body["condition"] = condition
    return {"spawner": body}


def test_sync_spawner_appends_its_answer():
    world = MemoryWorld(programs={"/bin/tool": lambda event, args: {"args": list(args), "n": event["n"]}})
    result = out(config(spawner(delay=5)), {"n": 3}, world=world)
    assert result["internal:spawn:output"] == [{"Spawn": {"args": ["-x", "1"], "n": 3}}]
    [e] = world.execs
    assert e.delay_ms == 5 and e.wait and e.input["n"] == 3


def test_async_spawner_fires_and_forgets():
    world = MemoryWorld(fail=lambda e: "ignored")
    result = out(config(spawner(sync=False)), {"n": 3}, world=world)
    assert public(result) == {"n": 3} and "internal:spawn:output" not in result


def test_spawner_failure_and_condition():
    world = MemoryWorld(fail=lambda e: "exit status 3")
    cfg = config(spawner(condition=exists("go")))
    outcomes, world = run(cfg, {"go": 1}, {"stay": 1}, world=world)
    assert "exit status 3" in outcomes[0].errors[0].message
    assert public(outcomes[1].outputs[0][1]) == {"stay": 1}


# --- continuation and whole pipelines -------------------------------------------------------

def continuation(condition: dict) -> dict:
    return {"continuation": {"name": "Cont", "condition": condition}}


def test_continuation_stops_quietly_and_other_pipelines_still_run():
    second = {"name": "Q", "processes": [{"name": "Ann"}]}
    cfg = config(continuation(cmp(var("name"), "NotEqual", lit("frank"))), annotator(ann("seen", "yes")),
                 order=["Cont", "Ann"], extra_pipelines=(second,))
    [frank, jane], _ = run(cfg, {"name": "frank"}, {"name": "jane"})
    assert frank.errors == [] and [p for p, _ in frank.outputs] == ["Q"]
    assert [p for p, _ in jane.outputs] == ["P", "Q"]
    assert jane.outputs[1][1]["internal:name"] == "Q"


def test_a_failing_pipeline_does_not_suppress_another():
    second = {"name": "Q", "processes": [{"name": "Tee"}]}
    cfg = config(annotator(ann("a", "x")), tee("Out"), order=["Ann"], extra_pipelines=(second,),
                 externals=(external("ExternalObjectStore", "Out", "mem:o"),))
    [outcome], world = run(cfg, {"a": "already"})
    assert [(e.pipeline, e.process) for e in outcome.errors] == [("P", "Ann")]
    assert [p for p, _ in outcome.outputs] == ["Q"]
    assert world.puts[0].body["internal:name"] == "Q"


def test_pipelines_stamp_partition_and_name_without_touching_the_input():
    event = {"x": {"y": [1, {"z": 2}]}}
    before = copy.deepcopy(event)
    result = out(config(annotator(ann("x.y.1.w", "3"))), event)
    assert result["internal:partitionID"] == PARTITION and result["internal:name"] == "P"
    assert result["x"]["y"][1] == {"z": 2, "w": "3"}
    assert event == before


def test_non_object_payload_is_a_record_error():
    outcomes, _ = run(config(annotator(ann("a", "b"))), [1, 2])  # type: ignore[arg-type]
    assert outcomes[0].errors[0].pipeline is None and "JSON object" in outcomes[0].errors[0].message


def test_a_batch_crosses_the_effect_protocol_once_per_effectful_stage():
    cfg = compile_plan((BINGE / "basic__basic_pipeline.json").read_text())
    world = MemoryWorld()
    events = [{"someNum": i, "someDict": {"someFixed": "foobar"}, "someVocab": "buzz/x"} for i in range(100)]
    outcomes = cfg.run([Record(str(i), e) for i, e in enumerate(events)], NOW_MS, world.perform)
    assert world.crossings == 3  # the aggregator and two tees
    assert outcomes[-1].outputs[0][1]["internal:aggregation:BasicPipeline"]["someNum:AggSum"] == {"value": 4950}
    assert outcomes[-1].outputs[0][1]["someVocabSansPrefix"] == "x"
    assert len(world.puts) == 200


def test_binge_test_pipeline_end_to_end():
    # binge: pipeline_test — commits annotated and counted per author, deploys complete the join
    cfg = (BINGE / "test-basic_pipeline.json").read_text()
    world = MemoryWorld(programs={"../../../bin/printvals": lambda event, args: {"githash": event["githash"]}})
    commits = [{"author": a, "parent": "x", "hash": h, "body": "b"} for a, h in [
        ("kevin", "abcd"), ("bob", "deff"), ("kevin", "beef"), ("jane", "f00d")]]
    deploys = [{"user": "deploybot", "githash": "abcd"}, {"user": "deploybot", "githash": "beef"}]
    outcomes = compile_plan(cfg).run([Record(str(i), e) for i, e in enumerate(commits + deploys)], NOW_MS,
                                     world.perform)
    results = [o.outputs[0][1] for o in outcomes]
    assert all(o.errors == [] for o in outcomes)
    assert results[3]["internal:aggregation:tester-pipeline"] == {
        "author:AggDiscreteHistogram": {"buckets": {"kevin": 2, "bob": 1, "jane": 1}}}
    assert [r["internal:completion:completion-hashjoin"] for r in results] == ["triggered"] * 4 + ["complete"] * 2
    assert [r["internal:spawn:output"] for r in results[4:]] == [
        [{"spawner-print-githash": {"githash": "abcd"}}], [{"spawner-print-githash": {"githash": "beef"}}]]
    assert {p.body["gitAuthor"] for p in world.puts} == {"kevin", "bob", "jane"}
    assert results[0]["version-control"] == "git-dev" and results[4]["deploy"] == "circleci-dev"


def test_entwine_compiles_only_with_its_private_key():
    with pytest.raises(ConfigError, match="no private key loaded for pemPath"):
        compile_plan((BINGE / "entwine__binge-a.json").read_text())


def test_a_fault_in_a_stage_fails_the_remaining_records_instead_of_dropping_them():
    from agglo_core.pipeline import CompiledPipeline, Invocation, Item, _run_pipeline

    class Exploding:
        name, pure = "Boom", False

        def run(self, items, inv):
            items[0].fail("Boom", "own error")
            yield []
            raise OverflowError("int too large to convert to float")

    items = [Item(Record(str(i), {}), {"i": i}) for i in range(3)]
    driver = _run_pipeline(CompiledPipeline("P", (Exploding(),)), items, Invocation.at(NOW_MS))
    assert next(driver) == []
    with pytest.raises(StopIteration):
        driver.send([])
    assert [it.error for it in items] == [("Boom", "own error")] + [
        ("Boom", "arithmetic failed: int too large to convert to float")] * 2
    assert all(it.event is None for it in items)


def test_pure_stages_run_back_to_back_exactly_as_they_run_one_by_one():
    # Without an observer, consecutive pure stages run per record; with one, stage by stage.
    cfg = config(annotator(ann("big", "yes", cmp(var("n"), "GreaterThan", num(5))), name="Big"),
                 {"continuation": {"name": "Gate", "condition": exists("n")}},
                 annotator(ann("n", "clash", cmp(var("n"), "Equal", num(7))), name="Clash"),
                 {"filter": {"name": "Drop", "regex": "^secret$"}},
                 aggregator("n", "AggSum", ()),
                 annotator(ann("after", "yes"), name="After"),
                 externals=(kv(),))
    events = [{"n": n, "secret": 1} if n % 3 else {"other": n} for n in range(12)]
    records = [Record(f"r{i}", e) for i, e in enumerate(events)]
    seen: list[tuple[str, int, int]] = []
    fused = compile_plan(cfg).run(records, NOW_MS, MemoryWorld().perform)
    staged = compile_plan(cfg).run(records, NOW_MS, MemoryWorld().perform,
                                   observe=lambda pipe, stage, n_in, n_out: seen.append((stage, n_in, n_out)))
    assert [(o.outputs, o.errors) for o in fused] == [(o.outputs, o.errors) for o in staged]
    assert [o.errors[0].process for o in fused if o.errors] == ["Clash"]
    assert sum(1 for o in fused if o.outputs) == 7  # 8 with n, one clashes
    assert [s for s in seen if s[2] >= 0] == [("Big", 12, 12), ("Gate", 12, 8), ("Clash", 8, 7), ("Drop", 7, 7),
                                              ("Agg", 7, 7), ("After", 7, 7)]


@pytest.mark.parametrize("dedupe", [True, False])
def test_the_last_record_of_a_batch_shows_exactly_the_state_the_store_holds(dedupe):
    # Float sums depend on the order of additions. With dedupe the store applies each record's part in turn;
    # without, it adds the batch's combined deltas. Each record is shown the sum its store would make.
    cfg = config(aggregator("n", "AggSum"), externals=(kv(),))
    world, plan = MemoryWorld(), compile_plan(cfg)
    plan.run([Record("first", {"n": 1e16})], NOW_MS, world.perform, dedupe=dedupe)
    outcomes = plan.run([Record(f"then-{i}", {"n": 1.0}) for i in range(3)], NOW_MS, world.perform, dedupe=dedupe)
    shown = [o.outputs[0][1]["internal:aggregation:P"]["n:AggSum"]["value"] for o in outcomes]
    [stored] = world.states().values()
    if dedupe:
        assert shown == [1e16, 1e16, 1e16]  # ((1e16 + 1.0) + 1.0) + 1.0
    else:
        assert shown == [1e16 + 1.0, 1e16 + 2.0, 1e16 + 3.0]  # 1e16 + (1.0 + 1.0 + 1.0), so far
    assert shown[-1] == stored["value"]


def test_a_redelivered_record_changes_state_once():
    cfg = config(aggregator("n", "AggSum", ("g",)), externals=(kv(),))
    world = MemoryWorld()
    first, _ = run(cfg, {"n": 1, "g": "a"}, {"n": 2, "g": "a"}, world=world)
    # r0 and r1 again (a platform redelivering the batch), with new records beside them
    plan = compile_plan(cfg)
    again = plan.run([Record("r1", {"n": 2, "g": "a"}), Record("r2", {"n": 4, "g": "a"}),
                      Record("r0", {"n": 1, "g": "a"})], NOW_MS, world.perform)
    assert world.states() == {("State", f"agg/{PARTITION}/P/Agg/n:AggSum[\"a\"]"): {"value": 7}}
    shown = [o.outputs[0][1]["internal:aggregation:P"]["n:AggSum"]["a"]["value"] for o in again]
    assert shown == [3, 7, 1]  # a duplicate changes nothing and shows what its first delivery showed
    assert again[0].outputs == first[1].outputs and again[2].outputs == first[0].outputs


def test_the_same_record_twice_in_one_batch_counts_once_and_dedupe_can_be_off():
    cfg = compile_plan(config(aggregator("n", "AggCount"), externals=(kv(),)))
    twice = [Record("r0", {"n": 1}), Record("r0", {"n": 1}), Record("r1", {"n": 1})]
    world = MemoryWorld()
    outcomes = cfg.run(twice, NOW_MS, world.perform)
    assert [o.outputs[0][1]["internal:aggregation:P"]["n:AggCount"]["value"] for o in outcomes] == [1, 1, 2]
    unmarked = MemoryWorld()
    cfg.run(twice, NOW_MS, unmarked.perform, dedupe=False)
    assert list(unmarked.states().values()) == [{"value": 3}] and len(unmarked.kv) == 1

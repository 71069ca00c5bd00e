"""binge's event generator: every value kind of its schema files, references, shared strings, bad schemas."""

from __future__ import annotations

import json
import pathlib
import random

import pytest

from handlers.authoring.genevents import Generator, SchemaError, check_schema, generate

GENERATORS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "binge" / "generators"


def schema(name: str) -> dict:
    return json.loads((GENERATORS / name).read_text())


def test_every_binge_schema_generates_and_the_same_seed_repeats():
    for path in sorted(GENERATORS.glob("*.json")):
        spec = json.loads(path.read_text())
        first = list(generate(spec, 60, seed=11))
        assert first == list(generate(spec, 60, seed=11)), path.name
        assert first != list(generate(spec, 60, seed=12)), path.name
        shapes = {tuple(s["root"]["kvs"]) for s in spec["schemas"]}
        assert all(tuple(e) in shapes for e in first), path.name


def test_basic_schema_values_follow_their_generators():
    events = list(generate(schema("examples__basic__basic_event_gen.json"), 400, seed=1))
    foos = [e for e in events if "someNum" in e]
    bars = [e for e in events if "someVocab" in e]
    assert foos and bars
    for e in foos:
        assert 100 <= e["someNum"] < 1000 and e["someDict"] == {"someFixed": "foobar"}
        assert 10 <= len(e["someString"]) <= 20 and set(e["someString"]) <= set("abcdef1234567890")
    # vocabString with a prefixName always carries the prefix (binge's stringPrefixes)
    assert {e["someVocab"] for e in bars} == {"buzz/fizz", "buzz/buzz", "buzz/foo", "buzz/bar"}
    # a reference is a value an earlier "foo" event generated, each used at most maxRef (1) time
    made: list[float] = []
    for e in events:
        if "someNum" in e:
            made.append(e["someNum"])
        else:
            assert e["someReference"] in made
            made.remove(e["someReference"])


def test_cicd_schema_shares_strings_carries_state_and_counts():
    events = list(generate(schema("test__generators__cicd_events.json"), 300, seed=5))
    pushes = [e for e in events if "pusher" in e]
    deploys = [e for e in events if "build_num" in e]
    assert pushes and deploys and len(pushes) + len(deploys) < len(events)
    assert [d["build_num"] for d in deploys] == list(range(len(deploys)))
    for previous, push in zip(pushes, pushes[1:], strict=False):
        assert push["before"] == previous["after"]  # storeStringState / readStringState
    for push in pushes:
        commit, = push["commits"]
        assert commit["url"] == "https://github.com/organizationhq/" + push["after"]  # sharedName + prefix
        assert commit["author"]["name"] == push["pusher"]["name"]
        assert commit["author"]["email"] == push["pusher"]["name"] + "@organizationhq.org"
        assert commit["parents"] == [push["before"]]
    afters = {p["after"] for p in pushes}
    assert all(d["vcs_revision"] in afters for d in deploys)
    assert 0.6 < len(pushes) / len(events) < 0.9  # schemaDistribution [0.2, 0.05, 0.75]


def test_numeric_sets_fixed_numbers_booleans_lists_and_reference_budgets():
    spec = {"schemas": [
        {"name": "a", "root": {"kvs": {
            "pick": {"numericSet": {"values": [1, 2.5, 7]}},
            "fixed": {"fixedNumeric": {"value": 42}},
            "flag": {"boolean": {}},
            "tags": {"list": {"minLen": 0, "maxLen": 3, "value": {"vocabString": {"vocab": ["x", "y"]}}}},
            "word": {"vocabString": {"vocab": ["p", "q", "r"], "maxRef": 2}}}}},
        {"name": "b", "root": {"kvs": {"ref": {"reference": {"schemaName": "a", "path": "word"}}}}}],
        "schemaDistribution": [1, 3]}
    events = list(generate(spec, 500, seed=3))
    a_events = [e for e in events if "pick" in e]
    assert {e["pick"] for e in a_events} == {1, 2.5, 7} and {e["fixed"] for e in a_events} == {42}
    assert {e["flag"] for e in a_events} == {True, False}
    assert {len(e["tags"]) for e in a_events} == {0, 1, 2, 3}
    made = used = 0
    for e in events:  # drawn three times as often, "b" must still wait: each word serves two references
        if "pick" in e:
            made += 1
        else:
            used += 1
            assert used <= 2 * made, "a value with maxRef 2 was referenced more than twice"
    assert used >= 2 * made - 2  # and it waits only when every word is used up


@pytest.mark.parametrize(("spec", "problem"), [
    ({"schemas": [{"name": "a", "root": {"kvs": {"x": {"gaussian": {"mean": 1}}}}}]},
     "schemas[0].root.kvs.x: unknown generator 'gaussian'"),
    ({"schemas": [{"name": "a", "root": {"kvs": {"d": {"dict": {"kvs": {"y": {"randomString": {"minLen": 1}}}}}}}}]},
     "schemas[0].root.kvs.d.dict.kvs.y.randomString.alphabet: must be a non-empty string"),
    ({"schemas": [{"name": "a", "root": {"kvs": {"v": {"vocabString": {"vocab": ["x"], "prefixName": "p"}}}}}]},
     "schemas[0].root.kvs.v.vocabString.prefixName: no stringPrefixes entry named 'p'"),
    ({"schemas": [{"name": "a", "root": {"kvs": {"r": {"reference": {"schemaName": "zzz", "path": "x"}}}}}]},
     "schemas[0].root.kvs.r.reference.schemaName: no schema named 'zzz'"),
    ({"schemas": [{"name": "a", "root": {"kvs": {"n": {"randomNumeric": {"min": 5, "max": 1, "maxRefs": 1}}}}}]},
     "schemas[0].root.kvs.n.randomNumeric.maxRefs: unknown field for randomNumeric"),
    ({"schemas": [{"name": "a", "root": {"kvs": {"x": {"fixedString": {"value": "v"}}}}}],
      "schemaDistribution": [0.5, 0.5]},
     "schemaDistribution: must be 1 non-negative number(s), one per schema"),
    ({"schemas": [{"name": "a", "root": {"kvs": {"r": {"reference": {"schemaName": "b", "path": "r"}}}}},
                  {"name": "b", "root": {"kvs": {"r": {"reference": {"schemaName": "a", "path": "r"}}}}}]},
     "references go round in a circle (a -> b -> a)"),
])
def test_bad_schemas_name_the_problem_and_its_json_path(spec, problem):
    problems = check_schema(spec)
    assert any(problem in p for p in problems), problems
    with pytest.raises(SchemaError):
        Generator(spec, random.Random(0))

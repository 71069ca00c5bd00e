"""The completer's join without a deadline: binge's ``timeoutMs`` <= 0 (its tests write -1) or left out.

The same cases run against every real store in ``tests/handlers/test_connectors.py``
(``test_completer_without_timeout``, the joinTtl expiry); here the core: validation,
the effects the stage asks for, what the completed event shows, lint's note.
"""

from __future__ import annotations

from typing import Any

from builders import NOW_MS, config, kv
from fakes import MemoryWorld
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core import JoinAdd, JoinState, Record, compile_plan, load_config
from agglo_core.lint import lint
from agglo_core.processes import spec_of
from agglo_core.processes.completer import NO_DEADLINE
from agglo_core.state import add_to_join

LATER = 10**15  # "forever" after NOW_MS, in ms


def completer(timeout: Any = None, keys: tuple[str, ...] = ("head", "cicdVcsHash")) -> dict:
    completion: dict[str, Any] = {"joinKeys": list(keys)}
    if timeout is not None:
        completion["timeoutMs"] = timeout
    return {"completer": {"name": "Join", "stateStore": "State", "completion": completion}}


def joins_asked(cfg: dict, now: int = NOW_MS) -> list[JoinAdd]:
    world = MemoryWorld()
    asked: list[JoinAdd] = []

    def perform(effects: list) -> list:
        asked.extend(effects)
        return world.perform(effects)

    compile_plan(cfg).run([Record("r0", {"head": "x"})], now, perform)
    return asked


@settings(max_examples=50, deadline=None)
@given(timeout=st.integers(-(2**63), 0) | st.sampled_from([0, -1]))
def test_config_accepts_zero_and_negative_timeouts_as_no_deadline(timeout: int) -> None:
    cfg = config(completer(timeout), externals=(kv(),))
    load_config(cfg)  # binge's tests write -1: no longer "must be positive"
    [add] = joins_asked(cfg)
    assert add.deadline_ms is None


def test_omitted_timeout_is_no_deadline_and_a_positive_one_is_a_deadline() -> None:
    [omitted] = joins_asked(config(completer(), externals=(kv(),)))
    [positive] = joins_asked(config(completer(1), externals=(kv(),)))
    assert (omitted.deadline_ms, positive.deadline_ms) == (None, NOW_MS + 1)


def statuses(outcomes: list) -> list[Any]:
    return [o.outputs[0][1].get("internal:completion:Join") for o in outcomes]


def test_a_join_without_a_deadline_waits_forever_and_shows_no_deadline() -> None:
    for timeout in (None, 0, -1):
        for codegen in (True, False):
            plan, world = compile_plan(config(completer(timeout), externals=(kv(),)), codegen=codegen), MemoryWorld()
            first = plan.run([Record("r0", {"head": "deadbeef"})], NOW_MS, world.perform)
            second = plan.run([Record("r1", {"cicdVcsHash": "deadbeef"})], LATER, world.perform)
            assert statuses(first + second) == ["triggered", "complete"], (timeout, codegen)
            assert second[0].outputs[0][1]["internal:completion:state:Join"] == {
                "value": "deadbeef", "resolved": {"head": True, "cicdVcsHash": True}}
            assert world.states() == {}


@settings(max_examples=200, deadline=None)
@given(adds=st.lists(st.tuples(st.sampled_from("abcx"), st.integers(-(2**62), 2**62)), min_size=1, max_size=12))
def test_a_join_without_a_deadline_closes_only_when_complete(adds: list[tuple[str, int]]) -> None:
    """Whatever the clock says, a join without a deadline never times out, and it completes exactly when the
    members since it opened include every required one; the next add then opens a new join."""
    join: dict | None = None
    since_open: set[str] = set()
    for member, now in adds:
        join, state = add_to_join(join, JoinAdd("s", "j", member, None, required=("a", "b", "c"), now_ms=now))
        since_open.add(member)
        assert state.deadline_ms is None and state.members == since_open
        if since_open >= {"a", "b", "c"}:
            assert state.closed == "complete" and join is None
            since_open = set()
        else:
            assert state.closed == "" and join == {"members": sorted(since_open), "deadline": None}


def test_a_join_keeps_its_first_deadline_or_none() -> None:
    opened, _ = add_to_join(None, JoinAdd("s", "j", "a", None, required=("a", "b")))
    assert add_to_join(opened, JoinAdd("s", "j", "x", 5, required=("a", "b"), now_ms=LATER))[1] == JoinState(
        frozenset({"a", "x"}), None)
    dated, _ = add_to_join(None, JoinAdd("s", "j", "a", 5, required=("a", "b")))
    assert add_to_join(dated, JoinAdd("s", "j", "x", None, required=("a", "b"), now_ms=6))[1] == JoinState(
        frozenset({"a", "x"}), 5, "timedout")


def notes(cs: str, timeout: Any) -> list[tuple[str, str, str, str]]:
    cfg = load_config(config(completer(timeout), externals=(kv("State", cs),)))
    return [(f.path, f.rule, f.level, f.message) for f in lint(cfg, lambda path: False) if f.rule == NO_DEADLINE]


def test_lint_notes_a_join_without_a_deadline_with_its_stores_join_ttl() -> None:
    [(path, _, level, message)] = notes("mem:state", -1)
    assert (path, level) == ("processDefinitions[0].completer.completion.timeoutMs", "note")
    assert "no deadline" in message and "604800 s (its joinTtl, by default 7 days) after its last add" in message and "'State'" in message
    for cs, shown in (("sqlite:state.db?joinTtl=3600", "3600"), ("redis://h:6379/0?prefix=p&joinTtl=90", "90"),
                      ("dynamo:tableName=T,joinTtl=86400,region=eu-west-1", "86400"),
                      ("firestore:collection=C,joinTtl=${JOIN_TTL}", "${JOIN_TTL}")):
        [(_, _, _, message)] = notes(cs, 0)
        assert f"{shown} s (its joinTtl) after" in message, (cs, message)
    assert notes("mem:state", None) != [] and notes("mem:state", 3_600_000) == []


def test_describe_says_there_is_no_deadline() -> None:
    definition = load_config(config(completer(-1), externals=(kv(),))).processDefinitions[0]
    assert spec_of(definition).describe(definition.body) == ["join on head, cicdVcsHash without a deadline"]

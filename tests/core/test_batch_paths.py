"""The short paths a batch takes are the general path: same outcomes, same crossings, same state.

``Plan.run`` drives a config of one pipeline directly, without ``Plan.process``'s and
``gather``'s generator layers (what a batch of one record mostly paid for), and a call of
one record without the batch's lists. Random
configs (every process type but entwine), random events and random batch sizes from
1 up run both ways: through ``Plan.run``, and through ``Plan.process`` driven by hand,
the protocol every other caller speaks. Outcomes, every crossing and the state left
behind must be identical, observed or not.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_codegen import random_configs
from test_properties import (
    CONFIGS,
    SETTINGS,
    Recorder,
    any_events,
    make_world,
    now_ms,
    view,
)

from agglo_core import Plan, Record, compile_plan
from agglo_core.pipeline import Invocation


def through_process(plan: Plan, records: list[Record], now: int, perform: Any, observe: Any = None) -> list:
    """``Plan.process`` driven the way an adapter speaking the generator protocol drives it."""
    gen = plan.process(records, now, observe)
    try:
        effects = next(gen)
        while True:
            effects = gen.send(perform(effects))
    except StopIteration as stop:
        return stop.value


def one_pipeline(config: dict, which: int) -> dict:
    """``config`` with only its pipeline ``which`` (a plan of one pipeline takes the direct path)."""
    out = copy.deepcopy(config)
    out["pipelines"] = [out["pipelines"][which % len(out["pipelines"])]]
    return out


def split(records: list[Record], size: int) -> list[list[Record]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def run_both_ways(text: str, records: list[Record], size: int, now: int, observed: bool) -> None:
    direct, reference = Recorder(make_world()), Recorder(make_world())
    seen_direct: list[tuple] = []
    seen_reference: list[tuple] = []
    a, b = [], []
    plan_a, plan_b = compile_plan(text), compile_plan(text)
    for batch in split(records, size):
        a.append(view(plan_a.run(batch, now, direct.perform,
                                 (lambda *call: seen_direct.append(call)) if observed else None)))
        b.append(view(through_process(plan_b, batch, now, reference.perform,
                                      (lambda *call: seen_reference.append(call)) if observed else None)))
    assert repr(a) == repr(b)
    assert direct.log == reference.log  # the same effects, crossing for crossing, and the same answers
    assert repr(sorted(direct.world.kv.items(), key=repr)) == repr(sorted(reference.world.kv.items(), key=repr))
    assert seen_direct == seen_reference


# Now and then a payload that may not enter the pipelines (not an object): it fails alone, before any stage.
payloads = st.one_of(any_events(), any_events(), any_events(), st.sampled_from([[], "text", 3, None, [{"a": 1}]]))
records_strategy = st.lists(payloads, min_size=1, max_size=9).map(
    lambda payloads: [Record(f"r{i}", p) for i, p in enumerate(payloads)])


@SETTINGS
@given(config=random_configs(), which=st.integers(0, 2), records=records_strategy, size=st.integers(1, 9),
       now=now_ms, observed=st.booleans())
def test_one_pipeline_run_directly_equals_the_generator_protocol(config: dict, which: int, records: list[Record],
                                                                 size: int, now: int, observed: bool) -> None:
    run_both_ways(json.dumps(one_pipeline(config, which)), records, size, now, observed)


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), records=records_strategy, size=st.integers(1, 9), now=now_ms,
       observed=st.booleans())
def test_fixture_configs_run_equals_the_generator_protocol(name: str, records: list[Record], size: int, now: int,
                                                           observed: bool) -> None:
    run_both_ways(CONFIGS[name], records, size, now, observed)  # several of them have more than one pipeline


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), which=st.integers(0, 3), records=records_strategy,
       size=st.integers(1, 9), now=now_ms)
def test_each_fixture_pipeline_alone_equals_the_generator_protocol(name: str, which: int, records: list[Record],
                                                                   size: int, now: int) -> None:
    run_both_ways(json.dumps(one_pipeline(json.loads(CONFIGS[name]), which)), records, size, now, False)


def test_an_empty_batch_tells_the_observer_what_the_generator_protocol_does() -> None:
    text = json.dumps(one_pipeline(json.loads(CONFIGS["kitchen"]), 0))
    seen: list[tuple] = [], []
    assert compile_plan(text).run([], 1, make_world().perform, lambda *c: seen[0].append(c)) == []
    assert through_process(compile_plan(text), [], 1, make_world().perform, lambda *c: seen[1].append(c)) == []
    assert seen[0] == seen[1]


def test_an_invocation_is_shared_within_a_millisecond_and_distinct_across() -> None:
    assert Invocation.at(5) is Invocation.at(5)
    assert Invocation.at(5) == Invocation(5, True) and Invocation.at(5, False) == Invocation(5, False)
    assert Invocation.at(6) != Invocation.at(5) and Invocation.at(5, False) != Invocation.at(5)

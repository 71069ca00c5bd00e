"""``forwardState``: where agglo keeps to its own rule rather than binge's.

binge forwards the whole pipeline's aggregation state (every group of every aggregator) with each event; agglo
forwards what this event changed: its own group of each aggregator that counted it. The whole state would be a
scan of an unbounded store per event, not atomic with the update, and different between concurrent instances.
"""

from __future__ import annotations

from builders import NOW_MS, config, kv
from fakes import MemoryWorld
from hypothesis import given
from hypothesis import strategies as st
from test_properties import SETTINGS

from agglo_core import Record, compile_plan

CONFIG = config(
    {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                    "aggregation": {"key": "n", "aggregationType": "AggSum", "groupByKeys": ["g"]}}},
    {"aggregator": {"name": "Hist", "stateStore": "State", "forwardState": True,
                    "condition": {"expression": {"comparator": {"lhs": {"variable": {"name": "kind"}},
                                                                "rhs": {"literal": "a"}, "op": "Equal"}}},
                    "aggregation": {"key": "kind", "aggregationType": "AggDiscreteHistogram", "groupByKeys": ["g"]}}},
    {"aggregator": {"name": "Quiet", "stateStore": "State", "forwardState": False,
                    "aggregation": {"key": "n", "aggregationType": "AggCount"}}},
    externals=(kv(),))

events = st.lists(st.fixed_dictionaries({"g": st.sampled_from(["eu", "us", "ap"]),
                                         "n": st.integers(-100, 100), "kind": st.sampled_from(["a", "b"])}),
                  min_size=1, max_size=12)


@SETTINGS
@given(history=events, cut=st.integers(0, 12))
def test_forward_state_is_this_group(history: list[dict], cut: int) -> None:
    # binge: TestPipelinesBasic's aggregator forwards its state; binge's would hold every group of every aggregator
    plan, world = compile_plan(CONFIG), MemoryWorld()
    records = [Record(f"r{i}", e) for i, e in enumerate(history)]
    outcomes = [*plan.run(records[:cut], NOW_MS, world.perform), *plan.run(records[cut:], NOW_MS, world.perform)]
    sums: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for event, outcome in zip(history, outcomes, strict=True):
        g = event["g"]
        sums[g] = sums.get(g, 0) + event["n"]
        expected: dict = {"n:AggSum": {g: {"value": sums[g]}}}
        if event["kind"] == "a":  # the histogram counted it: its group too; otherwise nothing of it
            kinds[g] = kinds.get(g, 0) + 1
            expected["kind:AggDiscreteHistogram"] = {g: {"buckets": {"a": kinds[g]}}}
        assert outcome.outputs[0][1]["internal:aggregation:P"] == expected  # no other group, no "Quiet"
    # Every group is in the store all the same: only what an event forwards is narrower.
    stored = {key.rpartition("/")[2] for _, key in world.kv if "/Sum/" in key}
    assert stored == {f'n:AggSum["{g}"]' for g in sums}

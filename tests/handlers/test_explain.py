"""``agglo run --explain``: per process, the conditions, the changes side by side, the effects, the ending."""

from __future__ import annotations

import io

from builders import cmp, config, kv, lit, num, var

from agglo_core import compile_plan
from handlers.authoring.explain import ABSENT, changes, explain
from handlers.connectors import default_registry
from handlers.runtime.driver import Runtime


def explained(cfg: dict, *events: dict) -> tuple[int, str]:
    runtime = Runtime.build(compile_plan(cfg), default_registry(), clock=lambda: 1.7e9)
    out = io.StringIO()
    status = explain(runtime, iter(enumerate(events, 1)), "in", out)
    return status, out.getvalue()


def routing() -> dict:
    return config(
        {"annotator": {"name": "Mark", "annotations": [
            {"fieldKey": "big", "value": "yes", "condition": cmp(var("n"), "GreaterThanOrEqual", num(10))},
            {"fieldKey": "meta.seen", "value": "1"}]}},
        {"aggregator": {"name": "Total", "stateStore": "State", "forwardState": True,
                        "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
        {"continuation": {"name": "OnlyBig", "condition": cmp(var("big"), "Equal", lit("yes"))}},
        {"annotator": {"name": "Late", "annotations": [{"fieldKey": "n", "value": "again"}]}},
        externals=(kv(),))


def test_a_stopped_event_shows_conditions_changes_and_state_effects():
    status, text = explained(routing(), {"n": 3})
    assert status == 0
    assert "event 1 (in#1): {\"n\": 3}" in text
    assert "  1. Mark (annotator)\n       annotation big: n >= 10 -> false\n" in text
    assert "       key        input     output\n       meta.seen  (absent)  \"1\"\n" in text
    assert "  2. Total (aggregator)\n       effect: ApplyDeltas -> State " in text
    assert '"deltas": {"value": {"add": 3}}}: state before: {}' in text
    assert "  3. OnlyBig (continuation)\n       condition: big == 'yes' -> false\n" in text
    assert "stopped here: the event goes no further in this pipeline" in text
    assert "=> stopped at OnlyBig: no output" in text and "Late" not in text


def test_each_event_runs_in_turn_and_a_failure_is_shown_where_it_happened():
    status, text = explained(routing(), {"n": 4}, {"n": 12})
    assert status == 1
    second = text[text.index("event 2"):]
    assert "annotation big: n >= 10 -> true" in second
    assert "state before: {\"value\": 4}" in second  # the first event's change came first
    assert "internal:aggregation:P.n:AggSum.value  (absent)  16" in second
    assert "  4. Late (annotator)\n       failed: " in second
    assert "=> failed: in Late: " in second


def test_changes_compare_leaves_by_dotted_path():
    before = {"a": 1, "b": {"c": [1, 2]}, "gone": True, "same": {"x": "y"}}
    after = {"a": 1.0, "b": {"c": [1, 3], "d": {}}, "same": {"x": "y"}, "new": None}
    assert changes(before, after) == [("a", 1, 1.0), ("b.c.1", 2, 3), ("gone", True, ABSENT), ("b.d", ABSENT, {}),
                                      ("new", ABSENT, None)]

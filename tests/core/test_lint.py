"""Lint rules (``agglo_core.lint``): each with a config that triggers it and one that does not."""

from __future__ import annotations

from typing import Any

import pytest
from builders import config, external, kv

from agglo_core import load_config
from agglo_core.lint import lint


def findings(*definitions: dict, order: list[str] | None = None, allowed: tuple[str, ...] = ()) -> list[tuple]:
    cfg = load_config(config(*definitions, externals=(kv(), external("ExternalLocalFile", "Out", "out")),
                             order=order))
    return [(f.path, f.rule, f.level) for f in lint(cfg, lambda path: path in allowed)]


def messages(*definitions: dict, **kw: Any) -> list[str]:
    cfg = load_config(config(*definitions, externals=(kv(), external("ExternalLocalFile", "Out", "out")), **kw))
    return [f.message for f in lint(cfg, lambda path: False)]


def annotator(name: str, condition: Any = None) -> dict:
    annotation: dict[str, Any] = {"fieldKey": "k", "value": "v"}
    if condition is not None:
        annotation["condition"] = condition
    return {"annotator": {"name": name, "annotations": [annotation]}}


def transformer(name: str, forward: bool, specs: list[dict] | None = None) -> dict:
    return {"transformer": {"name": name, "forwardInputFields": forward, "specs": specs or []}}


def copy_spec(ttype: str = "TransformCopy", **args: Any) -> dict:
    return {"sourceField": "a", "targetField": "b", "transformation": {"transformationType": ttype, **args}}


def tee(transformer_ref: str = "") -> dict:
    return {"tee": {"name": "T", "outputConnectorRef": "Out", "transformerRef": transformer_ref}}


def aggregator(key: str, kind: str = "AggSum", groups: tuple[str, ...] = ()) -> dict:
    return {"aggregator": {"name": "Agg", "stateStore": "State",
                           "aggregation": {"key": key, "aggregationType": kind, "groupByKeys": list(groups)}}}


# --- unreachable-process ------------------------------------------------------------------------------------


def test_a_definition_no_pipeline_runs_is_unreachable() -> None:
    assert findings(annotator("A"), annotator("B"), order=["A"]) == [
        ("processDefinitions[1].annotator.name", "unreachable-process", "warning")]


def test_a_transformer_used_by_a_tee_is_reachable() -> None:
    assert findings(tee("X"), transformer("X", True), order=["T"]) == []


# --- tee-drops-every-field ------------------------------------------------------------------------------------


def test_a_tee_whose_transformer_keeps_nothing_is_flagged() -> None:
    assert findings(tee("X"), transformer("X", False), order=["T"]) == [
        ("processDefinitions[0].tee.transformerRef", "tee-drops-every-field", "warning")]


@pytest.mark.parametrize(("forward", "specs"), [(True, []), (False, [copy_spec()])])
def test_a_tee_whose_transformer_keeps_fields_is_not_flagged(forward: bool, specs: list[dict]) -> None:
    assert findings(tee("X"), transformer("X", forward, specs), order=["T"]) == []


# --- condition-never-true --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "why"), [
    ("'3' == 3", "'3' is a string and 3 is a number"),
    ("n + 1 == 'x'", "n + 1 is a number and 'x' is a string"),
    ("(a == b) == 'true'", "a == b is a boolean and 'true' is a string"),
    ("a =~ 3", "3 is a number, and regexes match strings"),
    ("a !~ '.*'", "'.*' matches every string, so !~ never holds"),
    ("x + 'a' > 1", "'a' is a string, and Addition needs numbers"),
    ("a & 1.5 == 1", "1.5 == 1 is a boolean, and And needs numbers"),
    ("(a & 1.5) == 1", "And needs integers, and 1.5 is not one"),
    ("!3 == true", "3 is a number, and LogicalNot needs a boolean"),
    ("false && x == 1", "false is never true"),
    ("'a' || 2", "'a' is a string, never true, and 2 is a number, never true"),
    ("a + 1", "its value is a number, never true"),
    ("true > false", "booleans have no order"),
    ("exists(a) && !exists(a)", "'a' cannot both exist and not exist"),
])
def test_a_condition_that_is_never_true_is_flagged_with_the_reason(condition: str, why: str) -> None:
    assert findings(annotator("A", condition)) == [
        ("processDefinitions[0].annotator.annotations[0].condition", "condition-never-true", "warning")]
    [message] = messages(annotator("A", condition))
    assert message.startswith(f"this condition is never true: {why}")


@pytest.mark.parametrize("condition", [
    "n == 3", "s != 'x'", "x =~ 'a'", "a && b", "!flag", "(a & 1) == 1", "exists(a) && !exists(b)",
    "a == b || false", "~n == -1", "-n < 0", "n + 1 > m * 2", "exists()", "", "(a == b) == true",
])
def test_a_condition_that_can_be_true_is_not_flagged(condition: str) -> None:
    assert findings(annotator("A", condition)) == []


def test_conditions_are_checked_wherever_they_are() -> None:
    spec = copy_spec()
    spec["transformation"]["condition"] = "1 == '1'"
    cont = {"continuation": {"name": "C", "condition": "1 == '1'"}}
    assert findings(transformer("X", True, [spec]), cont) == [
        ("processDefinitions[0].transformer.specs[0].transformation.condition", "condition-never-true", "warning"),
        ("processDefinitions[1].continuation.condition", "condition-never-true", "warning")]


# --- regex-matches-everything ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("regex", "keep", "effect"), [(".*", True, "does nothing"), ("", False, "drops every")])
def test_a_filter_regex_that_matches_every_key_is_flagged(regex: str, keep: bool, effect: str) -> None:
    definition = {"filter": {"name": "F", "regex": regex, "keepMatched": keep}}
    assert findings(definition) == [("processDefinitions[0].filter.regex", "regex-matches-everything", "warning")]
    assert effect in messages(definition)[0]


@pytest.mark.parametrize("regex", ["^a", ".+", "^$", "x*y"])
def test_a_filter_regex_that_can_miss_is_not_flagged(regex: str) -> None:
    assert findings({"filter": {"name": "F", "regex": regex}}) == []


def test_a_condition_regex_that_matches_every_string_is_flagged() -> None:
    assert findings(annotator("A", "n > 1 && name =~ '^'")) == [(
        "processDefinitions[0].annotator.annotations[0].condition.expression.logical.rhs.expression.comparator"
        ".rhs.literal", "regex-matches-everything", "warning")]
    assert findings(annotator("A", "n > 1 && name =~ '^a'")) == []


# --- aggregator-high-cardinality ------------------------------------------------------------------------------


@pytest.mark.parametrize(("definition", "path"), [
    (aggregator("n", groups=("kind", "requestId")), "aggregation.groupByKeys[1]"),
    (aggregator("n", groups=("event.uuid",)), "aggregation.groupByKeys[0]"),
    (aggregator("timestamp", "AggDiscreteHistogram"), "aggregation.key"),
    (aggregator("meta.createdAt", "AggDiscreteHistogram", ("kind",)), "aggregation.key"),
])
def test_state_that_grows_with_every_event_is_flagged(definition: dict, path: str) -> None:
    assert findings(definition) == [(f"processDefinitions[0].aggregator.{path}", "aggregator-high-cardinality",
                                     "warning")]


@pytest.mark.parametrize("definition", [
    aggregator("n", groups=("kind", "userId")), aggregator("status", "AggDiscreteHistogram"),
    aggregator("timestamp", "AggMax"), aggregator("format", "AggDiscreteHistogram"),
])
def test_bounded_state_is_not_flagged(definition: dict) -> None:
    assert findings(definition) == []


# --- exec-not-allowed ------------------------------------------------------------------------------------------


SPAWNER = {"spawner": {"name": "S", "job": {"runnable": {"pathToExec": "/bin/echo"}}}}
MAP_EXEC = transformer("X", True, [copy_spec("TransformMap", mapArgs={"path": "/bin/cat"}),
                                   copy_spec("TransformLeftFold", leftFoldArgs={"path": "sum"})])


def test_an_executable_off_the_allow_list_is_flagged() -> None:
    assert findings(SPAWNER, MAP_EXEC) == [
        ("processDefinitions[0].spawner.job.runnable.pathToExec", "exec-not-allowed", "warning"),
        ("processDefinitions[1].transformer.specs[0].transformation.mapArgs.path", "exec-not-allowed", "warning")]
    assert "--allow-exec /bin/echo" in messages(SPAWNER)[0]


def test_an_allowed_executable_is_not_flagged() -> None:
    assert findings(SPAWNER, MAP_EXEC, allowed=("/bin/echo", "/bin/cat")) == []

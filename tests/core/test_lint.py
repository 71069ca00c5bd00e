"""Lint rules (``agglo_core.lint``): each with a config that triggers it and one that does not."""

from __future__ import annotations

import json
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
    ("!3 == true", "3 is a number, and logical not ! (Inversion) needs a boolean"),
    ("~true == 1", "true is a boolean, and bitwise not ~ (LogicalNot) needs an integer"),
    ("~'a' == 1", "'a' is a string, and bitwise not ~ (LogicalNot) needs an integer"),
    ("~1.5 == 1", "bitwise not ~ (LogicalNot) needs an integer, and 1.5 is not one"),
    ("-true == 1", "true is a boolean, and Negation needs a number"),
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
    "~2.0 == -3", "!(n == 1)", "!(n == 1) == true", "-1.5 < n",
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


@pytest.mark.parametrize(("op", "operand", "why"), [
    ("Inversion", {"numeric": 1}, "1 is a number, and logical not ! (Inversion) needs a boolean"),
    (4, {"literal": "x"}, "'x' is a string, and logical not ! (Inversion) needs a boolean"),
    ("LogicalNot", {"expression": {"boolean": {"value": True}}},
     "true is a boolean, and bitwise not ~ (LogicalNot) needs an integer"),
    (5, {"numeric": 2.5}, "bitwise not ~ (LogicalNot) needs an integer, and 2.5 is not one"),
])
def test_a_json_unary_op_on_the_wrong_type_is_flagged_by_binge_meaning(op: Any, operand: dict, why: str) -> None:
    condition = {"expression": {"comparator": {"op": "NotEqual", "lhs": {"expression": {"unary": {
        "op": op, "rhs": operand}}}, "rhs": {"numeric": 0}}}}
    [message] = messages(annotator("A", condition))
    assert message == f"this condition is never true: {why}"


# --- binge-unary-names --------------------------------------------------------------------------------------


def noted(*definitions: dict) -> list[tuple[str, str, str, str]]:
    """The notes lint gives when it sees the config as written (JSON), with their paths and messages."""
    data = config(*definitions, externals=(kv(), external("ExternalLocalFile", "Out", "out")))
    return [(f.path, f.rule, f.level, f.message) for f in lint(load_config(data), lambda path: False, data)
            if f.level == "note"]


NOT_FLAG = {"expression": {"unary": {"op": "Inversion", "rhs": {"variable": {"name": "flag"}}}}}


def test_json_inversion_and_logical_not_get_a_note_naming_what_they_are() -> None:
    bitwise = {"expression": {"unary": {"op": 5, "rhs": {"variable": {"name": "n"}}}}}
    both = {"expression": {"logical": {"op": "LogicalAnd", "lhs": NOT_FLAG,
                                       "rhs": {"expression": {"comparator": {"op": "Equal", "lhs": bitwise,
                                                                             "rhs": {"numeric": -1}}}}}}}
    where = "processDefinitions[0].annotator.annotations[0].condition.expression"
    names = ("its unary names read the wrong way round, Inversion is logical not !, LogicalNot is bitwise "
             "not ~")
    assert noted(annotator("A", both)) == [
        (f"{where}.logical.lhs.expression.unary.op", "binge-unary-names", "note",
         f"Inversion is binge's name for logical not ! (this reads !flag): {names}"),
        (f"{where}.logical.rhs.expression.comparator.lhs.expression.unary.op", "binge-unary-names", "note",
         f"LogicalNot is binge's name for bitwise not ~ (this reads ~n): {names}"),
    ]


def test_text_conditions_and_negation_get_no_note() -> None:
    negation = {"expression": {"comparator": {"op": "LessThan", "lhs": {"expression": {"unary": {
        "op": "Negation", "rhs": {"variable": {"name": "n"}}}}}, "rhs": {"numeric": 0}}}}
    tee_body = {"tee": {"name": "T", "outputConnectorRef": "Out", "additionalBody": {"condition": NOT_FLAG}}}
    assert noted(annotator("A", "!flag && ~n == -1"), annotator("B", negation), tee_body) == []
    # Without the config as written lint cannot tell JSON from text, and gives no note.
    cfg = load_config(config(annotator("A", NOT_FLAG)))
    assert [f for f in lint(cfg, lambda path: False) if f.level == "note"] == []


def test_lint_source_notes_binge_unary_names_and_the_note_is_no_warning() -> None:
    from handlers.authoring.lint import lint_source

    data = config(annotator("A", NOT_FLAG))
    found = lint_source(json.dumps(data).encode(), frozenset())
    assert [(f.level, f.rule) for f in found] == [("note", "binge-unary-names")]


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

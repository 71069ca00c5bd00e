"""binge's unary operators, on the interpreted and the generated path: ``Inversion`` (4) is logical not,
``LogicalNot`` (5) bitwise not, as binge's ``TestNewUnaryExpressions`` pins; and the text form, where ``!``
and ``~`` say what they do. Also ``TransformCount`` of nothing, which agglo keeps at 0 where binge gives null.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from builders import NOW_MS, cmp, config, num, var
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core import Record, compile_plan
from agglo_core.codegen import compile_predicate
from agglo_core.condition_syntax import format_condition, parse_condition
from agglo_core.conditions import compile_node
from agglo_core.config import (
    BooleanExpression,
    Condition,
    Expression,
    Operand,
    UnaryExpression,
    UnaryOperator,
    Variable,
    load_config,
)
from agglo_core.ir import IR_VERSION, PlanIR, build_ir, condition_node
from handlers.authoring.fmt import format_config

PATHS = pytest.mark.parametrize("codegen", [True, False], ids=["generated", "interpreted"])


def unary(op: str | int, rhs: dict) -> dict:
    return {"expression": {"unary": {"op": op, "rhs": rhs}}}


def boolean(value: bool) -> dict:
    return {"expression": {"boolean": {"value": value}}}


def outputs(cfg: dict, events: list[dict], codegen: bool) -> list[dict]:
    """The one output of each event, run as a whole plan (generated or interpreted)."""
    plan = compile_plan(json.dumps(cfg), codegen=codegen)
    outcomes = plan.run([Record(f"r{i}", e) for i, e in enumerate(events)], NOW_MS, lambda effects: [])
    found = []
    for outcome in outcomes:
        assert outcome.errors == [], outcome.errors
        [(_, event)] = outcome.outputs
        found.append({k: v for k, v in event.items() if not k.startswith("internal:")})
    return found


def tagger(*tags: tuple[str, dict]) -> dict:
    """An annotator setting each field to "yes" when its condition holds."""
    return {"annotator": {"name": "Tag", "annotations": [
        {"fieldKey": key, "value": "yes", "condition": condition} for key, condition in tags]}}


# --- binge's TestNewUnaryExpressions ----------------------------------------------------------------------------


@PATHS
def test_new_unary_expressions(codegen: bool) -> None:
    """binge: Inversion of a boolean is its logical not, LogicalNot of an integer its bitwise not; by name
    or by proto number, on literals and on fields."""
    cfg = config(tagger(
        ("notTrue", cmp(unary("Inversion", boolean(True)), "Equal", boolean(False))),
        ("notFalse", cmp(unary(4, boolean(False)), "Equal", boolean(True))),
        ("notFlag", unary("Inversion", var("flag"))),
        ("bitwiseFive", cmp(unary("LogicalNot", num(5)), "Equal", num(-6))),
        ("bitwiseN", cmp(unary(5, var("n")), "Equal", var("expected"))),
        # Each op on the other's type has no value: the comparison is false, the logical not of it true.
        ("bitwiseFlag", cmp(unary("LogicalNot", var("flag")), "NotEqual", num(0))),
        ("notN", cmp(unary("Inversion", var("n")), "Equal", boolean(False))),
    ))
    events = [{"flag": False, "n": 0, "expected": -1}, {"flag": True, "n": -7, "expected": 6},
              {"flag": True, "n": 2**62, "expected": -(2**62) - 1}]
    tags = [{k: v for k, v in e.items() if v == "yes"} for e in outputs(cfg, events, codegen)]
    always = {"notTrue": "yes", "notFalse": "yes", "bitwiseFive": "yes", "bitwiseN": "yes"}
    assert tags == [{**always, "notFlag": "yes"}, always, always]


@PATHS
def test_inversion_negates_a_comparison_and_logical_not_never_does(codegen: bool) -> None:
    """The config binge users write to negate a test uses Inversion; LogicalNot of a boolean is no value."""
    is_x = cmp(var("kind"), "Equal", {"literal": "x"})
    cfg = config(tagger(("notX", unary("Inversion", is_x)),
                        ("bitwiseNotX", cmp(unary("LogicalNot", is_x), "Equal", boolean(True)))))
    tags = [{k: v for k, v in e.items() if v == "yes"}
            for e in outputs(cfg, [{"kind": "x"}, {"kind": "y"}, {}], codegen)]
    assert tags == [{}, {"notX": "yes"}, {"notX": "yes"}]


# --- the text form: ! and ~ mean what they say ------------------------------------------------------------------


def both_paths(text: str) -> list[Any]:
    """The interpreted and the generated predicate of a condition's text."""
    node = condition_node(parse_condition(text))
    return [compile_node(node), compile_predicate(node)]


@settings(max_examples=60, deadline=None)
@given(flag=st.booleans(), n=st.integers(min_value=-(2**63), max_value=2**63 - 1), literal=st.booleans())
def test_bang_is_logical_not_and_tilde_bitwise_not_in_text(flag: bool, n: int, literal: bool) -> None:
    event = {"flag": flag, "n": n}
    cases = {
        f"!flag == {str(not flag).lower()}": True,
        f"!flag == {str(flag).lower()}": False,
        f"!{str(literal).lower()} == {str(not literal).lower()}": True,
        f"~n == {~n}": True,
        f"~n == {n}": False,
        f"~{n} == {~n}": True,
        "~flag == 0 || ~flag != 0": False,  # bitwise not of a boolean: no value
        "!n == true || !n == false": False,  # logical not of a number: no value
    }
    for text, expected in cases.items():
        for predicate in both_paths(text):
            assert predicate(event) is expected, text
    assert parse_condition("!flag") == Condition.model_validate(unary("Inversion", var("flag")))
    assert parse_condition("~n == 1") == Condition.model_validate(cmp(unary("LogicalNot", var("n")), "Equal", num(1)))


SYMBOL = {"Inversion": "!", "LogicalNot": "~", "Negation": "-"}
LEAVES = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,4}", fullmatch=True).filter(lambda s: s not in ("true", "false", "null",
                                                                                  "exists"))
    .map(lambda name: Operand(variable=Variable(name=name))),
    st.booleans().map(lambda v: Operand(expression=Expression(boolean=BooleanExpression(value=v)))),
)


def nest(ops: list[str], leaf: Operand) -> Operand:
    for op in reversed(ops):
        leaf = Operand(expression=Expression(unary=UnaryExpression(op=UnaryOperator(op), rhs=leaf)))
    return leaf


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.sampled_from(sorted(SYMBOL)), min_size=1, max_size=6), leaf=LEAVES)
def test_unary_chains_print_as_their_symbols_and_parse_back(ops: list[str], leaf: Operand) -> None:
    condition = Condition(expression=nest(ops, leaf).expression)
    text = format_condition(condition)
    assert "".join(ch for ch in text if ch in "!~-") == "".join(SYMBOL[op] for op in ops), text
    assert parse_condition(text) == condition, text


def test_a_plan_compiled_when_the_unary_ops_meant_the_opposite_is_not_read() -> None:
    """IR version 2 read Inversion as bitwise not: such an artefact is refused (and the config validated)."""
    cfg = config(tagger(("notFlag", unary("Inversion", var("flag")))))
    data = build_ir(load_config(json.dumps(cfg))).to_data()
    assert data["version"] == IR_VERSION > 2
    with pytest.raises(ValueError, match=f"IR version 2 is not {IR_VERSION}"):
        PlanIR.from_data({**data, "version": 2})


def test_fmt_writes_the_enum_binge_would_use() -> None:
    cfg = config({"continuation": {"name": "C", "condition": "!flag && ~n == -1"}})
    as_ast = json.loads(format_config(json.dumps(cfg).encode(), "ast"))
    condition = as_ast["processDefinitions"][0]["continuation"]["condition"]["expression"]["logical"]
    assert condition["lhs"]["expression"]["unary"]["op"] == "Inversion"
    assert condition["rhs"]["expression"]["comparator"]["lhs"]["expression"]["unary"]["op"] == "LogicalNot"
    back = json.loads(format_config(json.dumps(as_ast).encode(), "string"))
    assert back["processDefinitions"][0]["continuation"]["condition"] == "!flag && ~n == -1"


# --- TransformCount of nothing -----------------------------------------------------------------------------------


@PATHS
def test_transform_count_empty_list(codegen: bool) -> None:
    """agglo keeps 0 where binge gives null: a count of nothing is 0, and null would read as "no such field"."""
    count = {"transformer": {"name": "T", "forwardInputFields": True, "specs": [
        {"sourceField": "v", "targetField": "count", "transformation": {"transformationType": "TransformCount"}}]}}
    found = outputs(config(count), [{"v": []}, {"v": {}}, {"v": [None]}, {"v": {"a": None}}], codegen)
    assert [e["count"] for e in found] == [0, 0, 1, 1]
    assert all(type(e["count"]) is int for e in found)

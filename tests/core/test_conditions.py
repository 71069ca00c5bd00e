"""Conditions (``agglo_core.conditions``) and the dotted paths they read (``agglo_core.paths``).

Conditions are built the way a config spells them (JSON dicts validated into
``agglo_core.config.Condition``) and compiled with ``compile_condition``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agglo_core.conditions import compile_condition
from agglo_core.config import Condition
from agglo_core.errors import StageError
from agglo_core.paths import MISSING, PathError, compile_getter, get_path, set_path, split_path

# --- builders: a condition as a config would spell it ------------------------------------------


def var(name: str) -> dict:
    return {"variable": {"name": name}}


def lit(text: str) -> dict:
    return {"literal": text}


def num(n: int | float) -> dict:
    return {"numeric": n}


def const(value: Any) -> dict:
    """A literal or numeric operand holding ``value``."""
    return lit(value) if isinstance(value, str) else num(value)


def sub(expression: dict) -> dict:
    """An operand that is a nested expression."""
    return {"expression": expression}


def cmp(op: str | int, lhs: dict, rhs: dict) -> dict:
    return {"comparator": {"op": op, "lhs": lhs, "rhs": rhs}}


def logical(op: str, lhs: dict, rhs: dict) -> dict:
    return {"logical": {"op": op, "lhs": sub(lhs), "rhs": sub(rhs)}}


def binary(op: str, lhs: dict, rhs: dict) -> dict:
    return {"binary": {"op": op, "lhs": lhs, "rhs": rhs}}


def unary(op: str, rhs: dict) -> dict:
    return {"unary": {"op": op, "rhs": rhs}}


def boolean(value: bool) -> dict:
    return {"boolean": {"value": value}}


def where(expression: dict) -> dict:
    """A condition made of one expression."""
    return {"expression": expression}


def exists(*ops: tuple[str, str]) -> dict:
    return {"exists": {"ops": [{"key": key, "op": op} for key, op in ops]}}


def holds(condition: dict | None, event: dict) -> bool:
    """Whether ``condition`` (None: absent) is true for ``event``; an absent predicate means true."""
    model = None if condition is None else Condition.model_validate(condition)
    predicate = compile_condition(model)
    if predicate is None:
        return True
    result = predicate(event)
    assert type(result) is bool, f"a predicate must return a bool, got {result!r}"
    return result


# --- comparisons, evaluated in every operand shape -----------------------------------------------

ORDERING = ["GreaterThan", "LessThan", "GreaterThanOrEqual", "LessThanOrEqual"]
COMPARATORS = [*ORDERING, "Equal", "NotEqual"]
MIRROR = {"GreaterThan": "LessThan", "LessThan": "GreaterThan", "GreaterThanOrEqual": "LessThanOrEqual",
          "LessThanOrEqual": "GreaterThanOrEqual", "Equal": "Equal", "NotEqual": "NotEqual"}


def _constable(value: Any) -> bool:
    return type(value) in (str, int, float)


def compare(op: str, a: Any, b: Any) -> bool:
    """``a op b`` evaluated with variables, literals, nested paths and mirrored; all shapes must agree."""
    shapes = {
        "var-var": holds(where(cmp(op, var("a"), var("b"))), {"a": a, "b": b}),
        "nested": holds(where(cmp(op, var("p.q.1.a"), var("r.b"))),
                        {"p": {"q": [None, {"a": a}]}, "r": {"b": b}}),
        "mirrored": holds(where(cmp(MIRROR[op], var("b"), var("a"))), {"a": a, "b": b}),
    }
    if _constable(b):
        shapes["var-const"] = holds(where(cmp(op, var("a"), const(b))), {"a": a})
        shapes["nested-const"] = holds(where(cmp(op, var("x.0.y"), const(b))), {"x": [{"y": a}]})
    if _constable(a):
        shapes["const-var"] = holds(where(cmp(op, const(a), var("b"))), {"b": b})
    if _constable(a) and _constable(b):
        shapes["const-const"] = holds(where(cmp(op, const(a), const(b))), {})
    assert len(set(shapes.values())) == 1, f"operand shapes disagree on {a!r} {op} {b!r}: {shapes}"
    return shapes["var-var"]


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    (2, "GreaterThan", 1, True),
    (1, "GreaterThan", 1, False),
    (1, "GreaterThanOrEqual", 1, True),
    (0, "GreaterThanOrEqual", 1, False),
    (1, "LessThan", 2, True),
    (2, "LessThan", 2, False),
    (2, "LessThanOrEqual", 2, True),
    (3, "LessThanOrEqual", 2, False),
    (1, "Equal", 1, True),
    (1, "Equal", 2, False),
    (1, "NotEqual", 2, True),
    (1, "NotEqual", 1, False),
    (-3, "LessThan", -2, True),
    (0, "Equal", 0, True),
])
def test_integer_comparisons(a: int, op: str, b: int, expected: bool) -> None:
    assert compare(op, a, b) is expected


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    (1, "Equal", 1.0, True),
    (1.0, "Equal", 1, True),
    (1, "NotEqual", 1.0, False),
    (1.5, "GreaterThan", 1, True),
    (1, "LessThan", 1.5, True),
    (-0.5, "LessThan", 0, True),
    (0.0, "Equal", -0.0, True),
    (2.5, "GreaterThanOrEqual", 2.5, True),
    (2.5, "LessThanOrEqual", 2.4999, False),
    (1e300, "GreaterThan", 10**299, True),
])
def test_int_and_float_mix(a: float, op: str, b: float, expected: bool) -> None:
    assert compare(op, a, b) is expected


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    (2**53 + 1, "Equal", 2**53, False),
    (2**53 + 1, "GreaterThan", 2**53, True),
    (2**53 + 1, "Equal", float(2**53), False),
    (2**53 + 1, "NotEqual", float(2**53), True),
    (2**53 + 1, "GreaterThan", float(2**53), True),
    (2**63 + 1, "Equal", 2**63 + 1, True),
    (2**64 + 1, "NotEqual", 2**64, True),
    (10**30 + 1, "GreaterThan", 10**30, True),
    (-(10**30) - 1, "LessThan", -(10**30), True),
    (12345678901234567890123456789, "Equal", 12345678901234567890123456789, True),
])
def test_large_integers_compare_exactly(a: int, op: str, b: int | float, expected: bool) -> None:
    assert compare(op, a, b) is expected


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    ("abc", "Equal", "abc", True),
    ("abc", "Equal", "ABC", False),
    ("abc", "NotEqual", "abd", True),
    ("abc", "NotEqual", "abc", False),
    ("abc", "LessThan", "abd", True),
    ("b", "GreaterThan", "abc", True),
    ("", "LessThan", "a", True),
    ("ab", "GreaterThan", "a", True),
    ("ab", "GreaterThanOrEqual", "ab", True),
    ("ab", "LessThanOrEqual", "aa", False),
    ("10", "LessThan", "9", True),  # strings, not numbers
    ("B", "LessThan", "a", True),  # code point order: 'B' (66) < 'a' (97)
    ("é", "GreaterThan", "z", True),  # U+00E9 > U+007A
    ("\U0001f600", "GreaterThan", "\uffff", True),  # code points, not UTF-16 units
    ("\U0001f600", "GreaterThan", "\ufb01", True),
])
def test_string_comparisons_by_code_point(a: str, op: str, b: str, expected: bool) -> None:
    assert compare(op, a, b) is expected


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    (True, "Equal", True, True),
    (False, "Equal", False, True),
    (True, "Equal", False, False),
    (True, "NotEqual", False, True),
    (False, "NotEqual", False, False),
    *[(a, op, b, False) for op in ORDERING for a in (True, False) for b in (True, False)],
])
def test_booleans_compare_for_equality_only(a: bool, op: str, b: bool, expected: bool) -> None:
    assert compare(op, a, b) is expected


def test_null_equals_null() -> None:
    assert compare("Equal", None, None) is True
    assert compare("NotEqual", None, None) is False
    assert not any(compare(op, None, None) for op in ORDERING)


@pytest.mark.parametrize(("a", "b", "equal"), [
    ([1, 2], [1, 2], True),
    ([1, 2], [2, 1], False),
    ({"k": "v"}, {"k": "v"}, True),
    ({"k": 1}, {"k": 1.0}, True),
    ({"k": 1}, {"k": 2}, False),
    # Inside containers values still compare by JSON type: true is not 1.
    ([True], [1], False),
    ({"k": False}, {"k": 0}, False),
    ([[1, True]], [[1, 1]], False),
])
def test_lists_and_maps_compare_for_equality_by_json_type(a: Any, b: Any, equal: bool) -> None:
    assert compare("Equal", a, b) is equal
    assert compare("NotEqual", a, b) is (not equal)


# One value of each JSON type (two for numbers); any two of different types never compare.
REPRESENTATIVES = {"int": 1, "float": 0.0, "string": "1", "true": True, "false": False, "null": None,
                   "list": [1], "map": {"1": 1}, "empty-string": "", "zero": 0}
JSON_TYPE = {"int": "number", "float": "number", "zero": "number", "string": "string",
             "empty-string": "string", "true": "boolean", "false": "boolean", "null": "null",
             "list": "list", "map": "map"}
CROSS_TYPE = [(x, y) for x in REPRESENTATIVES for y in REPRESENTATIVES if JSON_TYPE[x] != JSON_TYPE[y]]


@pytest.mark.parametrize(("left", "right"), CROSS_TYPE, ids=[f"{x}-{y}" for x, y in CROSS_TYPE])
def test_comparison_across_json_types_is_false(left: str, right: str) -> None:
    a, b = REPRESENTATIVES[left], REPRESENTATIVES[right]
    for op in COMPARATORS:
        assert compare(op, a, b) is False, f"{a!r} {op} {b!r}"


def test_true_is_not_one_and_false_is_not_zero() -> None:
    assert holds(where(cmp("Equal", var("flag"), num(1))), {"flag": True}) is False
    assert holds(where(cmp("Equal", var("flag"), num(0))), {"flag": False}) is False
    assert holds(where(cmp("NotEqual", var("flag"), num(1))), {"flag": True}) is False
    assert holds(where(cmp("Equal", num(1), var("flag"))), {"flag": True}) is False


@given(st.integers(), st.integers())
def test_integer_ordering_matches_arithmetic(a: int, b: int) -> None:
    expected = {"GreaterThan": a > b, "LessThan": a < b, "GreaterThanOrEqual": a >= b,
                "LessThanOrEqual": a <= b, "Equal": a == b, "NotEqual": a != b}
    for op, want in expected.items():
        assert compare(op, a, b) is want


@given(st.floats(allow_nan=False), st.one_of(st.integers(), st.floats(allow_nan=False)))
def test_float_ordering_matches_arithmetic(a: float, b: float) -> None:
    assert compare("LessThan", a, b) is (a < b)
    assert compare("Equal", a, b) is (a == b)
    assert compare("NotEqual", a, b) is (a != b)


@given(st.text(), st.text())
def test_string_ordering_is_code_point_order(a: str, b: str) -> None:
    by_code_points = [ord(c) for c in a] < [ord(c) for c in b]
    assert compare("LessThan", a, b) is by_code_points
    assert compare("Equal", a, b) is (a == b)


# --- missing variables -----------------------------------------------------------------------------

ABSENT = [
    pytest.param({}, "x", id="absent-key"),
    pytest.param({"a": {}}, "a.b", id="absent-nested-key"),
    pytest.param({"a": "text"}, "a.b", id="through-a-string"),
    pytest.param({"a": [1, 2]}, "a.2", id="index-past-end"),
    pytest.param({"a": [1, 2]}, "a.b", id="key-into-list"),
    pytest.param({"a": {"b": [{"c": 1}]}}, "a.b.0.d", id="deep"),
    pytest.param({"a": None}, "a.b", id="through-null"),
]


@pytest.mark.parametrize(("event", "path"), ABSENT)
@pytest.mark.parametrize("op", COMPARATORS)
@pytest.mark.parametrize("other", [1, "x", 0.5])
def test_comparison_with_a_missing_variable_is_false(event: dict, path: str, op: str, other: Any) -> None:
    assert holds(where(cmp(op, var(path), const(other))), event) is False
    assert holds(where(cmp(op, const(other), var(path))), event) is False
    assert holds(where(cmp(op, var(path), var("present"))), {**event, "present": other}) is False


@pytest.mark.parametrize("op", COMPARATORS)
def test_two_missing_variables_do_not_compare_equal(op: str) -> None:
    assert holds(where(cmp(op, var("nope"), var("nada"))), {}) is False


@pytest.mark.parametrize("op", ["RegexMatch", "RegexNotMatch"])
def test_regex_on_a_missing_variable_is_false(op: str) -> None:
    assert holds(where(cmp(op, var("x"), lit("."))), {}) is False
    assert holds(where(cmp(op, var("x"), lit("^$"))), {"y": ""}) is False


# --- regular expressions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "pattern", "matches"), [
    ("hello world", "wor", True),  # unanchored: a search, not a full match
    ("hello world", "^wor", False),
    ("hello world", "^hello", True),
    ("hello world", "world$", True),
    ("hello world", "^world", False),
    ("hello", "hello world", False),
    ("abc123", r"\d+", True),
    ("abc", r"\d", False),
    ("", "^$", True),
    ("anything", "", True),
    ("multi\nline", "^line", False),
    ("Foo", "(?i)foo", True),
    ("café", "é$", True),
])
def test_regex_match_searches_anywhere(text: str, pattern: str, matches: bool) -> None:
    event = {"s": text, "p": pattern, "n": {"s": [text]}}
    assert holds(where(cmp("RegexMatch", var("s"), lit(pattern))), event) is matches
    assert holds(where(cmp("RegexNotMatch", var("s"), lit(pattern))), event) is (not matches)
    # The pattern can come from the event too, and the text from a nested path.
    assert holds(where(cmp("RegexMatch", var("n.s.0"), var("p"))), event) is matches
    assert holds(where(cmp("RegexNotMatch", var("s"), var("p"))), event) is (not matches)
    assert holds(where(cmp("RegexMatch", lit(text), lit(pattern))), {}) is matches


@pytest.mark.parametrize("value", [123, 1.5, True, None, ["abc"], {"a": "abc"}])
@pytest.mark.parametrize("op", ["RegexMatch", "RegexNotMatch"])
def test_regex_on_a_non_string_is_false(value: Any, op: str) -> None:
    # ".*" would match the text of any of these values; they are not strings, so no match either way.
    assert holds(where(cmp(op, var("v"), lit(".*"))), {"v": value}) is False
    assert holds(where(cmp(op, var("v"), lit("1"))), {"v": value}) is False


@pytest.mark.parametrize("pattern", [123, None, True, ["a"]])
@pytest.mark.parametrize("op", ["RegexMatch", "RegexNotMatch"])
def test_regex_with_a_non_string_pattern_is_false(pattern: Any, op: str) -> None:
    assert holds(where(cmp(op, var("s"), var("p"))), {"s": "abc", "p": pattern}) is False


@pytest.mark.parametrize("op", ["RegexMatch", "RegexNotMatch"])
def test_regex_from_the_event_that_does_not_compile_is_false(op: str) -> None:
    assert holds(where(cmp(op, var("s"), var("p"))), {"s": "a(b", "p": "a(b"}) is False


def test_dynamic_patterns_are_not_confused_with_each_other() -> None:
    predicate = compile_condition(Condition.model_validate(where(cmp("RegexMatch", var("s"), var("p")))))
    assert predicate is not None
    for i in range(300):  # more patterns than any cache holds
        assert predicate({"s": f"x{i}y", "p": f"^x{i}y$"}) is True
        assert predicate({"s": f"x{i}y", "p": f"^x{i + 1}y$"}) is False


# --- logical operators ----------------------------------------------------------------------------


@pytest.mark.parametrize("a", [True, False])
@pytest.mark.parametrize("b", [True, False])
def test_logical_truth_tables(a: bool, b: bool) -> None:
    assert holds(where(logical("LogicalAnd", boolean(a), boolean(b))), {}) is (a and b)
    assert holds(where(logical("LogicalOr", boolean(a), boolean(b))), {}) is (a or b)
    assert holds(where(unary("Inversion", sub(boolean(a)))), {}) is (not a)


@pytest.mark.parametrize(("x", "expected"), [(1, True), (2, True), (3, False)])
def test_logical_or_is_a_real_or(x: int, expected: bool) -> None:
    either = logical("LogicalOr", cmp("Equal", var("x"), num(1)), cmp("Equal", var("x"), num(2)))
    assert holds(where(either), {"x": x}) is expected


def test_logical_or_by_proto_number() -> None:
    either = {"logical": {"op": 18, "lhs": sub(boolean(False)), "rhs": sub(boolean(True))}}
    assert holds(where(either), {}) is True


@pytest.mark.parametrize("missing_first", [True, False], ids=["missing-lhs", "missing-rhs"])
@pytest.mark.parametrize(("x", "expected_or", "expected_and"), [(2, True, False), (3, False, False)])
def test_missing_variable_only_falsifies_its_own_comparison(missing_first: bool, x: int,
                                                            expected_or: bool, expected_and: bool) -> None:
    missing = cmp("Equal", var("missing"), num(1))
    present = cmp("Equal", var("x"), num(2))
    lhs, rhs = (missing, present) if missing_first else (present, missing)
    assert holds(where(logical("LogicalOr", lhs, rhs)), {"x": x}) is expected_or
    assert holds(where(logical("LogicalAnd", lhs, rhs)), {"x": x}) is expected_and


def test_not_of_a_comparison_with_a_missing_variable_is_true() -> None:
    assert holds(where(unary("Inversion", sub(cmp("Equal", var("missing"), num(1))))), {}) is True
    assert holds(where(unary("Inversion", sub(cmp("NotEqual", var("missing"), num(1))))), {}) is True


@pytest.mark.parametrize(("event", "expected"), [
    ({"a": 2, "b": 4, "c": "x"}, True),  # (a > 1 AND b < 5)
    ({"a": 0, "b": 4, "c": "y"}, True),  # NOT (c == "x")
    ({"a": 0, "b": 4, "c": "x"}, False),
    ({"a": 2, "b": 9, "c": "x"}, False),
    ({"b": 4}, True),  # a missing: left side false; c missing: c == "x" false, so NOT is true
    ({"a": 2, "b": 4}, True),
])
def test_nested_logical_expressions(event: dict, expected: bool) -> None:
    both = logical("LogicalAnd", cmp("GreaterThan", var("a"), num(1)), cmp("LessThan", var("b"), num(5)))
    not_x = unary("Inversion", sub(cmp("Equal", var("c"), lit("x"))))
    assert holds(where(logical("LogicalOr", both, not_x)), event) is expected


def test_boolean_valued_variables_are_logical_operands() -> None:
    condition = where({"logical": {"op": "LogicalAnd", "lhs": var("on"), "rhs": var("ready")}})
    assert holds(condition, {"on": True, "ready": True}) is True
    assert holds(condition, {"on": True, "ready": False}) is False
    assert holds(condition, {"on": True}) is False
    either = where({"logical": {"op": "LogicalOr", "lhs": var("missing"), "rhs": var("ready")}})
    assert holds(either, {"ready": True}) is True


@pytest.mark.parametrize("value", [True, False])
def test_boolean_literal(value: bool) -> None:
    assert holds(where(boolean(value)), {}) is value
    assert holds(where(boolean(value)), {"anything": 1}) is value


def test_boolean_literal_defaults_to_false() -> None:
    assert holds(where({"boolean": {}}), {}) is False


def test_a_non_boolean_expression_is_not_a_true_condition() -> None:
    assert holds(where(binary("Addition", num(1), num(1))), {}) is False
    assert holds(where(unary("Negation", num(-1))), {}) is False


# --- arithmetic and bitwise operators -----------------------------------------------------------------


ARITHMETIC = [
    ("Addition", 2, 3, 5),
    ("Addition", 2.5, 0.5, 3),
    ("Addition", -1, 1, 0),
    ("Subtract", 2, 5, -3),
    ("Subtract", 1.5, 0.25, 1.25),
    ("Multiply", 4, 2.5, 10),
    ("Multiply", -3, 3, -9),
    ("Divide", 7, 2, 3.5),
    ("Divide", 6, 3, 2),
    ("Divide", 1, 4, 0.25),
    ("Power", 2, 10, 1024),
    ("Power", 2, -1, 0.5),
    ("Power", 9, 0.5, 3),
    ("Modulus", 7, 3, 1),
    ("Modulus", 7.5, 2, 1.5),
    ("RightShift", 256, 4, 16),
    ("LeftShift", 1, 10, 1024),
    ("Or", 12, 3, 15),
    ("And", 12, 10, 8),
    ("Xor", 12, 10, 6),
    # Integers keep their precision through arithmetic.
    ("Addition", 2**53, 1, 2**53 + 1),
    ("Subtract", 2**63 + 1, 1, 2**63),
    ("Multiply", 2**62, 4, 2**64),
    ("LeftShift", 1, 70, 2**70),
    ("Xor", 2**64 + 1, 1, 2**64),
    ("Power", 10, 20, 10**20),
]


@pytest.mark.parametrize(("op", "a", "b", "result"), ARITHMETIC, ids=[f"{o}-{a}-{b}" for o, a, b, _ in ARITHMETIC])
def test_binary_operators(op: str, a: Any, b: Any, result: Any) -> None:
    from_vars = binary(op, var("a"), var("b"))
    from_consts = binary(op, num(a), num(b))
    event = {"a": a, "b": b}
    for operand in (from_vars, from_consts):
        assert holds(where(cmp("Equal", sub(operand), num(result))), event) is True
        assert holds(where(cmp("NotEqual", sub(operand), num(result))), event) is False
        assert holds(where(cmp("LessThan", sub(operand), num(result + 1))), event) is True
    # An off-by-one result must not pass (guards against precision loss in the big cases).
    assert holds(where(cmp("Equal", sub(from_vars), num(result + 1))), event) is False


def test_nested_arithmetic() -> None:
    # (a + b) * 2 - c ** 2 == 5 for a=3, b=4, c=3
    total = binary("Multiply", sub(binary("Addition", var("a"), var("b"))), num(2))
    expression = binary("Subtract", sub(total), sub(binary("Power", var("c"), num(2))))
    assert holds(where(cmp("Equal", sub(expression), num(5))), {"a": 3, "b": 4, "c": 3}) is True
    assert holds(where(cmp("Equal", sub(expression), num(5))), {"a": 3, "b": 4, "c": 2}) is False


NO_VALUE = [
    ("Addition", "a", 1),
    ("Addition", "a", "b"),  # no string concatenation
    ("Addition", True, 1),
    ("Addition", None, 1),
    ("Addition", [1], [2]),
    ("Multiply", "ab", 2),  # no string repetition
    ("Multiply", [1], 2),  # no list repetition
    ("Subtract", {"a": 1}, 1),
    ("Divide", 1, 0),
    ("Divide", 1.5, 0),
    ("Divide", 0, 0.0),
    ("Modulus", 1, 0),
    ("Modulus", 1.5, 0.0),
    ("Power", 0, -1),
    ("Power", -8, 0.5),  # not a real number
    ("Power", "2", 2),
    ("RightShift", 1.5, 1),
    ("LeftShift", 1, 0.5),
    ("LeftShift", 1, -1),
    ("Or", 1.5, 1),
    ("And", 1, 2.5),
    ("Xor", "1", 1),
    ("Or", True, 1),
    ("And", True, False),
]


def _no_value_expected(operand: dict, event: dict) -> None:
    """A valueless operand makes every comparison false, while logic around it still works."""
    for op in COMPARATORS:
        for other in (0, 1, -1, "a", 0.5):
            assert holds(where(cmp(op, operand, const(other))), event) is False, (op, other)
            assert holds(where(cmp(op, const(other), operand)), event) is False, (op, other)
    assert holds(where(cmp("Equal", operand, operand)), event) is False
    assert holds(where(cmp("RegexMatch", operand, lit(""))), event) is False
    assert holds(where(unary("Inversion", sub(cmp("Equal", operand, num(0))))), event) is True
    assert holds(where(logical("LogicalOr", cmp("Equal", operand, num(0)), boolean(True))), event) is True


@pytest.mark.parametrize(("op", "a", "b"), NO_VALUE, ids=[f"{o}-{a!r}-{b!r}" for o, a, b in NO_VALUE])
def test_binary_operator_without_a_value_makes_comparisons_false(op: str, a: Any, b: Any) -> None:
    _no_value_expected(sub(binary(op, var("a"), var("b"))), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Addition", "Subtract", "Multiply", "Divide", "Power", "Modulus",
                                "RightShift", "LeftShift", "Or", "And", "Xor"])
def test_binary_operator_on_a_missing_variable_has_no_value(op: str) -> None:
    _no_value_expected(sub(binary(op, var("missing"), num(1))), {})
    _no_value_expected(sub(binary(op, num(1), var("missing"))), {})


@pytest.mark.parametrize(("op", "a", "b"), [
    ("Power", 10.0, 400),  # float overflow
    ("Power", 10**400, 0.5),  # an int too large for a float
    ("Divide", 10**400, 3),
    ("Addition", 10**400, 0.5),
    ("Multiply", 1e308, 10),
    ("Modulus", 10**400, 1.5),
    ("LeftShift", 1, 10**6),
    ("RightShift", 1, 10**30),
])
def test_overflow_never_raises(op: str, a: Any, b: Any) -> None:
    operand = sub(binary(op, var("a"), var("b")))
    for comparator in COMPARATORS:
        for other in (0, 1e308, 10**400):
            assert holds(where(cmp(comparator, operand, num(other))), {"a": a, "b": b}) in (True, False)


def test_no_value_propagates_through_nested_arithmetic() -> None:
    inner = binary("Divide", var("a"), num(0))
    _no_value_expected(sub(binary("Addition", sub(inner), num(1))), {"a": 1})
    _no_value_expected(sub(unary("Negation", sub(inner))), {"a": 1})


@pytest.mark.parametrize(("op", "value", "result"), [
    ("Negation", 5, -5),
    ("Negation", -2.5, 2.5),
    ("Negation", 0, 0),
    ("Negation", 2**64 + 1, -(2**64) - 1),
    ("LogicalNot", 5, -6),
    ("LogicalNot", 0, -1),
    ("LogicalNot", -1, 0),
    ("LogicalNot", 2**64, -(2**64) - 1),
])
def test_unary_arithmetic(op: str, value: Any, result: Any) -> None:
    for operand in (var("v"), num(value)):
        expression = sub(unary(op, operand))
        assert holds(where(cmp("Equal", expression, num(result))), {"v": value}) is True
        assert holds(where(cmp("Equal", expression, num(result + 1))), {"v": value}) is False


@pytest.mark.parametrize(("op", "value"), [
    ("Negation", "5"),
    ("Negation", True),
    ("Negation", None),
    ("Negation", [1]),
    ("LogicalNot", 1.5),
    ("LogicalNot", "1"),
    ("LogicalNot", True),
    ("Inversion", 1),
    ("Inversion", "true"),
    ("Inversion", None),
])
def test_unary_operator_without_a_value_makes_comparisons_false(op: str, value: Any) -> None:
    _no_value_expected(sub(unary(op, var("v"))), {"v": value})


def test_unary_on_a_missing_variable_has_no_value() -> None:
    for op in ("Negation", "LogicalNot", "Inversion"):
        _no_value_expected(sub(unary(op, var("missing"))), {})


def test_logical_not_of_a_boolean_variable() -> None:
    condition = where(unary("Inversion", var("flag")))
    assert holds(condition, {"flag": False}) is True
    assert holds(condition, {"flag": True}) is False
    assert holds(condition, {}) is False


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)
BINARY_OPS = ["Addition", "Subtract", "Multiply", "Divide", "Power", "Modulus", "RightShift", "LeftShift",
              "Or", "And", "Xor"]


@given(st.sampled_from(BINARY_OPS), JSON, JSON, st.sampled_from(COMPARATORS), JSON)
def test_operators_never_raise(op: str, a: Any, b: Any, comparator: str, other: Any) -> None:
    expression = sub(binary(op, var("a"), var("b")))
    assert holds(where(cmp(comparator, expression, var("c"))), {"a": a, "b": b, "c": other}) in (True, False)
    for unary_op in ("Negation", "LogicalNot", "Inversion"):
        assert holds(where(cmp(comparator, sub(unary(unary_op, var("a"))), var("c"))),
                     {"a": a, "c": other}) in (True, False)


@given(st.sampled_from(COMPARATORS), JSON, JSON)
def test_comparisons_of_any_json_values_never_raise(op: str, a: Any, b: Any) -> None:
    assert compare(op, a, b) in (True, False)


@given(JSON, JSON)
def test_not_equal_is_the_negation_of_equal_within_a_json_type(a: Any, b: Any) -> None:
    equal, not_equal = compare("Equal", a, b), compare("NotEqual", a, b)
    assert not (equal and not_equal)
    if type(a) is type(b) or (type(a) in (int, float) and type(b) in (int, float)):
        if type(a) not in (list, dict):
            assert equal is (a == b)
        assert not_equal is (not equal)


# --- exists ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 0, "", "text", False, True, None, [], [1], {}, {"k": "v"}, 0.0],
                         ids=repr)
def test_exists_is_true_for_any_present_value(value: Any) -> None:
    event = {"k": value, "n": {"l": [{"k": value}]}}
    assert holds(exists(("k", "Exists")), event) is True
    assert holds(exists(("k", "NotExists")), event) is False
    assert holds(exists(("n.l.0.k", "Exists")), event) is True
    assert holds(exists(("n.l.0.k", "NotExists")), event) is False


@pytest.mark.parametrize(("event", "path"), ABSENT)
def test_exists_is_false_for_a_missing_path(event: dict, path: str) -> None:
    assert holds(exists((path, "Exists")), event) is False
    assert holds(exists((path, "NotExists")), event) is True


@pytest.mark.parametrize(("ops", "expected"), [
    ([("a", "Exists"), ("b", "Exists")], True),
    ([("a", "Exists"), ("c", "Exists")], False),
    ([("c", "Exists"), ("a", "Exists")], False),
    ([("a", "Exists"), ("c", "NotExists")], True),
    ([("a", "Exists"), ("b", "NotExists")], False),
    ([("c", "NotExists"), ("d", "NotExists"), ("x.y", "Exists")], True),
    ([("c", "NotExists"), ("d", "NotExists"), ("x.z", "Exists")], False),
    ([("a", "Exists"), ("b", "Exists"), ("x", "Exists"), ("x.y", "NotExists")], False),
])
def test_several_exists_ops_combine_with_and(ops: list[tuple[str, str]], expected: bool) -> None:
    assert holds(exists(*ops), {"a": 1, "b": None, "x": {"y": []}}) is expected


def test_exists_by_proto_number() -> None:
    condition = {"exists": {"ops": [{"key": "a", "op": 1}, {"key": "b", "op": 2}]}}
    assert holds(condition, {"a": 1}) is True
    assert holds(condition, {"a": 1, "b": 2}) is False


def test_exists_in_binge_test_config_shape() -> None:
    # From binge's test-basic_pipeline.json: author and hash present, githash absent.
    condition = exists(("author", "Exists"), ("hash", "Exists"), ("githash", "NotExists"))
    assert holds(condition, {"author": "k", "hash": "abc"}) is True
    assert holds(condition, {"author": "k", "hash": "abc", "githash": "abc"}) is False
    assert holds(condition, {"author": "k"}) is False


# --- empty and absent conditions --------------------------------------------------------------------


def test_absent_condition_is_always_true() -> None:
    assert compile_condition(None) is None


def test_empty_condition_is_always_true() -> None:
    assert compile_condition(Condition.model_validate({})) is None
    assert holds({}, {}) is True
    assert holds({}, {"x": 1}) is True


def test_exists_without_ops_is_always_true() -> None:
    assert holds({"exists": {}}, {}) is True
    assert holds({"exists": {"ops": []}}, {"a": 1}) is True


def test_a_compiled_condition_is_reusable_and_pure() -> None:
    predicate = compile_condition(Condition.model_validate(where(cmp("GreaterThan", var("a.b"), num(1)))))
    assert predicate is not None
    event = {"a": {"b": 2}}
    snapshot = copy.deepcopy(event)
    assert [predicate(event), predicate({"a": {"b": 0}}), predicate(event)] == [True, False, True]
    assert event == snapshot


# --- comparator operators by proto number -----------------------------------------------------------


@pytest.mark.parametrize(("number", "name"), [(19, "GreaterThan"), (20, "LessThan"), (21, "GreaterThanOrEqual"),
                                              (22, "LessThanOrEqual"), (23, "Equal"), (24, "NotEqual")])
@pytest.mark.parametrize(("a", "b"), [(1, 2), (2, 2), (3, 2), ("a", "b")])
def test_comparators_by_proto_number_match_names(number: int, name: str, a: Any, b: Any) -> None:
    assert holds(where(cmp(number, var("a"), const(b))), {"a": a}) is compare(name, a, b)


# --- paths -------------------------------------------------------------------------------------------------

EVENT = {
    "a": {"b": [{"c": 1}, {"c": [10, 20]}], "0": "zero-key", "n": None},
    "top": "t",
    "list": [[1, 2], [3, [4, 5]]],
    "dotted": {"": {"x": 1}},
}


@pytest.mark.parametrize(("path", "expected"), [
    ("top", "t"),
    ("a.n", None),
    ("a.0", "zero-key"),  # a digit segment is a key in a map
    ("a.b.0.c", 1),
    ("a.b.1.c.1", 20),
    ("list.1.1.0", 4),
    ("list.0", [1, 2]),
    ("a.b", [{"c": 1}, {"c": [10, 20]}]),
    ("dotted..x", 1),  # an empty segment is the key ""
    ("missing", MISSING),
    ("a.missing", MISSING),
    ("a.b.2.c", MISSING),
    ("a.b.-1.c", MISSING),  # no negative indexes
    ("a.b.c", MISSING),
    ("top.x", MISSING),
    ("a.n.x", MISSING),
    ("list.0.5", MISSING),
    ("a.b.0.c.d", MISSING),
    ("list.1.1.x", MISSING),
])
def test_getter(path: str, expected: Any) -> None:
    assert _same(compile_getter(path)(EVENT), expected)
    assert _same(get_path(EVENT, path), expected)


def _same(got: Any, expected: Any) -> bool:
    return got is expected if expected is MISSING or expected is None else got == expected


def test_missing_is_distinct_from_null_and_falsy() -> None:
    assert MISSING is not None
    assert not MISSING
    assert compile_getter("a")({"a": None}) is None
    assert compile_getter("a")({}) is MISSING


@pytest.mark.parametrize("segment", ["²", "١", "½", "1_0", " 1", "+1"])
def test_getter_with_a_non_index_segment_on_a_list_is_missing(segment: str) -> None:
    # Only plain ASCII digits index a list; anything else is simply not there (never an exception).
    event = {"a": [1, 2, 3]}
    assert compile_getter(f"a.{segment}")(event) is MISSING
    assert compile_getter(f"x.a.{segment}")({"x": event}) is MISSING


SEGMENTS = ["a", "b", "0", "1", "10", "", "-1"]
PATH_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(SEGMENTS), children, max_size=3),
    max_leaves=8,
)
EVENTS = st.dictionaries(st.sampled_from(SEGMENTS), PATH_JSON, max_size=4)
PATHS = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(".".join)


@given(EVENTS, PATHS)
def test_compiled_getter_agrees_with_get_path_and_never_raises(event: dict, path: str) -> None:
    assert compile_getter(path)(event) == get_path(event, path)


def _set(event: dict, path: str, value: Any) -> dict:
    """``set_path`` that also checks that the input is left alone."""
    before = copy.deepcopy(event)
    try:
        return set_path(event, split_path(path), value)
    finally:
        assert event == before, "set_path mutated its input"


@pytest.mark.parametrize(("event", "path", "expected"), [
    ({}, "a", {"a": 9}),
    ({"a": 1}, "a", {"a": 9}),
    ({"a": 1}, "b.c.d", {"a": 1, "b": {"c": {"d": 9}}}),
    ({"a": {"x": 1}}, "a.y", {"a": {"x": 1, "y": 9}}),
    ({"a": [1, 2, 3]}, "a.1", {"a": [1, 9, 3]}),
    ({"a": [1, 2]}, "a.2", {"a": [1, 2, 9]}),  # one past the end appends
    ({"a": [{"b": 1}, {"b": 2}]}, "a.1.b", {"a": [{"b": 1}, {"b": 9}]}),
    ({"a": [{"b": 1}]}, "a.0.c.d", {"a": [{"b": 1, "c": {"d": 9}}]}),
    ({"a": []}, "a.0.b", {"a": [{"b": 9}]}),
    ({"a": {"0": 1}}, "a.0", {"a": {"0": 9}}),  # a digit segment in a map is a key
])
def test_set_path(event: dict, path: str, expected: dict) -> None:
    out = _set(event, path, 9)
    assert out == expected
    assert get_path(out, path) == 9


def test_set_path_copies_the_containers_on_the_path() -> None:
    event = {"a": {"b": [{"c": 1}, {"d": 2}]}, "other": {"kept": True}}
    out = _set(event, "a.b.0.c", 5)
    assert out is not event
    assert out["a"] is not event["a"]
    assert out["a"]["b"] is not event["a"]["b"]
    assert out["a"]["b"][0] is not event["a"]["b"][0]
    assert event["a"]["b"][0] == {"c": 1}
    assert out["other"] == {"kept": True}


def test_set_path_twice_from_the_same_event_gives_independent_results() -> None:
    event = {"a": {"b": 1}}
    first, second = _set(event, "a.c", 1), _set(event, "a.d", 2)
    assert first == {"a": {"b": 1, "c": 1}}
    assert second == {"a": {"b": 1, "d": 2}}
    assert event == {"a": {"b": 1}}


@pytest.mark.parametrize(("event", "path"), [
    ({"a": "text"}, "a.b"),
    ({"a": 1}, "a.b.c"),
    ({"a": None}, "a.b"),
    ({"a": True}, "a.0"),
    ({"a": [1, 2]}, "a.b"),  # a key into a list
    ({"a": [1, 2]}, "a.5"),  # past the end of a list
    ({"a": {"b": [1]}}, "a.b.0.c"),  # through a number in a list
])
def test_set_path_through_a_non_map_is_a_path_error(event: dict, path: str) -> None:
    with pytest.raises(PathError) as raised:
        _set(event, path, 9)
    assert path in str(raised.value)
    assert isinstance(raised.value, StageError)


@given(EVENTS, PATHS, JSON)
def test_set_path_never_mutates_and_reads_back(event: dict, path: str, value: Any) -> None:
    try:
        out = _set(event, path, value)
    except PathError:
        return
    assert get_path(out, path) == value

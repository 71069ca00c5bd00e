"""Conditions as text (``agglo_core.condition_syntax``): parsing, errors, printing and the lossless round trip.

Expected ASTs are spelled as a config would spell them (JSON dicts) so the tests
do not lean on the parser's own constructors.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_conditions import binary, boolean, cmp, exists, lit, logical, num, sub, unary, var, where

from agglo_core import ConfigError, load_config
from agglo_core.condition_syntax import (
    ConditionSyntaxError,
    format_condition,
    format_path,
    format_string,
    parse_condition,
)
from agglo_core.conditions import compile_condition
from agglo_core.config import (
    BinaryExpression,
    BinaryOperator,
    BooleanExpression,
    ComparatorExpression,
    ComparatorOperator,
    Condition,
    ExistsExpression,
    ExistsOperation,
    ExistsOperator,
    Expression,
    LogicalExpression,
    LogicalOperator,
    Operand,
    UnaryExpression,
    UnaryOperator,
    Variable,
)
from agglo_core.processes.aggregator import Aggregator
from agglo_core.processes.annotator import Annotation
from agglo_core.processes.completer import Completer
from agglo_core.processes.continuation import Continuation
from agglo_core.processes.entwine import Entwine
from agglo_core.processes.spawner import Spawner
from agglo_core.processes.tee import Tee
from agglo_core.processes.transformer import Transformation


def parsed(text: str) -> dict:
    return parse_condition(text).model_dump(mode="json", exclude_none=True)


def ast(condition: dict) -> dict:
    return Condition.model_validate(condition).model_dump(mode="json", exclude_none=True)


def ex(key: str, op: str = "Exists") -> dict:
    """One exists check inside an expression (the extension)."""
    return {"exists": {"key": key, "op": op}}


# --- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("someDict.someFixed == 'foobar'", where(cmp("Equal", var("someDict.someFixed"), lit("foobar")))),
    ('n >= 3', where(cmp("GreaterThanOrEqual", var("n"), num(3)))),
    ("a == 1 || b == 2 && c == 3",
     where(logical("LogicalOr", cmp("Equal", var("a"), num(1)),
                   logical("LogicalAnd", cmp("Equal", var("b"), num(2)), cmp("Equal", var("c"), num(3)))))),
    ("(a == 1 || b == 2) && c == 3",
     where(logical("LogicalAnd", logical("LogicalOr", cmp("Equal", var("a"), num(1)), cmp("Equal", var("b"), num(2))),
                   cmp("Equal", var("c"), num(3))))),
    # C-like levels: * over +, + over <<, << over comparisons, comparisons over & over ^ over |.
    ("a + b * c > 1", where(cmp("GreaterThan", sub(binary("Addition", var("a"), sub(binary("Multiply", var("b"),
                                                                                           var("c"))))), num(1)))),
    ("a << 1 + 2 == b", where(cmp("Equal", sub(binary("LeftShift", var("a"), sub(binary("Addition", num(1), num(2))))),
                                  var("b")))),
    ("a & 1 == 1", where(binary("And", var("a"), sub(cmp("Equal", num(1), num(1)))))),
    ("a | b ^ c & d", where(binary("Or", var("a"), sub(binary("Xor", var("b"), sub(binary("And", var("c"),
                                                                                          var("d")))))))),
    ("a - b - c == 0", where(cmp("Equal", sub(binary("Subtract", sub(binary("Subtract", var("a"), var("b"))),
                                                     var("c"))), num(0)))),
    ("a ** b ** c == 0", where(cmp("Equal", sub(binary("Power", var("a"), sub(binary("Power", var("b"), var("c"))))),
                                   num(0)))),
    ("a % 2 / 3 != 0", where(cmp("NotEqual", sub(binary("Divide", sub(binary("Modulus", var("a"), num(2))), num(3))),
                                 num(0)))),
    ("a >> 2 <= 1", where(cmp("LessThanOrEqual", sub(binary("RightShift", var("a"), num(2))), num(1)))),
    # Numbers: -3 is a literal, -(3) a negation, -3 ** 2 is -(3 ** 2), 2.0 stays a float.
    ("x < -3", where(cmp("LessThan", var("x"), num(-3)))),
    ("x < -(3)", where(cmp("LessThan", var("x"), sub(unary("Negation", num(3)))))),
    ("x < - 3", where(cmp("LessThan", var("x"), sub(unary("Negation", num(3)))))),
    ("x == -3 ** 2", where(cmp("Equal", var("x"), sub(unary("Negation", sub(binary("Power", num(3), num(2)))))))),
    ("x == 2.0", where(cmp("Equal", var("x"), num(2.0)))),
    ("x == 1.5e3", where(cmp("Equal", var("x"), num(1500.0)))),
    ("a - -1 > 0", where(cmp("GreaterThan", sub(binary("Subtract", var("a"), num(-1))), num(0)))),
    # Unary operators, regexes, booleans, strings and paths.
    ("!flag && ~n == -1", where(logical("LogicalAnd", unary("Inversion", var("flag")),
                                        cmp("Equal", sub(unary("LogicalNot", var("n"))), num(-1))))),
    ("name =~ '^a\\d+$'", where(cmp("RegexMatch", var("name"), lit("^a\\d+$")))),
    ("name !~ \"b\"", where(cmp("RegexNotMatch", var("name"), lit("b")))),
    ("ok == true", where(cmp("Equal", var("ok"), sub(boolean(True))))),
    ("false", where(boolean(False))),
    ("s == 'it\\'s \\\\ \\n \\u00e9 \\U0001F600'", where(cmp("Equal", var("s"), lit("it's \\ \n é \U0001F600")))),
    ("`version-control` == \"git-dev\"", where(cmp("Equal", var("version-control"), lit("git-dev")))),
    ("internal:name == 'p' && tags.0.weight > 3",
     where(logical("LogicalAnd", cmp("Equal", var("internal:name"), lit("p")),
                   cmp("GreaterThan", var("tags.0.weight"), num(3))))),
    ("`true` == `a\\`b`", where(cmp("Equal", var("true"), var("a`b")))),
    # exists: binge's form when the whole condition is exists checks joined by &&, else inside the expression.
    ("exists(tags.0)", exists(("tags.0", "Exists"))),
    ("exists(a) && !exists(b) && (exists(c) && exists(`d e`))",
     exists(("a", "Exists"), ("b", "NotExists"), ("c", "Exists"), ("d e", "Exists"))),
    ("exists()", {"exists": {"ops": []}}),
    ("  ", {}),
    ("x == 1 || exists(tags.0)", where(logical("LogicalOr", cmp("Equal", var("x"), num(1)), ex("tags.0")))),
    ("!(exists(a))", where(unary("Inversion", sub(ex("a"))))),
    ("exists(a) || !exists(b)", where(logical("LogicalOr", ex("a"), ex("b", "NotExists")))),
    ("x ==\n  1", where(cmp("Equal", var("x"), num(1)))),
])
def test_parse(text: str, expected: dict) -> None:
    assert parsed(text) == ast(expected)


@pytest.mark.parametrize(("text", "line", "column", "reason"), [
    ("x == 1 && || y", 1, 11, "expected a value, found '||'"),
    ("x == 'abc", 1, 6, "unterminated string"),
    ("a < b < c", 1, 7, "comparisons do not chain"),
    ("(a == 1", 1, 8, "expected ')'"),
    ("a == 1 b", 1, 8, "expected an operator or the end of the condition"),
    ("flag", 1, 1, "not a single value"),
    ("exists(1)", 1, 8, "exists() takes a path"),
    ("exists() && a == 1", 1, 1, "exists() needs a path here"),
    ("a == null", 1, 6, "there is no null literal"),
    ("x == 1 &&\n  y # 2", 2, 5, "unexpected character '#'"),
    ("a == '\\u12'", 1, 7, "\\u needs 4 hex digits"),
    ("a == 1e999", 1, 6, "too large"),
    ("!~x", 1, 1, "'!~' is the regex operator"),
    ("a = 1", 1, 3, "unexpected character '=': compare with =="),
])
def test_syntax_errors_name_the_line_and_column_and_point_at_it(text: str, line: int, column: int,
                                                                 reason: str) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert reason in err.reason
    header, source, pointer = str(err).split("\n")
    assert header.startswith(f"line {line}, column {column}: ")
    assert source.strip() == text.split("\n")[line - 1].strip()
    assert pointer.index("^") == source.index(text.split("\n")[line - 1]) + column - 1


@pytest.mark.parametrize(("text", "reason"), [
    ("(" * 150 + "a == 1" + ")" * 150, "nested more than 100 levels deep"),
    ("!" * 2000 + "a", "nested more than 100 levels deep"),
    ("a" + " + a" * 150 + " == 1", "more than 100 operators deep"),
])
def test_deep_nesting_is_a_syntax_error_not_a_crash(text: str, reason: str) -> None:
    with pytest.raises(ConditionSyntaxError, match=reason):
        parse_condition(text)


def test_nesting_up_to_the_limit_parses_prints_and_loads() -> None:
    for text in ("(" * 98 + "a == 1" + ")" * 98, "a" + " + a" * 98 + " == 1", " || ".join(["a == 1"] * 100)):
        condition = parse_condition(text)
        assert parse_condition(format_condition(condition)) == condition
        assert Condition.model_validate(condition.model_dump(mode="json", exclude_none=True)) == condition


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b.0", "`k`", "'s'", '"t', "1", "-", "2.5", "(", ")", "!", "~", "**", "*",
                                 "/", "%", "+", "<<", ">>", "<", "<=", "==", "!=", "=~", "!~", "&", "^", "|", "&&",
                                 "||", "true", "exists", "exists(", "null", "=", "#", " ", "\n", "\\"]),
                max_size=12).map("".join))
def test_any_text_parses_or_gives_a_syntax_error(text: str) -> None:
    try:
        condition = parse_condition(text)
    except ConditionSyntaxError as e:
        assert 1 <= e.column <= len(text.split("\n")[e.line - 1]) + 1
    else:
        assert parse_condition(format_condition(condition)) == condition


def test_a_text_condition_is_accepted_wherever_a_condition_is() -> None:
    text = "a.b == 'x' && n >= 3 || exists(tags.0)"
    want = parse_condition(text)
    for model in (Annotation, Aggregator, Completer, Spawner, Tee, Continuation, Transformation, Entwine):
        assert model.model_validate({"condition": text}).condition == want, model.__name__


def test_a_syntax_error_in_a_config_names_the_json_path_line_and_column() -> None:
    config = {"partitionUuid": "c5024ca8-d601-499f-bb24-daae74357b5e",
              "pipelines": [{"name": "p", "processes": [{"name": "a"}]}],
              "processDefinitions": [{"annotator": {"name": "a", "annotations": [
                  {"fieldKey": "k", "value": "v", "condition": "x == 1"},
                  {"fieldKey": "k", "value": "v", "condition": "x == 1 &&\n  || y"}]}}]}
    with pytest.raises(ConfigError) as info:
        load_config(config)
    [problem] = info.value.problems
    assert problem.startswith("processDefinitions[0].annotator.annotations[1].condition: line 2, column 3: "
                              "expected a value, found '||'")


def test_text_exists_inside_an_expression_evaluates() -> None:
    holds = compile_condition(parse_condition("x == 1 || exists(tags.0) && !(exists(gone))"))
    assert holds is not None
    assert holds({"x": 1})
    assert holds({"tags": ["a"]})
    assert not holds({"tags": ["a"], "gone": None})
    assert not holds({"tags": []})


def test_text_exists_inside_an_expression_is_validated() -> None:
    config = {"partitionUuid": "c5024ca8-d601-499f-bb24-daae74357b5e",
              "pipelines": [{"name": "p", "processes": [{"name": "c"}]}],
              "processDefinitions": [{"continuation": {"name": "c", "condition": {"expression": {"logical": {
                  "op": "LogicalOr", "lhs": {"expression": {"exists": {"key": "", "op": "Exists"}}},
                  "rhs": {"expression": {"exists": {"key": "k"}}}}}}}}]}
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.problems == [
        "processDefinitions[0].continuation.condition.expression.logical.lhs.expression.exists.key: must not be empty",
        "processDefinitions[0].continuation.condition.expression.logical.rhs.expression.exists.op: "
        "must be Exists or NotExists",
    ]


# --- printing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "text"), [
    (where(cmp("Equal", var("someDict.someFixed"), lit("foobar"))), "someDict.someFixed == 'foobar'"),
    (exists(("author", "Exists"), ("githash", "NotExists")), "exists(author) && !exists(githash)"),
    ({"exists": {}}, "exists()"),
    ({}, ""),
    (where(binary("Subtract", var("a"), sub(binary("Subtract", var("b"), var("c"))))), "a - (b - c)"),
    (where(binary("Power", sub(binary("Power", var("a"), var("b"))), var("c"))), "(a ** b) ** c"),
    (where(binary("Power", num(-3), num(2))), "(-3) ** 2"),
    (where(unary("Negation", num(3))), "-(3)"),
    (where(unary("Inversion", sub(unary("LogicalNot", var("x"))))), "! ~x"),
    (where(unary("Inversion", sub(ex("a")))), "!(exists(a))"),
    (where(unary("Inversion", sub(binary("Power", sub(ex("a")), var("b"))))), "!(exists(a) ** b)"),
    (where(cmp("Equal", sub(cmp("Equal", var("a"), var("b"))), sub(boolean(True)))), "(a == b) == true"),
    (where(logical("LogicalAnd", cmp("Equal", var("version-control"), lit("it's")), boolean(False))),
     "`version-control` == \"it's\" && false"),
    (where(cmp("RegexMatch", var("exists"), lit("\\d+\\.\\n"))), "`exists` =~ '\\d+\\.\\\\n'"),
    (where(cmp("Equal", var("x"), num(1e16))), "x == 1e+16"),
])
def test_format(condition: dict, text: str) -> None:
    model = Condition.model_validate(condition)
    assert format_condition(model) == text
    assert parse_condition(text) == model


def test_format_refuses_what_has_no_text() -> None:
    with pytest.raises(ValueError, match="finite"):
        format_condition(Condition.model_validate(where(cmp("Equal", var("x"), num(float("inf"))))))
    with pytest.raises(ValueError, match="not set"):
        format_condition(Condition.model_validate(where({"comparator": {"lhs": var("x"), "rhs": num(1)}})))


# --- the round trip, on generated ASTs ------------------------------------------------------------------------


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _names(enum: Any) -> list[str]:
    return [m.value for m in enum if not m.value.startswith("Unknown")]


# Characters that stress quoting: quotes, backslashes before escape letters, controls, surrogates, keywords.
_TRICKY = st.sampled_from(list("\\'\"`nutrbfU.:- 0\n\t\x00\x7f\ud800") + ["true", "exists", "\\u", "é", "😀"])
TEXTS = st.lists(_TRICKY | st.characters(), max_size=8).map("".join)
NUMBERS = st.integers() | st.floats(allow_nan=False, allow_infinity=False)


def expressions(operands: st.SearchStrategy[Operand]) -> st.SearchStrategy[Expression]:
    """Every kind of expression binge's AST has, over ``operands``."""
    return st.one_of(
        st.builds(lambda v: Expression(boolean=BooleanExpression(value=v)), st.booleans()),
        st.builds(lambda op, lhs, rhs: Expression(comparator=ComparatorExpression(
            op=ComparatorOperator(op), lhs=lhs, rhs=rhs)), st.sampled_from(_names(ComparatorOperator)), operands,
                  operands),
        st.builds(lambda op, lhs, rhs: Expression(logical=LogicalExpression(op=LogicalOperator(op), lhs=lhs, rhs=rhs)),
                  st.sampled_from(_names(LogicalOperator)), operands, operands),
        st.builds(lambda op, lhs, rhs: Expression(binary=BinaryExpression(op=BinaryOperator(op), lhs=lhs, rhs=rhs)),
                  st.sampled_from(_names(BinaryOperator)), operands, operands),
        st.builds(lambda op, rhs: Expression(unary=UnaryExpression(op=UnaryOperator(op), rhs=rhs)),
                  st.sampled_from(_names(UnaryOperator)), operands),
    )


def conditions(names: st.SearchStrategy[str], literals: st.SearchStrategy[str],
               numbers: st.SearchStrategy[int | float], extended: bool = False) -> st.SearchStrategy[Condition]:
    """Conditions binge's AST can express; ``extended`` adds exists checks inside expressions."""
    leaves = st.one_of(
        names.map(lambda n: Operand(variable=Variable(name=n))),
        literals.map(lambda s: Operand(literal=s)),
        numbers.map(lambda n: Operand(numeric=n)),
        st.booleans().map(lambda v: Operand(expression=Expression(boolean=BooleanExpression(value=v)))),
    )
    if extended:
        leaves |= st.builds(lambda k, op: Operand(expression=Expression(exists=ExistsOperation(
            key=k, op=ExistsOperator(op)))), names, st.sampled_from(["Exists", "NotExists"]))
    operands = st.recursive(leaves, lambda inner: expressions(inner).map(lambda e: Operand(expression=e)),
                            max_leaves=10)
    exists_ops = st.lists(st.builds(lambda k, op: ExistsOperation(key=k, op=ExistsOperator(op)), names,
                                    st.sampled_from(["Exists", "NotExists"])), max_size=4)
    return st.one_of(
        st.just(Condition()),
        exists_ops.map(lambda ops: Condition(exists=ExistsExpression(ops=tuple(ops)))),
        expressions(operands).map(lambda e: Condition(expression=e)),
    )


def exists_only(e: Expression) -> list[ExistsOperation] | None:
    """The exists checks of an expression made only of them joined by &&, in order; else None."""
    if e.exists is not None:
        return [e.exists]
    if e.logical is None or e.logical.op.value != "LogicalAnd":
        return None
    sides = [s.expression for s in (e.logical.lhs, e.logical.rhs)]  # type: ignore[union-attr]
    ops = [exists_only(s) if s is not None else None for s in sides]
    return None if None in ops else ops[0] + ops[1]  # type: ignore[operator]


def exact(condition: Condition) -> str:
    """The AST with types and float signs visible (1 is not 1.0, 0.0 is not -0.0)."""
    return repr(condition.model_dump(mode="python", exclude_none=True))


@SETTINGS
@given(conditions(TEXTS, TEXTS, NUMBERS))
def test_print_then_parse_gives_the_same_ast(condition: Condition) -> None:
    text = format_condition(condition)
    assert exact(parse_condition(text)) == exact(condition), text


_SYMBOLS = {"LogicalOr": "||", "LogicalAnd": "&&", "Or": "|", "Xor": "^", "And": "&", "LeftShift": "<<",
            "RightShift": ">>", "Addition": "+", "Subtract": "-", "Multiply": "*", "Divide": "/", "Modulus": "%",
            "Power": "**", "LessThan": "<", "LessThanOrEqual": "<=", "GreaterThan": ">", "GreaterThanOrEqual": ">=",
            "Equal": "==", "NotEqual": "!=", "RegexMatch": "=~", "RegexNotMatch": "!~", "Inversion": "!",
            "LogicalNot": "~", "Negation": "-"}


def parenthesised(o: Operand) -> str:
    """Every operator application in parentheses: the parser must not need the printer's precedence."""

    if o.variable is not None:
        return format_path(o.variable.name)
    if o.literal is not None:
        return format_string(o.literal)
    if o.numeric is not None:
        return f"({o.numeric!r})"
    e = o.expression
    assert e is not None
    if e.boolean is not None:
        return "true" if e.boolean.value else "false"
    if e.unary is not None:
        return f"({_SYMBOLS[e.unary.op.value]}{parenthesised(e.unary.rhs)})"  # type: ignore[arg-type]
    node = e.comparator or e.logical or e.binary
    assert node is not None
    return f"({parenthesised(node.lhs)} {_SYMBOLS[node.op.value]} {parenthesised(node.rhs)})"  # type: ignore[arg-type]


@SETTINGS
@given(conditions(TEXTS, TEXTS, NUMBERS, extended=True))
def test_exists_inside_expressions_round_trips_except_as_a_whole_exists_chain(condition: Condition) -> None:
    """Only a whole condition of exists checks joined by && changes: into binge's exists form, same checks."""
    chain = exists_only(condition.expression) if condition.expression is not None else None
    expected = condition if chain is None else Condition(exists=ExistsExpression(ops=tuple(chain)))
    assert exact(parse_condition(format_condition(condition))) == exact(expected)


@SETTINGS
@given(conditions(TEXTS, TEXTS, NUMBERS).filter(lambda c: c.expression is not None))
def test_fully_parenthesised_text_parses_to_the_same_ast(condition: Condition) -> None:
    text = parenthesised(Operand(expression=condition.expression))
    assert exact(parse_condition(text)) == exact(condition), text


EVENT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.5, -2.0, 1e300]) | st.sampled_from(
        ["x", "", "1", "ab"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["d", "0"]), inner, max_size=2),
    max_leaves=6)
EVENTS = st.dictionaries(st.sampled_from(["a", "b", "c", "tags"]), EVENT_VALUES, max_size=4)


@SETTINGS
@given(conditions(st.sampled_from(["a", "b", "c.d", "tags.0", "missing"]), st.sampled_from(["x", "", "1", "a.*"]),
                  st.sampled_from([0, 1, -2, 2.5, 3, 64]), extended=True),
       st.lists(EVENTS, min_size=1, max_size=5))
def test_the_text_form_evaluates_like_the_ast(condition: Condition, events: list[dict]) -> None:
    from_ast = compile_condition(condition)
    from_text = compile_condition(parse_condition(format_condition(condition)))
    for event in events:
        want = True if from_ast is None else from_ast(event)
        got = True if from_text is None else from_text(event)
        assert got is want, (format_condition(condition), event)

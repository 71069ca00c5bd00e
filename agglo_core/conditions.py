"""Conditions compiled once into Python closures, from their IR (``agglo_core.ir``).

Semantics (where binge differed, ours is what its docs meant):

* A comparison with a missing variable is false; logical operators then combine
  results normally, so the outcome never depends on operand order.
* Values compare by JSON type: numbers with numbers, strings with strings (by
  code point), booleans, nulls, lists and maps for (in)equality only. A
  comparison across types is false, ``NotEqual`` included.
* Arithmetic on anything but numbers (bitwise: integers) gives "no value",
  which makes the enclosing comparison false.
* The unary operators are binge's: ``Inversion`` is logical not (``!``, on a
  boolean) and ``LogicalNot`` is bitwise not (``~``, on an integer), as its
  ``TestNewUnaryExpressions`` pins and configs written for it rely on.
* ``exists`` is true for any present value, null, lists and maps included;
  several exists ops combine with AND. Inside an expression (our extension),
  one exists op is a boolean value.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agglo_core import regex as regex_engine
from agglo_core.paths import MISSING, compile_getter

if TYPE_CHECKING:
    from agglo_core.config import Condition
    from agglo_core.ir import Node

Predicate = Callable[[dict], bool]
_Value = Callable[[dict], Any]


def compile_condition(condition: Condition | None) -> Predicate | None:
    """A predicate for ``condition``, or None when it is always true (callers skip the call)."""
    from agglo_core.ir import condition_node

    return compile_node(condition_node(condition))


def compile_node(node: Node | None) -> Predicate | None:
    """A predicate (closures) for a condition of the IR; None when it always holds.

    The interpreted reference: ``agglo_core.codegen`` writes the same conditions as inline Python.
    """
    if node is None:
        return None
    kind = node[0]
    if kind == "exists":
        return _compile_exists_op(node)
    if kind == "all":
        checks = [(compile_getter(".".join(op[1])), op[2]) for op in node[1]]
        return lambda e: all((get(e) is not MISSING) is want for get, want in checks)
    if kind == "is_true":
        value = _compile_value(node[1])
        return lambda event: value(event) is True
    return _compile_value(node)  # a comparison or a logical operator: always a bool


def _compile_exists_op(node: Node) -> Predicate:
    _, segs, want = node
    key = ".".join(segs)
    if len(segs) == 1:  # a top-level field: no getter call
        return (lambda e: key in e) if want else (lambda e: key not in e)
    get = compile_getter(key)
    return (lambda e: get(e) is not MISSING) if want else (lambda e: get(e) is MISSING)


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float)


def _is_int(v: Any) -> bool:
    return type(v) is int or (type(v) is float and v.is_integer())


_ORDER = {"GreaterThan": operator.gt, "LessThan": operator.lt, "GreaterThanOrEqual": operator.ge,
          "LessThanOrEqual": operator.le}


def _same_kind(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is tb:
        return True
    return (ta is int or ta is float) and (tb is int or tb is float)


def json_equal(a: Any, b: Any) -> bool:
    """Equality by JSON type: ``true`` is not ``1``, inside lists and maps too."""
    if not _same_kind(a, b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    return a == b  # type: ignore[no-any-return]


def compare(op: str, a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING or not _same_kind(a, b):
        return False
    if op == "Equal":
        return json_equal(a, b)
    if op == "NotEqual":
        return not json_equal(a, b)
    if type(a) is str or _is_number(a):
        return _ORDER[op](a, b)  # type: ignore[no-any-return]
    return False


def regex_of(pattern: Any, cache: dict[str, regex_engine.Regex]) -> regex_engine.Regex | None:
    if type(pattern) is not str:
        return None
    compiled = cache.get(pattern)
    if compiled is None:
        try:
            compiled = regex_engine.compile(pattern)
        except regex_engine.RegexError:
            return None
        if len(cache) < 256:
            cache[pattern] = compiled
    return compiled


def _literal(node: Node) -> Any:
    """The constant of a ``const`` node that is a string or a number; None otherwise."""
    if node[0] == "const" and (type(node[1]) is str or type(node[1]) is int or type(node[1]) is float):
        return node[1]
    return None


def _compile_comparator(op: str, lhs_node: Node, rhs_node: Node) -> _Value:
    lhs = _compile_value(lhs_node)
    # Fast path for the common shape: anything against a literal (MISSING is neither a string nor a number).
    lit = _literal(rhs_node)
    if lit is not None:
        if lhs_node[0] == "var" and len(lhs_node[1]) == 1:
            return _top_level_comparator(op, lhs_node[1][0], lit)
        get = lhs
        if type(lit) is str:
            if op == "Equal":
                return lambda e: get(e) == lit  # only a string equals a string
            if op == "NotEqual":
                return lambda e: type(v := get(e)) is str and v != lit
            cmp = _ORDER[op]
            return lambda e: type(v := get(e)) is str and cmp(v, lit)
        if op == "Equal":
            return lambda e: (type(v := get(e)) is int or type(v) is float) and v == lit
        if op == "NotEqual":
            return lambda e: (type(v := get(e)) is int or type(v) is float) and v != lit
        cmp = _ORDER[op]
        return lambda e: (type(v := get(e)) is int or type(v) is float) and cmp(v, lit)

    rhs = _compile_value(rhs_node)
    return lambda e: compare(op, lhs(e), rhs(e))


def _compile_match(want: bool, lhs_node: Node, rhs_node: Node) -> _Value:
    lhs = _compile_value(lhs_node)
    if rhs_node[0] == "const" and type(rhs_node[1]) is str:
        search = regex_engine.compile(rhs_node[1]).search

        def match_literal(e: dict) -> bool:
            s = lhs(e)
            return type(s) is str and (search(s) is not None) is want

        return match_literal
    rhs = _compile_value(rhs_node)
    cache: dict[str, regex_engine.Regex] = {}

    def match_dynamic(e: dict) -> bool:
        s, pattern = lhs(e), regex_of(rhs(e), cache)
        return type(s) is str and pattern is not None and (pattern.search(s) is not None) is want

    return match_dynamic


def _top_level_comparator(op: str, key: str, lit: Any) -> _Value:
    """A top-level field against a literal, without a getter call (the commonest condition of all)."""
    if type(lit) is str:
        if op == "Equal":
            return lambda e: e.get(key) == lit  # only a string equals a string
        if op == "NotEqual":
            return lambda e: type(v := e.get(key)) is str and v != lit
        cmp = _ORDER[op]
        return lambda e: type(v := e.get(key)) is str and cmp(v, lit)
    if op == "Equal":
        return lambda e: (type(v := e.get(key)) is int or type(v) is float) and v == lit
    if op == "NotEqual":
        return lambda e: (type(v := e.get(key)) is int or type(v) is float) and v != lit
    cmp = _ORDER[op]
    return lambda e: (type(v := e.get(key)) is int or type(v) is float) and cmp(v, lit)


def _arith(fn: Callable[[Any, Any], Any], ints_only: bool = False) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_number(a) and _is_number(b)):
            return MISSING
        if ints_only:
            if not (_is_int(a) and _is_int(b)):
                return MISSING
            a, b = int(a), int(b)
        try:
            result = fn(a, b)
        except (ZeroDivisionError, OverflowError, ValueError):
            return MISSING
        if type(result) is complex:
            return MISSING
        return result

    return apply


def _shift(fn: Callable[[int, int], int]) -> Callable[[int, int], int]:
    def apply(a: int, b: int) -> int:
        if b < 0 or b > 4096:
            raise ValueError("shift out of range")
        return fn(a, b)

    return apply


def _power(a: Any, b: Any) -> Any:
    if type(b) is int and abs(b) > 4096:
        raise OverflowError
    return a ** b


BINARY = {
    "Addition": _arith(operator.add), "Subtract": _arith(operator.sub), "Multiply": _arith(operator.mul),
    "Divide": _arith(operator.truediv), "Power": _arith(_power), "Modulus": _arith(operator.mod),
    "RightShift": _arith(_shift(operator.rshift), True), "LeftShift": _arith(_shift(operator.lshift), True),
    "Or": _arith(operator.or_, True), "And": _arith(operator.and_, True), "Xor": _arith(operator.xor, True),
}


def unary(op: str, v: Any) -> Any:
    # binge's names, which read the wrong way round: Inversion is logical not, LogicalNot bitwise not.
    if op == "Inversion":
        return (not v) if type(v) is bool else MISSING
    if op == "Negation":
        return -v if _is_number(v) else MISSING
    # LogicalNot: bitwise not of an integer.
    return ~int(v) if _is_number(v) and _is_int(v) else MISSING


def _compile_value(node: Node) -> _Value:
    """A node as a function of the event giving its value (MISSING for no value)."""
    kind = node[0]
    if kind == "const":
        const = node[1]
        return lambda e: const
    if kind == "var":
        return compile_getter(".".join(node[1]))
    if kind == "cmp":
        return _compile_comparator(node[1], node[2], node[3])
    if kind == "match":
        return _compile_match(node[1], node[2], node[3])
    if kind in ("exists", "all", "is_true"):
        predicate = compile_node(node)
        assert predicate is not None
        return predicate
    if kind in ("and", "or"):
        lhs, rhs = _compile_value(node[1]), _compile_value(node[2])
        if kind == "and":
            return lambda e: lhs(e) is True and rhs(e) is True
        return lambda e: lhs(e) is True or rhs(e) is True
    if kind == "arith":
        fn = BINARY[node[1]]
        left, right = _compile_value(node[2]), node[3]
        if right[0] == "const":
            const = right[1]
            return lambda e: fn(left(e), const)
        rhs = _compile_value(right)
        return lambda e: fn(left(e), rhs(e))
    assert kind == "unary", f"unknown condition node {kind!r}"
    op, operand = node[1], _compile_value(node[2])
    return lambda e: unary(op, operand(e))

"""How the authoring tools show a config's parts: conditions as one readable line, effects as JSON."""

from __future__ import annotations

import json

from agglo_core.config import Condition, Expression, Operand
from agglo_core.effects import ApplyDeltas, Effect, JoinAdd, JoinDelete, Put

_SYMBOLS = {
    "GreaterThan": ">", "LessThan": "<", "GreaterThanOrEqual": ">=", "LessThanOrEqual": "<=", "Equal": "==",
    "NotEqual": "!=", "RegexMatch": "=~", "RegexNotMatch": "!~", "LogicalAnd": "&&", "LogicalOr": "||",
    "Addition": "+", "Subtract": "-", "Multiply": "*", "Divide": "/", "Power": "**", "Modulus": "%",
    "RightShift": ">>", "LeftShift": "<<", "Or": "|", "And": "&", "Xor": "^",
    "Negation": "-", "Inversion": "~", "LogicalNot": "!",
}


def condition_text(condition: Condition | None) -> str | None:
    """The condition as one line (``someNum >= 3 && name =~ "^a"``), or None when it is always true."""
    if condition is None:
        return None
    if condition.exists is not None:
        parts = [("exists(" if op.op.value == "Exists" else "!exists(") + op.key + ")" for op in condition.exists.ops]
        return " && ".join(parts) or None
    if condition.expression is not None:
        return _expression(condition.expression)
    return None


def _operand(o: Operand | None) -> str:
    if o is None:
        return "?"
    if o.variable is not None:
        return o.variable.name
    if o.literal is not None:
        return json.dumps(o.literal, ensure_ascii=False)
    if o.numeric is not None:
        return str(o.numeric)
    return f"({_expression(o.expression)})"  # type: ignore[arg-type]


def _expression(e: Expression) -> str:
    if e.boolean is not None:
        return "true" if e.boolean.value else "false"
    if e.unary is not None:
        return _SYMBOLS.get(e.unary.op.value, "?") + _operand(e.unary.rhs)
    node = e.comparator or e.logical or e.binary
    return f"{_operand(node.lhs)} {_SYMBOLS.get(node.op.value, '?')} {_operand(node.rhs)}"  # type: ignore[union-attr]


def describe_effect(e: Effect) -> dict:
    """An effect as JSON (what a test's ``effects:`` compares with), without the system it goes to."""
    if isinstance(e, Put):
        return {"key": e.key, "body": e.body}
    if isinstance(e, ApplyDeltas):
        return {"key": e.key, "deltas": {name: {op: amount} for name, (op, amount) in e.deltas.items()}}
    if isinstance(e, JoinAdd):
        return {"key": e.key, "join": e.member}
    if isinstance(e, JoinDelete):
        return {"key": e.key, "delete": True}
    return {"args": list(e.args), "input": e.input, "wait": e.wait}

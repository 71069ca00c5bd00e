"""Conditions as text: ``someDict.someFixed == 'foobar' && someNum >= 3 || exists(tags.0)``.

``parse_condition`` turns the text into the condition AST of ``agglo_core.config``
and ``format_condition`` prints an AST back; ``parse_condition(format_condition(c))
== c`` for every condition binge's AST can express.

Precedence, tightest first: ``**`` (right-associative), unary ``! ~ -``
(logical not, binge's ``Inversion``; bitwise not, binge's ``LogicalNot``; negation),
``* / %``, ``+ -``, ``<< >>``, comparisons (``< <= > >= == != =~ !~``, which do
not chain), ``&``, ``^``, ``|``, ``&&``, ``||``. Paths are bare (``a.b.0``,
``internal:name``) or in backticks (`` `version-control` ``); strings take single
or double quotes; a backslash before a character that is no escape stays, so
regexes read as written (``x =~ '\\d+'``). ``-3`` (no space) is a negative number,
``-(3)`` a negation, ``-3 ** 2`` is ``-(3 ** 2)``. The whole text, when it is only ``exists(p)``/``!exists(p)``
joined by ``&&``, becomes binge's exists form; ``exists()`` is binge's empty
exists list and ``""`` the empty condition (both always true).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

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


class ConditionSyntaxError(ValueError):
    """A condition's text does not parse; the message names the line and column and points at it."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        line = text.count("\n", 0, offset) + 1
        start = text.rfind("\n", 0, offset) + 1
        end = text.find("\n", offset)
        source = text[start:] if end < 0 else text[start:end]
        column = offset - start + 1
        self.line, self.column, self.reason = line, column, message
        super().__init__(f"line {line}, column {column}: {message}\n    {source}\n    {' ' * (column - 1)}^")


# --- operators -------------------------------------------------------------------------------------------

_OR, _AND, _BOR, _XOR, _BAND, _COMPARE, _SHIFT, _SUM, _PRODUCT, _UNARY, _POWER, _ATOM = range(1, 13)

_LOGICAL = {"||": ("LogicalOr", _OR), "&&": ("LogicalAnd", _AND)}
_BINARY = {
    "|": ("Or", _BOR), "^": ("Xor", _XOR), "&": ("And", _BAND), "<<": ("LeftShift", _SHIFT),
    ">>": ("RightShift", _SHIFT), "+": ("Addition", _SUM), "-": ("Subtract", _SUM), "*": ("Multiply", _PRODUCT),
    "/": ("Divide", _PRODUCT), "%": ("Modulus", _PRODUCT), "**": ("Power", _POWER),
}
_COMPARATORS = {
    "<": "LessThan", "<=": "LessThanOrEqual", ">": "GreaterThan", ">=": "GreaterThanOrEqual", "==": "Equal",
    "!=": "NotEqual", "=~": "RegexMatch", "!~": "RegexNotMatch",
}
# binge's enum names read the wrong way round; the symbols say what each does: ! is logical not (binge's
# Inversion), ~ bitwise not (binge's LogicalNot).
_PREFIX = {"!": "Inversion", "~": "LogicalNot", "-": "Negation"}
_SYMBOL_OF = {name: sym for table in (_LOGICAL, _BINARY) for sym, (name, _) in table.items()}
_SYMBOL_OF.update({name: sym for sym, name in (*_COMPARATORS.items(), *_PREFIX.items())})
_KEYWORDS = frozenset({"true", "false", "exists", "null"})
MAX_DEPTH = 100
"""How deep a condition's text may nest (parentheses, prefix operators, operators on operators)."""

# --- lexing ------------------------------------------------------------------------------------------------

_OPERATOR = re.compile(r"\*\*|<<|>>|<=|>=|==|!=|=~|!~|&&|\|\||[-+*/%<>&|^!~()]|,")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_BARE_PATH = re.compile(r"[^\W\d][\w:]*(?:\.[\w:]+)*")
_SPACE = re.compile(r"\s*")
_SIMPLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "t": "\t", "r": "\r", "b": "\b",
                   "f": "\f"}
_ESCAPE_LEADS = frozenset(_SIMPLE_ESCAPES) | {"u", "U"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "op", "number", "string", "path", "keyword", "end"
    text: str  # the operator or keyword; the decoded string or path
    start: int
    end: int
    value: int | float | None = None


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = _SPACE.match(text).end()  # type: ignore[union-attr]
    while pos < len(text):
        ch = text[pos]
        if ch in "'\"`":
            decoded, end = _read_quoted(text, pos)
            out.append(_Token("path" if ch == "`" else "string", decoded, pos, end))
        elif m := _NUMBER.match(text, pos):
            end = m.end()
            out.append(_Token("number", m.group(), pos, end, _number_literal(m.group(), text, pos)))
        elif m := _BARE_PATH.match(text, pos):
            end = m.end()
            word = m.group()
            out.append(_Token("keyword" if word in _KEYWORDS else "path", word, pos, end))
        elif m := _OPERATOR.match(text, pos):
            end = m.end()
            out.append(_Token("op", m.group(), pos, end))
        else:
            hint = ": compare with ==" if ch == "=" else ""
            raise ConditionSyntaxError(f"unexpected character {ch!r}{hint}", text, pos)
        pos = _SPACE.match(text, end).end()  # type: ignore[union-attr]
    out.append(_Token("end", "", len(text), len(text)))
    return out


def _number_literal(literal: str, text: str, pos: int) -> int | float:
    if "." not in literal and "e" not in literal.lower():
        return int(literal)
    value = float(literal)
    if math.isinf(value):
        raise ConditionSyntaxError(f"number {literal} is too large", text, pos)
    return value


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(text):
            break
        lead = text[i + 1]
        if lead in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[lead])
            i += 2
        elif lead in "uU":
            width = 4 if lead == "u" else 8
            digits = text[i + 2:i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits) \
                    or int(digits, 16) > 0x10FFFF:
                raise ConditionSyntaxError(f"\\{lead} needs {width} hex digits of a code point", text, i)
            out.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            out.append("\\" + lead)  # no escape: kept as written, which is what a regex wants
            i += 2
    what = "path" if quote == "`" else "string"
    raise ConditionSyntaxError(f"unterminated {what}: no closing {quote}", text, start)


# --- parsing (precedence climbing) --------------------------------------------------------------------------


class _EmptyExists:
    """``exists()``: binge's empty exists list, which only a whole condition can be."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.nesting = 0

    def error(self, message: str, token: _Token) -> ConditionSyntaxError:
        return ConditionSyntaxError(message, self.text, token.start)

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, op: str, what: str) -> _Token:
        tok = self.peek()
        if tok.kind != "op" or tok.text != op:
            raise self.error(f"expected {what}, found {_describe(tok)}", tok)
        return self.take()

    def operand(self, node: Operand | _EmptyExists, tok: _Token) -> Operand:
        if isinstance(node, _EmptyExists):
            raise self.error("exists() needs a path here; only a whole condition may be exists()", tok)
        return node

    def expression(self, min_level: int) -> tuple[Operand | _EmptyExists, _Token, int]:
        """An expression binding at ``min_level`` or tighter, its first token and its depth in operators."""
        first = self.peek()
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep", first)
        lhs, depth = self.prefix()
        compared = False
        while True:
            tok = self.peek()
            level = _infix_level(tok)
            if level is None or level < min_level:
                self.nesting -= 1
                return lhs, first, depth
            if compared and level == _COMPARE:
                raise self.error("comparisons do not chain: write a < b && b < c, or use parentheses", tok)
            self.take()
            # Left-associative, except ** which groups to the right.
            rhs, rhs_first, rhs_depth = self.expression(level if tok.text == "**" else level + 1)
            lhs = _build(tok.text, self.operand(lhs, first), self.operand(rhs, rhs_first))
            depth = 1 + max(depth, rhs_depth)
            if depth > MAX_DEPTH:
                raise self.error(f"more than {MAX_DEPTH} operators deep: split the condition", tok)
            compared = level == _COMPARE

    def prefix(self) -> tuple[Operand | _EmptyExists, int]:
        """A value, a parenthesised expression or a prefix operator applied to one, and its depth."""
        tok = self.take()
        if tok.kind == "op" and tok.text in _PREFIX:
            nxt = self.peek()
            after = self.tokens[self.pos + 1] if nxt.kind == "number" else None
            if tok.text == "-" and after is not None and nxt.start == tok.end and after.text != "**":
                self.take()
                return Operand(numeric=-nxt.value), 0  # type: ignore[operator]
            if tok.text == "!" and nxt.kind == "keyword" and nxt.text == "exists":
                self.take()
                return self.exists_call("NotExists"), 0
            rhs, rhs_first, depth = self.expression(_UNARY)
            return _wrap(Expression(unary=UnaryExpression(
                op=UnaryOperator[_PREFIX[tok.text]], rhs=self.operand(rhs, rhs_first)))), depth + 1
        if tok.kind == "op" and tok.text == "(":
            inner, _, depth = self.expression(_OR)
            self.expect(")", "')'")
            return inner, depth
        return self.value(tok), 0

    def value(self, tok: _Token) -> Operand | _EmptyExists:
        if tok.kind == "number":
            return Operand(numeric=tok.value)
        if tok.kind == "string":
            return Operand(literal=tok.text)
        if tok.kind == "path":
            return Operand(variable=Variable(name=tok.text))
        if tok.kind == "keyword":
            if tok.text in ("true", "false"):
                return _wrap(Expression(boolean=BooleanExpression(value=tok.text == "true")))
            if tok.text == "exists":
                return self.exists_call("Exists")
            raise self.error("there is no null literal: test presence with exists(path) or !exists(path)", tok)
        if tok.text == "!~":
            raise self.error("'!~' is the regex operator; to negate ~x write ! ~x", tok)
        raise self.error(f"expected a value, found {_describe(tok)}", tok)

    def exists_call(self, op: str) -> Operand | _EmptyExists:
        self.expect("(", "'(' after exists")
        arg = self.take()
        if arg.kind == "op" and arg.text == ")" and op == "Exists":
            return _EmptyExists()
        if arg.kind != "path":
            raise self.error(f"exists() takes a path (a.b.0 or `any key`), found {_describe(arg)}", arg)
        self.expect(")", "')' after the path of exists(")
        return _wrap(Expression(exists=ExistsOperation(key=arg.text, op=ExistsOperator[op])))


def _infix_level(tok: _Token) -> int | None:
    if tok.kind != "op":
        return None
    if tok.text in _LOGICAL:
        return _LOGICAL[tok.text][1]
    if tok.text in _BINARY:
        return _BINARY[tok.text][1]
    return _COMPARE if tok.text in _COMPARATORS else None


def _wrap(expression: Expression) -> Operand:
    return Operand(expression=expression)


def _build(symbol: str, lhs: Operand, rhs: Operand) -> Operand:
    if symbol in _LOGICAL:
        return _wrap(Expression(logical=LogicalExpression(
            op=LogicalOperator[_LOGICAL[symbol][0]], lhs=lhs, rhs=rhs)))
    if symbol in _BINARY:
        return _wrap(Expression(binary=BinaryExpression(op=BinaryOperator[_BINARY[symbol][0]], lhs=lhs, rhs=rhs)))
    return _wrap(Expression(comparator=ComparatorExpression(
        op=ComparatorOperator[_COMPARATORS[symbol]], lhs=lhs, rhs=rhs)))


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the condition"
    if tok.kind == "string":
        return "a string"
    if tok.kind == "number":
        return f"the number {tok.value}"
    return f"'{tok.text}'"


def _exists_chain(operand: Operand) -> list[ExistsOperation] | None:
    """The exists ops of an expression made only of exists checks joined by &&, else None."""
    e = operand.expression
    if e is None:
        return None
    if e.exists is not None:
        return [e.exists]
    if e.logical is not None and e.logical.op.value == "LogicalAnd":
        left, right = _exists_chain(e.logical.lhs), _exists_chain(e.logical.rhs)  # type: ignore[arg-type]
        if left is not None and right is not None:
            return left + right
    return None


def parse_condition(text: str) -> Condition:
    """The condition AST for ``text``; raises ``ConditionSyntaxError`` (line, column) when it does not parse."""
    if not text.strip():
        return Condition()
    parser = _Parser(text)
    node, first, _ = parser.expression(_OR)
    tail = parser.peek()
    if tail.kind != "end":
        raise parser.error(f"expected an operator or the end of the condition, found {_describe(tail)}", tail)
    if isinstance(node, _EmptyExists):
        return Condition(exists=ExistsExpression())
    ops = _exists_chain(node)
    if ops is not None:
        return Condition(exists=ExistsExpression(ops=tuple(ops)))
    if node.expression is None:
        raise parser.error("a condition must be a comparison, a logical expression or exists(path), not a "
                           "single value (write e.g. flag == true)", first)
    return Condition(expression=node.expression)


# --- printing ------------------------------------------------------------------------------------------------


def condition_text(condition: Condition | None) -> str | None:
    """The condition as one line of its text form (``someNum >= 3 && name =~ '^a'``), or None when always true."""
    return (format_condition(condition) or None) if condition is not None else None


def format_condition(condition: Condition) -> str:
    """The text of ``condition``, with only the parentheses its structure needs."""
    if condition.exists is not None:
        ops = condition.exists.ops
        return " && ".join(_exists_text(op) for op in ops) if ops else "exists()"
    if condition.expression is not None:
        return _expression_text(condition.expression)[0]
    return ""


def _exists_text(op: ExistsOperation) -> str:
    if op.op.value not in ("Exists", "NotExists"):
        raise ValueError(f"exists op for '{op.key}' is {op.op.value}: must be Exists or NotExists")
    return f"{'!' if op.op.value == 'NotExists' else ''}exists({format_path(op.key)})"


def _need(node: Operand | None, what: str) -> Operand:
    if node is None:
        raise ValueError(f"{what} is missing")
    return node


def _symbol(op: object) -> str:
    name = op.value  # type: ignore[attr-defined]
    if name not in _SYMBOL_OF:
        raise ValueError(f"operator {name} is not set")
    return _SYMBOL_OF[name]


def _expression_text(e: Expression) -> tuple[str, int]:
    """The text of ``e`` and the precedence level it binds at."""
    if e.boolean is not None:
        return ("true" if e.boolean.value else "false"), _ATOM
    if e.exists is not None:
        return _exists_text(e.exists), _ATOM
    if e.unary is not None:
        symbol = _symbol(e.unary.op)
        rhs = _need(e.unary.rhs, "the operand of a unary expression")
        text, level = _operand_text(rhs)
        if level < _UNARY or (symbol == "-" and rhs.numeric is not None and text[0] != "-") \
                or (symbol == "!" and text.startswith("exists(")):
            text = f"({text})"  # -(3) is a negation, -3 a number; !exists(p) reads as one NotExists check
        elif symbol == "!" and text[0] == "~":
            text = " " + text  # "!~" is the regex operator
        return symbol + text, _UNARY
    for kind in ("logical", "binary", "comparator"):
        node = getattr(e, kind)
        if node is not None:
            break
    else:
        raise ValueError("an expression must set one of boolean|comparator|logical|binary|unary|exists")
    symbol = _symbol(node.op)
    level = _LOGICAL[symbol][1] if kind == "logical" else _BINARY[symbol][1] if kind == "binary" else _COMPARE
    left, left_level = _operand_text(_need(node.lhs, f"the left side of '{symbol}'"))
    right, right_level = _operand_text(_need(node.rhs, f"the right side of '{symbol}'"))
    if symbol == "**":
        left_ok, right_ok = left_level > _POWER, right_level >= _UNARY
    else:
        left_ok, right_ok = left_level >= level + (kind == "comparator"), right_level > level
    return f"{left if left_ok else f'({left})'} {symbol} {right if right_ok else f'({right})'}", level


def format_operand(operand: Operand) -> str:
    """The text of one operand: a path, a string, a number or a sub-expression."""
    return _operand_text(operand)[0]


def _operand_text(o: Operand) -> tuple[str, int]:
    if o.expression is not None:
        return _expression_text(o.expression)
    if o.variable is not None:
        return format_path(o.variable.name), _ATOM
    if o.literal is not None:
        return format_string(o.literal), _ATOM
    if o.numeric is not None:
        return _number_text(o.numeric)
    raise ValueError("an operand must set one of expression|variable|literal|numeric")


def _number_text(n: int | float) -> tuple[str, int]:
    if isinstance(n, float) and not math.isfinite(n):
        raise ValueError(f"{n} has no text form: numbers in conditions are finite")
    text = repr(n)
    # A negative number binds like a unary minus: (-3) ** 2 reads as it parses.
    return text, (_UNARY if text.startswith("-") else _ATOM)


def format_path(path: str) -> str:
    """A path as written in a condition: bare when it can be, else in backticks."""
    if path not in _KEYWORDS and _BARE_PATH.fullmatch(path):
        return path
    return _quote(path, "`")


def format_string(value: str) -> str:
    return _quote(value, '"' if "'" in value and '"' not in value else "'")


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(value: str, quote: str) -> str:
    out = [quote]
    for i, ch in enumerate(value):
        if ch == "\\":
            nxt = value[i + 1] if i + 1 < len(value) else ""
            # A lone backslash reads back as itself when the next character is printed as is and leads no escape.
            out.append("\\" if nxt and nxt.isprintable() and nxt not in _ESCAPE_LEADS else "\\\\")
        elif ch == quote:
            out.append("\\" + quote)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    out.append(quote)
    return "".join(out)


# --- conditions as a config writes them --------------------------------------------------------------------


def written_conditions(data: Any, model: Any, where: str = "") -> Iterator[tuple[str, Any, str, Condition]]:
    """Each condition of a config as written: (its JSON path, the JSON object holding it, its key, its AST).

    ``data`` is the config as parsed JSON and ``model`` its validated model, walked alongside it, so a
    ``"condition"`` key the model does not read as one (inside a tee's ``additionalBody``) is left out. The
    holder's value at the key is the condition as written: text or the AST's JSON.
    """
    if isinstance(model, BaseModel) and isinstance(data, dict):
        for key, raw in data.items():
            child, path = getattr(model, key, None), f"{where}.{key}" if where else key
            if key == "condition" and isinstance(child, Condition):
                yield path, data, key, child
            else:
                yield from written_conditions(raw, child, path)
    elif isinstance(model, tuple) and isinstance(data, list):
        for i, (raw, child) in enumerate(zip(data, model, strict=True)):
            yield from written_conditions(raw, child, f"{where}[{i}]")

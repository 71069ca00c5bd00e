"""Warnings a reviewer would give about a valid config, each with its JSON path and a rule id.

Rules:

* ``unreachable-process``: a definition no pipeline runs and no tee uses.
* ``tee-drops-every-field``: a tee's transformer keeps no field of the event.
* ``condition-never-true``: a condition that is false for every event: values
  of different JSON types compared (``n + 1 == 'x'``, ``'3' == 3``), arithmetic
  on a string or a boolean (``a & 1 == 1`` is ``a & (1 == 1)``), a regex against
  a number, ``exists(a) && !exists(a)``, ``false``, a bare number.
* ``regex-matches-everything``: a filter regex or ``=~`` pattern that matches
  every string.
* ``aggregator-high-cardinality``: an aggregator whose state grows with every
  event: a group key or histogram field unique per event (an id, a time, a hash).
* ``exec-not-allowed``: a spawner or exec transformation whose executable is not
  on the deployment's allow-list, so every record would fail there.
* ``regex-not-re2`` (an error: validation refuses the config): a pattern Python's
  ``re`` would take that RE2, binge's dialect, cannot express (a backreference,
  lookaround, ``\\Z``, a repetition above 1000).
* ``ignored-field``: a field binge defines that agglo accepts and does not act on
  (``asyncCheckpoint``, a pipeline's ``checkpoint``, ``enableMetrics``).
* ``binge-unary-names`` (a note: ``--strict`` does not fail on it): a condition
  written as JSON that uses ``Inversion`` or ``LogicalNot``, whose binge names read
  the wrong way round (``Inversion`` is logical not ``!``, ``LogicalNot`` bitwise
  not ``~``). A condition written as text says ``!`` or ``~`` and gets no note.

Rules about one process type live in its module (its spec's ``lint``); this
module holds the rules that hold for every kind, and runs them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from agglo_core import regex as regex_engine
from agglo_core.condition_syntax import format_operand, written_conditions
from agglo_core.config import Condition, Expression, Operand, PipelinesConfig, ProcessDefinition
from agglo_core.processes.spec import Finding, LintContext
from agglo_core.validation import NOT_RE2


def lint(config: PipelinesConfig, exec_allowed: Callable[[str], bool], data: Any = None) -> list[Finding]:
    """Warnings about ``config``, which must be valid (``load_config`` accepted it).

    ``data``, the config as parsed JSON, tells a condition written as JSON from one written as text: only
    the notes on binge's unary names need it.
    """
    from agglo_core.processes import spec_of  # late: the process modules import this one

    ctx = LintContext(config, exec_allowed)
    defs = [(f"processDefinitions[{i}].{d.kind}", d) for i, d in enumerate(config.processDefinitions)]
    findings = list(_unreachable(config, defs))
    findings.extend(_ignored_pipeline_fields(config))
    for path, d in defs:
        spec, body = spec_of(d), d.body
        for guard in spec.conditions(body):
            findings.extend(_condition(f"{path}.{guard.path}", guard.condition))
        for ref in spec.executables(body):
            if not exec_allowed(ref.executable):
                findings.append(Finding(
                    f"{path}.{ref.path}", "exec-not-allowed",
                    f"runs '{ref.executable}', which is not on the allow-list: every record fails here unless the "
                    f"deployment allows it (--allow-exec {ref.executable} or AGGLO_ALLOW_EXEC)"))
        findings.extend(replace(f, path=f"{path}.{f.path}") for f in spec.lint(body, ctx))
        findings.extend(Finding(f"{path}.{field}", "ignored-field", f"binge's {field} has no effect in agglo: "
                                f"{_IGNORED[field]}") for field in spec.ignored if getattr(body, field))
    if data is not None:
        findings.extend(_binge_unary_names(data, config))
    return findings


_IGNORED = {
    "asyncCheckpoint": "state is committed with every batch, in the same atomic step as its dedupe marks",
    "checkpoint": "state is committed with every batch; there is no separate checkpoint to write",
    "enableMetrics": "metrics are per process (instrumentation.counter and latency, on Lambda)",
}


def _ignored_pipeline_fields(config: PipelinesConfig) -> Iterator[Finding]:
    for i, p in enumerate(config.pipelines):
        for field in ("checkpoint", "enableMetrics"):
            if getattr(p, field):
                yield Finding(f"pipelines[{i}].{field}", "ignored-field",
                              f"binge's {field} has no effect in agglo: {_IGNORED[field]}")


def _unreachable(config: PipelinesConfig, defs: list[tuple[str, ProcessDefinition]]) -> Iterator[Finding]:
    from agglo_core.processes import spec_of

    used = {p.name for pipe in config.pipelines for p in pipe.processes}
    used.update(name for _, d in defs for name in spec_of(d).uses(d.body))
    for path, d in defs:
        if d.name not in used:
            yield Finding(f"{path}.name", "unreachable-process",
                          f"no pipeline runs {d.kind} '{d.name}' and no tee uses it")


# --- regexes ------------------------------------------------------------------------------------------------

# Unanchored search: a pattern that finds a match in all of these matches everything in practice.
_PROBES = ("", "a", "Z", "0", " ", "\n", "é", "-", "internal:name", "someDict.someFixed", "\U0001F600")


def matches_everything(pattern: str) -> bool:
    try:
        matches = regex_engine.compile(pattern).matches
    except regex_engine.RegexError:
        return False
    return all(matches(p) for p in _PROBES)


INVALID_CONFIG = "invalid-config"
REGEX_NOT_RE2 = "regex-not-re2"


def problem_rule(message: str) -> str:
    """The rule a validation problem is reported under: most are ``invalid-config``."""
    return REGEX_NOT_RE2 if NOT_RE2 in message else INVALID_CONFIG


# --- conditions that are never true --------------------------------------------------------------------------

# Static kinds of a value: a JSON type when it is known, "any" for a variable, "none" when there is never a
# value (arithmetic on a string), "false" for a boolean that is never true.
_ANY, _NONE, _FALSE, _BOOL, _NUMBER, _STRING = "any", "none", "false", "a boolean", "a number", "a string"
_ORDERING = frozenset({"GreaterThan", "LessThan", "GreaterThanOrEqual", "LessThanOrEqual"})
_INTEGER_OPS = frozenset({"LeftShift", "RightShift", "And", "Or", "Xor"})


def _condition(path: str, c: Condition) -> Iterator[Finding]:
    why = ""
    if c.exists is not None:
        wanted = {(op.key, op.op.value) for op in c.exists.ops}
        both = sorted(k for k, op in wanted if op == "Exists" and (k, "NotExists") in wanted)
        if both:
            why = f"'{both[0]}' cannot both exist and not exist"
    elif c.expression is not None:
        kind, why = _expression(c.expression)
        if kind in (_NUMBER, _STRING):
            why = f"its value is {kind}, never true"
        elif kind not in (_NONE, _FALSE):
            why = ""
    if why:
        yield Finding(path, "condition-never-true", f"this condition is never true: {why}")
    for regex_path, pattern in _regex_literals(c.expression, f"{path}.expression") if c.expression else ():
        if matches_everything(pattern):
            yield Finding(regex_path, "regex-matches-everything",
                          f"{pattern!r} matches every string: the comparison only tests that the value is a string")


def _expressions(e: Expression, path: str) -> Iterator[tuple[str, Expression]]:
    """``e`` and every expression nested in it, each with its JSON path."""
    yield path, e
    for kind in ("comparator", "logical", "binary", "unary"):
        node = getattr(e, kind)
        for side in ("lhs", "rhs"):
            operand = getattr(node, side, None)
            if operand is not None and operand.expression is not None:
                yield from _expressions(operand.expression, f"{path}.{kind}.{side}.expression")


def _regex_literals(e: Expression, path: str) -> Iterator[tuple[str, str]]:
    for where, inner in _expressions(e, path):
        c = inner.comparator
        if c is not None and c.op.value == "RegexMatch" and c.rhs is not None and c.rhs.literal is not None:
            yield f"{where}.comparator.rhs.literal", c.rhs.literal


# --- binge's unary names ----------------------------------------------------------------------------------------

BINGE_UNARY_NAMES = "binge-unary-names"
_UNARY_MEANING = {"Inversion": "logical not !", "LogicalNot": "bitwise not ~"}


def _binge_unary_names(data: Any, config: PipelinesConfig) -> Iterator[Finding]:
    """A note at each Inversion or LogicalNot of a condition written as JSON (text says ! or ~ instead)."""
    for path, holder, key, condition in written_conditions(data, config):
        if not isinstance(holder[key], dict) or condition.expression is None:
            continue
        for where, e in _expressions(condition.expression, f"{path}.expression"):
            op = e.unary.op.value if e.unary is not None else ""
            if op in _UNARY_MEANING:
                yield Finding(
                    f"{where}.unary.op", BINGE_UNARY_NAMES,
                    f"{op} is binge's name for {_UNARY_MEANING[op]} (this reads "
                    f"{format_operand(Operand(expression=e))}): its unary names read the wrong way round, "
                    "Inversion is logical not !, LogicalNot is bitwise not ~",
                    level="note")


def _operand(o: Operand) -> tuple[str, str]:
    """The static kind of ``o`` and, for "none" and "false", why."""
    if o.variable is not None:
        return _ANY, ""
    if o.literal is not None:
        return _STRING, ""
    if o.numeric is not None:
        return _NUMBER, ""
    return _expression(o.expression)  # type: ignore[arg-type]


def _expression(e: Expression) -> tuple[str, str]:
    if e.boolean is not None:
        return (_BOOL, "") if e.boolean.value else (_FALSE, "false is never true")
    if e.exists is not None:
        return _BOOL, ""
    if e.comparator is not None:
        return _comparator(e.comparator)
    if e.logical is not None:
        (lk, lwhy), (rk, rwhy) = _operand(e.logical.lhs), _operand(e.logical.rhs)  # type: ignore[arg-type]
        lwhy, rwhy = _never_true(e.logical.lhs, lk, lwhy), _never_true(e.logical.rhs, rk, rwhy)  # type: ignore[arg-type]
        if e.logical.op.value == "LogicalAnd" and (lwhy or rwhy):
            return _FALSE, lwhy or rwhy
        if e.logical.op.value == "LogicalOr" and lwhy and rwhy:
            return _FALSE, f"{lwhy}, and {rwhy}"
        return _BOOL, ""
    if e.binary is not None:
        op = e.binary.op.value
        for side in (e.binary.lhs, e.binary.rhs):
            kind, why = _operand(side)  # type: ignore[arg-type]
            if kind == _NONE:
                return _NONE, why
            if kind in (_STRING, _BOOL, _FALSE):
                return _NONE, f"{format_operand(side)} is {_plain(kind)}, and {op} needs numbers"  # type: ignore[arg-type]
            if op in _INTEGER_OPS and side.numeric is not None and not float(side.numeric).is_integer():  # type: ignore[union-attr]
                return _NONE, f"{op} needs integers, and {format_operand(side)} is not one"  # type: ignore[arg-type]
        return _NUMBER, ""
    assert e.unary is not None
    op, rhs = e.unary.op.value, e.unary.rhs
    kind, why = _operand(rhs)  # type: ignore[arg-type]
    if kind == _NONE:
        return _NONE, why
    name = f"{_UNARY_MEANING[op]} ({op})" if op in _UNARY_MEANING else op
    if op == "Inversion":  # binge's logical not
        if kind in (_NUMBER, _STRING):
            return _NONE, f"{format_operand(rhs)} is {kind}, and {name} needs a boolean"  # type: ignore[arg-type]
        return _BOOL, ""
    need = "an integer" if op == "LogicalNot" else "a number"  # LogicalNot is binge's bitwise not
    if kind in (_STRING, _BOOL, _FALSE):
        return _NONE, f"{format_operand(rhs)} is {_plain(kind)}, and {name} needs {need}"  # type: ignore[arg-type]
    if op == "LogicalNot" and rhs.numeric is not None and not float(rhs.numeric).is_integer():  # type: ignore[union-attr]
        return _NONE, f"{name} needs an integer, and {format_operand(rhs)} is not one"  # type: ignore[arg-type]
    return _NUMBER, ""


def _never_true(o: Operand, kind: str, why: str) -> str:
    """Why ``o`` is never ``true`` as a logical operand, or ""."""
    if kind in (_NONE, _FALSE):
        return why
    if kind in (_NUMBER, _STRING):
        return f"{format_operand(o)} is {kind}, never true"
    return ""


def _plain(kind: str) -> str:
    return _BOOL if kind == _FALSE else kind


def _comparator(c: Any) -> tuple[str, str]:
    op = c.op.value
    (lk, lwhy), (rk, rwhy) = _operand(c.lhs), _operand(c.rhs)
    if lk == _NONE or rk == _NONE:
        return _FALSE, lwhy if lk == _NONE else rwhy
    lk, rk = _plain(lk), _plain(rk)
    if op in ("RegexMatch", "RegexNotMatch"):
        for side, kind in ((c.lhs, lk), (c.rhs, rk)):
            if kind not in (_ANY, _STRING):
                return _FALSE, f"{format_operand(side)} is {kind}, and regexes match strings"
        if op == "RegexNotMatch" and c.rhs.literal is not None and matches_everything(c.rhs.literal):
            return _FALSE, f"{format_operand(c.rhs)} matches every string, so !~ never holds"
        return _BOOL, ""
    if _ANY not in (lk, rk) and lk != rk:
        return _FALSE, (f"{format_operand(c.lhs)} is {lk} and {format_operand(c.rhs)} is {rk}; values of "
                        "different JSON types are never equal or ordered")
    if op in _ORDERING and _BOOL in (lk, rk):
        return _FALSE, "booleans have no order"
    return _BOOL, ""

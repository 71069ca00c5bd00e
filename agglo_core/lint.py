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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agglo_core.condition_syntax import format_operand
from agglo_core.config import Condition, Expression, Operand, PipelinesConfig, ProcessDefinition


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    rule: str
    message: str
    level: str = "warning"  # or "error": the config is invalid

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "level": self.level, "rule": self.rule, "message": self.message}


def lint(config: PipelinesConfig, exec_allowed: Callable[[str], bool]) -> list[Finding]:
    """Warnings about ``config``, which must be valid (``load_config`` accepted it)."""
    defs = [(f"processDefinitions[{i}].{d.kind}", d) for i, d in enumerate(config.processDefinitions)]
    findings = list(_unreachable(config, defs))
    for path, d in defs:
        findings.extend(_process(path, d, config, exec_allowed))
    return findings


# --- reachability --------------------------------------------------------------------------------------------


def _unreachable(config: PipelinesConfig, defs: list[tuple[str, ProcessDefinition]]) -> Iterator[Finding]:
    used = {p.name for pipe in config.pipelines for p in pipe.processes}
    used |= {d.tee.transformerRef for _, d in defs if d.tee is not None}
    for path, d in defs:
        if d.name not in used:
            yield Finding(f"{path}.name", "unreachable-process",
                          f"no pipeline runs {d.kind} '{d.name}' and no tee uses it")


# --- per process -----------------------------------------------------------------------------------------------


def _process(path: str, d: ProcessDefinition, config: PipelinesConfig,
             exec_allowed: Callable[[str], bool]) -> Iterator[Finding]:
    body: Any = d.body
    for cpath, condition in _conditions(path, d):
        yield from _condition(cpath, condition)
    kind = d.kind
    if kind == "filter" and _matches_everything(body.regex):
        effect = "keeps every field: it does nothing" if body.keepMatched else "drops every field of every event"
        yield Finding(f"{path}.regex", "regex-matches-everything", f"{body.regex!r} matches every key, so the "
                                                                   f"filter {effect}")
    elif kind == "tee" and body.transformerRef:
        t = config.process(body.transformerRef).transformer
        if not t.forwardInputFields and not t.specs:
            yield Finding(f"{path}.transformerRef", "tee-drops-every-field",
                          f"transformer '{t.name}' has no specs and does not forward input fields, so the tee "
                          "writes no field of the event")
    elif kind == "aggregator":
        yield from _aggregator(path, body)
    elif kind == "spawner" and body.job is not None and body.job.runnable is not None:
        yield from _exec(f"{path}.job.runnable.pathToExec", body.job.runnable.pathToExec, exec_allowed)
    elif kind == "transformer":
        for i, spec in enumerate(body.specs):
            t = spec.transformation
            for field in ("mapArgs", "leftFoldArgs", "rightFoldArgs"):
                args = getattr(t, field)
                if args is not None and (field == "mapArgs" or "/" in args.path):
                    yield from _exec(f"{path}.specs[{i}].transformation.{field}.path", args.path, exec_allowed)


def _conditions(path: str, d: ProcessDefinition) -> Iterator[tuple[str, Condition]]:
    body: Any = d.body
    if getattr(body, "condition", None) is not None:
        yield f"{path}.condition", body.condition
    for i, a in enumerate(getattr(body, "annotations", ())):
        if a.condition is not None:
            yield f"{path}.annotations[{i}].condition", a.condition
    for i, spec in enumerate(getattr(body, "specs", ())):
        if spec.transformation is not None and spec.transformation.condition is not None:
            yield f"{path}.specs[{i}].transformation.condition", spec.transformation.condition


def _exec(path: str, executable: str, exec_allowed: Callable[[str], bool]) -> Iterator[Finding]:
    if not exec_allowed(executable):
        yield Finding(path, "exec-not-allowed",
                      f"runs '{executable}', which is not on the allow-list: every record fails here unless the "
                      f"deployment allows it (--allow-exec {executable} or AGGLO_ALLOW_EXEC)")


# Field names whose values are unique per event: ids, times, hashes (a user id is not: per-user state is normal).
_PER_EVENT = frozenset({"id", "uuid", "guid", "nonce", "timestamp", "ts", "time", "datetime", "hash", "githash", "sha"})
_PER_EVENT_SUFFIXES = ("uuid", "guid", "timestamp", "eventid", "messageid", "requestid", "traceid", "spanid")


def _per_event(field: str) -> bool:
    last = re.split(r"[.:]", field)[-1]
    flat = last.lower().replace("_", "").replace("-", "")
    return flat in _PER_EVENT or flat.endswith(_PER_EVENT_SUFFIXES) or re.search(r"[a-z]At$", last) is not None


def _aggregator(path: str, body: Any) -> Iterator[Finding]:
    agg = body.aggregation
    for i, group in enumerate(agg.groupByKeys):
        if _per_event(group):
            yield Finding(f"{path}.aggregation.groupByKeys[{i}]", "aggregator-high-cardinality",
                          f"grouping by '{group}' (unique per event: an id, a time or a hash) keeps one state item "
                          "per event: state grows without bound and no group aggregates anything")
    if agg.aggregationType.value == "AggDiscreteHistogram" and _per_event(agg.key):
        yield Finding(f"{path}.aggregation.key", "aggregator-high-cardinality",
                      f"a histogram of '{agg.key}' (unique per event: an id, a time or a hash) gains a bucket per "
                      "event and "
                      f"grows without bound{'' if agg.groupByKeys else ' in a single state item (no group key)'}")


# --- regexes ------------------------------------------------------------------------------------------------

# Unanchored search: a pattern that finds a match in all of these matches everything in practice.
_PROBES = ("", "a", "Z", "0", " ", "\n", "é", "-", "internal:name", "someDict.someFixed", "\U0001F600")


def _matches_everything(pattern: str) -> bool:
    try:
        search = re.compile(pattern).search
    except re.error:
        return False
    return all(search(p) is not None for p in _PROBES)


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
        if _matches_everything(pattern):
            yield Finding(regex_path, "regex-matches-everything",
                          f"{pattern!r} matches every string: the comparison only tests that the value is a string")


def _regex_literals(e: Expression, path: str) -> Iterator[tuple[str, str]]:
    for kind in ("comparator", "logical", "binary", "unary"):
        node = getattr(e, kind)
        if node is None:
            continue
        if kind == "comparator" and node.op.value == "RegexMatch" and node.rhs.literal is not None:
            yield f"{path}.comparator.rhs.literal", node.rhs.literal
        for side in ("lhs", "rhs"):
            operand = getattr(node, side, None)
            if operand is not None and operand.expression is not None:
                yield from _regex_literals(operand.expression, f"{path}.{kind}.{side}.expression")


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
    op = e.unary.op.value
    kind, why = _operand(e.unary.rhs)  # type: ignore[arg-type]
    if kind == _NONE:
        return _NONE, why
    wrong = (_NUMBER, _STRING) if op == "LogicalNot" else (_STRING, _BOOL, _FALSE)
    if kind in wrong:
        need = "a boolean" if op == "LogicalNot" else "a number"
        return _NONE, f"{format_operand(e.unary.rhs)} is {_plain(kind)}, and {op} needs {need}"  # type: ignore[arg-type]
    return (_BOOL, "") if op == "LogicalNot" else (_NUMBER, "")


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
        if op == "RegexNotMatch" and c.rhs.literal is not None and _matches_everything(c.rhs.literal):
            return _FALSE, f"{format_operand(c.rhs)} matches every string, so !~ never holds"
        return _BOOL, ""
    if _ANY not in (lk, rk) and lk != rk:
        return _FALSE, (f"{format_operand(c.lhs)} is {lk} and {format_operand(c.rhs)} is {rk}; values of "
                        "different JSON types are never equal or ordered")
    if op in _ORDERING and _BOOL in (lk, rk):
        return _FALSE, "booleans have no order"
    return _BOOL, ""

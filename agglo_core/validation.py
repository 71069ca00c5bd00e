"""Cross-field checks of a parsed config. Each problem is returned with its JSON path."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agglo_core import regex as regex_engine
from agglo_core.config import (
    Condition,
    ExistsOperation,
    Expression,
    Operand,
    PipelinesConfig,
    ProcessDefinition,
)
from agglo_core.processes.spec import CheckContext, ExternalRef


def check_config(config: PipelinesConfig, positions: dict[str, list[int]],
                 invalid_names: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Problems with the config as a whole; definition order never matters.

    ``invalid_names`` are declared by definitions that failed validation (already
    reported): references to them are not reported again.
    """
    problems: list[str] = []
    add = problems.append
    defs = [(f"processDefinitions[{i}]", d) for i, d in zip(positions.get("processDefinitions", []),
                                                             config.processDefinitions, strict=True)]
    exts = [(f"externalSystems[{i}]", e) for i, e in zip(positions.get("externalSystems", []),
                                                         config.externalSystems, strict=True)]
    pipes = [(f"pipelines[{i}]", p) for i, p in zip(positions.get("pipelines", []), config.pipelines, strict=True)]

    externals: dict[str, str] = {}
    for path, ext in exts:
        if not ext.name:
            add(f"{path}.name: must not be empty")
        elif ext.name in externals:
            add(f"{path}.name: duplicate external system name '{ext.name}'")
        externals.setdefault(ext.name, ext.externalType.value)
        if ext.externalType.value == "ExternalUnknown":
            add(f"{path}.externalType: must be set")
        if not ext.connectionString:
            add(f"{path}.connectionString: must not be empty")

    processes: dict[str, ProcessDefinition] = {}
    for path, d in defs:
        name = d.name
        if not name:
            add(f"{path}.{d.kind}.name: must not be empty")
        elif name in processes:
            add(f"{path}.{d.kind}.name: duplicate process name '{name}'")
        processes.setdefault(name, d)

    ctx = CheckContext(externals, processes, frozenset(invalid_names))
    for path, d in defs:
        problems.extend(_check_process(f"{path}.{d.kind}", d, ctx))

    names: set[str] = set()
    for path, p in pipes:
        if not p.name:
            add(f"{path}.name: must not be empty")
        elif p.name in names:
            add(f"{path}.name: duplicate pipeline name '{p.name}'")
        names.add(p.name)
        if not p.processes:
            add(f"{path}.processes: a pipeline needs at least one process")
        for j, proc in enumerate(p.processes):
            if proc.name not in processes and proc.name not in invalid_names:
                add(f"{path}.processes[{j}].name: no process definition named '{proc.name}'")
        if p.checkpoint and p.checkpoint.outputConnectorRef and p.checkpoint.outputConnectorRef not in externals \
                and p.checkpoint.outputConnectorRef not in invalid_names:
            add(f"{path}.checkpoint.outputConnectorRef: no external system named "
                f"'{p.checkpoint.outputConnectorRef}'")
    return problems


def _check_process(path: str, d: ProcessDefinition, ctx: CheckContext) -> Iterator[str]:
    from agglo_core.processes import spec_of  # late: the process modules import this one

    spec, body = spec_of(d), d.body
    for guard in spec.conditions(body):
        yield from _check_condition(f"{path}.{guard.path}", guard.condition)
    for ref in spec.externals:
        yield from _check_reference(f"{path}.{ref.field}", getattr(body, ref.field), ref, ctx)
    for where, message in spec.check(body, ctx):
        yield f"{path}.{where}: {message}"


def _check_reference(path: str, name: str, ref: ExternalRef, ctx: CheckContext) -> Iterator[str]:
    what = f" ({ref.what})" if ref.external_type else ""
    if not name:
        yield f"{path}: must name an external system{what}"
    elif name in ctx.invalid_names:
        return
    elif name not in ctx.externals:
        yield f"{path}: no external system named '{name}'"
    elif ref.external_type and ctx.externals[name] != ref.external_type:
        yield f"{path}: '{name}' is {ctx.externals[name]}, but a {ref.what} is needed ({ref.external_type})"


NOT_RE2 = "cannot be expressed in RE2"
"""In the problem of a pattern Python's ``re`` takes and RE2 (binge's dialect) does not: lint's ``regex-not-re2``."""


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a config's regex (None: RE2 compiles it)."""
    reason = regex_engine.problem(pattern)
    if reason is None:
        return None
    try:
        re.compile(pattern)  # compiling only, never matching: cannot hang
    except (re.error, RecursionError, OverflowError):
        return f"bad regex {pattern!r}: {reason}"
    return f"regex {pattern!r} {NOT_RE2} (binge's dialect, which agglo runs in linear time): {reason}"


def _check_regex(path: str, pattern: str) -> Iterator[str]:
    if (problem := regex_problem(pattern)) is not None:
        yield f"{path}: {problem}"


def _check_condition(path: str, c: Condition) -> Iterator[str]:
    if c.exists is not None:
        for i, op in enumerate(c.exists.ops):
            yield from _check_exists(f"{path}.exists.ops[{i}]", op)
    elif c.expression is not None:
        yield from _check_expression(f"{path}.expression", c.expression)


def _check_exists(path: str, op: ExistsOperation) -> Iterator[str]:
    if not op.key:
        yield f"{path}.key: must not be empty"
    if op.op.value == "UnknownExists":
        yield f"{path}.op: must be Exists or NotExists"


def _check_expression(path: str, e: Expression) -> Iterator[str]:
    if e.exists is not None:
        yield from _check_exists(f"{path}.exists", e.exists)
    for kind in ("comparator", "logical", "binary", "unary"):
        node = getattr(e, kind)
        if node is None:
            continue
        p = f"{path}.{kind}"
        if node.op.value.startswith("Unknown"):
            yield f"{p}.op: must be set"
        sides = ("rhs",) if kind == "unary" else ("lhs", "rhs")
        for side in sides:
            operand = getattr(node, side)
            if operand is None:
                yield f"{p}.{side}: must be set"
            else:
                yield from _check_operand(f"{p}.{side}", operand)
        regex = kind == "comparator" and node.op.value.startswith("Regex")
        if regex and node.rhs is not None and node.rhs.literal is not None:
            yield from _check_regex(f"{p}.rhs.literal", node.rhs.literal)


def _check_operand(path: str, o: Operand) -> Iterator[str]:
    if o.variable is not None and not o.variable.name:
        yield f"{path}.variable.name: must not be empty"
    if o.expression is not None:
        yield from _check_expression(f"{path}.expression", o.expression)

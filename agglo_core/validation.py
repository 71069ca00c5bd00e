"""Cross-field checks of a parsed config. Each problem is returned with its JSON path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from agglo_core.config import (
    Condition,
    ExistsOperation,
    Expression,
    Operand,
    PipelinesConfig,
    ProcessDefinition,
)
from agglo_core.transforms import BUILTIN_REDUCERS, go_template_problem

KV = "ExternalKVStore"
_ARGS_FOR = {
    "TransformMapRegex": "mapRegexArgs", "TransformMapAdd": "mapAddArgs", "TransformMapMult": "mapMultArgs",
    "TransformMap": "mapArgs", "TransformLeftFold": "leftFoldArgs", "TransformRightFold": "rightFoldArgs",
}


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

    for path, d in defs:
        problems.extend(_check_process(f"{path}.{d.kind}", d, externals, processes, invalid_names))

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


def _check_process(path: str, d: ProcessDefinition, externals: dict[str, str],
                   processes: dict[str, ProcessDefinition], invalid_names: set[str]) -> Iterator[str]:
    body: Any = d.body
    if getattr(body, "condition", None) is not None:
        yield from _check_condition(f"{path}.condition", body.condition)

    def store(field: str, want: str, what: str) -> Iterator[str]:
        ref = getattr(body, field)
        if not ref:
            yield f"{path}.{field}: must name an external system ({what})"
        elif ref in invalid_names:
            return
        elif ref not in externals:
            yield f"{path}.{field}: no external system named '{ref}'"
        elif externals[ref] != want:
            yield f"{path}.{field}: '{ref}' is {externals[ref]}, but a {what} is needed ({want})"

    kind = d.kind
    if kind == "annotator":
        for i, a in enumerate(body.annotations):
            if not a.fieldKey:
                yield f"{path}.annotations[{i}].fieldKey: must not be empty"
            if a.condition is not None:
                yield from _check_condition(f"{path}.annotations[{i}].condition", a.condition)
    elif kind == "aggregator":
        yield from store("stateStore", KV, "key-value store")
        agg = body.aggregation
        if agg is None:
            yield f"{path}.aggregation: must be set"
        else:
            if not agg.key:
                yield f"{path}.aggregation.key: must not be empty"
            if agg.aggregationType.value == "AggUnknown":
                yield f"{path}.aggregation.aggregationType: must be set"
            for i, g in enumerate(agg.groupByKeys):
                if not g:
                    yield f"{path}.aggregation.groupByKeys[{i}]: must not be empty"
    elif kind == "completer":
        yield from store("stateStore", KV, "key-value store")
        c = body.completion
        if c is None or not c.joinKeys:
            yield f"{path}.completion.joinKeys: must name at least one key"
        if c is not None and c.timeoutMs <= 0:
            yield f"{path}.completion.timeoutMs: must be positive"
    elif kind == "filter":
        yield from _check_regex(f"{path}.regex", body.regex)
    elif kind == "spawner":
        if body.job is None or body.job.runnable is None or not body.job.runnable.pathToExec:
            yield f"{path}.job.runnable.pathToExec: must name an executable"
        if body.delayInMs < 0:
            yield f"{path}.delayInMs: must not be negative"
    elif kind == "tee":
        ref = body.outputConnectorRef
        if not ref:
            yield f"{path}.outputConnectorRef: must name an external system"
        elif ref not in externals and ref not in invalid_names:
            yield f"{path}.outputConnectorRef: no external system named '{ref}'"
        tref = body.transformerRef
        if tref and tref not in invalid_names:
            if tref not in processes:
                yield f"{path}.transformerRef: no transformer named '{tref}'"
            elif processes[tref].kind != "transformer":
                yield f"{path}.transformerRef: '{tref}' is a {processes[tref].kind}, not a transformer"
    elif kind == "transformer":
        for i, spec in enumerate(body.specs):
            yield from _check_transformation(f"{path}.specs[{i}].transformation", spec.transformation)
    elif kind == "entwine":
        yield from store("streamStateStore", KV, "key-value store")
        yield from store("objectStore", "ExternalObjectStore", "object store")
        if not body.subStreamID:
            yield f"{path}.subStreamID: must not be empty"
        if body.tickerInterval < 0:
            yield f"{path}.tickerInterval: must not be negative"


def _check_transformation(path: str, t: Any) -> Iterator[str]:
    if t is None:
        yield f"{path}: must be set"
        return
    ttype = t.transformationType.value
    if ttype == "TransformUnknown":
        yield f"{path}.transformationType: must be set"
    if t.condition is not None:
        yield from _check_condition(f"{path}.condition", t.condition)
    want = _ARGS_FOR.get(ttype)
    given = [a for a in _ARGS_FOR.values() if getattr(t, a) is not None]
    for a in given:
        if a != want:
            yield f"{path}.{a}: not used by {ttype}"
    if want is None:
        return
    args = getattr(t, want)
    if args is None:
        yield f"{path}.{want}: must be set for {ttype}"
    elif want == "mapRegexArgs":
        yield from _check_regex(f"{path}.mapRegexArgs.regex", args.regex)
        try:
            groups = re.compile(args.regex).groups
        except re.error:
            return
        problem = go_template_problem(args.replace, groups, set(re.compile(args.regex).groupindex))
        if problem:
            yield f"{path}.mapRegexArgs.replace: {problem}"
    elif want == "mapArgs":
        if not args.path:
            yield f"{path}.mapArgs.path: must name an executable"
    elif want in ("leftFoldArgs", "rightFoldArgs") and args.path not in BUILTIN_REDUCERS and "/" not in args.path:
        yield (f"{path}.{want}.path: '{args.path}' is neither a built-in reducer "
               f"({'|'.join(BUILTIN_REDUCERS)}) nor a path to an executable (containing '/')")


def _check_regex(path: str, pattern: str) -> Iterator[str]:
    try:
        re.compile(pattern)
    except re.error as e:
        yield f"{path}: bad regex {pattern!r}: {e}"


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

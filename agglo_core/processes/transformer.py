"""transformer: build an output event from ``specs`` of sourceField -> transformation -> targetField.

The config side (models, checks, docs); the stage is ``agglo_core.stages.transformer``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import StrictBool, StrictStr, model_validator

from agglo_core import regex as regex_engine
from agglo_core.config import ConditionField, ConfigModel, Number, TransformationType, exactly_one
from agglo_core.paths import split_path
from agglo_core.processes.spec import CheckContext, ExecRef, Guard, Problem, ProcessSpec
from agglo_core.records import MAX_DEPTH
from agglo_core.stages import transformer as stage
from agglo_core.transforms import BUILTIN_REDUCERS, executable_of, go_template_problem
from agglo_core.validation import regex_problem


class PathArgs(ConfigModel):
    path: StrictStr = ""


class ValueArgs(ConfigModel):
    value: Number = 0


class MapRegexArgs(ConfigModel):
    regex: StrictStr = ""
    replace: StrictStr = ""


ARGS = ("mapArgs", "mapAddArgs", "mapMultArgs", "mapRegexArgs", "leftFoldArgs", "rightFoldArgs")
ARGS_FOR = {
    "TransformMapRegex": "mapRegexArgs", "TransformMapAdd": "mapAddArgs", "TransformMapMult": "mapMultArgs",
    "TransformMap": "mapArgs", "TransformLeftFold": "leftFoldArgs", "TransformRightFold": "rightFoldArgs",
}


class Transformation(ConfigModel):
    condition: ConditionField | None = None
    transformationType: TransformationType = TransformationType.TransformUnknown
    mapArgs: PathArgs | None = None
    mapAddArgs: ValueArgs | None = None
    mapMultArgs: ValueArgs | None = None
    mapRegexArgs: MapRegexArgs | None = None
    leftFoldArgs: PathArgs | None = None
    rightFoldArgs: PathArgs | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Transformation:
        exactly_one(self, ARGS, "a transformation", allow_none=True)
        return self


class TransformerSpec(ConfigModel):
    sourceField: StrictStr = ""
    targetField: StrictStr = ""
    transformation: Transformation | None = None


class Transformer(ConfigModel):
    name: StrictStr = ""
    specs: tuple[TransformerSpec, ...] = ()
    forwardInputFields: StrictBool = False


def _check(d: Transformer, ctx: CheckContext) -> Iterator[Problem]:
    for i, spec in enumerate(d.specs):
        if len(split_path(spec.targetField)) > MAX_DEPTH:
            yield f"specs[{i}].targetField", f"nests deeper than the {MAX_DEPTH} levels an event can have"
        yield from _check_transformation(f"specs[{i}].transformation", spec.transformation)


def _check_transformation(path: str, t: Transformation | None) -> Iterator[Problem]:
    if t is None:
        yield path, "must be set"
        return
    ttype = t.transformationType.value
    if ttype == "TransformUnknown":
        yield f"{path}.transformationType", "must be set"
    want = ARGS_FOR.get(ttype)
    for a in ARGS:
        if a != want and getattr(t, a) is not None:
            yield f"{path}.{a}", f"not used by {ttype}"
    if want is None:
        return
    args = getattr(t, want)
    if args is None:
        yield f"{path}.{want}", f"must be set for {ttype}"
    elif want == "mapRegexArgs":
        if (problem := regex_problem(args.regex)) is not None:
            yield f"{path}.mapRegexArgs.regex", problem
            return
        compiled = regex_engine.compile(args.regex)
        if (problem := go_template_problem(args.replace, compiled.groups, set(compiled.groupindex))) is not None:
            yield f"{path}.mapRegexArgs.replace", problem
    elif want == "mapArgs":
        if not args.path:
            yield f"{path}.mapArgs.path", "must name an executable"
    elif want in ("leftFoldArgs", "rightFoldArgs") and args.path not in BUILTIN_REDUCERS and "/" not in args.path:
        yield (f"{path}.{want}.path", f"'{args.path}' is neither a built-in reducer ({'|'.join(BUILTIN_REDUCERS)}) "
                                      "nor a path to an executable (containing '/')")


def _conditions(d: Transformer) -> Iterator[Guard]:
    for i, s in enumerate(d.specs):
        if s.transformation is not None and s.transformation.condition is not None:
            yield Guard(f"specs[{i}].transformation.condition",
                        f"spec {s.sourceField or '(event)'} -> {s.targetField or '(root)'}", s.transformation.condition)


def _executables(d: Transformer) -> Iterator[ExecRef]:
    for i, s in enumerate(d.specs):
        t = s.transformation
        runs = executable_of(t) if t is not None else None
        if runs is not None:
            field, path = runs
            yield ExecRef(f"specs[{i}].transformation.{field}.path", path, t.condition)  # type: ignore[union-attr]


def _describe(d: Transformer) -> list[str]:
    from agglo_core.condition_syntax import condition_text  # late: only the authoring tools describe

    lines = []
    for s in d.specs:
        t = s.transformation
        cond = condition_text(t.condition) if t else None
        lines.append(f"{s.sourceField or '(event)'} -> {s.targetField or '(root)'}: "
                     f"{t.transformationType.value.removeprefix('Transform') if t else '?'}"
                     + (f" if {cond}" if cond else ""))
    return lines


_DOC = """\
build an output from `specs`. The output starts as the input
with `forwardInputFields`, else empty (plus the `internal:` keys). For each
spec whose condition holds on the input, the value at `sourceField` (the whole
input if empty) is transformed and written at `targetField` (merged into the
output's root if empty; the result must then be a map). A missing source skips
the spec.

```json
{"transformer": {"name": "RemovePrefix", "forwardInputFields": true, "specs": [
  {"sourceField": "someVocab", "targetField": "someVocabSansPrefix",
   "transformation": {"transformationType": "TransformMapRegex",
                      "mapRegexArgs": {"regex": "buzz/(.*)", "replace": "$1"}}}]}}
```

| transformationType | arguments | result |
|---|---|---|
| `TransformCopy` | | the value |
| `TransformSum` / `TransformCount` | | sum of a list of numbers / length of a list or map |
| `TransformMapAdd` / `TransformMapMult` | `mapAddArgs` / `mapMultArgs`: `{"value": n}` | on a number, element-wise on a list, value-wise on a map |
| `TransformMapRegex` | `mapRegexArgs`: `{"regex", "replace"}` | every match replaced; `$1`, `${1}`, `${name}`, `$$` as in Go; on a string, a list or map of strings |
| `TransformPopHead` / `TransformPopTail` | | the first / last element (null for an empty list) |
| `TransformMap` | `mapArgs`: `{"path": "/usr/local/bin/tool"}` | the executable run once per element (list), per value (map) or once |
| `TransformLeftFold` / `TransformRightFold` | `leftFoldArgs` / `rightFoldArgs`: `{"path": …}` | a real fold: `sum`, `count`, `min`, `max`, `concat`, or an executable (a path with `/`) that reads `{"acc", "value"}` and prints the new accumulator; the first (last, for a right fold) element starts the accumulator; an empty list folds to null |

A value of the wrong shape (say, `TransformSum` of a string) fails the record
with a message saying what was expected.
"""

SPEC = ProcessSpec(
    emit=stage.emit, kind="transformer", doc=_DOC, proto_field=7, model=Transformer, compile=stage.compile,
    summary="Builds a new event from `specs`: each copies, sums, counts, pops, maps (by regex, arithmetic or "
            "an executable) or folds a source field into a target field; `forwardInputFields` starts from the "
            "input event.",
    check=_check, conditions=_conditions, executables=_executables, describe=_describe,
)

"""annotator: set fields, in order, where each annotation's condition holds."""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic import StrictStr

from agglo_core.codegen import emit_annotator
from agglo_core.conditions import compile_node
from agglo_core.config import ConditionField, ConfigModel
from agglo_core.errors import StageError
from agglo_core.ir import ProcessIR
from agglo_core.paths import MISSING, compile_getter, set_path, split_path
from agglo_core.pipeline import Invocation, StageContext
from agglo_core.processes.spec import CheckContext, Guard, Problem, ProcessSpec
from agglo_core.records import unwritable

CURRENT_TIME = "derived:currentTime"


class Annotation(ConfigModel):
    fieldKey: StrictStr = ""
    value: StrictStr = ""
    condition: ConditionField | None = None


class Annotator(ConfigModel):
    name: StrictStr = ""
    annotations: tuple[Annotation, ...] = ()


class AnnotatorStage:
    pure = True

    def __init__(self, step: ProcessIR) -> None:
        self.name = step.params["name"]
        self._annotations = []
        for a in step.params["annotations"]:
            key = a["fieldKey"]
            # A top-level field (no getter) is read and written directly: the common case, and the fast one.
            self._annotations.append((key, split_path(key), compile_getter(key) if "." in key else None,
                                      a["value"], a["value"] == CURRENT_TIME, compile_node(a["condition"])))

    def apply(self, event: dict, inv: Invocation) -> dict:
        for key, segs, get, value, is_time, cond in self._annotations:
            if cond is not None and not cond(event):
                continue
            if (key in event) if get is None else (get(event) is not MISSING):
                raise StageError(f"cannot annotate '{key}': the event already has that field")
            if is_time:
                value = inv.now_iso
            event = {**event, key: value} if get is None else set_path(event, segs, value)
        return event


def compile(d: Annotator, ctx: StageContext) -> AnnotatorStage:
    assert ctx.step is not None
    return AnnotatorStage(ctx.step)


def _check(d: Annotator, ctx: CheckContext) -> Iterator[Problem]:
    for i, a in enumerate(d.annotations):
        if not a.fieldKey:
            yield f"annotations[{i}].fieldKey", "must not be empty"
        elif (problem := unwritable(a.value, a.fieldKey, len(split_path(a.fieldKey)))) is not None:
            # Every event it annotates could not be written; say so once, here.
            yield f"annotations[{i}]", f"no event could hold this annotation: {problem}"


def _conditions(d: Annotator) -> Iterator[Guard]:
    for i, a in enumerate(d.annotations):
        if a.condition is not None:
            yield Guard(f"annotations[{i}].condition", f"annotation {a.fieldKey}", a.condition)


def _describe(d: Annotator) -> list[str]:
    from agglo_core.condition_syntax import condition_text  # late: only the authoring tools describe

    return [f"{a.fieldKey} = {json.dumps(a.value)}" + (f" if {text}" if (text := condition_text(a.condition)) else "")
            for a in d.annotations]


_DOC = """\
for each annotation in order, if its condition holds (on the
event as the earlier annotations left it), set `fieldKey` (a dotted path) to
`value`. `derived:currentTime` as the value is the invocation time (RFC 3339,
UTC). An event that already has the field fails (binge's rule).

```json
{"annotator": {"name": "AnnotateFooBar", "annotations": [
  {"fieldKey": "foobar", "value": "found", "condition": {"expression": {"comparator": {
     "lhs": {"variable": {"name": "someDict.someFixed"}}, "rhs": {"literal": "foobar"}, "op": "Equal"}}}},
  {"fieldKey": "meta.seenAt", "value": "derived:currentTime"}]}}
```
"""

SPEC = ProcessSpec(
    emit=emit_annotator, kind="annotator", doc=_DOC, proto_field=1, model=Annotator, compile=compile,
    summary=f"Sets fields to values, in order, where each annotation's condition holds; `{CURRENT_TIME}` is "
            "the invocation time. A field the event already has fails the record.",
    check=_check, conditions=_conditions, describe=_describe,
)

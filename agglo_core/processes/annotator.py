"""annotator: set fields, in order, where each annotation's condition holds.

The config side (model, checks, docs); the stage is ``agglo_core.stages.annotator``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic import StrictStr

from agglo_core.config import ConditionField, ConfigModel
from agglo_core.paths import split_path
from agglo_core.processes.spec import CheckContext, Guard, Problem, ProcessSpec
from agglo_core.records import unwritable
from agglo_core.stages import annotator as stage
from agglo_core.stages.annotator import CURRENT_TIME


class Annotation(ConfigModel):
    fieldKey: StrictStr = ""
    value: StrictStr = ""
    condition: ConditionField | None = None


class Annotator(ConfigModel):
    name: StrictStr = ""
    annotations: tuple[Annotation, ...] = ()


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
    emit=stage.emit, kind="annotator", doc=_DOC, proto_field=1, model=Annotator, compile=stage.compile,
    summary=f"Sets fields to values, in order, where each annotation's condition holds; `{CURRENT_TIME}` is "
            "the invocation time. A field the event already has fails the record.",
    check=_check, conditions=_conditions, describe=_describe,
)

"""tee: send (a transformation of) the event to an external system and note where it went.

The config side (model, checks, lint, docs); the stage is ``agglo_core.stages.tee``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import Field, StrictStr

from agglo_core.config import ConditionField, ConfigModel
from agglo_core.processes.spec import CheckContext, ExternalRef, Finding, LintContext, Problem, ProcessSpec
from agglo_core.stages import tee as stage
from agglo_core.stages.tee import OUTPUT


class Tee(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None
    additionalBody: dict[str, Any] = Field(default_factory=dict)
    transformerRef: StrictStr = ""
    outputConnectorRef: StrictStr = ""


def _check(d: Tee, ctx: CheckContext) -> Iterator[Problem]:
    ref = d.transformerRef
    if not ref or ref in ctx.invalid_names:
        return
    if ref not in ctx.processes:
        yield "transformerRef", f"no transformer named '{ref}'"
    elif ctx.processes[ref].kind != "transformer":
        yield "transformerRef", f"'{ref}' is a {ctx.processes[ref].kind}, not a transformer"


def _lint(d: Tee, ctx: LintContext) -> Iterator[Finding]:
    if d.transformerRef:
        t = ctx.config.process(d.transformerRef).body
        if not t.forwardInputFields and not t.specs:
            yield Finding("transformerRef", "tee-drops-every-field",
                          f"transformer '{t.name}' has no specs and does not forward input fields, so the tee "
                          "writes no field of the event")


def _describe(d: Tee) -> list[str]:
    lines = [f"through {d.transformerRef}"] if d.transformerRef else []
    if d.additionalBody:
        lines.append(f"+ {json.dumps(d.additionalBody, ensure_ascii=False)}")
    return lines


_DOC = """\
send the event (through `transformerRef`, merged with `additionalBody`) to
`outputConnectorRef`, and append `{"uuid", "outputType", "connectionString"}`
to `internal:tee:output` (plus `"response"` for HTTP when the endpoint answered
a JSON body other than `null` or `{}`, as binge; `outputType` is binge's
`kvstore`, `object`, `localfile`, `web`, `pubsub`). The uuid is a deterministic
function of the record id, partition, pipeline and tee, so a redelivered record
overwrites what it wrote before.

`additionalBody` merges as binge's merge does: maps merge key by key, lists
append (the event's items first), and two values at one path that are not both
maps or both lists (two scalars, even equal ones, or a map or list and a scalar)
fail the record, permanently, naming the path: `{"tags": ["a"], "n": 1}` with
`{"tags": ["b"], "meta": {"via": "tee"}}` sends `{"tags": ["a", "b"], "n": 1,
"meta": {"via": "tee"}}`, but with `{"n": 1}` it fails at `n`.

```json
{"tee": {"name": "Forward to Test", "outputConnectorRef": "ServiceB", "transformerRef": "APIChange",
  "additionalBody": {"routedTest": true},
  "condition": {"expression": {"comparator": {"lhs": {"variable": {"name": "doTest"}},
                                              "rhs": {"literal": "true"}, "op": "Equal"}}}}}
```
"""

SPEC = ProcessSpec(
    kind="tee", doc=_DOC, proto_field=6, model=Tee, compile=stage.compile,
    summary=f"Writes the event (or what `transformerRef` makes of it, plus `additionalBody`) to an external "
            f"system under a key derived from the record, and notes where under `{OUTPUT}`.",
    externals=(ExternalRef("outputConnectorRef", None, "output", frozenset({"Put"})),),
    check=_check, lint=_lint, uses=lambda d: [d.transformerRef] if d.transformerRef else [], describe=_describe,
)

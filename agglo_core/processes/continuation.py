"""continuation: stop this pipeline for events where the condition is false (no output, no error)."""

from __future__ import annotations

from pydantic import StrictStr

from agglo_core.codegen import emit_continuation
from agglo_core.conditions import compile_node
from agglo_core.config import ConditionField, ConfigModel
from agglo_core.ir import ProcessIR
from agglo_core.pipeline import Invocation, StageContext
from agglo_core.processes.spec import ProcessSpec


class Continuation(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None


class ContinuationStage:
    pure = True

    def __init__(self, step: ProcessIR) -> None:
        self.name = step.params["name"]
        self._cond = compile_node(step.params["condition"])

    def apply(self, event: dict, inv: Invocation) -> dict | None:
        return event if self._cond is None or self._cond(event) else None


def compile(d: Continuation, ctx: StageContext) -> ContinuationStage:
    assert ctx.step is not None
    return ContinuationStage(ctx.step)


_DOC = """\
where the condition is false, this pipeline stops for this
event: no output, no error.

```json
{"continuation": {"name": "OnlyPushes", "condition": {"exists": {"ops": [{"key": "pusher", "op": "Exists"}]}}}}
```
"""

def _describe(d: Continuation) -> list[str]:
    from agglo_core.condition_syntax import condition_text  # late: only the authoring tools describe

    return [f"continue only if {text}" if (text := condition_text(d.condition)) else "always continues"]


SPEC = ProcessSpec(
    emit=emit_continuation, kind="continuation", doc=_DOC, proto_field=8, model=Continuation, compile=compile,
    summary="Stops the pipeline for events where its condition is false: no output, no error.",
    gates_pipeline=True,
    describe=_describe,
)

"""continuation: stop this pipeline for events where the condition is false (no output, no error).

The config side (model, docs); the stage is ``agglo_core.stages.continuation``.
"""

from __future__ import annotations

from pydantic import StrictStr

from agglo_core.config import ConditionField, ConfigModel
from agglo_core.processes.spec import ProcessSpec
from agglo_core.stages import continuation as stage


class Continuation(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None


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
    emit=stage.emit, kind="continuation", doc=_DOC, proto_field=8, model=Continuation, compile=stage.compile,
    summary="Stops the pipeline for events where its condition is false: no output, no error.",
    gates_pipeline=True,
    describe=_describe,
)

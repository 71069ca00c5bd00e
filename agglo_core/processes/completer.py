"""completer: join events on the value of ``joinKeys`` within ``timeoutMs``.

The config side (models, checks, docs); the stage is ``agglo_core.stages.completer``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import StrictStr

from agglo_core.config import ConditionField, ConfigModel, Int64
from agglo_core.processes.spec import CheckContext, ExternalRef, Problem, ProcessSpec
from agglo_core.stages import completer as stage


class Completion(ConfigModel):
    joinKeys: tuple[StrictStr, ...] = ()
    timeoutMs: Int64 = 0


class Completer(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None
    stateStore: StrictStr = ""
    completion: Completion | None = None


def _check(d: Completer, ctx: CheckContext) -> Iterator[Problem]:
    c = d.completion
    if c is None or not c.joinKeys:
        yield "completion.joinKeys", "must name at least one key"
    if c is not None and c.timeoutMs <= 0:
        yield "completion.timeoutMs", "must be positive"


def _describe(d: Completer) -> list[str]:
    c = d.completion
    return [] if c is None else [f"join on {', '.join(c.joinKeys)} within {c.timeoutMs} ms"]


_DOC = """\
join events on the value of `joinKeys` within `timeoutMs`.
The join value is that of the first join key present in the event; events
with none pass through. The output carries `internal:completion:<name>`:
`triggered`, `complete` (every join key seen; also
`internal:completion:state:<name>` = `{"value", "resolved", "deadline"}`) or
`timedout` (the join's deadline passed; the join is removed and a later event
starts a new one). Adding a member and closing the join is one atomic step,
so two instances completing one join at once emit one `complete`.

```json
{"completer": {"name": "BuildDeployed", "stateStore": "State",
  "completion": {"joinKeys": ["head", "cicdVcsHash"], "timeoutMs": 3600000}}}
```
"""

SPEC = ProcessSpec(
    kind="completer", doc=_DOC, proto_field=3, model=Completer, compile=stage.compile,
    summary="Joins events on the values of `joinKeys` within `timeoutMs`: each event learns whether it "
            "completed the join, timed it out or left it open; exactly one event closes a join.",
    externals=(ExternalRef("stateStore", "ExternalKVStore", "key-value store", frozenset({"JoinAdd"})),),
    check=_check, describe=_describe,
)

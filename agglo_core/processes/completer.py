"""completer: join events on the value of ``joinKeys`` within ``timeoutMs`` (<= 0 or omitted: no deadline).

The config side (models, checks, lint, docs); the stage is ``agglo_core.stages.completer``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import StrictStr

from agglo_core.config import ConditionField, ConfigModel, Int64
from agglo_core.effects import DEFAULT_JOIN_TTL_S
from agglo_core.processes.spec import CheckContext, ExternalRef, Finding, LintContext, Problem, ProcessSpec
from agglo_core.stages import completer as stage

NO_DEADLINE = "completer-no-deadline"
"""Lint rule: a join without a deadline, kept until its store's ``joinTtl`` passes (a note)."""


class Completion(ConfigModel):
    joinKeys: tuple[StrictStr, ...] = ()
    timeoutMs: Int64 = 0
    """<= 0 (binge's tests write -1) or omitted: the join has no deadline."""


class Completer(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None
    stateStore: StrictStr = ""
    completion: Completion | None = None


def _check(d: Completer, ctx: CheckContext) -> Iterator[Problem]:
    c = d.completion
    if c is None or not c.joinKeys:
        yield "completion.joinKeys", "must name at least one key"


# The joinTtl option wherever a connection string carries options: `k=v,…`, `?k=v&…` (agglo_core cannot ask the
# connector specs, which live with the connectors).
_JOIN_TTL = re.compile(r"(?:^|[:,?&])joinTtl=([^,&]*)")


def _lint(d: Completer, ctx: LintContext) -> Iterator[Finding]:
    c = d.completion
    if c is None or c.timeoutMs > 0:
        return
    store = next((e for e in ctx.config.externalSystems if e.name == d.stateStore), None)
    given = _JOIN_TTL.search(store.connectionString) if store is not None else None
    ttl = f"{given.group(1)} s (its joinTtl)" if given else f"{DEFAULT_JOIN_TTL_S} s (its joinTtl, by default 7 days)"
    yield Finding("completion.timeoutMs", NO_DEADLINE,
                  f"this join has no deadline (timeoutMs {c.timeoutMs}): it closes only when every join key has "
                  f"arrived, and '{d.stateStore}' forgets an open one {ttl} after its last add; an event after "
                  "that starts a new join", level="note")


def _describe(d: Completer) -> list[str]:
    c = d.completion
    if c is None:
        return []
    return [f"join on {', '.join(c.joinKeys)} " + (f"within {c.timeoutMs} ms" if c.timeoutMs > 0 else "without a deadline")]


_DOC = """\
join events on the value of `joinKeys` within `timeoutMs`.
The join value is that of the first join key present in the event; events
with none pass through. The output carries `internal:completion:<name>`:
`triggered`, `complete` (every join key seen; also
`internal:completion:state:<name>` = `{"value", "resolved", "deadline"}`) or
`timedout` (the join's deadline passed; the join is removed and a later event
starts a new one). Adding a member and closing the join is one atomic step,
so two instances completing one join at once emit one `complete`.

`timeoutMs` 0 or less (binge's tests write -1), or left out: the join has no
deadline. It closes only when every join key has arrived, never reports
`timedout`, and its `complete` state has no `deadline`. Such a join is still
not kept forever: its state store forgets it once the store's `joinTtl`
(an option of every key-value connection string, default 7 days) has passed
since its last add, and an event after that starts a new join. `agglo lint`
notes every join without a deadline with its store's `joinTtl`.

```json
{"completer": {"name": "BuildDeployed", "stateStore": "State",
  "completion": {"joinKeys": ["head", "cicdVcsHash"], "timeoutMs": 3600000}}}
```
"""

SPEC = ProcessSpec(
    kind="completer", doc=_DOC, proto_field=3, model=Completer, compile=stage.compile,
    summary="Joins events on the values of `joinKeys` within `timeoutMs` (or without a deadline): each event "
            "learns whether it completed the join, timed it out or left it open; exactly one event closes a join.",
    externals=(ExternalRef("stateStore", "ExternalKVStore", "key-value store", frozenset({"JoinAdd"})),),
    check=_check, lint=_lint, describe=_describe,
)
